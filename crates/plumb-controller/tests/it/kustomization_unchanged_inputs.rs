//! The skip of unchanged Kustomizations against the real API server: what renders although
//! the files a build read are unchanged. Each test first shows that an unrelated commit is
//! skipped (so the skip was possible), then changes one input: a `requestedAt` request, an
//! expired `spec.interval`, the data of a `postBuild.substituteFrom` ConfigMap, the data of
//! the decryption Secret. Renders are counted by the controller
//! ([`plumb_controller::kustomization::build_counts`]).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use std::path::PathBuf;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, Patch, PatchParams, PostParams};
use plumb_controller::kustomization::{BuildCounts, build_counts};
use serde_json::{Value, json};

use crate::common::world::{World, within};
use crate::common::{ready, wait_obj};
use crate::kustomization_unchanged::cm_value;

const KS: &str = "apps/a/kustomization.yaml";

fn cm(name: &str, v: &str) -> String {
    format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  v: \"{v}\"\n")
}

fn counts(w: &World) -> BuildCounts {
    build_counts(&w.ctx, &w.n, "a")
}

/// Waits until `a` is Ready with `revision` applied.
async fn applied(w: &World, revision: &str) -> Value {
    wait_obj(&w.ks_api(), "a", &format!("a at {revision}"), |v| {
        v["status"]["lastAppliedRevision"] == revision
            && ready(v.get("status")).is_some_and(|r| r.0 == "True")
    })
    .await
}

/// Commits a change to a file no build reads; returns the counts once `a` recorded it,
/// asserting it was skipped (not rendered).
async fn unrelated_commit_is_skipped(w: &World, n: usize) -> BuildCounts {
    let before = counts(w);
    let rev = w
        .push(&[("docs/readme.md", &format!("change {n}"))], &[])
        .await;
    applied(w, &rev).await;
    let after = counts(w);
    assert_eq!(after.rendered, before.rendered, "{before:?} -> {after:?}");
    assert!(after.skipped > before.skipped, "{before:?} -> {after:?}");
    after
}

/// Asserts `a` rendered exactly once since `before` and skipped nothing.
fn rendered_once_more(w: &World, before: BuildCounts) {
    let after = counts(w);
    let want = BuildCounts {
        rendered: before.rendered + 1,
        skipped: before.skipped,
    };
    assert_eq!(after, want, "{before:?} -> {after:?}");
}

/// Waits until `a` has rendered more often than `before`.
async fn renders_again(w: &World, before: BuildCounts, what: &str) {
    let ctx = w.ctx.clone();
    let n = w.n.clone();
    within(what, 60, || {
        let ctx = ctx.clone();
        let n = n.clone();
        async move { (build_counts(&ctx, &n, "a").rendered > before.rendered).then_some(()) }
    })
    .await;
}

/// Waits until `a` is Ready and the drift watch of its objects has listed them: the first
/// listing queues `a` once more, in full (drift before the watch ran is compared), so the
/// counts are settled only after that second render.
async fn settled(w: &World) {
    w.wait_ready("a").await;
    let ctx = w.ctx.clone();
    let n = w.n.clone();
    within("drift watch synced, a rendered again", 60, || {
        let ctx = ctx.clone();
        let n = n.clone();
        async move {
            let again = build_counts(&ctx, &n, "a").rendered >= 2;
            (ctx.drift.synced_kinds() >= 1 && again).then_some(())
        }
    })
    .await;
    w.wait_ready("a").await;
}

/// A repository with `docs/readme.md` (read by no build) and app `a`: `file` (a name under
/// `apps/a/`, its content) listed by `apps/a/kustomization.yaml`.
async fn world(prefix: &str, file: (&str, &str)) -> World {
    let path = format!("apps/a/{}", file.0);
    let ks = format!("resources:\n- {}\n", file.0);
    let files = [
        ("docs/readme.md", "monorepo"),
        (KS, ks.as_str()),
        (path.as_str(), file.1),
    ];
    World::new(prefix, &files).await
}

#[tokio::test]
async fn a_requested_reconcile_renders_an_unchanged_kustomization() {
    let a = cm("a", "1");
    let w = world("ks-skip-requested", ("cm.yaml", &a)).await;
    w.create_ks("a", json!({"path": "./apps/a"})).await;
    settled(&w).await;
    let before = unrelated_commit_is_skipped(&w, 1).await;
    let stamp = "2026-12-07T01:00:00Z";
    w.patch_ks(
        "a",
        json!({"metadata": {"annotations": {"reconcile.fluxcd.io/requestedAt": stamp}}}),
    )
    .await;
    wait_obj(&w.ks_api(), "a", "request handled", |v| {
        v["status"]["lastHandledReconcileAt"] == stamp
    })
    .await;
    rendered_once_more(&w, before);
    w.finish().await;
}

#[tokio::test]
async fn an_expired_interval_reapplies_an_unchanged_kustomization() {
    let a = cm("a", "1");
    let w = world("ks-skip-interval", ("cm.yaml", &a)).await;
    // Long enough for the commit below to arrive within it, short enough to expire soon.
    w.create_ks("a", json!({"path": "./apps/a", "interval": "20s"}))
        .await;
    settled(&w).await;
    let before = unrelated_commit_is_skipped(&w, 1).await;
    // No commit and no request: the interval alone re-applies, with the same revision.
    renders_again(&w, before, "re-applied at the interval").await;
    w.finish().await;
}

#[tokio::test]
async fn a_changed_substitution_configmap_renders_on_an_unrelated_commit() {
    let a = cm("a", "${v}");
    let w = world("ks-skip-subst", ("cm.yaml", &a)).await;
    let vars: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "vars", "namespace": w.n}, "data": {"v": "one"}
    }))
    .unwrap();
    let cms = w.cms();
    cms.create(&PostParams::default(), &vars).await.unwrap();
    w.create_ks(
        "a",
        json!({"path": "./apps/a",
               "postBuild": {"substituteFrom": [{"kind": "ConfigMap", "name": "vars"}]}}),
    )
    .await;
    settled(&w).await;
    cm_value(&w, "a", "one").await;
    let before = unrelated_commit_is_skipped(&w, 1).await;
    cms.patch(
        "vars",
        &PatchParams::default(),
        &Patch::Merge(&json!({"data": {"v": "two"}})),
    )
    .await
    .unwrap();
    let rev = w.push(&[("docs/readme.md", "change 2")], &[]).await;
    applied(&w, &rev).await;
    cm_value(&w, "a", "two").await;
    rendered_once_more(&w, before);
    w.finish().await;
}

fn sops_fixture(rel: &str) -> String {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../plumb-sops/tests/data");
    std::fs::read_to_string(dir.join(rel)).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_changed_decryption_secret_renders_on_an_unrelated_commit() {
    let age = sops_fixture("algorithms/age.yaml");
    let w = world("ks-skip-sops", ("age.yaml", &age)).await;
    let key = sops_fixture("keys/age.txt");
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "sops-keys", "namespace": w.n},
        "stringData": {"age.agekey": key}
    }))
    .unwrap();
    let secrets: Api<Secret> = Api::namespaced(w.client.clone(), &w.n);
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    w.create_ks(
        "a",
        json!({"path": "./apps/a",
               "decryption": {"provider": "sops", "secretRef": {"name": "sops-keys"}}}),
    )
    .await;
    settled(&w).await;
    let before = unrelated_commit_is_skipped(&w, 1).await;
    // A second key in the Secret: the key ring the build would use is another one now.
    secrets
        .patch(
            "sops-keys",
            &PatchParams::default(),
            &Patch::Merge(&json!({"stringData": {"second.agekey": key}})),
        )
        .await
        .unwrap();
    let rev = w.push(&[("docs/readme.md", "change 2")], &[]).await;
    applied(&w, &rev).await;
    rendered_once_more(&w, before);
    w.finish().await;
}
