//! Remote clusters end to end: Kustomizations whose `spec.kubeConfig` points at the local
//! control plane as if it were another cluster, through a kubeconfig Secret (a restricted
//! user's static token) and through a `provider: aws` ConfigMap (EKS IAM tokens, verified by
//! the apiserver's token webhook against a moto STS).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, PostParams};
use plumb_api::{GitRepository, Kustomization};
use plumb_eks::{Credentials, EksAuth, EndpointOverrides, ManualClock};
use plumb_testing::controlplane::RESTRICTED_USER;
use plumb_testing::eks_webhook::{EKS_TEST_CLUSTER, EKS_TEST_GROUP};
use plumb_testing::git::{GitHttpServer, HttpAuth, TestRepo};
use plumb_testing::moto::MotoServer;
use plumb_testing::{ControlPlane, ControlPlaneInfo, TestNamespace};
use serde_json::json;

use crate::common::{install_crds, ready, start_plumb, wait_obj};

/// A git server with `deploy/` holding one ConfigMap, and the GitRepository for it.
async fn fleet(
    client: &kube::Client,
    ns: &str,
    tmp: &std::path::Path,
) -> plumb_testing::git::GitHttpServer {
    let repo = TestRepo::init(&tmp.join("repos"), "fleet");
    repo.commit(
        &[
            ("deploy/kustomization.yaml", "resources:\n- cm.yaml\n"),
            (
                "deploy/cm.yaml",
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: remote-cm\ndata:\n  via: remote\n",
            ),
        ],
        "initial",
    );
    let root = tmp.join("repos");
    let server = std::thread::spawn(move || GitHttpServer::start(&root, HttpAuth::Anonymous))
        .join()
        .unwrap();
    let git: GitRepository = serde_json::from_value(json!({
        "apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository",
        "metadata": {"name": "fleet", "namespace": ns},
        "spec": {"url": server.url("fleet"), "interval": "1h", "ref": {"branch": "master"}}
    }))
    .unwrap();
    Api::<GitRepository>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &git)
        .await
        .unwrap();
    server
}

/// Lets `subject` (a User or Group) manage ConfigMaps in `ns`.
async fn grant_configmaps(client: &kube::Client, ns: &str, kind: &str, subject: &str) {
    let role: Role = serde_json::from_value(json!({
        "metadata": {"name": "remote-apply", "namespace": ns},
        "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["*"]}]
    }))
    .unwrap();
    Api::<Role>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &role)
        .await
        .unwrap();
    let binding: RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": "remote-apply", "namespace": ns},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "remote-apply"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": subject}]
    }))
    .unwrap();
    Api::<RoleBinding>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &binding)
        .await
        .unwrap();
}

async fn create_ks(
    client: &kube::Client,
    ns: &str,
    name: &str,
    target_ns: &str,
    kc: serde_json::Value,
) {
    let ks: Kustomization = serde_json::from_value(json!({
        "apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"interval": "1h", "retryInterval": "2s", "path": "./deploy", "prune": true,
                 "targetNamespace": target_ns, "kubeConfig": kc,
                 "sourceRef": {"kind": "GitRepository", "name": "fleet"}}
    }))
    .unwrap();
    Api::<Kustomization>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &ks)
        .await
        .unwrap();
}

async fn wait_ready(
    client: &kube::Client,
    ns: &str,
    name: &str,
    want: &str,
) -> (String, String, String) {
    wait_condition(client, ns, name, want, "").await
}

/// Waits for Ready=`want` with a message containing `part` (a failure of the source, before
/// its first artifact, is also Ready=False).
async fn wait_condition(
    client: &kube::Client,
    ns: &str,
    name: &str,
    want: &str,
    part: &str,
) -> (String, String, String) {
    let api: Api<Kustomization> = Api::namespaced(client.clone(), ns);
    let what = format!("Ready={want} of {name} saying {part:?}");
    let v = wait_obj(&api, name, &what, |v| {
        ready(v.get("status")).is_some_and(|r| r.0 == want && r.2.contains(part))
    })
    .await;
    ready(v.get("status")).unwrap()
}

fn ca_pem(info: &ControlPlaneInfo) -> String {
    std::fs::read_to_string(&info.ca_file).unwrap()
}

#[tokio::test]
async fn secret_kubeconfig_applies_as_its_user() {
    let info = ControlPlane::shared().unwrap();
    let client = info.admin_client().await.unwrap();
    install_crds(&client).await;
    let ns = TestNamespace::create(info, "remote-secret").await.unwrap();
    let n = ns.name().to_string();
    let other = TestNamespace::create(info, "remote-denied").await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let _server = fleet(&client, &n, tmp.path()).await;
    grant_configmaps(&client, &n, "User", RESTRICTED_USER).await;

    // The kubeconfig of the restricted user, CA inline, under Flux's default key.
    let kubeconfig = format!(
        "apiVersion: v1\nkind: Config\ncurrent-context: remote\n\
         clusters:\n- name: remote\n  cluster:\n    server: {}\n    certificate-authority-data: {}\n\
         users:\n- name: restricted\n  user:\n    token: {}\n\
         contexts:\n- name: remote\n  context:\n    cluster: remote\n    user: restricted\n",
        info.server,
        base64::engine::general_purpose::STANDARD.encode(ca_pem(info)),
        info.restricted_token
    );
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "remote-kubeconfig", "namespace": n},
        "stringData": {"value": kubeconfig}
    }))
    .unwrap();
    Api::<Secret>::namespaced(client.clone(), &n)
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    // An admin kubeconfig under a custom key, used with serviceAccountName: the remote
    // requests impersonate that service account there, which has no grants.
    let admin: Secret = serde_json::from_value(json!({
        "metadata": {"name": "admin-kubeconfig", "namespace": n},
        "stringData": {"config": info.admin_kubeconfig_inline().unwrap()}
    }))
    .unwrap();
    Api::<Secret>::namespaced(client.clone(), &n)
        .create(&PostParams::default(), &admin)
        .await
        .unwrap();
    let _ctx = start_plumb(info, &n, &tmp.path().join("storage")).await;

    let ks: Kustomization = serde_json::from_value(json!({
        "apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
        "metadata": {"name": "impersonated", "namespace": n},
        "spec": {"interval": "1h", "retryInterval": "2s", "path": "./deploy", "prune": true,
                 "targetNamespace": n, "serviceAccountName": "nobody",
                 "kubeConfig": {"secretRef": {"name": "admin-kubeconfig", "key": "config"}},
                 "sourceRef": {"kind": "GitRepository", "name": "fleet"}}
    }))
    .unwrap();
    Api::<Kustomization>::namespaced(client.clone(), &n)
        .create(&PostParams::default(), &ks)
        .await
        .unwrap();

    let kc = json!({"secretRef": {"name": "remote-kubeconfig"}});
    create_ks(&client, &n, "allowed", &n, kc.clone()).await;
    // The same user may not write to the other namespace: proof the remote identity is used.
    create_ks(&client, &n, "denied", other.name(), kc).await;
    create_ks(
        &client,
        &n,
        "missing",
        &n,
        json!({"secretRef": {"name": "nope"}}),
    )
    .await;

    let (_, reason, msg) = wait_ready(&client, &n, "allowed", "True").await;
    assert_eq!(reason, "ReconciliationSucceeded", "{msg}");
    let cm = Api::<ConfigMap>::namespaced(client.clone(), &n)
        .get("remote-cm")
        .await
        .unwrap();
    assert_eq!(cm.data.unwrap()["via"], "remote");

    let (_, _, msg) = wait_condition(&client, &n, "denied", "False", "forbidden").await;
    assert!(
        msg.contains("forbidden") && msg.contains(RESTRICTED_USER),
        "{msg}"
    );
    assert!(!msg.contains(&info.restricted_token), "token leaked: {msg}");

    let (_, _, msg) = wait_condition(&client, &n, "missing", "False", "nope").await;
    assert!(msg.contains(&format!("Secret '{n}/nope'")), "{msg}");

    let sa = format!("system:serviceaccount:{n}:nobody");
    let (_, _, msg) = wait_condition(&client, &n, "impersonated", "False", "forbidden").await;
    assert!(msg.contains(&sa), "{msg}");
    assert!(!msg.contains(&info.admin_token), "token leaked: {msg}");
}

/// The controller's EKS access: static credentials, STS and EKS at moto, and a clock.
async fn eks_auth(moto: &MotoServer, clock: SystemTime) -> Arc<EksAuth> {
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(Credentials::new(
            "AKIDREMOTETEST",
            "secret",
            None,
            None,
            "test",
        ))
        .endpoint_url(moto.url())
        .load()
        .await;
    Arc::new(
        EksAuth::new(
            sdk,
            EndpointOverrides {
                sts: Some(moto.url()),
            },
        )
        .with_clock(Arc::new(ManualClock::new(clock))),
    )
}

async fn spoke_config_map(client: &kube::Client, ns: &str, name: &str, data: serde_json::Value) {
    let cm: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": ns},
        "data": data
    }))
    .unwrap();
    Api::<ConfigMap>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &cm)
        .await
        .unwrap();
}

/// Returns the moto server; a control plane without the EKS token webhook or a missing
/// moto fails the test (never a silent skip).
fn eks_prereqs(info: &ControlPlaneInfo) -> MotoServer {
    assert!(
        info.eks_webhook,
        "the shared control plane has no EKS token webhook (restart plumb-test-env)"
    );
    MotoServer::start().unwrap()
}

#[tokio::test]
async fn eks_config_map_reconciles_with_iam_tokens() {
    let info = ControlPlane::shared().unwrap();
    let moto = eks_prereqs(info);
    let client = info.admin_client().await.unwrap();
    install_crds(&client).await;
    let ns = TestNamespace::create(info, "remote-eks").await.unwrap();
    let n = ns.name().to_string();
    let tmp = tempfile::tempdir().unwrap();
    let _server = fleet(&client, &n, tmp.path()).await;
    grant_configmaps(&client, &n, "Group", EKS_TEST_GROUP).await;
    let arn = format!("arn:aws:eks:us-east-1:123456789012:cluster/{EKS_TEST_CLUSTER}");
    spoke_config_map(
        &client,
        &n,
        "spoke",
        json!({"provider": "aws", "cluster": arn, "address": info.server, "ca.crt": ca_pem(info)}),
    )
    .await;
    // No address: DescribeCluster is asked, and moto knows no such cluster.
    spoke_config_map(
        &client,
        &n,
        "ghost",
        json!({"provider": "aws", "cluster": "arn:aws:eks:us-east-1:123456789012:cluster/ghost"}),
    )
    .await;
    let ctx = start_plumb(info, &n, &tmp.path().join("storage")).await;
    assert!(ctx.remote.use_eks(eks_auth(&moto, SystemTime::now()).await));

    create_ks(
        &client,
        &n,
        "spoke",
        &n,
        json!({"configMapRef": {"name": "spoke"}}),
    )
    .await;
    create_ks(
        &client,
        &n,
        "ghost",
        &n,
        json!({"configMapRef": {"name": "ghost"}}),
    )
    .await;

    let (_, reason, msg) = wait_ready(&client, &n, "spoke", "True").await;
    assert_eq!(reason, "ReconciliationSucceeded", "{msg}");
    let cm = Api::<ConfigMap>::namespaced(client.clone(), &n)
        .get("remote-cm")
        .await
        .unwrap();
    assert_eq!(cm.data.unwrap()["via"], "remote");

    let (_, _, msg) = wait_condition(&client, &n, "ghost", "False", "ghost").await;
    assert!(
        msg.contains("ghost") && msg.contains("ResourceNotFoundException"),
        "{msg}"
    );
}

#[tokio::test]
async fn expired_eks_token_is_a_clear_condition() {
    let info = ControlPlane::shared().unwrap();
    let moto = eks_prereqs(info);
    let client = info.admin_client().await.unwrap();
    install_crds(&client).await;
    let ns = TestNamespace::create(info, "remote-expired").await.unwrap();
    let n = ns.name().to_string();
    let tmp = tempfile::tempdir().unwrap();
    let _server = fleet(&client, &n, tmp.path()).await;
    grant_configmaps(&client, &n, "Group", EKS_TEST_GROUP).await;
    let arn = format!("arn:aws:eks:us-east-1:123456789012:cluster/{EKS_TEST_CLUSTER}");
    spoke_config_map(
        &client,
        &n,
        "spoke",
        json!({"provider": "aws", "cluster": arn, "address": info.server, "ca.crt": ca_pem(info)}),
    )
    .await;
    let ctx = start_plumb(info, &n, &tmp.path().join("storage")).await;
    // A clock 20 minutes behind signs tokens the authenticator considers expired.
    let past = SystemTime::now() - Duration::from_secs(20 * 60);
    assert!(ctx.remote.use_eks(eks_auth(&moto, past).await));
    create_ks(
        &client,
        &n,
        "spoke",
        &n,
        json!({"configMapRef": {"name": "spoke"}}),
    )
    .await;

    let (_, _, msg) = wait_condition(&client, &n, "spoke", "False", "EKS cluster").await;
    assert!(
        msg.contains(&format!("EKS cluster '{EKS_TEST_CLUSTER}'"))
            && msg.contains("rejected the credentials")
            && msg.contains("401"),
        "{msg}"
    );
    assert!(!msg.contains("k8s-aws-v1"), "token leaked: {msg}");
    let none = Api::<ConfigMap>::namespaced(client.clone(), &n)
        .get_opt("remote-cm")
        .await
        .unwrap();
    assert!(
        none.is_none(),
        "nothing may be applied with a rejected token"
    );
}

#[tokio::test]
async fn cluster_facts_are_substituted_and_refreshed() {
    let info = ControlPlane::shared().unwrap();
    let client = info.admin_client().await.unwrap();
    install_crds(&client).await;
    let ns = TestNamespace::create(info, "eks-facts").await.unwrap();
    let n = ns.name().to_string();
    let tmp = tempfile::tempdir().unwrap();
    let repo = TestRepo::init(&tmp.path().join("repos"), "fleet");
    repo.commit(
        &[
            ("deploy/kustomization.yaml", "resources:\n- cm.yaml\n"),
            (
                "deploy/cm.yaml",
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: facts\ndata:\n  cluster: ${eks_cluster_name}\n  issuer: ${eks_oidc_issuer}\n\
                 ---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: literal\n  annotations:\n    kustomize.toolkit.fluxcd.io/substitute: disabled\ndata:\n  cluster: ${eks_cluster_name}\n",
            ),
        ],
        "initial",
    );
    let root = tmp.path().join("repos");
    let server = std::thread::spawn(move || GitHttpServer::start(&root, HttpAuth::Anonymous))
        .join()
        .unwrap();
    let git: GitRepository = serde_json::from_value(json!({
        "apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository",
        "metadata": {"name": "fleet", "namespace": n},
        "spec": {"url": server.url("fleet"), "interval": "1h", "ref": {"branch": "master"}}
    }))
    .unwrap();
    Api::<GitRepository>::namespaced(client.clone(), &n)
        .create(&PostParams::default(), &git)
        .await
        .unwrap();
    let ctx = start_plumb(info, &n, &tmp.path().join("storage")).await;
    let facts = |name: &str| {
        std::collections::BTreeMap::from([
            ("eks_cluster_name".to_string(), name.to_string()),
            (
                "eks_oidc_issuer".to_string(),
                format!("https://oidc.eks/id/{name}"),
            ),
        ])
    };
    ctx.config.cluster_vars.replace(facts("spoke-1"));
    let ks: Kustomization = serde_json::from_value(json!({
        "apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
        "metadata": {"name": "facts", "namespace": n},
        "spec": {"interval": "2s", "path": "./deploy", "prune": true, "targetNamespace": n,
                 "sourceRef": {"kind": "GitRepository", "name": "fleet"}, "postBuild": {}}
    }))
    .unwrap();
    Api::<Kustomization>::namespaced(client.clone(), &n)
        .create(&PostParams::default(), &ks)
        .await
        .unwrap();
    wait_ready(&client, &n, "facts", "True").await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &n);
    let data = |cm: ConfigMap| cm.data.unwrap_or_default();
    let got = data(cms.get("facts").await.unwrap());
    assert_eq!(got["cluster"], "spoke-1");
    assert_eq!(got["issuer"], "https://oidc.eks/id/spoke-1");
    assert_eq!(
        data(cms.get("literal").await.unwrap())["cluster"],
        "${eks_cluster_name}",
        "opted out of substitution"
    );

    // A refresh (as `plumb run --eks-cluster-name` does) reaches the next reconcile.
    ctx.config.cluster_vars.replace(facts("spoke-2"));
    plumb_testing::wait::poll("refreshed facts applied", Duration::from_secs(60), || {
        let cms = cms.clone();
        async move {
            let cm = cms.get("facts").await.ok()?;
            (cm.data?.get("cluster")? == "spoke-2").then_some(())
        }
    })
    .await
    .unwrap();
}
