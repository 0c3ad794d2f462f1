//! `cargo bench -p plumb-source`: prints medians and ratios.
//!
//! (a) steady-state poll of an unchanged remote over loopback smart HTTP (target < 20 ms, no
//!     pack transferred); (b) picking up a new commit of a ~10,000-commit / 5,000-file
//!     repository (incremental fetch + checkout + deterministic tar.gz) against
//!     `git clone --depth 1` + `tar czf` of the same commit. Sizes can be lowered with
//!     `PLUMB_BENCH_COMMITS` / `PLUMB_BENCH_FILES` for a quick run.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use plumb_source::artifact::{Limits, ObjectKey, Storage};
use plumb_source::git::{self, FetchOptions, GitAuth, GitReference};
use plumb_testing::git::{GitHttpServer, HttpAuth, TestRepo};

const KEY: ObjectKey<'static> = ObjectKey {
    kind: "GitRepository",
    namespace: "bench",
    name: "big",
};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Phase durations of one update: fetch, checkout, archive of the checkout, archive straight
/// from the cache; and whether a pack was fetched.
fn plumb_update(o: &FetchOptions, storage: &Storage, work: &Path) -> ([Duration; 4], bool) {
    let t = Instant::now();
    let r = git::fetch(o).expect("fetch");
    let fetch = t.elapsed();
    let tree = work.join(&r.commit.id);
    let t = Instant::now();
    git::checkout(o, &r.commit.id, &tree, false).expect("checkout");
    let checkout = t.elapsed();
    let t = Instant::now();
    let from_dir = storage
        .store_dir(KEY, &r.revision, &tree, None, Limits::default())
        .expect("store_dir");
    let dir_archive = t.elapsed();
    std::fs::remove_dir_all(&tree).expect("cleanup");
    let t = Instant::now();
    let direct = storage
        .store_with(KEY, &r.revision, |w| {
            git::archive_commit(o, &r.commit.id, None, Limits::default(), w)
        })
        .expect("archive_commit");
    let direct_archive = t.elapsed();
    assert_eq!(
        direct.digest, from_dir.digest,
        "archive_commit differs from checkout"
    );
    ([fetch, checkout, dir_archive, direct_archive], r.fetched)
}

fn git_clone_tar(url: &str, work: &Path, i: usize) -> Duration {
    let dest = work.join(format!("clone-{i}"));
    let start = Instant::now();
    let ok = Command::new("git")
        .args(["clone", "-q", "--depth", "1", "--branch", "master", url])
        .arg(&dest)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .status()
        .expect("git clone")
        .success();
    assert!(ok, "git clone failed");
    let ok = Command::new("tar")
        .arg("czf")
        .arg(work.join(format!("clone-{i}.tar.gz")))
        .arg("--exclude=.git")
        .arg("-C")
        .arg(&dest)
        .arg(".")
        .status()
        .expect("tar")
        .success();
    assert!(ok, "tar failed");
    let took = start.elapsed();
    std::fs::remove_dir_all(&dest).expect("cleanup");
    took
}

fn main() {
    let root = tempfile::tempdir().unwrap();
    let commits = env("PLUMB_BENCH_COMMITS", 10_000);
    let files = env("PLUMB_BENCH_FILES", 5_000);
    let t = Instant::now();
    let big = TestRepo::big(root.path(), "big", commits, files);
    eprintln!(
        "built {commits}-commit / {files}-file repository in {:?}",
        t.elapsed()
    );
    let small = TestRepo::init(root.path(), "small");
    small.commit(&[("app.yaml", "kind: ConfigMap\n")], "one");
    let server = GitHttpServer::start(root.path(), HttpAuth::Anonymous);
    let cache = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let storage_dir = tempfile::tempdir().unwrap();
    let storage = Storage::new(storage_dir.path(), "localhost:9090");
    let opts = |name: &str| FetchOptions {
        url: server.url(name),
        reference: GitReference::default(),
        auth: GitAuth::none(),
        timeout: Duration::from_secs(120),
        cache_dir: cache.path().join(format!("{name}.git")),
        limits: Default::default(),
        sparse: Vec::new(),
    };

    // (a) steady-state poll.
    println!(
        "(a) steady-state poll of an unchanged remote (loopback smart HTTP, git http-backend)"
    );
    for name in ["small", "big"] {
        let o = opts(name);
        git::fetch(&o).unwrap();
        server.clear_requests();
        let mut times = Vec::new();
        for _ in 0..31 {
            let s = Instant::now();
            let r = git::fetch(&o).unwrap();
            times.push(s.elapsed());
            assert!(
                !r.fetched && r.received_objects == 0,
                "unchanged remote fetched a pack"
            );
        }
        assert_eq!(
            server.upload_pack_posts(),
            0,
            "pack negotiation on an unchanged remote"
        );
        println!(
            "    {name:5}: median {:.2} ms over {} polls, {} HTTP requests, 0 packs (target < 20 ms)",
            ms(median(times.clone())),
            times.len(),
            server.requests().len()
        );
    }

    // (b) new commit of the big repository.
    println!("(b) new commit of a {commits}-commit / {files}-file repository");
    let mut o = opts("big");
    o.cache_dir = cache.path().join("big-b.git");
    let (cold, fetched) = plumb_update(&o, &storage, work.path());
    assert!(fetched);
    println!(
        "    plumb cold (empty cache): fetch {:.1} ms + archive from cache {:.1} ms",
        ms(cold[0]),
        ms(cold[3])
    );
    let rounds = 7;
    let mut phases: [Vec<Duration>; 4] = Default::default();
    let mut clone = Vec::new();
    for i in 0..rounds {
        big.commit(
            &[(&format!("dir000/bench-{i}.yaml"), &format!("round: {i}\n"))],
            "bench",
        );
        let (d, fetched) = plumb_update(&o, &storage, work.path());
        assert!(fetched, "new commit not fetched");
        for (p, v) in phases.iter_mut().zip(d) {
            p.push(v);
        }
        clone.push(git_clone_tar(&server.url("big"), work.path(), i));
    }
    let [f, co, da, direct] = phases.map(median);
    let c = median(clone);
    let fast = f + direct;
    let slow = f + co + da;
    println!(
        "    plumb fetch + archive from cache:  median {:.1} ms (fetch {:.1}, archive {:.1})",
        ms(fast),
        ms(f),
        ms(direct)
    );
    println!(
        "    plumb fetch + checkout + archive:  median {:.1} ms (checkout {:.1}, archive {:.1})",
        ms(slow),
        ms(co),
        ms(da)
    );
    println!(
        "    git clone --depth 1 + tar czf:     median {:.1} ms",
        ms(c)
    );
    println!(
        "    ratio git/plumb: {:.2}x (from cache), {:.2}x (via checkout)",
        c.as_secs_f64() / fast.as_secs_f64(),
        c.as_secs_f64() / slow.as_secs_f64()
    );
}
