//! `build [--root R] [--generate] DIR`: prints what `plumb build` prints, without building the
//! whole `plumb` binary (for quick conformance runs while working on the renderer).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let mut root = None;
    let mut dir = None;
    let mut opts = plumb_kustomize::BuildOptions::default();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--root" => root = args.next().map(PathBuf::from),
            "--generate" => opts.generate_missing_kustomization = true,
            _ => dir = Some(PathBuf::from(a)),
        }
    }
    let Some(dir) = dir else {
        eprintln!("usage: build [--root R] [--generate] DIR");
        return ExitCode::from(2);
    };
    let root = root.unwrap_or_else(|| PathBuf::from("/"));
    match plumb_kustomize::build(&dir, &root, &opts) {
        Ok(objects) => {
            let text = plumb_kustomize::to_yaml_stream(&objects);
            let mut out = std::io::stdout().lock();
            if out
                .write_all(text.as_bytes())
                .and_then(|()| out.flush())
                .is_err()
            {
                return ExitCode::FAILURE;
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("Error: building {}: {e}", dir.display());
            ExitCode::FAILURE
        }
    }
}
