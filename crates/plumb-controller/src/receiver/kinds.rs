//! Verification of the registry and event-bus Receiver types, as Flux's notification-controller
//! does it: `bitbucket` (Bitbucket Server: `X-Hub-Signature` HMAC, `X-Event-Key` filtered),
//! `harbor` (`Authorization` equals the token), `dockerhub`, `quay` and `acr` (the path is the
//! secret; the body must decode as the sender's payload), `nexus` (`X-Nexus-Webhook-Signature`,
//! hex HMAC-SHA1 of the body), `cdevents` (a CDEvent body, `Ce-Type` filtered) and the payload
//! part of `gcr` (a Pub/Sub push message wrapping the registry event) and `generic-oidc` (a
//! bearer token must be present). The bearer tokens of `gcr` and `generic-oidc` are verified
//! by `oidc.rs`, which needs the network; what is here is pure.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use plumb_api::receiver::ReceiverType;
use serde::Deserialize;

use super::webhook::{Rejection, Verdict, allowed, check_github_style, constant_time_eq};

mod cdevent;
use cdevent::check_cdevent;

/// Verifies a call to a Receiver of one of the types of this module.
pub(super) fn verify(
    type_: ReceiverType,
    token: &str,
    events: &[String],
    headers: &http::HeaderMap,
    body: &[u8],
) -> Result<Verdict, Rejection> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    match type_ {
        ReceiverType::Bitbucket => {
            check_github_style(headers, token, body)?;
            allowed(events, header("x-event-key").unwrap_or(""))?;
            Ok(Verdict::Trigger)
        }
        ReceiverType::Harbor => {
            let got = header("authorization").ok_or(Rejection::Missing("Authorization"))?;
            if !constant_time_eq(got.as_bytes(), token.as_bytes()) {
                return Err(Rejection::Invalid("Authorization"));
            }
            Ok(Verdict::Trigger)
        }
        ReceiverType::Dockerhub => decode::<DockerHub>(body, "DockerHub").map(|_| Verdict::Trigger),
        ReceiverType::Quay => decode::<Quay>(body, "Quay").map(|_| Verdict::Trigger),
        ReceiverType::Acr => decode::<Acr>(body, "ACR").map(|_| Verdict::Trigger),
        ReceiverType::Nexus => {
            let sig = header("x-nexus-webhook-signature")
                .ok_or(Rejection::Missing("X-Nexus-Webhook-Signature"))?;
            if !nexus_signature_ok(token, sig, body) {
                return Err(Rejection::Invalid("X-Nexus-Webhook-Signature"));
            }
            decode::<Nexus>(body, "Nexus")?;
            Ok(Verdict::Trigger)
        }
        ReceiverType::Cdevents => {
            let event = header("ce-type").unwrap_or("");
            check_cdevent(body)?;
            allowed(events, event)?;
            Ok(Verdict::Trigger)
        }
        ReceiverType::Gcr => {
            bearer(headers)?;
            gcr_event(body)?;
            Ok(Verdict::Bearer)
        }
        ReceiverType::GenericOidc => {
            bearer(headers)?;
            Ok(Verdict::Bearer)
        }
        other => Err(Rejection::Unsupported(other)),
    }
}

/// The bearer token of the `Authorization` header.
pub(super) fn bearer(headers: &http::HeaderMap) -> Result<&str, Rejection> {
    let value = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or(Rejection::Missing("Authorization"))?;
    let token = value
        .strip_prefix("Bearer ")
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or(Rejection::Missing("Authorization: Bearer"))?;
    Ok(token)
}

/// Decodes the first JSON value of `body` as `T` (Go's `json.Decoder.Decode`: trailing
/// bytes are not read).
fn decode<T: for<'de> Deserialize<'de>>(body: &[u8], sender: &str) -> Result<T, Rejection> {
    let mut values = serde_json::Deserializer::from_slice(body).into_iter::<T>();
    match values.next() {
        Some(Ok(v)) => Ok(v),
        Some(Err(e)) => Err(Rejection::Malformed(format!(
            "cannot decode {sender} webhook payload: {e}"
        ))),
        None => Err(Rejection::Malformed(format!(
            "cannot decode {sender} webhook payload: empty body"
        ))),
    }
}

#[derive(Deserialize)]
struct DockerHub {
    #[serde(default)]
    #[allow(dead_code)]
    push_data: Option<DockerHubPush>,
    #[serde(default)]
    #[allow(dead_code)]
    repository: Option<DockerHubRepository>,
}

#[derive(Deserialize)]
struct DockerHubPush {
    #[serde(default)]
    #[allow(dead_code)]
    tag: Option<String>,
}

#[derive(Deserialize)]
struct DockerHubRepository {
    #[serde(default)]
    #[allow(dead_code)]
    repo_url: Option<String>,
}

#[derive(Deserialize)]
struct Quay {
    #[serde(default)]
    #[allow(dead_code)]
    docker_url: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    updated_tags: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Nexus {
    #[serde(default)]
    #[allow(dead_code)]
    action: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    repository_name: Option<String>,
}

#[derive(Deserialize)]
struct Acr {
    #[serde(default)]
    #[allow(dead_code)]
    action: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    target: Option<AcrTarget>,
}

#[derive(Deserialize)]
struct AcrTarget {
    #[serde(default)]
    #[allow(dead_code)]
    repository: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    tag: Option<String>,
}

/// Nexus signs with the lowercase hex HMAC-SHA1 of the body keyed with the secret key.
fn nexus_signature_ok(token: &str, sig: &str, body: &[u8]) -> bool {
    let Ok(mut mac) = <Hmac<sha1::Sha1> as Mac>::new_from_slice(token.as_bytes()) else {
        return false;
    };
    mac.update(body);
    let want = hex::encode(mac.finalize().into_bytes());
    constant_time_eq(sig.as_bytes(), want.as_bytes())
}

/// The Nexus signature of `body` with `token` (for senders and tests).
pub fn nexus_sign(token: &str, body: &[u8]) -> String {
    match <Hmac<sha1::Sha1> as Mac>::new_from_slice(token.as_bytes()) {
        Ok(mut mac) => {
            mac.update(body);
            hex::encode(mac.finalize().into_bytes())
        }
        Err(_) => String::new(),
    }
}

#[derive(Deserialize)]
struct PubSubPush {
    message: PubSubMessage,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PubSubMessage {
    #[serde(default)]
    data: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    message_id: Option<String>,
    #[serde(default)]
    publish_time: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    subscription: Option<String>,
}

#[derive(Deserialize, serde::Serialize)]
struct GcrEvent {
    #[serde(default)]
    action: String,
    #[serde(default)]
    digest: String,
    #[serde(default)]
    tag: String,
}

/// The registry event a GCR Pub/Sub push wraps (base64 JSON in `message.data`), as the JSON
/// Flux hands to filters in place of the body.
pub(super) fn gcr_event(body: &[u8]) -> Result<Vec<u8>, Rejection> {
    let push: PubSubPush = decode(body, "GCR")?;
    if let Some(t) = push.message.publish_time.as_deref()
        && chrono::DateTime::parse_from_rfc3339(t).is_err()
    {
        return Err(Rejection::Malformed(
            "cannot decode GCR webhook payload: message.publishTime is not RFC 3339".into(),
        ));
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(push.message.data.unwrap_or_default())
        .unwrap_or_default();
    let event: GcrEvent = serde_json::from_slice(&raw)
        .map_err(|e| Rejection::Malformed(format!("cannot decode GCR webhook body: {e}")))?;
    serde_json::to_vec(&event)
        .map_err(|e| Rejection::Malformed(format!("cannot decode GCR webhook body: {e}")))
}

#[cfg(test)]
mod tests;
