//! One Kustomization test's world: a namespace, a git repository served over HTTP, plumb
//! running in-process, and a GitRepository `fleet` pointing at it.

use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use plumb_api::{GitRepository, Kustomization};
use plumb_testing::git::{GitHttpServer, HttpAuth, TestRepo};
use plumb_testing::{ControlPlane, ControlPlaneInfo, TestNamespace, wait};
use serde_json::{Value, json};

use super::{install_crds, ready, start_plumb_as, wait_obj};

/// One test's world: a namespace, a git repository served over HTTP, plumb running, and
/// a GitRepository `fleet` pointing at it.
pub struct World {
    pub client: kube::Client,
    pub ns: TestNamespace,
    pub n: String,
    pub repo: TestRepo,
    _server: GitHttpServer,
    _tmp: tempfile::TempDir,
    pub ctx: std::sync::Arc<plumb_controller::Context>,
}

impl World {
    pub async fn new(prefix: &str, files: &[(&str, &str)]) -> World {
        Self::new_with(prefix, files, |_| {}).await
    }

    pub async fn new_with(
        prefix: &str,
        files: &[(&str, &str)],
        tune: impl FnOnce(&mut plumb_controller::Config),
    ) -> World {
        Self::new_on(ControlPlane::shared().unwrap(), prefix, files, tune).await
    }

    /// [`World::new_with`] on the control plane `info` (a private one for fault tests).
    pub async fn new_on(
        info: &ControlPlaneInfo,
        prefix: &str,
        files: &[(&str, &str)],
        tune: impl FnOnce(&mut plumb_controller::Config),
    ) -> World {
        let cfg = super::admin_config(info).await;
        Self::new_as(info, cfg, prefix, files, tune).await
    }

    /// [`World::new_on`] with the controllers' client built from `cfg` (e.g. a token of a
    /// ServiceAccount with the chart's RBAC); the test itself stays admin.
    pub async fn new_as(
        info: &ControlPlaneInfo,
        cfg: kube::Config,
        prefix: &str,
        files: &[(&str, &str)],
        tune: impl FnOnce(&mut plumb_controller::Config),
    ) -> World {
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
        let ctx = start_plumb_as(cfg, &n, &tmp.path().join("storage"), tune).await;
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

    pub fn ks_api(&self) -> Api<Kustomization> {
        Api::namespaced(self.client.clone(), &self.n)
    }

    pub fn cms(&self) -> Api<ConfigMap> {
        Api::namespaced(self.client.clone(), &self.n)
    }

    /// Creates Kustomization `name` with `spec` merged over defaults (interval 1h,
    /// sourceRef fleet, targetNamespace the test namespace).
    pub async fn create_ks(&self, name: &str, spec: Value) {
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

    pub async fn wait_ready(&self, name: &str) -> Value {
        wait_obj(&self.ks_api(), name, &format!("{name} ready"), |v| {
            ready(v.get("status")).is_some_and(|r| r.0 == "True")
                && v["status"]["observedGeneration"] == v["metadata"]["generation"]
        })
        .await
    }

    pub async fn patch_ks(&self, name: &str, patch: Value) {
        self.ks_api()
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap();
    }

    /// The Ready condition of `name` once `pred` holds on (status, reason, message).
    pub async fn wait_condition(
        &self,
        name: &str,
        what: &str,
        pred: impl Fn(&(String, String, String)) -> bool,
    ) -> (String, String, String) {
        let v = wait_obj(&self.ks_api(), name, what, |v| {
            ready(v.get("status")).is_some_and(|r| pred(&r))
        })
        .await;
        ready(v.get("status")).unwrap()
    }

    /// Commits `files` and asks the GitRepository to fetch now; returns the revision.
    pub async fn push(&self, files: &[(&str, &str)], remove: &[&str]) -> String {
        for f in remove {
            std::fs::remove_file(self.repo.path.join(f)).unwrap();
        }
        let sha = self.repo.commit(files, "change");
        let stamp = format!("{:?}", std::time::SystemTime::now());
        Api::<GitRepository>::namespaced(self.client.clone(), &self.n)
            .patch(
                "fleet",
                &PatchParams::default(),
                &Patch::Merge(&json!({"metadata": {"annotations": {"reconcile.fluxcd.io/requestedAt": stamp}}})),
            )
            .await
            .unwrap();
        format!("master@sha1:{sha}")
    }

    pub async fn finish(self) {
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
pub async fn within<T, F, Fut>(what: &str, secs: u64, f: F) -> T
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    wait::poll(what, Duration::from_secs(secs), f)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}
