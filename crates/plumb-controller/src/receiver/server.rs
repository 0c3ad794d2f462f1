//! The webhook HTTP server: turns a verified call into `reconcile.fluxcd.io/requestedAt`
//! annotations on the Receiver's resources.
//!
//! Hostile clients are cheap to turn away: every call first takes a token from its
//! client's bucket (429 with `Retry-After` when empty), a path no Receiver has is answered
//! 404 from the watch-kept [`ReceiverIndex`] without an API request and without reading the
//! body, headers must arrive within the header timeout and the body within the body timeout
//! (408), connections are one request each and capped in number. Only a call to a known
//! path reads the token Secret and the body (at most [`MAX_BODY_BYTES`]).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt as _, Full, Limited};
use hyper::{Method, Request, Response, StatusCode};
use kube::ResourceExt;
use kube::api::{Api, ApiResource, DynamicObject, ListParams, Patch, PatchParams};
use plumb_api::Receiver;
use plumb_api::consts::annotation::RECONCILE_REQUESTED_AT;
use plumb_api::receiver::ReceiverResource;

use super::filter::{self, Filters};
use super::index::ReceiverIndex;
use super::limit::{ClientLimiter, RateLimit};
use super::webhook::{ACCEPTED, REJECTED, Rejection, Verdict, secret, secret_value, token, verify};
use super::{kinds, oidc};
use crate::context::Context;
use plumb_api::receiver::ReceiverType;

/// Largest request body the webhook server reads (larger calls answer 413).
pub const MAX_BODY_BYTES: usize = 4 << 20;

/// How the webhook server guards itself.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Namespace whose Receivers are served (all namespaces when `None`).
    pub namespace: Option<String>,
    /// Per-client rate limit.
    pub rate_limit: RateLimit,
    /// Time a client has to send the request line and headers.
    pub header_timeout: Duration,
    /// Time a client has to send the body of a call to a known path (408 after).
    pub body_timeout: Duration,
    /// Longest a connection may stay open, whatever it does.
    pub connection_timeout: Duration,
    /// Connections served at once; more wait in the listen backlog.
    pub max_connections: usize,
    /// How long a call waits for the first list of Receivers after start (503 after).
    pub index_wait: Duration,
    /// Google's JWKS, which verifies `gcr` push tokens ([`oidc::GOOGLE_CERTS_URL`]).
    pub google_certs_url: String,
}

impl ServerOptions {
    /// The defaults, serving `namespace`.
    pub fn new(namespace: Option<String>) -> Self {
        ServerOptions {
            namespace,
            rate_limit: RateLimit::default(),
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            connection_timeout: Duration::from_secs(120),
            max_connections: 512,
            index_wait: Duration::from_secs(5),
            google_certs_url: oidc::GOOGLE_CERTS_URL.to_string(),
        }
    }
}

type Body = Full<bytes::Bytes>;

fn reply(status: StatusCode, msg: impl Into<String>) -> Response<Body> {
    let mut resp = Response::new(Full::new(bytes::Bytes::from(msg.into() + "\n")));
    *resp.status_mut() = status;
    resp
}

/// State shared by the connections of one server.
struct Server {
    ctx: Arc<Context>,
    opts: ServerOptions,
    index: Arc<ReceiverIndex>,
    limiter: ClientLimiter,
}

/// Serves webhook calls on `listener` with the default [`ServerOptions`] until `shutdown`
/// completes. Receivers are looked up in `namespace` (all namespaces when `None`) by
/// `status.webhookPath`.
pub async fn serve(
    ctx: Arc<Context>,
    listener: tokio::net::TcpListener,
    namespace: Option<String>,
    shutdown: impl Future<Output = ()>,
) {
    serve_with(ctx, listener, ServerOptions::new(namespace), shutdown).await;
}

/// Serves webhook calls on `listener` with `opts` until `shutdown` completes.
pub async fn serve_with(
    ctx: Arc<Context>,
    listener: tokio::net::TcpListener,
    opts: ServerOptions,
    shutdown: impl Future<Output = ()>,
) {
    let receivers: Api<Receiver> = match &opts.namespace {
        Some(ns) => Api::namespaced(ctx.client.clone(), ns),
        None => Api::all(ctx.client.clone()),
    };
    let index = ReceiverIndex::new();
    let watch = tokio::spawn(index.clone().maintain(receivers));
    let slots = Arc::new(tokio::sync::Semaphore::new(opts.max_connections.max(1)));
    let server = Arc::new(Server {
        ctx,
        limiter: ClientLimiter::new(opts.rate_limit),
        opts,
        index,
    });
    tokio::pin!(shutdown);
    loop {
        // A free slot first: past the cap, clients wait in the backlog, unserved.
        let slot = tokio::select! {
            _ = &mut shutdown => break,
            s = slots.clone().acquire_owned() => match s {
                Ok(s) => s,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a webhook connection failed");
                    continue;
                }
            },
        };
        let server = server.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let (limit, header_timeout) =
                (server.opts.connection_timeout, server.opts.header_timeout);
            let svc = hyper::service::service_fn(move |req| {
                let server = server.clone();
                async move { Ok::<_, Infallible>(server.handle(peer.ip(), req).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(header_timeout)
                .keep_alive(false)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), svc);
            let _ = tokio::time::timeout(limit, conn).await;
        });
    }
    watch.abort();
}

impl Server {
    async fn handle(&self, peer: IpAddr, req: Request<hyper::body::Incoming>) -> Response<Body> {
        if let Err(wait) = self.limiter.check(peer, Instant::now()) {
            let mut resp = reply(StatusCode::TOO_MANY_REQUESTS, "too many requests");
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            resp.headers_mut().insert(
                http::header::RETRY_AFTER,
                http::HeaderValue::from(secs.max(1)),
            );
            return resp;
        }
        let path = req.uri().path().to_string();
        if !path.starts_with(plumb_api::consts::RECEIVER_WEBHOOK_PATH_PREFIX) {
            return reply(StatusCode::NOT_FOUND, "not found");
        }
        if req.method() != Method::POST {
            return reply(StatusCode::METHOD_NOT_ALLOWED, "only POST is accepted");
        }
        if !self.index.ready(self.opts.index_wait).await {
            return reply(StatusCode::SERVICE_UNAVAILABLE, "receivers not listed yet");
        }
        let matching = self.index.lookup(&path);
        if matching.is_empty() {
            return reply(StatusCode::NOT_FOUND, "no receiver for this path");
        }
        let (parts, body) = req.into_parts();
        let body =
            match tokio::time::timeout(self.opts.body_timeout, read_body(&parts.headers, body))
                .await
            {
                Ok(Ok(b)) => b,
                Ok(Err(resp)) => return resp,
                Err(_) => return reply(StatusCode::REQUEST_TIMEOUT, "body not received in time"),
            };
        self.trigger(&path, &matching, &parts.headers, &body).await
    }

    /// Verifies the call against each Receiver at `path` and requests their reconciles.
    async fn trigger(
        &self,
        path: &str,
        matching: &[Arc<Receiver>],
        headers: &http::HeaderMap,
        body: &[u8],
    ) -> Response<Body> {
        let ctx = &self.ctx;
        let mut failures = 0usize;
        let mut triggered = 0usize;
        for rcv in matching {
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
            let auth = match self.authenticate(rcv, &token, headers, body).await {
                Ok(Some(a)) => a,
                Ok(None) => return reply(StatusCode::OK, "pong"),
                Err(rej) => {
                    if rej.is_auth_failure() {
                        REJECTED.fetch_add(1, Ordering::Relaxed);
                    }
                    tracing::warn!(receiver = %format!("{ns}/{name}"), reason = %rej, "webhook call rejected");
                    return reply(rej.status(), rej.to_string());
                }
            };
            ACCEPTED.fetch_add(1, Ordering::Relaxed);
            let req = if filter::any(rcv) {
                let body = auth.filter_body.as_deref().unwrap_or(body);
                match filter::request_value(headers, body) {
                    Ok(v) => Arc::new(v),
                    Err(msg) => return reply(StatusCode::BAD_REQUEST, msg),
                }
            } else {
                Arc::new(serde_json::Value::Null)
            };
            let claims = Arc::new(auth.claims);
            for res in &rcv.spec.resources {
                let filters = match Filters::for_resource(rcv, res, &req, &claims) {
                    Ok(f) => f,
                    Err(e) => {
                        failures += 1;
                        tracing::error!(receiver = %format!("{ns}/{name}"), "{e}");
                        continue;
                    }
                };
                match request_reconciles(ctx, &ns, res, filters.as_ref()).await {
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
}

/// What a verified call carries besides the trigger.
struct Auth {
    /// The verified token claims (`generic-oidc`), else an empty map.
    claims: serde_json::Value,
    /// The body filters read in place of the call's (`gcr`: the unwrapped registry event).
    filter_body: Option<Vec<u8>>,
}

impl Server {
    /// Verifies a call to `rcv`: `Ok(None)` for a ping, the claims otherwise.
    async fn authenticate(
        &self,
        rcv: &Receiver,
        token: &str,
        headers: &http::HeaderMap,
        body: &[u8],
    ) -> Result<Option<Auth>, Rejection> {
        let mut auth = Auth {
            claims: serde_json::Value::Object(Default::default()),
            filter_body: None,
        };
        match verify(rcv.spec.type_, token, &rcv.spec.events, headers, body)? {
            Verdict::Ping => return Ok(None),
            Verdict::Trigger => return Ok(Some(auth)),
            Verdict::Bearer => {}
        }
        let raw = kinds::bearer(headers)?;
        if rcv.spec.type_ == ReceiverType::GenericOidc {
            auth.claims = oidc::verify_generic(&self.ctx, rcv, raw).await?;
            return Ok(Some(auth));
        }
        // gcr: the push identity named in the Receiver's Secret.
        let ns = rcv.namespace().unwrap_or_default();
        let secret_name = rcv.spec.secret_ref.as_ref().map(|s| s.name.as_str());
        let secret = secret(&self.ctx.client, &ns, secret_name.unwrap_or(""))
            .await
            .map_err(Rejection::Upstream)?;
        oidc::verify_gcr(
            &self.ctx,
            raw,
            &secret_value(&secret, "email"),
            &secret_value(&secret, "audience"),
            &self.opts.google_certs_url,
        )
        .await?;
        auth.filter_body = Some(kinds::gcr_event(body)?);
        Ok(Some(auth))
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
    filters: Option<&Filters>,
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
    let metas = if res.name == "*" {
        let selector = selector(&res.match_labels);
        let lp = ListParams::default().labels(&selector);
        api.list_metadata(&lp)
            .await
            .map_err(|e| format!("listing {kind}s in {ns} ({selector}): {e}"))?
            .items
    } else if filters.is_some() {
        // The filter reads the object's metadata.
        vec![
            api.get_metadata(&res.name)
                .await
                .map_err(|e| format!("reading {kind} {ns}/{}: {e}", res.name))?,
        ]
    } else {
        return annotate(&api, kind, ns, std::slice::from_ref(&res.name)).await;
    };
    let mut names = Vec::with_capacity(metas.len());
    for m in metas {
        let name = m.name_any();
        if let Some(f) = filters {
            let obj = serde_json::json!({
                "apiVersion": ar.api_version, "kind": kind, "metadata": m.metadata,
            });
            match f.accepts(&obj) {
                Ok(true) => {}
                Ok(false) => continue,
                Err(e) => return Err(format!("filtering {kind} {ns}/{name}: {e}")),
            }
        }
        names.push(name);
    }
    annotate(&api, kind, ns, &names).await
}

/// Sets `reconcile.fluxcd.io/requestedAt` on each named object; returns how many.
async fn annotate(
    api: &Api<DynamicObject>,
    kind: &str,
    ns: &str,
    names: &[String],
) -> Result<usize, String> {
    let stamp = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    let patch = serde_json::json!({"metadata": {"annotations": {RECONCILE_REQUESTED_AT: stamp}}});
    for name in names {
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
