//! OCIRepository against the real API server and a real OCI registry (CNCF distribution,
//! Debian's `docker-registry`): artifacts pushed in Flux's format are pulled, stored and
//! served; a Kustomization applies them; tag, semver and digest references; an unchanged
//! poll downloads no blob; a missing tag keeps the last good artifact and prunes nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use plumb_api::{Kustomization, OCIRepository};
use plumb_source::oci::{self, Client, ClientOptions, PushMeta};
use plumb_testing::registry::{Registry, RegistryOptions};
use plumb_testing::{ControlPlane, TestNamespace};
use serde_json::{Value, json};

use crate::common::world::within;
use crate::common::{install_crds, ready, request_reconcile, start_plumb, wait_obj};

/// Pushes `files` as a Flux artifact to `url` (`oci://host/repo:tag`); returns the digest.
async fn push(url: String, files: Vec<(&'static str, String)>, revision: &str) -> String {
    let revision = revision.to_string();
    tokio::task::spawn_blocking(move || {
        let dir = tempfile::tempdir().unwrap();
        for (p, c) in &files {
            let path = dir.path().join(p);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, c).unwrap();
        }
        let opts = ClientOptions {
            insecure: true,
            timeout: Duration::from_secs(20),
            ..Default::default()
        };
        let client = Client::new(&oci::parse_url(&url).unwrap(), &opts).unwrap();
        let meta = PushMeta {
            source: Some("https://github.com/example/fleet".into()),
            revision: Some(revision),
            ..Default::default()
        };
        client.push_artifact(dir.path(), &meta).unwrap().digest
    })
    .await
    .unwrap()
}

fn cm(name: &str, v: &str) -> String {
    format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  v: \"{v}\"\n")
}

fn blob_gets(reg: &Registry) -> usize {
    reg.log().matches("\"GET /v2/fleet/blobs/").count()
}

async fn artifact_revision(api: &Api<OCIRepository>, want: &str) -> Value {
    wait_obj(api, "fleet", &format!("artifact {want}"), |v| {
        v["status"]["artifact"]["revision"].as_str() == Some(want)
            && ready(v.get("status")).is_some_and(|r| r.0 == "True")
    })
    .await
}

#[tokio::test]
async fn kustomization_from_an_oci_repository() {
    let info = ControlPlane::shared().unwrap();
    let client = info.admin_client().await.unwrap();
    install_crds(&client).await;
    let ns = TestNamespace::create(info, "oci-ks").await.unwrap();
    let n = ns.name().to_string();
    let reg = tokio::task::spawn_blocking(|| Registry::start(RegistryOptions::default()))
        .await
        .unwrap()
        .unwrap();
    let kustomization = "resources:\n- a.yaml\n- b.yaml\n".to_string();
    let d1 = push(
        reg.oci_url("fleet:v1"),
        vec![
            ("deploy/kustomization.yaml", kustomization),
            ("deploy/a.yaml", cm("a", "1")),
            ("deploy/b.yaml", cm("b", "1")),
        ],
        "main@sha1:1111",
    )
    .await;
    let tmp = tempfile::tempdir().unwrap();
    start_plumb(info, &n, tmp.path()).await;
    let repos: Api<OCIRepository> = Api::namespaced(client.clone(), &n);
    let repo: OCIRepository = serde_json::from_value(json!({
        "apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "OCIRepository",
        "metadata": {"name": "fleet", "namespace": n},
        "spec": {"url": reg.oci_url("fleet"), "ref": {"tag": "v1"}, "insecure": true,
                 "interval": "1h"}
    }))
    .unwrap();
    repos.create(&PostParams::default(), &repo).await.unwrap();
    let v = artifact_revision(&repos, &format!("v1@{d1}")).await;
    let meta = &v["status"]["artifact"]["metadata"];
    assert_eq!(meta["org.opencontainers.image.revision"], "main@sha1:1111");
    assert_eq!(
        meta["org.opencontainers.image.source"],
        "https://github.com/example/fleet"
    );
    assert!(
        v["status"]["artifact"]["digest"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );

    let kss: Api<Kustomization> = Api::namespaced(client.clone(), &n);
    let ks: Kustomization = serde_json::from_value(json!({
        "apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
        "metadata": {"name": "app", "namespace": n},
        "spec": {"interval": "1h", "prune": true, "path": "./deploy", "targetNamespace": n,
                 "sourceRef": {"kind": "OCIRepository", "name": "fleet"}}
    }))
    .unwrap();
    kss.create(&PostParams::default(), &ks).await.unwrap();
    let applied = |rev: String| {
        move |v: &Value| v["status"]["lastAppliedRevision"].as_str() == Some(rev.as_str())
    };
    wait_obj(&kss, "app", "applied v1", applied(format!("v1@{d1}"))).await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &n);
    assert_eq!(cms.get("a").await.unwrap().data.unwrap()["v"], "1");

    // An unchanged poll: one manifest request, no blob download.
    let before = blob_gets(&reg);
    request_reconcile(&repos, "fleet").await;
    wait_obj(&repos, "fleet", "polled", |v| {
        v["status"]["lastHandledReconcileAt"].is_string()
    })
    .await;
    assert_eq!(
        blob_gets(&reg),
        before,
        "no blob downloaded for an unchanged digest"
    );

    // A new tag: a changes, b is pruned.
    let d2 = push(
        reg.oci_url("fleet:v2"),
        vec![
            ("deploy/kustomization.yaml", "resources:\n- a.yaml\n".into()),
            ("deploy/a.yaml", cm("a", "2")),
        ],
        "main@sha1:2222",
    )
    .await;
    repos
        .patch(
            "fleet",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"ref": {"tag": "v2"}}})),
        )
        .await
        .unwrap();
    wait_obj(&kss, "app", "applied v2", applied(format!("v2@{d2}"))).await;
    assert_eq!(cms.get("a").await.unwrap().data.unwrap()["v"], "2");
    within("b pruned", 30, || {
        let cms = cms.clone();
        async move { cms.get_opt("b").await.ok()?.is_none().then_some(()) }
    })
    .await;

    // A tag that does not exist: a clear condition, the last artifact and objects stay.
    repos
        .patch(
            "fleet",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"ref": {"tag": "nope"}}})),
        )
        .await
        .unwrap();
    let v = wait_obj(&repos, "fleet", "missing tag", |v| {
        v["status"]["observedGeneration"] == v["metadata"]["generation"]
            && ready(v.get("status")).is_some_and(|r| r.0 == "False")
    })
    .await;
    let r = ready(v.get("status")).unwrap();
    assert_eq!(r.1, "OCIArtifactPullFailed", "{r:?}");
    assert!(r.2.contains("nope"), "{r:?}");
    assert_eq!(
        v["status"]["artifact"]["revision"].as_str(),
        Some(format!("v2@{d2}").as_str())
    );
    assert!(cms.get_opt("a").await.unwrap().is_some());

    // Semver picks the highest matching tag; a digest pins one manifest.
    let d3 = push(
        reg.oci_url("fleet:1.2.0"),
        vec![("deploy/kustomization.yaml", "resources: []\n".into())],
        "main@sha1:3333",
    )
    .await;
    push(
        reg.oci_url("fleet:2.0.0"),
        vec![("deploy/kustomization.yaml", "resources: []\n".into())],
        "main@sha1:4444",
    )
    .await;
    repos
        .patch(
            "fleet",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"ref": {"tag": null, "semver": ">=1.0.0 <2.0.0"}}})),
        )
        .await
        .unwrap();
    artifact_revision(&repos, &format!("1.2.0@{d3}")).await;
    repos
        .patch(
            "fleet",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"ref": {"semver": null, "digest": d1}}})),
        )
        .await
        .unwrap();
    artifact_revision(&repos, &d1).await;

    kss.delete("app", &DeleteParams::default()).await.unwrap();
    repos
        .delete("fleet", &DeleteParams::default())
        .await
        .unwrap();
    within("finalized", 60, || {
        let (kss, repos) = (kss.clone(), repos.clone());
        async move {
            let gone = kss.get_opt("app").await.ok()?.is_none()
                && repos.get_opt("fleet").await.ok()?.is_none();
            gone.then_some(())
        }
    })
    .await;
    ns.delete().await.unwrap();
}

/// `helm push`es chart `podinfo` at `version` to `oci://<registry>/charts`.
pub(crate) fn helm_push(reg: &Registry, version: &str) {
    helm_push_as(reg, version, None);
}

/// [`helm_push`] with registry credentials.
fn helm_push_as(reg: &Registry, version: &str, creds: Option<(&str, &str)>) {
    let work = tempfile::tempdir().unwrap();
    let tgz = plumb_testing::chartrepo::package_chart(work.path(), "podinfo", version);
    let mut cmd = std::process::Command::new("helm");
    cmd.arg("push")
        .arg(&tgz)
        .arg(format!("oci://{}/charts", reg.host()))
        .arg("--plain-http")
        .env("HELM_REGISTRY_CONFIG", work.path().join("registry.json"));
    if let Some((u, p)) = creds {
        cmd.args(["--username", u, "--password", p]);
    }
    let out = cmd.output().expect("helm (scripts/install-deps.sh)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Flux's usual setup: a chart `helm push`ed to a registry, an OCIRepository selecting the
/// chart layer with `operation: copy` and a semver range, a HelmRelease with `chartRef`.
#[tokio::test]
async fn helmrelease_from_chart_ref_oci_repository() {
    let info = ControlPlane::shared().unwrap();
    let client = info.admin_client().await.unwrap();
    install_crds(&client).await;
    let ns = TestNamespace::create(info, "oci-hr").await.unwrap();
    let n = ns.name().to_string();
    let reg = tokio::task::spawn_blocking(|| {
        let reg = Registry::start(RegistryOptions::default()).unwrap();
        helm_push(&reg, "1.0.0");
        reg
    })
    .await
    .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    start_plumb(info, &n, tmp.path()).await;
    let repos: Api<OCIRepository> = Api::namespaced(client.clone(), &n);
    let repo: OCIRepository = serde_json::from_value(json!({
        "apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "OCIRepository",
        "metadata": {"name": "podinfo", "namespace": n},
        "spec": {"url": format!("oci://{}/charts/podinfo", reg.host()), "insecure": true,
                 "interval": "1h", "ref": {"semver": ">=1.0.0"},
                 "layerSelector": {"mediaType": "application/vnd.cncf.helm.chart.content.v1.tar+gzip",
                                   "operation": "copy"}}
    }))
    .unwrap();
    repos.create(&PostParams::default(), &repo).await.unwrap();
    let hrs: Api<plumb_api::HelmRelease> = Api::namespaced(client.clone(), &n);
    let hr: plumb_api::HelmRelease = serde_json::from_value(json!({
        "apiVersion": "helm.toolkit.fluxcd.io/v2", "kind": "HelmRelease",
        "metadata": {"name": "web", "namespace": n},
        "spec": {"interval": "1h", "chartRef": {"kind": "OCIRepository", "name": "podinfo"},
                 "values": {"greeting": "hi"}}
    }))
    .unwrap();
    hrs.create(&PostParams::default(), &hr).await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &n);
    let version_is = |want: &'static str| {
        let cms = cms.clone();
        move || {
            let cms = cms.clone();
            async move {
                let data = cms.get_opt("web").await.ok()??.data?;
                (data.get("version")? == want && data.get("greeting")? == "hi").then_some(())
            }
        }
    };
    within("installed from the OCI chart", 90, version_is("1.0.0")).await;

    // A new chart version in the registry: the source moves, the release upgrades.
    let reg = tokio::task::spawn_blocking(move || {
        helm_push(&reg, "1.1.0");
        reg
    })
    .await
    .unwrap();
    request_reconcile(&repos, "podinfo").await;
    within("upgraded to 1.1.0", 90, version_is("1.1.0")).await;
    wait_obj(&hrs, "web", "ready at 1.1.0", |v| {
        v["status"]["lastAttemptedRevision"] == "1.1.0"
            && ready(v.get("status")).is_some_and(|r| r.0 == "True")
    })
    .await;

    hrs.delete("web", &DeleteParams::default()).await.unwrap();
    repos
        .delete("podinfo", &DeleteParams::default())
        .await
        .unwrap();
    within("finalized", 60, || {
        let (hrs, repos) = (hrs.clone(), repos.clone());
        async move {
            let gone = hrs.get_opt("web").await.ok()?.is_none()
                && repos.get_opt("podinfo").await.ok()?.is_none();
            gone.then_some(())
        }
    })
    .await;
    drop(reg);
    ns.delete().await.unwrap();
}

/// A HelmRelease `chart.spec` from an OCI HelmRepository (`type: oci`) behind basic auth:
/// the repository is Ready without an artifact, the chart version range resolves over the
/// registry's tags, a wrong password is a clear condition without the password in it.
#[tokio::test]
async fn helmrelease_from_an_oci_helm_repository_with_credentials() {
    let info = ControlPlane::shared().unwrap();
    let client = info.admin_client().await.unwrap();
    install_crds(&client).await;
    let ns = TestNamespace::create(info, "oci-helmrepo").await.unwrap();
    let n = ns.name().to_string();
    let (user, pass) = ("alice", "s3cret-pw-42");
    let reg = tokio::task::spawn_blocking(move || {
        let reg = Registry::start(RegistryOptions {
            htpasswd: Some((user, pass)),
            ..Default::default()
        })
        .unwrap();
        for v in ["1.0.0", "1.3.0", "2.0.0"] {
            helm_push_as(&reg, v, Some((user, pass)));
        }
        reg
    })
    .await
    .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    start_plumb(info, &n, tmp.path()).await;
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(client.clone(), &n);
    for (name, p) in [("creds", pass), ("wrong", "not-the-password")] {
        let s: k8s_openapi::api::core::v1::Secret = serde_json::from_value(json!({
            "metadata": {"name": name}, "stringData": {"username": user, "password": p}
        }))
        .unwrap();
        secrets.create(&PostParams::default(), &s).await.unwrap();
    }
    let repos: Api<plumb_api::HelmRepository> = Api::namespaced(client.clone(), &n);
    let repo: plumb_api::HelmRepository = serde_json::from_value(json!({
        "apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "HelmRepository",
        "metadata": {"name": "charts", "namespace": n},
        "spec": {"type": "oci", "url": format!("oci://{}/charts", reg.host()), "insecure": true,
                 "interval": "1h", "secretRef": {"name": "creds"}}
    }))
    .unwrap();
    repos.create(&PostParams::default(), &repo).await.unwrap();
    let v = wait_obj(&repos, "charts", "oci repository ready", |v| {
        ready(v.get("status")).is_some_and(|r| r.0 == "True")
    })
    .await;
    assert!(
        v["status"].get("artifact").is_none(),
        "no index, no artifact"
    );

    let hrs: Api<plumb_api::HelmRelease> = Api::namespaced(client.clone(), &n);
    let hr: plumb_api::HelmRelease = serde_json::from_value(json!({
        "apiVersion": "helm.toolkit.fluxcd.io/v2", "kind": "HelmRelease",
        "metadata": {"name": "web", "namespace": n},
        "spec": {"interval": "1h",
                 "chart": {"spec": {"chart": "podinfo", "version": "^1.0.0",
                                    "sourceRef": {"kind": "HelmRepository", "name": "charts"}}}}
    }))
    .unwrap();
    hrs.create(&PostParams::default(), &hr).await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &n);
    within("installed 1.3.0 from the OCI repository", 90, || {
        let cms = cms.clone();
        async move {
            let data = cms.get_opt("web").await.ok()??.data?;
            (data.get("version")? == "1.3.0").then_some(())
        }
    })
    .await;

    // Wrong credentials: a clear condition, never the password.
    repos
        .patch(
            "charts",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"secretRef": {"name": "wrong"}}})),
        )
        .await
        .unwrap();
    hrs.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(&json!({"spec": {"chart": {"spec": {"version": "2.0.0"}}}})),
    )
    .await
    .unwrap();
    let v = wait_obj(&hrs, "web", "auth failure", |v| {
        v["status"]["observedGeneration"] == v["metadata"]["generation"]
            && ready(v.get("status")).is_some_and(|r| r.0 == "False")
    })
    .await;
    let r = ready(v.get("status")).unwrap();
    assert!(
        r.2.contains("chart pull error") || r.1 == "AuthenticationFailed",
        "{r:?}"
    );
    assert!(
        !serde_json::to_string(&v)
            .unwrap()
            .contains("not-the-password")
    );
    assert!(!serde_json::to_string(&v).unwrap().contains(pass));
    let data = cms.get("web").await.unwrap().data.unwrap();
    assert_eq!(data["version"], "1.3.0", "last good release kept");

    hrs.delete("web", &DeleteParams::default()).await.unwrap();
    within("uninstalled", 60, || {
        let hrs = hrs.clone();
        async move { hrs.get_opt("web").await.ok()?.is_none().then_some(()) }
    })
    .await;
    drop(reg);
    ns.delete().await.unwrap();
}
