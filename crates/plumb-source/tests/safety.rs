//! Hostile repositories against real git servers: committed symlinks out of the checkout,
//! oversized packs, and submodules pointing at other hosts or at the local filesystem.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::Duration;

use plumb_source::SourceError;
use plumb_source::artifact::{Limits, ObjectKey, Storage};
use plumb_source::git::{self, FetchLimits, FetchOptions, GitAuth, GitReference};
use plumb_testing::git::{GitHttpServer, HttpAuth, TestRepo, git, secret};

const KEY: ObjectKey<'static> = ObjectKey {
    kind: "GitRepository",
    namespace: "ns",
    name: "repo",
};

fn opts(url: &str, auth: GitAuth, cache: &Path, limits: FetchLimits) -> FetchOptions {
    FetchOptions {
        url: url.to_string(),
        reference: GitReference::default(),
        auth,
        timeout: Duration::from_secs(30),
        cache_dir: cache.join("cache.git"),
        limits,
        sparse: Vec::new(),
    }
}

/// An artifact of another GitRepository to include, stored as the controller stores it.
fn included_artifact(storage: &Storage) -> std::path::PathBuf {
    let src = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(src.path().join("sub")).unwrap();
    std::fs::write(src.path().join("sub/inc.yaml"), "included: true\n").unwrap();
    let key = ObjectKey {
        name: "other",
        ..KEY
    };
    let a = storage
        .store_dir(key, "main@sha1:x", src.path(), None, Limits::default())
        .unwrap();
    storage.local_path(&a)
}

/// The GitRepository pipeline: fetch, checkout, includes (`to` under the checkout), archive.
fn build(
    o: &FetchOptions,
    storage: &Storage,
    include: &Path,
    to: &str,
) -> Result<String, SourceError> {
    let r = git::fetch(o)?;
    let work = tempfile::tempdir().unwrap();
    git::checkout(o, &r.commit.id, work.path(), false)?;
    plumb_source::fsjoin::copy_include(include, None, work.path(), to)?;
    let a = storage.store_dir(KEY, &r.revision, work.path(), None, Limits::default())?;
    Ok(a.path)
}

#[test]
fn include_never_writes_or_deletes_through_a_committed_symlink() {
    let dir = tempfile::tempdir().unwrap();
    // Another tenant's artifacts, outside the checkout.
    let victim = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(victim.path().join("sub")).unwrap();
    std::fs::write(victim.path().join("sub/keep.tar.gz"), "tenant artifact").unwrap();
    let repo = TestRepo::init(dir.path(), "repo");
    repo.commit(&[("app.yaml", "a: 1\n"), ("real/x.yaml", "x: 1\n")], "one");
    repo.symlink("inside", "real");
    let good = repo.commit(&[], "a link inside");
    let server = GitHttpServer::start(dir.path(), HttpAuth::Anonymous);
    let storage_dir = tempfile::tempdir().unwrap();
    let storage = Storage::new(storage_dir.path(), "localhost:1");
    let include = included_artifact(&storage);
    let cache = tempfile::tempdir().unwrap();
    let o = opts(
        &server.url("repo"),
        GitAuth::none(),
        cache.path(),
        FetchLimits::default(),
    );

    // toPath through a link that stays inside: the files land in its target, the link is
    // dropped from the artifact.
    assert_eq!(git::fetch(&o).unwrap().commit.id, good);
    let path = build(&o, &storage, &include, "inside/vendor").unwrap();
    let out = tempfile::tempdir().unwrap();
    let data = std::fs::read(storage_dir.path().join(&path)).unwrap();
    plumb_source::artifact::extract_tar_gz(&data, out.path(), Limits::default()).unwrap();
    assert_eq!(
        std::fs::read_to_string(out.path().join("real/vendor/sub/inc.yaml")).unwrap(),
        "included: true\n"
    );
    assert!(!out.path().join("inside").exists());

    // A pusher commits links out of the checkout (absolute and relative) and includes into
    // them: nothing outside is removed or written, and the build fails clearly.
    let victim_str = victim.path().to_str().unwrap();
    let rel_out = format!("../../../../../../../../..{victim_str}");
    for (link, target) in [("abs", victim_str), ("rel", rel_out.as_str())] {
        repo.symlink(link, target);
        repo.commit(&[], "a link out");
        let e = build(&o, &storage, &include, &format!("{link}/sub")).unwrap_err();
        assert!(
            matches!(e, SourceError::SymlinkEscapes { .. }),
            "{link}: {e}"
        );
        assert_eq!(
            std::fs::read_to_string(victim.path().join("sub/keep.tar.gz")).unwrap(),
            "tenant artifact",
            "{link}"
        );
        assert!(!victim.path().join("sub/inc.yaml").exists(), "{link}");
        std::fs::remove_file(repo.path.join(link)).unwrap();
    }
}

#[test]
fn packs_over_the_byte_or_object_cap_fail_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let repo = TestRepo::init(dir.path(), "repo");
    // Incompressible content, so the pack is really this big.
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let noise: Vec<u8> = (0..400_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect();
    repo.write_bytes("blob.bin", &noise);
    for i in 0..20 {
        repo.write_bytes(&format!("f{i}.yaml"), format!("i: {i}\n").as_bytes());
    }
    repo.commit(&[], "big");
    let server = GitHttpServer::start(dir.path(), HttpAuth::Anonymous);
    let url = server.url("repo");
    let cases = [
        (
            FetchLimits {
                max_bytes: 100_000,
                ..FetchLimits::default()
            },
            "pack bytes",
        ),
        (
            FetchLimits {
                max_objects: 5,
                ..FetchLimits::default()
            },
            "pack objects",
        ),
    ];
    for (limits, what) in cases {
        let cache = tempfile::tempdir().unwrap();
        let e = git::fetch(&opts(&url, GitAuth::none(), cache.path(), limits)).unwrap_err();
        assert!(
            matches!(e, SourceError::TooLarge { ref path, .. } if path.starts_with(what)),
            "{what}: {e}"
        );
        assert!(e.to_string().contains("over the limit"), "{e}");
    }
    let cache = tempfile::tempdir().unwrap();
    git::fetch(&opts(
        &url,
        GitAuth::none(),
        cache.path(),
        FetchLimits::default(),
    ))
    .unwrap();
}

/// Commits a gitlink at `path` to `commit` with `.gitmodules` naming `url`.
fn add_submodule(top: &TestRepo, path: &str, url: &str, commit: &str) -> String {
    let gitmodules = format!("[submodule \"{path}\"]\n\tpath = {path}\n\turl = {url}\n");
    std::fs::write(top.path.join(".gitmodules"), gitmodules).unwrap();
    git(&top.path, &["add", ".gitmodules"]);
    git(
        &top.path,
        &[
            "update-index",
            "--add",
            "--cacheinfo",
            &format!("160000,{commit},{path}"),
        ],
    );
    git(
        &top.path,
        &["commit", "-q", "-m", &format!("submodule {path}")],
    );
    top.head()
}

#[test]
fn submodules_get_credentials_only_on_their_origin_and_never_local_paths() {
    let auth = || HttpAuth::Basic {
        username: "alice".into(),
        password: "s3cret-pass".into(),
    };
    let creds = || {
        GitAuth::from_secret(&secret(&[
            ("username", "alice"),
            ("password", "s3cret-pass"),
        ]))
        .unwrap()
    };
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let server_a = GitHttpServer::start(dir_a.path(), auth());
    // Another host (port) asking for the same credentials: it must not get them.
    let server_b = GitHttpServer::start(dir_b.path(), auth());
    let sub_a = TestRepo::init(dir_a.path(), "sub");
    let sa = sub_a.commit(&[("lib.yaml", "a\n")], "sub a");
    let sub_b = TestRepo::init(dir_b.path(), "sub");
    let sb = sub_b.commit(&[("lib.yaml", "b\n")], "sub b");
    let top = TestRepo::init(dir_a.path(), "top");
    top.commit(&[("main.yaml", "main\n")], "top");

    let checkout = |commit: &str| {
        let cache = tempfile::tempdir().unwrap();
        let o = opts(
            &server_a.url("top"),
            creds(),
            cache.path(),
            FetchLimits::default(),
        );
        assert_eq!(git::fetch(&o).unwrap().commit.id, commit);
        let out = tempfile::tempdir().unwrap();
        git::checkout(&o, commit, &out.path().join("t"), true)
            .map(|()| std::fs::read_to_string(out.path().join("t/vendor/lib.yaml")).unwrap())
    };

    let same = add_submodule(&top, "vendor", "../sub", &sa);
    assert_eq!(checkout(&same).unwrap(), "a\n");

    let other = add_submodule(&top, "vendor", &server_b.url("sub"), &sb);
    server_b.clear_requests();
    let e = checkout(&other).unwrap_err();
    assert_eq!(e.kind(), plumb_source::ErrorKind::AuthFailed, "{e}");
    assert!(!e.to_string().contains("s3cret-pass"), "{e}");
    let served = server_b.requests();
    assert!(
        !served.is_empty() && served.iter().all(|r| r.status == 401),
        "{served:?}"
    );

    let bare = dir_b.path().join("sub/.git");
    for local in [
        format!("file://{}", bare.display()),
        bare.display().to_string(),
    ] {
        let c = add_submodule(&top, "vendor", &local, &sb);
        let e = checkout(&c).unwrap_err();
        assert!(matches!(e, SourceError::Invalid { .. }), "{local}: {e}");
        assert!(e.to_string().contains("file://"), "{e}");
    }
}
