//! `cargo bench -p plumb-source --bench verify`: the cost of GitRepository `verify`, side by
//! side with `git verify-commit` (git + gpg / ssh-keygen, the reference) on the same signed
//! commit, and with the unchanged-remote poll it is added to. Prints medians and ratios.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use plumb_source::git::verify::{TrustedKeys, VerifyMode, verify_fetched};
use plumb_source::git::{self, FetchOptions, GitAuth, GitReference};
use plumb_testing::git::{GitHttpServer, HttpAuth, TestRepo};
use plumb_testing::signing::Signer;

const RUNS: usize = 41;

fn median(mut v: Vec<Duration>) -> f64 {
    v.sort();
    v[v.len() / 2].as_secs_f64() * 1000.0
}

fn time(mut f: impl FnMut()) -> f64 {
    median(
        (0..RUNS)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed()
            })
            .collect(),
    )
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("repos");
    let repo = TestRepo::init(&root, "repo");
    let signers = [
        (
            "OpenPGP",
            Signer::gpg(&dir.path().join("gpg"), "bench@plumb.invalid"),
        ),
        ("SSH", Signer::ssh(&dir.path().join("ssh"))),
    ];
    let server = GitHttpServer::start(&root, HttpAuth::Anonymous);
    let allowed = dir.path().join("allowed_signers");
    println!(
        "{:<8} {:>12} {:>16} {:>8} {:>14}",
        "kind", "plumb (ms)", "git verify (ms)", "ratio", "poll (ms)"
    );
    for (kind, signer) in &signers {
        let commit = signer.commit(&repo, &[("a.yaml", kind)], kind);
        let (k, v) = signer.secret_entry("bench");
        let keys =
            TrustedKeys::from_secret(&BTreeMap::from([(k, v.clone().into_bytes())])).unwrap();
        let cache = tempfile::tempdir().unwrap();
        let o = FetchOptions {
            url: server.url("repo"),
            reference: GitReference::default(),
            auth: GitAuth::none(),
            timeout: Duration::from_secs(60),
            cache_dir: cache.path().join("c.git"),
            limits: git::FetchLimits::default(),
            sparse: Vec::new(),
        };
        let fetched = git::fetch(&o).unwrap();
        assert_eq!(fetched.commit.id, commit);
        let ours = time(|| {
            verify_fetched(&o, &fetched, VerifyMode::Head, &keys).unwrap();
        });
        let poll = time(|| {
            git::fetch(&o).unwrap();
        });
        let mut reference = Command::new("git");
        reference
            .current_dir(&repo.path)
            .env("GIT_CONFIG_GLOBAL", "/dev/null");
        match signer {
            Signer::Gpg { home, .. } => {
                reference.env("GNUPGHOME", home);
            }
            Signer::Ssh { public, .. } => {
                std::fs::write(&allowed, format!("test@plumb.invalid {public}\n")).unwrap();
                reference.args([
                    "-c",
                    &format!("gpg.ssh.allowedSignersFile={}", allowed.display()),
                ]);
            }
        }
        reference.args(["verify-commit", &commit]);
        let theirs = time(|| {
            let out = reference.output().unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        });
        println!(
            "{kind:<8} {ours:>12.2} {theirs:>16.2} {:>7.1}x {poll:>14.2}",
            theirs / ours
        );
    }
}
