//! Kustomization behaviour against the real API server: drift reverted in seconds,
//! suspend/resume, impersonation, strict substitution, deletion, dependsOn, staging,
//! immutable fields.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod common;

use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use plumb_api::{GitRepository, Kustomization};
use plumb_testing::git::{GitHttpServer, HttpAuth, TestRepo};
use plumb_testing::{ControlPlane, ControlPlaneInfo, TestNamespace, wait};
use serde_json::{Value, json};

use common::{install_crds, ready, start_plumb, wait_obj};

/// One test's world: a namespace, a git repository served over HTTP, plumb running, and
/// a GitRepository `fleet` pointing at it.
struct World {
    client: kube::Client,
    ns: TestNamespace,
    n: String,
    repo: TestRepo,
    _server: GitHttpServer,
    _tmp: tempfile::TempDir,
    ctx: std::sync::Arc<plumb_controller::Context>,
}

impl World {
    async fn new(prefix: &str, files: &[(&str, &str)]) -> World {
        let info: &ControlPlaneInfo = ControlPlane::shared().unwrap();
        let client = info.admin_client().await.unwrap();
        install_crds(&client).await;
        let ns = TestNamespace::create(info, prefix).await.unwrap();
        let n = ns.name().to_string();
        let tmp = tempfile::tempdir().unwrap();
        let repo = TestRepo::init(&tmp.path().join("repos"), "fleet");
        repo.commit(files, "initial");
        let root = tmp.path().join("repos");
        let server = std::thread::spawn(move || GitHttpServer::start(&root, HttpAuth::Anonymous))
            .join()
            .unwrap();
        let ctx = start_plumb(info, &n, &tmp.path().join("storage")).await;
        let gitrepo: GitRepository = serde_json::from_value(json!({
            "apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository",
            "metadata": {"name": "fleet", "namespace": n},
            "spec": {"url": server.url("fleet"), "interval": "1h", "ref": {"branch": "master"}}
        }))
        .unwrap();
        Api::<GitRepository>::namespaced(client.clone(), &n)
            .create(&PostParams::default(), &gitrepo)
            .await
            .unwrap();
        World {
            client,
            ns,
            n,
            repo,
            _server: server,
            _tmp: tmp,
            ctx,
        }
    }

    fn ks_api(&self) -> Api<Kustomization> {
        Api::namespaced(self.client.clone(), &self.n)
    }

    fn cms(&self) -> Api<ConfigMap> {
        Api::namespaced(self.client.clone(), &self.n)
    }

    /// Creates Kustomization `name` with `spec` merged over defaults (interval 1h,
    /// sourceRef fleet, targetNamespace the test namespace).
    async fn create_ks(&self, name: &str, spec: Value) {
        let mut s = json!({"interval": "1h", "prune": true, "targetNamespace": self.n,
                           "sourceRef": {"kind": "GitRepository", "name": "fleet"}});
        for (k, v) in spec.as_object().unwrap() {
            s[k] = v.clone();
        }
        let ks: Kustomization = serde_json::from_value(json!({
            "apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
            "metadata": {"name": name, "namespace": self.n}, "spec": s
        }))
        .unwrap();
        self.ks_api()
            .create(&PostParams::default(), &ks)
            .await
            .unwrap();
    }

    async fn wait_ready(&self, name: &str) -> Value {
        wait_obj(&self.ks_api(), name, &format!("{name} ready"), |v| {
            ready(v.get("status")).is_some_and(|r| r.0 == "True")
                && v["status"]["observedGeneration"] == v["metadata"]["generation"]
        })
        .await
    }

    async fn patch_ks(&self, name: &str, patch: Value) {
        self.ks_api()
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap();
    }

    async fn finish(self) {
        let _ = Api::<GitRepository>::namespaced(self.client.clone(), &self.n)
            .delete("fleet", &DeleteParams::default())
            .await;
        let ks = self.ks_api();
        for k in ks.list(&Default::default()).await.unwrap() {
            let name = k.metadata.name.clone().unwrap();
            let _ = ks.delete(&name, &DeleteParams::default()).await;
        }
        self.ns.delete().await.unwrap();
    }
}

/// Polls until `f` returns `Some`, for at most `secs` seconds.
async fn within<T, F, Fut>(what: &str, secs: u64, f: F) -> T
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    wait::poll(what, Duration::from_secs(secs), f)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

const CM_A: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\ndata:\n  v: \"1\"\n";

#[tokio::test]
async fn drift_is_reverted_within_seconds() {
    let w = World::new(
        "ks-drift",
        &[
            ("deploy/kustomization.yaml", "resources:\n- a.yaml\n- b.yaml\n"),
            ("deploy/a.yaml", CM_A),
            (
                "deploy/b.yaml",
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: b\n  annotations:\n    kustomize.toolkit.fluxcd.io/reconcile: disabled\ndata:\n  v: \"1\"\n",
            ),
        ],
    )
    .await;
    let cms = w.cms();
    // b is reconcile-disabled: never applied, so someone else creates it (with our labels).
    let b: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "b",
        "labels": {"kustomize.toolkit.fluxcd.io/name": "app", "kustomize.toolkit.fluxcd.io/namespace": w.n},
        "annotations": {"kustomize.toolkit.fluxcd.io/reconcile": "disabled"}}, "data": {"v": "1"}}))
    .unwrap();
    cms.create(&PostParams::default(), &b).await.unwrap();
    w.create_ks("app", json!({"path": "./deploy"})).await;
    w.wait_ready("app").await;
    assert!(w.ctx.drift.watched_kinds() >= 1);

    // A `kubectl edit`: another field manager changes a field we own.
    let tamper = json!({"data": {"v": "tampered"}});
    let pp = PatchParams {
        field_manager: Some("kubectl-edit".into()),
        ..Default::default()
    };
    let start = std::time::Instant::now();
    cms.patch("a", &pp, &Patch::Merge(&tamper)).await.unwrap();
    within("edit reverted", 15, || {
        let cms = cms.clone();
        async move { (cms.get("a").await.ok()?.data?["v"] == "1").then_some(()) }
    })
    .await;
    eprintln!("edit reverted after {:?}", start.elapsed());

    // A deletion is undone too.
    let start = std::time::Instant::now();
    cms.delete("a", &DeleteParams::default()).await.unwrap();
    within("deleted object recreated", 15, || {
        let cms = cms.clone();
        async move { cms.get_opt("a").await.ok()?.map(|_| ()) }
    })
    .await;
    eprintln!("deletion reverted after {:?}", start.elapsed());

    // reconcile: disabled objects are left alone.
    cms.patch("b", &pp, &Patch::Merge(&tamper)).await.unwrap();
    cms.patch("a", &pp, &Patch::Merge(&tamper)).await.unwrap();
    within("a reverted again", 15, || {
        let cms = cms.clone();
        async move { (cms.get("a").await.ok()?.data?["v"] == "1").then_some(()) }
    })
    .await;
    assert_eq!(cms.get("b").await.unwrap().data.unwrap()["v"], "tampered");

    // Suspended: drift stays.
    w.patch_ks("app", json!({"spec": {"suspend": true}})).await;
    within("suspension seen", 15, || {
        let ctx = w.ctx.clone();
        async move { (ctx.drift.watched_kinds() == 0).then_some(()) }
    })
    .await;
    cms.patch("a", &pp, &Patch::Merge(&tamper)).await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await; // proving an absence
    assert_eq!(cms.get("a").await.unwrap().data.unwrap()["v"], "tampered");
    // Resumed: reverted.
    w.patch_ks("app", json!({"spec": {"suspend": false}})).await;
    within("reverted after resume", 20, || {
        let cms = cms.clone();
        async move { (cms.get("a").await.ok()?.data?["v"] == "1").then_some(()) }
    })
    .await;
    w.finish().await;
}
