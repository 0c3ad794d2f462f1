//! Signature verification of OCI sources (`spec.verify` of OCIRepository and HelmChart):
//! cosign with the trusted public keys of `verify.secretRef`, offline
//! ([`plumb_source::oci::cosign`]), and the `SourceVerified` condition as Flux writes it.
//!
//! What cannot be verified here is a failure, never a silent pass: keyless cosign (no
//! `secretRef`: Fulcio certificates and Rekor need Sigstore's online services) and the
//! `notation` provider fail with `VerificationError`, and nothing new is stored.

use plumb_api::conditions::{self, Status};
use plumb_api::consts::{condition, reason};
use plumb_api::helm_release::VerificationProvider;
use plumb_api::meta::Condition;
use plumb_api::oci_repository::OCIRepositoryVerification;
use plumb_source::oci::cosign::{self, TrustedKey};

use crate::context::Context;
use crate::outcome::{Class, Failure};

fn unverified(msg: String) -> Failure {
    Failure::new(Class::Stalled, reason::VERIFICATION_ERROR, msg)
}

/// The trusted keys of `verify` (Secret `ns/secretRef.name`, data keys `*.pub`).
pub(crate) async fn trusted_keys(
    ctx: &Context,
    ns: &str,
    verify: &OCIRepositoryVerification,
) -> std::result::Result<Vec<TrustedKey>, Failure> {
    if verify.provider == VerificationProvider::Notation {
        return Err(unverified(
            "verify.provider 'notation' is not supported; use 'cosign' with a secretRef of public keys"
                .into(),
        ));
    }
    let Some(secret) = &verify.secret_ref else {
        return Err(unverified(
            "keyless cosign verification (no verify.secretRef) is not supported: it needs Sigstore's online Fulcio and Rekor; give the signers' public keys in a Secret"
                .into(),
        ));
    };
    let data = crate::secrets::secret_data(ctx, ns, &secret.name).await?;
    cosign::trusted_keys(&data)
        .map_err(|e| unverified(format!("verification secret '{ns}/{}': {e}", secret.name)))
}

/// Whether `revision` must be verified again, as Flux decides: the stored artifact has another
/// revision, the spec changed since the last verification, or the last one failed.
pub(crate) fn needs_verification(
    conds: &[Condition],
    stored_revision: Option<&str>,
    revision: &str,
    generation: Option<i64>,
) -> bool {
    let Some(c) = conditions::find(conds, condition::SOURCE_VERIFIED) else {
        return true;
    };
    stored_revision != Some(revision) || c.observed_generation != generation || c.status != "True"
}

/// Records the outcome of a verification in `SourceVerified`.
pub(crate) fn mark(
    conds: &mut Vec<Condition>,
    outcome: std::result::Result<&str, &Failure>,
    generation: Option<i64>,
) {
    let (status, why, msg) = match outcome {
        Ok(revision) => (
            Status::True,
            reason::SUCCEEDED,
            format!("verified signature of revision {revision}"),
        ),
        Err(f) => (Status::False, f.reason, f.message.clone()),
    };
    conditions::set(
        conds,
        condition::SOURCE_VERIFIED,
        status,
        why,
        &msg,
        generation,
    );
}

/// Removes `SourceVerified` when verification is off (as Flux).
pub(crate) fn clear(conds: &mut Vec<Condition>) {
    conditions::remove(conds, condition::SOURCE_VERIFIED);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifies_again_on_new_revision_new_generation_or_past_failure() {
        let mut conds = Vec::new();
        assert!(needs_verification(&conds, Some("r1"), "r1", Some(1)));
        mark(&mut conds, Ok("r1"), Some(1));
        assert!(!needs_verification(&conds, Some("r1"), "r1", Some(1)));
        assert!(needs_verification(&conds, Some("r1"), "r2", Some(1)));
        assert!(needs_verification(&conds, Some("r1"), "r1", Some(2)));
        let f = unverified("no signature".into());
        mark(&mut conds, Err(&f), Some(1));
        assert!(needs_verification(&conds, Some("r1"), "r1", Some(1)));
        let c = conditions::find(&conds, condition::SOURCE_VERIFIED).unwrap();
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("False", "VerificationError")
        );
        clear(&mut conds);
        assert!(conds.is_empty());
    }
}
