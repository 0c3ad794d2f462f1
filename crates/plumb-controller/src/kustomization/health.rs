//! Step **health**: read the health of the inventory (`spec.wait`) or of
//! `spec.healthChecks` once; failed, or still pending after the timeout, is a failure;
//! pending within it leaves `Healthy=Unknown` and `Reconciling=True` and the reconcile
//! comes back soon instead of blocking a worker (the [`crate::health::HealthClock`] times it).

use std::time::Duration;

use kube::{Resource, ResourceExt};
use plumb_api::conditions::{self, Status as CondStatus};
use plumb_api::consts::{condition, reason};
use plumb_api::{Kustomization, KustomizationStatus};
use plumb_ssa::kstatus::Status as Health;
use plumb_ssa::{Applier, ObjectRef};

use super::prune::inventory_refs;
use crate::cel::health::StatusEvaluator;
use crate::context::Context;
use crate::outcome::{Class, Failure};

/// The objects whose health gates Ready: the inventory with `spec.wait`, else the listed
/// health checks (empty: nothing to check).
fn checks(obj: &Kustomization, status: &KustomizationStatus) -> Vec<ObjectRef> {
    if obj.spec.wait {
        return inventory_refs(status.inventory.as_ref());
    }
    let ns = obj.namespace().unwrap_or_default();
    obj.spec
        .health_checks
        .iter()
        .map(|h| {
            let (group, version) = h
                .api_version
                .as_deref()
                .map(plumb_ssa::split_api_version)
                .unwrap_or(("", "v1"));
            ObjectRef {
                group: group.to_string(),
                kind: h.kind.clone(),
                namespace: h.namespace.clone().unwrap_or_else(|| ns.clone()),
                name: h.name.clone(),
                version: version.to_string(),
            }
        })
        .collect()
}

/// Compiles `spec.healthCheckExprs` (cached per expression); a bad expression stalls the
/// Kustomization as Flux does (`InvalidCELExpression`, terminal configuration error).
pub(super) fn compile_exprs(obj: &Kustomization) -> Result<Vec<StatusEvaluator>, Failure> {
    StatusEvaluator::compile_all(&obj.spec.health_check_exprs).map_err(|e| {
        Failure::new(
            Class::Stalled,
            reason::INVALID_CEL_EXPRESSION,
            format!("{}: {e}", crate::cel::TERMINAL_ERROR),
        )
    })
}

/// Reads health once: `Ok(true)` healthy (or nothing to check), `Ok(false)` still pending.
pub(super) async fn check(
    obj: &Kustomization,
    ctx: &Context,
    applier: &Applier,
    status: &mut KustomizationStatus,
    revision: &str,
    exprs: &[StatusEvaluator],
) -> Result<bool, Failure> {
    let checks = checks(obj, status);
    if checks.is_empty() {
        return Ok(true);
    }
    // healthCheckExprs replace kstatus for the kinds they name (custom resources without
    // standard conditions become checkable).
    let judge = |r: &ObjectRef, v: &serde_json::Value| {
        crate::cel::health::find(exprs, &r.group, &r.kind).map(|e| e.evaluate(v))
    };
    let report = applier
        .health_with(&checks, &judge)
        .await
        .map_err(|e| Failure::new(Class::Transient, reason::HEALTH_CHECK_FAILED, e.to_string()))?;
    let failed: Vec<String> = report
        .iter()
        .filter(|(_, h)| h.status == Health::Failed)
        .map(|(r, h)| format!("{r}: {}", h.message))
        .collect();
    let pending: Vec<String> = report
        .iter()
        .filter(|(_, h)| h.status != Health::Current && h.status != Health::Failed)
        .map(|(r, h)| match h.message.as_str() {
            "" => format!("{r} ({})", h.status),
            m => format!("{r} ({}: {m})", h.status),
        })
        .collect();
    let key = (obj.namespace().unwrap_or_default(), obj.name_any());
    let elapsed = ctx.health_clock.since(&key, revision);
    let timeout = obj
        .timeout()
        .unwrap_or(obj.interval().unwrap_or(Duration::from_secs(600)));
    let generation = obj.meta().generation;
    if !failed.is_empty() || (!pending.is_empty() && elapsed > timeout) {
        let what = if failed.is_empty() { pending } else { failed };
        let msg = format!("health check failed after {elapsed:?}: {}", what.join(", "));
        conditions::set(
            &mut status.conditions,
            condition::HEALTHY,
            CondStatus::False,
            reason::HEALTH_CHECK_FAILED,
            &msg,
            generation,
        );
        return Err(Failure::new(
            Class::Transient,
            reason::HEALTH_CHECK_FAILED,
            msg,
        ));
    }
    if pending.is_empty() {
        return Ok(true);
    }
    let msg = format!("Health check in progress: {}", pending.join(", "));
    conditions::set(
        &mut status.conditions,
        condition::HEALTHY,
        CondStatus::Unknown,
        reason::PROGRESSING,
        &msg,
        generation,
    );
    conditions::mark_reconciling(
        &mut status.conditions,
        reason::PROGRESSING,
        &msg,
        generation,
    );
    Ok(false)
}
