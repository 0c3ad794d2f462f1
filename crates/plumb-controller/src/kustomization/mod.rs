//! The Kustomization reconciler: fetch the source artifact, render it in-process, apply
//! it with server-side apply in stages, prune what Git no longer holds, check health
//! without blocking a worker, and write Flux's status (inventory, revisions, conditions).
//!
//! Steps ([`Kind::steps`]), top to bottom, one module each:
//! 1. **dependencies**: every `dependsOn` Ready ([`crate::dependencies`]);
//! 2. **source**: the GitRepository's or OCIRepository's artifact ([`source`]); a new
//!    revision that changes nothing the last successful build read is recorded here without
//!    rendering or applying ([`unchanged`], beyond Flux);
//! 3. **render**: fetch, build with the spec overlay, substitute, label ([`render`]);
//! 4. **apply**: plan (items + inventory), reshape existing objects per `spec.ignore`
//!    ([`ignore`]), record the intent (old inventory plus the new
//!    objects, so a crash mid-apply leaks nothing), then staged server-side apply ([`apply`]);
//! 5. **prune**: the previous inventory minus the new one, within the budget ([`prune`]);
//! 6. **health**: read once, come back soon while pending ([`health`]).
//!
//! The watches (own objects, drift, sources: only a new artifact queues, changed users
//! first) are in [`watches`]; extracted artifacts are shared per digest ([`trees`]).
//!
//! Safety: nothing is pruned unless the fetch, render, substitution and apply of the new
//! revision all succeeded, and a prune that would delete more than the configured share
//! of the inventory is refused unless the Kustomization allows it.

mod apply;
mod decrypt;
mod decrypt_ahead;
mod decrypt_identity;
mod health;
mod ignore;
mod prune;
mod render;
mod source;
mod substitute;
mod trees;
mod unchanged;
mod watches;

pub use crate::prune_budget::PRUNE_BUDGET_ANNOTATION;
pub use apply::apply_item;
pub use decrypt::{add_secret_keys, decrypting_transform, file_transform};
pub use render::{RenderSource, build_decrypted, render_objects, render_objects_with_keys};
pub use source::source_artifact;
pub use unchanged::{BuildCounts, build_counts};
pub use watches::run;

use std::sync::Arc;
use std::time::Duration;

use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use plumb_api::conditions::{self, Status as CondStatus};
use plumb_api::consts::{condition, field_manager, reason};
use plumb_api::kustomization::DeletionPolicy;
use plumb_api::{Kustomization, KustomizationStatus};
use plumb_ssa::Applier;

use crate::context::Context;
use crate::outcome::Failure;
use crate::reconciler::{Done, Kind, Policy};
use crate::{Error, Result};

impl Kind for Kustomization {
    const KIND: &'static str = "Kustomization";
    const POLICY: Policy = Policy::APPLIER;

    fn suspended(&self) -> bool {
        self.spec.suspend
    }

    fn every(&self) -> Duration {
        self.interval().unwrap_or(Duration::from_secs(600))
    }

    fn retry(&self) -> Duration {
        self.retry_interval().unwrap_or(self.every())
    }

    fn unsupported_note(&self) -> Option<String> {
        let unsupported = self.unsupported_fields();
        (!unsupported.is_empty()).then(|| plumb_api::unsupported::message(&unsupported))
    }

    const COMMIT_STATUS: bool = true;

    fn revision(status: &KustomizationStatus) -> &str {
        status.last_applied_revision.as_deref().unwrap_or_default()
    }

    async fn steps(
        obj: &Self,
        ctx: &Context,
        status: &mut KustomizationStatus,
    ) -> std::result::Result<Done, Failure> {
        // Taken first, so that a failure in any step leaves no record of success.
        let prior = unchanged::take(obj, ctx);
        let exprs = health::compile_exprs(obj)?;
        ignore::validate(obj)?;
        crate::dependencies::check(obj, &obj.spec.depends_on, ctx).await?;
        let artifact = source::source_artifact(obj, ctx).await?;
        let revision = artifact.revision.clone();
        status.last_attempted_revision = Some(revision.clone());
        // Beyond Flux: a new revision that changes nothing this build reads is recorded
        // without rendering or applying.
        if let Some(done) = unchanged::try_skip(obj, ctx, status, &artifact, prior).await {
            return Ok(done);
        }
        let full = unchanged::begin_full(obj, ctx).await;
        // Fetch and render. Failures here return before anything is applied or pruned.
        let (objects, seen) = render::render_recorded(obj, ctx, &artifact).await?;
        let (mut items, inventory) = apply::plan(obj, objects)?;
        let applier = applier(obj, ctx).await?;
        ignore::reshape(obj, &applier, &mut items).await?;
        let previous = status.inventory.clone();
        let recorded = prune::record_intent(obj, ctx, status, &inventory).await?;
        let applied = apply::apply(
            obj,
            ctx,
            &applier,
            (items, &inventory),
            status,
            previous.as_ref(),
        )
        .await;
        let mut changes = match applied {
            Ok(changes) => changes,
            Err(f) => {
                // A failed apply shrank the recorded intent to what it applied; write that
                // now, as the final status write compares with the status read before the
                // intent was recorded and could skip it. If this write fails, the larger
                // intent stays: safe, its extra objects are simply not found later.
                if recorded && let Some(inv) = &status.inventory {
                    let _ = prune::write_inventory(obj, ctx, inv).await;
                }
                return Err(f);
            }
        };
        let pruned = prune::prune(obj, ctx, &applier, previous.as_ref(), &inventory).await?;
        if !pruned.is_empty() {
            if !changes.is_empty() {
                changes.push('\n');
            }
            changes.push_str(&pruned);
        }
        status.inventory = Some(prune::to_status(&inventory));
        let healthy = health::check(obj, ctx, &applier, status, &revision, &exprs).await?;
        let event = (!changes.is_empty()).then_some((reason::RECONCILIATION_SUCCEEDED, changes));
        if !healthy {
            // Health checks are re-read soon instead of blocking this worker.
            return Ok(Done {
                ready: None,
                event,
                requeue: Some(Duration::from_secs(2)),
            });
        }
        if obj.spec.wait || !obj.spec.health_checks.is_empty() {
            conditions::set(
                &mut status.conditions,
                condition::HEALTHY,
                CondStatus::True,
                reason::SUCCEEDED,
                "Health check passed",
                obj.meta().generation,
            );
        }
        let msg = format!("Applied revision: {revision}");
        unchanged::remember(obj, ctx, full, &revision, seen);
        status.last_applied_revision = Some(revision);
        Ok(Done {
            ready: Some((reason::RECONCILIATION_SUCCEEDED, msg)),
            event,
            requeue: None,
        })
    }

    fn on_suspend(obj: &Self, ctx: &Context) {
        ctx.drift.untrack(render::owner_key(obj));
    }

    /// On deletion with `prune: true`, delete what the inventory holds (per deletionPolicy).
    async fn cleanup(obj: Arc<Self>, ctx: &Context) -> Result<Action> {
        let policy = obj.deletion_policy();
        let prune = match policy {
            DeletionPolicy::MirrorPrune => obj.spec.prune,
            DeletionPolicy::Delete | DeletionPolicy::WaitForTermination => true,
            DeletionPolicy::Orphan => false,
        };
        ctx.drift.untrack(render::owner_key(&obj));
        let _ = unchanged::take(&obj, ctx);
        if !prune || obj.spec.suspend {
            return Ok(Action::await_change());
        }
        let refs = prune::inventory_refs(obj.status.as_ref().and_then(|s| s.inventory.as_ref()));
        let applier = applier(&obj, ctx)
            .await
            .map_err(|f| Error::Kube(f.message))?;
        let opts = prune::prune_options(&obj, policy == DeletionPolicy::WaitForTermination);
        let pruned = applier
            .prune(&refs, &opts)
            .await
            .map_err(|e| Error::Kube(e.to_string()))?;
        ctx.metrics.applied(
            "Kustomization",
            "deleted",
            pruned.count(plumb_ssa::Action::Deleted),
        );
        Ok(Action::await_change())
    }
}

/// The applier to use: the shared one, one impersonating `spec.serviceAccountName`, or one
/// for the remote cluster of `spec.kubeConfig` (impersonating there; see [`crate::remote`]).
async fn applier(obj: &Kustomization, ctx: &Context) -> std::result::Result<Applier, Failure> {
    let ns = obj.namespace().unwrap_or_default();
    ctx.applier_for(
        &ns,
        obj.spec.kube_config.as_ref(),
        obj.spec.service_account_name.as_deref(),
        field_manager::KUSTOMIZE_CONTROLLER,
    )
    .await
}
