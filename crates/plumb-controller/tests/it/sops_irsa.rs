//! `spec.decryption.serviceAccountName` (object-level workload identity for AWS KMS)
//! against the real API server and moto: the controller's own AWS configuration has no
//! credentials at all, so a KMS-encrypted Secret decrypts only through the ServiceAccount
//! (TokenRequest, STS AssumeRoleWithWebIdentity in moto, whose record of the assumed role is
//! checked). A missing account waits, a missing annotation stalls and keeps what was
//! applied, an unreachable STS is transient; messages name the account, never a token.

use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams, PostParams};
use serde_json::{Value, json};

use crate::common::condition;
use crate::common::world::World;

const ROLE: &str = "arn:aws:iam::123456789012:role/sops-team";
const SECRET: &str = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: kms\nstringData:\n  key: irsa-decrypted-value\n";

fn data_key() -> [u8; 32] {
    let mut k = [0u8; 32];
    for (i, b) in k.iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(29).wrapping_add(3);
    }
    k
}

/// `SECRET` (renamed `name`) encrypted by sops for KMS key `arn` (no role, no context).
fn encrypted(arn: &str, blob: &[u8], name: &str) -> String {
    plumb_sops::encrypt_yaml(
        "kms.yaml",
        &SECRET.replace("name: kms", &format!("name: {name}")),
        &data_key(),
        &[plumb_sops::Recipient::Kms {
            arn: arn.to_string(),
            role: None,
            context: vec![],
            encrypted_key: blob.to_vec(),
        }],
        Some("^(data|stringData)$"),
    )
    .unwrap()
}

/// The controller's AWS configuration: `endpoint` for every service, no credentials.
async fn no_credentials(endpoint: &str) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .no_credentials()
        .load()
        .await
}

/// A KMS key in moto and `data_key()` encrypted under it (ARN, blob), made with static
/// credentials the controller never sees.
async fn kms_data_key(moto: &plumb_testing::moto::MotoServer) -> (String, Vec<u8>) {
    use aws_sdk_kms::primitives::Blob;
    let admin = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(moto.url())
        .credentials_provider(plumb_eks::Credentials::new(
            "AKIDADMIN",
            "secret",
            None,
            None,
            "test",
        ))
        .load()
        .await;
    let kms = aws_sdk_kms::Client::new(&admin);
    let key = kms.create_key().send().await.unwrap().key_metadata.unwrap();
    let arn = key.arn.unwrap();
    let blob = kms
        .encrypt()
        .key_id(&arn)
        .plaintext(Blob::new(data_key().to_vec()))
        .send()
        .await
        .unwrap()
        .ciphertext_blob
        .unwrap()
        .into_inner();
    (arn, blob)
}

async fn service_account(w: &World, name: &str, role: Option<&str>) {
    let mut sa = json!({"metadata": {"name": name, "namespace": w.n}});
    if let Some(r) = role {
        sa["metadata"]["annotations"] = json!({"eks.amazonaws.com/role-arn": r});
    }
    Api::<ServiceAccount>::namespaced(w.client.clone(), &w.n)
        .create(&PostParams::default(), &serde_json::from_value(sa).unwrap())
        .await
        .unwrap();
}

async fn ks_status(w: &World, name: &str) -> Value {
    serde_json::to_value(w.ks_api().get(name).await.unwrap()).unwrap()["status"].clone()
}

async fn secret_value(w: &World, name: &str) -> Option<String> {
    let s = Api::<Secret>::namespaced(w.client.clone(), &w.n)
        .get_opt(name)
        .await
        .unwrap()?;
    let v = s.data.unwrap_or_default().get("key")?.0.clone();
    Some(String::from_utf8(v).unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn decryption_service_account_decrypts_kms_through_sts() {
    let logs = crate::logsink::LogSink::install();
    let moto = tokio::task::spawn_blocking(plumb_testing::moto::MotoServer::start)
        .await
        .unwrap()
        .unwrap();
    let (arn, blob) = kms_data_key(&moto).await;
    let (a, b, c) = (
        encrypted(&arn, &blob, "kms"),
        encrypted(&arn, &blob, "kms-controller"),
        encrypted(&arn, &blob, "kms-later"),
    );
    let files = [
        ("sa/kms.yaml", a.as_str()),
        ("controller/kms.yaml", b.as_str()),
        ("later/kms.yaml", c.as_str()),
    ];
    let controller_kms = plumb_eks::kms::KmsDecryptor::new(no_credentials(&moto.url()).await);
    let w = World::new_with("sops-irsa", &files, |c| {
        c.sops_kms = Some(controller_kms);
    })
    .await;
    service_account(&w, "sops-decrypt", Some(ROLE)).await;
    service_account(&w, "no-annotation", None).await;

    w.create_ks(
        "sa",
        json!({"path": "./sa", "decryption": {"provider": "sops", "serviceAccountName": "sops-decrypt"}}),
    )
    .await;
    // The same file with the controller's identity: it has no credentials, so KMS fails.
    w.create_ks(
        "controller",
        json!({"path": "./controller", "decryption": {"provider": "sops"}}),
    )
    .await;
    w.create_ks(
        "later",
        json!({"path": "./later", "decryption": {"provider": "sops", "serviceAccountName": "later"}}),
    )
    .await;

    w.wait_ready("sa").await;
    assert_eq!(
        secret_value(&w, "kms").await.as_deref(),
        Some("irsa-decrypted-value")
    );
    let (_, reason, message) = w
        .wait_condition("controller", "controller identity fails", |r| {
            r.1 == "DecryptionFailed"
        })
        .await;
    assert_eq!(reason, "DecryptionFailed");
    assert!(
        secret_value(&w, "kms-controller").await.is_none(),
        "{message}"
    );

    // moto recorded the role assumed with a web identity, under Flux's session name.
    let data: Value = reqwest_json(&format!("{}/moto-api/data.json", moto.url())).await;
    let roles = data["sts"]["AssumedRole"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let session = format!("sops-decrypt.{}.us-east-1.fluxcd.io", w.n);
    assert!(
        roles
            .iter()
            .any(|r| r["role_arn"] == ROLE && r["session_name"] == session.as_str()),
        "no AssumeRoleWithWebIdentity for {session}: {roles:?}"
    );

    // A missing account waits (Reconciling), names the account, and recovers once created.
    let (_, reason, message) = w
        .wait_condition("later", "missing account", |r| r.1 == "DecryptionFailed")
        .await;
    assert_eq!(reason, "DecryptionFailed");
    assert!(message.contains(&format!("'{}/later'", w.n)), "{message}");
    assert!(message.contains("not found"), "{message}");
    let st = ks_status(&w, "later").await;
    assert_eq!(
        condition(Some(&st), "Reconciling").map(|c| c.0).as_deref(),
        Some("True"),
        "{st}"
    );
    assert_ne!(
        condition(Some(&st), "Stalled").map(|c| c.0).as_deref(),
        Some("True"),
        "{st}"
    );
    service_account(&w, "later", Some(ROLE)).await;
    w.wait_ready("later").await;
    assert_eq!(
        secret_value(&w, "kms-later").await.as_deref(),
        Some("irsa-decrypted-value")
    );

    // An account without the role annotation stalls; what was applied stays (no prune).
    w.patch_ks(
        "sa",
        json!({"spec": {"decryption": {"serviceAccountName": "no-annotation"}}}),
    )
    .await;
    let (_, reason, message) = w
        .wait_condition("sa", "no annotation", |r| r.1 == "DecryptionFailed")
        .await;
    assert_eq!(reason, "DecryptionFailed");
    assert!(
        message.contains(&format!("'{}/no-annotation'", w.n))
            && message.contains("eks.amazonaws.com/role-arn"),
        "{message}"
    );
    let st = ks_status(&w, "sa").await;
    assert_eq!(
        condition(Some(&st), "Stalled").map(|c| c.0).as_deref(),
        Some("True"),
        "{st}"
    );
    assert_eq!(
        secret_value(&w, "kms").await.as_deref(),
        Some("irsa-decrypted-value"),
        "the applied Secret was pruned"
    );

    let evs = serde_json::to_string(
        &Api::<Event>::namespaced(w.client.clone(), &w.n)
            .list(&ListParams::default())
            .await
            .unwrap()
            .items,
    )
    .unwrap();
    let statuses = format!(
        "{} {} {}",
        ks_status(&w, "sa").await,
        ks_status(&w, "later").await,
        ks_status(&w, "controller").await
    );
    for t in [logs.text(), evs, statuses] {
        assert!(
            !t.contains("irsa-decrypted-value"),
            "decrypted value leaked: {t}"
        );
        // ServiceAccount tokens are JWTs: base64url of '{"alg":...' starts with eyJ.
        assert!(!t.contains("eyJhbGci"), "a token leaked: {t}");
    }
    w.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn decryption_service_account_sts_unreachable_is_transient() {
    // Nothing listens there: STS (and KMS) are unreachable.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let arn = "arn:aws:kms:us-east-1:123456789012:key/11111111-2222-3333-4444-555555555555";
    let file = encrypted(arn, b"not-really-encrypted-by-kms", "kms");
    let controller_kms = plumb_eks::kms::KmsDecryptor::new(no_credentials(&url).await);
    let w = World::new_with("sops-irsa-sts", &[("sa/kms.yaml", file.as_str())], |c| {
        c.sops_kms = Some(controller_kms);
    })
    .await;
    service_account(&w, "sops-decrypt", Some(ROLE)).await;
    w.create_ks(
        "sa",
        json!({"path": "./sa", "decryption": {"provider": "sops", "serviceAccountName": "sops-decrypt"}}),
    )
    .await;
    let (status, reason, message) = w
        .wait_condition("sa", "STS unreachable", |r| r.1 == "DecryptionFailed")
        .await;
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "DecryptionFailed")
    );
    assert!(
        message.contains(&format!("serviceaccount '{}/sops-decrypt'", w.n))
            && message.contains(ROLE),
        "{message}"
    );
    let st = ks_status(&w, "sa").await;
    assert_ne!(
        condition(Some(&st), "Stalled").map(|c| c.0).as_deref(),
        Some("True"),
        "an unreachable STS is transient: {st}"
    );
    assert!(!message.contains("eyJhbGci"), "{message}");
    assert!(secret_value(&w, "kms").await.is_none());
    w.finish().await;
}

/// `plumb run --default-decryption-service-account`: a Kustomization naming no account
/// decrypts KMS keys with the default one in its namespace (never the controller's
/// identity); while that account is missing it waits, saying the cluster is locked down.
#[tokio::test(flavor = "multi_thread")]
async fn default_decryption_service_account_decrypts_kms_and_locks_down() {
    let moto = tokio::task::spawn_blocking(plumb_testing::moto::MotoServer::start)
        .await
        .unwrap()
        .unwrap();
    let (arn, blob) = kms_data_key(&moto).await;
    let file = encrypted(&arn, &blob, "kms");
    let controller_kms = plumb_eks::kms::KmsDecryptor::new(no_credentials(&moto.url()).await);
    let w = World::new_with("sops-default-sa", &[("t/kms.yaml", file.as_str())], |c| {
        c.sops_kms = Some(controller_kms);
        c.default_decryption_service_account = Some("tenant-kms".into());
    })
    .await;
    w.create_ks(
        "t",
        json!({"path": "./t", "decryption": {"provider": "sops"}}),
    )
    .await;
    let (_, reason, message) = w
        .wait_condition("t", "default account missing", |r| {
            r.1 == "DecryptionFailed"
        })
        .await;
    assert_eq!(reason, "DecryptionFailed");
    assert!(
        message.contains(&format!("'{}/tenant-kms'", w.n))
            && message.contains("--default-decryption-service-account")
            && message.contains("lockdown"),
        "{message}"
    );
    let st = ks_status(&w, "t").await;
    assert_ne!(
        condition(Some(&st), "Stalled").map(|c| c.0).as_deref(),
        Some("True"),
        "a missing account is waited for: {st}"
    );
    assert!(secret_value(&w, "kms").await.is_none());

    service_account(&w, "tenant-kms", Some(ROLE)).await;
    w.wait_ready("t").await;
    assert_eq!(
        secret_value(&w, "kms").await.as_deref(),
        Some("irsa-decrypted-value")
    );
    let data: Value = reqwest_json(&format!("{}/moto-api/data.json", moto.url())).await;
    let roles = data["sts"]["AssumedRole"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let session = format!("tenant-kms.{}.us-east-1.fluxcd.io", w.n);
    assert!(
        roles
            .iter()
            .any(|r| r["role_arn"] == ROLE && r["session_name"] == session.as_str()),
        "no AssumeRoleWithWebIdentity for {session}: {roles:?}"
    );
    w.finish().await;
}

/// GET `url` as JSON (moto's state dump).
async fn reqwest_json(url: &str) -> Value {
    let url = url.to_string();
    tokio::task::spawn_blocking(move || {
        let rest = url.strip_prefix("http://").unwrap();
        let (host, path) = rest.split_at(rest.find('/').unwrap());
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(host).unwrap();
        write!(s, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").unwrap();
        let mut body = String::new();
        s.read_to_string(&mut body).unwrap();
        let json = &body[body.find("\r\n\r\n").unwrap() + 4..];
        serde_json::from_str(json).unwrap()
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn decryption_service_account_token_request_denied_is_stalled() {
    use kube::api::{DeleteParams, DynamicObject};
    use kube::core::{ApiResource, GroupVersionKind};
    use plumb_testing::{ControlPlane, TestNamespace};

    // plumb runs as the chart's ServiceAccount, its ClusterRole without the
    // serviceaccounts/token rule: the TokenRequest is denied.
    let info = ControlPlane::shared().unwrap();
    let admin = info.admin_client().await.unwrap();
    let ctl = TestNamespace::create(info, "irsa-ctl").await.unwrap();
    let c = ctl.name().to_string();
    let mut objects = crate::rbac::chart_rbac(&c, &c);
    for o in &mut objects {
        if o["kind"] == "ClusterRole" {
            let rules = o["rules"].as_array_mut().unwrap();
            let before = rules.len();
            rules.retain(|r| r["resources"] != json!(["serviceaccounts/token"]));
            assert_eq!(
                rules.len(),
                before - 1,
                "the chart grants serviceaccounts/token"
            );
        }
    }
    let (cluster_scoped, cfg, _tmp) =
        crate::rbac::install_chart_rbac(info, &admin, &c, objects).await;

    let arn = "arn:aws:kms:us-east-1:123456789012:key/11111111-2222-3333-4444-555555555555";
    let file = encrypted(arn, b"not-really-encrypted-by-kms", "kms");
    let controller_kms =
        plumb_eks::kms::KmsDecryptor::new(no_credentials("http://127.0.0.1:9").await);
    let w = World::new_as(
        info,
        cfg,
        "sops-irsa-deny",
        &[("sa/kms.yaml", file.as_str())],
        |c| {
            c.sops_kms = Some(controller_kms);
        },
    )
    .await;
    service_account(&w, "sops-decrypt", Some(ROLE)).await;
    w.create_ks(
        "sa",
        json!({"path": "./sa", "decryption": {"provider": "sops", "serviceAccountName": "sops-decrypt"}}),
    )
    .await;
    let (_, reason, message) = w
        .wait_condition("sa", "TokenRequest denied", |r| r.1 == "DecryptionFailed")
        .await;
    assert_eq!(reason, "DecryptionFailed");
    assert!(
        message.contains(&format!("serviceaccount '{}/sops-decrypt'", w.n))
            && message.contains("TokenRequest")
            && message.contains("forbidden"),
        "{message}"
    );
    let st = ks_status(&w, "sa").await;
    assert_eq!(
        condition(Some(&st), "Stalled").map(|c| c.0).as_deref(),
        Some("True"),
        "a denied TokenRequest needs an RBAC change: {st}"
    );
    assert!(secret_value(&w, "kms").await.is_none());
    w.finish().await;
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
    ctl.delete().await.unwrap();
}
