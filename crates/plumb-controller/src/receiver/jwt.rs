//! JSON Web Tokens as OIDC issuers sign them: compact JWS, `RS256` (RSA PKCS#1 v1.5 with
//! SHA-256) or `ES256` (ECDSA P-256 with SHA-256), verified against the issuer's JWKS with
//! OpenSSL, then the registered claims (`iss`, `aud`, `exp`, `nbf`) checked as go-oidc does.
//! Errors name what failed, never the token.

use base64::Engine as _;
use openssl::bn::BigNum;
use openssl::ec::{EcGroup, EcKey};
use openssl::ecdsa::EcdsaSig;
use openssl::hash::{MessageDigest, hash};
use openssl::nid::Nid;
use openssl::pkey::PKey;
use openssl::rsa::Rsa;
use openssl::sign::Verifier;
use serde::Deserialize;
use serde_json::{Map, Value};

/// Largest token accepted (bytes).
const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// Clock skew allowed on `nbf` (go-oidc's).
const NBF_LEEWAY_SECS: i64 = 300;

/// A parsed, not yet verified, token.
#[derive(Debug)]
pub(super) struct Jwt {
    alg: String,
    kid: Option<String>,
    /// The claims (only trusted after [`Jwt::verify`]).
    pub(super) claims: Map<String, Value>,
    signing_input: String,
    signature: Vec<u8>,
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
}

/// One key of a JWKS.
#[derive(Debug, Clone, Deserialize)]
pub(super) struct Jwk {
    kty: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    alg: Option<String>,
    #[serde(default, rename = "use")]
    use_: Option<String>,
    #[serde(default)]
    n: Option<String>,
    #[serde(default)]
    e: Option<String>,
    #[serde(default)]
    crv: Option<String>,
    #[serde(default)]
    x: Option<String>,
    #[serde(default)]
    y: Option<String>,
}

/// A JWKS document.
#[derive(Debug, Clone, Default, Deserialize)]
pub(super) struct Jwks {
    /// Its keys.
    #[serde(default)]
    pub(super) keys: Vec<Jwk>,
}

fn b64(s: &str) -> Result<Vec<u8>, String> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .map_err(|_| "the token is not base64url".to_string())
}

impl Jwt {
    /// Parses a compact JWS.
    pub(super) fn parse(raw: &str) -> Result<Jwt, String> {
        if raw.len() > MAX_TOKEN_BYTES {
            return Err(format!("the token is longer than {MAX_TOKEN_BYTES} bytes"));
        }
        let mut parts = raw.split('.');
        let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err("the token is not a JWT".into());
        };
        let header: Header = serde_json::from_slice(&b64(h)?)
            .map_err(|_| "the token header is not a JWT header".to_string())?;
        let claims: Map<String, Value> = serde_json::from_slice(&b64(p)?)
            .map_err(|_| "the token payload is not a JSON object".to_string())?;
        Ok(Jwt {
            alg: header.alg,
            kid: header.kid,
            claims,
            signing_input: format!("{h}.{p}"),
            signature: b64(s)?,
        })
    }

    /// The `iss` claim (unverified: only to pick the provider).
    pub(super) fn issuer(&self) -> Option<&str> {
        self.claims.get("iss").and_then(Value::as_str)
    }

    /// Whether the token names a key id none of `keys` has (the key set may have rotated).
    pub(super) fn kid_unknown(&self, keys: &Jwks) -> bool {
        self.kid
            .as_deref()
            .is_some_and(|kid| !keys.keys.iter().any(|k| k.kid.as_deref() == Some(kid)))
    }

    /// Verifies the signature with one of `keys` (the one with the token's `kid` when it
    /// names one).
    pub(super) fn verify(&self, keys: &Jwks) -> Result<(), String> {
        let (kty, alg) = match self.alg.as_str() {
            "RS256" => ("RSA", "RS256"),
            "ES256" => ("EC", "ES256"),
            other => return Err(format!("unsupported signing algorithm {other:?}")),
        };
        let candidates = keys.keys.iter().filter(|k| {
            k.kty == kty
                && k.alg.as_deref().is_none_or(|a| a == alg)
                && k.use_.as_deref().is_none_or(|u| u == "sig")
                && self
                    .kid
                    .as_deref()
                    .is_none_or(|kid| k.kid.as_deref() == Some(kid))
        });
        for key in candidates {
            if self.verify_with(key).unwrap_or(false) {
                return Ok(());
            }
        }
        Err("the token signature does not verify with the issuer's keys".into())
    }

    fn verify_with(&self, key: &Jwk) -> Result<bool, openssl::error::ErrorStack> {
        let input = self.signing_input.as_bytes();
        let field = |v: &Option<String>| v.as_deref().and_then(|s| b64(s).ok());
        if key.kty == "RSA" {
            let (Some(n), Some(e)) = (field(&key.n), field(&key.e)) else {
                return Ok(false);
            };
            let rsa =
                Rsa::from_public_components(BigNum::from_slice(&n)?, BigNum::from_slice(&e)?)?;
            let pkey = PKey::from_rsa(rsa)?;
            let mut v = Verifier::new(MessageDigest::sha256(), &pkey)?;
            return v.verify_oneshot(&self.signature, input);
        }
        if key.crv.as_deref() != Some("P-256") || self.signature.len() != 64 {
            return Ok(false);
        }
        let (Some(x), Some(y)) = (field(&key.x), field(&key.y)) else {
            return Ok(false);
        };
        let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
        let (x, y) = (BigNum::from_slice(&x)?, BigNum::from_slice(&y)?);
        let ec = EcKey::from_public_key_affine_coordinates(&group, &x, &y)?;
        let (r, s) = self.signature.split_at(32);
        let sig =
            EcdsaSig::from_private_components(BigNum::from_slice(r)?, BigNum::from_slice(s)?)?;
        let digest = hash(MessageDigest::sha256(), input)?;
        sig.verify(&digest, &ec)
    }

    /// Checks `iss` (one of `issuers`), `aud` (contains `audience`), `exp` (required, in the
    /// future) and `nbf` (not too far ahead) at `now` (Unix seconds).
    pub(super) fn check_claims(
        &self,
        issuers: &[&str],
        audience: &str,
        now: i64,
    ) -> Result<(), String> {
        let iss = self.issuer().unwrap_or("");
        if !issuers.contains(&iss) {
            return Err(format!("token issuer is {iss:?}, want {issuers:?}"));
        }
        let aud_ok = match self.claims.get("aud") {
            Some(Value::String(a)) => a == audience,
            Some(Value::Array(a)) => a.iter().any(|v| v.as_str() == Some(audience)),
            _ => false,
        };
        if !aud_ok {
            return Err(format!("token audience does not contain {audience:?}"));
        }
        let num = |k: &str| self.claims.get(k).and_then(Value::as_f64).map(|f| f as i64);
        let exp = num("exp").ok_or("the token has no 'exp' claim")?;
        if now >= exp {
            return Err("the token is expired".into());
        }
        if let Some(nbf) = num("nbf")
            && now + NBF_LEEWAY_SECS < nbf
        {
            return Err("the token is not valid yet".into());
        }
        Ok(())
    }
}
