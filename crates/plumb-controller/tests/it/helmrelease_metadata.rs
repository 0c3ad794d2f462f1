//! HelmRelease `commonMetadata` against the real API server: its labels and annotations land
//! on every object of the release (hooks included: Flux 2.9 post-renders them with the
//! templates by default), and changing
//! it upgrades the release, tracked by `status.observedCommonMetadataDigest` as Flux does.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams, PostParams};
use plumb_api::HelmRelease;
use plumb_testing::ControlPlane;
use serde_json::{Value, json};

use crate::common::world::within;
use crate::common::{ready, wait_obj};
use crate::helmrelease::{hr, setup};

async fn labelled(cms: &Api<ConfigMap>, name: &str, team: &'static str) -> ConfigMap {
    let (cms, name) = (cms.clone(), name.to_string());
    within(&format!("{name} labelled team={team}"), 90, move || {
        let (cms, name) = (cms.clone(), name.clone());
        async move {
            let cm = cms.get_opt(&name).await.ok()??;
            (cm.metadata.labels.as_ref()?.get("team")? == team).then_some(cm)
        }
    })
    .await
}

#[tokio::test]
async fn common_metadata_reaches_every_object_and_a_change_upgrades() {
    let info = ControlPlane::shared().unwrap();
    let (env, ns) = setup(info, "hr-meta").await;
    let hrs: Api<HelmRelease> = Api::namespaced(env.client.clone(), &env.ns);
    let meta =
        json!({"commonMetadata": {"labels": {"team": "a"}, "annotations": {"owner": "ops"}}});
    hrs.create(
        &PostParams::default(),
        &hr(&env.ns, "web", json!({"msg": "hi"}), meta),
    )
    .await
    .unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(env.client.clone(), &env.ns);
    let cm = labelled(&cms, "web-cm", "a").await;
    assert_eq!(cm.metadata.annotations.unwrap()["owner"], "ops");
    // The post-install hook runs after the objects are applied: wait for it.
    let hook = within("post-install hook", 60, || {
        let cms = cms.clone();
        async move { cms.get_opt("web-hook").await.ok()? }
    })
    .await;
    assert_eq!(
        hook.metadata
            .labels
            .unwrap_or_default()
            .get("team")
            .map(String::as_str),
        Some("a"),
        "hooks are post-rendered with the templates (postRenderStrategy combined, the default)"
    );
    let v = wait_obj(&hrs, "web", "ready", |v: &Value| {
        ready(v.get("status")).is_some_and(|r| r.0 == "True")
            && v["status"]["observedCommonMetadataDigest"].is_string()
    })
    .await;
    let first = v["status"]["observedCommonMetadataDigest"].clone();

    // Only commonMetadata changes: still an upgrade (values and chart are the same).
    let patch = json!({"spec": {"commonMetadata": {"labels": {"team": "b"}}}});
    hrs.patch("web", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    labelled(&cms, "web-cm", "b").await;
    let v = wait_obj(&hrs, "web", "upgraded", |v: &Value| {
        v["status"]["observedCommonMetadataDigest"] != first
            && ready(v.get("status")).is_some_and(|r| r.0 == "True")
    })
    .await;
    assert_eq!(v["status"]["history"][0]["version"], 2, "{}", v["status"]);
    ns.delete().await.unwrap();
}
