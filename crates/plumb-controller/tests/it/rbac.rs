//! plumb's controllers under the operator chart's own least-privilege RBAC (issue #14 item
//! 14): the chart's ServiceAccount, ClusterRole, Role and bindings are rendered with plumb's
//! Helm engine (default values: no cluster-admin) and applied to the real API server; the
//! controllers then run with a token of that ServiceAccount, not as an admin. A verb the
//! controllers need and the chart does not grant makes this test fail (including
//! `serviceaccounts/token` create for `spec.decryption.serviceAccountName`).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{ConfigMap, ServiceAccount};
use kube::api::{Api, DeleteParams, DynamicObject, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use plumb_api::Kustomization;
use plumb_ssa::{Applier, ApplyItem, ApplyOptions};
use plumb_testing::git::{GitHttpServer, HttpAuth, TestRepo};
use plumb_testing::{ControlPlane, ControlPlaneInfo, TestNamespace, wait};
use serde_json::{Value, json};

use crate::common::{admin_config, install_crds, ready, start_plumb_as, wait_obj};

const RBAC_KINDS: &[&str] = &[
    "ServiceAccount",
    "ClusterRole",
    "ClusterRoleBinding",
    "Role",
    "RoleBinding",
];

/// The chart's RBAC objects for release `release` in namespace `ns`, default values.
pub(crate) fn chart_rbac(release: &str, ns: &str) -> Vec<Value> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/charts/plumb");
    let chart = plumb_helm::load_dir(&dir).unwrap();
    let opts = plumb_helm::RenderOptions {
        release: plumb_helm::ReleaseInfo {
            name: release.into(),
            namespace: ns.into(),
            revision: 1,
            is_install: true,
        },
        capabilities: plumb_helm::Capabilities::default(),
        lookup: None,
        skip_schema_validation: false,
    };
    let values = plumb_helm::parse_values("{}").unwrap();
    let rendered = plumb_helm::render(&chart, &values, &opts).unwrap();
    let objects: Vec<Value> = rendered
        .manifests
        .iter()
        .filter(|m| RBAC_KINDS.contains(&m.kind.as_str()))
        .map(|m| plumb_helm::parse_values(&m.content).unwrap().to_json())
        .collect();
    let kinds: Vec<&str> = objects.iter().filter_map(|o| o["kind"].as_str()).collect();
    for k in RBAC_KINDS {
        assert!(kinds.contains(k), "the chart renders no {k}: {kinds:?}");
    }
    assert!(
        !objects
            .iter()
            .any(|o| o["roleRef"]["name"] == "cluster-admin"),
        "the default values bind cluster-admin"
    );
    objects
}

/// A kube config authenticated as ServiceAccount `ns/sa` (a TokenRequest token, valid for
/// an hour, in a file that lives as long as the returned directory).
pub(crate) async fn service_account_config(
    info: &ControlPlaneInfo,
    admin: &kube::Client,
    ns: &str,
    sa: &str,
) -> (kube::Config, tempfile::TempDir) {
    let req = TokenRequest {
        spec: TokenRequestSpec {
            expiration_seconds: Some(3600),
            ..Default::default()
        },
        ..Default::default()
    };
    let token = Api::<ServiceAccount>::namespaced(admin.clone(), ns)
        .create_token_request(sa, &PostParams::default(), &req)
        .await
        .unwrap()
        .status
        .unwrap()
        .token;
    let tmp = tempfile::tempdir().unwrap();
    let token_file = tmp.path().join("token");
    std::fs::write(&token_file, token).unwrap();
    (config_with_token(info, &token_file).await, tmp)
}

/// A kube config of the admin kubeconfig's cluster, authenticated by `token_file` alone.
pub(crate) async fn config_with_token(info: &ControlPlaneInfo, token_file: &Path) -> kube::Config {
    let mut cfg = admin_config(info).await;
    cfg.auth_info = kube::config::AuthInfo {
        token_file: Some(token_file.display().to_string()),
        ..Default::default()
    };
    cfg
}

fn manifests(v: &str) -> Vec<(&'static str, String)> {
    vec![
        (
            "deploy/kustomization.yaml",
            "resources:\n- cm.yaml\n".to_string(),
        ),
        (
            "deploy/cm.yaml",
            format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: app\ndata:\n  v: \"{v}\"\n"
            ),
        ),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn controllers_run_under_the_charts_rbac() {
    let info = ControlPlane::shared().unwrap();
    let admin = info.admin_client().await.unwrap();
    install_crds(&admin).await;
    let ns = TestNamespace::create(info, "chart-rbac").await.unwrap();
    let n = ns.name().to_string();
    let pp = PostParams::default();

    // The chart's RBAC, release named after the namespace so cluster objects do not clash.
    let objects = chart_rbac(&n, &n);
    let (cluster_scoped, cfg, tmp) = install_chart_rbac(info, &admin, &n, objects).await;
    let as_sa = kube::Client::try_from(cfg.clone()).unwrap();
    // Not an admin: it cannot write a ConfigMap itself.
    let direct = Api::<ConfigMap>::namespaced(as_sa.clone(), &n)
        .create(
            &pp,
            &serde_json::from_value(json!({"metadata": {"name": "x"}})).unwrap(),
        )
        .await;
    assert!(
        matches!(&direct, Err(kube::Error::Api(e)) if e.code == 403),
        "{direct:?}"
    );

    // A tenant the Kustomization applies as, allowed ConfigMaps in its namespace.
    for obj in [
        json!({"apiVersion": "v1", "kind": "ServiceAccount",
               "metadata": {"name": "tenant", "namespace": n}}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
               "metadata": {"name": "tenant", "namespace": n},
               "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["*"]}]}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
               "metadata": {"name": "tenant", "namespace": n},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "tenant"},
               "subjects": [{"kind": "ServiceAccount", "name": "tenant", "namespace": n}]}),
    ] {
        Applier::new(admin.clone(), "plumb-test", 1)
            .apply_all(vec![ApplyItem::new(obj)], &ApplyOptions::default())
            .await
            .unwrap();
    }

    // spec.decryption.serviceAccountName: the chart lets plumb request a token for a tenant's
    // account with STS's audience (object-level workload identity for KMS).
    let sts_token = TokenRequest {
        spec: TokenRequestSpec {
            audiences: vec!["sts.amazonaws.com".into()],
            ..Default::default()
        },
        ..Default::default()
    };
    let minted = Api::<ServiceAccount>::namespaced(as_sa.clone(), &n)
        .create_token_request("tenant", &pp, &sts_token)
        .await
        .unwrap();
    assert!(minted.status.is_some_and(|s| !s.token.is_empty()));

    let repo = TestRepo::init(&tmp.path().join("repos"), "fleet");
    let files = manifests("1");
    let refs: Vec<(&str, &str)> = files.iter().map(|(p, c)| (*p, c.as_str())).collect();
    repo.commit(&refs, "initial");
    let root = tmp.path().join("repos");
    let server = std::thread::spawn(move || GitHttpServer::start(&root, HttpAuth::Anonymous))
        .join()
        .unwrap();
    start_plumb_as(cfg, &n, &tmp.path().join("storage"), |_| {}).await;

    let git = ApiResource::from_gvk(&GroupVersionKind::gvk(
        "source.toolkit.fluxcd.io",
        "v1",
        "GitRepository",
    ));
    Api::<DynamicObject>::namespaced_with(admin.clone(), &n, &git)
        .create(
            &pp,
            &serde_json::from_value(json!({
                "apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository",
                "metadata": {"name": "fleet", "namespace": n},
                "spec": {"url": server.url("fleet"), "interval": "1m", "ref": {"branch": "master"}}
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    let ks_api: Api<Kustomization> = Api::namespaced(admin.clone(), &n);
    ks_api
        .create(
            &pp,
            &serde_json::from_value(json!({
                "metadata": {"name": "app", "namespace": n},
                "spec": {"interval": "1m", "path": "./deploy", "prune": true,
                         "targetNamespace": n, "serviceAccountName": "tenant",
                         "sourceRef": {"kind": "GitRepository", "name": "fleet"}}
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    let v = wait_obj(&ks_api, "app", "applied under the chart's RBAC", |v| {
        ready(v.get("status")).is_some_and(|r| r.0 == "True")
    })
    .await;
    assert!(
        v["status"]["inventory"]["entries"]
            .as_array()
            .is_some_and(|e| e.len() == 1)
    );
    let cms: Api<ConfigMap> = Api::namespaced(admin.clone(), &n);
    assert_eq!(cms.get("app").await.unwrap().data.unwrap()["v"], "1");

    // Deleting the Kustomization prunes through the finalizer, still under the chart's RBAC.
    ks_api
        .delete("app", &DeleteParams::default())
        .await
        .unwrap();
    wait::poll("pruned on deletion", Duration::from_secs(60), || async {
        let gone_ks = ks_api.get_opt("app").await.ok()?.is_none();
        let gone_cm = cms.get_opt("app").await.ok()?.is_none();
        (gone_ks && gone_cm).then_some(())
    })
    .await
    .unwrap();

    // So does the GitRepository's (the namespace's deletion would take the token away first).
    let gits = Api::<DynamicObject>::namespaced_with(admin.clone(), &n, &git);
    gits.delete("fleet", &DeleteParams::default())
        .await
        .unwrap();
    wait::poll("source deleted", Duration::from_secs(60), || async {
        gits.get_opt("fleet").await.ok()?.is_none().then_some(())
    })
    .await
    .unwrap();

    for (kind, name) in cluster_scoped {
        let ar = ApiResource::from_gvk(&GroupVersionKind::gvk(
            "rbac.authorization.k8s.io",
            "v1",
            &kind,
        ));
        Api::<DynamicObject>::all_with(admin.clone(), &ar)
            .delete(&name, &DeleteParams::default())
            .await
            .unwrap();
    }
    ns.delete().await.unwrap();
}

/// Applies the chart's RBAC `objects` (made by [`chart_rbac`] for namespace `ns`) as admin.
/// Returns the cluster-scoped objects to delete at the end, a client config that
/// authenticates as the chart's ServiceAccount, and the directory holding its token (and
/// free for the test's other files).
pub(crate) async fn install_chart_rbac(
    info: &ControlPlaneInfo,
    admin: &kube::Client,
    ns: &str,
    objects: Vec<Value>,
) -> (Vec<(String, String)>, kube::Config, tempfile::TempDir) {
    let cluster_scoped: Vec<(String, String)> = objects
        .iter()
        .filter(|o| o["kind"].as_str().is_some_and(|k| k.starts_with("Cluster")))
        .map(|o| {
            (
                o["kind"].as_str().unwrap().to_string(),
                o["metadata"]["name"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let sa = objects
        .iter()
        .find(|o| o["kind"] == "ServiceAccount")
        .and_then(|o| o["metadata"]["name"].as_str())
        .unwrap()
        .to_string();
    Applier::new(admin.clone(), "plumb-test", 4)
        .apply_all(
            objects.into_iter().map(ApplyItem::new).collect(),
            &ApplyOptions::default(),
        )
        .await
        .unwrap();
    let (cfg, tmp) = service_account_config(info, admin, ns, &sa).await;
    (cluster_scoped, cfg, tmp)
}
