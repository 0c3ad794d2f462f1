//! OCI source verification and access paths against the real API server, a real registry
//! (CNCF distribution) and a real proxy (tinyproxy):
//! - `verify` (cosign, trusted keys from a Secret): signatures are made by `openssl` (ECDSA
//!   P-256 over cosign's simple-signing payload, as `cosign sign --key` does) and stored the
//!   way cosign stores them (`sha256-<hex>.sig`); an unsigned or foreign-signed artifact is
//!   never stored, keyless is refused clearly; the same for a HelmChart from an OCI
//!   HelmRepository;
//! - `serviceAccountName` (its image pull secrets) and `proxySecretRef` (basic-auth proxy,
//!   the registry traffic proven to pass through it; a wrong proxy password is a clear
//!   condition without the password).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use kube::api::{Api, PostParams};
use plumb_api::{HelmChart, HelmRepository, OCIRepository};
use plumb_source::oci::{self, Client, ClientOptions, Credentials, PushMeta};
use plumb_testing::httpproxy::HttpProxy;
use plumb_testing::registry::{Registry, RegistryOptions};
use plumb_testing::{ControlPlane, TestNamespace};
use serde_json::{Value, json};

use crate::common::{condition, install_crds, ready, request_reconcile, start_plumb, wait_obj};

fn client_for(url: &str, creds: Option<(&str, &str)>) -> Client {
    let opts = ClientOptions {
        insecure: true,
        timeout: Duration::from_secs(20),
        credentials: creds.map(|(u, p)| Credentials {
            username: u.into(),
            password: p.into(),
        }),
        ..Default::default()
    };
    Client::new(&oci::parse_url(url).unwrap(), &opts).unwrap()
}

/// Pushes a one-ConfigMap Flux artifact to `url`; returns its digest.
fn push(url: &str, value: &str, creds: Option<(&str, &str)>) -> String {
    let dir = tempfile::tempdir().unwrap();
    let cm =
        format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\ndata:\n  v: \"{value}\"\n");
    std::fs::write(dir.path().join("c.yaml"), cm).unwrap();
    let meta = PushMeta {
        revision: Some(format!("main@sha1:{value}")),
        ..Default::default()
    };
    client_for(url, creds)
        .push_artifact(dir.path(), &meta)
        .unwrap()
        .digest
}

fn openssl(args: &[&str], dir: &Path) {
    let out = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl (scripts/install-deps.sh)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A P-256 key pair in `dir` (`<name>.key`, `<name>.pub`), as `cosign generate-key-pair`
/// makes; returns the public key PEM.
fn key_pair(dir: &Path, name: &str) -> String {
    let key = format!("{name}.key");
    openssl(
        &[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            &key,
        ],
        dir,
    );
    openssl(
        &["ec", "-in", &key, "-pubout", "-out", &format!("{name}.pub")],
        dir,
    );
    std::fs::read_to_string(dir.join(format!("{name}.pub"))).unwrap()
}

/// Signs manifest `digest` of repository `repo_url` with key `name` as `cosign sign --key`:
/// the simple-signing payload, its ECDSA signature (by openssl), stored under
/// `sha256-<hex>.sig`.
fn cosign_sign(repo_url: &str, digest: &str, dir: &Path, name: &str) {
    let payload = serde_json::to_vec(&json!({
        "critical": {"identity": {"docker-reference": repo_url.trim_start_matches("oci://")},
                     "image": {"docker-manifest-digest": digest},
                     "type": "cosign container image signature"},
        "optional": null
    }))
    .unwrap();
    std::fs::write(dir.join("payload.json"), &payload).unwrap();
    let key = format!("{name}.key");
    openssl(
        &[
            "dgst",
            "-sha256",
            "-sign",
            &key,
            "-out",
            "sig.der",
            "payload.json",
        ],
        dir,
    );
    let sig = std::fs::read(dir.join("sig.der")).unwrap();
    let client = client_for(repo_url, None);
    let mut layer = client
        .push_blob(&payload, oci::cosign::SIMPLE_SIGNING_MEDIA_TYPE)
        .unwrap();
    layer.annotations.insert(
        oci::cosign::SIGNATURE_ANNOTATION.into(),
        base64::engine::general_purpose::STANDARD.encode(sig),
    );
    let config = serde_json::to_vec(&json!({
        "architecture": "", "os": "", "config": {},
        "rootfs": {"type": "layers", "diff_ids": [layer.digest]}
    }))
    .unwrap();
    let config = client
        .push_blob(&config, "application/vnd.oci.image.config.v1+json")
        .unwrap();
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config, "layers": [layer]
    }))
    .unwrap();
    client
        .put_manifest(
            &oci::cosign::signature_tag(digest),
            &manifest,
            "application/vnd.oci.image.manifest.v1+json",
        )
        .unwrap();
}

pub(crate) async fn secret(api: &Api<Secret>, name: &str, type_: &str, data: Value) {
    let s: Secret = serde_json::from_value(json!({
        "metadata": {"name": name}, "type": type_, "stringData": data
    }))
    .unwrap();
    api.create(&PostParams::default(), &s).await.unwrap();
}

fn verified(v: &Value) -> Option<(String, String, String)> {
    condition(v.get("status"), "SourceVerified")
}

async fn oci_repo(api: &Api<OCIRepository>, name: &str, spec: Value) {
    let mut spec = spec;
    spec["interval"] = json!("1h");
    spec["insecure"] = json!(true);
    let repo: OCIRepository = serde_json::from_value(json!({
        "apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "OCIRepository",
        "metadata": {"name": name}, "spec": spec
    }))
    .unwrap();
    api.create(&PostParams::default(), &repo).await.unwrap();
}

fn failed_with(why: &'static str) -> impl Fn(&Value) -> bool {
    move |v: &Value| ready(v.get("status")).is_some_and(|r| r.0 == "False" && r.1 == why)
}

#[tokio::test]
async fn oci_sources_verified_by_cosign_public_keys() {
    let info = ControlPlane::shared().unwrap();
    let client = info.admin_client().await.unwrap();
    install_crds(&client).await;
    let ns = TestNamespace::create(info, "oci-verify").await.unwrap();
    let n = ns.name().to_string();
    let keys = tempfile::tempdir().unwrap();
    let (trusted, _other) = (
        key_pair(keys.path(), "trusted"),
        key_pair(keys.path(), "other"),
    );
    let (reg, d1) = tokio::task::spawn_blocking(|| {
        let reg = Registry::start(RegistryOptions::default()).unwrap();
        let d1 = push(&format!("{}:v1", reg.oci_url("fleet")), "1", None);
        (reg, d1)
    })
    .await
    .unwrap();
    let u = reg.oci_url("fleet");
    let tmp = tempfile::tempdir().unwrap();
    start_plumb(info, &n, tmp.path()).await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &n);
    secret(
        &secrets,
        "cosign-keys",
        "Opaque",
        json!({"cosign.pub": trusted}),
    )
    .await;
    let repos: Api<OCIRepository> = Api::namespaced(client.clone(), &n);
    let verify = json!({"provider": "cosign", "secretRef": {"name": "cosign-keys"}});
    oci_repo(
        &repos,
        "fleet",
        json!({"url": u, "ref": {"tag": "v1"}, "verify": verify}),
    )
    .await;

    // Unsigned: never stored.
    let v = wait_obj(
        &repos,
        "fleet",
        "unsigned refused",
        failed_with("VerificationError"),
    )
    .await;
    let c = verified(&v).unwrap();
    assert_eq!((c.0.as_str(), c.1.as_str()), ("False", "VerificationError"));
    assert!(c.2.contains("no cosign signature"), "{}", c.2);
    assert!(v["status"].get("artifact").is_none(), "nothing stored: {v}");

    // Signed by the trusted key: stored and SourceVerified.
    let (su, sd, sk) = (u.clone(), d1.clone(), keys.path().to_path_buf());
    tokio::task::spawn_blocking(move || cosign_sign(&su, &sd, &sk, "trusted"))
        .await
        .unwrap();
    request_reconcile(&repos, "fleet").await;
    let rev = format!("v1@{d1}");
    let v = wait_obj(&repos, "fleet", "verified and stored", |v| {
        v["status"]["artifact"]["revision"].as_str() == Some(rev.as_str())
    })
    .await;
    let c = verified(&v).unwrap();
    assert_eq!((c.0.as_str(), c.1.as_str()), ("True", "Succeeded"));
    assert_eq!(c.2, format!("verified signature of revision {rev}"));

    // The tag moves to content signed by another key: refused, the verified artifact stays.
    let (pu, sk) = (u.clone(), keys.path().to_path_buf());
    let d2 = tokio::task::spawn_blocking(move || {
        let d2 = push(&format!("{pu}:v1"), "2", None);
        cosign_sign(&pu, &d2, &sk, "other");
        d2
    })
    .await
    .unwrap();
    request_reconcile(&repos, "fleet").await;
    let v = wait_obj(&repos, "fleet", "foreign signature refused", |v| {
        verified(v).is_some_and(|c| c.0 == "False" && c.2.contains(&d2))
    })
    .await;
    assert!(verified(&v).unwrap().2.contains("cosign.pub"));
    assert_eq!(
        v["status"]["artifact"]["revision"],
        json!(rev),
        "last verified artifact kept"
    );

    // Keyless cannot be done offline: refused, clearly.
    oci_repo(
        &repos,
        "keyless",
        json!({"url": u, "ref": {"tag": "v1"},
        "verify": {"provider": "cosign"}}),
    )
    .await;
    let v = wait_obj(
        &repos,
        "keyless",
        "keyless refused",
        failed_with("VerificationError"),
    )
    .await;
    assert!(ready(v.get("status")).unwrap().2.contains("keyless"));

    // A HelmChart from an OCI HelmRepository: signed by the trusted key verifies; a key
    // Secret holding only another key refuses.
    let host = reg.host();
    let chart_url = format!("oci://{host}/charts/podinfo");
    let cu = chart_url.clone();
    let sk = keys.path().to_path_buf();
    let reg = tokio::task::spawn_blocking(move || {
        crate::ocirepository::helm_push(&reg, "1.0.0");
        let digest = client_for(&cu, None).head_manifest("1.0.0").unwrap();
        cosign_sign(&cu, &digest, &sk, "trusted");
        reg
    })
    .await
    .unwrap();
    secret(
        &secrets,
        "other-keys",
        "Opaque",
        json!({"other.pub": std::fs::read_to_string(keys.path().join("other.pub")).unwrap()}),
    )
    .await;
    let hrepos: Api<HelmRepository> = Api::namespaced(client.clone(), &n);
    let hrepo: HelmRepository = serde_json::from_value(json!({
        "apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "HelmRepository",
        "metadata": {"name": "charts"},
        "spec": {"type": "oci", "url": format!("oci://{host}/charts"), "insecure": true,
                 "interval": "1h"}
    }))
    .unwrap();
    hrepos.create(&PostParams::default(), &hrepo).await.unwrap();
    let charts: Api<HelmChart> = Api::namespaced(client.clone(), &n);
    for (name, keys) in [("good", "cosign-keys"), ("bad", "other-keys")] {
        let c: HelmChart = serde_json::from_value(json!({
            "apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "HelmChart",
            "metadata": {"name": name},
            "spec": {"chart": "podinfo", "version": "1.x", "interval": "1h",
                     "sourceRef": {"kind": "HelmRepository", "name": "charts"},
                     "verify": {"provider": "cosign", "secretRef": {"name": keys}}}
        }))
        .unwrap();
        charts.create(&PostParams::default(), &c).await.unwrap();
    }
    let v = wait_obj(&charts, "good", "chart verified", |v| {
        v["status"]["artifact"]["revision"] == "1.0.0"
    })
    .await;
    assert_eq!(verified(&v).unwrap().0, "True");
    let v = wait_obj(
        &charts,
        "bad",
        "chart refused",
        failed_with("VerificationError"),
    )
    .await;
    assert!(v["status"].get("artifact").is_none());
    assert_eq!(verified(&v).unwrap().0, "False");
    drop(reg);
    ns.delete().await.unwrap();
}

#[tokio::test]
async fn oci_repository_pulls_with_service_account_secrets_through_a_proxy() {
    let info = ControlPlane::shared().unwrap();
    let client = info.admin_client().await.unwrap();
    install_crds(&client).await;
    let ns = TestNamespace::create(info, "oci-access").await.unwrap();
    let n = ns.name().to_string();
    let (user, pass) = ("puller", "reg-pw-7731");
    let (reg, proxy) = tokio::task::spawn_blocking(move || {
        let reg = Registry::start(RegistryOptions {
            htpasswd: Some((user, pass)),
            ..Default::default()
        })
        .unwrap();
        push(
            &format!("{}:v1", reg.oci_url("fleet")),
            "1",
            Some((user, pass)),
        );
        (
            reg,
            HttpProxy::start(Some(("proxyuser", "proxy-pw-5521"))).unwrap(),
        )
    })
    .await
    .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    start_plumb(info, &n, tmp.path()).await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &n);
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
    let docker = json!({"auths": {reg.host(): {"auth": auth}}}).to_string();
    secret(
        &secrets,
        "pull",
        "kubernetes.io/dockerconfigjson",
        json!({".dockerconfigjson": docker}),
    )
    .await;
    secret(
        &secrets,
        "proxy",
        "Opaque",
        json!({"address": proxy.address(),
        "username": "proxyuser", "password": "proxy-pw-5521"}),
    )
    .await;
    secret(
        &secrets,
        "bad-proxy",
        "Opaque",
        json!({"address": proxy.address(),
        "username": "proxyuser", "password": "wrong-proxy-pw"}),
    )
    .await;
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), &n);
    let sa: ServiceAccount = serde_json::from_value(json!({
        "metadata": {"name": "puller"}, "imagePullSecrets": [{"name": "pull"}]
    }))
    .unwrap();
    sas.create(&PostParams::default(), &sa).await.unwrap();

    let repos: Api<OCIRepository> = Api::namespaced(client.clone(), &n);
    let url = reg.oci_url("fleet");
    oci_repo(
        &repos,
        "fleet",
        json!({"url": url, "ref": {"tag": "v1"},
        "serviceAccountName": "puller", "proxySecretRef": {"name": "proxy"}}),
    )
    .await;
    wait_obj(&repos, "fleet", "pulled through the proxy", |v| {
        ready(v.get("status")).is_some_and(|r| r.0 == "True")
    })
    .await;
    assert!(
        proxy.logged(&format!("CONNECT {} ", reg.host()), Duration::from_secs(10)),
        "the registry was reached through the proxy: {}",
        proxy.log()
    );

    // Without the ServiceAccount: the registry refuses.
    oci_repo(
        &repos,
        "anonymous",
        json!({"url": url, "ref": {"tag": "v1"}}),
    )
    .await;
    wait_obj(
        &repos,
        "anonymous",
        "anonymous refused",
        failed_with("AuthenticationFailed"),
    )
    .await;

    // A wrong proxy password: a clear condition without the password.
    oci_repo(
        &repos,
        "bad-proxy",
        json!({"url": url, "ref": {"tag": "v1"},
        "serviceAccountName": "puller", "proxySecretRef": {"name": "bad-proxy"}}),
    )
    .await;
    let v = wait_obj(&repos, "bad-proxy", "proxy refused", |v| {
        ready(v.get("status")).is_some_and(|r| r.0 == "False")
    })
    .await;
    let msg = ready(v.get("status")).unwrap().2;
    assert!(
        !msg.contains("wrong-proxy-pw") && !msg.contains(pass),
        "{msg}"
    );
    assert!(
        msg.contains("407") || msg.to_lowercase().contains("proxy"),
        "{msg}"
    );
    drop((reg, proxy));
    ns.delete().await.unwrap();
}
