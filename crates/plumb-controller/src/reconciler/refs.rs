//! Watches of referenced objects: a change of a Secret (or a Provider) re-reconciles the
//! objects of the same namespace that reference it by name.

use kube::api::Api;
use kube::runtime::controller::Controller;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};

use super::Kind;

/// `controller` also watching `referenced`: a change of object `name` queues every object
/// of the controller's store in its namespace for which `refers(obj, name)` holds.
pub fn watch_referenced<K, W>(
    controller: Controller<K>,
    referenced: Api<W>,
    refers: impl Fn(&K, &str) -> bool + Send + Sync + 'static,
) -> Controller<K>
where
    K: Kind,
    W: Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let store = controller.store();
    controller.watches(referenced, watcher::Config::default(), move |w: W| {
        let ns = w.namespace();
        let name = w.name_any();
        store
            .state()
            .into_iter()
            .filter(|o| o.namespace() == ns && refers(o, &name))
            .map(|o| ObjectRef::from_obj(&*o))
            .collect::<Vec<_>>()
    })
}
