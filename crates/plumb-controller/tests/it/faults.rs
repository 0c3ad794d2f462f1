//! The fault matrix against the real API server: a render, fetch or decryption failure
//! prunes nothing and keeps the last good state with a clear condition (Kustomization and
//! HelmRelease); Helm's `resource-policy: keep` and ownership hold on upgrade and
//! uninstall; an API server restart in the middle of an apply converges; another field
//! manager's claim on a field is taken back.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use plumb_api::{GitRepository, HelmRelease};
use plumb_testing::{ControlPlane, StartOptions};
use serde_json::{Value, json};

use crate::common::world::{World, within};
use crate::common::{ready, request_reconcile, wait_obj};
use crate::helmrelease::{hr, setup};

const CM_A: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\ndata:\n  v: \"1\"\n";
const CM_B: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: b\n";

/// A SOPS-encrypted Secret as `sops --encrypt` writes it (ciphertext and MAC).
const SOPS_SECRET: &str = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: creds\nstringData:\n  password: ENC[AES256_GCM,data:q7Zx,iv:3N0m4,tag:Zm9v,type:str]\nsops:\n  age:\n  - recipient: age1qyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqs3290gq\n    enc: |\n      -----BEGIN AGE ENCRYPTED FILE-----\n      YWdl\n      -----END AGE ENCRYPTED FILE-----\n  lastmodified: \"2026-01-01T00:00:00Z\"\n  mac: ENC[AES256_GCM,data:bWFj,iv:aXY=,tag:dGFn,type:str]\n  version: 3.9.0\n";

/// Makes GitRepository `name` announce `revision` with an artifact that cannot be fetched
/// (its server is gone), as a source whose storage was lost would.
async fn break_artifact(repos: &Api<GitRepository>, name: &str, revision: &str) {
    let mut artifact = repos
        .get(name)
        .await
        .unwrap()
        .status
        .unwrap()
        .artifact
        .unwrap();
    artifact.revision = revision.to_string();
    artifact.path = "gitrepository/gone/gone.tar.gz".to_string();
    artifact.url = "http://127.0.0.1:9/gitrepository/gone.tar.gz".to_string();
    artifact.digest = Some(format!("sha256:{}", "0".repeat(64)));
    let patch = json!({"status": {"artifact": artifact}});
    repos
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
}

/// Waits until Kustomization `name` attempted `revision` and is not Ready; returns status.
async fn failed_at(w: &World, name: &str, revision: &str) -> Value {
    let v = wait_obj(
        &w.ks_api(),
        name,
        &format!("{name} fails at {revision}"),
        |v| {
            v["status"]["lastAttemptedRevision"].as_str() == Some(revision)
                && ready(v.get("status")).is_some_and(|r| r.0 == "False")
        },
    )
    .await;
    v["status"].clone()
}

/// The last good state is intact: revision, inventory, and both objects.
async fn last_good_kept(w: &World, status: &Value, good: &Value) {
    assert_eq!(
        status["lastAppliedRevision"], good["status"]["lastAppliedRevision"],
        "last applied revision kept"
    );
    assert_eq!(
        status["inventory"], good["status"]["inventory"],
        "inventory kept"
    );
    assert!(w.cms().get_opt("a").await.unwrap().is_some(), "a kept");
    assert!(
        w.cms().get_opt("b").await.unwrap().is_some(),
        "b not pruned"
    );
}

#[tokio::test]
async fn kustomization_render_fetch_and_decrypt_failures_prune_nothing() {
    let w = World::new(
        "fault-ks",
        &[
            (
                "deploy/kustomization.yaml",
                "resources:\n- a.yaml\n- b.yaml\n",
            ),
            ("deploy/a.yaml", CM_A),
            ("deploy/b.yaml", CM_B),
        ],
    )
    .await;
    w.create_ks("app", json!({"path": "./deploy", "retryInterval": "2s"}))
        .await;
    let good = w.wait_ready("app").await;

    // Render failure: the new revision names a file that does not exist and drops b.
    let bad = w
        .push(
            &[(
                "deploy/kustomization.yaml",
                "resources:\n- a.yaml\n- gone.yaml\n",
            )],
            &["deploy/b.yaml"],
        )
        .await;
    let st = failed_at(&w, "app", &bad).await;
    let r = ready(Some(&st)).unwrap();
    assert_eq!(r.1, "BuildFailed", "{r:?}");
    assert!(r.2.contains("gone.yaml"), "names the missing file: {r:?}");
    last_good_kept(&w, &st, &good).await;

    // Decryption failure: a SOPS-encrypted Secret is never applied as ciphertext.
    let enc = w
        .push(
            &[
                (
                    "deploy/kustomization.yaml",
                    "resources:\n- a.yaml\n- secret.yaml\n",
                ),
                ("deploy/secret.yaml", SOPS_SECRET),
            ],
            &[],
        )
        .await;
    let st = failed_at(&w, "app", &enc).await;
    let r = ready(Some(&st)).unwrap();
    assert_eq!(r.1, "DecryptionFailed", "{r:?}");
    assert!(r.2.contains("decryption failed for Secret"), "{r:?}");
    assert!(
        !r.2.contains("q7Zx"),
        "no ciphertext in the condition: {r:?}"
    );
    last_good_kept(&w, &st, &good).await;
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(w.client.clone(), &w.n);
    assert!(secrets.get_opt("creds").await.unwrap().is_none());

    // Fetch failure: the source announces a revision whose artifact cannot be fetched
    // (its server is gone).
    let gone = "master@sha1:0000000000000000000000000000000000000000";
    let repos: Api<GitRepository> = Api::namespaced(w.client.clone(), &w.n);
    break_artifact(&repos, "fleet", gone).await;
    let st = failed_at(&w, "app", gone).await;
    let r = ready(Some(&st)).unwrap();
    assert_eq!(r.1, "ArtifactFailed", "{r:?}");
    assert!(r.2.contains("failed to fetch artifact"), "{r:?}");
    last_good_kept(&w, &st, &good).await;
    w.finish().await;
}

/// A field another manager takes over with a forced apply is taken back by plumb's
/// forced apply at the next pass (as Flux: plumb always forces field ownership, so a
/// field-manager conflict never stalls a Kustomization); without force the other
/// manager's apply gets the 409.
#[tokio::test]
async fn another_field_manager_conflicts_and_force_resolves() {
    let w = World::new(
        "fault-409",
        &[
            ("deploy/kustomization.yaml", "resources:\n- a.yaml\n"),
            ("deploy/a.yaml", CM_A),
        ],
    )
    .await;
    w.create_ks("app", json!({"path": "./deploy"})).await;
    w.wait_ready("app").await;
    let cms = w.cms();
    let theirs = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "a", "namespace": w.n}, "data": {"v": "theirs"}});
    let err = cms
        .patch(
            "a",
            &PatchParams::apply("other-tool"),
            &Patch::Apply(&theirs),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, kube::Error::Api(ae) if ae.code == 409),
        "a conflicting apply without force is refused: {err}"
    );
    cms.patch(
        "a",
        &PatchParams::apply("other-tool").force(),
        &Patch::Apply(&theirs),
    )
    .await
    .unwrap();
    // plumb takes the field back (drift watch or the next pass).
    within("plumb reclaims data.v", 60, || {
        let cms = cms.clone();
        async move {
            let cm = cms.get("a").await.ok()?;
            (cm.data?.get("v")? == "1").then_some(())
        }
    })
    .await;
    let cm = cms.get("a").await.unwrap();
    let owners: Vec<String> = cm
        .metadata
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .filter(|m| {
            m.fields_v1
                .as_ref()
                .is_some_and(|f| f.0.pointer("/f:data/f:v").is_some())
        })
        .filter_map(|m| m.manager)
        .collect();
    assert_eq!(owners, ["kustomize-controller"], "one owner of data.v");
    w.finish().await;
}

/// kube-apiserver restarts while a revision of 600 objects is being applied: the pass
/// fails (connection refused, broken watches) and the next one converges, with every
/// object applied and in the inventory.
#[tokio::test]
async fn apiserver_restart_mid_apply_converges() {
    let mut cp = tokio::task::spawn_blocking(|| ControlPlane::start(StartOptions::default()))
        .await
        .unwrap()
        .unwrap();
    let info = cp.info().clone();
    let n_objects = 600;
    let mut files: Vec<(String, String)> = (0..n_objects)
        .map(|i| {
            (
                format!("deploy/cm-{i}.yaml"),
                format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-{i}\ndata:\n  i: \"{i}\"\n"),
            )
        })
        .collect();
    let list: String = (0..n_objects).map(|i| format!("- cm-{i}.yaml\n")).collect();
    files.push((
        "deploy/kustomization.yaml".into(),
        format!("resources:\n{list}"),
    ));
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let w = World::new_on(&info, "fault-restart", &[("README", "empty\n")], |_| {}).await;
    w.push(&refs, &[]).await;
    w.create_ks("app", json!({"path": "./deploy", "retryInterval": "2s"}))
        .await;
    // Restart as soon as the apply has begun.
    let cms = w.cms();
    within("apply under way", 60, || {
        let cms = cms.clone();
        async move { (!cms.list(&Default::default()).await.ok()?.items.is_empty()).then_some(()) }
    })
    .await;
    cp = tokio::task::spawn_blocking(move || {
        cp.restart_apiserver(Duration::from_secs(3)).unwrap();
        cp
    })
    .await
    .unwrap();
    let v = wait_obj(&w.ks_api(), "app", "ready after the restart", |v| {
        ready(v.get("status")).is_some_and(|r| r.0 == "True")
            && v["status"]["inventory"]["entries"]
                .as_array()
                .is_some_and(|e| e.len() == n_objects)
    })
    .await;
    assert!(v["status"]["lastAppliedRevision"].is_string());
    let names = cms.list(&Default::default()).await.unwrap().items.len();
    // kube-root-ca.crt may or may not be there (controller-manager).
    assert!(names >= n_objects, "{names} ConfigMaps");
    w.finish().await;
    drop(cp);
}

#[tokio::test]
async fn helmrelease_keep_policy_ownership_and_failures() {
    let info = ControlPlane::shared().unwrap();
    let (env, _ns) = setup(info, "fault-hr").await;
    let n = env.ns.clone();
    let api: Api<HelmRelease> = Api::namespaced(env.client.clone(), &n);
    let cms: Api<ConfigMap> = Api::namespaced(env.client.clone(), &n);
    let values = json!({"extra": true, "kept": true});
    api.create(&PostParams::default(), &hr(&n, "web", values, json!({})))
        .await
        .unwrap();
    let ready_gen = |v: &Value| {
        ready(v.get("status")).is_some_and(|r| r.0 == "True")
            && v["status"]["observedGeneration"] == v["metadata"]["generation"]
    };
    let v = wait_obj(&api, "web", "installed", ready_gen).await;
    // As helm-controller: the chart comes through the HelmChart `<namespace>-<name>`.
    assert_eq!(v["status"]["helmChart"], format!("{n}/{n}-web").as_str());
    for name in ["web-cm", "web-extra", "web-kept"] {
        assert!(cms.get_opt(name).await.unwrap().is_some(), "{name}");
    }
    // Another release takes over web-extra (Helm's ownership annotations).
    cms.patch(
        "web-extra",
        &PatchParams::default(),
        &Patch::Merge(
            &json!({"metadata": {"annotations": {"meta.helm.sh/release-name": "other"}}}),
        ),
    )
    .await
    .unwrap();
    // Upgrade without extra and kept: neither is deleted (owned elsewhere; keep policy).
    api.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(&json!({"spec": {"values": {"extra": false, "kept": false}}})),
    )
    .await
    .unwrap();
    wait_obj(&api, "web", "upgraded", ready_gen).await;
    assert!(
        cms.get_opt("web-extra").await.unwrap().is_some(),
        "owned by another release"
    );
    assert!(
        cms.get_opt("web-kept").await.unwrap().is_some(),
        "resource-policy keep"
    );

    // Render failure: nothing pruned, the last release stays, a clear condition.
    let before = api.get("web").await.unwrap();
    let history_len = |h: &HelmRelease| h.status.as_ref().map_or(0, |s| s.history.len());
    api.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(&json!({"spec": {"values": {"fail": true, "kept": true}}})),
    )
    .await
    .unwrap();
    let v = wait_obj(&api, "web", "render failure", |v| {
        v["status"]["observedGeneration"] == v["metadata"]["generation"]
            && ready(v.get("status")).is_some_and(|r| r.0 == "False")
    })
    .await;
    let r = ready(v.get("status")).unwrap();
    assert!(r.2.contains("boom from template"), "{r:?}");
    assert!(
        cms.get_opt("web-cm").await.unwrap().is_some(),
        "nothing pruned"
    );
    let now = api.get("web").await.unwrap();
    assert_eq!(
        history_len(&now),
        history_len(&before),
        "no release recorded"
    );

    // Fetch failure: the chart source announces an artifact that cannot be fetched, then
    // the values change (an upgrade that needs the chart).
    let repos: Api<GitRepository> = Api::namespaced(env.client.clone(), &n);
    break_artifact(
        &repos,
        "charts",
        "master@sha1:1111111111111111111111111111111111111111",
    )
    .await;
    // The release's HelmChart (helm-controller's `<namespace>-<name>`) fails to fetch it.
    let charts: Api<plumb_api::HelmChart> = Api::namespaced(env.client.clone(), &n);
    wait_obj(
        &charts,
        &format!("{n}-web"),
        "HelmChart fetch failure",
        |v| ready(v.get("status")).is_some_and(|r| r.0 == "False"),
    )
    .await;
    api.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(&json!({"spec": {"values": {"fail": false, "msg": "new"}}})),
    )
    .await
    .unwrap();
    let v = wait_obj(&api, "web", "fetch failure", |v| {
        v["status"]["observedGeneration"] == v["metadata"]["generation"]
            && ready(v.get("status")).is_some_and(|r| r.0 == "False" && r.2.contains("fetch"))
    })
    .await;
    let r = ready(v.get("status")).unwrap();
    assert!(!r.2.contains("boom"), "{r:?}");
    let cm = cms.get("web-cm").await.unwrap();
    assert_eq!(cm.data.unwrap()["msg"], "default", "last good state kept");

    // The source recovers: the upgrade goes through (kept is in the release again).
    request_reconcile(&repos, "charts").await;
    within("upgrade after the source recovers", 90, || {
        let cms = cms.clone();
        async move {
            let cm = cms.get("web-cm").await.ok()?;
            (cm.data?.get("msg")? == "new").then_some(())
        }
    })
    .await;
    wait_obj(&api, "web", "ready again", ready_gen).await;

    // Uninstall: the objects go, except one marked keep in the release manifest.
    api.delete("web", &DeleteParams::default()).await.unwrap();
    within("uninstalled", 60, || {
        let api = api.clone();
        async move { api.get_opt("web").await.ok()?.is_none().then_some(()) }
    })
    .await;
    assert!(
        cms.get_opt("web-cm").await.unwrap().is_none(),
        "uninstalled"
    );
    assert!(
        cms.get_opt("web-kept").await.unwrap().is_some(),
        "kept on uninstall"
    );
    let charts: Api<plumb_api::HelmChart> = Api::namespaced(env.client.clone(), &n);
    within("the release's HelmChart deleted with it", 30, || {
        let charts = charts.clone();
        let name = format!("{n}-web");
        async move { charts.get_opt(&name).await.ok()?.is_none().then_some(()) }
    })
    .await;
}

/// A release left `pending-upgrade` by a process killed mid-upgrade (its record written,
/// part of its objects applied): the next upgrade marks it failed and deletes what neither
/// the new release nor anything else keeps, including objects of the last deployed release
/// the killed upgrade never got to delete.
#[tokio::test]
async fn helmrelease_after_a_killed_upgrade_leaks_nothing() {
    use k8s_openapi::api::core::v1::Secret;
    use plumb_helm::storage;

    let info = ControlPlane::shared().unwrap();
    let (env, _ns) = setup(info, "fault-hrkill").await;
    let n = env.ns.clone();
    let api: Api<HelmRelease> = Api::namespaced(env.client.clone(), &n);
    let cms: Api<ConfigMap> = Api::namespaced(env.client.clone(), &n);
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), &n);
    api.create(
        &PostParams::default(),
        &hr(&n, "web", json!({"extra": true}), json!({})),
    )
    .await
    .unwrap();
    let ready_gen = |v: &Value| {
        ready(v.get("status")).is_some_and(|r| r.0 == "True")
            && v["status"]["observedGeneration"] == v["metadata"]["generation"]
    };
    wait_obj(&api, "web", "installed", ready_gen).await;
    assert!(cms.get_opt("web-extra").await.unwrap().is_some());

    // What a killed upgrade leaves: release v2 pending, naming web-cm and web-new (not
    // web-extra), and web-new created; web-extra not yet deleted.
    let v1 = secrets.get(&storage::secret_name("web", 1)).await.unwrap();
    let mut rel = storage::decode(&v1.data.unwrap()["release"].0).unwrap();
    rel.version = 2;
    rel.info.status = storage::status::PENDING_UPGRADE.into();
    let new_cm = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web-new\n";
    rel.manifest = rel
        .manifest
        .split("\n---")
        .filter(|d| !d.contains("web-extra"))
        .collect::<Vec<_>>()
        .join("\n---");
    rel.manifest.push_str(&format!(
        "\n---\n# Source: demo/templates/new.yaml\n{new_cm}"
    ));
    let secret: Secret = serde_json::from_value(storage::secret_object(&rel, &n).unwrap()).unwrap();
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    let created: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "web-new",
        "labels": {"app.kubernetes.io/managed-by": "Helm"},
        "annotations": {"meta.helm.sh/release-name": "web", "meta.helm.sh/release-namespace": n}}}))
    .unwrap();
    cms.create(&PostParams::default(), &created).await.unwrap();

    // The next upgrade (plumb restarted, new values) converges.
    api.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(&json!({"spec": {"values": {"extra": false, "msg": "v3"}}})),
    )
    .await
    .unwrap();
    wait_obj(&api, "web", "upgraded after the crash", ready_gen).await;
    let cm = cms.get("web-cm").await.unwrap();
    assert_eq!(cm.data.unwrap()["msg"], "v3");
    within("nothing leaked", 30, || {
        let cms = cms.clone();
        async move {
            let extra = cms.get_opt("web-extra").await.ok()?;
            let new = cms.get_opt("web-new").await.ok()?;
            (extra.is_none() && new.is_none()).then_some(())
        }
    })
    .await;
    let v2 = secrets.get(&storage::secret_name("web", 2)).await.unwrap();
    let v2 = storage::decode(&v2.data.unwrap()["release"].0).unwrap();
    assert_eq!(
        v2.info.status,
        storage::status::FAILED,
        "the interrupted release is failed"
    );
    api.delete("web", &DeleteParams::default()).await.unwrap();
}
