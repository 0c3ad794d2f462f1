//! Helpers shared by the integration tests: write a fixture tree to a temporary directory and
//! build one of its directories.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::Path;

use plumb_kustomize::{BuildOptions, Error, build};
use serde_json::Value;

/// Writes `files` (path, text) below `root`, creating directories.
pub fn write(root: &Path, files: &[(&str, &str)]) {
    for (p, text) in files {
        let path = root.join(p);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
}

/// Builds `dir` of a fixture written to a fresh temporary directory (the confinement root).
pub fn run_in(files: &[(&str, &str)], dir: &str) -> Result<Vec<Value>, Error> {
    let tmp = tempfile::tempdir().unwrap();
    write(tmp.path(), files);
    build(&tmp.path().join(dir), tmp.path(), &BuildOptions::default())
}

/// Builds the fixture's top directory, which must succeed.
pub fn run(files: &[(&str, &str)]) -> Vec<Value> {
    run_in(files, ".").unwrap()
}
