//! Signature verification of the fetched commit and tag (GitRepository `spec.verify`), as
//! Flux 2.9: OpenPGP signatures against the `.asc` keys of the Secret (the `pgp` crate) and
//! SSH signatures (`gpg.format=ssh`, sshsig namespace `git`) against its `.sshpub` keys (the
//! `ssh-key` crate). Everything is read from the local cache: no network.
//!
//! What git signs: for a commit, the commit object without its `gpgsig` header (libgit2's
//! `extract_signature`); for an annotated tag, the tag object up to the armored signature
//! appended to its message.

use std::collections::BTreeMap;

use git2::{ObjectType, Oid, Repository};
use pgp::composed::{Deserializable as _, DetachedSignature, SignedPublicKey};
use pgp::types::KeyDetails as _;

use crate::{Result, SourceError};

/// Objects to verify (Flux's `mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyMode {
    /// The commit HEAD resolves to.
    Head,
    /// The annotated tag the reference names.
    Tag,
    /// Both.
    TagAndHead,
}

/// Largest signed object examined (a commit or tag object with its signature).
const MAX_SIGNED_BYTES: usize = 4 << 20;

/// Trusted keys from the `verify.secretRef` Secret.
pub struct TrustedKeys {
    pgp: Vec<SignedPublicKey>,
    ssh: Vec<(String, ssh_key::PublicKey)>,
}

impl std::fmt::Debug for TrustedKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrustedKeys")
            .field("pgp", &self.pgp.len())
            .field("ssh", &self.ssh.len())
            .finish()
    }
}

fn invalid(key: &str, detail: &str) -> SourceError {
    SourceError::Invalid {
        what: format!("verification secret field '{key}'"),
        detail: detail.to_string(),
    }
}

impl TrustedKeys {
    /// `*.asc` entries are armored OpenPGP public keys (one or more each), `*.sshpub` entries
    /// SSH public keys in `authorized_keys` form (one per line). No key at all is an error.
    pub fn from_secret(data: &BTreeMap<String, Vec<u8>>) -> Result<TrustedKeys> {
        let mut keys = TrustedKeys {
            pgp: Vec::new(),
            ssh: Vec::new(),
        };
        for (name, value) in data {
            let text = std::str::from_utf8(value).map_err(|_| invalid(name, "not UTF-8 text"))?;
            if name.ends_with(".asc") {
                let (parsed, _) = SignedPublicKey::from_string_many(text)
                    .map_err(|_| invalid(name, "not an armored OpenPGP public key"))?;
                for k in parsed {
                    keys.pgp
                        .push(k.map_err(|_| invalid(name, "not an armored OpenPGP public key"))?);
                }
            } else if name.ends_with(".sshpub") {
                for line in text
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with('#'))
                {
                    let key = ssh_key::PublicKey::from_openssh(line)
                        .map_err(|_| invalid(name, "not an SSH public key line"))?;
                    keys.ssh.push((name.clone(), key));
                }
            }
        }
        if keys.pgp.is_empty() && keys.ssh.is_empty() {
            return Err(SourceError::Invalid {
                what: "verification secret".to_string(),
                detail: "holds no public key (data keys ending in '.asc' or '.sshpub')".to_string(),
            });
        }
        Ok(keys)
    }

    /// The key that made `signature` over `data`, by fingerprint (PGP) or name and SHA-256
    /// fingerprint (SSH).
    fn verify(&self, signature: &str, data: &[u8]) -> std::result::Result<String, String> {
        let sig = signature.trim();
        if sig.starts_with("-----BEGIN PGP SIGNATURE-----") {
            let (sig, _) = DetachedSignature::from_string(sig)
                .map_err(|_| "the OpenPGP signature cannot be parsed".to_string())?;
            for key in &self.pgp {
                if sig.verify(&key.primary_key, data).is_ok() {
                    return Ok(hex::encode_upper(key.primary_key.fingerprint().as_bytes()));
                }
                if key
                    .public_subkeys
                    .iter()
                    .any(|sub| sig.verify(&sub.key, data).is_ok())
                {
                    return Ok(hex::encode_upper(key.primary_key.fingerprint().as_bytes()));
                }
            }
            return Err(format!(
                "no trusted OpenPGP key ({} given) made this signature",
                self.pgp.len()
            ));
        }
        if sig.starts_with("-----BEGIN SSH SIGNATURE-----") {
            let sig = sig
                .parse::<ssh_key::SshSig>()
                .map_err(|_| "the SSH signature cannot be parsed".to_string())?;
            for (name, key) in &self.ssh {
                if key.verify("git", data, &sig).is_ok() {
                    return Ok(format!(
                        "{name}: {}",
                        key.fingerprint(ssh_key::HashAlg::Sha256)
                    ));
                }
            }
            return Err(format!(
                "no trusted SSH key ({} given) made this signature",
                self.ssh.len()
            ));
        }
        Err("the signature is neither OpenPGP nor SSH".to_string())
    }
}

fn unverified(url: &str, detail: String) -> SourceError {
    SourceError::Unverified {
        op: "git verify",
        url: url.to_string(),
        detail,
    }
}

/// Splits an annotated tag object into (signed bytes, armored signature).
fn split_tag(raw: &[u8]) -> Option<(&[u8], &str)> {
    let text = std::str::from_utf8(raw).ok()?;
    let at = [
        "-----BEGIN PGP SIGNATURE-----",
        "-----BEGIN SSH SIGNATURE-----",
    ]
    .iter()
    .filter_map(|m| text.rfind(m))
    .max()?;
    Some((&raw[..at], &text[at..]))
}

/// Verifies what [`super::fetch`] resolved (`fetched`) in the object's cache, per `mode`;
/// returns Flux's `SourceVerified` message.
pub fn verify_fetched(
    opts: &super::FetchOptions,
    fetched: &super::FetchResult,
    mode: VerifyMode,
    keys: &TrustedKeys,
) -> Result<String> {
    let url = super::redact_url(&opts.url);
    let _lock = super::CacheLock::acquire(&opts.cache_dir, "verify", &opts.url)?;
    let repo = super::open_cache(&opts.cache_dir)?;
    verify(
        &repo,
        &url,
        &fetched.reference,
        &fetched.commit.id,
        mode,
        keys,
    )
}

/// Verifies the commit `commit` and/or the annotated tag `reference` (`refs/tags/<name>`) in
/// the cache `repo` per `mode`; returns Flux's `SourceVerified` message. `url` (redacted)
/// names the repository in errors.
pub fn verify(
    repo: &Repository,
    url: &str,
    reference: &str,
    commit: &str,
    mode: VerifyMode,
    keys: &TrustedKeys,
) -> Result<String> {
    let mut lines = Vec::new();
    if matches!(mode, VerifyMode::Tag | VerifyMode::TagAndHead) {
        let Some(tag) = reference.strip_prefix("refs/tags/") else {
            return Err(SourceError::Invalid {
                what: "spec.verify.mode".to_string(),
                detail: "cannot verify a tag object's signature when the reference is not a tag"
                    .to_string(),
            });
        };
        let oid = repo
            .refname_to_id(reference)
            .map_err(|_| unverified(url, format!("tag '{tag}' is not in the cache")))?;
        let raw = read_object(repo, oid, ObjectType::Tag).ok_or_else(|| {
            unverified(
                url,
                format!("cannot verify signature of tag '{tag}' since it is not an annotated tag"),
            )
        })?;
        let (data, sig) = split_tag(&raw).ok_or_else(|| {
            unverified(
                url,
                format!("cannot verify signature of tag '{tag}' since it is not signed"),
            )
        })?;
        let key = keys.verify(sig, data).map_err(|e| {
            unverified(
                url,
                format!("signature verification of tag '{tag}' failed: {e}"),
            )
        })?;
        lines.push(format!("tag '{tag}' with key '{key}'"));
    }
    if matches!(mode, VerifyMode::Head | VerifyMode::TagAndHead) {
        let oid = Oid::from_str(commit)
            .map_err(|_| unverified(url, format!("bad commit id '{commit}'")))?;
        let (sig, data) = repo.extract_signature(&oid, None).map_err(|_| {
            unverified(
                url,
                format!(
                    "signature verification of commit '{commit}' failed: the commit is not signed"
                ),
            )
        })?;
        if data.len() > MAX_SIGNED_BYTES {
            return Err(unverified(
                url,
                format!("commit '{commit}' is too large to verify"),
            ));
        }
        let sig = std::str::from_utf8(&sig)
            .map_err(|_| unverified(url, format!("signature of commit '{commit}' is not text")))?;
        let key = keys.verify(sig, &data).map_err(|e| {
            unverified(
                url,
                format!("signature verification of commit '{commit}' failed: {e}"),
            )
        })?;
        lines.push(format!("commit '{commit}' with key '{key}'"));
    }
    Ok(format!(
        "verified signature of\n\t- {}",
        lines.join("\n\t- ")
    ))
}

fn read_object(repo: &Repository, oid: Oid, kind: ObjectType) -> Option<Vec<u8>> {
    let odb = repo.odb().ok()?;
    let (size, k) = odb.read_header(oid).ok()?;
    if k != kind || size > MAX_SIGNED_BYTES {
        return None;
    }
    Some(odb.read(oid).ok()?.data().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_without_keys_or_with_bad_keys_are_named() {
        let data = |k: &str, v: &str| BTreeMap::from([(k.to_string(), v.as_bytes().to_vec())]);
        let e = TrustedKeys::from_secret(&data("key.txt", "x"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("no public key"), "{e}");
        let e = TrustedKeys::from_secret(&data("a.asc", "garbage-value"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("'a.asc'") && !e.contains("garbage-value"), "{e}");
        let e = TrustedKeys::from_secret(&data("b.sshpub", "ssh-ed25519 AAAA"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("'b.sshpub'"), "{e}");
    }

    #[test]
    fn tag_objects_split_at_the_last_signature() {
        let raw = b"object abc\ntype commit\ntag v1\n\nmsg\n-----BEGIN PGP SIGNATURE-----\nxyz\n-----END PGP SIGNATURE-----\n";
        let (data, sig) = split_tag(raw).unwrap();
        assert!(data.ends_with(b"msg\n"));
        assert!(sig.starts_with("-----BEGIN PGP SIGNATURE-----"));
        assert!(split_tag(b"object abc\n\nunsigned\n").is_none());
    }
}
