//! Decrypted documents kept across reconciles, for files opened with local key material.
//!
//! Once the data-key cache makes opening a key free, what remains of decrypting a small
//! file is parsing it, decrypting each value and checking the MAC: about 30 us for a
//! three-value Secret, more than kustomize spends rendering it. A file whose bytes are
//! unchanged decrypts to the same plaintext, so the result is kept under the SHA-256 of the
//! ring's key fingerprint, the format and the file's bytes. Only a ring holding exactly the
//! same secret keys can hit, and only files whose data key came from age or OpenPGP are
//! kept (a KMS-wrapped file must reach KMS every reconcile, so revocation bites). Bounded by
//! entries and bytes (two generations, least recently used dropped first); plaintext is
//! zeroized when dropped.

use std::collections::HashMap;
use std::sync::Mutex;

use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::Format;

/// The bounded map of decrypted documents.
pub(crate) struct PlainCache {
    inner: Mutex<Generations>,
    max_entries: usize,
    max_bytes: usize,
}

#[derive(Default)]
struct Generations {
    young: HashMap<[u8; 32], Zeroizing<Vec<u8>>>,
    young_bytes: usize,
    old: HashMap<[u8; 32], Zeroizing<Vec<u8>>>,
}

/// The cache id of `data` of `format` for a ring of fingerprint `ring`.
pub(crate) fn plain_id(ring: &[u8; 32], format: Format, data: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"plumb-sops plaintext\0");
    h.update(ring);
    h.update(format.to_string().as_bytes());
    h.update([0]);
    h.update(data);
    h.finalize().into()
}

impl PlainCache {
    pub(crate) fn new(max_entries: usize, max_bytes: usize) -> PlainCache {
        PlainCache {
            inner: Mutex::new(Generations::default()),
            max_entries: max_entries.max(2),
            max_bytes: max_bytes.max(2),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Generations> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn len(&self) -> usize {
        let g = self.lock();
        g.young.len() + g.old.len()
    }

    pub(crate) fn clear(&self) {
        let mut g = self.lock();
        g.young.clear();
        g.old.clear();
        g.young_bytes = 0;
    }

    pub(crate) fn get(&self, id: &[u8; 32]) -> Option<Vec<u8>> {
        let mut g = self.lock();
        if let Some(p) = g.young.get(id) {
            return Some(p.to_vec());
        }
        let p = g.old.remove(id)?;
        let out = p.to_vec();
        self.insert_locked(&mut g, *id, p);
        Some(out)
    }

    pub(crate) fn insert(&self, id: [u8; 32], plain: &[u8]) {
        // One document over half the budget would flush everything else: not kept.
        if plain.len() > self.max_bytes / 2 {
            return;
        }
        let mut g = self.lock();
        self.insert_locked(&mut g, id, Zeroizing::new(plain.to_vec()));
    }

    fn insert_locked(&self, g: &mut Generations, id: [u8; 32], plain: Zeroizing<Vec<u8>>) {
        let full = g.young.len() >= self.max_entries / 2
            || g.young_bytes + plain.len() > self.max_bytes / 2;
        if full && !g.young.contains_key(&id) {
            g.old = std::mem::take(&mut g.young);
            g.young_bytes = 0;
        }
        g.young_bytes += plain.len();
        if let Some(prev) = g.young.insert(id, plain) {
            g.young_bytes -= prev.len();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_by_entries_and_bytes() {
        let c = PlainCache::new(4, 1 << 20);
        for i in 0..10u8 {
            c.insert([i; 32], b"x");
            assert!(c.len() <= 4);
        }
        assert_eq!(c.get(&[9; 32]).as_deref(), Some(&b"x"[..]));
        assert_eq!(c.get(&[0; 32]), None);
        let c = PlainCache::new(100, 100);
        c.insert([1; 32], &[0; 60]);
        assert_eq!(c.len(), 0, "over half the byte budget is not kept");
        for i in 0..10u8 {
            c.insert([i; 32], &[0; 20]);
        }
        let g = c.lock();
        assert!(g.young_bytes <= 50);
    }

    #[test]
    fn ids_separate_rings_formats_and_bytes() {
        let a = plain_id(&[1; 32], Format::Yaml, b"doc");
        assert_ne!(a, plain_id(&[2; 32], Format::Yaml, b"doc"));
        assert_ne!(a, plain_id(&[1; 32], Format::Json, b"doc"));
        assert_ne!(a, plain_id(&[1; 32], Format::Yaml, b"doc "));
    }
}
