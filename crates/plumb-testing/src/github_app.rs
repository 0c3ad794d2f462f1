//! GitHub's installation token endpoint for GitRepository `provider: github` tests: it
//! verifies the app JWT (RS256, app id 42, valid now, at most 10 minutes) with the app's
//! public key and mints [`TOKEN`] for installation 7; anything else gets a 401. Pair it
//! with a git server that accepts only `x-access-token` / [`TOKEN`].
#![allow(clippy::unwrap_used)] // a test server: fail loudly

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine as _;
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Public};
use openssl::rsa::Rsa;
use openssl::sign::Verifier;

/// The installation token the endpoint mints.
pub const TOKEN: &str = "ghs_installationtoken123";

/// A GitHub App's key pair: its private key as GitHub hands it out (PKCS#1 PEM).
pub struct AppKey {
    /// PKCS#1 PEM of the private key.
    pub pem: Vec<u8>,
    /// The public half, which the endpoint verifies with.
    pub public: PKey<Public>,
}

impl AppKey {
    /// A fresh RSA-2048 app key.
    pub fn generate() -> AppKey {
        let rsa = Rsa::generate(2048).unwrap();
        let n = rsa.n().to_owned().unwrap();
        let e = rsa.e().to_owned().unwrap();
        AppKey {
            pem: rsa.private_key_to_pem().unwrap(),
            public: PKey::from_rsa(Rsa::from_public_components(n, e).unwrap()).unwrap(),
        }
    }
}

/// The running endpoint.
pub struct TokenEndpoint {
    /// The app's API base URL (`http://127.0.0.1:<port>/api/v3`, `githubAppBaseURL`).
    pub base_url: String,
    hits: Arc<AtomicU64>,
}

impl TokenEndpoint {
    /// Serves `POST /api/v3/app/installations/7/access_tokens` for apps signing with `key`.
    pub fn start(key: PKey<Public>) -> TokenEndpoint {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base_url = format!("http://{}/api/v3", listener.local_addr().unwrap());
        let hits = Arc::new(AtomicU64::new(0));
        let counter = hits.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                serve(stream, &key, &counter);
            }
        });
        TokenEndpoint { base_url, hits }
    }

    /// How many tokens were minted.
    pub fn tokens_minted(&self) -> u64 {
        self.hits.load(Ordering::SeqCst)
    }

    /// The `provider: github` Secret data of an app signing with `pem` at this endpoint.
    pub fn secret_data(&self, pem: &[u8]) -> BTreeMap<String, Vec<u8>> {
        secret_data(pem, &self.base_url)
    }
}

/// The `provider: github` Secret data for app 42, installation 7, signing with `pem`, its
/// API at `base_url`.
pub fn secret_data(pem: &[u8], base_url: &str) -> BTreeMap<String, Vec<u8>> {
    [
        ("githubAppID", b"42".to_vec()),
        ("githubAppInstallationID", b"7".to_vec()),
        ("githubAppPrivateKey", pem.to_vec()),
        ("githubAppBaseURL", base_url.as_bytes().to_vec()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

fn serve(mut stream: std::net::TcpStream, key: &PKey<Public>, hits: &AtomicU64) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let mut auth = String::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':')
            && k.eq_ignore_ascii_case("authorization")
        {
            auth = v.trim().to_string();
        }
    }
    let jwt = auth.strip_prefix("Bearer ").unwrap_or("");
    let ok =
        line.starts_with("POST /api/v3/app/installations/7/access_tokens ") && jwt_ok(jwt, key);
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

fn b64d(s: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .ok()
}

/// Whether `jwt` is signed by `key` for app 42 and valid now.
fn jwt_ok(jwt: &str, key: &PKey<Public>) -> bool {
    let parts: Vec<&str> = jwt.split('.').collect();
    let [head, claims, sig] = parts.as_slice() else {
        return false;
    };
    let (Some(head), Some(claims), Some(sig)) = (b64d(head), b64d(claims), b64d(sig)) else {
        return false;
    };
    let mut v = Verifier::new(MessageDigest::sha256(), key).unwrap();
    let input = format!("{}.{}", parts[0], parts[1]);
    if !v.verify_oneshot(&sig, input.as_bytes()).unwrap_or(false) {
        return false;
    }
    let header: serde_json::Value = serde_json::from_slice(&head).unwrap_or_default();
    let claims: serde_json::Value = serde_json::from_slice(&claims).unwrap_or_default();
    let now = chrono::Utc::now().timestamp();
    let (iat, exp) = (
        claims["iat"].as_i64().unwrap_or(i64::MAX),
        claims["exp"].as_i64().unwrap_or(0),
    );
    header["alg"] == "RS256" && claims["iss"] == "42" && iat <= now && exp > now && exp - iat <= 600
}
