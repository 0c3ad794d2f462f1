//! ExternalArtifact (Flux 2.7) as a Kustomization source, against the real API server: an
//! ExternalArtifact whose status points at an artifact served by plumb's artifact server
//! is applied; a wrong digest fails with `ArtifactFailed` and prunes nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams, PostParams};
use plumb_api::{ExternalArtifact, Kustomization};
use plumb_source::artifact::{Limits, ObjectKey};
use plumb_testing::{ControlPlane, TestNamespace};
use serde_json::{Value, json};

use crate::common::{install_crds, ready, start_plumb, wait_obj};

pub(crate) fn cm(name: &str, v: &str) -> String {
    format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  v: \"{v}\"\n")
}

/// Stores `files` as the artifact of ExternalArtifact `ns/name` in `ctx`'s storage; returns
/// the artifact as it goes into the status.
fn store(ctx: &plumb_controller::Context, ns: &str, name: &str, files: &[(&str, String)]) -> Value {
    let dir = tempfile::tempdir().unwrap();
    for (p, c) in files {
        let path = dir.path().join(p);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, c).unwrap();
    }
    let key = ObjectKey {
        kind: "ExternalArtifact",
        namespace: ns,
        name,
    };
    let a = ctx
        .storage
        .store_dir(key, "pending", dir.path(), None, Limits::default())
        .unwrap();
    json!({"path": a.path, "url": a.url, "revision": format!("latest@{}", a.digest),
           "digest": a.digest, "size": a.size,
           "lastUpdateTime": "2025-01-01T00:00:00Z"})
}

async fn set_artifact(api: &Api<ExternalArtifact>, name: &str, artifact: Value) {
    let status = json!({"status": {"artifact": artifact, "conditions": [{
        "type": "Ready", "status": "True", "reason": "Succeeded", "message": "generated",
        "lastTransitionTime": "2025-01-01T00:00:00Z"}]}});
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
}

#[tokio::test]
async fn kustomization_from_an_external_artifact() {
    let info = ControlPlane::shared().unwrap();
    let client = info.admin_client().await.unwrap();
    install_crds(&client).await;
    let ns = TestNamespace::create(info, "ea-ks").await.unwrap();
    let n = ns.name().to_string();
    let tmp = tempfile::tempdir().unwrap();
    let ctx = start_plumb(info, &n, tmp.path()).await;

    let eas: Api<ExternalArtifact> = Api::namespaced(client.clone(), &n);
    let ea: ExternalArtifact = serde_json::from_value(json!({
        "apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "ExternalArtifact",
        "metadata": {"name": "app", "namespace": n},
        "spec": {"sourceRef": {"apiVersion": "source.extensions.fluxcd.io/v1beta1",
                               "kind": "ArtifactGenerator", "name": "gen"}}
    }))
    .unwrap();
    eas.create(&PostParams::default(), &ea).await.unwrap();

    // The Kustomization waits for the artifact.
    let kss: Api<Kustomization> = Api::namespaced(client.clone(), &n);
    let ks: Kustomization = serde_json::from_value(json!({
        "apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
        "metadata": {"name": "app", "namespace": n},
        "spec": {"interval": "1h", "prune": true, "path": "./", "targetNamespace": n,
                 "sourceRef": {"kind": "ExternalArtifact", "name": "app"}}
    }))
    .unwrap();
    kss.create(&PostParams::default(), &ks).await.unwrap();
    wait_obj(&kss, "app", "waiting for the artifact", |v| {
        ready(v.get("status")).is_some_and(|r| {
            r.0 == "False" && r.1 == "ArtifactFailed" && r.2.contains("artifact not found")
        })
    })
    .await;

    let files = [
        ("kustomization.yaml", "resources:\n- a.yaml\n".to_string()),
        ("a.yaml", cm("a", "1")),
    ];
    let art = store(&ctx, &n, "app", &files);
    let rev = art["revision"].as_str().unwrap().to_string();
    set_artifact(&eas, "app", art.clone()).await;
    wait_obj(&kss, "app", "applied", |v| {
        v["status"]["lastAppliedRevision"].as_str() == Some(rev.as_str())
    })
    .await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &n);
    assert_eq!(cms.get("a").await.unwrap().data.unwrap()["v"], "1");

    // A digest that does not match the file: ArtifactFailed, nothing pruned.
    let files = [
        ("kustomization.yaml", "resources:\n- b.yaml\n".to_string()),
        ("b.yaml", cm("b", "2")),
    ];
    let mut bad = store(&ctx, &n, "app", &files);
    bad["digest"] = json!(format!("sha256:{}", "0".repeat(64)));
    bad["revision"] = json!("latest@sha256:bad");
    set_artifact(&eas, "app", bad).await;
    let v = wait_obj(&kss, "app", "digest mismatch", |v| {
        ready(v.get("status")).is_some_and(|r| r.0 == "False" && r.1 == "ArtifactFailed")
    })
    .await;
    assert!(
        ready(v.get("status")).unwrap().2.contains("digest"),
        "{v:#}"
    );
    assert_eq!(v["status"]["lastAppliedRevision"], json!(rev));
    assert!(cms.get("a").await.is_ok(), "nothing pruned");
    assert!(cms.get_opt("b").await.unwrap().is_none());
    ns.delete().await.unwrap();
}
