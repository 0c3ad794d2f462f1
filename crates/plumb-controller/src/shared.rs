//! Plumbing the source reconcilers share: reading a referenced Secret and writing status.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams};
use plumb_api::consts::reason;

use crate::context::Context;
use crate::outcome::{Class, Failure};
use crate::{Error, Result};

/// The data of Secret `ns/name`. A failed read is transient, a missing Secret is waiting;
/// both carry `AuthenticationFailed`, as Flux reports them.
pub(crate) async fn secret_data(
    ctx: &Context,
    ns: &str,
    name: &str,
) -> std::result::Result<BTreeMap<String, Vec<u8>>, Failure> {
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    let secret = secrets.get_opt(name).await.map_err(|e| {
        Failure::new(
            Class::Transient,
            reason::AUTHENTICATION_FAILED,
            format!("failed to get secret '{ns}/{name}': {e}"),
        )
    })?;
    let Some(secret) = secret else {
        return Err(Failure::new(
            Class::Waiting,
            reason::AUTHENTICATION_FAILED,
            format!("secret '{ns}/{name}' not found"),
        ));
    };
    Ok(secret
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect())
}

/// Writes `status` of `name` as a merge patch from `before` (see [`crate::status_patch`]).
pub(crate) async fn write_status<K, S>(
    api: &Api<K>,
    name: &str,
    before: &S,
    status: &S,
) -> Result<()>
where
    K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    S: serde::Serialize,
{
    let patch = crate::status_patch(before, status);
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|e| Error::Kube(format!("writing status of {} {name}: {e}", K::kind(&()))))?;
    Ok(())
}

/// A controller for `K` that reconciles on changes of the desired state only, as Flux's
/// `GenerationChangedPredicate` plus `ReconcileRequestedPredicate` do: a new generation,
/// a changed `requestedAt`/`forceAt`/`resetAt` annotation, a finalizer change or a
/// deletion. Status writes (our own, after every reconcile) do not queue another
/// reconcile, which halves the reconciles of a fleet settling.
pub(crate) fn desired_state_controller<K>(
    api: kube::Api<K>,
    watch: kube::runtime::watcher::Config,
) -> kube::runtime::Controller<K>
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    use kube::ResourceExt;
    use kube::runtime::{WatchStreamExt, reflector, watcher};
    use plumb_api::consts::annotation;
    use std::hash::{Hash, Hasher};

    let (reader, writer) = reflector::store::<K>();
    let desired = |o: &K| {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        o.meta().generation.hash(&mut h);
        o.meta().deletion_timestamp.is_some().hash(&mut h);
        o.finalizers().hash(&mut h);
        for key in [
            annotation::RECONCILE_REQUESTED_AT,
            annotation::RECONCILE_FORCE_AT,
            annotation::RECONCILE_RESET_AT,
        ] {
            o.annotations().get(key).hash(&mut h);
        }
        Some(h.finish())
    };
    let stream = watcher(api, watch)
        .default_backoff()
        .reflect(writer)
        .applied_objects()
        .predicate_filter(desired, kube::runtime::PredicateConfig::default());
    kube::runtime::Controller::for_stream(stream, reader)
}
