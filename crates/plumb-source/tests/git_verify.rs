//! GitRepository `verify` against commits and tags signed by the real `gpg` and `ssh-keygen`
//! through `git commit -S` / `git tag -s`, fetched from a real git server: every mode
//! (HEAD, Tag, TagAndHEAD) with OpenPGP and SSH keys; unsigned, foreign-signed and
//! lightweight-tag cases fail with a clear message.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use plumb_source::ErrorKind;
use plumb_source::git::verify::{TrustedKeys, VerifyMode, verify_fetched};
use plumb_source::git::{self, FetchOptions, GitAuth, GitReference};
use plumb_testing::git::{GitHttpServer, HttpAuth, TestRepo};
use plumb_testing::signing::Signer;

fn keys(signers: &[&Signer]) -> TrustedKeys {
    let data: BTreeMap<String, Vec<u8>> = signers
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let (k, v) = s.secret_entry(&format!("key{i}"));
            (k, v.into_bytes())
        })
        .collect();
    TrustedKeys::from_secret(&data).unwrap()
}

fn opts(url: &str, reference: GitReference, cache: &std::path::Path) -> FetchOptions {
    FetchOptions {
        url: url.to_string(),
        reference,
        auth: GitAuth::none(),
        timeout: Duration::from_secs(30),
        cache_dir: cache.join("cache.git"),
        limits: git::FetchLimits::default(),
        sparse: Vec::new(),
    }
}

fn tag(t: &str) -> GitReference {
    GitReference {
        tag: Some(t.into()),
        ..Default::default()
    }
}

#[test]
fn commits_and_tags_verify_with_pgp_and_ssh_keys() {
    let dir = tempfile::tempdir().unwrap();
    let gpg = Signer::gpg(&dir.path().join("a"), "alice@plumb.invalid");
    let other = Signer::gpg(&dir.path().join("b"), "mallory@plumb.invalid");
    let ssh = Signer::ssh(&dir.path().join("ssh"));
    let root = dir.path().join("repos");
    let repo = TestRepo::init(&root, "repo");
    let c1 = gpg.commit(&repo, &[("a.yaml", "a: 1\n")], "signed by alice");
    gpg.tag(&repo, "v1");
    let c2 = ssh.commit(&repo, &[("a.yaml", "a: 2\n")], "signed with ssh");
    ssh.tag(&repo, "v2");
    let c3 = repo.commit(&[("a.yaml", "a: 3\n")], "unsigned");
    repo.tag("v3-light");
    let c4 = other.commit(&repo, &[("a.yaml", "a: 4\n")], "signed by mallory");
    let server = GitHttpServer::start(&root, HttpAuth::Anonymous);
    let url = server.url("repo");
    let trusted = keys(&[&gpg, &ssh]);

    let check = |r: GitReference, mode: VerifyMode| {
        let cache = tempfile::tempdir().unwrap();
        let o = opts(&url, r, cache.path());
        let fetched = git::fetch(&o).unwrap();
        (
            fetched.commit.id.clone(),
            verify_fetched(&o, &fetched, mode, &trusted),
        )
    };

    // OpenPGP: the tag and the commit it points to.
    let (id, r) = check(tag("v1"), VerifyMode::TagAndHead);
    assert_eq!(id, c1);
    let msg = r.unwrap();
    let Signer::Gpg { fingerprint, .. } = &gpg else {
        unreachable!()
    };
    assert!(
        msg.contains("tag 'v1' with key") && msg.contains(fingerprint.as_str()),
        "{msg}"
    );
    assert!(msg.contains(&format!("commit '{c1}' with key")), "{msg}");
    // SSH signatures (gpg.format=ssh).
    let (id, r) = check(tag("v2"), VerifyMode::TagAndHead);
    assert_eq!(id, c2);
    let msg = r.unwrap();
    assert!(msg.contains("key0") || msg.contains("key1"), "{msg}");
    assert!(msg.contains("SHA256:"), "{msg}");

    // Unsigned HEAD, foreign signature, lightweight tag, Tag mode on a branch.
    let branch = GitReference {
        branch: Some("master".into()),
        ..Default::default()
    };
    let (id, r) = check(branch.clone(), VerifyMode::Head);
    assert_eq!(id, c4);
    let e = r.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unverified);
    assert!(e.to_string().contains("no trusted OpenPGP key"), "{e}");
    let commit = GitReference {
        commit: Some(c3.clone()),
        ..Default::default()
    };
    let e = check(commit, VerifyMode::Head).1.unwrap_err().to_string();
    assert!(e.contains("not signed"), "{e}");
    let e = check(tag("v3-light"), VerifyMode::Tag)
        .1
        .unwrap_err()
        .to_string();
    assert!(e.contains("not an annotated tag"), "{e}");
    let e = check(branch, VerifyMode::Tag).1.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
}
