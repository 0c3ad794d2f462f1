//! `spec.decryption` against the real API server: the SOPS fixture tree (real sops output,
//! crates/plumb-sops/tests/data) reconciles with a decryption Secret and every expected value
//! lands; the global key; a tampered file fails with DecryptionFailed naming the file and
//! prunes nothing; no decrypted value or key shows in conditions, events or metrics.

use std::path::PathBuf;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams, PostParams};
use serde_json::json;

use crate::common::world::World;

fn fixture(rel: &str) -> String {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../plumb-sops/tests/data");
    std::fs::read_to_string(dir.join(rel)).unwrap()
}

/// The fixture tree without `remote/` (plumb refuses remote resources) and without the age
/// post-quantum Secret (unsupported); `algorithms/vault.yaml` is a plain Secret upstream.
fn tree() -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = [
        "algorithms/age.yaml",
        "algorithms/pgp.yaml",
        "algorithms/vault.yaml",
        "component/env.env",
        "component/kustomization.yaml",
        "envs/env.env",
        "envs/kustomization.yaml",
        "files/file.txt",
        "files/kustomization.yaml",
        "inside/kustomization.yaml",
        "inside/secret.yaml",
        "patches/kustomization.yaml",
        "patches/merge1.yaml",
        "patches/merge2.yaml",
    ]
    .iter()
    .map(|f| (f.to_string(), fixture(f)))
    .collect();
    files.push((
        "kustomization.yaml".into(),
        fixture("kustomization.yaml").replace("  - remote\n", ""),
    ));
    files.push((
        "algorithms/kustomization.yaml".into(),
        fixture("algorithms/kustomization.yaml").replace("  - age-pq.yaml\n", ""),
    ));
    files
}

fn refs(files: &[(String, String)]) -> Vec<(&str, &str)> {
    files
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect()
}

async fn key_secret(w: &World) {
    let s: Secret = serde_json::from_value(json!({
        "metadata": {"name": "sops-keys", "namespace": w.n},
        "stringData": {"age.agekey": fixture("keys/age.txt"), "pgp.asc": fixture("keys/pgp.asc")}
    }))
    .unwrap();
    Api::<Secret>::namespaced(w.client.clone(), &w.n)
        .create(&PostParams::default(), &s)
        .await
        .unwrap();
}

async fn secret_value(w: &World, name: &str, key: &str) -> String {
    let s = Api::<Secret>::namespaced(w.client.clone(), &w.n)
        .get(name)
        .await
        .unwrap_or_else(|e| panic!("secret {name}: {e}"));
    let data = s.data.unwrap_or_default();
    let v = data
        .get(key)
        .unwrap_or_else(|| panic!("{name} has no {key}"));
    String::from_utf8(v.0.clone()).unwrap()
}

/// Conditions, events and metrics hold no decrypted value and no key.
async fn assert_nothing_leaked(w: &World, ks: &serde_json::Value) {
    let evs = Api::<Event>::namespaced(w.client.clone(), &w.n)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    let texts = [
        serde_json::to_string(&ks["status"]).unwrap(),
        serde_json::to_string(&evs).unwrap(),
        w.ctx.metrics.encode(),
    ];
    for t in &texts {
        for needle in [
            "merge1",
            "merge2",
            "global-value",
            "AGE-SECRET-KEY",
            "PRIVATE KEY",
        ] {
            assert!(!t.contains(needle), "'{needle}' leaked into {t}");
        }
    }
}

fn tamper_mac(text: &str) -> String {
    let at = text.find("mac: ENC[AES256_GCM,data:").unwrap() + "mac: ENC[AES256_GCM,data:".len();
    let mut b = text.as_bytes().to_vec();
    b[at] = if b[at] == b'A' { b'B' } else { b'A' };
    String::from_utf8(b).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn sops_fixture_tree_reconciles_and_a_tampered_file_prunes_nothing() {
    let files = tree();
    let w = World::new("sops", &refs(&files)).await;
    key_secret(&w).await;
    w.create_ks(
        "secrets",
        json!({"decryption": {"provider": "sops", "secretRef": {"name": "sops-keys"}}}),
    )
    .await;
    let ks = w.wait_ready("secrets").await;
    for name in [
        "sops-algo-age",
        "sops-algo-pgp",
        "sops-algo-vault",
        "sops-component",
        "sops-envs-secret",
        "sops-files-secret",
        "sops-inside-secret",
    ] {
        assert_eq!(secret_value(&w, name, "key").await, "value", "{name}");
    }
    for name in ["sops-envs-configmap", "sops-files-configmap"] {
        let cm = Api::<ConfigMap>::namespaced(w.client.clone(), &w.n)
            .get(name)
            .await
            .unwrap();
        assert_eq!(cm.data.unwrap()["key"], "value", "{name}");
    }
    assert_eq!(
        secret_value(&w, "sops-patches-secret", "key").await,
        "merge1"
    );
    assert_eq!(
        secret_value(&w, "sops-patches-secret", "merge2").await,
        "merge2"
    );
    assert_nothing_leaked(&w, &ks).await;

    // A tampered MAC: DecryptionFailed naming the file; nothing pruned or changed.
    let bad = tamper_mac(&fixture("algorithms/age.yaml"));
    w.push(&[("algorithms/age.yaml", bad.as_str())], &[]).await;
    let (status, reason, message) = w
        .wait_condition("secrets", "decryption failure", |r| {
            r.1 == "DecryptionFailed"
        })
        .await;
    assert_eq!(status, "False");
    assert_eq!(reason, "DecryptionFailed");
    assert!(
        message.contains("algorithms/age.yaml") && message.contains("MAC"),
        "{message}"
    );
    assert_eq!(secret_value(&w, "sops-algo-age", "key").await, "value");
    assert_eq!(
        secret_value(&w, "sops-patches-secret", "key").await,
        "merge1"
    );
    let ks = serde_json::to_value(w.ks_api().get("secrets").await.unwrap()).unwrap();
    assert_nothing_leaked(&w, &ks).await;
    w.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sops_global_key_and_refusal_without_decryption() {
    let global = fixture("keys/age-global.txt");
    let files = [
        (
            "global/kustomization.yaml",
            fixture("global/kustomization.yaml"),
        ),
        ("global/secret.yaml", fixture("global/secret.yaml")),
    ];
    let files: Vec<(&str, &str)> = files.iter().map(|(a, b)| (*a, b.as_str())).collect();
    let w = World::new_with("sops-global", &files, |c| {
        c.global_decryption_keys
            .add_age_identities("global", &global)
            .unwrap();
    })
    .await;
    // Without spec.decryption the encrypted document is refused.
    w.create_ks("plain", json!({"path": "./global"})).await;
    let (_, reason, message) = w
        .wait_condition("plain", "refusal", |r| r.1 == "DecryptionFailed")
        .await;
    assert_eq!(reason, "DecryptionFailed", "{message}");
    assert!(
        Api::<Secret>::namespaced(w.client.clone(), &w.n)
            .get_opt("global-age-secret")
            .await
            .unwrap()
            .is_none()
    );
    // With spec.decryption and no Secret, the global key opens it.
    w.create_ks(
        "global",
        json!({"path": "./global", "decryption": {"provider": "sops"}}),
    )
    .await;
    let ks = w.wait_ready("global").await;
    assert_eq!(
        secret_value(&w, "global-age-secret", "key").await,
        "global-value"
    );
    assert_nothing_leaked(&w, &ks).await;
    w.finish().await;
}

/// A file whose data key is encrypted by moto's KMS, with an encryption context and a role
/// to assume, decrypts through the controller's KMS client; a file recording the wrong
/// context fails with DecryptionFailed naming it. Logs, events and the condition hold no
/// decrypted value.
#[tokio::test(flavor = "multi_thread")]
async fn sops_aws_kms_through_moto() {
    use aws_config::{BehaviorVersion, Region};
    use aws_sdk_kms::primitives::Blob;
    let logs = crate::logsink::LogSink::install();
    let moto = tokio::task::spawn_blocking(plumb_testing::moto::MotoServer::start)
        .await
        .unwrap()
        .unwrap();
    let sdk = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(moto.url())
        .credentials_provider(plumb_eks::Credentials::new(
            "AKIDTEST", "secret", None, None, "test",
        ))
        .load()
        .await;
    let kms = aws_sdk_kms::Client::new(&sdk);
    let arn = kms
        .create_key()
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap()
        .arn
        .unwrap();
    let data_key: [u8; 32] = rand_key();
    let context = vec![("purpose".to_string(), "plumb-sops-test".to_string())];
    let blob = kms
        .encrypt()
        .key_id(&arn)
        .plaintext(Blob::new(data_key.to_vec()))
        .encryption_context("purpose", "plumb-sops-test")
        .send()
        .await
        .unwrap()
        .ciphertext_blob
        .unwrap()
        .into_inner();
    let secret = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: kms\nstringData:\n  key: kms-decrypted-value\n";
    let recipient = |context: Vec<(String, String)>| plumb_sops::Recipient::Kms {
        arn: arn.clone(),
        role: Some("arn:aws:iam::123456789012:role/sops-decrypt".into()),
        context,
        encrypted_key: blob.clone(),
    };
    let good = plumb_sops::encrypt_yaml(
        "kms.yaml",
        secret,
        &data_key,
        &[recipient(context)],
        Some("^(data|stringData)$"),
    )
    .unwrap();
    let wrong = vec![("purpose".to_string(), "other".to_string())];
    let bad = plumb_sops::encrypt_yaml(
        "kms.yaml",
        &secret.replace("name: kms", "name: kms-bad"),
        &data_key,
        &[recipient(wrong)],
        Some("^(data|stringData)$"),
    )
    .unwrap();
    let files = [
        ("good/kms.yaml", good.as_str()),
        ("bad/kms.yaml", bad.as_str()),
    ];
    let kms_client = plumb_eks::kms::KmsDecryptor::new(sdk.clone());
    let w = World::new_with("sops-kms", &files, |c| c.sops_kms = Some(kms_client)).await;
    w.create_ks(
        "good",
        json!({"path": "./good", "decryption": {"provider": "sops"}}),
    )
    .await;
    w.create_ks(
        "bad",
        json!({"path": "./bad", "decryption": {"provider": "sops"}}),
    )
    .await;
    let ks = w.wait_ready("good").await;
    assert_eq!(secret_value(&w, "kms", "key").await, "kms-decrypted-value");
    let (_, reason, message) = w
        .wait_condition("bad", "KMS failure", |r| r.1 == "DecryptionFailed")
        .await;
    assert_eq!(reason, "DecryptionFailed");
    assert!(
        message.contains("bad/kms.yaml") && message.contains("kms"),
        "{message}"
    );
    assert!(
        Api::<Secret>::namespaced(w.client.clone(), &w.n)
            .get_opt("kms-bad")
            .await
            .unwrap()
            .is_none()
    );
    let evs = serde_json::to_string(
        &Api::<Event>::namespaced(w.client.clone(), &w.n)
            .list(&ListParams::default())
            .await
            .unwrap()
            .items,
    )
    .unwrap();
    for t in [
        logs.text(),
        evs,
        serde_json::to_string(&ks["status"]).unwrap(),
        message,
        w.ctx.metrics.encode(),
    ] {
        assert!(
            !t.contains("kms-decrypted-value"),
            "decrypted value leaked: {t}"
        );
    }
    w.finish().await;
}

fn rand_key() -> [u8; 32] {
    let mut k = [0u8; 32];
    for (i, b) in k.iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(37).wrapping_add(11);
    }
    k
}

/// The ServiceAccount of `spec.decryption.serviceAccountName` is read only when a file
/// needs AWS KMS: an age-only tree naming an account that does not exist reconciles.
#[tokio::test(flavor = "multi_thread")]
async fn sops_age_only_tree_does_not_read_the_decryption_service_account() {
    let files = [
        ("age/age.yaml", fixture("algorithms/age.yaml")),
        ("age/kustomization.yaml", "resources:\n- age.yaml\n".into()),
    ];
    let files: Vec<(&str, &str)> = files.iter().map(|(a, b)| (*a, b.as_str())).collect();
    let w = World::new("sops-lazy-sa", &files).await;
    key_secret(&w).await;
    w.create_ks(
        "age",
        json!({"path": "./age", "decryption": {"provider": "sops",
            "secretRef": {"name": "sops-keys"}, "serviceAccountName": "missing"}}),
    )
    .await;
    w.wait_ready("age").await;
    assert_eq!(secret_value(&w, "age", "key").await, "value");
    w.finish().await;
}
