//! The watch every kind's controller starts from.

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
