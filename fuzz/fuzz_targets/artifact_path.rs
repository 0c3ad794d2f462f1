//! Fuzzes the artifact server's request-path decoding (`plumb_source::server::resolve`)
//! against a fixed storage tree holding an artifact, a temporary file, and symlinks leading
//! in and out. Checks: whatever resolves is a regular file inside the root that is neither
//! a temporary file nor reached through the escaping link.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

struct Tree {
    _dir: tempfile::TempDir,
    root: PathBuf,
    canon_root: PathBuf,
}

fn tree() -> &'static Tree {
    static TREE: OnceLock<Tree> = OnceLock::new();
    TREE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("storage");
        let obj = root.join("gitrepository/ns/app");
        std::fs::create_dir_all(&obj).expect("mkdir");
        std::fs::write(obj.join("abc.tar.gz"), "artifact").expect("write");
        std::fs::write(obj.join(".tmp-123"), "partial").expect("write");
        std::fs::write(dir.path().join("secret"), "outside").expect("write");
        std::os::unix::fs::symlink("../../../../secret", obj.join("out")).expect("symlink");
        std::os::unix::fs::symlink("abc.tar.gz", obj.join("in")).expect("symlink");
        let canon_root = root.canonicalize().expect("canonicalize");
        Tree {
            _dir: dir,
            root,
            canon_root,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(path) = std::str::from_utf8(data) else {
        return;
    };
    let t = tree();
    if let Some(p) = plumb_source::server::resolve(&t.root, path) {
        assert!(p.starts_with(&t.canon_root), "{path:?} resolved outside: {p:?}");
        assert!(p.is_file(), "{path:?} resolved to a non-file {p:?}");
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
        assert!(!name.starts_with(".tmp-"), "{path:?} served a temporary file");
        assert_ne!(
            std::fs::read(&p).ok().as_deref(),
            Some(&b"outside"[..]),
            "{path:?} served the file outside the root"
        );
    }
});
