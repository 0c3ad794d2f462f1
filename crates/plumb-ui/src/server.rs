//! The HTTP server: routes, the fleet JSON, the live stream and the page's files.
//!
//! Routes (the contract with `assets/app.js`, see the crate README):
//! - `GET /`, `GET /assets/{file}`: the embedded page;
//! - `GET /api/fleet`: a [`Fleet`] snapshot;
//! - `GET /api/stream`: server-sent events `upsert` / `delete` / `resync` after the snapshot.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State as AxState;
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use futures::Stream;
use tokio::sync::broadcast::error::RecvError;
use tower_http::set_header::SetResponseHeaderLayer;

use crate::assets;
use crate::model::{Change, Fleet};
use crate::store::Store;

/// What the server is configured with.
#[derive(Debug, Clone, Default)]
pub struct UiOptions {
    /// The kubeconfig context shown in the header (`in-cluster` for `plumb run --ui-addr`).
    pub context: String,
    /// Serve no actions (the shared in-cluster view).
    pub read_only: bool,
}

/// What every handler shares.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The fleet.
    pub store: Store,
    /// The options.
    pub options: Arc<UiOptions>,
}

/// The page may load only its own files and talk only to its own server.
const CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self'; \
                   script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The router with every route and the security headers.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/fleet", get(fleet))
        .route("/api/stream", get(stream))
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
