//! The labels of an event's object for Alerts' `matchLabels`, when the publisher did not
//! pass them: events about an object outside its reconcile (a HelmRelease's drift or test
//! failure, a GitRepository's unsupported field, a Provider's failing deliveries) carry only
//! the reference. Flux's notification-controller reads the object's labels from the API
//! server when an event source has `matchLabels`; so does this, once per event and only when
//! some Ready Alert's source would match the event but for its labels.

use std::collections::BTreeMap;
use std::time::Duration;

use kube::api::{Api, ApiResource, DynamicObject};
use kube::core::GroupVersionKind;
use kube::runtime::reflector::Store;
use plumb_api::Alert;
use plumb_notify::{Event, InvolvedObject};

/// How long a label lookup may take before the event is matched without labels.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// Whether a Ready Alert has an event source with `matchLabels` that names `event`'s object
/// by kind, namespace and name.
pub(super) fn wanted(alerts: &Store<Alert>, event: &Event) -> bool {
    let o = &event.involved_object;
    alerts.state().iter().any(|a| {
        let ns = kube::ResourceExt::namespace(a.as_ref()).unwrap_or_default();
        !a.spec.suspend
            && super::is_ready(a)
            && a.spec.event_sources.iter().any(|s| {
                !s.match_labels.is_empty()
                    && s.kind.as_str() == o.kind
                    && s.namespace.as_deref().unwrap_or(&ns) == o.namespace
                    && super::matching::glob(&s.name, &o.name)
            })
    })
}

/// The object's labels from the API server; `None` when it cannot be read (gone, no
/// access, no answer in time), and the event then matches no `matchLabels`.
pub(super) async fn lookup(
    client: &kube::Client,
    o: &InvolvedObject,
) -> Option<BTreeMap<String, String>> {
    let (group, version) = match o.api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", o.api_version.as_str()),
    };
    if version.is_empty() || o.kind.is_empty() || o.name.is_empty() {
        return None;
    }
    let ar = ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, &o.kind));
    let api: Api<DynamicObject> = if o.namespace.is_empty() {
        Api::all_with(client.clone(), &ar)
    } else {
        Api::namespaced_with(client.clone(), &o.namespace, &ar)
    };
    match tokio::time::timeout(LOOKUP_TIMEOUT, api.get_metadata_opt(&o.name)).await {
        Ok(Ok(Some(meta))) => Some(meta.metadata.labels.unwrap_or_default()),
        Ok(Ok(None)) => None,
        Ok(Err(e)) => {
            tracing::debug!(kind = %o.kind, name = %o.name, error = %e, "labels for matchLabels");
            None
        }
        Err(_) => None,
    }
}
