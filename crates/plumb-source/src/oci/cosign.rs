//! cosign signature verification with trusted public keys, as `cosign verify --key` with the
//! transparency log ignored (Flux's `verify.provider: cosign` with `secretRef`), fully offline.
//!
//! cosign stores the signatures of `repo@sha256:<hex>` in the same repository under the tag
//! `sha256-<hex>.sig`: an image manifest whose layers are "simple signing" payloads
//! (`application/vnd.dev.cosign.simplesigning.v1+json`), each with its signature (base64 of
//! an ASN.1 ECDSA signature over the payload bytes) in the annotation
//! `dev.cosignproject.cosign/signature`. The payload names the signed manifest digest in
//! `critical.image.docker-manifest-digest`. The artifact is verified when one payload names
//! its digest and carries a signature that one trusted key verifies.
//!
//! Keys: PEM `PUBLIC KEY` (SubjectPublicKeyInfo) of ECDSA P-256 with SHA-256, the keys
//! `cosign generate-key-pair` makes; any other key is refused by name. Keyless verification
//! (Fulcio certificates, Rekor) needs Sigstore's online services and is not done here.

use std::collections::BTreeMap;

use base64::Engine as _;
use p256::ecdsa::signature::Verifier as _;
use p256::ecdsa::{DerSignature, VerifyingKey};
use p256::pkcs8::DecodePublicKey as _;

use super::Client;
use crate::{Result, SourceError};

/// Media type of a cosign simple-signing payload layer.
pub const SIMPLE_SIGNING_MEDIA_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// Layer annotation holding the base64 signature.
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// `critical.type` of a cosign image signature payload.
const PAYLOAD_TYPE: &str = "cosign container image signature";
/// Largest payload read (real ones are a few hundred bytes).
const MAX_PAYLOAD_BYTES: u64 = 64 << 10;
/// Most signature layers examined, so a hostile signature manifest cannot make us fetch
/// thousands of blobs.
const MAX_SIGNATURES: usize = 32;

/// A trusted cosign public key and the Secret key it came from (for messages).
#[derive(Debug, Clone)]
pub struct TrustedKey {
    /// The Secret data key (`cosign.pub`).
    pub name: String,
    key: VerifyingKey,
}

/// The trusted keys of a `verify.secretRef` Secret: every data key ending in `.pub`, as Flux
/// reads them. No such key, or a key that is not an ECDSA P-256 PEM public key, is an error
/// naming the data key.
pub fn trusted_keys(data: &BTreeMap<String, Vec<u8>>) -> Result<Vec<TrustedKey>> {
    let mut keys = Vec::new();
    for (name, pem) in data.iter().filter(|(k, _)| k.ends_with(".pub")) {
        let invalid = |detail: &str| SourceError::Invalid {
            what: format!("secret field '{name}'"),
            detail: detail.to_string(),
        };
        let text = std::str::from_utf8(pem).map_err(|_| invalid("not a PEM public key"))?;
        let key = VerifyingKey::from_public_key_pem(text.trim()).map_err(|_| {
            invalid("not a PEM ECDSA P-256 public key (cosign generate-key-pair's format)")
        })?;
        keys.push(TrustedKey {
            name: name.clone(),
            key,
        });
    }
    if keys.is_empty() {
        return Err(SourceError::Invalid {
            what: "verification secret".to_string(),
            detail: "holds no public key (data keys ending in '.pub')".to_string(),
        });
    }
    Ok(keys)
}

/// The tag cosign stores the signatures of `digest` under (`sha256-<hex>.sig`).
pub fn signature_tag(digest: &str) -> String {
    format!("{}.sig", digest.replacen(':', "-", 1))
}

/// Checks one signature layer: its signature by one of `keys` over its payload, and the
/// payload naming `digest`. Returns the name of the key that verified it.
fn check_layer<'k>(
    payload: &[u8],
    sig_b64: &str,
    digest: &str,
    keys: &'k [TrustedKey],
) -> Option<&'k str> {
    let sig = base64::engine::general_purpose::STANDARD
        .decode(sig_b64.trim())
        .ok()?;
    let sig = DerSignature::try_from(sig.as_slice()).ok()?;
    let key = keys.iter().find(|k| k.key.verify(payload, &sig).is_ok())?;
    let v: serde_json::Value = serde_json::from_slice(payload).ok()?;
    let critical = v.get("critical")?;
    let signed = critical
        .get("image")?
        .get("docker-manifest-digest")?
        .as_str()?;
    let kind = critical.get("type")?.as_str()?;
    (signed == digest && kind == PAYLOAD_TYPE).then_some(key.name.as_str())
}

impl Client {
    /// Verifies that the manifest `digest` of this repository carries a cosign signature by
    /// one of `keys`; returns the name of the key that verified it. A missing signature, a
    /// payload naming another digest, or a signature no key verifies is
    /// [`SourceError::Unverified`].
    pub fn verify_cosign(&self, digest: &str, keys: &[TrustedKey]) -> Result<String> {
        let url = format!("{}@{digest}", self.reference.name());
        let unverified = |detail: String| SourceError::Unverified {
            op: "cosign verify",
            url: url.clone(),
            detail,
        };
        let tag = signature_tag(digest);
        let sig_digest = match self.head_manifest(&tag) {
            Ok(d) => d,
            Err(SourceError::RefNotFound { .. }) => {
                return Err(unverified(format!(
                    "no cosign signature found (tag '{tag}')"
                )));
            }
            Err(e) => return Err(e),
        };
        let manifest = self.fetch_manifest(&sig_digest)?;
        let mut seen = 0;
        for layer in manifest
            .layers
            .iter()
            .filter(|l| l.media_type == SIMPLE_SIGNING_MEDIA_TYPE)
            .take(MAX_SIGNATURES)
        {
            let Some(sig) = layer.annotations.get(SIGNATURE_ANNOTATION) else {
                continue;
            };
            seen += 1;
            let payload = self.fetch_blob(layer, MAX_PAYLOAD_BYTES)?;
            if let Some(name) = check_layer(&payload, sig, digest, keys) {
                return Ok(name.to_string());
            }
        }
        let names: Vec<&str> = keys.iter().map(|k| k.name.as_str()).collect();
        Err(unverified(if seen == 0 {
            format!("signature manifest '{tag}' holds no cosign signature")
        } else {
            format!(
                "none of {seen} signature(s) verifies with the trusted key(s) {} for this digest",
                names.join(", ")
            )
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::SigningKey;
    use p256::ecdsa::signature::Signer as _;
    use p256::pkcs8::EncodePublicKey as _;

    fn key(seed: u8) -> (SigningKey, TrustedKey) {
        let sk = SigningKey::from_slice(&[seed; 32]).unwrap();
        let pem = sk
            .verifying_key()
            .to_public_key_pem(p256::pkcs8::LineEnding::LF)
            .unwrap();
        let data = BTreeMap::from([("cosign.pub".to_string(), pem.into_bytes())]);
        (sk, trusted_keys(&data).unwrap().remove(0))
    }

    fn payload(digest: &str) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "critical": {"identity": {"docker-reference": "r/x"},
                         "image": {"docker-manifest-digest": digest},
                         "type": PAYLOAD_TYPE},
            "optional": null
        }))
        .unwrap()
    }

    fn sign(sk: &SigningKey, msg: &[u8]) -> String {
        let sig: DerSignature = sk.sign(msg);
        base64::engine::general_purpose::STANDARD.encode(sig.as_bytes())
    }

    #[test]
    fn verifies_only_the_signed_digest_with_a_trusted_key() {
        let (sk, trusted) = key(7);
        let (other_sk, _) = key(9);
        let keys = [trusted];
        let d = "sha256:aa";
        let p = payload(d);
        assert_eq!(
            check_layer(&p, &sign(&sk, &p), d, &keys),
            Some("cosign.pub")
        );
        // Another digest, another key, a tampered payload, garbage: no.
        assert_eq!(check_layer(&p, &sign(&sk, &p), "sha256:bb", &keys), None);
        assert_eq!(check_layer(&p, &sign(&other_sk, &p), d, &keys), None);
        let mut tampered = p.clone();
        tampered[5] ^= 1;
        assert_eq!(check_layer(&tampered, &sign(&sk, &p), d, &keys), None);
        assert_eq!(check_layer(&p, "not base64!", d, &keys), None);
    }

    #[test]
    fn keys_come_from_pub_entries_and_bad_ones_are_named() {
        let none = BTreeMap::from([("cosign.key".to_string(), b"x".to_vec())]);
        assert!(
            trusted_keys(&none)
                .unwrap_err()
                .to_string()
                .contains(".pub")
        );
        let bad = BTreeMap::from([(
            "a.pub".to_string(),
            b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----".to_vec(),
        )]);
        let msg = trusted_keys(&bad).unwrap_err().to_string();
        assert!(msg.contains("'a.pub'"), "{msg}");
        assert_eq!(signature_tag("sha256:abc"), "sha256-abc.sig");
    }
}
