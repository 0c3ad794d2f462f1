//! plumb's controllers: kube-runtime reconcilers for Flux's GitRepository,
//! HelmRepository and Kustomization (more kinds join as they land), their status,
//! events and scheduling.
//!
//! Reconcilers only orchestrate: fetching and packaging live in `plumb-source`, applying
//! in `plumb-ssa`. Every failure is classified ([`outcome`]) into transient, waiting or
//! stalled, with one Flux reason used for the condition and the event.
//!
//! Around the reconcilers: Prometheus metrics ([`metrics`]), the Kubernetes client stack with
//! client-side rate limiting and request counting ([`client`]), and leader election on a
//! Lease ([`leader`]).

pub mod client;
pub mod context;
pub mod drift;
pub mod gitrepository;
pub mod helmdrift;
pub mod helmrelease;
pub mod helmrepository;
pub mod kustomization;
pub mod leader;
pub mod metrics;
pub mod outcome;
pub mod receiver;
pub mod remote;
mod shared;
pub mod substitute;

pub use context::{ClusterVars, Config, Context};

use std::sync::Arc;

use kube::api::Api;
use kube::runtime::watcher;

/// Errors of the controllers that escape a reconcile (status writes, finalizers,
/// storage). Failures of the reconciled work itself end up in status instead.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Kubernetes API call failed.
    #[error("kubernetes: {0}")]
    Kube(String),
    /// Artifact storage failed.
    #[error("storage: {0}")]
    Storage(String),
    /// Adding or removing the finalizer failed.
    #[error("finalizer: {0}")]
    Finalizer(String),
    /// Leader election failed (the lease could not be read, written or released).
    #[error("leader election: {0}")]
    Leader(String),
    /// Another replica took the lease while this one was leading.
    #[error("leader election: lost lease {0}")]
    LeaseLost(String),
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    #[test]
    fn status_patch_nulls_removed_fields() {
        let before = serde_json::json!({"a": 1, "b": [1], "c": "x"});
        let after = serde_json::json!({"a": 2, "c": "x"});
        assert_eq!(
            super::status_patch(&before, &after),
            serde_json::json!({"status": {"a": 2, "b": null, "c": "x"}})
        );
    }
}

/// A JSON merge patch that turns status `before` into `after`: `{"status": after}` plus an
/// explicit `null` for every top-level field `before` had and `after` lacks, since a merge
/// patch leaves fields it does not mention untouched (a field skipped when empty would
/// otherwise stick forever, e.g. `observedIgnore` after `spec.ignore` is removed).
pub(crate) fn status_patch<S: serde::Serialize>(before: &S, after: &S) -> serde_json::Value {
    let mut new = serde_json::to_value(after).unwrap_or_default();
    if let (Ok(serde_json::Value::Object(old)), serde_json::Value::Object(map)) =
        (serde_json::to_value(before), &mut new)
    {
        for key in old.keys() {
            map.entry(key.clone()).or_insert(serde_json::Value::Null);
        }
    }
    serde_json::json!({ "status": new })
}

/// Which objects the controllers watch.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    /// Only this namespace (`None`: all namespaces).
    pub namespace: Option<String>,
    /// Label selector, e.g. `sharding.fluxcd.io/key=shard1`.
    pub label_selector: Option<String>,
}

impl Scope {
    /// An API handle for `K` in the watched namespace, or across all namespaces.
    pub fn api<K>(&self, client: &kube::Client) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        match &self.namespace {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        }
    }
}

/// Runs every controller until a shutdown signal.
pub async fn run(ctx: Arc<Context>, scope: Scope, concurrency: u16) {
    let watch = match &scope.label_selector {
        Some(sel) => watcher::Config::default().labels(sel),
        None => watcher::Config::default(),
    };
    let c = &ctx.client;
    tokio::join!(
        receiver::run(ctx.clone(), scope.api(c), watch.clone(), concurrency),
        gitrepository::run(ctx.clone(), scope.api(c), watch.clone(), concurrency),
        helmrepository::run(ctx.clone(), scope.api(c), watch.clone(), concurrency),
        kustomization::run(
            ctx.clone(),
            scope.api(c),
            scope.api(c),
            watch.clone(),
            concurrency
        ),
        helmrelease::run(
            ctx.clone(),
            scope.api(c),
            scope.api(c),
            scope.api(c),
            watch,
            concurrency
        ),
    );
}
