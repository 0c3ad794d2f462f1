//! Step **prune**: delete what the previous inventory held and this revision does not (the
//! diff comes from plumb-ssa's [`Inventory`]), within the prune budget; and the conversions
//! between plumb-ssa's object references and the inventory in status.

use std::time::Duration;

use kube::ResourceExt;
use plumb_api::Kustomization;
use plumb_api::consts::{annotation, reason};
use plumb_api::inventory::{ObjMetadata, ResourceInventory, ResourceRef};
use plumb_ssa::{Applier, Inventory, ObjectRef, PruneOptions};

use super::render::owner_labels;
use crate::context::Context;
use crate::outcome::{Class, Failure};

/// Annotation that lets one pass prune more than the prune budget allows.
pub const PRUNE_BUDGET_ANNOTATION: &str = "plumb.dev/prune-budget";

/// Prunes what `previous` holds and `next` does not (when `spec.prune`); returns the change
/// summary. Refuses, keeping the old inventory, when it would delete more than the budget.
pub(super) async fn prune(
    obj: &Kustomization,
    ctx: &Context,
    applier: &Applier,
    previous: Option<&ResourceInventory>,
    next: &Inventory,
) -> Result<String, Failure> {
    let stale = next.stale(&inventory_refs(previous));
    if !obj.spec.prune || stale.is_empty() {
        return Ok(String::new());
    }
    let old_len = previous.map_or(0, |i| i.entries.len());
    let allowed = obj
        .annotations()
        .get(PRUNE_BUDGET_ANNOTATION)
        .map(String::as_str)
        == Some("disabled");
    let share = stale.len() as f64 / old_len.max(1) as f64;
    if !allowed && old_len >= 4 && share > ctx.config.prune_budget {
        // Keep the old inventory: the objects stay tracked until a human decides.
        return Err(Failure::new(
            Class::Stalled,
            reason::PRUNE_FAILED,
            format!(
                "refusing to prune {} of {old_len} objects ({:.0}% > budget {:.0}%); set annotation {PRUNE_BUDGET_ANNOTATION}: disabled to allow it",
                stale.len(),
                share * 100.0,
                ctx.config.prune_budget * 100.0
            ),
        ));
    }
    let pruned = applier
        .prune(&stale, &prune_options(obj, false))
        .await
        .map_err(|e| Failure::new(Class::Transient, reason::PRUNE_FAILED, e.to_string()))?;
    ctx.metrics.applied(
        "Kustomization",
        "deleted",
        pruned.count(plumb_ssa::Action::Deleted),
    );
    Ok(pruned.summary())
}

/// The inventory in status for `inventory`.
pub(super) fn to_status(inventory: &Inventory) -> ResourceInventory {
    ResourceInventory {
        entries: inventory
            .objects
            .iter()
            .map(|r| {
                ResourceRef::new(
                    &ObjMetadata::new(&r.namespace, &r.name, &r.group, &r.kind),
                    r.version.clone(),
                )
            })
            .collect(),
    }
}

pub(super) fn prune_options(obj: &Kustomization, wait: bool) -> PruneOptions {
    PruneOptions {
        owner_labels: owner_labels(obj),
        skip_annotations: vec![(
            annotation::KUSTOMIZE_PRUNE.to_string(),
            annotation::DISABLED.to_string(),
        )],
        propagation: None,
        wait: wait.then(|| obj.timeout().unwrap_or(Duration::from_secs(300))),
    }
}

/// The objects an inventory in status names.
pub(super) fn inventory_refs(inv: Option<&ResourceInventory>) -> Vec<ObjectRef> {
    inv.map(|i| i.entries.as_slice())
        .unwrap_or_default()
        .iter()
        .filter_map(|e| {
            let m = e.obj_metadata().ok()?;
            Some(ObjectRef {
                group: m.group,
                kind: m.kind,
                namespace: m.namespace,
                name: m.name,
                version: e.v.clone(),
            })
        })
        .collect()
}
