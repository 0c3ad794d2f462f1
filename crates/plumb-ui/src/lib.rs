//! plumb's fleet UI: a small HTTP server that shows every Flux object plumb serves, the graph
//! of what feeds what, and each object's state, live.
//!
//! - [`model`]: the JSON the page reads (the contract with `assets/app.js`);
//! - [`store`]: the fleet in memory plus a broadcast of changes (one set of watches feeds
//!   every open page: no polling);
//! - [`server`]: the routes (axum), the stream (server-sent events), security headers;
//! - [`watch`]: one watch per Flux kind feeding the store; [`summary`] and [`refs`] reduce
//!   each object to what the page draws;
//! - [`detail`]: one object's conditions, history, events and inventory tree, and its diff;
//! - [`actions`]: reconcile, suspend and resume with the user's own credentials;
//! - [`assets`]: the page (HTML, a few plain ES modules, one stylesheet) embedded in the binary.
//!
//! The page is server data plus hand-written ES modules without a build step: a few hundred
//! lines of plain JavaScript and SVG draw 2,000 objects well under a second, and having no npm
//! toolchain keeps the binary's supply chain to crates alone.

pub mod actions;
pub mod assets;
pub mod detail;
pub mod error;
pub mod fixture;
pub mod guard;
pub mod model;
pub mod refs;
pub mod server;
pub mod store;
pub mod summary;
pub mod watch;

pub use error::UiError;
pub use model::{Change, Fleet, ObjectSummary, Ref, Rel, State};
pub use server::{AppState, Cluster, UiOptions, router};
pub use store::Store;

/// Serves `app` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), UiError> {
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|source| UiError::Serve { addr, source })
}
