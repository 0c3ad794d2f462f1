//! Verification of webhook calls by Receiver type, and the token a Receiver's Secret holds.
//! Pure functions of the call (headers, body) and the Receiver, so they can be fuzzed.

use std::sync::atomic::{AtomicU64, Ordering};

use hmac::{Hmac, Mac};
use hyper::StatusCode;
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use plumb_api::Receiver;
use plumb_api::receiver::ReceiverType;

/// Condition reason when the token Secret is missing or has no `token` key (Flux's).
pub const REASON_TOKEN_NOT_FOUND: &str = "TokenNotFound";

pub(super) static REJECTED: AtomicU64 = AtomicU64::new(0);
pub(super) static ACCEPTED: AtomicU64 = AtomicU64::new(0);

/// Webhook calls rejected for a missing or wrong signature or token since the process started.
pub fn rejected_total() -> u64 {
    REJECTED.load(Ordering::Relaxed)
}

/// Webhook calls accepted (verified and handled) since the process started.
pub fn accepted_total() -> u64 {
    ACCEPTED.load(Ordering::Relaxed)
}

// ---------------------------------------------------------------------------------------------
// Verification

/// Why a webhook call was not acted on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// The signature or token header is absent (401).
    Missing(&'static str),
    /// The signature or token does not match (403).
    Invalid(&'static str),
    /// The event type is not in `spec.events` (400).
    EventNotAllowed(String),
    /// The header is malformed, e.g. an unknown hash (400).
    Malformed(String),
    /// plumb does not implement this receiver type (400).
    Unsupported(ReceiverType),
    /// The bearer token is not valid for this Receiver (403); the reason, never the token.
    Token(String),
    /// The token's issuer could not be reached or read (502).
    Upstream(String),
}

impl Rejection {
    /// HTTP status answered for this rejection.
    pub fn status(&self) -> StatusCode {
        match self {
            Rejection::Missing(_) => StatusCode::UNAUTHORIZED,
            Rejection::Invalid(_) | Rejection::Token(_) => StatusCode::FORBIDDEN,
            Rejection::Upstream(_) => StatusCode::BAD_GATEWAY,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    /// Whether this counts as an authentication failure.
    pub fn is_auth_failure(&self) -> bool {
        matches!(
            self,
            Rejection::Missing(_) | Rejection::Invalid(_) | Rejection::Token(_)
        )
    }
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rejection::Missing(h) => write!(f, "missing {h} header"),
            Rejection::Invalid(h) => write!(f, "{h} does not match"),
            Rejection::EventNotAllowed(e) => write!(f, "event {e:?} is not in spec.events"),
            Rejection::Malformed(m) => f.write_str(m),
            Rejection::Unsupported(t) => write!(f, "receiver type {t} is not supported by plumb"),
            Rejection::Token(m) | Rejection::Upstream(m) => f.write_str(m),
        }
    }
}

/// What a verified call asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Request reconciles of the resources.
    Trigger,
    /// A GitHub ping: answer 200, trigger nothing.
    Ping,
    /// The payload is well-formed; the bearer token (`gcr`, `generic-oidc`) must still be
    /// verified against its issuer before anything is triggered.
    Bearer,
}

/// Verifies a webhook call to a Receiver of type `type_` with `token` and `events`.
pub fn verify(
    type_: ReceiverType,
    token: &str,
    events: &[String],
    headers: &http::HeaderMap,
    body: &[u8],
) -> Result<Verdict, Rejection> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    match type_ {
        ReceiverType::Generic => Ok(Verdict::Trigger),
        ReceiverType::GenericHmac => {
            let sig = header("x-signature").ok_or(Rejection::Missing("X-Signature"))?;
            check_hmac(sig, token, body, "X-Signature")?;
            Ok(Verdict::Trigger)
        }
        ReceiverType::Github => {
            check_github_style(headers, token, body)?;
            let event = header("x-github-event").unwrap_or("");
            if event == "ping" {
                return Ok(Verdict::Ping);
            }
            allowed(events, event)?;
            Ok(Verdict::Trigger)
        }
        ReceiverType::Gitlab => {
            let got = header("x-gitlab-token").ok_or(Rejection::Missing("X-Gitlab-Token"))?;
            if !constant_time_eq(got.as_bytes(), token.as_bytes()) {
                return Err(Rejection::Invalid("X-Gitlab-Token"));
            }
            allowed(events, header("x-gitlab-event").unwrap_or(""))?;
            Ok(Verdict::Trigger)
        }
        other => super::kinds::verify(other, token, events, headers, body),
    }
}

/// Whether `event` passes `spec.events` (all when empty; case-insensitive, as Flux).
pub(super) fn allowed(events: &[String], event: &str) -> Result<(), Rejection> {
    if events.is_empty() || events.iter().any(|e| e.eq_ignore_ascii_case(event)) {
        Ok(())
    } else {
        Err(Rejection::EventNotAllowed(event.to_string()))
    }
}

/// GitHub's signature headers (go-github's `ValidatePayload`, also used for Bitbucket
/// Server): `X-Hub-Signature-256`, else the SHA-1 `X-Hub-Signature`.
pub(super) fn check_github_style(
    headers: &http::HeaderMap,
    token: &str,
    body: &[u8],
) -> Result<(), Rejection> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    match (header("x-hub-signature-256"), header("x-hub-signature")) {
        (Some(sig), _) => check_hmac(sig, token, body, "X-Hub-Signature-256"),
        (None, Some(sig)) => check_hmac(sig, token, body, "X-Hub-Signature"),
        (None, None) => Err(Rejection::Missing("X-Hub-Signature-256")),
    }
}

/// Checks `<algo>=<hex>` against the HMAC of `body` keyed with `token`, in constant time.
fn check_hmac(sig: &str, token: &str, body: &[u8], header: &'static str) -> Result<(), Rejection> {
    let (algo, hex_sig) = sig
        .split_once('=')
        .ok_or_else(|| Rejection::Malformed(format!("{header}: expected <hash>=<hex>")))?;
    let Ok(mac) = hex::decode(hex_sig.trim()) else {
        return Err(Rejection::Invalid(header));
    };
    let key = token.as_bytes();
    let ok = match algo.to_ascii_lowercase().as_str() {
        "sha1" => mac_ok::<Hmac<sha1::Sha1>>(key, body, &mac),
        "sha256" => mac_ok::<Hmac<sha2::Sha256>>(key, body, &mac),
        "sha512" => mac_ok::<Hmac<sha2::Sha512>>(key, body, &mac),
        other => {
            return Err(Rejection::Malformed(format!(
                "{header}: unsupported hash {other:?} (sha1, sha256, sha512)"
            )));
        }
    };
    if ok {
        Ok(())
    } else {
        Err(Rejection::Invalid(header))
    }
}

fn mac_ok<M: Mac + hmac::digest::KeyInit>(key: &[u8], body: &[u8], expected: &[u8]) -> bool {
    match <M as Mac>::new_from_slice(key) {
        Ok(mut m) => {
            m.update(body);
            m.verify_slice(expected).is_ok()
        }
        Err(_) => false,
    }
}

pub(super) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The `<algo>=<hex>` HMAC signature of `body` with `token` (for senders and tests).
pub fn sign(algo: &str, token: &str, body: &[u8]) -> Option<String> {
    fn hexmac<M: Mac + hmac::digest::KeyInit>(key: &[u8], body: &[u8]) -> Option<String> {
        let mut m = <M as Mac>::new_from_slice(key).ok()?;
        m.update(body);
        Some(hex::encode(m.finalize().into_bytes()))
    }
    let key = token.as_bytes();
    let hex = match algo {
        "sha1" => hexmac::<Hmac<sha1::Sha1>>(key, body)?,
        "sha256" => hexmac::<Hmac<sha2::Sha256>>(key, body)?,
        "sha512" => hexmac::<Hmac<sha2::Sha512>>(key, body)?,
        _ => return None,
    };
    Some(format!("{algo}={hex}"))
}

/// Reads the `token` of a Receiver's Secret; a `generic-oidc` Receiver has none (its path
/// is salted with the empty token, as Flux).
pub(super) async fn token(
    client: &kube::Client,
    ns: &str,
    rcv: &Receiver,
) -> Result<String, String> {
    let Some(secret_ref) = rcv.spec.secret_ref.as_ref() else {
        return if rcv.spec.type_ == ReceiverType::GenericOidc {
            Ok(String::new())
        } else {
            Err("spec.secretRef is required when type is not generic-oidc".to_string())
        };
    };
    let secret = secret(client, ns, &secret_ref.name).await?;
    let name = &secret_ref.name;
    let bytes = secret
        .data
        .as_ref()
        .and_then(|d| d.get("token"))
        .map(|b| b.0.clone())
        .ok_or_else(|| format!("Secret {ns}/{name} has no 'token' key"))?;
    String::from_utf8(bytes).map_err(|_| format!("the token in Secret {ns}/{name} is not UTF-8"))
}

/// Reads the Secret `name` in `ns`.
pub(super) async fn secret(client: &kube::Client, ns: &str, name: &str) -> Result<Secret, String> {
    Api::<Secret>::namespaced(client.clone(), ns)
        .get(name)
        .await
        .map_err(|e| format!("reading Secret {ns}/{name}: {e}"))
}

/// A UTF-8 value of a Secret's data, empty when absent.
pub(super) fn secret_value(secret: &Secret, key: &str) -> String {
    secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|b| String::from_utf8_lossy(&b.0).into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    const BODY: &[u8] = br#"{"ref":"refs/heads/main"}"#;

    #[test]
    fn generic_needs_only_the_path() {
        assert_eq!(
            verify(ReceiverType::Generic, "t", &[], &headers(&[]), BODY),
            Ok(Verdict::Trigger)
        );
    }

    #[test]
    fn generic_hmac_checks_every_hash() {
        for algo in ["sha1", "sha256", "sha512"] {
            let sig = sign(algo, "tok", BODY).unwrap();
            let h = headers(&[("x-signature", &sig)]);
            assert_eq!(
                verify(ReceiverType::GenericHmac, "tok", &[], &h, BODY),
                Ok(Verdict::Trigger),
                "{algo}"
            );
            let r = verify(ReceiverType::GenericHmac, "other", &[], &h, BODY).unwrap_err();
            assert_eq!(r.status(), StatusCode::FORBIDDEN);
            let r = verify(ReceiverType::GenericHmac, "tok", &[], &h, b"tampered").unwrap_err();
            assert!(r.is_auth_failure());
        }
        // Known vector: HMAC-SHA256("key", "The quick brown fox jumps over the lazy dog").
        assert_eq!(
            sign(
                "sha256",
                "key",
                b"The quick brown fox jumps over the lazy dog"
            )
            .unwrap(),
            "sha256=f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
        );
        let r = verify(ReceiverType::GenericHmac, "tok", &[], &headers(&[]), BODY).unwrap_err();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        let h = headers(&[("x-signature", "md5=00")]);
        let r = verify(ReceiverType::GenericHmac, "tok", &[], &h, BODY).unwrap_err();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        let h = headers(&[("x-signature", "sha256=zz")]);
        let r = verify(ReceiverType::GenericHmac, "tok", &[], &h, BODY).unwrap_err();
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
    }

    #[test]
    fn github_signature_events_and_ping() {
        let sig = sign("sha256", "tok", BODY).unwrap();
        let push = headers(&[("x-hub-signature-256", &sig), ("x-github-event", "push")]);
        let events = vec!["push".to_string()];
        assert_eq!(
            verify(ReceiverType::Github, "tok", &events, &push, BODY),
            Ok(Verdict::Trigger)
        );
        let ping = headers(&[("x-hub-signature-256", &sig), ("x-github-event", "ping")]);
        assert_eq!(
            verify(ReceiverType::Github, "tok", &events, &ping, BODY),
            Ok(Verdict::Ping)
        );
        let pr = headers(&[
            ("x-hub-signature-256", &sig),
            ("x-github-event", "pull_request"),
        ]);
        assert_eq!(
            verify(ReceiverType::Github, "tok", &events, &pr, BODY),
            Err(Rejection::EventNotAllowed("pull_request".into()))
        );
        let legacy = sign("sha1", "tok", BODY).unwrap();
        let h = headers(&[("x-hub-signature", &legacy), ("x-github-event", "push")]);
        assert_eq!(
            verify(ReceiverType::Github, "tok", &events, &h, BODY),
            Ok(Verdict::Trigger)
        );
        let bad = headers(&[("x-hub-signature-256", &sig), ("x-github-event", "push")]);
        assert_eq!(
            verify(ReceiverType::Github, "tok", &events, &bad, b"other body"),
            Err(Rejection::Invalid("X-Hub-Signature-256"))
        );
        let none = headers(&[("x-github-event", "push")]);
        assert_eq!(
            verify(ReceiverType::Github, "tok", &events, &none, BODY)
                .unwrap_err()
                .status(),
            StatusCode::UNAUTHORIZED
        );
    }

    #[test]
    fn gitlab_token_and_events() {
        let ok = headers(&[("x-gitlab-token", "tok"), ("x-gitlab-event", "Push Hook")]);
        let events = vec!["Push Hook".to_string()];
        assert_eq!(
            verify(ReceiverType::Gitlab, "tok", &events, &ok, BODY),
            Ok(Verdict::Trigger)
        );
        let wrong = headers(&[("x-gitlab-token", "tok2"), ("x-gitlab-event", "Push Hook")]);
        assert_eq!(
            verify(ReceiverType::Gitlab, "tok", &events, &wrong, BODY),
            Err(Rejection::Invalid("X-Gitlab-Token"))
        );
        let tag = headers(&[
            ("x-gitlab-token", "tok"),
            ("x-gitlab-event", "Tag Push Hook"),
        ]);
        assert!(matches!(
            verify(ReceiverType::Gitlab, "tok", &events, &tag, BODY),
            Err(Rejection::EventNotAllowed(_))
        ));
        assert_eq!(
            verify(ReceiverType::Gitlab, "tok", &[], &headers(&[]), BODY),
            Err(Rejection::Missing("X-Gitlab-Token"))
        );
    }
}
