//! `spec.verify` of a GitRepository: the fetched commit and/or tag checked against the
//! Secret's `.asc` (OpenPGP) and `.sshpub` (SSH) keys before anything is stored
//! ([`plumb_source::git::verify`]), and `SourceVerified` / `sourceVerificationMode` written
//! as Flux writes them. A failure stores nothing, so nothing downstream changes.

use kube::{Resource, ResourceExt};
use plumb_api::conditions::{self, Status};
use plumb_api::consts::{condition, reason};
use plumb_api::git_repository::GitVerificationMode;
use plumb_api::{GitRepository, GitRepositoryStatus};
use plumb_source::git::verify::{TrustedKeys, VerifyMode, verify_fetched};
use plumb_source::git::{FetchOptions, FetchResult};

use crate::context::Context;
use crate::outcome::{Class, Failure};

fn failed(why: &'static str, msg: String) -> Failure {
    Failure::new(Class::Stalled, why, msg)
}

/// Verifies `fetched` when `spec.verify` is set (else clears the condition), recording
/// the outcome in `status`.
pub(super) async fn verify_step(
    obj: &GitRepository,
    ctx: &Context,
    opts: &FetchOptions,
    fetched: &FetchResult,
    status: &mut GitRepositoryStatus,
) -> std::result::Result<(), Failure> {
    let generation = obj.meta().generation;
    let Some(v) = &obj.spec.verification else {
        conditions::remove(&mut status.conditions, condition::SOURCE_VERIFIED);
        status.source_verification_mode = None;
        return Ok(());
    };
    let mode = match v.mode {
        GitVerificationMode::Head | GitVerificationMode::LegacyHead => VerifyMode::Head,
        GitVerificationMode::Tag => VerifyMode::Tag,
        GitVerificationMode::TagAndHEAD => VerifyMode::TagAndHead,
    };
    let outcome = check(obj, ctx, opts, fetched, mode).await;
    let (st, why, msg) = match &outcome {
        Ok(msg) => (Status::True, reason::SUCCEEDED, msg.clone()),
        Err(f) => (Status::False, f.reason, f.message.clone()),
    };
    conditions::set(
        &mut status.conditions,
        condition::SOURCE_VERIFIED,
        st,
        why,
        &msg,
        generation,
    );
    outcome?;
    status.source_verification_mode = Some(v.mode);
    Ok(())
}

async fn check(
    obj: &GitRepository,
    ctx: &Context,
    opts: &FetchOptions,
    fetched: &FetchResult,
    mode: VerifyMode,
) -> std::result::Result<String, Failure> {
    let ns = obj.namespace().unwrap_or_default();
    let Some(v) = &obj.spec.verification else {
        return Ok(String::new());
    };
    let name = &v.secret_ref.name;
    let data = crate::secrets::secret_data(ctx, &ns, name).await?;
    let keys = TrustedKeys::from_secret(&data).map_err(|e| {
        failed(
            reason::VERIFICATION_ERROR,
            format!("secret '{ns}/{name}': {e}"),
        )
    })?;
    let (o, f) = (opts.clone(), fetched.clone());
    tokio::task::spawn_blocking(move || verify_fetched(&o, &f, mode, &keys))
        .await
        .map_err(|e| failed(reason::VERIFICATION_ERROR, e.to_string()))?
        .map_err(|e| {
            let msg = e.to_string();
            let why = match e.kind() {
                plumb_source::ErrorKind::InvalidInput => reason::INVALID_VERIFICATION_MODE,
                _ if msg.contains(" of tag '") => reason::INVALID_TAG_SIGNATURE,
                _ => reason::INVALID_COMMIT_SIGNATURE,
            };
            failed(why, msg)
        })
}
