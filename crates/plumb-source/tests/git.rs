//! Fetch, resolve, checkout and archive against real git servers on loopback.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use plumb_source::artifact::{Limits, ObjectKey, Storage};

const KEY: ObjectKey<'static> = ObjectKey {
    kind: "GitRepository",
    namespace: "ns",
    name: "repo",
};
use plumb_source::git::{self, FetchOptions, FetchResult, GitAuth, GitReference};
use plumb_source::{ErrorKind, SourceError};
use plumb_testing::git::{
    GitHttpServer, HttpAuth, SshServer, StallServer, TestRepo, TlsMaterial, free_port, secret,
};

fn opts(url: &str, reference: GitReference, auth: GitAuth, cache: &Path) -> FetchOptions {
    FetchOptions {
        url: url.to_string(),
        reference,
        auth,
        timeout: Duration::from_secs(30),
        cache_dir: cache.join("cache.git"),
        limits: git::FetchLimits::default(),
        sparse: Vec::new(),
    }
}

fn branch(b: &str) -> GitReference {
    GitReference {
        branch: Some(b.to_string()),
        ..Default::default()
    }
}

fn fetch(url: &str, r: GitReference, cache: &Path) -> Result<FetchResult, SourceError> {
    git::fetch(&opts(url, r, GitAuth::none(), cache))
}

/// master: c1 (v1.0.0), c2 (v1.1.0 annotated, v2.0.0-rc.1), c3; dev: d1 on c2.
struct Fixture {
    _dir: tempfile::TempDir,
    repo: TestRepo,
    server: GitHttpServer,
    c1: String,
    c2: String,
    c3: String,
    d1: String,
}

fn fixture(auth: HttpAuth) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let repo = TestRepo::init(dir.path(), "repo");
    let c1 = repo.commit(&[("deploy/app.yaml", "v: 1\n")], "one");
    repo.tag("v1.0.0");
    let c2 = repo.commit(&[("deploy/app.yaml", "v: 2\n")], "two");
    repo.tag_annotated("v1.1.0", "release 1.1.0");
    repo.tag("v2.0.0-rc.1");
    repo.checkout_new_branch("dev");
    let d1 = repo.commit(&[("dev.yaml", "dev\n")], "dev one");
    repo.checkout("master");
    let c3 = repo.commit(&[("deploy/app.yaml", "v: 3\n")], "three");
    let server = GitHttpServer::start(dir.path(), auth);
    Fixture {
        _dir: dir,
        repo,
        server,
        c1,
        c2,
        c3,
        d1,
    }
}

#[test]
fn every_ref_kind_resolves_as_flux() {
    let f = fixture(HttpAuth::Anonymous);
    let url = f.server.url("repo");
    let cache = tempfile::tempdir().unwrap();
    let cases: Vec<(GitReference, String, &str)> = vec![
        (
            GitReference::default(),
            format!("master@sha1:{}", f.c3),
            "refs/heads/master",
        ),
        (
            branch("dev"),
            format!("dev@sha1:{}", f.d1),
            "refs/heads/dev",
        ),
        (
            GitReference {
                tag: Some("v1.0.0".into()),
                ..Default::default()
            },
            format!("v1.0.0@sha1:{}", f.c1),
            "refs/tags/v1.0.0",
        ),
        (
            GitReference {
                tag: Some("v1.1.0".into()),
                ..Default::default()
            },
            format!("v1.1.0@sha1:{}", f.c2),
            "refs/tags/v1.1.0",
        ),
        (
            GitReference {
                semver: Some(">=1.0.0 <2.0.0".into()),
                ..Default::default()
            },
            format!("v1.1.0@sha1:{}", f.c2),
            "refs/tags/v1.1.0",
        ),
        (
            GitReference {
                semver: Some("^2.0.0-0".into()),
                ..Default::default()
            },
            format!("v2.0.0-rc.1@sha1:{}", f.c2),
            "refs/tags/v2.0.0-rc.1",
        ),
        (
            GitReference {
                name: Some("refs/heads/dev".into()),
                ..Default::default()
            },
            format!("refs/heads/dev@sha1:{}", f.d1),
            "refs/heads/dev",
        ),
        (
            GitReference {
                commit: Some(f.c1.clone()),
                ..Default::default()
            },
            format!("sha1:{}", f.c1),
            "",
        ),
        (
            GitReference {
                commit: Some(f.c2.clone()),
                branch: Some("master".into()),
                ..Default::default()
            },
            format!("master@sha1:{}", f.c2),
            "refs/heads/master",
        ),
        // Precedence: commit > name > semver > tag > branch.
        (
            GitReference {
                commit: Some(f.c1.clone()),
                name: Some("refs/heads/dev".into()),
                ..Default::default()
            },
            format!("sha1:{}", f.c1),
            "",
        ),
        (
            GitReference {
                name: Some("refs/tags/v1.0.0".into()),
                semver: Some("*".into()),
                tag: Some("v1.1.0".into()),
                branch: Some("dev".into()),
                ..Default::default()
            },
            format!("refs/tags/v1.0.0@sha1:{}", f.c1),
            "refs/tags/v1.0.0",
        ),
        (
            GitReference {
                semver: Some("~1.0".into()),
                tag: Some("v1.1.0".into()),
                ..Default::default()
            },
            format!("v1.0.0@sha1:{}", f.c1),
            "refs/tags/v1.0.0",
        ),
        (
            GitReference {
                tag: Some("v1.0.0".into()),
                branch: Some("dev".into()),
                ..Default::default()
            },
            format!("v1.0.0@sha1:{}", f.c1),
            "refs/tags/v1.0.0",
        ),
    ];
    for (r, want, reference) in cases {
        let got = fetch(&url, r.clone(), cache.path()).unwrap_or_else(|e| panic!("{r:?}: {e}"));
        assert_eq!(got.revision, want, "{r:?}");
        assert_eq!(got.reference, reference, "{r:?}");
    }
    // Commit metadata and a checkout of the resolved tree.
    let o = opts(&url, GitReference::default(), GitAuth::none(), cache.path());
    let res = git::fetch(&o).unwrap();
    assert_eq!(res.commit.message.trim(), "three");
    assert_eq!(res.commit.author.email, "test@plumb.invalid");
    let out = tempfile::tempdir().unwrap();
    git::checkout(&o, &res.commit.id, &out.path().join("tree"), false).unwrap();
    assert_eq!(
        std::fs::read_to_string(out.path().join("tree/deploy/app.yaml")).unwrap(),
        "v: 3\n"
    );
    assert!(!out.path().join("tree/dev.yaml").exists());
}

#[test]
fn missing_refs_and_bad_input_are_classified() {
    let f = fixture(HttpAuth::Anonymous);
    let url = f.server.url("repo");
    let cache = tempfile::tempdir().unwrap();
    for r in [
        branch("nope"),
        GitReference {
            tag: Some("v9".into()),
            ..Default::default()
        },
        GitReference {
            semver: Some(">=5".into()),
            ..Default::default()
        },
        GitReference {
            name: Some("refs/heads/nope".into()),
            ..Default::default()
        },
        GitReference {
            commit: Some("0123456789012345678901234567890123456789".into()),
            ..Default::default()
        },
    ] {
        let e = fetch(&url, r.clone(), cache.path()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::RefNotFound, "{r:?}: {e}");
    }
    for r in [
        GitReference {
            semver: Some(">= x.y.z.w".into()),
            ..Default::default()
        },
        GitReference {
            name: Some("heads/main".into()),
            ..Default::default()
        },
        GitReference {
            commit: Some("zzz".into()),
            ..Default::default()
        },
        branch("bad..name"),
    ] {
        let e = fetch(&url, r.clone(), cache.path()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{r:?}: {e}");
    }
    let e = fetch(
        &f.server.url("no-such-repo"),
        GitReference::default(),
        cache.path(),
    )
    .unwrap_err();
    assert_ne!(e.kind(), ErrorKind::Internal, "{e}");
}

#[test]
fn unchanged_remote_transfers_no_pack_and_changes_are_followed() {
    let f = fixture(HttpAuth::Anonymous);
    let url = f.server.url("repo");
    let cache = tempfile::tempdir().unwrap();
    let first = fetch(&url, GitReference::default(), cache.path()).unwrap();
    assert!(first.fetched && first.received_objects > 0);
    f.server.clear_requests();
    let again = fetch(&url, GitReference::default(), cache.path()).unwrap();
    assert_eq!(again.revision, first.revision);
    assert!(!again.fetched);
    assert_eq!(again.received_objects, 0);
    assert_eq!(f.server.upload_pack_posts(), 0, "{:?}", f.server.requests());
    assert_eq!(f.server.requests().len(), 1, "{:?}", f.server.requests());

    // A commit already cached needs no network at all.
    f.server.clear_requests();
    let c = fetch(
        &url,
        GitReference {
            commit: Some(f.c3.clone()),
            ..Default::default()
        },
        cache.path(),
    )
    .unwrap();
    assert!(!c.fetched);
    assert!(f.server.requests().is_empty());

    // New commit: fetched incrementally.
    let c4 = f.repo.commit(&[("new.yaml", "n\n")], "four");
    let next = fetch(&url, GitReference::default(), cache.path()).unwrap();
    assert_eq!(next.revision, format!("master@sha1:{c4}"));
    assert!(next.fetched);
    assert!(
        next.received_objects < 10,
        "incremental: {}",
        next.received_objects
    );

    // Force-push: the branch is rewritten onto c1.
    let forced = f
        .repo
        .force_push(&f.c1, &[("forced.yaml", "f\n")], "forced");
    let after = fetch(&url, GitReference::default(), cache.path()).unwrap();
    assert_eq!(after.revision, format!("master@sha1:{forced}"));

    // Moved tag.
    let tag = GitReference {
        tag: Some("v1.0.0".into()),
        ..Default::default()
    };
    assert_eq!(
        fetch(&url, tag.clone(), cache.path()).unwrap().commit.id,
        f.c1
    );
    f.repo.move_tag("v1.0.0", &forced);
    assert_eq!(fetch(&url, tag, cache.path()).unwrap().commit.id, forced);

    // Deleted branch: a clear RefNotFound, even though the cache still holds it.
    assert_eq!(
        fetch(&url, branch("dev"), cache.path()).unwrap().commit.id,
        f.d1
    );
    f.repo.delete_branch("dev");
    let e = fetch(&url, branch("dev"), cache.path()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::RefNotFound, "{e}");
    assert!(e.to_string().contains("branch 'dev'"), "{e}");
}

const PASSWORD: &str = "pa55-w0rd-very-secret";
const TOKEN: &str = "tok-abcdef-0123456789-secret";

fn assert_no_secret(e: &SourceError, secrets: &[&str]) {
    let shown = format!("{e} {e:?}");
    for s in secrets {
        assert!(!shown.contains(s), "secret leaked in: {shown}");
        for line in s
            .lines()
            .filter(|l| l.len() >= 8 && !l.starts_with("-----"))
        {
            assert!(!shown.contains(line), "secret line leaked in: {shown}");
        }
    }
}

#[test]
fn basic_auth() {
    let f = fixture(HttpAuth::Basic {
        username: "alice".into(),
        password: PASSWORD.into(),
    });
    let url = f.server.url("repo");
    let cache = tempfile::tempdir().unwrap();
    let good =
        GitAuth::from_secret(&secret(&[("username", "alice"), ("password", PASSWORD)])).unwrap();
    let r = git::fetch(&opts(&url, GitReference::default(), good, cache.path())).unwrap();
    assert_eq!(r.commit.id, f.c3);

    let wrong = GitAuth::from_secret(&secret(&[
        ("username", "alice"),
        ("password", "not-the-password"),
    ]))
    .unwrap();
    let e = git::fetch(&opts(&url, GitReference::default(), wrong, cache.path())).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AuthFailed, "{e}");
    assert_no_secret(&e, &[PASSWORD, "not-the-password"]);

    let e = git::fetch(&opts(
        &url,
        GitReference::default(),
        GitAuth::none(),
        cache.path(),
    ))
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AuthFailed, "{e}");

    // Credentials in the URL never show up in errors.
    let with_userinfo = url.replace("http://", &format!("http://alice:{PASSWORD}@"));
    let e = fetch(&with_userinfo, branch("nope"), cache.path()).unwrap_err();
    assert_no_secret(&e, &[PASSWORD]);
}

#[test]
fn bearer_token() {
    let f = fixture(HttpAuth::Bearer(TOKEN.into()));
    let url = f.server.url("repo");
    let cache = tempfile::tempdir().unwrap();
    let good = GitAuth::from_secret(&secret(&[("bearerToken", TOKEN)])).unwrap();
    let r = git::fetch(&opts(
        &url,
        GitReference::default(),
        good.clone(),
        cache.path(),
    ))
    .unwrap();
    assert_eq!(r.commit.id, f.c3);
    // Semver needs the ref listing, which must carry the token too.
    let sv = GitReference {
        semver: Some("1.x".into()),
        ..Default::default()
    };
    let r = git::fetch(&opts(&url, sv, good, cache.path())).unwrap();
    assert_eq!(r.commit.id, f.c2);

    let revoked = GitAuth::from_secret(&secret(&[("bearerToken", "revoked-token-value")])).unwrap();
    let e = git::fetch(&opts(&url, GitReference::default(), revoked, cache.path())).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AuthFailed, "{e}");
    assert_no_secret(&e, &[TOKEN, "revoked-token-value"]);
}

#[test]
fn ssh_with_known_hosts() {
    let dir = tempfile::tempdir().unwrap();
    let repo = TestRepo::init(dir.path(), "repo");
    let c1 = repo.commit(&[("a.yaml", "a\n")], "one");
    repo.tag("v1.0.0");
    let sshd = SshServer::start();
    let url = sshd.url(&repo.path);
    let cache = tempfile::tempdir().unwrap();
    let mut secrets = vec![
        sshd.identity.as_str(),
        sshd.identity_encrypted.as_str(),
        SshServer::IDENTITY_PASSPHRASE,
    ];

    let auth = |pairs: &[(&str, &str)]| GitAuth::from_secret(&secret(pairs)).unwrap();
    let plain = auth(&[
        ("identity", &sshd.identity),
        ("known_hosts", &sshd.known_hosts),
    ]);
    let r = git::fetch(&opts(
        &url,
        GitReference::default(),
        plain.clone(),
        cache.path(),
    ))
    .unwrap();
    assert_eq!(r.revision, format!("master@sha1:{c1}"));
    let again = git::fetch(&opts(&url, GitReference::default(), plain, cache.path())).unwrap();
    assert!(!again.fetched);

    let enc = auth(&[
        ("identity", &sshd.identity_encrypted),
        ("password", SshServer::IDENTITY_PASSPHRASE),
        ("known_hosts", &sshd.known_hosts_hashed),
    ]);
    let sv = GitReference {
        semver: Some(">=1".into()),
        ..Default::default()
    };
    let r = git::fetch(&opts(&url, sv, enc, cache.path())).unwrap();
    assert_eq!(r.revision, format!("v1.0.0@sha1:{c1}"));

    let mut errors = Vec::new();
    // Unknown host: known_hosts names another port.
    let other = sshd
        .known_hosts
        .replace(&format!("]:{} ", sshd.port), "]:1 ");
    let e = git::fetch(&opts(
        &url,
        GitReference::default(),
        auth(&[("identity", &sshd.identity), ("known_hosts", &other)]),
        cache.path(),
    ))
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::HostUntrusted, "{e}");
    errors.push(e);
    // Wrong key for the host.
    let wrong_key = format!(
        "[127.0.0.1]:{} ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n",
        sshd.port
    );
    let e = git::fetch(&opts(
        &url,
        GitReference::default(),
        auth(&[("identity", &sshd.identity), ("known_hosts", &wrong_key)]),
        cache.path(),
    ))
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::HostUntrusted, "{e}");
    errors.push(e);
    // No known_hosts at all.
    let e = git::fetch(&opts(
        &url,
        GitReference::default(),
        auth(&[("identity", &sshd.identity)]),
        cache.path(),
    ))
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::HostUntrusted, "{e}");
    errors.push(e);
    // Key not authorized.
    let e = git::fetch(&opts(
        &url,
        GitReference::default(),
        auth(&[
            ("identity", &sshd.identity_unauthorized),
            ("known_hosts", &sshd.known_hosts),
        ]),
        cache.path(),
    ))
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AuthFailed, "{e}");
    errors.push(e);
    // Wrong passphrase.
    let e = git::fetch(&opts(
        &url,
        GitReference::default(),
        auth(&[
            ("identity", &sshd.identity_encrypted),
            ("password", "wrong-passphrase"),
            ("known_hosts", &sshd.known_hosts),
        ]),
        cache.path(),
    ))
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AuthFailed, "{e}");
    errors.push(e);
    secrets.push(&sshd.identity_unauthorized);
    secrets.push("wrong-passphrase");
    for e in &errors {
        assert_no_secret(e, &secrets);
    }
}

#[test]
fn stalling_server_times_out() {
    let stall = StallServer::start();
    let cache = tempfile::tempdir().unwrap();
    let mut o = opts(
        &stall.http_url(),
        GitReference::default(),
        GitAuth::none(),
        cache.path(),
    );
    o.timeout = Duration::from_secs(2);
    let start = Instant::now();
    let e = git::fetch(&o).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    // The abandoned worker still holds this cache: a second fetch is refused, not queued.
    let e = git::fetch(&o).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
}

#[test]
fn unreachable_host() {
    let cache = tempfile::tempdir().unwrap();
    let url = format!("http://127.0.0.1:{}/repo", free_port());
    let e = fetch(&url, GitReference::default(), cache.path()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unreachable, "{e}");
    let ssh = format!("ssh://git@127.0.0.1:{}/repo", free_port());
    let auth = GitAuth::from_secret(&secret(&[
        ("identity", "x"),
        ("known_hosts", "h ssh-ed25519 AAAA"),
    ]))
    .unwrap();
    let e = git::fetch(&opts(&ssh, GitReference::default(), auth, cache.path())).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unreachable, "{e}");
}

#[test]
fn symlink_outside_tree_and_huge_file_fail_archiving() {
    let dir = tempfile::tempdir().unwrap();
    let repo = TestRepo::init(dir.path(), "repo");
    repo.commit(&[("ok.yaml", "ok\n")], "one");
    repo.symlink("inside", "ok.yaml");
    let good = repo.commit(&[], "inside link");
    repo.symlink("escape", "../../../etc/passwd");
    let bad = repo.commit(&[], "escaping link");
    let server = GitHttpServer::start(dir.path(), HttpAuth::Anonymous);
    let cache = tempfile::tempdir().unwrap();
    let storage_dir = tempfile::tempdir().unwrap();
    let storage = Storage::new(storage_dir.path(), "localhost:1");
    let build = |commit: &str, limits: Limits| {
        let o = opts(
            &server.url("repo"),
            GitReference {
                commit: Some(commit.into()),
                ..Default::default()
            },
            GitAuth::none(),
            cache.path(),
        );
        let r = git::fetch(&o)?;
        let work = tempfile::tempdir().unwrap();
        let tree = work.path().join("t");
        git::checkout(&o, &r.commit.id, &tree, false)?;
        storage.store_dir(KEY, &r.revision, &tree, None, limits)
    };
    let a = build(&good, Limits::default()).unwrap();
    assert!(a.size > 0);
    // Straight from the cache: the same bytes as checkout + archive.
    let o = opts(
        &server.url("repo"),
        GitReference::default(),
        GitAuth::none(),
        cache.path(),
    );
    let direct = storage
        .store_with(KEY, &a.revision, |w| {
            git::archive_commit(&o, &good, None, Limits::default(), w)
        })
        .unwrap();
    assert_eq!(direct.digest, a.digest);
    let e = git::archive_commit(&o, &bad, None, Limits::default(), &mut Vec::new()).unwrap_err();
    assert!(matches!(e, SourceError::SymlinkEscapes { .. }), "{e}");
    let e = build(&bad, Limits::default()).unwrap_err();
    assert!(
        matches!(e, SourceError::SymlinkEscapes { ref path, .. } if path == "escape"),
        "{e}"
    );

    // Checkout refuses the escaping link now too; the size limit is shown without it.
    std::fs::remove_file(repo.path.join("escape")).unwrap();
    repo.write_bytes("big.bin", &vec![7u8; 300_000]);
    let big = repo.commit(&[], "huge");
    let e = build(
        &big,
        Limits {
            max_file_size: 100_000,
            ..Limits::default()
        },
    )
    .unwrap_err();
    let small = Limits {
        max_file_size: 100_000,
        ..Limits::default()
    };
    let e2 = git::archive_commit(&o, &big, None, small, &mut Vec::new()).unwrap_err();
    assert!(
        matches!(e2, SourceError::TooLarge { ref path, .. } if path == "big.bin"),
        "{e2}"
    );
    assert!(
        matches!(e, SourceError::TooLarge { ref path, .. } if path == "big.bin"),
        "{e}"
    );
}

#[test]
fn submodules_are_checked_out_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let sub = TestRepo::init(dir.path(), "sub");
    sub.commit(&[("lib.yaml", "lib\n")], "sub one");
    let server = GitHttpServer::start(dir.path(), HttpAuth::Anonymous);
    let top = TestRepo::init(dir.path(), "top");
    top.commit(&[("main.yaml", "main\n")], "top one");
    plumb_testing::git::git(
        &top.path,
        &["submodule", "add", "-q", &server.url("sub"), "vendor/sub"],
    );
    let c = top.commit(&[], "add submodule");
    let cache = tempfile::tempdir().unwrap();
    let o = opts(
        &server.url("top"),
        GitReference::default(),
        GitAuth::none(),
        cache.path(),
    );
    let r = git::fetch(&o).unwrap();
    assert_eq!(r.commit.id, c);
    let out = tempfile::tempdir().unwrap();
    git::checkout(&o, &c, &out.path().join("flat"), false).unwrap();
    assert!(out.path().join("flat/vendor/sub").is_dir());
    assert!(!out.path().join("flat/vendor/sub/lib.yaml").exists());
    git::checkout(&o, &c, &out.path().join("deep"), true).unwrap();
    assert_eq!(
        std::fs::read_to_string(out.path().join("deep/vendor/sub/lib.yaml")).unwrap(),
        "lib\n"
    );
}

#[test]
fn artifact_server_serves_and_consumers_verify() {
    let src = tempfile::tempdir().unwrap();
    std::fs::write(src.path().join("k.yaml"), "kind: ConfigMap\n").unwrap();
    let root = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let storage = Storage::new(root.path(), addr.to_string());
        let a = storage
            .store_dir(KEY, "main@sha1:x", src.path(), None, Limits::default())
            .unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(plumb_source::server::serve_artifacts(
            listener,
            root.path().to_path_buf(),
            async {
                let _ = rx.await;
            },
        ));
        let out = tempfile::tempdir().unwrap();
        plumb_source::artifact::fetch_and_extract(
            &a.url,
            &a.digest,
            out.path(),
            Limits::default(),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
        assert_eq!(
            std::fs::read_to_string(out.path().join("k.yaml")).unwrap(),
            "kind: ConfigMap\n"
        );
        let bad_digest = format!("sha256:{}", "0".repeat(64));
        let e = plumb_source::artifact::fetch_and_extract(
            &a.url,
            &bad_digest,
            out.path(),
            Limits::default(),
            Duration::from_secs(10),
        )
        .await
        .unwrap_err();
        assert!(matches!(e, SourceError::DigestMismatch { .. }), "{e}");
        let traversal = format!("http://{addr}/gitrepository/ns/app/..%2f..%2f..%2fetc/passwd");
        let e = plumb_source::artifact::fetch_and_extract(
            &traversal,
            &a.digest,
            out.path(),
            Limits::default(),
            Duration::from_secs(10),
        )
        .await
        .unwrap_err();
        assert!(e.to_string().contains("404"), "{e}");
        let _ = tx.send(());
        server.await.unwrap().unwrap();
    });
}

#[test]
fn secret_fields_are_validated_without_echoing_values() {
    let e =
        GitAuth::from_secret(&secret(&[("known_hosts", "garbage-known-hosts-value")])).unwrap_err();
    assert!(!e.to_string().contains("garbage-known-hosts-value"), "{e}");
    let data: BTreeMap<String, Vec<u8>> = [("password".to_string(), vec![0xff, 0xfe])].into();
    assert_eq!(
        GitAuth::from_secret(&data).unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
}

#[test]
fn https_with_custom_ca() {
    let dir = tempfile::tempdir().unwrap();
    let repo = TestRepo::init(dir.path(), "repo");
    let c1 = repo.commit(&[("a.yaml", "a\n")], "one");
    let tls = TlsMaterial::generate();
    let server = GitHttpServer::start_tls(
        dir.path(),
        HttpAuth::Basic {
            username: "bob".into(),
            password: PASSWORD.into(),
        },
        &tls,
    );
    let url = server.url("repo");
    assert!(url.starts_with("https://"));
    let cache = tempfile::tempdir().unwrap();
    let good = GitAuth::from_secret(&secret(&[
        ("username", "bob"),
        ("password", PASSWORD),
        ("ca.crt", &tls.ca_pem),
    ]))
    .unwrap();
    let r = git::fetch(&opts(&url, GitReference::default(), good, cache.path())).unwrap();
    assert_eq!(r.commit.id, c1);

    for pairs in [
        vec![("username", "bob"), ("password", PASSWORD)],
        vec![
            ("username", "bob"),
            ("password", PASSWORD),
            ("ca.crt", tls.other_ca_pem.as_str()),
        ],
    ] {
        let auth = GitAuth::from_secret(&secret(&pairs)).unwrap();
        let e = git::fetch(&opts(&url, GitReference::default(), auth, cache.path())).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::HostUntrusted, "{e}");
        assert_no_secret(&e, &[PASSWORD]);
    }
    let e = GitAuth::from_secret(&secret(&[("ca.crt", "not a certificate")])).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    let e = GitAuth::from_secret(&secret(&[("tls.crt", "x"), ("tls.key", "y")])).unwrap();
    let e = git::fetch(&opts(&url, GitReference::default(), e, cache.path())).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
}

#[test]
fn https_with_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let repo = TestRepo::init(dir.path(), "repo");
    let c1 = repo.commit(&[("a.yaml", "a\n")], "one");
    let tls = TlsMaterial::generate();
    let server = GitHttpServer::start_mtls(
        dir.path(),
        HttpAuth::Basic {
            username: "bob".into(),
            password: PASSWORD.into(),
        },
        &tls,
    );
    let url = server.url("repo");
    let cache = tempfile::tempdir().unwrap();
    let auth = |cert: &str, key: &str, password: &str| {
        GitAuth::from_secret(&secret(&[
            ("username", "bob"),
            ("password", password),
            ("ca.crt", &tls.ca_pem),
            ("tls.crt", cert),
            ("tls.key", key),
        ]))
        .unwrap()
    };
    let good = auth(&tls.client_crt_pem, &tls.client_key_pem, PASSWORD);
    let r = git::fetch(&opts(
        &url,
        GitReference::default(),
        good.clone(),
        cache.path(),
    ))
    .unwrap();
    assert_eq!(r.commit.id, c1);
    // A new commit arrives through the same transport, incrementally.
    let c2 = repo.commit(&[("b.yaml", "b\n")], "two");
    let r = git::fetch(&opts(
        &url,
        GitReference::default(),
        good.clone(),
        cache.path(),
    ))
    .unwrap();
    assert_eq!(r.commit.id, c2);
    let out = tempfile::tempdir().unwrap();
    git::checkout(
        &opts(&url, GitReference::default(), good, cache.path()),
        &c2,
        &out.path().join("tree"),
        false,
    )
    .unwrap();
    assert!(out.path().join("tree/b.yaml").exists());

    let key_lines: Vec<&str> = tls.client_key_pem.lines().collect();
    let mut secrets = vec![PASSWORD];
    secrets.extend(key_lines.iter().copied().filter(|l| l.len() > 20));
    // Wrong password over a good certificate: the server says 401.
    let e = git::fetch(&opts(
        &url,
        GitReference::default(),
        auth(
            &tls.client_crt_pem,
            &tls.client_key_pem,
            "wrong-password-123",
        ),
        cache.path(),
    ))
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AuthFailed, "{e}");
    assert_no_secret(&e, &secrets);
    // A certificate from another CA: the TLS handshake is refused.
    let other_cache = tempfile::tempdir().unwrap();
    let e = git::fetch(&opts(
        &url,
        GitReference::default(),
        auth(
            &tls.other_client_crt_pem,
            &tls.other_client_key_pem,
            PASSWORD,
        ),
        other_cache.path(),
    ))
    .unwrap_err();
    assert!(
        e.kind() == ErrorKind::AuthFailed && e.to_string().contains("client certificate"),
        "{e}"
    );
    assert_no_secret(&e, &secrets);
    // No client certificate at all: libgit2's own transport cannot complete the handshake.
    let e = git::fetch(&opts(
        &url,
        GitReference::default(),
        GitAuth::from_secret(&secret(&[
            ("username", "bob"),
            ("password", PASSWORD),
            ("ca.crt", &tls.ca_pem),
        ]))
        .unwrap(),
        other_cache.path(),
    ))
    .unwrap_err();
    assert_no_secret(&e, &secrets);
    // A client certificate needs HTTPS.
    let e = git::fetch(&opts(
        "ssh://git@127.0.0.1:1/x",
        GitReference::default(),
        auth(&tls.client_crt_pem, &tls.client_key_pem, PASSWORD),
        other_cache.path(),
    ))
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
}
