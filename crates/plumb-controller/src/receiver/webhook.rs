//! The webhook side of Receivers: verification of calls by type, and the HTTP server that
//! turns a verified call into `reconcile.fluxcd.io/requestedAt` annotations on the Receiver's
//! resources.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use hmac::{Hmac, Mac};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::{Method, Request, Response, StatusCode};
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::{Api, ApiResource, DynamicObject, ListParams, Patch, PatchParams};
use plumb_api::Receiver;
use plumb_api::consts::annotation::RECONCILE_REQUESTED_AT;
use plumb_api::receiver::{ReceiverResource, ReceiverType};

use crate::Result;
use crate::context::Context;

/// Largest request body the webhook server reads (larger calls answer 413).
pub const MAX_BODY_BYTES: usize = 4 << 20;

/// Condition reason when the token Secret is missing or has no `token` key (Flux's).
pub const REASON_TOKEN_NOT_FOUND: &str = "TokenNotFound";

static REJECTED: AtomicU64 = AtomicU64::new(0);
static ACCEPTED: AtomicU64 = AtomicU64::new(0);

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
}

impl Rejection {
    /// HTTP status answered for this rejection.
    pub fn status(&self) -> StatusCode {
        match self {
            Rejection::Missing(_) => StatusCode::UNAUTHORIZED,
            Rejection::Invalid(_) => StatusCode::FORBIDDEN,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    /// Whether this counts as an authentication failure.
    pub fn is_auth_failure(&self) -> bool {
        matches!(self, Rejection::Missing(_) | Rejection::Invalid(_))
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
    let allowed = |event: &str| -> Result<(), Rejection> {
        if events.is_empty() || events.iter().any(|e| e.eq_ignore_ascii_case(event)) {
            Ok(())
        } else {
            Err(Rejection::EventNotAllowed(event.to_string()))
        }
    };
    match type_ {
        ReceiverType::Generic => Ok(Verdict::Trigger),
        ReceiverType::GenericHmac => {
            let sig = header("x-signature").ok_or(Rejection::Missing("X-Signature"))?;
            check_hmac(sig, token, body, "X-Signature")?;
            Ok(Verdict::Trigger)
        }
        ReceiverType::Github => {
            match (header("x-hub-signature-256"), header("x-hub-signature")) {
                (Some(sig), _) => check_hmac(sig, token, body, "X-Hub-Signature-256")?,
                (None, Some(sig)) => check_hmac(sig, token, body, "X-Hub-Signature")?,
                (None, None) => return Err(Rejection::Missing("X-Hub-Signature-256")),
            }
            let event = header("x-github-event").unwrap_or("");
            if event == "ping" {
                return Ok(Verdict::Ping);
            }
            allowed(event)?;
            Ok(Verdict::Trigger)
        }
        ReceiverType::Gitlab => {
            let got = header("x-gitlab-token").ok_or(Rejection::Missing("X-Gitlab-Token"))?;
            if !constant_time_eq(got.as_bytes(), token.as_bytes()) {
                return Err(Rejection::Invalid("X-Gitlab-Token"));
            }
            allowed(header("x-gitlab-event").unwrap_or(""))?;
            Ok(Verdict::Trigger)
        }
        other => Err(Rejection::Unsupported(other)),
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

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
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

/// Reads the `token` of a Receiver's Secret.
pub(super) async fn token(
    client: &kube::Client,
    ns: &str,
    rcv: &Receiver,
) -> Result<String, String> {
    let name = &rcv.spec.secret_ref.name;
    let secret = Api::<Secret>::namespaced(client.clone(), ns)
        .get(name)
        .await
        .map_err(|e| format!("reading Secret {ns}/{name}: {e}"))?;
    let bytes = secret
        .data
        .as_ref()
        .and_then(|d| d.get("token"))
        .map(|b| b.0.clone())
        .ok_or_else(|| format!("Secret {ns}/{name} has no 'token' key"))?;
    String::from_utf8(bytes).map_err(|_| format!("the token in Secret {ns}/{name} is not UTF-8"))
}

// ---------------------------------------------------------------------------------------------
// HTTP server

type Body = Full<bytes::Bytes>;

fn reply(status: StatusCode, msg: impl Into<String>) -> Response<Body> {
    let mut resp = Response::new(Full::new(bytes::Bytes::from(msg.into() + "\n")));
    *resp.status_mut() = status;
    resp
}

/// Serves webhook calls on `listener` until `shutdown` completes. Receivers are looked up in
/// `namespace` (all namespaces when `None`) by `status.webhookPath`.
pub async fn serve(
    ctx: Arc<Context>,
    listener: tokio::net::TcpListener,
    namespace: Option<String>,
    shutdown: impl Future<Output = ()>,
) {
    let namespace = Arc::new(namespace);
    tokio::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            _ = &mut shutdown => return,
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a webhook connection failed");
                    continue;
                }
            },
        };
        let ctx = ctx.clone();
        let namespace = namespace.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let ctx = ctx.clone();
                let namespace = namespace.clone();
                async move { Ok::<_, Infallible>(handle(&ctx, namespace.as_deref(), req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                .await;
        });
    }
}

async fn handle(
    ctx: &Context,
    namespace: Option<&str>,
    req: Request<hyper::body::Incoming>,
) -> Response<Body> {
    let path = req.uri().path().to_string();
    if !path.starts_with(plumb_api::consts::RECEIVER_WEBHOOK_PATH_PREFIX) {
        return reply(StatusCode::NOT_FOUND, "not found");
    }
    if req.method() != Method::POST {
        return reply(StatusCode::METHOD_NOT_ALLOWED, "only POST is accepted");
    }
    let (parts, body) = req.into_parts();
    let body = match read_body(&parts.headers, body).await {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    let matching = match receivers_at(ctx, namespace, &path).await {
        Ok(m) => m,
        Err(resp) => return resp,
    };
    if matching.is_empty() {
        return reply(StatusCode::NOT_FOUND, "no receiver for this path");
    }
    let mut failures = 0usize;
    let mut triggered = 0usize;
    for rcv in &matching {
        let ns = rcv.namespace().unwrap_or_default();
        let name = rcv.name_any();
        if rcv.spec.suspend {
            tracing::info!(receiver = %format!("{ns}/{name}"), "receiver is suspended; call ignored");
            continue;
        }
        let token = match token(&ctx.client, &ns, rcv).await {
            Ok(t) => t,
            Err(msg) => {
                tracing::error!(receiver = %format!("{ns}/{name}"), "{msg}");
                return reply(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "receiver token unavailable",
                );
            }
        };
        // A rotated token changes the path; a stale status must not keep the old one valid.
        if rcv.webhook_path(&token) != path {
            return reply(StatusCode::NOT_FOUND, "no receiver for this path");
        }
        match verify(
            rcv.spec.type_,
            &token,
            &rcv.spec.events,
            &parts.headers,
            &body,
        ) {
            Ok(Verdict::Ping) => return reply(StatusCode::OK, "pong"),
            Ok(Verdict::Trigger) => {}
            Err(rej) => {
                if rej.is_auth_failure() {
                    REJECTED.fetch_add(1, Ordering::Relaxed);
                }
                tracing::warn!(receiver = %format!("{ns}/{name}"), reason = %rej, "webhook call rejected");
                return reply(rej.status(), rej.to_string());
            }
        }
        ACCEPTED.fetch_add(1, Ordering::Relaxed);
        for res in &rcv.spec.resources {
            match request_reconciles(ctx, &ns, res).await {
                Ok(n) => triggered += n,
                Err(msg) => {
                    failures += 1;
                    tracing::error!(receiver = %format!("{ns}/{name}"), "{msg}");
                }
            }
        }
        tracing::info!(receiver = %format!("{ns}/{name}"), triggered, "webhook call handled");
    }
    if failures > 0 {
        reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("{failures} resource(s) could not be annotated"),
        )
    } else {
        reply(
            StatusCode::OK,
            format!("{triggered} reconcile(s) requested"),
        )
    }
}

/// The request body, at most [`MAX_BODY_BYTES`] (413 otherwise).
async fn read_body(
    headers: &http::HeaderMap,
    body: hyper::body::Incoming,
) -> Result<bytes::Bytes, Response<Body>> {
    let declared = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES) {
        return Err(reply(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("body larger than {MAX_BODY_BYTES} bytes"),
        ));
    }
    match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(b) => Ok(b.to_bytes()),
        Err(_) => Err(reply(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("body larger than {MAX_BODY_BYTES} bytes or unreadable"),
        )),
    }
}

/// The Receivers whose `status.webhookPath` is `path` (503 when they cannot be listed).
async fn receivers_at(
    ctx: &Context,
    namespace: Option<&str>,
    path: &str,
) -> Result<Vec<Receiver>, Response<Body>> {
    let receivers: Api<Receiver> = match namespace {
        Some(ns) => Api::namespaced(ctx.client.clone(), ns),
        None => Api::all(ctx.client.clone()),
    };
    let list = match receivers.list(&ListParams::default()).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "listing Receivers failed");
            return Err(reply(
                StatusCode::SERVICE_UNAVAILABLE,
                "cannot list Receivers",
            ));
        }
    };
    Ok(list
        .items
        .into_iter()
        .filter(|r| {
            r.status
                .as_ref()
                .and_then(|s| s.webhook_path.as_deref())
                .is_some_and(|p| p == path)
        })
        .collect())
}

/// API group/version of the kinds a Receiver can trigger (Flux GA where it exists).
fn resource_for(res: &ReceiverResource) -> ApiResource {
    use plumb_api::receiver::ReceiverResourceKind as K;
    let kind = res.kind.as_str();
    let default_av = match res.kind {
        K::GitRepository | K::HelmRepository | K::HelmChart | K::Bucket | K::OCIRepository => {
            "source.toolkit.fluxcd.io/v1"
        }
        K::Kustomization => "kustomize.toolkit.fluxcd.io/v1",
        K::HelmRelease => "helm.toolkit.fluxcd.io/v2",
        K::ImageRepository | K::ImagePolicy | K::ImageUpdateAutomation => {
            "image.toolkit.fluxcd.io/v1beta2"
        }
    };
    let av = res.api_version.as_deref().unwrap_or(default_av);
    let (group, version) = av.split_once('/').unwrap_or(("", av));
    ApiResource {
        group: group.into(),
        version: version.into(),
        api_version: av.into(),
        kind: kind.into(),
        plural: match kind.to_lowercase() {
            k if k.ends_with('y') => format!("{}ies", &k[..k.len() - 1]),
            k => format!("{k}s"),
        },
    }
}

/// Annotates the object(s) `res` names; returns how many.
async fn request_reconciles(
    ctx: &Context,
    receiver_ns: &str,
    res: &ReceiverResource,
) -> Result<usize, String> {
    let ns = res.namespace.as_deref().unwrap_or(receiver_ns);
    let kind = res.kind.as_str();
    if ctx.config.no_cross_namespace_refs && ns != receiver_ns {
        return Err(format!(
            "{kind} {ns}/{}: cross-namespace references are disabled",
            res.name
        ));
    }
    let ar = resource_for(res);
    let api: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), ns, &ar);
    let names = if res.name == "*" {
        let selector = selector(&res.match_labels);
        let lp = ListParams::default().labels(&selector);
        api.list_metadata(&lp)
            .await
            .map_err(|e| format!("listing {kind}s in {ns} ({selector}): {e}"))?
            .items
            .into_iter()
            .map(|o| o.name_any())
            .collect()
    } else {
        vec![res.name.clone()]
    };
    let stamp = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    let patch = serde_json::json!({"metadata": {"annotations": {RECONCILE_REQUESTED_AT: stamp}}});
    for name in &names {
        api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(|e| format!("annotating {kind} {ns}/{name}: {e}"))?;
    }
    Ok(names.len())
}

fn selector(labels: &BTreeMap<String, String>) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
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

    #[test]
    fn unsupported_types_are_refused() {
        assert_eq!(
            verify(ReceiverType::Harbor, "t", &[], &headers(&[]), BODY),
            Err(Rejection::Unsupported(ReceiverType::Harbor))
        );
    }

    #[test]
    fn plurals_of_triggerable_kinds() {
        let r = |k: &str| {
            resource_for(
                &serde_json::from_value(serde_json::json!({"kind": k, "name": "x"})).unwrap(),
            )
        };
        assert_eq!(r("GitRepository").plural, "gitrepositories");
        assert_eq!(r("HelmRepository").plural, "helmrepositories");
        assert_eq!(r("ImageRepository").plural, "imagerepositories");
        assert_eq!(r("Kustomization").plural, "kustomizations");
        assert_eq!(r("HelmRelease").api_version, "helm.toolkit.fluxcd.io/v2");
        assert_eq!(r("ImagePolicy").plural, "imagepolicies");
    }
}
