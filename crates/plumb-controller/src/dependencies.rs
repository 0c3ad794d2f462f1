//! `spec.dependsOn` of Kustomizations and HelmReleases: every dependency must be Ready for
//! its current generation before the dependant reconciles. A dependency of the same kind is
//! read typed; one of another kind (plumb's extension: `apiVersion` + `kind`) is read
//! generically.

use kube::api::Api;
use kube::{Resource, ResourceExt};
use plumb_api::conditions::{self, HasConditions};
use plumb_api::consts::{condition, reason};
use plumb_api::meta::DependencyReference;
use serde_json::Value;

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
        + serde::de::DeserializeOwned,
{
    let ns = obj.namespace().unwrap_or_default();
    for dep in deps {
        let dns = dep.namespace.clone().unwrap_or_else(|| ns.clone());
        // plumb's extension: `kind`/`apiVersion` name a dependency of another kind (a
        // Kustomization that installs a CRD a chart needs, say).
        if let Some(other) = dep.other_kind() {
            check_other_kind(ctx, other, &dns, &dep.name).await?;
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
