//! Kustomization behaviour against the real API server: drift reverted in seconds,
//! suspend/resume, impersonation, strict substitution, deletion, dependsOn, staging,
//! immutable fields.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use plumb_api::GitRepository;
use serde_json::json;

use crate::common::world::{World, within};
use crate::common::{ready, wait_obj};

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
    within("drift watch listed", 15, || {
        let ctx = w.ctx.clone();
        async move { (ctx.drift.synced_kinds() >= 1).then_some(()) }
    })
    .await;

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

#[tokio::test]
async fn suspended_kustomization_applies_nothing_until_resumed() {
    let w = World::new(
        "ks-suspend",
        &[
            ("deploy/kustomization.yaml", "resources:\n- a.yaml\n"),
            ("deploy/a.yaml", CM_A),
        ],
    )
    .await;
    w.create_ks("app", json!({"path": "./deploy", "suspend": true}))
        .await;
    // The source becomes ready; a suspended Kustomization still applies nothing.
    wait_obj(
        &Api::<GitRepository>::namespaced(w.client.clone(), &w.n),
        "fleet",
        "source ready",
        |v| ready(v.get("status")).is_some_and(|r| r.0 == "True"),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await; // proving an absence
    assert!(w.cms().get_opt("a").await.unwrap().is_none(), "suspended");
    let v = serde_json::to_value(w.ks_api().get("app").await.unwrap()).unwrap();
    assert!(v["status"]["lastAppliedRevision"].is_null(), "{v:#}");
    w.patch_ks("app", json!({"spec": {"suspend": false}})).await;
    w.wait_ready("app").await;
    assert!(w.cms().get_opt("a").await.unwrap().is_some());
    w.finish().await;
}

#[tokio::test]
async fn impersonation_without_rights_names_object_and_verb() {
    let w = World::new(
        "ks-rbac",
        &[
            ("deploy/kustomization.yaml", "resources:\n- a.yaml\n"),
            ("deploy/a.yaml", CM_A),
        ],
    )
    .await;
    w.create_ks(
        "app",
        json!({"path": "./deploy", "serviceAccountName": "no-rights"}),
    )
    .await;
    let r = w
        .wait_condition("app", "denied", |r| {
            r.0 == "False" && r.2.contains("forbidden")
        })
        .await;
    assert!(
        r.2.contains("ConfigMap") && r.2.contains("/a"),
        "names the object: {r:?}"
    );
    assert!(
        r.2.contains("cannot get") || r.2.contains("cannot patch"),
        "names the verb: {r:?}"
    );
    assert!(
        r.2.contains("system:serviceaccount:"),
        "names the identity: {r:?}"
    );
    assert!(w.cms().get_opt("a").await.unwrap().is_none());
    w.finish().await;
}

#[tokio::test]
async fn strict_substitution_missing_variable_applies_and_prunes_nothing() {
    let w = World::new_with(
        "ks-strict",
        &[
            (
                "deploy/kustomization.yaml",
                "resources:\n- a.yaml\n- b.yaml\n",
            ),
            (
                "deploy/a.yaml",
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\ndata:\n  v: ${version}\n",
            ),
            (
                "deploy/b.yaml",
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: b\n",
            ),
        ],
        |c| c.strict_substitution = true,
    )
    .await;
    w.create_ks(
        "app",
        json!({"path": "./deploy", "postBuild": {"substitute": {"version": "one"}}}),
    )
    .await;
    let first = w.wait_ready("app").await;
    let applied = first["status"]["lastAppliedRevision"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(w.cms().get("a").await.unwrap().data.unwrap()["v"], "one");
    // The new revision changes a with a variable nobody sets and drops b.
    let bad = w
        .push(
            &[
                ("deploy/kustomization.yaml", "resources:\n- a.yaml\n"),
                ("deploy/a.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\ndata:\n  v: ${version}-${missing}\n"),
            ],
            &["deploy/b.yaml"],
        )
        .await;
    let v = wait_obj(&w.ks_api(), "app", "strict failure", |v| {
        v["status"]["lastAttemptedRevision"].as_str() == Some(bad.as_str())
            && ready(v.get("status")).is_some_and(|r| r.0 == "False")
    })
    .await;
    let r = ready(v.get("status")).unwrap();
    assert_eq!(r.1, "BuildFailed", "{r:?}");
    assert!(r.2.contains("missing"), "names the variable: {r:?}");
    assert_eq!(
        v["status"]["lastAppliedRevision"].as_str(),
        Some(applied.as_str())
    );
    assert_eq!(
        w.cms().get("a").await.unwrap().data.unwrap()["v"],
        "one",
        "nothing applied"
    );
    assert!(
        w.cms().get_opt("b").await.unwrap().is_some(),
        "nothing pruned"
    );
    w.finish().await;
}

#[tokio::test]
async fn deletion_prunes_only_with_prune_true() {
    let w = World::new(
        "ks-delete",
        &[
            ("one/kustomization.yaml", "resources:\n- a.yaml\n"),
            ("one/a.yaml", CM_A),
            ("two/kustomization.yaml", "resources:\n- b.yaml\n"),
            (
                "two/b.yaml",
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: b\n",
            ),
        ],
    )
    .await;
    w.create_ks("pruned", json!({"path": "./one", "prune": true}))
        .await;
    w.create_ks("kept", json!({"path": "./two", "prune": false}))
        .await;
    w.wait_ready("pruned").await;
    w.wait_ready("kept").await;
    let ks = w.ks_api();
    ks.delete("pruned", &DeleteParams::default()).await.unwrap();
    ks.delete("kept", &DeleteParams::default()).await.unwrap();
    within("both Kustomizations gone", 60, || {
        let ks = ks.clone();
        async move {
            (ks.get_opt("pruned").await.ok()?.is_none() && ks.get_opt("kept").await.ok()?.is_none())
                .then_some(())
        }
    })
    .await;
    assert!(
        w.cms().get_opt("a").await.unwrap().is_none(),
        "prune: true deletes"
    );
    assert!(
        w.cms().get_opt("b").await.unwrap().is_some(),
        "prune: false orphans"
    );
    w.finish().await;
}

#[tokio::test]
async fn depends_on_waits_for_the_dependency() {
    let w = World::new(
        "ks-deps",
        &[
            ("a/kustomization.yaml", "resources:\n- a.yaml\n"),
            ("a/a.yaml", CM_A),
            ("b/kustomization.yaml", "resources:\n- b.yaml\n"),
            (
                "b/b.yaml",
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: b\n",
            ),
        ],
    )
    .await;
    w.create_ks(
        "second",
        json!({"path": "./b", "dependsOn": [{"name": "first"}]}),
    )
    .await;
    let r = w
        .wait_condition("second", "waiting on first", |r| {
            r.1 == "DependencyNotReady"
        })
        .await;
    assert!(r.2.contains("first"), "{r:?}");
    assert!(
        w.cms().get_opt("b").await.unwrap().is_none(),
        "not applied before its dependency"
    );
    w.create_ks("first", json!({"path": "./a"})).await;
    w.wait_ready("first").await;
    w.wait_ready("second").await;
    let a = w.cms().get("a").await.unwrap();
    let b = w.cms().get("b").await.unwrap();
    assert!(
        a.metadata.creation_timestamp.unwrap().0 <= b.metadata.creation_timestamp.unwrap().0,
        "a before b"
    );
    w.finish().await;
}

#[tokio::test]
async fn crd_cr_namespace_and_objects_in_one_revision() {
    let suffix: u32 = rand_suffix();
    let group = format!("k{suffix}.plumb.test");
    let other_ns = format!("ks-made-{suffix}");
    let crd = format!(
        "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: widgets.{group}\nspec:\n  group: {group}\n  scope: Namespaced\n  names: {{plural: widgets, singular: widget, kind: Widget, listKind: WidgetList}}\n  versions:\n  - name: v1\n    served: true\n    storage: true\n    schema:\n      openAPIV3Schema:\n        type: object\n        x-kubernetes-preserve-unknown-fields: true\n"
    );
    let cr = format!(
        "apiVersion: {group}/v1\nkind: Widget\nmetadata:\n  name: w\n  namespace: {other_ns}\nspec:\n  size: 3\n"
    );
    let nsy = format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {other_ns}\n");
    let cm =
        format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n  namespace: {other_ns}\n");
    let w = World::new(
        "ks-stage",
        &[
            // Listed in the worst order: objects before their namespace and CRD.
            (
                "deploy/kustomization.yaml",
                "resources:\n- cr.yaml\n- cm.yaml\n- ns.yaml\n- crd.yaml\n",
            ),
            ("deploy/crd.yaml", &crd),
            ("deploy/cr.yaml", &cr),
            ("deploy/ns.yaml", &nsy),
            ("deploy/cm.yaml", &cm),
        ],
    )
    .await;
    w.create_ks(
        "stage",
        json!({"path": "./deploy", "targetNamespace": null}),
    )
    .await;
    let v = w.wait_ready("stage").await;
    assert_eq!(
        v["status"]["inventory"]["entries"]
            .as_array()
            .unwrap()
            .len(),
        4,
        "{v:#}"
    );
    let cms: Api<ConfigMap> = Api::namespaced(w.client.clone(), &other_ns);
    assert!(cms.get_opt("c").await.unwrap().is_some());
    // Deleting the Kustomization (prune: true) removes all of it, namespace and CRD included.
    w.ks_api()
        .delete("stage", &DeleteParams::default())
        .await
        .unwrap();
    let nss: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(w.client.clone());
    within("namespace deleted", 60, || {
        let nss = nss.clone();
        let name = other_ns.clone();
        async move {
            let n = nss.get_opt(&name).await.ok()?;
            n.is_none_or(|n| n.metadata.deletion_timestamp.is_some())
                .then_some(())
        }
    })
    .await;
    w.finish().await;
}

fn rand_suffix() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos()
        % 1_000_000
}

#[tokio::test]
async fn immutable_field_recreated_with_force() {
    let frozen = |v: &str| {
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: frozen\nimmutable: true\ndata:\n  v: \"{v}\"\n"
        )
    };
    let w = World::new(
        "ks-force",
        &[
            ("deploy/kustomization.yaml", "resources:\n- f.yaml\n"),
            ("deploy/f.yaml", &frozen("1")),
        ],
    )
    .await;
    w.create_ks("app", json!({"path": "./deploy"})).await;
    w.wait_ready("app").await;
    let uid = w.cms().get("frozen").await.unwrap().metadata.uid.unwrap();
    let rev = w.push(&[("deploy/f.yaml", &frozen("2"))], &[]).await;
    let r = w
        .wait_condition("app", "immutable error", |r| {
            r.0 == "False" && r.2.contains("immutable")
        })
        .await;
    assert!(r.2.contains("ConfigMap") && r.2.contains("frozen"), "{r:?}");
    w.patch_ks("app", json!({"spec": {"force": true}})).await;
    let v = w.wait_ready("app").await;
    assert_eq!(
        v["status"]["lastAppliedRevision"].as_str(),
        Some(rev.as_str())
    );
    let now = w.cms().get("frozen").await.unwrap();
    assert_eq!(now.data.unwrap()["v"], "2");
    assert_ne!(now.metadata.uid.unwrap(), uid, "recreated");
    w.finish().await;
}

#[tokio::test]
async fn depends_on_another_kind() {
    let w = World::new(
        "ks-xkind",
        &[
            ("deploy/kustomization.yaml", "resources:\n- a.yaml\n"),
            ("deploy/a.yaml", CM_A),
        ],
    )
    .await;
    // The dependency: a GitRepository plumb leaves alone (suspended) whose status the
    // test writes, standing in for any kind with a Ready condition.
    let gates: Api<GitRepository> = Api::namespaced(w.client.clone(), &w.n);
    let gate: GitRepository = serde_json::from_value(json!({
        "apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository",
        "metadata": {"name": "gate", "namespace": w.n},
        "spec": {"url": "http://127.0.0.1:1/none", "interval": "1h", "suspend": true}
    }))
    .unwrap();
    gates.create(&PostParams::default(), &gate).await.unwrap();
    w.create_ks(
        "app",
        json!({"path": "./deploy", "dependsOn": [
            {"name": "gate", "kind": "GitRepository", "apiVersion": "source.toolkit.fluxcd.io/v1"}]}),
    )
    .await;
    let r = w
        .wait_condition("app", "waiting on the gate", |r| {
            r.1 == "DependencyNotReady"
        })
        .await;
    assert!(
        r.2.contains("GitRepository/") && r.2.contains("/gate"),
        "{r:?}"
    );

    let set_ready = |status: &str, observed: i64| {
        json!({"status": {"observedGeneration": observed, "conditions": [{
            "type": "Ready", "status": status, "reason": "Test", "message": "set by the test",
            "lastTransitionTime": "2026-01-01T00:00:00Z", "observedGeneration": observed}]}})
    };
    // Ready, but for an older generation: still waiting.
    gates
        .patch_status(
            "gate",
            &PatchParams::default(),
            &Patch::Merge(&set_ready("True", 0)),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await; // proving an absence
    assert!(
        w.cms().get_opt("a").await.unwrap().is_none(),
        "stale Ready is not ready"
    );
    gates
        .patch_status(
            "gate",
            &PatchParams::default(),
            &Patch::Merge(&set_ready("True", 1)),
        )
        .await
        .unwrap();
    w.wait_ready("app").await;
    assert!(w.cms().get_opt("a").await.unwrap().is_some());

    // A kind without a known apiVersion is refused clearly.
    w.create_ks(
        "bad",
        json!({"path": "./deploy", "dependsOn": [{"name": "x", "kind": "Widget"}]}),
    )
    .await;
    let r = w
        .wait_condition("bad", "missing apiVersion", |r| {
            r.0 == "False" && r.2.contains("apiVersion")
        })
        .await;
    assert!(r.2.contains("Widget"), "{r:?}");
    w.finish().await;
}
