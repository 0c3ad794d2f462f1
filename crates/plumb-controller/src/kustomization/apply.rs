//! Step **apply**: server-side apply of the rendered objects in stages (plumb-ssa), as
//! `kustomize-controller`, honouring Flux's ssa, reconcile and force annotations; the applied
//! objects' drift is watched from here on.

use std::time::Duration;

use plumb_api::consts::{annotation, reason};
use plumb_api::inventory::ResourceInventory;
use plumb_api::{Kustomization, KustomizationStatus};
use plumb_ssa::{Applier, ApplyItem, ApplyOptions, Inventory, SsaMode};
use serde_json::Value;

use super::render::owner_key;
use crate::context::Context;
use crate::outcome::{Class, Failure};

/// The objects to apply and the inventory they make, built before anything is applied.
pub(super) fn plan(
    obj: &Kustomization,
    objects: Vec<Value>,
) -> Result<(Vec<ApplyItem>, Inventory), Failure> {
    let inventory = Inventory::of(&objects)
        .map_err(|e| Failure::new(Class::Stalled, reason::BUILD_FAILED, e.to_string()))?;
    let items = objects
        .into_iter()
        .map(|o| apply_item(o, obj.spec.force))
        .collect();
    Ok((items, inventory))
}

/// Applies `items`; returns the change summary (event text). When a stage fails, the
/// inventory in `status` (the recorded intent) shrinks to `previous` plus what was applied:
/// the objects never created need not stay tracked (nor block a later prune).
pub(super) async fn apply(
    obj: &Kustomization,
    ctx: &Context,
    applier: &Applier,
    (items, inventory): (Vec<ApplyItem>, &Inventory),
    status: &mut KustomizationStatus,
    previous: Option<&ResourceInventory>,
) -> Result<String, Failure> {
    let opts = ApplyOptions {
        force: obj.spec.force,
        cleanup_managers: plumb_api::consts::field_manager::REMOVED_ON_APPLY
            .iter()
            .map(|(m, op)| ((*m).to_string(), op.as_str().to_string()))
            .collect(),
        wait_timeout: obj.timeout().unwrap_or(Duration::from_secs(300)),
    };
    let applied = applier.apply_all(items, &opts).await.map_err(|e| {
        if let plumb_ssa::Error::Apply { applied, .. } = &e {
            let done = Inventory {
                objects: applied
                    .entries
                    .iter()
                    .filter(|c| c.action != plumb_ssa::Action::Skipped)
                    .map(|c| c.object.clone())
                    .collect(),
            };
            status.inventory = Some(super::prune::union(previous, &done));
        }
        let class = if e.is_transient() {
            Class::Transient
        } else {
            Class::Stalled
        };
        Failure::new(class, reason::RECONCILIATION_FAILED, format!("{e}"))
    })?;
    for (action, name) in [
        (plumb_ssa::Action::Created, "created"),
        (plumb_ssa::Action::Configured, "configured"),
    ] {
        ctx.metrics
            .applied("Kustomization", name, applied.count(action));
    }
    ctx.drift
        .track(owner_key(obj), &inventory.objects, applier)
        .await;
    Ok(applied.summary())
}

/// How `object` is applied: Flux's ssa, reconcile and force annotations, `spec.force`.
pub fn apply_item(object: Value, force_all: bool) -> ApplyItem {
    let ann = |k: &str| {
        object
            .get("metadata")
            .and_then(|m| m.get("annotations"))
            .and_then(|a| a.get(k))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let mode = if ann(annotation::KUSTOMIZE_RECONCILE).as_deref() == Some(annotation::DISABLED) {
        SsaMode::Ignore
    } else {
        match ann(annotation::KUSTOMIZE_SSA) {
            Some(v) if v.eq_ignore_ascii_case(annotation::SSA_MERGE) => SsaMode::Merge,
            Some(v) if v.eq_ignore_ascii_case(annotation::SSA_IF_NOT_PRESENT) => {
                SsaMode::IfNotPresent
            }
            Some(v) if v.eq_ignore_ascii_case(annotation::SSA_IGNORE) => SsaMode::Ignore,
            _ => SsaMode::Override,
        }
    };
    let force =
        force_all || ann(annotation::KUSTOMIZE_FORCE).as_deref() == Some(annotation::ENABLED);
    ApplyItem {
        object,
        mode,
        force,
    }
}
