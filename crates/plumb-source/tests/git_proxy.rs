//! `proxySecretRef` for Git: HTTPS fetches (libgit2's transport, and plumb's own one for
//! client certificates) from git http-backend go through a real proxy (tinyproxy) with basic
//! auth, plain http too; a wrong proxy password is a clear error without the password; a proxy
//! on an SSH URL is refused, never silently bypassed.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use plumb_source::git::{self, FetchOptions, GitAuth, GitProxy, GitReference};
use plumb_testing::git::{GitHttpServer, HttpAuth, TestRepo, TlsMaterial, secret};
use plumb_testing::httpproxy::HttpProxy;

fn proxy_secret(address: &str, password: &str) -> GitProxy {
    let data: BTreeMap<String, Vec<u8>> = [
        ("address", address),
        ("username", "gituser"),
        ("password", password),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
    .collect();
    GitProxy::from_secret(&data).unwrap()
}

fn opts(url: &str, auth: GitAuth, cache: &std::path::Path) -> FetchOptions {
    FetchOptions {
        url: url.to_string(),
        reference: GitReference {
            branch: Some("master".into()),
            ..Default::default()
        },
        auth,
        timeout: Duration::from_secs(30),
        cache_dir: cache.join("cache.git"),
        limits: git::FetchLimits::default(),
        sparse: Vec::new(),
    }
}

fn through(proxy: &HttpProxy, password: &str, pairs: &[(&str, &str)]) -> GitAuth {
    GitAuth::from_secret(&secret(pairs))
        .unwrap()
        .with_proxy(proxy_secret(&proxy.address(), password))
}

#[test]
fn https_fetch_goes_through_an_authenticating_proxy() {
    let dir = tempfile::tempdir().unwrap();
    let repo = TestRepo::init(dir.path(), "repo");
    let head = repo.commit(&[("app.yaml", "v: 1\n")], "one");
    let tls = TlsMaterial::generate();
    let server = GitHttpServer::start_tls(dir.path(), HttpAuth::Anonymous, &tls);
    let mserver = GitHttpServer::start_mtls(dir.path(), HttpAuth::Anonymous, &tls);
    let proxy = HttpProxy::start(Some(("gituser", "proxy-pw-31"))).unwrap();
    let url = server.url("repo");
    let host = |u: &str| {
        u.trim_start_matches("https://")
            .split('/')
            .next()
            .unwrap()
            .to_string()
    };

    // libgit2's HTTPS transport: CONNECT through the proxy.
    let cache = tempfile::tempdir().unwrap();
    let auth = through(&proxy, "proxy-pw-31", &[("ca.crt", &tls.ca_pem)]);
    let got = git::fetch(&opts(&url, auth, cache.path())).unwrap();
    assert_eq!(got.commit.id, head);
    assert!(
        proxy.logged(&format!("CONNECT {} ", host(&url)), Duration::from_secs(10)),
        "the fetch went through the proxy: {}",
        proxy.log()
    );

    // plumb's client-certificate transport: through the proxy too.
    let murl = mserver.url("repo");
    let cache = tempfile::tempdir().unwrap();
    let auth = through(
        &proxy,
        "proxy-pw-31",
        &[
            ("ca.crt", &tls.ca_pem),
            ("tls.crt", &tls.client_crt_pem),
            ("tls.key", &tls.client_key_pem),
        ],
    );
    let got = git::fetch(&opts(&murl, auth, cache.path())).unwrap();
    assert_eq!(got.commit.id, head);
    assert!(
        proxy.logged(
            &format!("CONNECT {} ", host(&murl)),
            Duration::from_secs(10)
        ),
        "the mTLS fetch went through the proxy: {}",
        proxy.log()
    );

    // A wrong proxy password: a clear error, never the password.
    let cache = tempfile::tempdir().unwrap();
    let wrong = through(&proxy, "wrong-pw-77", &[("ca.crt", &tls.ca_pem)]);
    let e = git::fetch(&opts(&url, wrong, cache.path()))
        .unwrap_err()
        .to_string();
    assert!(!e.contains("wrong-pw-77"), "{e}");
    assert!(e.to_lowercase().contains("proxy"), "{e}");

    // Plain http through the proxy too; SSH cannot be proxied: refused.
    let plain = GitHttpServer::start(dir.path(), HttpAuth::Anonymous);
    let purl = plain.url("repo");
    let cache = tempfile::tempdir().unwrap();
    let got = git::fetch(&opts(
        &purl,
        through(&proxy, "proxy-pw-31", &[]),
        cache.path(),
    ))
    .unwrap();
    assert_eq!(got.commit.id, head);
    let phost = purl
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap();
    assert!(
        proxy.logged(&format!("CONNECT {phost} "), Duration::from_secs(10)),
        "plain http went through the proxy: {}",
        proxy.log()
    );
    let auth = through(&proxy, "proxy-pw-31", &[]);
    let e = git::fetch(&opts("ssh://git@127.0.0.1:1/repo", auth, cache.path()))
        .unwrap_err()
        .to_string();
    assert!(e.contains("http(s) Git URLs only"), "{e}");
}
