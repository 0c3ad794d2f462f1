//! Flux 2.9 Kustomization fields against the real API server: `spec.ignore`,
//! `buildMetadata`, `postBuild.substituteStrategy` and `substituteFrom` (optional and
//! required), `ignoreMissingComponents`, the spec-level transforms, the deletion policies
//! and the prune budget.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use crate::common::world::{World, within};

fn cm(name: &str, data: &[(&str, &str)]) -> String {
    let mut s = format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n");
    for (k, v) in data {
        s.push_str(&format!("  {k}: \"{v}\"\n"));
    }
    s
}

async fn data(cms: &Api<ConfigMap>, name: &str, key: &str) -> Option<String> {
    cms.get_opt(name).await.ok()??.data?.get(key).cloned()
}

fn editor() -> PatchParams {
    PatchParams {
        field_manager: Some("kubectl-edit".into()),
        ..Default::default()
    }
}

async fn wait_data(cms: &Api<ConfigMap>, name: &str, key: &str, want: &str, secs: u64) {
    within(&format!("{name}.{key} = {want}"), secs, || async {
        (data(cms, name, key).await.as_deref() == Some(want)).then_some(())
    })
    .await
}

#[tokio::test]
async fn ignore_keeps_the_cluster_value_of_ignored_paths_only() {
    let files = |v: &str| {
        [
            (
                "deploy/kustomization.yaml",
                "resources:\n- a.yaml\n- b.yaml\n".to_string(),
            ),
            (
                "deploy/a.yaml",
                cm("a", &[("managed", v), ("ignored", "original")]),
            ),
            (
                "deploy/b.yaml",
                cm("b", &[("managed", v), ("ignored", "original")]),
            ),
        ]
    };
    let f1 = files("v1");
    let w = World::new(
        "ks-ignore",
        &f1.iter().map(|(p, t)| (*p, t.as_str())).collect::<Vec<_>>(),
    )
    .await;
    // The rule selects ConfigMap a only (name is an anchored regex: "b" is not "a").
    w.create_ks(
        "app",
        json!({"path": "./deploy", "ignore": [{"paths": ["/data/ignored"],
               "target": {"kind": "ConfigMap", "name": "a"}}]}),
    )
    .await;
    w.wait_ready("app").await;
    let cms = w.cms();
    assert_eq!(
        data(&cms, "a", "ignored").await.as_deref(),
        Some("original")
    );

    // A `kubectl edit` of the ignored field (an Update writer) stays; of b, it is reverted.
    let edit = json!({"data": {"ignored": "edited"}});
    cms.patch("a", &editor(), &Patch::Merge(&edit))
        .await
        .unwrap();
    cms.patch("b", &editor(), &Patch::Merge(&edit))
        .await
        .unwrap();
    wait_data(&cms, "b", "ignored", "original", 20).await;
    assert_eq!(data(&cms, "a", "ignored").await.as_deref(), Some("edited"));

    // A new revision updates the managed field and still keeps the ignored one.
    let f2 = files("v2");
    let rev = w
        .push(
            &f2.iter().map(|(p, t)| (*p, t.as_str())).collect::<Vec<_>>(),
            &[],
        )
        .await;
    crate::common::wait_obj(&w.ks_api(), "app", "v2 applied", |v| {
        v["status"]["lastAppliedRevision"] == rev.as_str()
    })
    .await;
    wait_data(&cms, "a", "managed", "v2", 20).await;
    assert_eq!(data(&cms, "a", "ignored").await.as_deref(), Some("edited"));

    // A non-ignored field of the same object is still corrected.
    let tamper = json!({"data": {"managed": "tampered"}});
    cms.patch("a", &editor(), &Patch::Merge(&tamper))
        .await
        .unwrap();
    wait_data(&cms, "a", "managed", "v2", 20).await;
    assert_eq!(data(&cms, "a", "ignored").await.as_deref(), Some("edited"));

    // Another server-side apply manager takes the field: plumb releases it.
    let other = json!({"apiVersion": "v1", "kind": "ConfigMap",
                       "metadata": {"name": "a"}, "data": {"ignored": "by-hpa"}});
    let pp = PatchParams::apply("hpa-like").force();
    cms.patch("a", &pp, &Patch::Apply(&other)).await.unwrap();
    crate::common::request_reconcile(&w.ks_api(), "app").await;
    within("plumb released data.ignored", 20, || async {
        let a = cms.get("a").await.ok()?;
        let ours = a
            .metadata
            .managed_fields?
            .into_iter()
            .find(|m| m.manager.as_deref() == Some("kustomize-controller"))?;
        let fields = serde_json::to_string(&ours.fields_v1?).ok()?;
        (!fields.contains("f:ignored") && fields.contains("f:managed")).then_some(())
    })
    .await;
    assert_eq!(data(&cms, "a", "ignored").await.as_deref(), Some("by-hpa"));
    w.finish().await;
}

#[tokio::test]
async fn build_metadata_and_substitute_strategy() {
    let w = World::new(
        "ks-bm",
        &[
            ("deploy/kustomization.yaml", "resources:\n- a.yaml\n"),
            ("deploy/a.yaml", &cm("a", &[("v", "${missing:=dflt}")])),
        ],
    )
    .await;
    // No variable defined and the default strategy (WithVariables): no substitution.
    w.create_ks(
        "plain",
        json!({"path": "./deploy", "postBuild": {}, "buildMetadata": ["originAnnotations"]}),
    )
    .await;
    // Always: substitution runs with no variable, so the default applies. nameSuffix keeps
    // the two apart.
    w.create_ks(
        "always",
        json!({"path": "./deploy", "nameSuffix": "-always",
               "postBuild": {"substituteStrategy": "Always"}}),
    )
    .await;
    w.wait_ready("plain").await;
    w.wait_ready("always").await;
    let cms = w.cms();
    assert_eq!(
        data(&cms, "a", "v").await.as_deref(),
        Some("${missing:=dflt}")
    );
    assert_eq!(data(&cms, "a-always", "v").await.as_deref(), Some("dflt"));
    let a = cms.get("a").await.unwrap();
    let origin = a.metadata.annotations.unwrap()["config.kubernetes.io/origin"].clone();
    assert!(origin.contains("path: a.yaml"), "{origin}");
    let always = cms.get("a-always").await.unwrap();
    assert!(
        !always
            .metadata
            .annotations
            .unwrap_or_default()
            .contains_key("config.kubernetes.io/origin"),
        "no buildMetadata, no origin"
    );
    w.finish().await;
}

const COMPONENT: &str = "apiVersion: kustomize.config.k8s.io/v1alpha1\nkind: Component\ncommonLabels:\n  comp: \"on\"\n";
const DEPLOY: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  selector:\n    matchLabels:\n      app: web\n  template:\n    metadata:\n      labels:\n        app: web\n    spec:\n      containers:\n      - name: web\n        image: nginx:1.0\n";

#[tokio::test]
async fn missing_components_fail_unless_ignored() {
    let w = World::new(
        "ks-comp",
        &[
            ("app/kustomization.yaml", "resources:\n- a.yaml\n"),
            ("app/a.yaml", &cm("a", &[("k", "v")])),
            ("comp/kustomization.yaml", COMPONENT),
        ],
    )
    .await;
    w.create_ks(
        "strict",
        json!({"path": "./app", "components": ["../comp", "../gone"]}),
    )
    .await;
    let (status, reason, message) = w
        .wait_condition("strict", "strict fails to build", |r| r.1 == "BuildFailed")
        .await;
    assert_eq!((status.as_str(), reason.as_str()), ("False", "BuildFailed"));
    assert!(message.contains("gone"), "{message}");
    assert!(
        w.cms().get_opt("a").await.unwrap().is_none(),
        "nothing applied"
    );

    w.create_ks(
        "lenient",
        json!({"path": "./app", "components": ["../comp", "../gone"],
               "ignoreMissingComponents": true}),
    )
    .await;
    w.wait_ready("lenient").await;
    let a = w.cms().get("a").await.unwrap();
    assert_eq!(a.metadata.labels.unwrap()["comp"], "on");
    w.finish().await;
}

#[tokio::test]
async fn spec_level_transforms_reach_the_cluster() {
    let w = World::new(
        "ks-xform",
        &[
            ("app/kustomization.yaml", "resources:\n- web.yaml\n"),
            ("app/web.yaml", DEPLOY),
            ("comp/kustomization.yaml", COMPONENT),
        ],
    )
    .await;
    w.create_ks(
        "app",
        json!({"path": "./app", "nameSuffix": "-sfx", "components": ["../comp"],
               "images": [{"name": "nginx", "newName": "registry.local/nginx", "newTag": "2.0"}],
               "commonMetadata": {"labels": {"team": "blue"}, "annotations": {"owner": "ops"}}}),
    )
    .await;
    w.wait_ready("app").await;
    let deploys: Api<Deployment> = Api::namespaced(w.client.clone(), &w.n);
    let d = deploys.get("web-sfx").await.unwrap();
    let labels = d.metadata.labels.clone().unwrap();
    assert_eq!(labels["team"], "blue");
    assert_eq!(labels["comp"], "on");
    assert_eq!(d.metadata.annotations.clone().unwrap()["owner"], "ops");
    let spec = d.spec.unwrap();
    let image = spec.template.spec.unwrap().containers[0].image.clone();
    assert_eq!(image.as_deref(), Some("registry.local/nginx:2.0"));
    assert!(
        deploys.get_opt("web").await.unwrap().is_none(),
        "the suffix renames"
    );
    w.finish().await;
}

#[tokio::test]
async fn substitute_from_optional_tolerates_absence_required_waits() {
    let w = World::new(
        "ks-subst",
        &[
            ("deploy/kustomization.yaml", "resources:\n- a.yaml\n"),
            (
                "deploy/a.yaml",
                &cm("a", &[("x", "${x}"), ("y", "${y:=none}")]),
            ),
        ],
    )
    .await;
    w.create_ks(
        "app",
        json!({"path": "./deploy", "retryInterval": "2s", "postBuild": {
            "substitute": {"x": "inline"},
            "substituteFrom": [
                {"kind": "ConfigMap", "name": "absent", "optional": true},
                {"kind": "Secret", "name": "svars"}]}}),
    )
    .await;
    let (_, reason, message) = w
        .wait_condition("app", "required Secret missing", |r| r.1 == "BuildFailed")
        .await;
    assert_eq!(reason, "BuildFailed");
    assert!(
        message.contains(r#"substitute from 'Secret/svars' error: secrets "svars" not found"#),
        "{message}"
    );
    assert!(
        w.cms().get_opt("a").await.unwrap().is_none(),
        "nothing applied"
    );

    // The Secret appears: applied; the inline variable wins over the Secret's.
    let s: Secret = serde_json::from_value(json!({"metadata": {"name": "svars"},
        "stringData": {"x": "from-secret", "y": "from-secret"}}))
    .unwrap();
    Api::<Secret>::namespaced(w.client.clone(), &w.n)
        .create(&PostParams::default(), &s)
        .await
        .unwrap();
    w.wait_ready("app").await;
    let cms = w.cms();
    assert_eq!(data(&cms, "a", "x").await.as_deref(), Some("inline"));
    assert_eq!(data(&cms, "a", "y").await.as_deref(), Some("from-secret"));
    w.finish().await;
}

/// A ConfigMap holding a finalizer, so its deletion stays pending until released.
const HELD: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: held\n  finalizers:\n  - test.plumb.dev/hold\ndata:\n  k: v\n";

async fn gone<K>(api: &Api<K>, name: &str) -> bool
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.get_opt(name).await.unwrap().is_none()
}

async fn release(cms: &Api<ConfigMap>, name: &str) {
    let p = json!({"metadata": {"finalizers": null}});
    let _ = cms
        .patch(name, &PatchParams::default(), &Patch::Merge(&p))
        .await;
}

#[tokio::test]
async fn deletion_policies_delete_orphan_and_wait_for_termination() {
    let w = World::new(
        "ks-delpol",
        &[
            ("del/kustomization.yaml", "resources:\n- a.yaml\n"),
            ("del/a.yaml", &cm("del", &[("k", "v")])),
            ("orphan/kustomization.yaml", "resources:\n- a.yaml\n"),
            ("orphan/a.yaml", &cm("orphan", &[("k", "v")])),
            ("held/kustomization.yaml", "resources:\n- held.yaml\n"),
            ("held/held.yaml", HELD),
        ],
    )
    .await;
    // Delete overrides prune: false; Orphan overrides prune: true.
    w.create_ks(
        "del",
        json!({"path": "./del", "prune": false, "deletionPolicy": "Delete"}),
    )
    .await;
    w.create_ks(
        "orphan",
        json!({"path": "./orphan", "prune": true, "deletionPolicy": "Orphan"}),
    )
    .await;
    w.create_ks(
        "wait",
        json!({"path": "./held", "deletionPolicy": "WaitForTermination", "timeout": "2m"}),
    )
    .await;
    for k in ["del", "orphan", "wait"] {
        w.wait_ready(k).await;
    }
    let ks = w.ks_api();
    let cms = w.cms();
    for k in ["del", "orphan", "wait"] {
        ks.delete(k, &DeleteParams::default()).await.unwrap();
    }
    within("del and orphan gone", 30, || async {
        (gone(&ks, "del").await && gone(&ks, "orphan").await).then_some(())
    })
    .await;
    assert!(gone(&cms, "del").await, "Delete deletes with prune: false");
    assert!(!gone(&cms, "orphan").await, "Orphan keeps with prune: true");

    // WaitForTermination: the Kustomization stays while its object terminates.
    within("held is terminating", 20, || async {
        cms.get("held")
            .await
            .ok()?
            .metadata
            .deletion_timestamp
            .map(|_| ())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await; // proving an absence
    assert!(
        !gone(&ks, "wait").await,
        "still waiting for the termination"
    );
    release(&cms, "held").await;
    within("wait gone once held is", 30, || async {
        (gone(&cms, "held").await && gone(&ks, "wait").await).then_some(())
    })
    .await;
    w.finish().await;
}

#[tokio::test]
async fn delete_policy_does_not_wait_for_termination() {
    let w = World::new(
        "ks-delnowait",
        &[
            ("held/kustomization.yaml", "resources:\n- held.yaml\n"),
            ("held/held.yaml", HELD),
        ],
    )
    .await;
    w.create_ks(
        "del",
        json!({"path": "./held", "deletionPolicy": "Delete", "timeout": "2m"}),
    )
    .await;
    w.wait_ready("del").await;
    let (ks, cms) = (w.ks_api(), w.cms());
    ks.delete("del", &DeleteParams::default()).await.unwrap();
    within("del gone while held terminates", 30, || async {
        gone(&ks, "del").await.then_some(())
    })
    .await;
    let held = cms.get("held").await.unwrap();
    assert!(
        held.metadata.deletion_timestamp.is_some(),
        "deleted, still held"
    );
    release(&cms, "held").await;
    w.finish().await;
}

fn many(n: usize) -> Vec<(String, String)> {
    let mut files = vec![(
        "deploy/kustomization.yaml".to_string(),
        format!(
            "resources:\n{}",
            (0..n).map(|i| format!("- c{i}.yaml\n")).collect::<String>()
        ),
    )];
    files.extend((0..n).map(|i| {
        (
            format!("deploy/c{i}.yaml"),
            cm(&format!("c{i}"), &[("k", "v")]),
        )
    }));
    files
}

fn refs(files: &[(String, String)]) -> Vec<(&str, &str)> {
    files
        .iter()
        .map(|(p, t)| (p.as_str(), t.as_str()))
        .collect()
}

#[tokio::test]
async fn prune_budget_refuses_a_mass_deletion_until_disabled() {
    let five = many(5);
    let w = World::new("ks-budget", &refs(&five)).await;
    w.create_ks("app", json!({"path": "./deploy", "retryInterval": "2s"}))
        .await;
    w.wait_ready("app").await;
    // A commit that drops 4 of 5 objects: 80% > the default budget of 50%.
    let one = many(1);
    let removed: Vec<String> = (1..5).map(|i| format!("deploy/c{i}.yaml")).collect();
    w.push(
        &refs(&one),
        &removed.iter().map(String::as_str).collect::<Vec<_>>(),
    )
    .await;
    let (_, reason, message) = w
        .wait_condition("app", "prune refused", |r| r.1 == "PruneFailed")
        .await;
    assert_eq!(reason, "PruneFailed");
    assert!(
        message.contains("refusing to prune 4 of 5 objects (80% > budget 50%)"),
        "{message}"
    );
    let cms = w.cms();
    for i in 0..5 {
        assert!(!gone(&cms, &format!("c{i}")).await, "c{i} kept");
    }
    let v = serde_json::to_value(w.ks_api().get("app").await.unwrap()).unwrap();
    assert_eq!(
        v["status"]["inventory"]["entries"].as_array().map(Vec::len),
        Some(5),
        "the old inventory stays: {v:#}"
    );
    // The annotation lets the next pass prune (a stalled object retries at its interval,
    // so ask for the pass now, as `plumb reconcile ks` does).
    let p = json!({"metadata": {"annotations": {"plumb.dev/prune-budget": "disabled"}}});
    w.ks_api()
        .patch("app", &PatchParams::default(), &Patch::Merge(&p))
        .await
        .unwrap();
    crate::common::request_reconcile(&w.ks_api(), "app").await;
    within("pruned once disabled", 30, || async {
        let mut all = true;
        for i in 1..5 {
            all &= gone(&cms, &format!("c{i}")).await;
        }
        all.then_some(())
    })
    .await;
    assert!(!gone(&cms, "c0").await);
    let _: Value = w.wait_ready("app").await;
    w.finish().await;
}

#[tokio::test]
async fn prune_budget_follows_the_configured_share() {
    let five = many(5);
    // --prune-budget 0.9: dropping 4 of 5 (80%) is within it.
    let w = World::new_with("ks-budget9", &refs(&five), |c| c.prune_budget = 0.9).await;
    w.create_ks("app", json!({"path": "./deploy"})).await;
    w.wait_ready("app").await;
    let one = many(1);
    let removed: Vec<String> = (1..5).map(|i| format!("deploy/c{i}.yaml")).collect();
    w.push(
        &refs(&one),
        &removed.iter().map(String::as_str).collect::<Vec<_>>(),
    )
    .await;
    let cms = w.cms();
    within("pruned within the budget", 30, || async {
        gone(&cms, "c4").await.then_some(())
    })
    .await;
    w.finish().await;
}
