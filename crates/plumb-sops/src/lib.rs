//! SOPS decryption for plumb: YAML, JSON, dotenv, INI and binary documents encrypted by
//! Mozilla/CNCF `sops` 3.x, with the data key from age X25519, OpenPGP or AWS KMS.
//!
//! Why hand-written: there is no maintained Rust SOPS crate, and plumb needs sops' exact
//! semantics (Flux's kustomize-controller links sops' Go packages). What this crate does, in
//! sops' terms:
//! - parse the document in its store format ([`Format`]), keeping key order (the MAC is a
//!   hash over values in document order) and reading the `sops` metadata (in dotenv and INI it
//!   is flattened into `sops_*` keys / a `[sops]` section);
//! - get the 32-byte data key from the first master key that opens it: age X25519 identities
//!   (the `age` crate, armored), OpenPGP secret keys (the `pgp` crate), or AWS KMS through the
//!   [`KmsDecrypt`] trait the caller implements (this crate has no AWS SDK, kube or tokio);
//!   age post-quantum recipients, HashiCorp Vault transit, GCP KMS, Azure Key Vault and Shamir
//!   key groups are reported as [`Error::Unsupported`];
//! - decrypt every value the metadata marks as encrypted (`encrypted_regex`,
//!   `unencrypted_regex`, `encrypted_suffix`, `unencrypted_suffix`) with AES-256-GCM, a
//!   32-byte nonce and the value's key path (`a:b:c:`) as additional data, and typed as
//!   recorded (`str`, `int`, `float`, `bool`, `bytes`);
//! - verify the MAC: SHA-512 over the plaintext values in order (only the encrypted ones when
//!   `mac_only_encrypted`), compared with the stored MAC, itself encrypted with
//!   `lastmodified` as additional data.
//!
//! Speed: opening a data key (X25519, OpenPGP, a KMS call) is most of the cost of a small
//! file, so a [`KeyRing`] opens each wrapped key once per reconcile (its session, shared by
//! clones and threads; KMS only ever cached there, so revocation bites on the next
//! reconcile), and a [`DataKeyCache`] keeps age and OpenPGP data keys across reconciles
//! under a fingerprint of the ring's secret keys, together with the documents they opened
//! (keyed by that fingerprint and the file's bytes, so an unchanged file costs a hash on the
//! next reconcile instead of a parse, a decryption per value and a MAC). YAML comes back as
//! block YAML (JSON scalars) so kustomize's fast reader takes it.
//!
//! Inputs are budgeted ([`Limits`]: bytes and nesting depth). Errors name the file and the
//! step, never a key, a ciphertext or a decrypted value.

mod cache;
mod cipher;
mod emit;
mod encrypt;
mod keys;
mod meta;
mod plain_cache;
mod stores;
mod tree;

use std::fmt;

pub use cache::DataKeyCache;
pub use encrypt::{Recipient, encrypt_yaml};
pub use keys::{KeyRing, KmsDecrypt, KmsKey};

/// Every failure of this crate. Messages name the file and the step; they never quote a key
/// or a value.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The document could not be parsed in its format.
    #[error("{file}: parsing the {format} document: {msg}")]
    Parse {
        /// The file.
        file: String,
        /// Its format.
        format: Format,
        /// What went wrong (no values quoted).
        msg: String,
    },
    /// The document is bigger or deeper than the budget.
    #[error("{file}: {msg}")]
    Budget {
        /// The file.
        file: String,
        /// Which budget.
        msg: String,
    },
    /// The `sops` metadata is missing a field or has an unknown version.
    #[error("{file}: invalid sops metadata: {msg}")]
    Metadata {
        /// The file.
        file: String,
        /// What is wrong.
        msg: String,
    },
    /// No master key of the file could be used to get the data key.
    #[error("{file}: failed to get the data key: {msg}")]
    DataKey {
        /// The file.
        file: String,
        /// Why each master key failed.
        msg: String,
    },
    /// A value failed to decrypt (tampered, wrong key).
    #[error("{file}: decrypting the value at '{path}' failed: {msg}")]
    Value {
        /// The file.
        file: String,
        /// The key path of the value (keys only, never the value).
        path: String,
        /// Why.
        msg: String,
    },
    /// The MAC does not match the values: the file was altered.
    #[error("{file}: MAC mismatch: the file was altered after encryption")]
    MacMismatch {
        /// The file.
        file: String,
    },
    /// The file uses a SOPS feature this crate does not implement.
    #[error("{file}: unsupported: {msg}")]
    Unsupported {
        /// The file.
        file: String,
        /// Which feature.
        msg: String,
    },
}

/// Result of this crate.
pub type Result<T> = std::result::Result<T, Error>;

/// SOPS store formats, chosen by file extension as sops and Flux do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `.yaml` / `.yml` (a stream of documents).
    Yaml,
    /// `.json`.
    Json,
    /// `.env`.
    Dotenv,
    /// `.ini`.
    Ini,
    /// Anything else: a JSON document `{"data": ..., "sops": ...}`.
    Binary,
}

impl Format {
    /// The format of `path` by its extension.
    pub fn from_path(path: &str) -> Format {
        let ext = path.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
        match ext.as_deref() {
            Some("yaml" | "yml") => Format::Yaml,
            Some("json") => Format::Json,
            Some("env") => Format::Dotenv,
            Some("ini") => Format::Ini,
            _ => Format::Binary,
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Yaml => "YAML",
            Format::Json => "JSON",
            Format::Dotenv => "dotenv",
            Format::Ini => "INI",
            Format::Binary => "binary",
        })
    }
}

/// Input budgets.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest document, in bytes.
    pub max_bytes: usize,
    /// Deepest nesting of maps and lists.
    pub max_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bytes: 8 << 20,
            max_depth: 64,
        }
    }
}

/// Whether `data` looks like a SOPS-encrypted document of `format`: the marker of its MAC
/// that Flux's decryptor looks for, so plain files skip parsing. A `true` is confirmed by
/// [`decrypt`].
pub fn looks_encrypted(format: Format, data: &[u8]) -> bool {
    // Called for every file of every build: a SIMD substring search, not a window scan.
    let has = |marker: &[u8]| memchr::memmem::find(data, marker).is_some();
    match format {
        // A JSON-style document is YAML too.
        Format::Yaml => has(b"mac: ENC[") || has(b"\"mac\":\"ENC[") || has(b"\"mac\": \"ENC["),
        Format::Binary | Format::Json => has(b"\"mac\": \"ENC[") || has(b"\"mac\":\"ENC["),
        Format::Dotenv => has(b"sops_mac=ENC["),
        Format::Ini => has(b"[sops]"),
    }
}

/// Flux's decryption of a Secret's `data` values that are themselves SOPS documents
/// (base64 of a binary or JSON-format file, format by the data key's name): each one
/// found is replaced by the base64 of its plaintext. Returns how many were decrypted.
/// Values that are not base64 are left for the apply to reject, as Flux does.
pub fn decrypt_secret_data(
    name: &str,
    object: &mut serde_json::Value,
    ring: &KeyRing,
    limits: &Limits,
) -> Result<usize> {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    if object.get("kind").and_then(|k| k.as_str()) != Some("Secret") {
        return Ok(0);
    }
    let Some(data) = object.get_mut("data").and_then(|d| d.as_object_mut()) else {
        return Ok(0);
    };
    let mut n = 0;
    for (key, value) in data.iter_mut() {
        let Some(Ok(raw)) = value.as_str().map(|v| STANDARD.decode(v)) else {
            continue;
        };
        if !looks_encrypted(Format::Binary, &raw) {
            continue;
        }
        let file = format!("{name} data.{key}");
        if let Some(plain) = decrypt(&file, Format::from_path(key), &raw, ring, limits)? {
            *value = serde_json::Value::String(STANDARD.encode(plain));
            n += 1;
        }
    }
    Ok(n)
}

/// Decrypts the SOPS document `data` (named `file` in errors) of `format` with the keys of
/// `ring`, verifying its MAC. Returns the plaintext in the same format: YAML documents come
/// back as block-style YAML whose scalars are JSON tokens (types and key order kept; plain
/// manifests for kustomize's fast reader), JSON as JSON, binary as the raw bytes.
/// Returns `Ok(None)` when the document carries no `sops` metadata.
pub fn decrypt(
    file: &str,
    format: Format,
    data: &[u8],
    ring: &KeyRing,
    limits: &Limits,
) -> Result<Option<Vec<u8>>> {
    if data.len() > limits.max_bytes {
        return Err(Error::Budget {
            file: file.to_string(),
            msg: format!(
                "document of {} bytes is over the {}-byte limit",
                data.len(),
                limits.max_bytes
            ),
        });
    }
    let plain_id = ring.plain_id(format, data);
    if let Some(plain) = plain_id.as_ref().and_then(|id| ring.kept_plain(id)) {
        return Ok(Some(plain));
    }
    let Some(mut doc) = stores::parse(file, format, data, limits)? else {
        return Ok(None);
    };
    let meta = meta::Metadata::from_node(file, &doc.metadata, ring.session())?;
    let (key, local) = ring.data_key(file, &meta)?;
    let key = key.bytes();
    let mac = tree::decrypt_branches(file, &mut doc.branches, &meta, key, limits.max_depth)?;
    cipher::verify_mac(file, &meta, key, &mac)?;
    let plain = stores::emit(file, format, &doc.branches)?;
    ring.session().note_decrypted();
    if local && let Some(id) = plain_id {
        ring.keep_plain(id, &plain);
    }
    Ok(Some(plain))
}
