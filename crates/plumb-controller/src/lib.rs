//! plumb's controllers: kube-runtime reconcilers for Flux's GitRepository, HelmRepository,
//! Kustomization, HelmRelease and Receiver, their status, events and scheduling.
//!
//! Every kind runs in one skeleton ([`reconciler`]): controller wiring, finalizer, one status
//! writer that maps a classified failure ([`outcome`]: transient, waiting, stalled, with one
//! Flux reason for the condition, the event and the metric) to kstatus conditions, and
//! requeues. Each kind is a folder ([`gitrepository`], [`helmrepository`], [`kustomization`],
//! [`helmrelease`], [`receiver`]) whose `steps` read top to bottom; pieces two kinds share are
//! modules of their own ([`dependencies`], [`artifact`], [`charts`], [`health`], [`overlay`],
//! [`drift`]); the client, context, leader election, metrics and remote clusters are in
//! [`runtime`]. Reconcilers only orchestrate: fetching and packaging live in `plumb-source`,
//! rendering in `plumb-kustomize` and `plumb-helm`, applying in `plumb-ssa`.
//!
//! See `README.md` of this crate for the steps of each kind and how to add one.

pub mod alert;
pub mod artifact;
pub mod artifactgenerator;
pub mod cel;
pub mod charts;
pub mod dependencies;
pub mod drift;
mod error;
pub mod gitrepository;
pub mod health;
pub mod helmchart;
pub mod helmrelease;
pub mod helmrepository;
mod image_tags;
pub mod imagepolicy;
pub mod imagerepository;
pub mod imageupdateautomation;
pub mod kustomization;
pub mod notification;
pub mod oci_charts;
pub mod ocirepository;
pub mod outcome;
pub mod overlay;
pub mod provider;
pub mod prune_budget;
pub mod receiver;
pub mod reconciler;
mod registry;
pub mod runtime;
mod secrets;
pub(crate) mod selector;
pub(crate) mod verify;

pub use error::{Error, Result};

pub use context::{ClusterVars, Config, Context};
pub use runtime::{client, context, ecr, leader, metrics, remote};

use std::sync::Arc;

use kube::api::Api;
use kube::runtime::watcher;

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
        notification::run(ctx.clone()),
        provider::run(ctx.clone(), scope.api(c), watch.clone(), concurrency),
        alert::run(ctx.clone(), scope.api(c), watch.clone(), concurrency),
        gitrepository::run(ctx.clone(), scope.api(c), watch.clone(), concurrency),
        helmrepository::run(ctx.clone(), scope.api(c), watch.clone(), concurrency),
        ocirepository::run(ctx.clone(), scope.api(c), watch.clone(), concurrency),
        helmchart::run(ctx.clone(), scope.api(c), watch.clone(), concurrency),
        artifactgenerator::run(ctx.clone(), scope.api(c), watch.clone(), concurrency),
        imagerepository::run(ctx.clone(), scope.api(c), watch.clone(), concurrency),
        imagepolicy::run(
            ctx.clone(),
            scope.api(c),
            scope.api(c),
            watch.clone(),
            concurrency
        ),
        imageupdateautomation::run(
            ctx.clone(),
            scope.api(c),
            scope.api(c),
            watch.clone(),
            concurrency
        ),
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
