//! GitRepository `provider: github`: a local server plays GitHub's installation token
//! endpoint (it verifies the app JWT with the app's public key), and the real git HTTP
//! server only lets `x-access-token` with the minted token read the repository.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use base64::Engine as _;
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Public};
use openssl::rsa::Rsa;
use openssl::sign::Verifier;
use plumb_source::git::github_app::{GitHubApp, TokenCache};
use plumb_source::git::{self, FetchOptions, GitAuth, GitReference};
use plumb_source::{ErrorKind, SourceError};
use plumb_testing::git::{GitHttpServer, HttpAuth, TestRepo};

const TOKEN: &str = "ghs_installationtoken123";

fn b64d(s: &str) -> Vec<u8> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .unwrap()
}

/// Whether `jwt` is signed by `key` for app 42 and valid now.
fn jwt_ok(jwt: &str, key: &PKey<Public>) -> bool {
    let parts: Vec<&str> = jwt.split('.').collect();
    if parts.len() != 3 {
        return false;
    }
    let mut v = Verifier::new(MessageDigest::sha256(), key).unwrap();
    let input = format!("{}.{}", parts[0], parts[1]);
    if !v
        .verify_oneshot(&b64d(parts[2]), input.as_bytes())
        .unwrap_or(false)
    {
        return false;
    }
    let header: serde_json::Value = serde_json::from_slice(&b64d(parts[0])).unwrap();
    let claims: serde_json::Value = serde_json::from_slice(&b64d(parts[1])).unwrap();
    let now = chrono::Utc::now().timestamp();
    header["alg"] == "RS256"
        && claims["iss"] == "42"
        && claims["iat"].as_i64().unwrap() <= now
        && claims["exp"].as_i64().unwrap() > now
        && claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap() <= 600
}

/// Serves `POST /api/v3/app/installations/7/access_tokens`; counts the token requests.
fn token_endpoint(key: PKey<Public>, hits: Arc<AtomicU64>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/api/v3", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let mut auth = String::new();
            loop {
                let mut h = String::new();
                reader.read_line(&mut h).unwrap();
                if h.trim().is_empty() {
                    break;
                }
                if let Some((k, v)) = h.split_once(':')
                    && k.eq_ignore_ascii_case("authorization")
                {
                    auth = v.trim().to_string();
                }
            }
            let jwt = auth.strip_prefix("Bearer ").unwrap_or("");
            let ok = line.starts_with("POST /api/v3/app/installations/7/access_tokens ")
                && jwt_ok(jwt, &key);
            let (status, body) = if ok {
                hits.fetch_add(1, Ordering::SeqCst);
                let exp = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
                (
                    "201 Created",
                    format!(r#"{{"token":"{TOKEN}","expires_at":"{exp}"}}"#),
                )
            } else {
                (
                    "401 Unauthorized",
                    r#"{"message":"A JSON web token could not be decoded"}"#.to_string(),
                )
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    url
}

fn secret(pem: &[u8], base: &str) -> BTreeMap<String, Vec<u8>> {
    [
        ("githubAppID", b"42".to_vec()),
        ("githubAppInstallationID", b"7".to_vec()),
        ("githubAppPrivateKey", pem.to_vec()),
        ("githubAppBaseURL", base.as_bytes().to_vec()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

#[test]
fn installation_token_reads_the_repository_and_is_cached() {
    let rsa = Rsa::generate(2048).unwrap();
    let pem = rsa.private_key_to_pem().unwrap(); // PKCS#1, as GitHub hands it out
    let public = PKey::from_rsa(
        Rsa::from_public_components(rsa.n().to_owned().unwrap(), rsa.e().to_owned().unwrap())
            .unwrap(),
    )
    .unwrap();
    let hits = Arc::new(AtomicU64::new(0));
    let base = token_endpoint(public, hits.clone());

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
    assert_eq!((hits.load(Ordering::SeqCst), cache.requests()), (1, 1));

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
    let other = Rsa::generate(2048).unwrap().private_key_to_pem().unwrap();
    let wrong = GitHubApp::from_secret(&secret(&other, &base)).unwrap();
    let err = TokenCache::default()
        .token(&wrong, Duration::from_secs(10), None)
        .unwrap_err();
    assert!(matches!(err, SourceError::AuthFailed { .. }), "{err}");
    assert!(err.to_string().contains("HTTP 401"), "{err}");
}

#[test]
fn secret_keys_are_checked() {
    let pem = Rsa::generate(2048).unwrap().private_key_to_pem().unwrap();
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
