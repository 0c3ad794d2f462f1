//! Decryption of real sops output (tests/data) per format and algorithm, and the failures.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use plumb_sops::{Error, Format, KeyRing, Limits, decrypt, looks_encrypted};

fn data(rel: &str) -> Vec<u8> {
    std::fs::read(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data")
            .join(rel),
    )
    .unwrap()
}

fn ring() -> KeyRing {
    let mut r = KeyRing::new();
    let age = String::from_utf8(data("keys/age.txt")).unwrap();
    r.add_age_identities("age.txt", &age).unwrap();
    let pgp = String::from_utf8(data("keys/pgp.asc")).unwrap();
    r.add_pgp_keys("pgp.asc", &pgp).unwrap();
    r
}

fn run(rel: &str, input: &[u8], ring: &KeyRing) -> Result<Option<Vec<u8>>, Error> {
    decrypt(rel, Format::from_path(rel), input, ring, &Limits::default())
}

fn plain(rel: &str) -> String {
    String::from_utf8(run(rel, &data(rel), &ring()).unwrap().unwrap()).unwrap()
}

/// Decrypted YAML is block YAML with JSON scalars; read it as YAML.
fn json(text: &str) -> serde_json::Value {
    serde_saphyr::from_str(text).unwrap()
}

#[test]
fn yaml_age() {
    let v = json(&plain("algorithms/age.yaml"));
    assert_eq!(v["stringData"]["key"], "value");
    assert_eq!(v["metadata"]["name"], "age");
    assert!(v.get("sops").is_none());
}

#[test]
fn yaml_pgp() {
    let v = json(&plain("algorithms/pgp.yaml"));
    assert_eq!(v["stringData"]["key"], "value");
}

#[test]
fn yaml_inside_and_patches() {
    let rel = "inside/secret.yaml";
    assert!(run(rel, &data(rel), &ring()).unwrap().is_none());
    let mut obj: serde_json::Value = serde_saphyr::from_slice(&data(rel)).unwrap();
    let n = plumb_sops::decrypt_secret_data(rel, &mut obj, &ring(), &Limits::default()).unwrap();
    assert_eq!(n, 1);
    assert_eq!(obj["data"]["key"], "dmFsdWU=");
    assert_eq!(
        json(&plain("patches/merge1.yaml"))["stringData"]["key"],
        "merge1"
    );
    assert_eq!(
        json(&plain("patches/merge2.yaml"))["stringData"]["merge2"],
        "merge2"
    );
}

#[test]
fn dotenv_age() {
    assert_eq!(plain("envs/env.env"), "key=value\n");
    assert_eq!(plain("component/env.env"), "key=value\n");
}

#[test]
fn binary_age() {
    assert_eq!(plain("files/file.txt"), "value");
}

#[test]
fn global_key() {
    let rel = "global/secret.yaml";
    assert!(matches!(
        run(rel, &data(rel), &ring()),
        Err(Error::DataKey { .. })
    ));
    let mut r = KeyRing::new();
    let k = String::from_utf8(data("keys/age-global.txt")).unwrap();
    r.add_age_identities("global", &k).unwrap();
    let out = run(rel, &data(rel), &r).unwrap().unwrap();
    let v = json(std::str::from_utf8(&out).unwrap());
    let key = v["data"]["key"]
        .as_str()
        .or(v["stringData"]["key"].as_str())
        .unwrap();
    assert!(key == "global-value" || key == "Z2xvYmFsLXZhbHVl", "{key}");
}

#[test]
fn plain_files_pass_through() {
    let k = data("kustomization.yaml");
    assert!(!looks_encrypted(Format::Yaml, &k));
    assert!(run("kustomization.yaml", &k, &ring()).unwrap().is_none());
    assert!(
        run("x.bin", b"\x00\x01 not json", &ring())
            .unwrap()
            .is_none()
    );
}

#[test]
fn wrong_or_missing_key_names_the_file() {
    let rel = "algorithms/age.yaml";
    let err = run(rel, &data(rel), &KeyRing::new()).unwrap_err();
    assert!(matches!(err, Error::DataKey { .. }));
    assert!(
        err.to_string().starts_with("algorithms/age.yaml: "),
        "{err}"
    );
    let mut other = KeyRing::new();
    let k = String::from_utf8(data("keys/age-global.txt")).unwrap();
    other.add_age_identities("global", &k).unwrap();
    assert!(matches!(
        run(rel, &data(rel), &other),
        Err(Error::DataKey { .. })
    ));
}

/// Replaces the first `ENC[...data:` payload's first base64 char after `marker`.
fn tamper(input: &[u8], marker: &str) -> Vec<u8> {
    let s = String::from_utf8(input.to_vec()).unwrap();
    let at = s.find(marker).unwrap() + marker.len();
    let rest = &s[at..];
    let d = rest.find("data:").unwrap() + "data:".len();
    let i = at + d;
    let mut b = s.into_bytes();
    b[i] = if b[i] == b'A' { b'B' } else { b'A' };
    b
}

#[test]
fn tampered_value_fails_naming_the_file() {
    let rel = "algorithms/age.yaml";
    let bad = tamper(&data(rel), "key: ");
    let err = run(rel, &bad, &ring()).unwrap_err();
    assert!(matches!(err, Error::Value { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("algorithms/age.yaml") && msg.contains("stringData:key"),
        "{msg}"
    );
    assert!(!msg.contains("value\""), "{msg}");
}

#[test]
fn tampered_mac_fails_naming_the_file() {
    let rel = "algorithms/age.yaml";
    let bad = tamper(&data(rel), "mac: ");
    let err = run(rel, &bad, &ring()).unwrap_err();
    assert!(matches!(err, Error::MacMismatch { .. }), "{err}");
    assert!(err.to_string().contains("algorithms/age.yaml"));
}

#[test]
fn altered_plain_value_breaks_the_mac() {
    let rel = "algorithms/age.yaml";
    let s = String::from_utf8(data(rel))
        .unwrap()
        .replace("name: age", "name: other");
    let err = run(rel, s.as_bytes(), &ring()).unwrap_err();
    assert!(matches!(err, Error::MacMismatch { .. }), "{err}");
    let s = String::from_utf8(data("envs/env.env"))
        .unwrap()
        .replace("sops_lastmodified=2024", "sops_lastmodified=2023");
    assert!(matches!(
        run("envs/env.env", s.as_bytes(), &ring()),
        Err(Error::MacMismatch { .. })
    ));
}

#[test]
fn unknown_version_is_refused() {
    let rel = "algorithms/age.yaml";
    let s = String::from_utf8(data(rel))
        .unwrap()
        .replace("version: 3.9.0", "version: 4.0.0");
    let err = run(rel, s.as_bytes(), &ring()).unwrap_err();
    assert!(err.to_string().contains("unknown format version"), "{err}");
}

#[test]
fn unsupported_master_keys_are_named() {
    let err = run(
        "algorithms/age-pq.yaml",
        &data("algorithms/age-pq.yaml"),
        &ring(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("post-quantum"), "{err}");
    let vault = String::from_utf8(data("algorithms/age.yaml"))
        .unwrap()
        .replace(
            "  hc_vault: []",
            "  hc_vault:\n    - vault_address: http://127.0.0.1:8200\n      enc: vault:v1:abc",
        )
        .replace("  age:", "  age_was:");
    let err = run("vault.yaml", vault.as_bytes(), &ring()).unwrap_err();
    assert!(err.to_string().contains("Vault"), "{err}");
    let pq = String::from_utf8(data("keys/age-pq.txt")).unwrap();
    assert!(matches!(
        KeyRing::new().add_age_identities("pq", &pq),
        Err(Error::Unsupported { .. })
    ));
}

#[test]
fn budgets() {
    let rel = "algorithms/age.yaml";
    let small = Limits {
        max_bytes: 100,
        max_depth: 64,
    };
    assert!(matches!(
        decrypt(rel, Format::Yaml, &data(rel), &ring(), &small),
        Err(Error::Budget { .. })
    ));
    let deep = format!(
        "{}1{}\nsops: {{mac: x, lastmodified: x, version: 3.9.0}}\n",
        "a: [".repeat(300),
        "]".repeat(300)
    );
    let err = decrypt(
        "deep.yaml",
        Format::Yaml,
        deep.as_bytes(),
        &ring(),
        &Limits::default(),
    )
    .unwrap_err();
    assert!(err.to_string().starts_with("deep.yaml: "), "{err}");
}

#[test]
fn errors_never_quote_keys() {
    let bad = "AGE-SECRET-KEY-1QQQQ-NOT-A-KEY";
    let err = KeyRing::new()
        .add_age_identities("k.agekey", bad)
        .unwrap_err();
    assert!(!err.to_string().contains("QQQQ"), "{err}");
}

#[test]
fn round_trip_through_the_test_encryptor() {
    let key = [7u8; 32];
    let rcpt = "age1l44xcng8dqj32nlv6d930qvvrny05hglzcv9qpc7kxjc6902ma4qufys29";
    let text = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\nstringData:\n  a: hello\n  n: 5\n  b: true\n";
    let enc = plumb_sops::encrypt_yaml(
        "s.yaml",
        text,
        &key,
        &[plumb_sops::Recipient::Age(rcpt.into())],
        Some("^(data|stringData)$"),
    )
    .unwrap();
    assert!(!enc.contains("hello"));
    let out = run("s.yaml", enc.as_bytes(), &ring()).unwrap().unwrap();
    let v = json(std::str::from_utf8(&out).unwrap());
    assert_eq!(v["stringData"]["a"], "hello", "{v}");
    assert_eq!(v["stringData"]["n"], 5, "{v} {enc}");
    assert_eq!(v["stringData"]["b"], true);
}
