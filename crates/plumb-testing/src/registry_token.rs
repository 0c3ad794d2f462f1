//! A bearer-token server for [`crate::registry::Registry`]: the distribution token flow
//! (`WWW-Authenticate: Bearer realm=…,service=…,scope=…`) as Docker Hub and GHCR speak it.
//!
//! `GET /token?service=…&scope=repository:<name>:<actions>` with the right basic credentials
//! answers `{"token": JWT}`: an ES256 JWT whose `x5c` header carries a self-signed
//! certificate that the registry trusts through its `rootcertbundle`, granting the asked
//! actions. Wrong or missing credentials get 401. Every request is recorded.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use openssl::ec::{EcGroup, EcKey};
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};

use crate::git::{FixtureBody, spawn_http_server};

/// Service name the registry and the tokens agree on.
pub const SERVICE: &str = "plumb-test-registry";
/// Token issuer.
pub const ISSUER: &str = "plumb-test-token-issuer";

/// One token request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRequest {
    /// The `scope` query parameter.
    pub scope: String,
    /// Whether valid credentials came along.
    pub authorized: bool,
}

struct State {
    user: String,
    pass: String,
    key: PKey<Private>,
    cert_der: Vec<u8>,
    requests: Mutex<Vec<TokenRequest>>,
}

/// A running token server.
pub struct TokenServer {
    /// Listening address.
    pub addr: SocketAddr,
    state: Arc<State>,
    bundle: PathBuf,
    _runtime: tokio::runtime::Runtime,
}

impl std::fmt::Debug for TokenServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenServer")
            .field("addr", &self.addr)
            .finish()
    }
}

fn b64url(data: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
}

impl TokenServer {
    /// Start on loopback, writing the signing certificate to `dir/token-ca.crt`.
    pub fn start(dir: &Path, user: &str, pass: &str) -> Result<TokenServer, String> {
        let e = |x: openssl::error::ErrorStack| format!("token key: {x}");
        let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).map_err(e)?;
        let key = PKey::from_ec_key(EcKey::generate(&group).map_err(e)?).map_err(e)?;
        let mut name = openssl::x509::X509NameBuilder::new().map_err(e)?;
        name.append_entry_by_text("CN", ISSUER).map_err(e)?;
        let name = name.build();
        let mut b = openssl::x509::X509Builder::new().map_err(e)?;
        b.set_version(2).map_err(e)?;
        b.set_subject_name(&name).map_err(e)?;
        b.set_issuer_name(&name).map_err(e)?;
        b.set_pubkey(&key).map_err(e)?;
        let serial = openssl::bn::BigNum::from_u32(1)
            .and_then(|n| n.to_asn1_integer())
            .map_err(e)?;
        b.set_serial_number(&serial).map_err(e)?;
        let not_before = openssl::asn1::Asn1Time::days_from_now(0).map_err(e)?;
        let not_after = openssl::asn1::Asn1Time::days_from_now(2).map_err(e)?;
        b.set_not_before(&not_before).map_err(e)?;
        b.set_not_after(&not_after).map_err(e)?;
        b.sign(&key, openssl::hash::MessageDigest::sha256())
            .map_err(e)?;
        let cert = b.build();
        let bundle = dir.join("token-ca.crt");
        std::fs::write(&bundle, cert.to_pem().map_err(e)?)
            .map_err(|x| format!("token bundle: {x}"))?;
        let state = Arc::new(State {
            user: user.to_string(),
            pass: pass.to_string(),
            key,
            cert_der: cert.to_der().map_err(e)?,
            requests: Mutex::new(Vec::new()),
        });
        let s = state.clone();
        let (runtime, addr) = spawn_http_server(None, move |req| {
            let s = s.clone();
            async move { s.handle(&req) }
        });
        Ok(TokenServer {
            addr,
            state,
            bundle,
            _runtime: runtime,
        })
    }

    /// The realm URL for the registry's config.
    pub fn realm(&self) -> String {
        format!("http://{}/token", self.addr)
    }

    /// The certificate bundle the registry trusts.
    pub fn bundle(&self) -> &Path {
        &self.bundle
    }

    /// Every token request so far.
    pub fn requests(&self) -> Vec<TokenRequest> {
        self.state
            .requests
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default()
    }
}

fn reply(status: StatusCode, body: String) -> Response<FixtureBody> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

fn query_param(query: &str, key: &str) -> Option<String> {
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == key).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl State {
    fn handle(&self, req: &Request<hyper::body::Incoming>) -> Response<FixtureBody> {
        let query = req.uri().query().unwrap_or_default();
        let scope = query_param(query, "scope").unwrap_or_default();
        let expected = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD
                .encode(format!("{}:{}", self.user, self.pass))
        );
        let authorized = req
            .headers()
            .get(hyper::header::AUTHORIZATION)
            .is_some_and(|v| v.as_bytes() == expected.as_bytes());
        if let Ok(mut r) = self.requests.lock() {
            r.push(TokenRequest {
                scope: scope.clone(),
                authorized,
            });
        }
        if !authorized {
            return reply(StatusCode::UNAUTHORIZED, r#"{"errors":[]}"#.to_string());
        }
        match self.token(&scope) {
            Ok(t) => reply(
                StatusCode::OK,
                serde_json::json!({ "token": t }).to_string(),
            ),
            Err(e) => reply(StatusCode::INTERNAL_SERVER_ERROR, e),
        }
    }

    fn token(&self, scope: &str) -> Result<String, String> {
        // scope = repository:<name>:<a,b>
        let mut parts = scope.splitn(3, ':');
        let (kind, name, actions) = (parts.next(), parts.next(), parts.next());
        let access = match (kind, name, actions) {
            (Some(kind), Some(name), Some(actions)) => serde_json::json!([{
                "type": kind, "name": name,
                "actions": actions.split(',').collect::<Vec<_>>(),
            }]),
            _ => serde_json::json!([]),
        };
        let now = chrono::Utc::now().timestamp();
        let header = serde_json::json!({
            "typ": "JWT", "alg": "ES256",
            "x5c": [base64::engine::general_purpose::STANDARD.encode(&self.cert_der)],
        });
        let claims = serde_json::json!({
            "iss": ISSUER, "sub": self.user, "aud": SERVICE,
            "exp": now + 300, "nbf": now - 10, "iat": now,
            "jti": format!("{now}-{}", rand::random::<u64>()),
            "access": access,
        });
        let signing_input = format!(
            "{}.{}",
            b64url(header.to_string().as_bytes()),
            b64url(claims.to_string().as_bytes())
        );
        let e = |x: openssl::error::ErrorStack| format!("signing: {x}");
        let digest = openssl::sha::sha256(signing_input.as_bytes());
        let ec = self.key.ec_key().map_err(e)?;
        let sig = openssl::ecdsa::EcdsaSig::sign(&digest, &ec).map_err(e)?;
        // JOSE wants r || s, 32 bytes each, not DER.
        let mut raw = sig.r().to_vec_padded(32).map_err(e)?;
        raw.extend(sig.s().to_vec_padded(32).map_err(e)?);
        Ok(format!("{signing_input}.{}", b64url(&raw)))
    }
}
