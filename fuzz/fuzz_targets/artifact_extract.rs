//! Fuzzes artifact extraction (`plumb_source::artifact::extract_tar_gz`): PAX and GNU
//! long-name headers, paths, entry kinds and sizes. The input is a tar stream, gzipped here
//! (stored blocks, so libFuzzer's mutations reach the tar parser) unless its first byte is
//! `0x1f`, when it is handed over as a gzip stream as is. Checks: no panic, no hang, nothing
//! written outside the destination.
#![no_main]

use std::io::Write as _;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use plumb_source::artifact::{Limits, extract_tar_gz};

/// A directory next to every destination; extraction must never create anything in it.
fn outside() -> &'static std::path::Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("tempdir")).path()
}

fuzz_target!(|data: &[u8]| {
    let gz = if data.first() == Some(&0x1f) {
        data.to_vec()
    } else {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::none());
        e.write_all(data).expect("gzip to memory");
        e.finish().expect("gzip to memory")
    };
    let limits = Limits {
        max_file_size: 64 << 10,
        max_total_size: 256 << 10,
        max_entries: 64,
    };
    let base = outside();
    let dest = tempfile::tempdir_in(base).expect("tempdir");
    let _ = extract_tar_gz(&gz, &dest.path().join("x"), limits);
    drop(dest);
    let left = std::fs::read_dir(base).expect("read outside dir").count();
    assert_eq!(left, 0, "extraction wrote outside its destination");
});
