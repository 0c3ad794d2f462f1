//! GitRepository `provider: github`: a local server plays GitHub's installation token
//! endpoint (it verifies the app JWT with the app's public key), and the real git HTTP
//! server only lets `x-access-token` with the minted token read the repository.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use std::time::Duration;

use plumb_source::git::github_app::{GitHubApp, TokenCache};
use plumb_source::git::{self, FetchOptions, GitAuth, GitReference};
use plumb_source::{ErrorKind, SourceError};
use plumb_testing::git::{GitHttpServer, HttpAuth, TestRepo};
use plumb_testing::github_app::{AppKey, TOKEN, TokenEndpoint, secret_data as secret};

#[test]
fn installation_token_reads_the_repository_and_is_cached() {
    let key = AppKey::generate();
    let pem = key.pem.clone();
    let endpoint = TokenEndpoint::start(key.public);
    let base = endpoint.base_url.clone();

    let tmp = tempfile::tempdir().unwrap();
    let repo = TestRepo::init(&tmp.path().join("repos"), "app");
    let sha = repo.commit(&[("README.md", "hello\n")], "initial");
    let server = GitHttpServer::start(
        &tmp.path().join("repos"),
        HttpAuth::Basic {
            username: "x-access-token".into(),
            password: TOKEN.into(),
        },
    );

    let app = GitHubApp::from_secret(&secret(&pem, &base)).unwrap();
    assert!(!format!("{app:?}").contains("PRIVATE"), "{app:?}");
    let cache = TokenCache::default();
    let token = cache.token(&app, Duration::from_secs(10), None).unwrap();
    assert_eq!(token.token, TOKEN);
    assert!(!format!("{token:?}").contains(TOKEN));
    // Cached until near expiry: a second fetch asks no new token.
    let again = cache.token(&app, Duration::from_secs(10), None).unwrap();
    assert_eq!(again.token, TOKEN);
    assert_eq!((endpoint.tokens_minted(), cache.requests()), (1, 1));

    let fetch = |auth: GitAuth, dir: &str| {
        git::fetch(&FetchOptions {
            url: server.url("app"),
            reference: GitReference {
                branch: Some("master".into()),
                ..Default::default()
            },
            auth,
            timeout: Duration::from_secs(30),
            cache_dir: tmp.path().join(dir),
            limits: git::FetchLimits::default(),
            sparse: Vec::new(),
        })
    };
    let fetched = fetch(GitAuth::none().with_github_token(token.token), "c1").unwrap();
    assert_eq!(fetched.revision, format!("master@sha1:{sha}"));
    // Without the token the server refuses.
    let err = fetch(GitAuth::none(), "c2").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AuthFailed, "{err}");

    // A key the app does not own: the endpoint refuses the JWT, an authentication failure
    // whose message holds neither key nor token.
    let other = AppKey::generate().pem;
    let wrong = GitHubApp::from_secret(&secret(&other, &base)).unwrap();
    let err = TokenCache::default()
        .token(&wrong, Duration::from_secs(10), None)
        .unwrap_err();
    assert!(matches!(err, SourceError::AuthFailed { .. }), "{err}");
    assert!(err.to_string().contains("HTTP 401"), "{err}");
}

#[test]
fn secret_keys_are_checked() {
    let pem = AppKey::generate().pem;
    let ok = secret(&pem, "https://ghe.example.com/api/v3/");
    let app = GitHubApp::from_secret(&ok).unwrap();
    assert_eq!(
        app.token_url(),
        "https://ghe.example.com/api/v3/app/installations/7/access_tokens"
    );
    let mut default = ok.clone();
    default.remove("githubAppBaseURL");
    assert!(
        GitHubApp::from_secret(&default)
            .unwrap()
            .token_url()
            .starts_with("https://api.github.com/app/installations/7/")
    );
    for (key, value, want) in [
        ("githubAppID", None, "githubAppID"),
        (
            "githubAppInstallationID",
            Some(&b"seven"[..]),
            "githubAppInstallationID",
        ),
        (
            "githubAppPrivateKey",
            Some(&b"-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n"[..]),
            "githubAppPrivateKey",
        ),
        (
            "githubAppBaseURL",
            Some(&b"ftp://x"[..]),
            "githubAppBaseURL",
        ),
    ] {
        let mut data = ok.clone();
        match value {
            None => {
                data.remove(key);
            }
            Some(v) => {
                data.insert(key.to_string(), v.to_vec());
            }
        }
        let err = GitHubApp::from_secret(&data).unwrap_err().to_string();
        assert!(err.contains(want), "{key}: {err}");
        assert!(!err.contains("AAAA"), "{err}");
    }
}
