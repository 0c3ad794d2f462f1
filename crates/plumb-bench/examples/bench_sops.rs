//! Render time of SOPS-encrypted overlays against the same overlays unencrypted, through the
//! controller's own build step (`plumb_controller::kustomization::build_decrypted`: files
//! under the path decrypted ahead on a few threads, then kustomize with the file
//! transform, then Secret data values). Trees:
//! - N Secrets (for each N given), each its own file with its own age-wrapped data key as
//!   sops writes them, plus a secretGenerator over an encrypted dotenv file;
//! - the fixture tree of real sops output (`../shared/conformance/sops/fixtures`: age,
//!   OpenPGP, dotenv, binary, patches, a component, Secret data values), without the parts
//!   no decryptor here opens (remote resource, Vault, age post-quantum).
//!
//! The unencrypted twin of each tree holds the decrypted files. Modes, interleaved run by
//! run so load drift hits them alike; each encrypted run is one reconcile (a fresh key
//! ring built from the key file, as the controller builds it):
//! - plain: the twin, no decryption;
//! - cold: a fresh data-key cache (every data key opened: X25519 / OpenPGP);
//! - warm: the cache of earlier reconciles (age/OpenPGP data keys reused);
//! - cold, one thread: cold without decrypting ahead (files decrypted as kustomize reads
//!   them, the previous behaviour's structure).
//!
//! Prints medians and the ratios to plain.
//!
//! `cargo run --release -p plumb-bench --example bench_sops [runs] [N...]` (defaults 11,
//! 500 1000).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a measurement tool: fail loudly

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use plumb_sops::{DataKeyCache, Format, KeyRing, Limits};
use serde_json::Value;

const AGE_KEY: &str = include_str!("../../plumb-sops/tests/data/keys/age.txt");
const RECIPIENT: &str = "age1l44xcng8dqj32nlv6d930qvvrny05hglzcv9qpc7kxjc6902ma4qufys29";

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/conformance/sops/fixtures")
}

fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    xs[xs.len() / 2]
}

fn secret(i: usize) -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: s-{i}\n  labels:\n    app: bench\ntype: Opaque\nstringData:\n  username: user-{i}\n  password: p4ssw0rd-{i}-lorem-ipsum\n  token: tok-{i}-0123456789abcdef\n"
    )
}

/// N encrypted Secrets and a generator over an encrypted dotenv, in `dir`.
fn secrets_tree(dir: &Path, n: usize) {
    std::fs::create_dir_all(dir.join("secrets")).unwrap();
    let mut k = String::from(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n",
    );
    for i in 0..n {
        let key: [u8; 32] = rand::random();
        let text = plumb_sops::encrypt_yaml(
            "s.yaml",
            &secret(i),
            &key,
            &[plumb_sops::Recipient::Age(RECIPIENT.into())],
            Some("^(data|stringData)$"),
        )
        .unwrap();
        std::fs::write(dir.join(format!("secrets/s-{i}.yaml")), text).unwrap();
        k.push_str(&format!("- secrets/s-{i}.yaml\n"));
    }
    let env = include_str!("../../plumb-sops/tests/data/envs/env.env");
    std::fs::write(dir.join("env.env"), env).unwrap();
    k.push_str("secretGenerator:\n- name: gen\n  envs:\n  - env.env\n");
    std::fs::write(dir.join("kustomization.yaml"), k).unwrap();
}

/// The fixture tree without what no decryptor here opens.
fn fixture_tree(dir: &Path) {
    copy_dir(&fixtures(), dir);
    std::fs::remove_dir_all(dir.join("remote")).unwrap();
    for f in ["algorithms/vault.yaml", "algorithms/age-pq.yaml"] {
        std::fs::remove_file(dir.join(f)).unwrap();
    }
    let edit = |rel: &str, from: &str| {
        let p = dir.join(rel);
        let text = std::fs::read_to_string(&p).unwrap().replace(from, "");
        std::fs::write(p, text).unwrap();
    };
    edit("kustomization.yaml", "  - remote\n");
    edit("algorithms/kustomization.yaml", "  - vault.yaml\n");
    edit("algorithms/kustomization.yaml", "  - age-pq.yaml\n");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

/// The unencrypted twin of `enc` in `plain`: every SOPS file decrypted, Secret data values
/// that are SOPS documents replaced by their plaintext.
fn plain_twin(enc: &Path, plain: &Path, ring: &KeyRing) {
    std::fs::create_dir_all(plain).unwrap();
    for e in std::fs::read_dir(enc).unwrap() {
        let e = e.unwrap();
        let dest = plain.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            plain_twin(&e.path(), &dest, ring);
            continue;
        }
        let name = e.file_name().to_string_lossy().into_owned();
        let bytes = std::fs::read(e.path()).unwrap();
        let limits = Limits::default();
        let out = match plumb_sops::decrypt(&name, Format::from_path(&name), &bytes, ring, &limits)
        {
            Ok(Some(p)) => p,
            _ if name.ends_with(".yaml") && bytes.windows(12).any(|w| w == b"kind: Secret") => {
                let text = std::str::from_utf8(&bytes).unwrap();
                let mut objs = plumb_kustomize::parse_objects(text, &name).unwrap();
                let mut n = 0;
                for o in &mut objs {
                    n += plumb_sops::decrypt_secret_data(&name, o, ring, &limits).unwrap();
                }
                if n > 0 {
                    let docs: Vec<String> = objs.iter().map(Value::to_string).collect();
                    docs.join("\n---\n").into_bytes()
                } else {
                    bytes
                }
            }
            _ => bytes,
        };
        std::fs::write(dest, out).unwrap();
    }
}

/// What one reconcile builds its ring from: the key files, parsed.
/// (The cache first, as the controller sets it: parsed OpenPGP blocks are kept there.)
fn reconcile_ring(cache: &Arc<DataKeyCache>) -> KeyRing {
    let mut ring = KeyRing::new();
    ring.set_data_key_cache(cache.clone());
    ring.add_age_identities("age.txt", AGE_KEY).unwrap();
    let pgp = std::fs::read_to_string(fixtures().join("keys/pgp.asc")).unwrap();
    ring.add_pgp_keys("pgp.asc", &pgp).unwrap();
    ring
}

fn build(dir: &Path, ring: Option<KeyRing>) -> Vec<Value> {
    let overlay = plumb_kustomize::Overlay::default();
    plumb_controller::kustomization::build_decrypted(dir, dir, &overlay, ring).unwrap()
}

/// Cold, without decrypting ahead: files decrypted one by one as kustomize reads them.
fn build_sequential(dir: &Path, ring: KeyRing) -> Vec<Value> {
    let opts = plumb_kustomize::BuildOptions {
        generate_missing_kustomization: true,
        file_transform: Some(plumb_controller::kustomization::file_transform(
            ring.clone(),
        )),
        ..Default::default()
    };
    let overlay = plumb_kustomize::Overlay::default();
    let mut objs = plumb_kustomize::build_with_overlay(dir, dir, &opts, &overlay).unwrap();
    for o in &mut objs {
        plumb_sops::decrypt_secret_data("o", o, &ring, &Limits::default()).unwrap();
    }
    objs
}

fn time<T>(times: &mut Vec<Duration>, f: impl FnOnce() -> T) -> T {
    let t = Instant::now();
    let out = f();
    times.push(t.elapsed());
    out
}

/// Runs the four modes `runs` times, interleaved, and prints one line per tree.
fn bench(label: &str, enc: &Path, plain: &Path, runs: usize) {
    let warm_cache = Arc::new(DataKeyCache::default());
    let expected = build(plain, None);
    // Warm the page cache, the allocator and the warm mode's data keys.
    assert_eq!(build(enc, Some(reconcile_ring(&warm_cache))), expected);
    let (mut p, mut c, mut w, mut s) = (vec![], vec![], vec![], vec![]);
    for _ in 0..runs {
        time(&mut p, || build(plain, None));
        let cold = time(&mut c, || {
            build(
                enc,
                Some(reconcile_ring(&Arc::new(DataKeyCache::default()))),
            )
        });
        let warm = time(&mut w, || build(enc, Some(reconcile_ring(&warm_cache))));
        let seq = time(&mut s, || {
            build_sequential(enc, reconcile_ring(&Arc::new(DataKeyCache::default())))
        });
        assert!(cold == expected && warm == expected && seq == expected);
    }
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let (p, c, w, s) = (ms(median(p)), ms(median(c)), ms(median(w)), ms(median(s)));
    let pct = |x: f64| format!("{:+.0}%", (x / p - 1.0) * 100.0);
    println!(
        "{label:<24} {:>5} {p:>8.1} {c:>8.1} {:>6} {w:>8.1} {:>6} {s:>8.1} {:>6}",
        expected.len(),
        pct(c),
        pct(w),
        pct(s),
    );
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let runs = args.first().copied().unwrap_or(11);
    let sizes = if args.len() > 1 {
        args[1..].to_vec()
    } else {
        vec![500, 1000]
    };
    let tmp = tempfile::tempdir().unwrap();
    let ring = reconcile_ring(&Arc::new(DataKeyCache::default()));
    println!(
        "medians of {runs} runs, ms; % = added to plain; cores: {}",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!(
        "{:<24} {:>5} {:>8} {:>8} {:>6} {:>8} {:>6} {:>8} {:>6}",
        "tree", "objs", "plain", "cold", "", "warm", "", "cold 1t", ""
    );
    let fx = tmp.path().join("fixtures");
    fixture_tree(&fx.join("enc"));
    plain_twin(&fx.join("enc"), &fx.join("plain"), &ring);
    bench(
        "sops fixture tree",
        &fx.join("enc"),
        &fx.join("plain"),
        runs,
    );
    for n in sizes {
        let d = tmp.path().join(format!("n{n}"));
        secrets_tree(&d.join("enc"), n);
        plain_twin(&d.join("enc"), &d.join("plain"), &ring);
        bench(
            &format!("{n} Secrets + generator"),
            &d.join("enc"),
            &d.join("plain"),
            runs,
        );
    }
}
