//! Data-key caches.
//!
//! Opening a data key is the expensive step of decrypting a small file (an X25519 agreement
//! for age, an RSA or ECDH operation for OpenPGP, a network call for KMS). Two caches avoid
//! repeating it:
//! - [`Session`]: one reconcile's keys, every master-key kind, KMS included. The first
//!   thread to need a wrapped key opens it while the others wait, so a wrapped key shared by
//!   many files costs one KMS call per reconcile, failures included. It dies with the
//!   reconcile's [`KeyRing`](crate::KeyRing), so a revoked KMS grant bites on the next one.
//! - [`DataKeyCache`]: across reconciles, for local key material only (age, OpenPGP). An
//!   entry is keyed by a fingerprint of the whole ring's secret keys *and* the SHA-256 of
//!   the wrapped data key, so only a ring holding exactly the same secret keys (which could
//!   open the stanza itself) ever gets a hit. Bounded (two generations, least recently used
//!   dropped first); keys are zeroized when dropped.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use regex::Regex;
use sha2::{Digest, Sha256};
use zeroize::Zeroize;

/// A 32-byte data key, zeroized on drop and boxed so maps move a pointer, not the key.
pub(crate) struct DataKey(Box<[u8; 32]>);

impl DataKey {
    pub(crate) fn new(bytes: [u8; 32]) -> DataKey {
        DataKey(Box::new(bytes))
    }

    pub(crate) fn bytes(&self) -> &[u8; 32] {
        &self.0
    }

    fn duplicate(&self) -> DataKey {
        DataKey::new(*self.0)
    }
}

impl Drop for DataKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

/// Which master key wrapped a data key (domain separation of the stanza hash).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wrap {
    Age,
    Pgp,
    Kms,
}

/// SHA-256 of a wrapped data key, tagged with its kind.
pub(crate) fn stanza_id(kind: Wrap, enc: &str) -> [u8; 32] {
    let tag: &[u8] = match kind {
        Wrap::Age => b"age\0",
        Wrap::Pgp => b"pgp\0",
        Wrap::Kms => b"kms\0",
    };
    let mut h = Sha256::new();
    h.update(tag);
    h.update(enc.trim().as_bytes());
    h.finalize().into()
}

type Opened = Result<Arc<DataKey>, String>;

/// One reconcile's state, shared by the clones of its ring: data keys by wrapped key (every
/// kind), and the compiled `encrypted_regex`-style patterns.
#[derive(Default)]
pub(crate) struct Session {
    keys: Mutex<HashMap<[u8; 32], Arc<OnceLock<Opened>>>>,
    regexes: Mutex<HashMap<String, Regex>>,
    /// Documents this session decrypted (not served from the kept documents).
    decrypted: std::sync::atomic::AtomicUsize,
}

/// Most distinct patterns a session keeps compiled.
const MAX_REGEXES: usize = 64;

impl Session {
    /// The data key of `id`, opened by `open` by the first caller; concurrent callers of the
    /// same `id` wait for it. A failure is remembered too.
    pub(crate) fn note_decrypted(&self) {
        self.decrypted
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    pub(crate) fn decrypted(&self) -> usize {
        self.decrypted.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub(crate) fn data_key(&self, id: [u8; 32], open: impl FnOnce() -> Opened) -> Opened {
        let cell = {
            let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
            keys.entry(id).or_default().clone()
        };
        cell.get_or_init(open).clone()
    }

    /// `pattern` compiled, once per session.
    pub(crate) fn regex(&self, pattern: &str) -> Result<Regex, regex::Error> {
        let mut map = self.regexes.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(r) = map.get(pattern) {
            return Ok(r.clone());
        }
        let r = Regex::new(pattern)?;
        if map.len() < MAX_REGEXES {
            map.insert(pattern.to_string(), r.clone());
        }
        Ok(r)
    }
}

/// Data keys opened with local key material (age, OpenPGP), kept across reconciles; see the
/// module docs. Share one per process (`Arc`) and attach it to each ring with
/// [`KeyRing::set_data_key_cache`](crate::KeyRing::set_data_key_cache).
pub struct DataKeyCache {
    inner: Mutex<Generations>,
    capacity: usize,
    /// Whole decrypted documents, same keying and rules (see `plain_cache`).
    plain: crate::plain_cache::PlainCache,
    /// Trees whose last build decrypted nothing (every document was kept): a hint that
    /// decrypting ahead would only read files twice.
    warm_trees: Mutex<std::collections::HashSet<[u8; 32]>>,
    /// OpenPGP key blocks already parsed, by the SHA-256 of their armored text: each
    /// reconcile builds its ring from the decryption Secret again, and parsing an RSA
    /// secret key costs more than serving a warm tree.
    pgp_blocks: Mutex<HashMap<[u8; 32], ParsedPgp>>,
}

/// The keys of one armored OpenPGP block, with the digest of each for the ring fingerprint.
pub(crate) type ParsedPgp = Arc<Vec<(pgp::composed::SignedSecretKey, [u8; 32])>>;

/// Most parsed OpenPGP blocks kept (a fleet has few distinct decryption Secrets).
const MAX_PGP_BLOCKS: usize = 64;

/// Two generations: lookups promote from `old` to `young`; when `young` is full it becomes
/// `old` and the previous `old` is dropped (so at most `capacity` entries are held).
#[derive(Default)]
struct Generations {
    young: HashMap<[u8; 64], DataKey>,
    old: HashMap<[u8; 64], DataKey>,
}

impl Default for DataKeyCache {
    fn default() -> Self {
        DataKeyCache::with_capacity(DataKeyCache::DEFAULT_CAPACITY)
    }
}

impl std::fmt::Debug for DataKeyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataKeyCache")
            .field("len", &self.len())
            .field("capacity", &self.capacity)
            .finish()
    }
}

impl DataKeyCache {
    /// Entries kept by [`DataKeyCache::default`]: a fleet of a few thousand encrypted files.
    pub const DEFAULT_CAPACITY: usize = 8192;

    /// Bytes of decrypted documents kept at most (as many documents as data keys).
    pub const PLAINTEXT_BYTES: usize = 64 << 20;

    /// A cache holding at most `capacity` data keys (at least 2).
    pub fn with_capacity(capacity: usize) -> DataKeyCache {
        DataKeyCache {
            inner: Mutex::new(Generations::default()),
            capacity: capacity.max(2),
            plain: crate::plain_cache::PlainCache::new(capacity, Self::PLAINTEXT_BYTES),
            warm_trees: Mutex::default(),
            pgp_blocks: Mutex::default(),
        }
    }

    /// How many data keys are held.
    pub fn len(&self) -> usize {
        let g = self.lock();
        g.young.len() + g.old.len()
    }

    /// Whether no data key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many decrypted documents are held.
    pub fn documents(&self) -> usize {
        self.plain.len()
    }

    /// Drops every entry (zeroizing the keys and documents).
    pub fn clear(&self) {
        let mut g = self.lock();
        g.young.clear();
        g.old.clear();
        self.plain.clear();
        self.warm_trees
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        self.pgp_blocks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    /// The keys of the armored block of SHA-256 `id`, if parsed before.
    pub(crate) fn pgp_block(&self, id: &[u8; 32]) -> Option<ParsedPgp> {
        let blocks = self.pgp_blocks.lock().unwrap_or_else(|p| p.into_inner());
        blocks.get(id).cloned()
    }

    /// Keeps the parsed keys of the armored block of SHA-256 `id`.
    pub(crate) fn keep_pgp_block(&self, id: [u8; 32], keys: ParsedPgp) {
        let mut blocks = self.pgp_blocks.lock().unwrap_or_else(|p| p.into_inner());
        // A memo, not state: forgetting every block at the bound costs one parse each.
        if blocks.len() >= MAX_PGP_BLOCKS && !blocks.contains_key(&id) {
            blocks.clear();
        }
        blocks.insert(id, keys);
    }

    pub(crate) fn plain(&self) -> &crate::plain_cache::PlainCache {
        &self.plain
    }

    pub(crate) fn tree_is_warm(&self, id: &[u8; 32]) -> bool {
        let trees = self.warm_trees.lock().unwrap_or_else(|p| p.into_inner());
        trees.contains(id)
    }

    pub(crate) fn set_tree_warm(&self, id: [u8; 32], warm: bool) {
        let mut trees = self.warm_trees.lock().unwrap_or_else(|p| p.into_inner());
        if !warm {
            trees.remove(&id);
            return;
        }
        // A hint, not state: forgetting every tree at the bound only costs one walk each.
        if trees.len() >= 4096 {
            trees.clear();
        }
        trees.insert(id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Generations> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn get(&self, ring: &[u8; 32], stanza: &[u8; 32]) -> Option<DataKey> {
        let id = entry_id(ring, stanza);
        let mut g = self.lock();
        if let Some(k) = g.young.get(&id) {
            return Some(k.duplicate());
        }
        let k = g.old.remove(&id)?;
        let out = k.duplicate();
        self.insert_locked(&mut g, id, k);
        Some(out)
    }

    pub(crate) fn insert(&self, ring: &[u8; 32], stanza: &[u8; 32], key: &DataKey) {
        let id = entry_id(ring, stanza);
        let mut g = self.lock();
        self.insert_locked(&mut g, id, key.duplicate());
    }

    fn insert_locked(&self, g: &mut Generations, id: [u8; 64], key: DataKey) {
        if g.young.len() >= self.capacity / 2 && !g.young.contains_key(&id) {
            g.old = std::mem::take(&mut g.young);
        }
        g.young.insert(id, key);
    }
}

fn entry_id(ring: &[u8; 32], stanza: &[u8; 32]) -> [u8; 64] {
    let mut id = [0u8; 64];
    id[..32].copy_from_slice(ring);
    id[32..].copy_from_slice(stanza);
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_and_most_recent_kept() {
        let c = DataKeyCache::with_capacity(4);
        let ring = [1u8; 32];
        for i in 0..10u8 {
            c.insert(&ring, &[i; 32], &DataKey::new([i; 32]));
            assert!(c.len() <= 4, "{} entries", c.len());
        }
        assert_eq!(c.get(&ring, &[9; 32]).map(|k| *k.bytes()), Some([9; 32]));
        assert!(c.get(&ring, &[0; 32]).is_none());
        // A hit in the old generation survives the next turnover.
        c.insert(&ring, &[20; 32], &DataKey::new([20; 32]));
        assert!(c.get(&ring, &[9; 32]).is_some());
        c.clear();
        assert!(c.is_empty());
    }

    #[test]
    fn another_ring_misses() {
        let c = DataKeyCache::default();
        c.insert(&[1; 32], &[7; 32], &DataKey::new([5; 32]));
        assert!(c.get(&[2; 32], &[7; 32]).is_none());
        assert!(c.get(&[1; 32], &[7; 32]).is_some());
    }

    #[test]
    fn session_opens_once_and_remembers_failures() {
        let s = Session::default();
        let mut calls = 0;
        for _ in 0..3 {
            let k = s.data_key([3; 32], || {
                calls += 1;
                Ok(Arc::new(DataKey::new([1; 32])))
            });
            assert!(k.is_ok());
        }
        assert_eq!(calls, 1);
        let mut failed = 0;
        for _ in 0..3 {
            let k = s.data_key([4; 32], || {
                failed += 1;
                Err("denied".into())
            });
            assert_eq!(k.err().as_deref(), Some("denied"));
        }
        assert_eq!(failed, 1);
    }
}
