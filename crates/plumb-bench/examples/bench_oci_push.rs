//! `plumb push artifact` against `oras push` (PyPI `oras`, the ORAS Python SDK) for a
//! 1,000-file directory, side by side on one local registry (distribution 2.8). Each run
//! pushes different content to a new tag, so nothing is skipped as already uploaded. Prints
//! medians and the ratio.
//!
//! `cargo build --release --bin plumb && cargo run -p plumb-bench --example bench_oci_push
//! [runs]` (`PLUMB_BIN` overrides the binary, default `target/release/plumb`; the example
//! only orchestrates processes, so its own profile does not matter).
//! Both are timed as whole processes (what a CI job pays); oras' in-process push time is
//! printed too, since Python's start-up is part of its process time.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a measurement tool: fail loudly

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use plumb_testing::registry::{Registry, RegistryOptions};

const FILES: usize = 1_000;

fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    xs[xs.len() / 2]
}

/// 50 directories of 20 YAML manifests (~1.2 KiB each); `run` changes one file.
fn fleet(root: &Path, run: usize) {
    for i in 0..FILES {
        let dir = root.join(format!("apps/app-{:02}", i / 20));
        std::fs::create_dir_all(&dir).unwrap();
        let mut body = format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-{i}\n  namespace: apps\ndata:\n"
        );
        for k in 0..24 {
            body.push_str(&format!("  key-{k}: \"value {i} {k} lorem ipsum dolor\"\n"));
        }
        std::fs::write(dir.join(format!("cm-{i}.yaml")), body).unwrap();
    }
    std::fs::write(root.join("run.txt"), format!("{run}\n")).unwrap();
}

fn plumb_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("PLUMB_BIN") {
        return PathBuf::from(p);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    target.join("release/plumb")
}

const ORAS_PUSH: &str = r#"
import os, sys, time
from oras.client import OrasClient
target, path = sys.argv[1], sys.argv[2]
os.chdir(os.path.dirname(path))
c = OrasClient(insecure=True)
t = time.perf_counter()
c.push(target=target, files=[os.path.basename(path)], quiet=True)
print(time.perf_counter() - t)
"#;

fn main() {
    let runs: usize = std::env::args()
        .nth(1)
        .map(|n| n.parse().expect("runs"))
        .unwrap_or(7);
    let plumb = plumb_bin();
    assert!(
        plumb.exists(),
        "{} is missing: cargo build --release --bin plumb (or set PLUMB_BIN)",
        plumb.display()
    );
    let reg = Registry::start(RegistryOptions::default()).unwrap();
    let (mut ours, mut theirs, mut theirs_inproc) = (Vec::new(), Vec::new(), Vec::new());
    for run in 0..runs {
        let work = tempfile::tempdir().unwrap();
        let a = work.path().join("plumb-src");
        let b = work.path().join("oras-src");
        fleet(&a, run * 2);
        fleet(&b, run * 2 + 1);

        let t = Instant::now();
        let out = Command::new(&plumb)
            .args([
                "push",
                "artifact",
                &reg.oci_url(&format!("bench/plumb:r{run}")),
            ])
            .arg("--path")
            .arg(&a)
            .args(["--source", "https://example.com/fleet.git"])
            .args(["--revision", &format!("main@sha1:{run:040}")])
            .arg("--insecure-registry")
            .output()
            .unwrap();
        ours.push(t.elapsed());
        assert!(
            out.status.success(),
            "plumb: {}",
            String::from_utf8_lossy(&out.stderr)
        );

        let t = Instant::now();
        let out = Command::new("python3")
            .args([
                "-c",
                ORAS_PUSH,
                &format!("{}/bench/oras:r{run}", reg.host()),
            ])
            .arg(&b)
            .output()
            .expect("python3 with PyPI 'oras' (scripts/install-deps.sh)");
        theirs.push(t.elapsed());
        assert!(
            out.status.success(),
            "oras: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let secs: f64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
        theirs_inproc.push(Duration::from_secs_f64(secs));
    }
    let (p, o, oi) = (
        median(ours.clone()),
        median(theirs.clone()),
        median(theirs_inproc),
    );
    println!("push of a {FILES}-file directory, {runs} runs, one local registry:");
    println!("  plumb push artifact:       median {p:?}  all {ours:?}");
    println!("  oras push (python):        median {o:?}  all {theirs:?}");
    println!("  oras push, in-process only median {oi:?}");
    println!(
        "  ratio oras/plumb: {:.1}x (process), {:.1}x (oras in-process vs plumb process)",
        o.as_secs_f64() / p.as_secs_f64(),
        oi.as_secs_f64() / p.as_secs_f64()
    );
}
