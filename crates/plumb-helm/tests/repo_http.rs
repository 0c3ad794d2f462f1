//! The repository client against a real chart repository on loopback (charts packaged by
//! the reference `helm` CLI): auth, passCredentials, TLS with `ca.crt`, digests, caps,
//! caching and failure classes.

use std::path::Path;
use std::time::Duration;

use plumb_helm::RepoErrorKind;
use plumb_helm::repo::{BasicAuth, ChartCache, ClientOptions, IndexFile, RepoClient};
use plumb_testing::chartrepo::{ChartRepoServer, index_repo, package_chart};
use plumb_testing::git::{HttpAuth, StallServer, TlsMaterial, free_port};

const PASSWORD: &str = "s3cr3t-pa55";

fn basic() -> HttpAuth {
    HttpAuth::Basic {
        username: "helm".into(),
        password: PASSWORD.into(),
    }
}

fn creds(password: &str) -> Option<BasicAuth> {
    Some(BasicAuth {
        username: "helm".into(),
        password: password.into(),
    })
}

fn repo_with(dir: &Path, charts: &[(&str, &str)]) {
    for (n, v) in charts {
        package_chart(dir, n, v);
    }
    index_repo(dir, None);
}

#[tokio::test]
async fn fetch_resolve_download_and_cache() {
    let dir = tempfile::tempdir().unwrap();
    repo_with(
        dir.path(),
        &[("web", "1.0.0"), ("web", "1.1.0"), ("web", "2.0.0-beta.1")],
    );
    let srv = ChartRepoServer::start(dir.path(), basic());
    let client = RepoClient::new(
        &srv.url("/"),
        ClientOptions {
            auth: creds(PASSWORD),
            ..Default::default()
        },
    )
    .unwrap();
    let fetched = client.fetch_index().await.unwrap();
    let cv = fetched.index.resolve("web", "").unwrap().clone();
    assert_eq!(cv.version, "1.1.0");
    let cache = ChartCache::new(dir.path().join("cache"));
    let data = client.download_chart(&cv, Some(&cache)).await.unwrap();
    let chart = plumb_helm::load_archive(&data).unwrap();
    assert_eq!(chart.name, "web");
    assert_eq!(srv.count("web-1.1.0.tgz"), 1);
    // Second download: from the cache, no request.
    let again = client.download_chart(&cv, Some(&cache)).await.unwrap();
    assert_eq!(again, data);
    assert_eq!(srv.count("web-1.1.0.tgz"), 1);
    assert!(srv.requests().iter().all(|r| r.had_credentials));
}

#[tokio::test]
async fn wrong_password_is_auth_and_never_echoed() {
    let dir = tempfile::tempdir().unwrap();
    repo_with(dir.path(), &[("web", "1.0.0")]);
    let srv = ChartRepoServer::start(dir.path(), basic());
    let url = srv.url("/").replace("://", "://helm:url-pa55word@");
    let client = RepoClient::new(
        &url,
        ClientOptions {
            auth: creds("wrong-pa55"),
            ..Default::default()
        },
    )
    .unwrap();
    let e = client.fetch_index().await.unwrap_err();
    assert_eq!(e.repo_kind(), Some(RepoErrorKind::Auth), "{e}");
    let msg = format!("{e} {e:?}");
    assert!(
        !msg.contains("wrong-pa55") && !msg.contains("url-pa55word"),
        "{msg}"
    );
}

#[tokio::test]
async fn credentials_reach_other_hosts_only_with_pass_credentials() {
    let dir = tempfile::tempdir().unwrap();
    package_chart(dir.path(), "web", "1.0.0");
    let srv = ChartRepoServer::start(dir.path(), basic());
    // The index points at the same server under another host name.
    index_repo(dir.path(), Some(&srv.url_via_localhost("")));
    for pass in [false, true] {
        let client = RepoClient::new(
            &srv.url(""),
            ClientOptions {
                auth: creds(PASSWORD),
                pass_credentials: pass,
                ..Default::default()
            },
        )
        .unwrap();
        let fetched = client.fetch_index().await.unwrap();
        let cv = fetched.index.resolve("web", "1.0.0").unwrap();
        let res = client.download_chart(cv, None).await;
        let last = srv.requests().pop().unwrap();
        assert!(last.path.ends_with("web-1.0.0.tgz"));
        assert_eq!(last.had_credentials, pass);
        if pass {
            res.unwrap();
        } else {
            assert_eq!(res.unwrap_err().repo_kind(), Some(RepoErrorKind::Auth));
        }
    }
}

#[tokio::test]
async fn digest_mismatch_and_size_cap() {
    let dir = tempfile::tempdir().unwrap();
    repo_with(dir.path(), &[("web", "1.0.0")]);
    let index = std::fs::read_to_string(dir.path().join("index.yaml")).unwrap();
    let fetched = IndexFile::parse(index.as_bytes(), 1 << 20, "t").unwrap();
    let good = fetched.entries["web"][0].digest_hex().unwrap();
    let bad = "0".repeat(64);
    std::fs::write(dir.path().join("index.yaml"), index.replace(&good, &bad)).unwrap();
    let srv = ChartRepoServer::start(dir.path(), HttpAuth::Anonymous);
    let client = RepoClient::new(&srv.url("/"), ClientOptions::default()).unwrap();
    let f = client.fetch_index().await.unwrap();
    let cache = ChartCache::new(dir.path().join("cache"));
    let e = client
        .download_chart(&f.index.entries["web"][0], Some(&cache))
        .await
        .unwrap_err();
    assert_eq!(e.repo_kind(), Some(RepoErrorKind::BadContent));
    assert!(e.to_string().contains("digest mismatch"), "{e}");
    assert!(cache.get(&bad).unwrap().is_none(), "nothing cached");

    let small = RepoClient::new(
        &srv.url("/"),
        ClientOptions {
            max_index_size: 64,
            ..Default::default()
        },
    )
    .unwrap();
    let e = small.fetch_index().await.unwrap_err();
    assert_eq!(e.repo_kind(), Some(RepoErrorKind::TooLarge), "{e}");
    let tiny_chart = RepoClient::new(
        &srv.url("/"),
        ClientOptions {
            max_chart_size: 16,
            ..Default::default()
        },
    )
    .unwrap();
    let e = tiny_chart
        .download_chart(&f.index.entries["web"][0], None)
        .await
        .unwrap_err();
    assert_eq!(e.repo_kind(), Some(RepoErrorKind::TooLarge), "{e}");
    // A missing chart file is NotFound.
    std::fs::remove_file(dir.path().join("web-1.0.0.tgz")).unwrap();
    let e = client
        .download_chart(&f.index.entries["web"][0], None)
        .await
        .unwrap_err();
    assert_eq!(e.repo_kind(), Some(RepoErrorKind::NotFound), "{e}");
}

#[tokio::test]
async fn tls_with_custom_ca() {
    let dir = tempfile::tempdir().unwrap();
    repo_with(dir.path(), &[("web", "1.0.0")]);
    let tls = TlsMaterial::generate();
    let srv = ChartRepoServer::start_tls(dir.path(), HttpAuth::Anonymous, &tls);
    let with_ca = RepoClient::new(
        &srv.url("/"),
        ClientOptions {
            ca_pem: Some(tls.ca_pem.clone().into_bytes()),
            ..Default::default()
        },
    )
    .unwrap();
    with_ca.fetch_index().await.unwrap();
    let other_ca = RepoClient::new(
        &srv.url("/"),
        ClientOptions {
            ca_pem: Some(tls.other_ca_pem.clone().into_bytes()),
            ..Default::default()
        },
    )
    .unwrap();
    let e = other_ca.fetch_index().await.unwrap_err();
    assert_eq!(e.repo_kind(), Some(RepoErrorKind::Unreachable), "{e}");
}

#[tokio::test]
async fn unreachable_and_timeout() {
    let client = RepoClient::new(
        &format!("http://127.0.0.1:{}/", free_port()),
        ClientOptions::default(),
    )
    .unwrap();
    let e = client.fetch_index().await.unwrap_err();
    assert_eq!(e.repo_kind(), Some(RepoErrorKind::Unreachable), "{e}");
    let stall = StallServer::start();
    let client = RepoClient::new(
        &stall.http_url(),
        ClientOptions {
            timeout: Duration::from_millis(500),
            ..Default::default()
        },
    )
    .unwrap();
    let e = client.fetch_index().await.unwrap_err();
    assert_eq!(e.repo_kind(), Some(RepoErrorKind::Timeout), "{e}");
}
