//! The skip of unchanged Kustomizations (beyond Flux), against the real API server: two
//! Kustomizations on one GitRepository; a commit touching only app A re-applies A while B
//! records the new revision without rendering; a change B reaches outside its path (a shared
//! base) or a new file in a directory B lists renders B again; the opt-out annotation
//! restores Flux's full reconcile. Renders are counted by the controller
//! ([`plumb_controller::kustomization::build_counts`]), not timed.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use kube::api::{Patch, PatchParams};
use plumb_controller::kustomization::{BuildCounts, build_counts};
use serde_json::{Value, json};

use crate::common::world::{World, within};
use crate::common::{ready, wait_obj};

fn cm(name: &str, v: &str) -> String {
    format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  v: \"{v}\"\n")
}

/// Waits until `name` is Ready with `revision` applied; returns its status.
async fn applied(w: &World, name: &str, revision: &str) -> Value {
    let v = wait_obj(&w.ks_api(), name, &format!("{name} at {revision}"), |v| {
        v["status"]["lastAppliedRevision"] == revision
            && ready(v.get("status")).is_some_and(|r| r.0 == "True")
    })
    .await;
    v["status"].clone()
}

pub(crate) async fn cm_value(w: &World, name: &str, want: &str) {
    let api = w.cms();
    within(&format!("ConfigMap {name} = {want}"), 60, || {
        let api = api.clone();
        async move {
            let c = api.get_opt(name).await.ok()??;
            (c.data?.get("v")? == want).then_some(())
        }
    })
    .await;
}

fn counts(w: &World, name: &str) -> BuildCounts {
    build_counts(&w.ctx, &w.n, name)
}

#[tokio::test]
async fn unchanged_kustomizations_record_new_revisions_without_rendering() {
    let a = cm("a", "1");
    let b = cm("b", "1");
    let shared = cm("shared", "1");
    let w = World::new(
        "ks-unchanged",
        &[
            ("apps/a/kustomization.yaml", "resources:\n- cm.yaml\n"),
            ("apps/a/cm.yaml", &a),
            // B is a plain directory (listed) whose sub-kustomization reaches a shared base.
            ("apps/b/cm.yaml", &b),
            (
                "apps/b/via/kustomization.yaml",
                "resources:\n- ../../../base\n",
            ),
            ("base/kustomization.yaml", "resources:\n- cm.yaml\n"),
            ("base/cm.yaml", &shared),
        ],
    )
    .await;
    w.create_ks("a", json!({"path": "./apps/a"})).await;
    w.create_ks("b", json!({"path": "./apps/b"})).await;
    w.wait_ready("a").await;
    w.wait_ready("b").await;
    cm_value(&w, "shared", "1").await;
    // The drift watch of ConfigMaps has listed them: no initial event reads as drift later.
    let ctx = w.ctx.clone();
    within("drift watch synced", 30, || {
        let ctx = ctx.clone();
        async move { (ctx.drift.synced_kinds() >= 1).then_some(()) }
    })
    .await;

    // A commit touching only A: A renders and applies, B records the revision only.
    let (a0, b0) = (counts(&w, "a"), counts(&w, "b"));
    let rev = w.push(&[("apps/a/cm.yaml", &cm("a", "2"))], &[]).await;
    cm_value(&w, "a", "2").await;
    applied(&w, "a", &rev).await;
    let status = applied(&w, "b", &rev).await;
    assert_eq!(status["lastAttemptedRevision"], rev);
    assert_eq!(
        ready(Some(&status)).unwrap().2,
        format!("Applied revision: {rev}")
    );
    let (a1, b1) = (counts(&w, "a"), counts(&w, "b"));
    assert!(a1.rendered > a0.rendered, "A rendered: {a0:?} -> {a1:?}");
    assert_eq!(b1.rendered, b0.rendered, "B rendered: {b0:?} -> {b1:?}");
    assert!(b1.skipped > b0.skipped, "B skipped: {b0:?} -> {b1:?}");

    // A change B reaches outside its path (the shared base) renders B; A is skipped.
    let rev = w.push(&[("base/cm.yaml", &cm("shared", "2"))], &[]).await;
    cm_value(&w, "shared", "2").await;
    applied(&w, "b", &rev).await;
    applied(&w, "a", &rev).await;
    let (a2, b2) = (counts(&w, "a"), counts(&w, "b"));
    assert!(b2.rendered > b1.rendered, "B rendered: {b1:?} -> {b2:?}");
    assert_eq!(a2.rendered, a1.rendered, "A rendered: {a1:?} -> {a2:?}");
    assert!(a2.skipped > a1.skipped, "A skipped: {a1:?} -> {a2:?}");

    // A new file in the directory B lists renders B (and applies the new object).
    let rev = w.push(&[("apps/b/new.yaml", &cm("b-new", "1"))], &[]).await;
    cm_value(&w, "b-new", "1").await;
    applied(&w, "b", &rev).await;
    let b3 = counts(&w, "b");
    assert!(b3.rendered > b2.rendered, "B rendered: {b2:?} -> {b3:?}");

    // Opted out: B renders on a commit that does not touch it, as Flux does.
    w.ks_api()
        .patch(
            "b",
            &PatchParams::default(),
            &Patch::Merge(&json!({"metadata": {"annotations": {
                plumb_api::consts::annotation::SKIP_UNCHANGED: "disabled"}}})),
        )
        .await
        .unwrap();
    let b3 = counts(&w, "b");
    let rev = w.push(&[("apps/a/cm.yaml", &cm("a", "3"))], &[]).await;
    cm_value(&w, "a", "3").await;
    applied(&w, "b", &rev).await;
    let b4 = counts(&w, "b");
    assert!(b4.rendered > b3.rendered, "B rendered: {b3:?} -> {b4:?}");
    assert_eq!(b4.skipped, b3.skipped, "B skipped: {b3:?} -> {b4:?}");
    w.finish().await;
}
