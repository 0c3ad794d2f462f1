//! `sparseCheckout` against a real git server: only the listed directories (and the way to
//! them) are checked out; a bad entry is refused.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use plumb_source::git::{self, FetchOptions, GitAuth, GitReference};
use plumb_testing::git::{GitHttpServer, HttpAuth, TestRepo};

fn files(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}

#[test]
fn sparse_checkout_writes_only_the_listed_directories() {
    let dir = tempfile::tempdir().unwrap();
    let repo = TestRepo::init(dir.path(), "repo");
    repo.commit(
        &[
            ("README.md", "root\n"),
            ("apps/prod/a.yaml", "a\n"),
            ("apps/prod/x/b.yaml", "b\n"),
            ("apps/dev/c.yaml", "c\n"),
            ("apps/production/d.yaml", "d\n"),
            ("infra/e.yaml", "e\n"),
        ],
        "one",
    );
    let server = GitHttpServer::start(dir.path(), HttpAuth::Anonymous);
    let cache = tempfile::tempdir().unwrap();
    let opts = FetchOptions {
        url: server.url("repo"),
        reference: GitReference::default(),
        auth: GitAuth::none(),
        timeout: Duration::from_secs(30),
        cache_dir: cache.path().join("cache.git"),
        limits: git::FetchLimits::default(),
        sparse: git::sparse::normalize(&["./apps/prod/".into(), "infra".into()]).unwrap(),
    };
    let fetched = git::fetch(&opts).unwrap();
    let work = tempfile::tempdir().unwrap();
    git::checkout(&opts, &fetched.commit.id, work.path(), false).unwrap();
    assert_eq!(
        files(work.path()),
        vec!["apps/prod/a.yaml", "apps/prod/x/b.yaml", "infra/e.yaml"]
    );
    assert!(git::sparse::normalize(&["../etc".into()]).is_err());
}
