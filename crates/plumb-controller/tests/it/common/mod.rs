//! Helpers shared by the controller tests: CRD install, in-process controllers, polling.
#![allow(dead_code, clippy::unwrap_used)]

pub mod world;

use std::sync::Arc;
use std::time::Duration;

use kube::api::Api;
use plumb_controller::{Config, Context, Scope};
use plumb_ssa::{Applier, ApplyItem, ApplyOptions};
use plumb_testing::{ControlPlaneInfo, wait};
use serde_json::Value;

/// Applies plumb's CRDs (idempotent).
pub async fn install_crds(client: &kube::Client) {
    let items = plumb_api::crds()
        .into_iter()
        .map(|c| ApplyItem::new(serde_json::to_value(c).unwrap()))
        .collect();
    Applier::new(client.clone(), "plumb-test", 4)
        .apply_all(items, &ApplyOptions::default())
        .await
        .unwrap();
}

/// Starts plumb's controllers (and the artifact server) for one namespace; they stop with
/// the test's runtime.
pub async fn start_plumb(
    info: &ControlPlaneInfo,
    ns: &str,
    storage: &std::path::Path,
) -> Arc<Context> {
    start_plumb_with(info, ns, storage, |_| {}).await
}

/// [`start_plumb`] with the controller settings adjusted by `tune`.
pub async fn start_plumb_with(
    info: &ControlPlaneInfo,
    ns: &str,
    storage: &std::path::Path,
    tune: impl FnOnce(&mut Config),
) -> Arc<Context> {
    start_plumb_as(admin_config(info).await, ns, storage, tune).await
}

/// The admin kubeconfig as a kube config (to change its URL or credentials).
pub async fn admin_config(info: &ControlPlaneInfo) -> kube::Config {
    let kc = kube::config::Kubeconfig::read_from(&info.kubeconfig).unwrap();
    kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap()
}

/// [`start_plumb_with`] with the controllers' client built from `cfg`.
pub async fn start_plumb_as(
    cfg: kube::Config,
    ns: &str,
    storage: &std::path::Path,
    tune: impl FnOnce(&mut Config),
) -> Arc<Context> {
    let scope = Scope {
        namespace: Some(ns.to_string()),
        label_selector: None,
    };
    start_plumb_scoped(cfg, scope, storage, tune).await
}

/// [`start_plumb_as`] watching `scope` (e.g. every namespace, objects with one label).
pub async fn start_plumb_scoped(
    cfg: kube::Config,
    scope: Scope,
    storage: &std::path::Path,
    tune: impl FnOnce(&mut Config),
) -> Arc<Context> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let artifacts = storage.join("artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    tokio::spawn(plumb_source::server::serve_artifacts(
        listener,
        artifacts,
        std::future::pending(),
    ));
    let client = kube::Client::try_from(cfg.clone()).unwrap();
    let mut config = Config {
        storage_path: storage.to_path_buf(),
        storage_adv_addr: addr.to_string(),
        requeue_dependency: Duration::from_secs(1),
        ..Default::default()
    };
    tune(&mut config);
    let ctx = Context::new(client, cfg, config);
    // Benchmarks sharing these helpers set `PLUMB_CONCURRENT` like `plumb run --concurrent`.
    let workers = std::env::var("PLUMB_CONCURRENT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4);
    tokio::spawn(plumb_controller::run(ctx.clone(), scope, workers));
    ctx
}

/// The Ready condition's (status, reason, message).
pub fn ready(status: Option<&Value>) -> Option<(String, String, String)> {
    condition(status, "Ready")
}

/// A condition's (status, reason, message).
pub fn condition(status: Option<&Value>, type_: &str) -> Option<(String, String, String)> {
    let conds = status?.get("conditions")?.as_array()?;
    let r = conds.iter().find(|c| c["type"] == type_)?;
    Some((
        r["status"].as_str()?.to_string(),
        r["reason"].as_str()?.to_string(),
        r["message"].as_str()?.to_string(),
    ))
}

/// Polls `name` until `pred` holds on its JSON; panics with the object on timeout.
pub async fn wait_obj<K, F>(api: &Api<K>, name: &str, what: &str, pred: F) -> Value
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
    F: Fn(&Value) -> bool,
{
    let r = wait::poll(what, Duration::from_secs(60), || {
        let api = api.clone();
        let pred = &pred;
        async move {
            let o = api.get(name).await.ok()?;
            let v = serde_json::to_value(o).ok()?;
            pred(&v).then_some(v)
        }
    })
    .await;
    match r {
        Ok(v) => v,
        Err(e) => {
            let now = api
                .get(name)
                .await
                .map(|k| serde_json::to_value(k).unwrap());
            panic!("{e}; object now: {now:#?}");
        }
    }
}

/// Asks for a reconcile of `name` now (Flux's `reconcile.fluxcd.io/requestedAt`).
pub async fn request_reconcile<K>(api: &Api<K>, name: &str)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let stamp = format!("{:?}", std::time::SystemTime::now());
    let patch = serde_json::json!({"metadata": {"annotations": {"reconcile.fluxcd.io/requestedAt": stamp}}});
    api.patch(
        name,
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(&patch),
    )
    .await
    .unwrap();
}
