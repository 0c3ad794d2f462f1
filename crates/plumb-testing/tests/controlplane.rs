//! The harness itself, against the real API server: namespaces, RBAC, server-side apply.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams};
use plumb_testing::{ControlPlane, TestNamespace, wait};

#[tokio::test]
async fn apiserver_serves_ssa_and_enforces_rbac() {
    let info = ControlPlane::shared().expect("control plane");
    let ns = TestNamespace::create(info, "harness").await.unwrap();
    let admin = info.admin_client().await.unwrap();

    // The server is the real 1.20 apiserver.
    let version = admin.apiserver_version().await.unwrap();
    assert_eq!(
        (version.major.as_str(), version.minor.as_str()),
        ("1", "20")
    );

    let cms: Api<ConfigMap> = Api::namespaced(admin, ns.name());
    let cm = serde_json::json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "ssa"}, "data": {"a": "1"}
    });
    let applied = cms
        .patch(
            "ssa",
            &PatchParams::apply("plumb-test").force(),
            &Patch::Apply(&cm),
        )
        .await
        .unwrap();
    let managers: Vec<_> = applied
        .metadata
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .filter_map(|m| m.manager)
        .collect();
    assert_eq!(managers, vec!["plumb-test".to_string()]);

    // The restricted user is authenticated but has no grants.
    let restricted: Api<ConfigMap> =
        Api::namespaced(info.restricted_client().await.unwrap(), ns.name());
    match restricted.get("ssa").await {
        Err(kube::Error::Api(e)) => assert_eq!(e.code, 403, "{e:?}"),
        other => panic!("restricted user read a ConfigMap: {other:?}"),
    }
    ns.delete().await.unwrap();
}

#[tokio::test]
async fn namespace_deletion_completes_through_the_controller_manager() {
    let info = ControlPlane::shared().expect("control plane");
    let ns = TestNamespace::create(info, "harness-del").await.unwrap();
    let name = ns.name().to_string();
    let admin = info.admin_client().await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(admin.clone(), &name);
    let cm =
        serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}});
    cms.patch("x", &PatchParams::apply("plumb-test"), &Patch::Apply(&cm))
        .await
        .unwrap();
    // delete() waits for the namespace to vanish, which needs the namespace controller
    // to remove the ConfigMap first.
    ns.delete().await.unwrap();
    let gone = wait::poll("configmap gone", Duration::from_secs(5), || {
        let cms = cms.clone();
        async move { matches!(cms.get_opt("x").await, Ok(None)).then_some(()) }
    })
    .await;
    assert!(gone.is_ok());
}
