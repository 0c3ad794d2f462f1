//! GitRepository `provider: github`: GitHub App installation tokens, as Flux.
//!
//! The Secret holds `githubAppID`, `githubAppInstallationID`, `githubAppPrivateKey` (PEM,
//! PKCS#1 or PKCS#8) and optionally `githubAppBaseURL` (GitHub Enterprise's API root, e.g.
//! `https://ghe.example.com/api/v3`; `https://api.github.com` by default). A JWT signed
//! RS256 with the app key (`iss` = app id, `iat` a minute back for clock drift, `exp` nine
//! minutes ahead) is exchanged at `POST {base}/app/installations/{id}/access_tokens` for an
//! installation token, used over HTTPS as the password of `x-access-token`. Tokens are
//! cached per app, installation, base URL and key until five minutes before they expire.
//! Errors name the key or the endpoint, never the key or a token.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use openssl::hash::MessageDigest;
use openssl::pkey::PKey;
use openssl::sign::Signer;
use sha2::Digest as _;

use crate::{Result, SourceError};

/// The username an installation token goes with.
pub const TOKEN_USERNAME: &str = "x-access-token";
/// GitHub's API root.
pub const DEFAULT_BASE_URL: &str = "https://api.github.com";
/// A cached token is renewed this long before it expires.
pub const RENEW_BEFORE: Duration = Duration::from_secs(300);

/// A GitHub App installation from a Secret.
#[derive(Clone)]
pub struct GitHubApp {
    app_id: String,
    installation_id: String,
    private_key: Vec<u8>,
    base_url: String,
}

impl std::fmt::Debug for GitHubApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitHubApp")
            .field("app_id", &self.app_id)
            .field("installation_id", &self.installation_id)
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

fn invalid(what: &str, detail: impl Into<String>) -> SourceError {
    SourceError::Invalid {
        what: what.to_string(),
        detail: detail.into(),
    }
}

impl GitHubApp {
    /// Reads the app from a Secret's data; errors name the missing or bad key.
    pub fn from_secret(data: &BTreeMap<String, Vec<u8>>) -> Result<GitHubApp> {
        let text = |key: &str| -> Result<String> {
            let v = data
                .get(key)
                .ok_or_else(|| invalid("secret", format!("the github provider needs '{key}'")))?;
            String::from_utf8(v.clone())
                .map(|s| s.trim().to_string())
                .map_err(|_| invalid(&format!("secret field '{key}'"), "not valid UTF-8"))
        };
        let app_id = text("githubAppID")?;
        let installation_id = text("githubAppInstallationID")?;
        for (key, v) in [
            ("githubAppID", &app_id),
            ("githubAppInstallationID", &installation_id),
        ] {
            if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
                return Err(invalid(&format!("secret field '{key}'"), "not a number"));
            }
        }
        let private_key = data
            .get("githubAppPrivateKey")
            .cloned()
            .ok_or_else(|| invalid("secret", "the github provider needs 'githubAppPrivateKey'"))?;
        // Checked now, so a bad key is a configuration error before any request.
        PKey::private_key_from_pem(&private_key)
            .ok()
            .filter(|k| k.rsa().is_ok())
            .ok_or_else(|| {
                invalid(
                    "secret field 'githubAppPrivateKey'",
                    "not a PEM RSA private key",
                )
            })?;
        let base_url = match data.get("githubAppBaseURL") {
            None => DEFAULT_BASE_URL.to_string(),
            Some(_) => text("githubAppBaseURL")?.trim_end_matches('/').to_string(),
        };
        if !(base_url.starts_with("https://") || base_url.starts_with("http://")) {
            return Err(invalid(
                "secret field 'githubAppBaseURL'",
                "not an http(s) URL",
            ));
        }
        Ok(GitHubApp {
            app_id,
            installation_id,
            private_key,
            base_url,
        })
    }

    /// The app JWT at `now` (Unix seconds).
    pub fn jwt(&self, now: i64) -> Result<String> {
        let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        let header = b64(br#"{"alg":"RS256","typ":"JWT"}"#);
        let claims = serde_json::json!({"iat": now - 60, "exp": now + 540, "iss": self.app_id});
        let input = format!("{header}.{}", b64(claims.to_string().as_bytes()));
        let sign = || -> std::result::Result<Vec<u8>, openssl::error::ErrorStack> {
            let key = PKey::private_key_from_pem(&self.private_key)?;
            let mut s = Signer::new(MessageDigest::sha256(), &key)?;
            s.sign_oneshot_to_vec(input.as_bytes())
        };
        let sig = sign().map_err(|_| {
            invalid(
                "secret field 'githubAppPrivateKey'",
                "cannot sign with this key",
            )
        })?;
        Ok(format!("{input}.{}", b64(&sig)))
    }

    /// The token endpoint.
    pub fn token_url(&self) -> String {
        format!(
            "{}/app/installations/{}/access_tokens",
            self.base_url, self.installation_id
        )
    }

    fn cache_key(&self) -> String {
        let key_digest = hex::encode(sha2::Sha256::digest(&self.private_key));
        format!(
            "{}|{}|{}|{key_digest}",
            self.base_url, self.app_id, self.installation_id
        )
    }

    /// Asks the endpoint for a new installation token (blocking).
    pub fn request_token(&self, timeout: Duration, ca_pem: Option<&[u8]>) -> Result<AppToken> {
        let url = self.token_url();
        let jwt = self.jwt(Utc::now().timestamp())?;
        let unreachable = |detail: String| SourceError::Unreachable {
            op: "github app token",
            url: url.clone(),
            detail,
        };
        let agent = agent(timeout, ca_pem)?;
        let mut resp = agent
            .post(&url)
            .header("Authorization", &format!("Bearer {jwt}"))
            .header("Accept", "application/vnd.github+json")
            .header("X-GitHub-Api-Version", "2022-11-28")
            .send_empty()
            .map_err(|e| unreachable(e.to_string()))?;
        let status = resp.status();
        let body = resp
            .body_mut()
            .with_config()
            .limit(1 << 20)
            .read_to_string()
            .map_err(|e| unreachable(e.to_string()))?;
        if !status.is_success() {
            let detail = format!("HTTP {status} from the installation token endpoint");
            return Err(
                if status.as_u16() == 401 || status.as_u16() == 403 || status.as_u16() == 404 {
                    SourceError::AuthFailed {
                        op: "github app token",
                        url,
                        detail,
                    }
                } else {
                    unreachable(detail)
                },
            );
        }
        #[derive(serde::Deserialize)]
        struct Reply {
            token: String,
            expires_at: DateTime<Utc>,
        }
        let r: Reply = serde_json::from_str(&body)
            .map_err(|_| unreachable("the token endpoint answered no token".into()))?;
        Ok(AppToken {
            token: r.token,
            expires_at: r.expires_at,
        })
    }
}

fn agent(timeout: Duration, ca_pem: Option<&[u8]>) -> Result<ureq::Agent> {
    use ureq::tls::{RootCerts, TlsConfig};
    let roots = match ca_pem {
        Some(pem) => {
            let cas = crate::mtls::certificates(pem);
            if cas.is_empty() {
                return Err(invalid(
                    "secret field 'ca.crt'",
                    "not a PEM certificate bundle",
                ));
            }
            RootCerts::new_with_certs(&cas)
        }
        None => RootCerts::PlatformVerifier,
    };
    let tls = TlsConfig::builder()
        .provider(ureq::tls::TlsProvider::NativeTls)
        .root_certs(roots)
        .build();
    Ok(ureq::Agent::config_builder()
        .tls_config(tls)
        .http_status_as_error(false)
        .timeout_global(Some(timeout))
        .user_agent("plumb (GitHub App)")
        .build()
        .into())
}

/// An installation token and when it expires.
#[derive(Clone)]
pub struct AppToken {
    /// The token (a secret).
    pub token: String,
    /// Its expiry.
    pub expires_at: DateTime<Utc>,
}

impl std::fmt::Debug for AppToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppToken")
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// Installation tokens by app, installation, base URL and key (one per process or context).
#[derive(Default)]
pub struct TokenCache {
    tokens: Mutex<HashMap<String, AppToken>>,
    requests: std::sync::atomic::AtomicU64,
}

impl TokenCache {
    /// A token for `app`: the cached one while it has more than [`RENEW_BEFORE`] left, else
    /// a new one (blocking).
    pub fn token(
        &self,
        app: &GitHubApp,
        timeout: Duration,
        ca_pem: Option<&[u8]>,
    ) -> Result<AppToken> {
        let key = app.cache_key();
        let fresh = |t: &AppToken| {
            let renew = chrono::Duration::from_std(RENEW_BEFORE).unwrap_or_default();
            t.expires_at - renew > Utc::now()
        };
        if let Ok(m) = self.tokens.lock()
            && let Some(t) = m.get(&key).filter(|t| fresh(t))
        {
            return Ok(t.clone());
        }
        self.requests
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let t = app.request_token(timeout, ca_pem)?;
        if let Ok(mut m) = self.tokens.lock() {
            m.insert(key, t.clone());
        }
        Ok(t)
    }

    /// Token requests made (cache misses), for tests and metrics.
    pub fn requests(&self) -> u64 {
        self.requests.load(std::sync::atomic::Ordering::Relaxed)
    }
}
