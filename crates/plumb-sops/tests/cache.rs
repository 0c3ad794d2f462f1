//! Data-key caching: across reconciles only for the same local keys, per reconcile only
//! for KMS (one call per wrapped key, even from several threads), and the block YAML the
//! decryption writes reads back as the document.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};

use plumb_sops::{
    DataKeyCache, Error, Format, KeyRing, KmsDecrypt, KmsKey, Limits, Recipient, decrypt,
    encrypt_yaml,
};

const RECIPIENT: &str = "age1l44xcng8dqj32nlv6d930qvvrny05hglzcv9qpc7kxjc6902ma4qufys29";
const SECRET: &str =
    "apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\nstringData:\n  key: value\n";

fn key_file(name: &str) -> String {
    std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/keys")
            .join(name),
    )
    .unwrap()
}

fn ring_of(files: &[&str], cache: &Arc<DataKeyCache>) -> KeyRing {
    let mut r = KeyRing::new();
    for f in files {
        r.add_age_identities(f, &key_file(f)).unwrap();
    }
    r.set_data_key_cache(cache.clone());
    r
}

fn age_file(data_key: [u8; 32]) -> String {
    encrypt_yaml(
        "s.yaml",
        SECRET,
        &data_key,
        &[Recipient::Age(RECIPIENT.into())],
        None,
    )
    .unwrap()
}

fn run(text: &str, ring: &KeyRing) -> Result<String, Error> {
    let out = decrypt(
        "s.yaml",
        Format::Yaml,
        text.as_bytes(),
        ring,
        &Limits::default(),
    )?;
    Ok(String::from_utf8(out.unwrap()).unwrap())
}

#[test]
fn cached_data_keys_serve_only_a_ring_with_the_same_keys() {
    let cache = Arc::new(DataKeyCache::default());
    let file = age_file([9; 32]);
    let owner = ring_of(&["age.txt"], &cache);
    assert!(run(&file, &owner).unwrap().contains("value"));
    assert_eq!(cache.len(), 1);

    // The next reconcile of the same tenant: a hit (nothing new stored).
    let again = ring_of(&["age.txt"], &cache);
    assert!(run(&file, &again).is_ok());
    assert!(run(&file, &owner.next_session()).is_ok());
    assert_eq!(cache.len(), 1);

    // A tenant without the key never gets the cached data key.
    let other = ring_of(&["age-global.txt"], &cache);
    assert!(matches!(run(&file, &other), Err(Error::DataKey { .. })));
    // Nor does one with more keys: its own entry, opened with its own keys.
    let superset = ring_of(&["age-global.txt", "age.txt"], &cache);
    assert!(run(&file, &superset).is_ok());
    assert_eq!(cache.len(), 2);
}

#[test]
fn decrypted_documents_serve_only_the_same_keys_and_bytes() {
    let cache = Arc::new(DataKeyCache::default());
    let file = age_file([7; 32]);
    let owner = ring_of(&["age.txt"], &cache);
    let first = run(&file, &owner).unwrap();
    assert_eq!(cache.documents(), 1);

    // A later reconcile: the same plaintext, from the kept document (no new entry).
    assert_eq!(run(&file, &ring_of(&["age.txt"], &cache)).unwrap(), first);
    assert_eq!(cache.documents(), 1);

    // Another tenant's ring never gets the document.
    let other = ring_of(&["age-global.txt"], &cache);
    assert!(matches!(run(&file, &other), Err(Error::DataKey { .. })));

    // Other bytes miss, so a tampered copy is still checked (MAC) and refused.
    let tampered = file.replacen(
        "\"mac\":\"ENC[AES256_GCM,data:",
        "\"mac\":\"ENC[AES256_GCM,data:A",
        1,
    );
    assert_ne!(tampered, file);
    assert!(run(&tampered, &owner.next_session()).is_err());
    assert_eq!(cache.documents(), 1);

    cache.clear();
    assert_eq!(cache.documents(), 0);
}

#[test]
fn a_ring_without_the_cache_stores_nothing() {
    let cache = Arc::new(DataKeyCache::default());
    let mut plain = KeyRing::new();
    plain
        .add_age_identities("age.txt", &key_file("age.txt"))
        .unwrap();
    assert!(run(&age_file([3; 32]), &plain).is_ok());
    assert!(cache.is_empty());
}

/// A KMS stand-in: counts calls and can be revoked.
#[derive(Default)]
struct FakeKms {
    calls: AtomicUsize,
    revoked: AtomicBool,
}

const KMS_KEY: [u8; 32] = [5; 32];

impl KmsDecrypt for FakeKms {
    fn decrypt(&self, _key: &KmsKey, ciphertext: &[u8]) -> Result<Vec<u8>, String> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        std::thread::sleep(std::time::Duration::from_millis(5));
        if self.revoked.load(Ordering::SeqCst) {
            return Err("AccessDeniedException".into());
        }
        assert_eq!(ciphertext, b"wrapped-by-kms");
        Ok(KMS_KEY.to_vec())
    }
}

fn kms_file(name: &str) -> String {
    let text = SECRET.replace("name: s", &format!("name: {name}"));
    encrypt_yaml(
        "s.yaml",
        &text,
        &KMS_KEY,
        &[Recipient::Kms {
            arn: "arn:aws:kms:eu-west-1:111122223333:key/k".into(),
            role: None,
            context: vec![],
            encrypted_key: b"wrapped-by-kms".to_vec(),
        }],
        None,
    )
    .unwrap()
}

#[test]
fn kms_data_keys_are_cached_per_reconcile_only() {
    let kms = Arc::new(FakeKms::default());
    let cache = Arc::new(DataKeyCache::default());
    let mut ring = KeyRing::new();
    ring.set_kms(kms.clone());
    ring.set_data_key_cache(cache.clone());
    let files: Vec<String> = (0..8).map(|i| kms_file(&format!("s{i}"))).collect();

    // One reconcile, files decrypted from four threads at once: one KMS call.
    let start = Barrier::new(4);
    std::thread::scope(|s| {
        for chunk in files.chunks(2) {
            let (ring, start) = (ring.clone(), &start);
            s.spawn(move || {
                start.wait();
                for f in chunk {
                    assert!(run(f, &ring).unwrap().contains("value"));
                }
            });
        }
    });
    assert_eq!(kms.calls.load(Ordering::SeqCst), 1);
    assert!(cache.is_empty(), "KMS data keys never outlive a reconcile");
    assert_eq!(cache.documents(), 0, "nor do documents KMS opened");

    // The next reconcile asks KMS again, so a revoked grant bites.
    let next = ring.next_session();
    assert!(run(&files[0], &next).is_ok());
    assert_eq!(kms.calls.load(Ordering::SeqCst), 2);
    kms.revoked.store(true, Ordering::SeqCst);
    let revoked = ring.next_session();
    for f in &files {
        let err = run(f, &revoked).unwrap_err();
        assert!(err.to_string().contains("AccessDenied"), "{err}");
    }
    // The failure is remembered for the reconcile: still one call for the wrapped key.
    assert_eq!(kms.calls.load(Ordering::SeqCst), 3);
}

#[test]
fn block_yaml_reads_back_as_the_document() {
    let text = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\n  annotations:\n    a: \"0755\"\n    yes: \"on\"\nstringData:\n  \"key with space\": \"multi\\nline \\\"q\\\" \\\\ \\t\"\n  n: 5\n  f: 1.5\n  b: true\n  z: null\n  empty: \"\"\n  list:\n  - a: 1\n    b: [x, 2]\n  - [1, 2]\n  - {}\n  nested: {c: {d: []}}\n";
    let enc = encrypt_yaml(
        "s.yaml",
        text,
        &[1; 32],
        &[Recipient::Age(RECIPIENT.into())],
        Some("^stringData$"),
    )
    .unwrap();
    let cache = Arc::new(DataKeyCache::default());
    let out = run(&enc, &ring_of(&["age.txt"], &cache)).unwrap();
    assert!(!out.trim_start().starts_with('{'), "block style: {out}");
    let got: serde_json::Value = serde_saphyr::from_str(&out).unwrap();
    let want: serde_json::Value = serde_saphyr::from_str(text).unwrap();
    assert_eq!(got, want, "{out}");
}

#[test]
fn a_tree_is_warm_once_a_build_decrypts_nothing() {
    let cache = Arc::new(DataKeyCache::default());
    let file = age_file([6; 32]);
    let first = ring_of(&["age.txt"], &cache);
    assert!(!first.tree_is_warm("apps"));
    run(&file, &first).unwrap();
    assert_eq!(first.documents_decrypted(), 1);
    first.record_tree("apps");
    assert!(!first.tree_is_warm("apps"), "it decrypted a document");

    let second = ring_of(&["age.txt"], &cache);
    run(&file, &second).unwrap();
    assert_eq!(
        second.documents_decrypted(),
        0,
        "served from the kept document"
    );
    second.record_tree("apps");
    assert!(ring_of(&["age.txt"], &cache).tree_is_warm("apps"));
    assert!(!ring_of(&["age-global.txt"], &cache).tree_is_warm("apps"));
    assert!(!ring_of(&["age.txt"], &cache).tree_is_warm("other"));

    // A changed file is decrypted again, and the tree is no longer warm.
    let third = ring_of(&["age.txt"], &cache);
    run(&age_file([8; 32]), &third).unwrap();
    third.record_tree("apps");
    assert!(!third.tree_is_warm("apps"));
}

/// A ring built for the next reconcile reuses the OpenPGP keys parsed into the cache: the
/// same fingerprint (so the kept documents serve it), and a different block is parsed anew.
#[test]
fn parsed_pgp_keys_are_reused_under_the_same_fingerprint() {
    let cache = Arc::new(DataKeyCache::default());
    let pgp = key_file("pgp.asc");
    let ring = || {
        let mut r = KeyRing::new();
        r.set_data_key_cache(cache.clone());
        r.add_pgp_keys("pgp.asc", &pgp).unwrap();
        r
    };
    let file = std::fs::read(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/algorithms/pgp.yaml"),
    )
    .unwrap();
    let open = |r: &KeyRing| decrypt("p.yaml", Format::Yaml, &file, r, &Limits::default());
    let first = ring();
    let plain = open(&first).unwrap().unwrap();
    assert_eq!(first.documents_decrypted(), 1);
    let second = ring();
    assert_eq!(open(&second).unwrap().unwrap(), plain);
    assert_eq!(
        second.documents_decrypted(),
        0,
        "kept under the same fingerprint"
    );
    let mut bad = KeyRing::new();
    bad.set_data_key_cache(cache.clone());
    assert!(bad.add_pgp_keys("other", "not a key block").is_err());
}

/// With several age identities, the one of the recorded recipient opens the data key; an
/// identity listed first that is not the recipient's does not get in the way.
#[test]
fn the_recipients_identity_opens_among_several() {
    let cache = Arc::new(DataKeyCache::default());
    let r = ring_of(&["age-global.txt", "age.txt"], &cache);
    assert!(
        run(&age_file(rand::random()), &r)
            .unwrap()
            .contains("value")
    );
    let only_global = ring_of(&["age-global.txt"], &cache);
    let err = run(&age_file(rand::random()), &only_global).unwrap_err();
    assert!(matches!(err, Error::DataKey { .. }), "{err}");
}
