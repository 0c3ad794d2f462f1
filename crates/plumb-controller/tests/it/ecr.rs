//! OCIRepository `provider: aws` against the real API server, a moto server (ECR
//! `GetAuthorizationToken`) and a real registry whose htpasswd holds the credentials moto
//! hands out. The registry listens on loopback; the OCIRepository names it by an ECR host
//! (`123456789012.dkr.ecr.us-east-1.amazonaws.com:<port>`), which the controller's
//! `oci_resolve` maps to 127.0.0.1 the way a hosts-file entry would, so the ECR account and
//! region come from the host name as in production.
//!
//! Proves: Ready with an artifact; one `GetAuthorizationToken` across polls; a registry
//! that refuses the cached token gets one freshly fetched token, then a clear
//! AuthenticationFailed condition; the token is in no condition, status, event or log line.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_config::{BehaviorVersion, Region};
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use plumb_api::OCIRepository;
use plumb_eks::{Credentials, EcrAuth, EcrRegistry, ManualClock};
use plumb_source::oci::{self, Client, ClientOptions, PushMeta};
use plumb_testing::moto::MotoServer;
use plumb_testing::registry::{Registry, RegistryOptions};
use plumb_testing::{ControlPlane, TestNamespace};
use serde_json::{Value, json};

use crate::common::{install_crds, ready, start_plumb_with, wait_obj};
use crate::logsink::LogSink;

pub(crate) const ECR_HOST: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com";

/// moto's tokens expire at 2015-01-01T00:00:00Z; the controller's clock stands an hour
/// before, so they are fresh for 55 minutes of it.
fn moto_expiry() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_420_070_400)
}

pub(crate) async fn ecr_auth(moto: &MotoServer) -> EcrAuth {
    let sdk = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("AKIDTEST", "secret", None, None, "test"))
        .load()
        .await;
    let clock = Arc::new(ManualClock::new(moto_expiry() - Duration::from_secs(3600)));
    EcrAuth::new(sdk)
        .with_endpoint(moto.url())
        .with_clock(clock)
}

/// Pushes one ConfigMap as a Flux artifact with basic credentials; returns the digest.
async fn push(url: String, user: &str, password: &str) -> String {
    let credentials = oci::Credentials {
        username: user.to_string(),
        password: password.to_string(),
    };
    tokio::task::spawn_blocking(move || {
        let dir = tempfile::tempdir().unwrap();
        let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ecr\ndata:\n  v: \"1\"\n";
        std::fs::write(dir.path().join("cm.yaml"), cm).unwrap();
        let opts = ClientOptions {
            insecure: true,
            credentials: Some(credentials),
            timeout: Duration::from_secs(20),
            ..Default::default()
        };
        let client = Client::new(&oci::parse_url(&url).unwrap(), &opts).unwrap();
        client
            .push_artifact(dir.path(), &PushMeta::default())
            .unwrap()
            .digest
    })
    .await
    .unwrap()
}

pub(crate) async fn start_registry(password: String) -> Registry {
    tokio::task::spawn_blocking(move || {
        Registry::start(RegistryOptions {
            htpasswd: Some(("AWS", &password)),
            ..Default::default()
        })
    })
    .await
    .unwrap()
    .unwrap()
}

/// moto, and a registry whose htpasswd holds the ECR token moto hands out (its password).
pub(crate) async fn moto_with_registry() -> (MotoServer, String, Registry) {
    let moto = tokio::task::spawn_blocking(MotoServer::start)
        .await
        .unwrap()
        .unwrap();
    let registry = EcrRegistry::parse(ECR_HOST).unwrap();
    let token = ecr_auth(&moto).await.credentials(&registry).await.unwrap();
    let password = token.credentials.password.clone();
    assert_eq!(token.credentials.username, "AWS");
    let reg = start_registry(password.clone()).await;
    (moto, password, reg)
}

/// Starts plumb for `ns` with ECR tokens from `moto` and the ECR host resolving to
/// loopback; returns the token source (to count `GetAuthorizationToken` calls).
pub(crate) async fn start_plumb_on_moto(
    info: &plumb_testing::ControlPlaneInfo,
    ns: &str,
    storage: &std::path::Path,
    moto: &MotoServer,
) -> Arc<EcrAuth> {
    let auth = Arc::new(ecr_auth(moto).await);
    let ctx = start_plumb_with(info, ns, storage, |c| {
        c.oci_resolve = vec![(ECR_HOST.to_string(), [127, 0, 0, 1].into())];
    })
    .await;
    assert!(ctx.ecr.use_auth(auth.clone()));
    auth
}

fn ecr_url(reg: &Registry) -> String {
    let port = reg.host().rsplit_once(':').unwrap().1.to_string();
    format!("oci://{ECR_HOST}:{port}/fleet")
}

/// Requests a reconcile and waits until the controller handled that very request.
async fn poll(api: &Api<OCIRepository>) -> Value {
    let stamp = format!("{:?}", SystemTime::now());
    let patch = json!({"metadata": {"annotations": {"reconcile.fluxcd.io/requestedAt": stamp}}});
    api.patch("fleet", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    wait_obj(api, "fleet", "poll handled", |v| {
        v["status"]["lastHandledReconcileAt"].as_str() == Some(stamp.as_str())
    })
    .await
}

#[tokio::test]
async fn ecr_provider_through_moto() {
    let logs = LogSink::install();
    let info = ControlPlane::shared().unwrap();
    let client = info.admin_client().await.unwrap();
    install_crds(&client).await;
    let ns = TestNamespace::create(info, "oci-ecr").await.unwrap();
    let n = ns.name().to_string();
    // The registry accepts exactly what GetAuthorizationToken hands out.
    let (moto, password, reg) = moto_with_registry().await;
    let digest = push(reg.oci_url("fleet:v1"), "AWS", &password).await;

    let auth = Arc::new(ecr_auth(&moto).await);
    let tmp = tempfile::tempdir().unwrap();
    let ctx = start_plumb_with(info, &n, tmp.path(), |c| {
        c.oci_resolve = vec![(ECR_HOST.to_string(), [127, 0, 0, 1].into())];
    })
    .await;
    assert!(ctx.ecr.use_auth(auth.clone()));

    let repos: Api<OCIRepository> = Api::namespaced(client.clone(), &n);
    let repo: OCIRepository = serde_json::from_value(json!({
        "apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "OCIRepository",
        "metadata": {"name": "fleet", "namespace": n},
        "spec": {"url": ecr_url(&reg), "ref": {"tag": "v1"}, "insecure": true,
                 "provider": "aws", "interval": "1h"}
    }))
    .unwrap();
    repos.create(&PostParams::default(), &repo).await.unwrap();
    let want = format!("v1@{digest}");
    let v = wait_obj(&repos, "fleet", "ready with the artifact", |v| {
        v["status"]["artifact"]["revision"].as_str() == Some(want.as_str())
            && ready(v.get("status")).is_some_and(|r| r.0 == "True")
    })
    .await;
    let (_, _, msg) = ready(v.get("status")).unwrap();
    assert!(!msg.contains("not supported"), "{msg}");
    assert_eq!(auth.fetch_count(), 1);

    // Polls reuse the cached token: still one GetAuthorizationToken.
    for _ in 0..3 {
        poll(&repos).await;
    }
    assert_eq!(auth.fetch_count(), 1, "the token is cached across polls");
    let authed = reg.log().matches("\"HEAD /v2/fleet/manifests/v1").count();
    assert!(
        authed >= 4,
        "every poll reached the registry:\n{}",
        reg.log_tail()
    );

    // A registry that refuses the token: the cached one, then one fresh one, then a clear
    // condition, the last artifact kept.
    let other = start_registry("not-the-ecr-token".to_string()).await;
    push(other.oci_url("fleet:v1"), "AWS", "not-the-ecr-token").await;
    let patch = json!({"spec": {"url": ecr_url(&other)}});
    repos
        .patch("fleet", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let v = wait_obj(&repos, "fleet", "authentication failure", |v| {
        ready(v.get("status")).is_some_and(|r| r.0 == "False" && r.1 == "AuthenticationFailed")
    })
    .await;
    let (_, _, msg) = ready(v.get("status")).unwrap();
    assert!(msg.contains("refreshed once"), "{msg}");
    assert!(msg.contains(ECR_HOST), "{msg}");
    assert_eq!(
        auth.fetch_count(),
        2,
        "exactly one refresh after the refusal"
    );
    assert_eq!(v["status"]["artifact"]["revision"], want.as_str());

    // The token is nowhere: not in the object, not in an event.
    let text = v.to_string();
    assert!(!text.contains(&password), "{text}");
    let events: Api<Event> = Api::namespaced(client.clone(), &n);
    let all = events.list(&ListParams::default()).await.unwrap();
    assert!(!all.items.is_empty(), "events were recorded");
    let events_text = serde_json::to_string(&all.items).unwrap();
    assert!(!events_text.contains(&password), "{events_text}");
    let log = logs.text();
    assert!(
        log.contains("refused the cached ECR token"),
        "logs were captured"
    );
    assert!(!log.contains(&password), "{log}");
    drop(ns);
}

#[tokio::test]
async fn azure_and_non_ecr_hosts_are_clear_failures() {
    let info = ControlPlane::shared().unwrap();
    let client = info.admin_client().await.unwrap();
    install_crds(&client).await;
    let ns = TestNamespace::create(info, "oci-provider").await.unwrap();
    let n = ns.name().to_string();
    let tmp = tempfile::tempdir().unwrap();
    start_plumb_with(info, &n, tmp.path(), |_| {}).await;
    let repos: Api<OCIRepository> = Api::namespaced(client.clone(), &n);
    for (name, url, provider, want) in [
        (
            "azure",
            "oci://example.azurecr.io/app",
            "azure",
            "'azure' is not supported yet",
        ),
        (
            "ghcr",
            "oci://ghcr.io/org/app",
            "aws",
            "is not an Amazon ECR registry host",
        ),
    ] {
        let repo: OCIRepository = serde_json::from_value(json!({
            "apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "OCIRepository",
            "metadata": {"name": name, "namespace": n},
            "spec": {"url": url, "provider": provider, "interval": "1h"}
        }))
        .unwrap();
        repos.create(&PostParams::default(), &repo).await.unwrap();
        let v = wait_obj(&repos, name, "stalled", |v| {
            ready(v.get("status")).is_some_and(|r| r.0 == "False")
        })
        .await;
        let (_, why, msg) = ready(v.get("status")).unwrap();
        assert_eq!(why, "AuthenticationFailed", "{msg}");
        assert!(msg.contains(want), "{msg}");
    }
}

/// An OCI HelmRepository with `provider: aws`: a HelmRelease's chart is pulled from the
/// ECR-named registry with the credentials GetAuthorizationToken hands out (through the
/// release's HelmChart), and the token is fetched once.
#[tokio::test]
async fn oci_helm_repository_with_the_aws_provider() {
    let info = ControlPlane::shared().unwrap();
    let client = info.admin_client().await.unwrap();
    install_crds(&client).await;
    let ns = TestNamespace::create(info, "helm-ecr").await.unwrap();
    let n = ns.name().to_string();
    let (moto, password, reg) = moto_with_registry().await;
    let host = reg.host();
    tokio::task::spawn_blocking(move || {
        let work = tempfile::tempdir().unwrap();
        let tgz = plumb_testing::chartrepo::package_chart(work.path(), "podinfo", "1.2.0");
        let out = std::process::Command::new("helm")
            .arg("push")
            .arg(&tgz)
            .arg(format!("oci://{host}/charts"))
            .args(["--plain-http", "--username", "AWS", "--password", &password])
            .env("HELM_REGISTRY_CONFIG", work.path().join("registry.json"))
            .output()
            .expect("helm (scripts/install-deps.sh)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    })
    .await
    .unwrap();

    let tmp = tempfile::tempdir().unwrap();
    let auth = start_plumb_on_moto(info, &n, tmp.path(), &moto).await;
    let port = reg.host().rsplit_once(':').unwrap().1.to_string();
    let repo: plumb_api::HelmRepository = serde_json::from_value(json!({
        "apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "HelmRepository",
        "metadata": {"name": "ecr", "namespace": n},
        "spec": {"type": "oci", "url": format!("oci://{ECR_HOST}:{port}/charts"),
                 "provider": "aws", "insecure": true, "interval": "1h"}
    }))
    .unwrap();
    Api::<plumb_api::HelmRepository>::namespaced(client.clone(), &n)
        .create(&PostParams::default(), &repo)
        .await
        .unwrap();
    let hrs: Api<plumb_api::HelmRelease> = Api::namespaced(client.clone(), &n);
    let hr: plumb_api::HelmRelease = serde_json::from_value(json!({
        "apiVersion": "helm.toolkit.fluxcd.io/v2", "kind": "HelmRelease",
        "metadata": {"name": "web", "namespace": n},
        "spec": {"interval": "1h", "chart": {"spec": {"chart": "podinfo", "version": "1.x",
                 "sourceRef": {"kind": "HelmRepository", "name": "ecr"}}}}
    }))
    .unwrap();
    hrs.create(&PostParams::default(), &hr).await.unwrap();
    let v = wait_obj(&hrs, "web", "installed from ECR", |v| {
        ready(v.get("status")).is_some_and(|r| r.0 == "True")
    })
    .await;
    assert_eq!(v["status"]["lastAttemptedRevision"], "1.2.0");
    assert_eq!(auth.fetch_count(), 1, "one GetAuthorizationToken");
    hrs.delete("web", &Default::default()).await.unwrap();
    crate::common::world::within("uninstalled", 60, || {
        let hrs = hrs.clone();
        async move { hrs.get_opt("web").await.ok()?.is_none().then_some(()) }
    })
    .await;
    ns.delete().await.unwrap();
}
