//! ArtifactGenerator (Flux 2.7) against the real API server and real git servers: a
//! generator composing two GitRepositories feeds a Kustomization; a split monorepo where a
//! commit to one app changes only that app's ExternalArtifact revision; bad input (a glob
//! matching nothing, a destination escaping the root, a missing source) gives clear
//! conditions and leaves the published artifacts and everything downstream alone.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams, PostParams};
use plumb_api::{ArtifactGenerator, ExternalArtifact, GitRepository, Kustomization};
use plumb_testing::git::{GitHttpServer, HttpAuth, TestRepo};
use plumb_testing::{ControlPlane, TestNamespace};
use serde_json::{Value, json};

use crate::common::{install_crds, ready, request_reconcile, start_plumb, wait_obj};
use crate::external_artifact::cm;

struct Env {
    client: kube::Client,
    ns: TestNamespace,
    n: String,
    server: GitHttpServer,
    root: std::path::PathBuf,
    _tmp: tempfile::TempDir,
}

impl Env {
    async fn new(prefix: &str) -> Env {
        let info = ControlPlane::shared().unwrap();
        let client = info.admin_client().await.unwrap();
        install_crds(&client).await;
        let ns = TestNamespace::create(info, prefix).await.unwrap();
        let n = ns.name().to_string();
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("repos");
        std::fs::create_dir_all(&root).unwrap();
        let r = root.clone();
        let server = std::thread::spawn(move || GitHttpServer::start(&r, HttpAuth::Anonymous))
            .join()
            .unwrap();
        start_plumb(info, &n, &tmp.path().join("storage")).await;
        Env {
            client,
            ns,
            n,
            server,
            root,
            _tmp: tmp,
        }
    }

    async fn git(&self, name: &str, files: &[(&str, &str)]) -> TestRepo {
        let repo = TestRepo::init(&self.root, name);
        repo.commit(files, "initial");
        let gitrepo: GitRepository = serde_json::from_value(json!({
            "apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository",
            "metadata": {"name": name, "namespace": self.n},
            "spec": {"url": self.server.url(name), "interval": "1h", "ref": {"branch": "master"}}
        }))
        .unwrap();
        Api::<GitRepository>::namespaced(self.client.clone(), &self.n)
            .create(&PostParams::default(), &gitrepo)
            .await
            .unwrap();
        repo
    }

    fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.client.clone(), &self.n)
    }

    async fn generator(&self, name: &str, spec: Value) {
        let g: ArtifactGenerator = serde_json::from_value(json!({
            "apiVersion": "source.extensions.fluxcd.io/v1beta1", "kind": "ArtifactGenerator",
            "metadata": {"name": name, "namespace": self.n}, "spec": spec
        }))
        .unwrap();
        self.api::<ArtifactGenerator>()
            .create(&PostParams::default(), &g)
            .await
            .unwrap();
    }

    async fn ks(&self, name: &str, source: &str) {
        let ks: Kustomization = serde_json::from_value(json!({
            "apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
            "metadata": {"name": name, "namespace": self.n},
            "spec": {"interval": "1h", "prune": true, "path": "./", "targetNamespace": self.n,
                     "sourceRef": {"kind": "ExternalArtifact", "name": source}}
        }))
        .unwrap();
        self.api::<Kustomization>()
            .create(&PostParams::default(), &ks)
            .await
            .unwrap();
    }

    /// The ExternalArtifact `name` once it has an artifact (and `pred` holds on it).
    async fn artifact(&self, name: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let v = wait_obj(
            &self.api::<ExternalArtifact>(),
            name,
            &format!("{name} artifact"),
            |v| v["status"]["artifact"]["revision"].is_string() && pred(&v["status"]["artifact"]),
        )
        .await;
        v["status"]["artifact"].clone()
    }

    async fn applied(&self, ks: &str, revision: &str) -> Value {
        wait_obj(
            &self.api::<Kustomization>(),
            ks,
            &format!("{ks} applied"),
            |v| v["status"]["lastAppliedRevision"].as_str() == Some(revision),
        )
        .await
    }

    async fn cm_value(&self, name: &str) -> String {
        let cm = self.api::<ConfigMap>().get(name).await.unwrap();
        cm.data.unwrap()["v"].clone()
    }

    async fn gen_condition(
        &self,
        name: &str,
        what: &str,
        pred: impl Fn(&(String, String, String)) -> bool,
    ) -> (String, String, String) {
        let v = wait_obj(&self.api::<ArtifactGenerator>(), name, what, |v| {
            ready(v.get("status")).is_some_and(|r| pred(&r))
        })
        .await;
        ready(v.get("status")).unwrap()
    }
}

#[tokio::test]
async fn generator_over_two_git_repositories_feeds_a_kustomization() {
    let env = Env::new("ag-compose").await;
    let be = cm("backend", "1");
    let fe = cm("frontend", "1");
    env.git(
        "backend",
        &[("deploy/backend.yaml", &be), ("README.md", "docs")],
    )
    .await;
    let fe_repo = env.git("frontend", &[("deploy/frontend.yaml", &fe)]).await;
    env.generator(
        "app",
        json!({"sources": [
                {"alias": "be", "kind": "GitRepository", "name": "backend"},
                {"alias": "fe", "kind": "GitRepository", "name": "frontend"}],
               "artifacts": [{"name": "app", "originRevision": "@be", "copy": [
                {"from": "@be/deploy/**", "to": "@artifact/backend/"},
                {"from": "@fe/deploy/*.yaml", "to": "@artifact/"}]}]}),
    )
    .await;
    let art = env.artifact("app", |_| true).await;
    let rev = art["revision"].as_str().unwrap().to_string();
    assert!(rev.starts_with("latest@sha256:"), "{art:#}");
    assert!(
        art["metadata"]["org.opencontainers.image.revision"]
            .as_str()
            .unwrap()
            .starts_with("master@sha1:")
    );
    let g = wait_obj(
        &env.api::<ArtifactGenerator>(),
        "app",
        "generator ready",
        |v| ready(v.get("status")).is_some_and(|r| r.0 == "True"),
    )
    .await;
    assert_eq!(g["status"]["inventory"][0]["name"], "app");
    assert_eq!(g["status"]["inventory"][0]["digest"], art["digest"]);
    let ea = env.api::<ExternalArtifact>().get("app").await.unwrap();
    assert_eq!(
        ea.metadata.owner_references.unwrap()[0].kind,
        "ArtifactGenerator"
    );

    env.ks("app", "app").await;
    env.applied("app", &rev).await;
    assert_eq!(env.cm_value("backend").await, "1");
    assert_eq!(env.cm_value("frontend").await, "1");

    // A chart composed from the frontend repository feeds a HelmRelease (chartRef).
    let chart = "apiVersion: v2\nname: web\nversion: 1.0.0\n";
    let tpl = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web\ndata:\n  v: {{ .Values.v | quote }}\n";
    fe_repo.commit(
        &[
            ("chart/Chart.yaml", chart),
            ("chart/templates/cm.yaml", tpl),
        ],
        "chart",
    );
    request_reconcile(&env.api::<GitRepository>(), "frontend").await;
    env.generator(
        "charts",
        json!({"sources": [{"alias": "fe", "kind": "GitRepository", "name": "frontend"}],
               "artifacts": [{"name": "web-chart", "copy": [
                {"from": "@fe/chart/**", "to": "@artifact/"}]}]}),
    )
    .await;
    let hr: plumb_api::HelmRelease = serde_json::from_value(json!({
        "apiVersion": "helm.toolkit.fluxcd.io/v2", "kind": "HelmRelease",
        "metadata": {"name": "web", "namespace": env.n},
        "spec": {"interval": "1h", "chartRef": {"kind": "ExternalArtifact", "name": "web-chart"},
                 "values": {"v": "hr"}}
    }))
    .unwrap();
    env.api::<plumb_api::HelmRelease>()
        .create(&PostParams::default(), &hr)
        .await
        .unwrap();
    let cms = env.api::<ConfigMap>();
    crate::common::world::within("released from the ExternalArtifact", 90, || {
        let cms = cms.clone();
        async move { (cms.get_opt("web").await.ok()??.data?.get("v")? == "hr").then_some(()) }
    })
    .await;
    env.ns.delete().await.unwrap();
}

#[tokio::test]
async fn a_monorepo_commit_changes_only_its_apps_artifact() {
    let env = Env::new("ag-split").await;
    let (a1, b1) = (cm("a", "1"), cm("b", "1"));
    let repo = env
        .git("mono", &[("apps/a/a.yaml", &a1), ("apps/b/b.yaml", &b1)])
        .await;
    let out = |app: &str| {
        json!({"name": format!("app-{app}"), "copy": [
            {"from": format!("@mono/apps/{app}/**"), "to": "@artifact/"}]})
    };
    env.generator(
        "split",
        json!({"sources": [{"alias": "mono", "kind": "GitRepository", "name": "mono"}],
               "artifacts": [out("a"), out("b")]}),
    )
    .await;
    let a = env.artifact("app-a", |_| true).await;
    let b = env.artifact("app-b", |_| true).await;
    env.ks("a", "app-a").await;
    env.ks("b", "app-b").await;
    env.applied("a", a["revision"].as_str().unwrap()).await;
    let ks_b = env.applied("b", b["revision"].as_str().unwrap()).await;
    let ea_b = env.api::<ExternalArtifact>().get("app-b").await.unwrap();

    // A commit touching apps/a only.
    let a2 = cm("a", "2");
    repo.commit(&[("apps/a/a.yaml", &a2)], "a: 2");
    request_reconcile(&env.api::<GitRepository>(), "mono").await;
    let a_new = env
        .artifact("app-a", |x| x["revision"] != a["revision"])
        .await;
    env.applied("a", a_new["revision"].as_str().unwrap()).await;
    assert_eq!(env.cm_value("a").await, "2");
    let g = wait_obj(
        &env.api::<ArtifactGenerator>(),
        "split",
        "sources observed",
        |v| v["status"]["inventory"][0]["digest"] == a_new["digest"],
    )
    .await;
    assert_eq!(g["status"]["inventory"][1]["digest"], b["digest"]);
    let ea_b2 = env.api::<ExternalArtifact>().get("app-b").await.unwrap();
    assert_eq!(
        ea_b2.metadata.resource_version, ea_b.metadata.resource_version,
        "app-b's ExternalArtifact was not written"
    );
    let ks_b2 = env.api::<Kustomization>().get("b").await.unwrap();
    let ks_b2 = serde_json::to_value(ks_b2).unwrap();
    assert_eq!(
        ks_b2["status"]["lastAppliedRevision"],
        ks_b["status"]["lastAppliedRevision"]
    );

    // Bad input: a glob matching nothing. Nothing is published or pruned.
    let patch = json!({"spec": {"artifacts": [out("a"), {"name": "app-b", "copy": [
        {"from": "@mono/apps/b/**", "to": "@artifact/"},
        {"from": "@mono/nothing/*.yaml", "to": "@artifact/"}]}]}});
    env.api::<ArtifactGenerator>()
        .patch("split", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let r = env
        .gen_condition("split", "glob fails", |r| r.0 == "False")
        .await;
    assert_eq!(r.1, "BuildFailed");
    assert!(
        r.2.contains("no files match pattern 'nothing/*.yaml'"),
        "{r:?}"
    );
    // A destination escaping the artifact root.
    let patch = json!({"spec": {"artifacts": [{"name": "app-a", "copy": [
        {"from": "@mono/apps/a/**", "to": "@artifact/../../etc"}]}, out("b")]}});
    env.api::<ArtifactGenerator>()
        .patch("split", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    env.gen_condition("split", "escape fails", |r| {
        r.0 == "False" && r.2.contains("must stay within the artifact root")
    })
    .await;
    // A missing source.
    env.generator(
        "missing",
        json!({"sources": [{"alias": "x", "kind": "GitRepository", "name": "nope"}],
               "artifacts": [{"name": "x", "copy": [{"from": "@x/a", "to": "@artifact/"}]}]}),
    )
    .await;
    let r = env
        .gen_condition("missing", "missing source", |r| r.0 == "False")
        .await;
    assert_eq!(r.1, "SourceFetchFailed");
    assert!(r.2.contains("not found"), "{r:?}");

    let ea_b3 = env.api::<ExternalArtifact>().get("app-b").await.unwrap();
    assert_eq!(
        ea_b3.metadata.resource_version,
        ea_b.metadata.resource_version
    );
    assert_eq!(env.cm_value("a").await, "2", "nothing pruned");
    assert_eq!(env.cm_value("b").await, "1", "nothing pruned");
    env.ns.delete().await.unwrap();
}

#[tokio::test]
async fn a_cycle_of_generators_is_refused() {
    let env = Env::new("ag-cycle").await;
    let a = cm("a", "1");
    env.git("mono", &[("apps/a/a.yaml", &a)]).await;
    // A generator reading its own output.
    env.generator(
        "self",
        json!({"sources": [{"alias": "me", "kind": "ExternalArtifact", "name": "self-out"}],
               "artifacts": [{"name": "self-out", "copy": [{"from": "@me/**", "to": "@artifact/"}]}]}),
    )
    .await;
    let r = env
        .gen_condition("self", "self cycle", |r| r.0 == "False")
        .await;
    assert_eq!(r.1, "ValidationFailed");
    assert!(r.2.contains("generator cycle"), "{r:?}");

    // g1 reads g2's output; then g2 reads g1's: refused, g2's output stays.
    env.generator(
        "g2",
        json!({"sources": [{"alias": "mono", "kind": "GitRepository", "name": "mono"}],
               "artifacts": [{"name": "from-g2", "copy": [{"from": "@mono/apps/**", "to": "@artifact/"}]}]}),
    )
    .await;
    let before = env.artifact("from-g2", |_| true).await;
    env.generator(
        "g1",
        json!({"sources": [{"alias": "up", "kind": "ExternalArtifact", "name": "from-g2"}],
               "artifacts": [{"name": "from-g1", "copy": [{"from": "@up/**", "to": "@artifact/"}]}]}),
    )
    .await;
    env.artifact("from-g1", |_| true).await;
    let patch = json!({"spec": {"sources": [
        {"alias": "mono", "kind": "GitRepository", "name": "mono"},
        {"alias": "down", "kind": "ExternalArtifact", "name": "from-g1"}]}});
    env.api::<ArtifactGenerator>()
        .patch("g2", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let r = env
        .gen_condition("g2", "g2 cycle", |r| r.0 == "False")
        .await;
    assert_eq!(r.1, "ValidationFailed");
    assert!(r.2.contains("generator cycle: g2 -> g1"), "{r:?}");
    let after = env.artifact("from-g2", |_| true).await;
    assert_eq!(after["digest"], before["digest"], "nothing removed");
    env.ns.delete().await.unwrap();
}

/// `spec.pathPattern`: one ExternalArtifact per app directory from one template; a new app
/// directory adds one, a removed one removes its output; a placeholder the pattern does not
/// capture is refused and nothing is removed.
#[tokio::test]
async fn a_path_pattern_generates_one_artifact_per_directory() {
    let env = Env::new("ag-pattern").await;
    let (a1, b1) = (cm("a", "1"), cm("b", "1"));
    let repo = env
        .git(
            "mono",
            &[
                ("apps/a/a.yaml", &a1),
                ("apps/b/b.yaml", &b1),
                ("README.md", "x"),
            ],
        )
        .await;
    env.generator(
        "apps",
        json!({"sources": [{"alias": "mono", "kind": "GitRepository", "name": "mono"}],
               "pathPattern": "@mono/apps/{app}",
               "artifacts": [{"name": "app-{app}", "copy": [
                   {"from": "@mono/apps/{app}/**", "to": "@artifact/"}]}]}),
    )
    .await;
    let a = env.artifact("app-a", |_| true).await;
    env.artifact("app-b", |_| true).await;
    env.ks("a", "app-a").await;
    env.applied("a", a["revision"].as_str().unwrap()).await;
    assert_eq!(env.cm_value("a").await, "1");
    let g = env.gen_condition("apps", "ready", |r| r.0 == "True").await;
    assert!(!g.2.contains("not supported"), "{g:?}");

    // A new app directory makes a new artifact; a removed one loses its output.
    let c1 = cm("c", "1");
    std::fs::remove_file(repo.path.join("apps/b/b.yaml")).unwrap();
    repo.commit(&[("apps/c/c.yaml", &c1)], "c in, b out");
    request_reconcile(&env.api::<GitRepository>(), "mono").await;
    env.artifact("app-c", |_| true).await;
    let eas = env.api::<ExternalArtifact>();
    wait_obj(&env.api::<ArtifactGenerator>(), "apps", "b removed", |v| {
        let names: Vec<&str> = v["status"]["inventory"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|i| i["name"].as_str())
            .collect();
        names == ["app-a", "app-c"]
    })
    .await;
    assert!(eas.get_opt("app-b").await.unwrap().is_none());

    // A placeholder the pattern does not capture: refused, nothing removed.
    let patch = json!({"spec": {"artifacts": [{"name": "app-{app}", "copy": [
        {"from": "@mono/apps/{name}/**", "to": "@artifact/"}]}]}});
    env.api::<ArtifactGenerator>()
        .patch("apps", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let r = env
        .gen_condition("apps", "placeholder refused", |r| r.0 == "False")
        .await;
    assert!(r.2.contains("'{name}'"), "{r:?}");
    assert!(
        eas.get_opt("app-a").await.unwrap().is_some(),
        "nothing removed"
    );
    assert!(
        eas.get_opt("app-c").await.unwrap().is_some(),
        "nothing removed"
    );
    assert_eq!(env.cm_value("a").await, "1", "nothing pruned");
    env.ns.delete().await.unwrap();
}
