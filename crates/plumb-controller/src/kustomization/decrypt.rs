//! `spec.decryption` (provider `sops`): the key ring of a Kustomization (its Secret's
//! `*.agekey` / `*.asc` / `sops.aws-kms` entries, the global keys, the KMS client) and the
//! file transform that decrypts resources, patches and generator sources as they are read,
//! as Flux's kustomize-controller does. Failures never quote a key or a value.

use std::path::Path;
use std::sync::Arc;

use kube::ResourceExt;
use plumb_api::Kustomization;
use plumb_api::consts::reason;
use plumb_sops::{Format, KeyRing, Limits};

use super::decrypt_ahead::{Ahead, decrypt_ahead};
use super::decrypt_identity::Account;
use crate::context::Context;
use crate::outcome::{Class, Failure};

/// A decryption failure: stalled until the Kustomization or its keys change.
pub(crate) fn failure(msg: String) -> Failure {
    Failure::new(
        Class::Stalled,
        reason::DECRYPTION_FAILED,
        format!("decryption failed: {msg}; nothing was applied"),
    )
}

/// Adds the keys of a decryption Secret's data to `ring`, as Flux reads them: entries named
/// `*.agekey` are age identities, `*.asc` OpenPGP secret keys; `sops.vault-token` is
/// reported as unsupported only when a file needs Vault. Returns whether `sops.aws-kms`
/// (static AWS credentials) is present.
pub fn add_secret_keys(
    ring: &mut KeyRing,
    secret: &str,
    data: &std::collections::BTreeMap<String, Vec<u8>>,
) -> Result<bool, String> {
    let mut kms = false;
    for (name, value) in data {
        let text = || {
            std::str::from_utf8(value)
                .map_err(|_| format!("secret '{secret}' entry '{name}' is not UTF-8"))
        };
        let source = format!("secret '{secret}' entry '{name}'");
        if name.ends_with(".agekey") {
            ring.add_age_identities(&source, text()?)
                .map_err(|e| e.to_string())?;
        } else if name.ends_with(".asc") {
            ring.add_pgp_keys(&source, text()?)
                .map_err(|e| e.to_string())?;
        } else if name == "sops.aws-kms" {
            kms = true;
        }
    }
    Ok(kms)
}

/// The keys `obj` decrypts with, or `None` without `spec.decryption`.
pub(crate) async fn key_ring(
    obj: &Kustomization,
    ctx: &Context,
) -> Result<Option<KeyRing>, Failure> {
    let Some(dec) = &obj.spec.decryption else {
        return Ok(None);
    };
    let mut ring = KeyRing::new();
    // Age and OpenPGP data keys outlive the reconcile, under this ring's key fingerprint.
    ring.set_data_key_cache(ctx.memo::<plumb_sops::DataKeyCache>());
    let mut static_kms = false;
    if let Some(r) = &dec.secret_ref {
        let ns = obj.namespace().unwrap_or_default();
        let data = crate::secrets::secret_data(ctx, &ns, &r.name)
            .await
            .map_err(|f| Failure::new(f.class, reason::DECRYPTION_FAILED, f.message.clone()))?;
        static_kms =
            add_secret_keys(&mut ring, &format!("{ns}/{}", r.name), &data).map_err(failure)?;
        if static_kms && let Some(yaml) = data.get("sops.aws-kms") {
            let base = match &ctx.config.sops_kms {
                Some(k) => k.clone(),
                None => plumb_eks::kms::KmsDecryptor::from_env().await,
            };
            let kms = base
                .with_static_credentials(yaml)
                .map_err(|e| failure(format!("secret '{ns}/{}': {e}", r.name)))?;
            ring.set_kms(Arc::new(SopsKms::new(kms)));
        }
    }
    // A ServiceAccount's credentials (the named one, else the operator's default), unless
    // the Secret has static ones (Flux's order); the ring keeps its first KMS client, so
    // the controller's identity below is not used then. Read only if a file needs KMS.
    let named = dec
        .service_account_name
        .as_deref()
        .filter(|s| !s.is_empty());
    let default = ctx.config.default_decryption_service_account.as_deref();
    let account = match (named, default.filter(|s| !s.is_empty())) {
        (Some(sa), _) => Some(Account::Named(sa)),
        (None, Some(sa)) => Some(Account::Default(sa)),
        (None, None) => None,
    };
    if let Some(sa) = account
        && !static_kms
    {
        ring.set_kms(super::decrypt_identity::service_account_kms(obj, ctx, sa));
    }
    ring.extend(&ctx.config.global_decryption_keys);
    if let Some(kms) = &ctx.config.sops_kms {
        // The Secret's static credentials win; set_kms keeps the first client.
        let mut with_controller = KeyRing::new();
        with_controller.set_kms(Arc::new(SopsKms::new(kms.clone())));
        ring.extend(&with_controller);
    }
    Ok(Some(ring))
}

/// plumb-sops' KMS hook on plumb-eks' client: called from the build's blocking thread, it
/// runs the async call on the runtime that spawned the build.
pub struct SopsKms {
    inner: plumb_eks::kms::KmsDecryptor,
    handle: tokio::runtime::Handle,
}

impl SopsKms {
    /// Wraps `inner`; must be called within a tokio runtime.
    pub fn new(inner: plumb_eks::kms::KmsDecryptor) -> Self {
        SopsKms {
            inner,
            handle: tokio::runtime::Handle::current(),
        }
    }
}

impl plumb_sops::KmsDecrypt for SopsKms {
    fn decrypt(&self, key: &plumb_sops::KmsKey, ciphertext: &[u8]) -> Result<Vec<u8>, String> {
        self.handle
            .block_on(
                self.inner
                    .decrypt(&key.arn, key.role.as_deref(), &key.context, ciphertext),
            )
            .map_err(|e| e.to_string())
    }
}

/// The build's file transform: SOPS documents (by extension and MAC marker) are decrypted
/// in memory; other files pass through. Without keys an encrypted file passes through and
/// is refused after the build ([`refuse_encrypted`](super::render)).
pub fn file_transform(ring: KeyRing) -> plumb_kustomize::FileTransform {
    transform(ring, Ahead::default())
}

/// [`file_transform`] for a build of `dir` inside the build root `root`, with the SOPS
/// files under `dir` decrypted ahead on a few threads ([`super::decrypt_ahead`]).
pub fn decrypting_transform(
    root: &Path,
    dir: &Path,
    ring: KeyRing,
) -> plumb_kustomize::FileTransform {
    // When the last build of this tree decrypted nothing, every document is kept: the
    // transform serves them at the cost of a hash, and reading ahead would read twice.
    let ahead = if ring.tree_is_warm(&tree_name(root, dir)) {
        Ahead::default()
    } else {
        decrypt_ahead(root, dir, &ring, &Limits::default())
    };
    transform(ring, ahead)
}

/// The name under which the warm-tree hint of `dir` is kept: its path inside the build
/// root, which stays the same from one reconcile to the next (the root is a fresh
/// directory per artifact fetch, so its absolute path never repeats).
pub(crate) fn tree_name(root: &Path, dir: &Path) -> String {
    dir.strip_prefix(root)
        .unwrap_or(dir)
        .to_string_lossy()
        .into_owned()
}

fn transform(ring: KeyRing, ahead: Ahead) -> plumb_kustomize::FileTransform {
    let limits = Limits::default();
    plumb_kustomize::FileTransform(Arc::new(move |name: &str, bytes: Vec<u8>| {
        if let Some(out) = ahead.take(name, &bytes) {
            return out;
        }
        let format = Format::from_path(name);
        if !plumb_sops::looks_encrypted(format, &bytes) {
            return Ok(bytes);
        }
        match plumb_sops::decrypt(name, format, &bytes, &ring, &limits) {
            Ok(Some(plain)) => Ok(plain),
            Ok(None) => Ok(bytes),
            Err(e) => Err(format!("decryption failed: {e}")),
        }
    }))
}

/// Decrypts Secret `data` values that are SOPS documents (Flux's "inside" case).
pub(crate) fn decrypt_secret_values(
    objects: &mut [serde_json::Value],
    ring: &KeyRing,
) -> Result<(), Failure> {
    let limits = Limits::default();
    for o in objects {
        // Only Secrets with `data` can hold SOPS documents: the rest skip naming.
        if o.get("kind").and_then(|k| k.as_str()) != Some("Secret") || o.get("data").is_none() {
            continue;
        }
        let id = plumb_ssa::ObjectRef::from_object(o)
            .map_or_else(|_| "a Secret".to_string(), |r| r.to_string());
        plumb_sops::decrypt_secret_data(&id, o, ring, &limits)
            .map_err(|e| failure(e.to_string()))?;
    }
    Ok(())
}
