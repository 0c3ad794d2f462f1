//! Render time of a Kustomization of N SOPS-encrypted Secrets (age, one data key per file,
//! as sops writes them) against the same N Secrets unencrypted, through the controller's
//! own build path (plumb-kustomize with `plumb_controller::kustomization::file_transform`).
//! Both trees also carry a secretGenerator over an encrypted dotenv file. Prints medians and
//! the ratio.
//!
//! `cargo run --release -p plumb-bench --example bench_sops [N] [runs]` (defaults 1000, 15).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a measurement tool: fail loudly

use std::path::Path;
use std::time::{Duration, Instant};

const AGE_KEY: &str = include_str!("../../plumb-sops/tests/data/keys/age.txt");
const RECIPIENT: &str = "age1l44xcng8dqj32nlv6d930qvvrny05hglzcv9qpc7kxjc6902ma4qufys29";

fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    xs[xs.len() / 2]
}

fn secret(i: usize) -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: s-{i}\n  labels:\n    app: bench\ntype: Opaque\nstringData:\n  username: user-{i}\n  password: p4ssw0rd-{i}-lorem-ipsum\n  token: tok-{i}-0123456789abcdef\n"
    )
}

fn tree(dir: &Path, n: usize, encrypted: bool) {
    std::fs::create_dir_all(dir.join("secrets")).unwrap();
    let mut k = String::from(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n",
    );
    for i in 0..n {
        let plain = secret(i);
        let text = if encrypted {
            let key: [u8; 32] = rand::random();
            plumb_sops::encrypt_yaml(
                "s.yaml",
                &plain,
                &key,
                &[plumb_sops::Recipient::Age(RECIPIENT.into())],
                Some("^(data|stringData)$"),
            )
            .unwrap()
        } else {
            plain
        };
        std::fs::write(dir.join(format!("secrets/s-{i}.yaml")), text).unwrap();
        k.push_str(&format!("- secrets/s-{i}.yaml\n"));
    }
    // The encrypted dotenv of the fixture tree (real sops output); plain in the other tree.
    let env = if encrypted {
        include_str!("../../plumb-sops/tests/data/envs/env.env").to_string()
    } else {
        "key=value\n".to_string()
    };
    std::fs::write(dir.join("env.env"), env).unwrap();
    k.push_str("secretGenerator:\n- name: gen\n  envs:\n  - env.env\n");
    std::fs::write(dir.join("kustomization.yaml"), k).unwrap();
}

fn time_builds(
    dir: &Path,
    transform: Option<plumb_kustomize::FileTransform>,
    runs: usize,
) -> (Duration, usize) {
    let opts = plumb_kustomize::BuildOptions {
        file_transform: transform,
        ..Default::default()
    };
    let mut times = Vec::new();
    let mut count = 0;
    for _ in 0..runs {
        let t = Instant::now();
        let objs = plumb_kustomize::build(dir, dir, &opts).unwrap();
        times.push(t.elapsed());
        count = objs.len();
    }
    (median(times), count)
}

/// Decrypting every Secret file alone (no render), sequentially.
fn time_decrypt_only(dir: &Path, n: usize, ring: &plumb_sops::KeyRing, runs: usize) -> Duration {
    let files: Vec<Vec<u8>> = (0..n)
        .map(|i| std::fs::read(dir.join(format!("secrets/s-{i}.yaml"))).unwrap())
        .collect();
    let limits = plumb_sops::Limits::default();
    let mut times = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        for f in &files {
            let fresh = plumb_sops::KeyRing::new();
            let mut r = fresh;
            r.extend(ring);
            plumb_sops::decrypt("s.yaml", plumb_sops::Format::Yaml, f, &r, &limits)
                .unwrap()
                .unwrap();
        }
        times.push(t.elapsed());
    }
    median(times)
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let n = args.first().copied().unwrap_or(1000);
    let runs = args.get(1).copied().unwrap_or(15);
    let tmp = tempfile::tempdir().unwrap();
    let plain = tmp.path().join("plain");
    let enc = tmp.path().join("enc");
    tree(&plain, n, false);
    tree(&enc, n, true);
    let mut ring = plumb_sops::KeyRing::new();
    ring.add_age_identities("age.txt", AGE_KEY).unwrap();
    let transform = || {
        Some(plumb_controller::kustomization::file_transform(
            ring.clone(),
        ))
    };
    // Warm the page cache and the allocator once each.
    time_builds(&plain, None, 1);
    time_builds(&enc, transform(), 1);
    let (base, c1) = time_builds(&plain, None, runs);
    let (with_transform, _) = time_builds(&plain, transform(), runs);
    let (decrypt, c2) = time_builds(&enc, transform(), runs);
    let decrypt_only = time_decrypt_only(&enc, n, &ring, runs);
    assert_eq!(c1, c2);
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!("{n} Secrets + 1 generated, {runs} runs each, medians:");
    println!(
        "  unencrypted:                  {:8.1} ms ({c1} objects)",
        ms(base)
    );
    println!(
        "  unencrypted, with transform:  {:8.1} ms",
        ms(with_transform)
    );
    println!("  SOPS age (one data key/file): {:8.1} ms", ms(decrypt));
    println!(
        "  of which decryption alone:    {:8.1} ms (plumb_sops::decrypt of every file, one thread)",
        ms(decrypt_only)
    );
    println!(
        "  ratio encrypted/unencrypted: {:.2}x (+{:.0}%)",
        ms(decrypt) / ms(base),
        (ms(decrypt) / ms(base) - 1.0) * 100.0
    );
}
