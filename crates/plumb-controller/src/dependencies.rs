//! `spec.dependsOn` of Kustomizations and HelmReleases: every dependency must be Ready for
//! its current generation before the dependant reconciles. A dependency of the same kind is
//! read typed; one of another kind (plumb's extension: `apiVersion` + `kind`) is read
//! generically.
//!
//! `readyExpr` (Flux 2.7) replaces the built-in readiness check of its dependency with a CEL
//! expression over `self` (the dependant) and `dep` (the dependency), as Flux does without
//! its `AdditiveCELDependencyCheck` feature gate. Every expression is compiled before any
//! dependency is read; a bad one stalls the dependant (`InvalidCELExpression`). An
//! expression that evaluates to false, or fails to evaluate, leaves it waiting
//! (`DependencyNotReady`), retried as any dependency.

use kube::api::Api;
use kube::{Resource, ResourceExt};
use plumb_api::conditions::{self, HasConditions};
use plumb_api::consts::{condition, reason};
use plumb_api::meta::DependencyReference;
use serde_json::Value;
use std::sync::Arc;

use crate::cel::Expression;

/// The variables of a `readyExpr`: the dependant and the dependency.
const READY_EXPR_VARS: [&str; 2] = ["self", "dep"];

use crate::context::Context;
use crate::outcome::{Class, Failure};

/// Checks the dependencies of `obj` (of kind `K`, listed in `deps`): `Ok` when all are ready,
/// else `DependencyNotReady` (waiting; transient when a read failed; stalled when a
/// dependency of another kind has no apiVersion).
pub(crate) async fn check<K>(
    obj: &K,
    deps: &[DependencyReference],
    ctx: &Context,
) -> Result<(), Failure>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + HasConditions
        + Clone
        + std::fmt::Debug
        + serde::Serialize
        + serde::de::DeserializeOwned,
{
    let ns = obj.namespace().unwrap_or_default();
    let exprs = compile_ready_exprs(K::kind(&()).as_ref(), deps)?;
    let me = if exprs.iter().any(Option::is_some) {
        serde_json::to_value(obj).unwrap_or(Value::Null)
    } else {
        Value::Null
    };
    for (dep, expr) in deps.iter().zip(&exprs) {
        let dns = dep.namespace.clone().unwrap_or_else(|| ns.clone());
        // plumb's extension: `kind`/`apiVersion` name a dependency of another kind (a
        // Kustomization that installs a CRD a chart needs, say).
        if let Some(other) = dep.other_kind() {
            let ready = expr.as_deref().map(|e| (e, &me));
            check_other_kind(ctx, other, &dns, &dep.name, ready).await?;
            continue;
        }
        let api: Api<K> = Api::namespaced(ctx.client.clone(), &dns);
        let d = api.get_opt(&dep.name).await.map_err(|e| {
            Failure::new(
                Class::Transient,
                reason::DEPENDENCY_NOT_READY,
                format!("getting dependency '{dns}/{}': {e}", dep.name),
            )
        })?;
        if let (Some(expr), Some(d)) = (expr, &d) {
            let what = format!("{}/{dns}/{}", K::kind(&()), dep.name);
            let json = serde_json::to_value(d).unwrap_or(Value::Null);
            eval_ready(expr, &me, &json, &what)?;
            continue;
        }
        let ready = d.as_ref().is_some_and(|d| {
            conditions::is_ready_for_generation(d.conditions(), d.meta().generation)
                && d.observed_generation() == d.meta().generation
        });
        if !ready {
            return Err(Failure::new(
                Class::Waiting,
                reason::DEPENDENCY_NOT_READY,
                format!("dependency '{dns}/{}' is not ready", dep.name),
            ));
        }
    }
    Ok(())
}

/// A dependency on another kind (plumb's extension of `dependsOn`): read generically,
/// ready when its `Ready` condition is `True` for its current generation.
async fn check_other_kind(
    ctx: &Context,
    other: std::result::Result<(String, String), String>,
    ns: &str,
    name: &str,
    ready_expr: Option<(&Expression, &Value)>,
) -> std::result::Result<(), Failure> {
    let (api_version, kind) = other.map_err(|kind| {
        Failure::new(
            Class::Stalled,
            reason::DEPENDENCY_NOT_READY,
            format!("dependency '{kind}/{ns}/{name}': apiVersion is required for kind {kind}"),
        )
    })?;
    let what = format!("{kind}/{ns}/{name}");
    let (group, version) = plumb_ssa::split_api_version(&api_version);
    let gvk = kube::api::GroupVersionKind::gvk(group, version, &kind);
    let (ar, caps) = kube::discovery::pinned_kind(&ctx.client, &gvk)
        .await
        .map_err(|e| {
            Failure::new(
                Class::Waiting,
                reason::DEPENDENCY_NOT_READY,
                format!("dependency '{what}': kind {api_version} {kind} is not served: {e}"),
            )
        })?;
    let api: Api<kube::api::DynamicObject> = if caps.scope == kube::discovery::Scope::Namespaced {
        Api::namespaced_with(ctx.client.clone(), ns, &ar)
    } else {
        Api::all_with(ctx.client.clone(), &ar)
    };
    let d = api.get_opt(name).await.map_err(|e| {
        Failure::new(
            Class::Transient,
            reason::DEPENDENCY_NOT_READY,
            format!("getting dependency '{what}': {e}"),
        )
    })?;
    if let (Some((expr, me)), Some(d)) = (ready_expr, &d) {
        let json = serde_json::to_value(d).unwrap_or(Value::Null);
        return eval_ready(expr, me, &json, &what);
    }
    if d.as_ref().is_some_and(dynamic_ready) {
        Ok(())
    } else {
        Err(Failure::new(
            Class::Waiting,
            reason::DEPENDENCY_NOT_READY,
            format!("dependency '{what}' is not ready"),
        ))
    }
}

/// The compiled `readyExpr` of each dependency (aligned with `deps`; `None` without one);
/// the first bad expression stalls the dependant, as Flux's terminal error.
fn compile_ready_exprs(
    kind: &str,
    deps: &[DependencyReference],
) -> Result<Vec<Option<Arc<Expression>>>, Failure> {
    deps.iter()
        .map(|dep| {
            let Some(src) = dep.ready_expr.as_deref().filter(|s| !s.is_empty()) else {
                return Ok(None);
            };
            Expression::cached(src, Some(&READY_EXPR_VARS))
                .map(Some)
                .map_err(|e| {
                    let k = dep.kind.as_deref().unwrap_or(kind);
                    Failure::new(
                        Class::Stalled,
                        reason::INVALID_CEL_EXPRESSION,
                        format!(
                            "{}: failed to parse expression for dependency {k}/{}: {e}",
                            crate::cel::TERMINAL_ERROR,
                            dep.name
                        ),
                    )
                })
        })
        .collect()
}

/// Evaluates a `readyExpr` with `self` (the dependant) and `dep` (the dependency, `what`).
fn eval_ready(expr: &Expression, me: &Value, dep: &Value, what: &str) -> Result<(), Failure> {
    match expr.eval_bool(&[("self", me), ("dep", dep)]) {
        Ok(true) => Ok(()),
        Ok(false) => Err(Failure::new(
            Class::Waiting,
            reason::DEPENDENCY_NOT_READY,
            format!("dependency '{what}' is not ready according to readyExpr eval"),
        )),
        Err(e) => Err(Failure::new(
            Class::Waiting,
            reason::DEPENDENCY_NOT_READY,
            format!("failed to evaluate dependency '{what}': {e}"),
        )),
    }
}

/// `Ready=True`, and computed for the current generation where the object says which
/// generation it observed (status.observedGeneration, or the condition's own).
fn dynamic_ready(o: &kube::api::DynamicObject) -> bool {
    let generation = o.metadata.generation;
    let status = o.data.get("status");
    let Some(ready) = status
        .and_then(|s| s.get("conditions"))
        .and_then(Value::as_array)
        .and_then(|c| c.iter().find(|c| c["type"] == condition::READY))
    else {
        return false;
    };
    let observed = status
        .and_then(|s| s.get("observedGeneration"))
        .or_else(|| ready.get("observedGeneration"))
        .and_then(Value::as_i64);
    ready["status"] == "True"
        && (observed.is_none() || generation.is_none() || observed == generation)
}
