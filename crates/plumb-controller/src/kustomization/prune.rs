//! Step **prune**: delete what the previous inventory held and this revision does not (the
//! diff comes from plumb-ssa's [`Inventory`]), within the prune budget; and the conversions
//! between plumb-ssa's object references and the inventory in status.

use std::time::Duration;

use std::collections::HashSet;

use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use plumb_api::consts::{annotation, reason};
use plumb_api::inventory::{ObjMetadata, ResourceInventory, ResourceRef};
use plumb_api::{Kustomization, KustomizationStatus};
use plumb_ssa::{Applier, Inventory, ObjectRef, PruneOptions};

use super::render::owner_labels;
use crate::context::Context;
use crate::outcome::{Class, Failure};

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
    // Over budget: keep the old inventory, the objects stay tracked until a human decides.
    crate::prune_budget::check(
        obj.annotations(),
        stale.len(),
        old_len,
        ctx.config.prune_budget,
    )
    .map_err(|m| Failure::new(Class::Stalled, reason::PRUNE_FAILED, m))?;
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

/// Records, before anything is applied, every object this pass may create: the previous
/// inventory plus the new objects, in memory and in the cluster (one status patch, only
/// when there are new objects). A process killed mid-apply restarts with an inventory that
/// names everything it may have created, so the next pass prunes what the source no longer
/// holds and nothing leaks; objects never created are simply not found.
pub(super) async fn record_intent(
    obj: &Kustomization,
    ctx: &Context,
    status: &mut KustomizationStatus,
    next: &Inventory,
) -> Result<bool, Failure> {
    let union = union(status.inventory.as_ref(), next);
    if status.inventory.as_ref() == Some(&union) {
        return Ok(false);
    }
    write_inventory(obj, ctx, &union).await?;
    status.inventory = Some(union);
    Ok(true)
}

/// Writes `inventory` into the status of `obj` now (one merge patch of that field only).
pub(super) async fn write_inventory(
    obj: &Kustomization,
    ctx: &Context,
    inventory: &ResourceInventory,
) -> Result<(), Failure> {
    let api: Api<Kustomization> =
        Api::namespaced(ctx.client.clone(), &obj.namespace().unwrap_or_default());
    let patch = serde_json::json!({"status": {"inventory": inventory}});
    api.patch_status(
        &obj.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await
    .map_err(|e| {
        Failure::new(
            Class::Transient,
            reason::RECONCILIATION_FAILED,
            format!("recording the inventory: {e}"),
        )
    })?;
    Ok(())
}

/// `base` plus the objects of `add` it does not hold yet, in that order.
pub(super) fn union(base: Option<&ResourceInventory>, add: &Inventory) -> ResourceInventory {
    let mut out = base.cloned().unwrap_or_default();
    let known: HashSet<String> = out.entries.iter().map(|e| e.id.clone()).collect();
    out.entries.extend(
        to_status(add)
            .entries
            .into_iter()
            .filter(|e| !known.contains(&e.id)),
    );
    out
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
        owner_annotations: Default::default(),
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
