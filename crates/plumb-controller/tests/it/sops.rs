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
