//! Bearer tokens of OIDC-secured Receivers, with Flux 2.9's semantics.
//!
//! `generic-oidc`: the provider of `spec.oidcProviders` whose `issuerURL` equals the token's
//! `iss` is discovered (`<issuer>/.well-known/openid-configuration`, whose `issuer` must be
//! the same URL), the token is verified against its JWKS (`RS256`/`ES256`), its `aud` must
//! hold the provider's audience (`notification-controller` by default) and it must not be
//! expired; then the provider's CEL `variables` are evaluated in order over `claims` (and the
//! earlier `vars`) and every `validations` expression must be true, else the call is refused
//! with the messages of the false ones. The verified claims are handed to the resource
//! filters as `claims`.
//!
//! `gcr`: the Pub/Sub push identity token is verified against Google's keys
//! ([`GOOGLE_CERTS_URL`]), its issuer must be `accounts.google.com`, its audience the Secret's
//! `audience`, its `email` the Secret's `email` and `email_verified` true.
//!
//! Discovery documents and key sets are cached per issuer for [`KEYS_TTL`] in a context memo;
//! a token naming an unknown key id refetches the key set once.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use plumb_api::Receiver;
use plumb_api::receiver::{OidcProvider, ReceiverType};
use serde_json::{Map, Value};

use super::jwt::{Jwks, Jwt};
use super::webhook::Rejection;
use crate::cel::{CelError, Expression};
use crate::context::Context;

/// Google's OIDC signing keys (JWKS), for `gcr` push tokens.
pub const GOOGLE_CERTS_URL: &str = "https://www.googleapis.com/oauth2/v3/certs";
/// How long a discovery document or key set is reused.
pub const KEYS_TTL: Duration = Duration::from_secs(300);
/// The issuers of Google identity tokens.
const GOOGLE_ISSUERS: [&str; 2] = ["accounts.google.com", "https://accounts.google.com"];
/// The variables of OIDC claim expressions.
const CLAIM_VARS: [&str; 2] = ["claims", "vars"];
/// Condition reason of a Receiver whose spec breaks Flux's schema rules.
pub const REASON_VALIDATION_FAILED: &str = "ValidationFailed";

/// Cached discovery documents and key sets, by URL.
#[derive(Default)]
pub(super) struct OidcCache {
    client: OnceLock<reqwest::Client>,
    jwks_uri: Mutex<HashMap<String, (String, Instant)>>,
    keys: Mutex<HashMap<String, (Jwks, Instant)>>,
}

impl OidcCache {
    fn client(&self) -> Result<&reqwest::Client, String> {
        if let Some(c) = self.client.get() {
            return Ok(c);
        }
        let c = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::limited(3))
            .user_agent(concat!("plumb/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("building the OIDC HTTP client: {e}"))?;
        Ok(self.client.get_or_init(|| c))
    }

    async fn get_json(&self, url: &str) -> Result<Value, String> {
        let resp = self
            .client()?
            .get(url)
            .send()
            .await
            .map_err(|e| format!("GET {url}: {e}"))?;
        if !resp.status().is_success() {
            return Err(format!("GET {url}: HTTP {}", resp.status()));
        }
        let body = resp.bytes().await.map_err(|e| format!("GET {url}: {e}"))?;
        if body.len() > 1 << 20 {
            return Err(format!("GET {url}: response larger than 1 MiB"));
        }
        serde_json::from_slice(&body).map_err(|e| format!("GET {url}: not JSON: {e}"))
    }

    /// The `jwks_uri` of `issuer` from its discovery document.
    async fn jwks_uri(&self, issuer: &str) -> Result<String, String> {
        if let Ok(m) = self.jwks_uri.lock()
            && let Some((uri, at)) = m.get(issuer)
            && at.elapsed() < KEYS_TTL
        {
            return Ok(uri.clone());
        }
        let url = format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        );
        let doc = self.get_json(&url).await?;
        let got = doc.get("issuer").and_then(Value::as_str).unwrap_or("");
        if got != issuer {
            return Err(format!(
                "oidc: issuer did not match the issuer returned by provider, expected {issuer:?} got {got:?}"
            ));
        }
        let uri = doc
            .get("jwks_uri")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("{url}: no jwks_uri"))?
            .to_string();
        if let Ok(mut m) = self.jwks_uri.lock() {
            m.insert(issuer.to_string(), (uri.clone(), Instant::now()));
        }
        Ok(uri)
    }

    /// The key set at `uri` (cached unless `refresh`).
    async fn keys(&self, uri: &str, refresh: bool) -> Result<Jwks, String> {
        if !refresh
            && let Ok(m) = self.keys.lock()
            && let Some((k, at)) = m.get(uri)
            && at.elapsed() < KEYS_TTL
        {
            return Ok(k.clone());
        }
        let keys: Jwks = serde_json::from_value(self.get_json(uri).await?)
            .map_err(|e| format!("{uri}: not a JWKS: {e}"))?;
        if let Ok(mut m) = self.keys.lock() {
            m.insert(uri.to_string(), (keys.clone(), Instant::now()));
        }
        Ok(keys)
    }

    /// Verifies the signature of `jwt` with the keys at `uri`, refetching them once when
    /// the token names a key the cached set lacks.
    async fn verify_signature(&self, jwt: &Jwt, uri: &str) -> Result<(), String> {
        let mut keys = self.keys(uri, false).await?;
        if jwt.kid_unknown(&keys) {
            keys = self.keys(uri, true).await?;
        }
        jwt.verify(&keys)
    }
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn invalid(msg: impl std::fmt::Display) -> Rejection {
    tracing::info!(reason = %msg, "bearer token refused");
    Rejection::Token(msg.to_string())
}

/// Verifies the bearer token of a call to a `generic-oidc` Receiver; the verified claims.
pub(super) async fn verify_generic(
    ctx: &Context,
    rcv: &Receiver,
    raw: &str,
) -> Result<Value, Rejection> {
    let jwt = Jwt::parse(raw).map_err(|e| invalid(format!("failed to parse bearer token: {e}")))?;
    let iss = jwt
        .issuer()
        .filter(|i| !i.is_empty())
        .ok_or_else(|| invalid("failed to parse bearer token: token is missing the 'iss' claim"))?;
    let provider = rcv
        .spec
        .oidc_providers
        .iter()
        .find(|p| p.issuer_url == iss)
        .ok_or_else(|| invalid(format!("no oidcProvider configured for issuer {iss:?}")))?;
    let cache = ctx.memo::<OidcCache>();
    let uri = cache
        .jwks_uri(&provider.issuer_url)
        .await
        .map_err(|e| Rejection::Upstream(format!("failed to initialize OIDC provider: {e}")))?;
    cache
        .verify_signature(&jwt, &uri)
        .await
        .map_err(|e| invalid(format!("failed to verify OIDC token: {e}")))?;
    jwt.check_claims(&[provider.issuer_url.as_str()], provider.audience(), now())
        .map_err(|e| invalid(format!("failed to verify OIDC token: {e}")))?;
    let claims = Value::Object(jwt.claims);
    evaluate(provider, &claims).map_err(invalid)?;
    Ok(claims)
}

/// Evaluates a provider's variables then validations over `claims`.
pub(super) fn evaluate(provider: &OidcProvider, claims: &Value) -> Result<(), String> {
    let mut vars = Map::new();
    for v in &provider.variables {
        let e = Expression::cached(&v.expression, Some(&CLAIM_VARS)).map_err(|e| e.to_string())?;
        let vars_now = Value::Object(vars.clone());
        let value = e
            .eval_value(&[("claims", claims), ("vars", &vars_now)])
            .map_err(|e| format!("failed to evaluate variable {:?}: {e}", v.name))?;
        vars.insert(v.name.clone(), value);
    }
    let vars = Value::Object(vars);
    let mut failures = Vec::new();
    for v in &provider.validations {
        let e = Expression::cached(&v.expression, Some(&CLAIM_VARS)).map_err(|e| e.to_string())?;
        let ok = e
            .eval_bool(&[("claims", claims), ("vars", &vars)])
            .map_err(|e| format!("failed to evaluate validation: {e}"))?;
        if !ok {
            failures.push(v.message.as_str());
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(format!("token validation failed: {}", failures.join("; ")))
    }
}

/// Verifies the Google identity token of a `gcr` push against `email` and `audience` (the
/// Receiver Secret's), with Google's keys at `certs_url`.
pub(super) async fn verify_gcr(
    ctx: &Context,
    raw: &str,
    email: &str,
    audience: &str,
    certs_url: &str,
) -> Result<(), Rejection> {
    if email.is_empty() || audience.is_empty() {
        return Err(Rejection::Malformed(
            "invalid secret data: the GCR receiver Secret needs the 'email' and 'audience' keys"
                .into(),
        ));
    }
    let jwt = Jwt::parse(raw).map_err(|e| invalid(format!("invalid ID token: {e}")))?;
    ctx.memo::<OidcCache>()
        .verify_signature(&jwt, certs_url)
        .await
        .map_err(|e| invalid(format!("invalid ID token: {e}")))?;
    jwt.check_claims(&GOOGLE_ISSUERS, audience, now())
        .map_err(|e| invalid(format!("invalid ID token: {e}")))?;
    let got = jwt
        .claims
        .get("email")
        .and_then(Value::as_str)
        .unwrap_or("");
    if got != email {
        return Err(invalid(format!("token email is {got:?}, want {email:?}")));
    }
    if jwt.claims.get("email_verified") != Some(&Value::Bool(true)) {
        return Err(invalid(format!("token email {got:?} is not verified")));
    }
    Ok(())
}

/// Flux's schema rules on `type`, `secretRef` and `oidcProviders`, and the compilation of
/// every claim expression (a terminal configuration error when one fails).
pub fn validate_spec(rcv: &Receiver) -> Result<(), String> {
    let spec = &rcv.spec;
    let oidc = spec.type_ == ReceiverType::GenericOidc;
    if oidc && spec.oidc_providers.is_empty() {
        return Err("generic-oidc receivers must define at least one oidcProvider".into());
    }
    if !oidc && !spec.oidc_providers.is_empty() {
        return Err("oidcProviders can only be set when type is generic-oidc".into());
    }
    if oidc && spec.secret_ref.is_some() {
        return Err("secretRef cannot be set when type is generic-oidc".into());
    }
    if !oidc && spec.secret_ref.is_none() {
        return Err("secretRef is required when type is not generic-oidc".into());
    }
    let mut seen = std::collections::HashSet::new();
    for (i, p) in spec.oidc_providers.iter().enumerate() {
        let iss = &p.issuer_url;
        if !(iss.starts_with("http://") || iss.starts_with("https://")) {
            return Err(format!(
                "oidcProviders[{i}]: issuerURL {iss:?} must start with http:// or https://"
            ));
        }
        if !seen.insert(iss.as_str()) {
            return Err(format!("oidcProviders[{i}]: duplicate issuerURL {iss:?}"));
        }
        if p.validations.is_empty() {
            return Err(format!(
                "oidcProviders[{i}] (issuerURL={iss:?}): at least one validation is required; without validations any caller able to obtain a token from this issuer can trigger the Receiver"
            ));
        }
        compile(p).map_err(|e| format!("oidcProviders[{i}] (issuerURL={iss:?}): {e}"))?;
    }
    Ok(())
}

fn compile(p: &OidcProvider) -> Result<(), CelError> {
    let exprs = p.variables.iter().map(|v| v.expression.as_str());
    for src in exprs.chain(p.validations.iter().map(|v| v.expression.as_str())) {
        Expression::cached(src, Some(&CLAIM_VARS))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
