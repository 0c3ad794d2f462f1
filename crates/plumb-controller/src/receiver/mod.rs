//! Receiver (`notification.toolkit.fluxcd.io/v1`): the reconciler that derives
//! `status.webhookPath` from the token Secret, and the HTTP server that turns a verified
//! webhook call into `reconcile.fluxcd.io/requestedAt` annotations on the Receiver's resources.
//!
//! Verification by type: `generic` (knowing the path is enough), `generic-hmac`
//! (`X-Signature: sha1|sha256|sha512=<hex HMAC of the body>`), `github` (`X-Hub-Signature-256`,
//! or the legacy SHA-1 `X-Hub-Signature`; `X-GitHub-Event` filtered by `spec.events`, `ping`
//! answered without triggering) and `gitlab` (`X-Gitlab-Token` equals the token,
//! `X-Gitlab-Event` filtered) in `webhook.rs`; `bitbucket`, `harbor`, `dockerhub`, `quay`,
//! `nexus`, `acr`, `cdevents` and the payloads of `gcr` and `generic-oidc` in `kinds.rs`; the
//! bearer tokens of `gcr` (Google) and `generic-oidc` (`spec.oidcProviders`) in `oidc.rs`
//! with `jwt.rs`. Missing signatures answer 401, wrong ones 403; both are counted
//! in [`rejected_total`].

//!
//! The reconciler's steps ([`Kind::steps`]): refuse unsupported fields (stalled), read the
//! token Secret, derive the webhook path, Ready. A change of a token Secret re-reconciles the
//! Receivers that reference it. The webhook verification is in `webhook.rs`, the HTTP
//! server in `server.rs` (with its watch-kept index of Receivers by path in `index.rs` and
//! its per-client rate limit in `limit.rs`).

mod filter;
mod index;
mod jwt;
mod kinds;
mod limit;
mod oidc;
mod server;
mod webhook;

pub use kinds::nexus_sign;
pub use limit::RateLimit;
pub use oidc::{GOOGLE_CERTS_URL, KEYS_TTL, REASON_VALIDATION_FAILED};
pub use server::{MAX_BODY_BYTES, ServerOptions, serve, serve_with};
pub use webhook::{
    REASON_TOKEN_NOT_FOUND, Rejection, Verdict, accepted_total, rejected_total, sign, verify,
};

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::Controller;
use kube::runtime::watcher;
use plumb_api::conditions;
use plumb_api::consts::{condition, reason};
use plumb_api::{Receiver, ReceiverStatus};

use crate::context::Context;
use crate::outcome::{Class, Failure};
use crate::reconciler::{Done, Kind, Policy, Warn};

/// Runs the Receiver reconciler until a shutdown signal. A change of a token Secret
/// re-reconciles the Receivers that reference it, so a rotated token gets its new path at once.
pub async fn run(ctx: Arc<Context>, api: Api<Receiver>, watch: watcher::Config, concurrency: u16) {
    let secrets: Api<Secret> = match api.namespace() {
        Some(ns) => Api::namespaced(ctx.client.clone(), ns),
        None => Api::all(ctx.client.clone()),
    };
    let controller = crate::reconciler::watch_referenced(
        Controller::new(api, watch),
        secrets,
        |r: &Receiver, name| r.spec.secret_ref.as_ref().is_some_and(|s| s.name == name),
    );
    crate::reconciler::run(controller, ctx, concurrency).await;
}

impl Kind for Receiver {
    const KIND: &'static str = "Receiver";
    const POLICY: Policy = Policy {
        warn: Warn::OnChange,
        ..Policy::SOURCE
    };
    // Receivers own nothing outside their status.
    const FINALIZER: bool = false;

    fn every(&self) -> Duration {
        self.interval().unwrap_or(Duration::from_secs(600))
    }

    fn revision(_status: &ReceiverStatus) -> &str {
        ""
    }

    async fn steps(
        obj: &Self,
        ctx: &Context,
        status: &mut ReceiverStatus,
    ) -> std::result::Result<Done, Failure> {
        // Any failure leaves no path to call.
        status.webhook_path = None;
        let unsupported = obj.unsupported_fields();
        if !unsupported.is_empty() {
            // Triggering every resource while ignoring the filter would do more than asked.
            return Err(Failure::new(
                Class::Stalled,
                reason::UNSUPPORTED_FIELD,
                plumb_api::unsupported::message(&unsupported),
            ));
        }
        oidc::validate_spec(obj).map_err(|m| {
            Failure::new(
                Class::Stalled,
                oidc::REASON_VALIDATION_FAILED,
                format!("{}: {m}", crate::cel::TERMINAL_ERROR),
            )
        })?;
        filter::validate(obj).map_err(|e| {
            Failure::new(
                Class::Stalled,
                reason::INVALID_CEL_EXPRESSION,
                format!("{}: {e}", crate::cel::TERMINAL_ERROR),
            )
        })?;
        let ns = obj.namespace().unwrap_or_default();
        let token = webhook::token(&ctx.client, &ns, obj)
            .await
            .map_err(|m| Failure::new(Class::Transient, REASON_TOKEN_NOT_FOUND, m))?;
        let path = obj.webhook_path(&token);
        let msg = format!("Receiver initialized for path: {path}");
        // Announce a new path only (the Ready message holds it).
        let ready_before = conditions::find(&status.conditions, condition::READY);
        let event = ready_before
            .is_none_or(|c| c.status != "True" || c.message != msg)
            .then(|| (reason::SUCCEEDED, msg.clone()));
        status.webhook_path = Some(path);
        Ok(Done {
            ready: Some((reason::SUCCEEDED, msg)),
            event,
            requeue: Some(obj.every()),
        })
    }
}
