//! The HTTP server: routes, the fleet JSON, the live stream and the page's files.
//!
//! Routes (the contract with `assets/app.js`, see the crate README):
//! - `GET /`, `GET /assets/{file}`: the embedded page;
//! - `GET /api/fleet`: a [`Fleet`] snapshot;
//! - `GET /api/stream`: server-sent events `upsert` / `delete` / `resync` after the snapshot;
//! - `GET /api/object/{kind}/{namespace}/{name}`: an [`ObjectDetail`];
//! - `GET /api/object/{kind}/{namespace}/{name}/diff`: a [`DiffOutput`];
//! - `POST /api/object/{kind}/{namespace}/{name}/{reconcile|suspend|resume}`: an action
//!   (same-origin checks in [`guard`](crate::guard)).
//!
//! Errors answer `{"error": "..."}` with a status code (403 passes the API server's refusal
//! on).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Request, State as AxState};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use futures::Stream;
use plumb_api::kinds::FluxKind;
use tokio::sync::broadcast::error::RecvError;
use tower_http::set_header::SetResponseHeaderLayer;

use crate::actions::{self, Action};
use crate::assets;
use crate::detail::{self, DiffOutput, Differ, ObjectDetail};
use crate::error::UiError;
use crate::guard;
use crate::model::{Change, Fleet, ObjectSummary};
use crate::store::Store;

/// What the server is configured with.
#[derive(Debug, Clone, Default)]
pub struct UiOptions {
    /// The kubeconfig context shown in the header (`in-cluster` for `plumb run --ui-addr`).
    pub context: String,
    /// Serve no actions (the shared in-cluster view).
    pub read_only: bool,
    /// The address the server is bound to: when set, API requests must name it (or
    /// `localhost`) in `Host` (see [`guard`](crate::guard)).
    pub bound: Option<std::net::SocketAddr>,
}

/// The cluster behind the server: the client object pages and actions use, and the diff.
#[derive(Clone)]
pub struct Cluster {
    /// The user's client (`plumb ui`) or plumb's own (`plumb run --ui-addr`).
    pub client: kube::Client,
    /// Computes `plumb diff`; without one the diff answers an error.
    pub differ: Option<Arc<dyn Differ>>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("differ", &self.differ.is_some())
            .finish_non_exhaustive()
    }
}

/// What every handler shares.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The fleet.
    pub store: Store,
    /// The options.
    pub options: Arc<UiOptions>,
    /// The cluster (none for a synthetic fleet: object pages and actions answer 503).
    pub cluster: Option<Cluster>,
}

impl AppState {
    /// A state without a cluster (synthetic fleets).
    pub fn new(store: Store, options: UiOptions) -> AppState {
        AppState {
            store,
            options: Arc::new(options),
            cluster: None,
        }
    }

    /// With the cluster behind it.
    pub fn with_cluster(mut self, cluster: Cluster) -> AppState {
        self.cluster = Some(cluster);
        self
    }

    fn client(&self) -> Result<&kube::Client, UiError> {
        self.cluster
            .as_ref()
            .map(|c| &c.client)
            .ok_or(UiError::NoCluster)
    }
}

/// The page may load only its own files and talk only to its own server.
const CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self'; \
                   script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The router with every route and the security headers.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/fleet", get(fleet))
        .route("/api/stream", get(stream))
        .route("/api/object/{kind}/{namespace}/{name}", get(object))
        .route("/api/object/{kind}/{namespace}/{name}/diff", get(diff))
        .route("/api/object/{kind}/{namespace}/{name}/{action}", post(act))
        .route_layer(middleware::from_fn_with_state(state.clone(), same_host))
        .fallback(get(asset))
        .with_state(state)
        .layer(SetResponseHeaderLayer::overriding(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ))
}

async fn asset(uri: Uri) -> Response {
    match assets::find(uri.path()) {
        Some(a) => ([(header::CONTENT_TYPE, a.content_type)], a.body).into_response(),
        None => (StatusCode::NOT_FOUND, "not found").into_response(),
    }
}

async fn fleet(AxState(state): AxState<AppState>) -> Json<Fleet> {
    Json(Fleet {
        context: state.options.context.clone(),
        read_only: state.options.read_only,
        forbidden_kinds: state.store.forbidden_kinds(),
        objects: state.store.snapshot(),
    })
}

/// The live stream. A page that falls too far behind gets `resync` and reloads the fleet.
async fn stream(
    AxState(state): AxState<AppState>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let rx = state.store.subscribe();
    let events = futures::stream::unfold(rx, |mut rx| async move {
        let event = match rx.recv().await {
            Ok(Change::Upsert(o)) => Event::default()
                .event("upsert")
                .json_data(&*o)
                .unwrap_or_else(|_| Event::default().event("resync").data("{}")),
            Ok(Change::Delete(id)) => Event::default()
                .event("delete")
                .json_data(serde_json::json!({ "id": id }))
                .unwrap_or_else(|_| Event::default().event("resync").data("{}")),
            Err(RecvError::Lagged(_)) => Event::default().event("resync").data("{}"),
            Err(RecvError::Closed) => return None,
        };
        Some((Ok(event), rx))
    });
    Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

/// Every API request must name this server in `Host` (DNS rebinding, see `guard`).
async fn same_host(AxState(state): AxState<AppState>, req: Request, next: Next) -> Response {
    match guard::check_host(req.headers(), state.options.bound) {
        Ok(()) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

/// The kind of a path segment (case-insensitive, as the CLI accepts it).
fn kind_of(kind: &str) -> Result<FluxKind, UiError> {
    FluxKind::from_kind(kind).ok_or_else(|| UiError::UnknownKind(kind.chars().take(64).collect()))
}

async fn object(
    AxState(state): AxState<AppState>,
    Path((kind, ns, name)): Path<(String, String, String)>,
) -> Result<Json<ObjectDetail>, UiError> {
    let kind = kind_of(&kind)?;
    let known = state
        .store
        .get(&ObjectSummary::id_of(kind.kind(), &ns, &name));
    let mut d = detail::object_detail(state.client()?, kind, &ns, &name, known).await?;
    if state.options.read_only {
        // The shared view shows state, not configuration: a HelmRelease's inline values
        // may hold secrets.
        d.spec = serde_json::Value::Null;
    }
    Ok(Json(d))
}

async fn diff(
    AxState(state): AxState<AppState>,
    Path((kind, ns, name)): Path<(String, String, String)>,
) -> Result<Json<DiffOutput>, UiError> {
    let kind = kind_of(&kind)?;
    let cluster = state.cluster.as_ref().ok_or(UiError::NoCluster)?;
    let differ = cluster
        .differ
        .as_deref()
        .ok_or_else(|| UiError::Diff("not available on this server".into()))?;
    Ok(Json(detail::diff(differ, kind, &ns, &name).await?))
}

async fn act(
    AxState(state): AxState<AppState>,
    headers: HeaderMap,
    Path((kind, ns, name, action)): Path<(String, String, String, String)>,
) -> Result<Json<serde_json::Value>, UiError> {
    if state.options.read_only {
        return Err(UiError::ReadOnly);
    }
    guard::check_action(&headers, state.options.bound)?;
    let kind = kind_of(&kind)?;
    let action = Action::parse(&action)?;
    let out = actions::perform(state.client()?, kind, &ns, &name, action).await?;
    Ok(Json(out))
}
