//! Master keys: the key ring a caller fills (age identities, OpenPGP secret keys, a KMS
//! client) and getting a file's data key from it.

use std::io::Read;
use std::sync::{Arc, OnceLock};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use pgp::composed::{Deserializable, Message, SignedSecretKey};
use pgp::ser::Serialize;
use pgp::types::Password;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use age::secrecy::ExposeSecret;

use crate::cache::{DataKey, DataKeyCache, Session, Wrap, stanza_id};
use crate::meta::Metadata;
use crate::{Error, Result};

/// An AWS KMS master key as recorded in a file's metadata.
#[derive(Clone)]
pub struct KmsKey {
    /// The key ARN.
    pub arn: String,
    /// A role ARN to assume before calling KMS, if recorded.
    pub role: Option<String>,
    /// The encryption context, in the file's order.
    pub context: Vec<(String, String)>,
    /// The AWS profile recorded by sops (ignored in a cluster, as Flux does).
    pub aws_profile: Option<String>,
    /// The encrypted data key, base64.
    pub(crate) enc: String,
}

impl std::fmt::Debug for KmsKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KmsKey")
            .field("arn", &self.arn)
            .field("role", &self.role)
            .field("context", &self.context)
            .finish_non_exhaustive()
    }
}

/// Decrypts a data key with AWS KMS; implemented by the caller (plumb-eks), so this crate
/// has no AWS SDK and no async runtime. Called from a blocking context, possibly from
/// several threads at once (each wrapped key once per reconcile).
pub trait KmsDecrypt: Send + Sync {
    /// Decrypts `ciphertext` (the KMS blob) under `key` (ARN, encryption context, role).
    /// The error must not hold key material.
    fn decrypt(&self, key: &KmsKey, ciphertext: &[u8]) -> std::result::Result<Vec<u8>, String>;
}

/// The keys one decryption may use, for one reconcile. Clones share the reconcile's
/// [`Session`] (data keys opened once per wrapped key, KMS included); a fresh ring starts a
/// fresh one. Data keys opened with age or OpenPGP keys are also kept across reconciles in
/// the [`DataKeyCache`] set with [`KeyRing::set_data_key_cache`].
#[derive(Default, Clone)]
pub struct KeyRing {
    age: Vec<age::x25519::Identity>,
    pgp: Vec<SignedSecretKey>,
    kms: Option<Arc<dyn KmsDecrypt>>,
    /// SHA-256 of each local secret key (age and OpenPGP), for the ring's fingerprint.
    secrets: Vec<[u8; 32]>,
    fingerprint: OnceLock<[u8; 32]>,
    /// The recipient (public key) of each age identity, computed on the first open.
    age_recipients: OnceLock<Vec<String>>,
    session: Arc<Session>,
    cross: Option<Arc<DataKeyCache>>,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing")
            .field("age_identities", &self.age.len())
            .field("pgp_keys", &self.pgp.len())
            .field("kms", &self.kms.is_some())
            .field("data_key_cache", &self.cross.is_some())
            .finish()
    }
}

impl KeyRing {
    /// An empty ring.
    pub fn new() -> KeyRing {
        KeyRing::default()
    }

    /// Whether the ring holds no key and no KMS client.
    pub fn is_empty(&self) -> bool {
        self.age.is_empty() && self.pgp.is_empty() && self.kms.is_none()
    }

    /// Keeps data keys opened by this ring's age and OpenPGP keys in `cache` across
    /// reconciles, under this ring's fingerprint (KMS data keys never go there).
    pub fn set_data_key_cache(&mut self, cache: Arc<DataKeyCache>) {
        self.cross = Some(cache);
    }

    /// A ring with the same keys and caches but a fresh [`Session`]: what the next
    /// reconcile would build.
    pub fn next_session(&self) -> KeyRing {
        KeyRing {
            session: Arc::default(),
            ..self.clone()
        }
    }

    pub(crate) fn session(&self) -> &Session {
        &self.session
    }

    fn add_secret(&mut self, kind: &[u8], secret: &[u8]) {
        self.secrets.push(secret_digest(kind, secret));
        self.fingerprint = OnceLock::new();
    }

    /// SHA-256 over the sorted digests of the ring's secret keys: equal only for rings
    /// holding the same age and OpenPGP secret keys.
    fn fingerprint(&self) -> &[u8; 32] {
        self.fingerprint.get_or_init(|| {
            let mut digests = self.secrets.clone();
            digests.sort_unstable();
            digests.dedup();
            let mut h = Sha256::new();
            h.update(b"plumb-sops key ring v1\0");
            for d in &digests {
                h.update(d);
            }
            h.finalize().into()
        })
    }

    /// Adds the age X25519 identities of an identity file (`AGE-SECRET-KEY-1…` lines;
    /// comments and blank lines skipped). `name` names the source in errors. Post-quantum
    /// identities are refused as unsupported.
    pub fn add_age_identities(&mut self, name: &str, text: &str) -> Result<usize> {
        let mut n = 0;
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if line.starts_with("AGE-SECRET-KEY-PQ-") {
                return Err(Error::Unsupported {
                    file: name.to_string(),
                    msg: "age post-quantum (ML-KEM-768 + X25519) identities".into(),
                });
            }
            let id: age::x25519::Identity = line.parse().map_err(|_| Error::DataKey {
                file: name.to_string(),
                msg: "not an age X25519 identity file".into(),
            })?;
            self.add_secret(b"age-x25519\0", id.to_string().expose_secret().as_bytes());
            self.age.push(id);
            self.age_recipients = OnceLock::new();
            n += 1;
        }
        Ok(n)
    }

    /// Adds the OpenPGP secret keys of an armored key block (unprotected keys, as Flux
    /// requires). `name` names the source in errors. With a [`DataKeyCache`] set first, a
    /// block parsed by an earlier ring is not parsed again.
    pub fn add_pgp_keys(&mut self, name: &str, armored: &str) -> Result<usize> {
        let id: [u8; 32] = Sha256::digest(armored.as_bytes()).into();
        let keys = match self.cross.as_ref().and_then(|c| c.pgp_block(&id)) {
            Some(keys) => keys,
            None => {
                let keys = Arc::new(parse_pgp_block(name, armored)?);
                if let Some(c) = &self.cross {
                    c.keep_pgp_block(id, keys.clone());
                }
                keys
            }
        };
        for (k, digest) in keys.iter() {
            self.secrets.push(*digest);
            self.pgp.push(k.clone());
        }
        self.fingerprint = OnceLock::new();
        Ok(keys.len())
    }

    /// Uses `kms` for AWS KMS master keys.
    pub fn set_kms(&mut self, kms: Arc<dyn KmsDecrypt>) {
        self.kms = Some(kms);
    }

    /// Adds every key of `other` (and its KMS client if this ring has none).
    pub fn extend(&mut self, other: &KeyRing) {
        self.age.extend(other.age.iter().cloned());
        self.age_recipients = OnceLock::new();
        self.pgp.extend(other.pgp.iter().cloned());
        self.secrets.extend_from_slice(&other.secrets);
        self.fingerprint = OnceLock::new();
        if self.kms.is_none() {
            self.kms.clone_from(&other.kms);
        }
    }

    /// The data key of `file`: the first master key this ring opens.
    /// With it, whether local key material (age, OpenPGP) opened it: only then may the
    /// decrypted document outlive the reconcile.
    pub(crate) fn data_key(&self, file: &str, meta: &Metadata) -> Result<(Arc<DataKey>, bool)> {
        let mut tried: Vec<String> = Vec::new();
        for a in &meta.age {
            if a.recipient.starts_with("age1pq1") {
                tried.push("age post-quantum recipient (unsupported)".into());
                continue;
            }
            if self.age.is_empty() {
                tried.push("age: no age identity given".into());
                continue;
            }
            match self.local(Wrap::Age, &a.enc, || self.open_age(&a.recipient, &a.enc)) {
                Ok(k) => return Ok((k, true)),
                Err(e) => tried.push(format!("age {}: {e}", a.recipient)),
            }
        }
        for p in &meta.pgp {
            if self.pgp.is_empty() {
                tried.push("pgp: no OpenPGP key given".into());
                continue;
            }
            match self.local(Wrap::Pgp, &p.enc, || self.open_pgp(&p.enc)) {
                Ok(k) => return Ok((k, true)),
                Err(e) => tried.push(format!("pgp {}: {e}", p.fp)),
            }
        }
        for k in &meta.kms {
            let Some(kms) = &self.kms else {
                tried.push("kms: no AWS KMS client".into());
                continue;
            };
            let opened = self.session.data_key(stanza_id(Wrap::Kms, &k.enc), || {
                to_key(open_kms(kms.as_ref(), k)?).map(Arc::new)
            });
            match opened {
                Ok(d) => return Ok((d, false)),
                Err(e) => tried.push(format!("kms {}: {e}", k.arn)),
            }
        }
        for u in &meta.unsupported {
            tried.push(format!("{u} (unsupported)"));
        }
        if tried.is_empty() {
            tried.push("the file lists no master key".into());
        }
        Err(Error::DataKey {
            file: file.to_string(),
            msg: tried.join("; "),
        })
    }

    /// A data key wrapped for local key material: from this reconcile's session, else the
    /// cross-reconcile cache (under this ring's fingerprint), else opened and kept in both.
    fn local(
        &self,
        kind: Wrap,
        enc: &str,
        open: impl FnOnce() -> std::result::Result<Zeroizing<Vec<u8>>, String>,
    ) -> std::result::Result<Arc<DataKey>, String> {
        let stanza = stanza_id(kind, enc);
        self.session.data_key(stanza, || {
            let ring = self.fingerprint();
            if let Some(k) = self.cross.as_ref().and_then(|c| c.get(ring, &stanza)) {
                return Ok(Arc::new(k));
            }
            let key = to_key(open()?)?;
            if let Some(c) = &self.cross {
                c.insert(ring, &stanza, &key);
            }
            Ok(Arc::new(key))
        })
    }

    /// The id under which the decrypted `data` is kept across reconciles; `None` without a
    /// cross-reconcile cache.
    pub(crate) fn plain_id(&self, format: crate::Format, data: &[u8]) -> Option<[u8; 32]> {
        self.cross.as_ref()?;
        Some(crate::plain_cache::plain_id(
            self.fingerprint(),
            format,
            data,
        ))
    }

    /// How many documents this reconcile decrypted, as opposed to serving them from the
    /// documents kept by earlier reconciles (shared by the clones of this ring).
    pub fn documents_decrypted(&self) -> usize {
        self.session.decrypted()
    }

    fn tree_id(&self, tree: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(b"plumb-sops tree\0");
        h.update(self.fingerprint());
        h.update(tree.as_bytes());
        h.finalize().into()
    }

    /// Whether the last build of `tree` (any stable name, e.g. its path) with these keys
    /// decrypted nothing: its documents are all kept, so reading them ahead is wasted.
    /// Always `false` without a cross-reconcile cache.
    pub fn tree_is_warm(&self, tree: &str) -> bool {
        self.cross
            .as_ref()
            .is_some_and(|c| c.tree_is_warm(&self.tree_id(tree)))
    }

    /// Records whether this reconcile's build of `tree` decrypted nothing.
    pub fn record_tree(&self, tree: &str) {
        if let Some(c) = &self.cross {
            c.set_tree_warm(self.tree_id(tree), self.documents_decrypted() == 0);
        }
    }

    /// A decrypted document kept by an earlier reconcile of a ring with the same keys.
    pub(crate) fn kept_plain(&self, id: &[u8; 32]) -> Option<Vec<u8>> {
        self.cross.as_ref()?.plain().get(id)
    }

    /// Keeps a decrypted document for later reconciles.
    pub(crate) fn keep_plain(&self, id: [u8; 32], plain: &[u8]) {
        if let Some(c) = &self.cross {
            c.plain().insert(id, plain);
        }
    }

    fn open_age(
        &self,
        recipient: &str,
        enc: &str,
    ) -> std::result::Result<Zeroizing<Vec<u8>>, String> {
        let reader = age::armor::ArmoredReader::new(enc.as_bytes());
        let d = age::Decryptor::new(reader).map_err(|_| "not an age file".to_string())?;
        // Only the identity of the recipient sops recorded can open the stanza: with several
        // identities (the Secret's and the global ones) the others would each cost an X25519
        // agreement that fails. A recipient no identity matches tries them all.
        let recipients = self
            .age_recipients
            .get_or_init(|| self.age.iter().map(|i| i.to_public().to_string()).collect());
        let matching = || {
            self.age
                .iter()
                .zip(recipients)
                .filter(|(_, r)| r.as_str() == recipient.trim())
                .map(|(i, _)| i)
        };
        let ids: Vec<&age::x25519::Identity> = match matching().count() {
            0 => self.age.iter().collect(),
            _ => matching().collect(),
        };
        let ids = ids.into_iter().map(|i| i as &dyn age::Identity);
        let mut r = d
            .decrypt(ids)
            .map_err(|_| "no given age identity opens it".to_string())?;
        let mut out = Zeroizing::new(Vec::with_capacity(32));
        r.read_to_end(&mut out)
            .map_err(|_| "the age payload is corrupt".to_string())?;
        Ok(out)
    }

    fn open_pgp(&self, enc: &str) -> std::result::Result<Zeroizing<Vec<u8>>, String> {
        let (msg, _) =
            Message::from_string(enc).map_err(|_| "not an armored OpenPGP message".to_string())?;
        let pw = Password::empty();
        let mut last = "no given OpenPGP key opens it".to_string();
        // Message is consumed by decrypt; re-parse per key.
        let mut msg = Some(msg);
        for key in &self.pgp {
            let m = match msg.take() {
                Some(m) => m,
                None => {
                    Message::from_string(enc)
                        .map_err(|_| "not an armored OpenPGP message".to_string())?
                        .0
                }
            };
            match m.decrypt(&pw, key) {
                Ok(mut plain) => {
                    if plain.is_compressed() {
                        plain = plain
                            .decompress()
                            .map_err(|_| "corrupt compressed payload".to_string())?;
                    }
                    return plain
                        .as_data_vec()
                        .map(Zeroizing::new)
                        .map_err(|_| "corrupt OpenPGP payload".to_string());
                }
                Err(_) => last = "no given OpenPGP key opens it".to_string(),
            }
        }
        Err(last)
    }
}

/// SHA-256 of one secret key of `kind`, for the ring fingerprint.
fn secret_digest(kind: &[u8], secret: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(kind);
    h.update(secret);
    h.finalize().into()
}

/// The unprotected secret keys of an armored block, each with its fingerprint digest.
fn parse_pgp_block(name: &str, armored: &str) -> Result<Vec<(SignedSecretKey, [u8; 32])>> {
    let bad = || Error::DataKey {
        file: name.to_string(),
        msg: "not an armored OpenPGP secret key".into(),
    };
    let (keys, _) = SignedSecretKey::from_string_many(armored).map_err(|_| bad())?;
    let mut out = Vec::new();
    for k in keys {
        let k = k.map_err(|_| bad())?;
        let bytes = Zeroizing::new(k.to_bytes().map_err(|_| bad())?);
        out.push((k, secret_digest(b"openpgp\0", &bytes)));
    }
    if out.is_empty() {
        return Err(bad());
    }
    Ok(out)
}

fn open_kms(kms: &dyn KmsDecrypt, k: &KmsKey) -> std::result::Result<Zeroizing<Vec<u8>>, String> {
    let blob = STANDARD
        .decode(k.enc.trim())
        .map_err(|_| "the encrypted data key is not base64".to_string())?;
    kms.decrypt(k, &blob).map(Zeroizing::new)
}

/// The 32-byte data key of an opened payload.
fn to_key(plain: Zeroizing<Vec<u8>>) -> std::result::Result<DataKey, String> {
    let bytes: &[u8; 32] = plain
        .as_slice()
        .try_into()
        .map_err(|_| "the data key is not 32 bytes".to_string())?;
    Ok(DataKey::new(*bytes))
}
