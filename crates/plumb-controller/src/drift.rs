//! Drift corrected in seconds (beyond Flux, which re-applies only at the interval).
//!
//! The objects in Kustomization inventories (and in the releases of HelmReleases with
//! `driftDetection` on) are watched metadata-only, one watch per kind that appears in
//! any tracked owner, shared by every owner of that kind and started and stopped as
//! inventories change. The watches select on the owner kind's ownership label, so they
//! see only objects such an owner applied.
//!
//! When a tracked object is deleted, or changed by someone other than the applier, the
//! owner is queued for a reconcile (kube-runtime's `reconcile_on`), which re-applies
//! (or, for a HelmRelease in `warn` mode, reports) it. "Changed by someone else" is read from metadata only: a resource
//! version our own last apply produced is skipped, and otherwise the managed-fields
//! entries of other managers are fingerprinted (manager, operation, fields; plus the
//! time for entries that do not touch `status`). A controller writing status leaves the
//! fingerprint alone, so Deployments rolling out cause no reconcile storm; our own apply
//! changes only our own entry. Objects whose opt-out annotation (`kustomize.toolkit.fluxcd.io/
//! reconcile` or `helm.toolkit.fluxcd.io/driftDetection`) says `disabled` are ignored,
//! and suspended owners are not tracked. When a kind's watch has listed its objects, the
//! owners of those objects are queued once, so a change made before the watch ran is
//! compared too.

use std::collections::{BTreeSet, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use futures::channel::mpsc::{UnboundedReceiver, UnboundedSender, unbounded};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::ObjectRef as KubeRef;
use kube::runtime::watcher;
use plumb_api::consts::{annotation, field_manager, label};
use plumb_api::{HelmRelease, Kustomization};
use plumb_ssa::{Applier, ObjectRef};

/// (group, kind, namespace, name): an object's identity across versions.
type Key = (String, String, String, String);
/// (namespace, name) of an owner.
type Owner = (String, String);

struct Tracked {
    keys: Vec<Key>,
    applier: Applier,
}

#[derive(Default)]
struct State {
    /// Which Kustomizations hold each object in their inventory.
    owners: HashMap<Key, BTreeSet<Owner>>,
    /// What each tracked Kustomization holds.
    tracked: HashMap<Owner, Tracked>,
    /// One watch per (group, kind), with the version it watches.
    watches: HashMap<(String, String), tokio::task::JoinHandle<()>>,
    /// Last fingerprint of every labelled object the watches saw.
    seen: HashMap<Key, u64>,
    /// Kinds whose watch has listed its initial objects (drift is seen from then on).
    synced: BTreeSet<(String, String)>,
}

/// What identifies one owner kind's objects: its ownership label, its applier's field
/// manager, and the per-object opt-out annotation.
#[derive(Clone, Copy, Debug)]
pub struct OwnerKind {
    /// Label every applied object carries (watches select on its presence).
    pub label: &'static str,
    /// Field manager of the owner's applies (its entries are not drift).
    pub manager: &'static str,
    /// Annotation that, set to `disabled`, excludes an object.
    pub opt_out: &'static str,
}

/// Kustomizations: `kustomize.toolkit.fluxcd.io/name`, `kustomize-controller`.
pub const KUSTOMIZATION: OwnerKind = OwnerKind {
    label: label::KUSTOMIZE_NAME,
    manager: field_manager::KUSTOMIZE_CONTROLLER,
    opt_out: annotation::KUSTOMIZE_RECONCILE,
};

/// HelmReleases: `helm.toolkit.fluxcd.io/name`, `helm-controller`.
pub const HELM_RELEASE: OwnerKind = OwnerKind {
    label: label::HELM_NAME,
    manager: field_manager::HELM_CONTROLLER,
    opt_out: annotation::HELM_DRIFT_DETECTION,
};

/// Watches owners' objects and queues the owner (a `K`) when they drift.
pub struct DriftWatcher<K: kube::Resource<DynamicType = ()> + 'static = Kustomization> {
    client: Client,
    kind: OwnerKind,
    trigger: UnboundedSender<KubeRef<K>>,
    receiver: Mutex<Option<UnboundedReceiver<KubeRef<K>>>>,
    state: Arc<Mutex<State>>,
}

/// The drift watcher of HelmReleases.
pub type HelmDriftWatcher = DriftWatcher<HelmRelease>;

impl<K: kube::Resource<DynamicType = ()>> std::fmt::Debug for DriftWatcher<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DriftWatcher").finish_non_exhaustive()
    }
}

impl<K: kube::Resource<DynamicType = ()>> Drop for DriftWatcher<K> {
    fn drop(&mut self) {
        if let Ok(st) = self.state.lock() {
            for h in st.watches.values() {
                h.abort();
            }
        }
    }
}

impl<K: kube::Resource<DynamicType = ()> + 'static> DriftWatcher<K> {
    /// A watcher of `kind`'s objects with no watches yet; the watches use `client` (the
    /// controller's identity).
    pub fn new(client: Client, kind: OwnerKind) -> Self {
        let (trigger, receiver) = unbounded();
        DriftWatcher {
            client,
            kind,
            trigger,
            receiver: Mutex::new(Some(receiver)),
            state: Arc::default(),
        }
    }

    /// The stream of owners to reconcile because their objects drifted. Can be taken
    /// once (by the owner kind's controller).
    pub fn take_triggers(&self) -> Option<UnboundedReceiver<KubeRef<K>>> {
        self.receiver.lock().ok().and_then(|mut r| r.take())
    }

    /// Sets what `owner` (namespace, name) holds: `refs`, applied by `applier`. Starts
    /// watches for kinds new to every inventory and stops those no inventory needs.
    pub async fn track(&self, owner: (&str, &str), refs: &[ObjectRef], applier: &Applier) {
        let owner: Owner = (owner.0.to_string(), owner.1.to_string());
        let mut kinds: HashMap<(String, String), String> = HashMap::new();
        for r in refs {
            kinds
                .entry((r.group.clone(), r.kind.clone()))
                .or_insert_with(|| r.version.clone());
        }
        {
            let Ok(mut st) = self.state.lock() else {
                return;
            };
            remove_owner(&mut st, &owner);
            for r in refs {
                st.owners.entry(r.key()).or_default().insert(owner.clone());
            }
            st.tracked.insert(
                owner,
                Tracked {
                    keys: refs.iter().map(ObjectRef::key).collect(),
                    applier: applier.clone(),
                },
            );
            // Watches start in their own tasks (discovery included), registered under this
            // lock: a reconcile never waits on a watch, and concurrent reconciles never
            // start the same watch twice.
            for ((group, kind), version) in kinds {
                if st.watches.contains_key(&(group.clone(), kind.clone())) {
                    continue;
                }
                let gvk = GroupVersionKind::gvk(&group, &version, &kind);
                let handle = tokio::spawn(start_watch(
                    self.client.clone(),
                    self.kind,
                    gvk,
                    self.state.clone(),
                    self.trigger.clone(),
                ));
                st.watches.insert((group, kind), handle);
            }
        }
        self.stop_unused();
    }

    /// Stops tracking `owner` (suspended, deleted, or its objects no longer reconciled).
    pub fn untrack(&self, owner: (&str, &str)) {
        if let Ok(mut st) = self.state.lock() {
            remove_owner(&mut st, &(owner.0.to_string(), owner.1.to_string()));
        }
        self.stop_unused();
    }

    /// How many kinds are watched (for tests and metrics).
    pub fn watched_kinds(&self) -> usize {
        self.state.lock().map(|s| s.watches.len()).unwrap_or(0)
    }

    /// How many watched kinds have listed their initial objects: changes made before
    /// that are taken as the baseline, not as drift (for tests that make drift).
    pub fn synced_kinds(&self) -> usize {
        self.state
            .lock()
            .map(|s| {
                s.synced
                    .iter()
                    .filter(|k| s.watches.contains_key(*k))
                    .count()
            })
            .unwrap_or(0)
    }

    fn stop_unused(&self) {
        let Ok(mut st) = self.state.lock() else {
            return;
        };
        let needed: BTreeSet<(String, String)> = st
            .owners
            .keys()
            .map(|(g, k, _, _)| (g.clone(), k.clone()))
            .collect();
        let unused: Vec<(String, String)> = st
            .watches
            .keys()
            .filter(|gk| !needed.contains(*gk))
            .cloned()
            .collect();
        for gk in unused {
            if let Some(h) = st.watches.remove(&gk) {
                h.abort();
            }
            st.seen.retain(|(g, k, _, _), _| (g, k) != (&gk.0, &gk.1));
            st.synced.remove(&gk);
        }
    }
}

fn remove_owner(st: &mut State, owner: &Owner) {
    if let Some(t) = st.tracked.remove(owner) {
        for k in t.keys {
            if let Some(set) = st.owners.get_mut(&k) {
                set.remove(owner);
                if set.is_empty() {
                    st.owners.remove(&k);
                }
            }
        }
    }
}

/// Resolves `gvk` through discovery, then watches it. A kind that cannot be resolved is
/// retried with backoff (its CRD may still be establishing).
async fn start_watch<K: kube::Resource<DynamicType = ()>>(
    client: Client,
    kind: OwnerKind,
    gvk: GroupVersionKind,
    state: Arc<Mutex<State>>,
    trigger: UnboundedSender<KubeRef<K>>,
) {
    let mut delay = std::time::Duration::from_secs(1);
    let ar = loop {
        match kube::discovery::pinned_kind(&client, &gvk).await {
            Ok((ar, _)) => break ar,
            Err(e) => {
                tracing::warn!(error = %e, ?gvk, "drift watch: resolving kind failed");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(std::time::Duration::from_secs(60));
            }
        }
    };
    watch_kind(client, kind, ar, state, trigger).await;
}

async fn watch_kind<K: kube::Resource<DynamicType = ()>>(
    client: Client,
    kind: OwnerKind,
    ar: ApiResource,
    state: Arc<Mutex<State>>,
    trigger: UnboundedSender<KubeRef<K>>,
) {
    let api: Api<PartialObjectMeta<DynamicObject>> = Api::all_with(client, &ar);
    let cfg = watcher::Config::default().labels(kind.label);
    let mut events = watcher::watcher(api, cfg).boxed();
    while let Some(ev) = events.next().await {
        let ev = match ev {
            Ok(ev) => ev,
            Err(e) => {
                tracing::debug!(error = %e, kind = %ar.kind, "drift watch error");
                continue;
            }
        };
        let Ok(mut st) = state.lock() else {
            return;
        };
        match ev {
            watcher::Event::Init => {}
            watcher::Event::InitDone => {
                st.synced.insert((ar.group.clone(), ar.kind.clone()));
                // What changed between an owner's apply and this listing is the baseline
                // now: queue the owners of this kind's objects once, so it is compared.
                let owners: BTreeSet<&Owner> = st
                    .owners
                    .iter()
                    .filter(|((g, k, _, _), _)| *g == ar.group && *k == ar.kind)
                    .flat_map(|(_, o)| o.iter())
                    .collect();
                for owner in owners {
                    let _ = trigger.unbounded_send(KubeRef::new(&owner.1).within(&owner.0));
                }
            }
            watcher::Event::InitApply(o) => {
                let key = key_of(&ar, &o);
                let fp = fingerprint(&o.metadata, kind.manager);
                st.seen.insert(key, fp);
            }
            watcher::Event::Apply(o) => {
                let key = key_of(&ar, &o);
                let fp = fingerprint(&o.metadata, kind.manager);
                let before = st.seen.insert(key.clone(), fp);
                if before.is_none() || before == Some(fp) || disabled(&o, kind) {
                    continue;
                }
                let rv = o.metadata.resource_version.clone().unwrap_or_default();
                let r = object_ref(&ar, &key);
                for owner in st.owners.get(&key).into_iter().flatten() {
                    let ours = st
                        .tracked
                        .get(owner)
                        .is_some_and(|t| t.applier.produced(&r, &rv));
                    if !ours {
                        tracing::info!(object = %r, owner = ?owner, "drift: object changed by another writer");
                        let _ = trigger.unbounded_send(KubeRef::new(&owner.1).within(&owner.0));
                    }
                }
            }
            watcher::Event::Delete(o) => {
                let key = key_of(&ar, &o);
                st.seen.remove(&key);
                if disabled(&o, kind) {
                    continue;
                }
                for owner in st.owners.get(&key).into_iter().flatten() {
                    tracing::info!(object = ?key, owner = ?owner, "drift: object deleted");
                    let _ = trigger.unbounded_send(KubeRef::new(&owner.1).within(&owner.0));
                }
            }
        }
    }
}

fn key_of(ar: &ApiResource, o: &PartialObjectMeta<DynamicObject>) -> Key {
    (
        ar.group.clone(),
        ar.kind.clone(),
        o.metadata.namespace.clone().unwrap_or_default(),
        o.metadata.name.clone().unwrap_or_default(),
    )
}

fn object_ref(ar: &ApiResource, key: &Key) -> ObjectRef {
    ObjectRef {
        group: key.0.clone(),
        kind: key.1.clone(),
        namespace: key.2.clone(),
        name: key.3.clone(),
        version: ar.version.clone(),
    }
}

fn disabled(o: &PartialObjectMeta<DynamicObject>, kind: OwnerKind) -> bool {
    o.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(kind.opt_out))
        .is_some_and(|v| v == annotation::DISABLED)
}

/// Who else manages what: managed-fields entries of managers other than the applier's,
/// with `status` fields left out; the write time counts only for entries that do not
/// touch status (so a controller's status updates never look like drift).
fn fingerprint(meta: &ObjectMeta, own_manager: &str) -> u64 {
    let mut parts: Vec<String> = meta
        .managed_fields
        .iter()
        .flatten()
        .filter(|f| f.manager.as_deref() != Some(own_manager))
        .map(|f| {
            let mut fields = f.fields_v1.as_ref().map(|v| v.0.clone());
            let touches_status = fields
                .as_mut()
                .and_then(serde_json::Value::as_object_mut)
                .and_then(|m| m.remove("f:status"))
                .is_some();
            let time = if touches_status {
                None
            } else {
                f.time.as_ref().map(|t| t.0.to_string())
            };
            serde_json::to_string(&(&f.manager, &f.operation, &fields, time)).unwrap_or_default()
        })
        .collect();
    parts.sort();
    let mut h = std::collections::hash_map::DefaultHasher::new();
    parts.hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, ManagedFieldsEntry, Time};

    fn meta(entries: Vec<ManagedFieldsEntry>) -> ObjectMeta {
        ObjectMeta {
            managed_fields: Some(entries),
            ..Default::default()
        }
    }

    fn entry(manager: &str, fields: serde_json::Value, secs: i64) -> ManagedFieldsEntry {
        ManagedFieldsEntry {
            manager: Some(manager.into()),
            operation: Some("Update".into()),
            fields_v1: Some(FieldsV1(fields)),
            time: Some(Time(
                k8s_openapi::jiff::Timestamp::from_second(secs).unwrap(),
            )),
            ..Default::default()
        }
    }

    fn fingerprint_k(meta: &ObjectMeta) -> u64 {
        fingerprint(meta, KUSTOMIZATION.manager)
    }

    #[test]
    fn status_writes_and_own_applies_are_not_drift() {
        let ours = |t| entry("kustomize-controller", serde_json::json!({"f:data": {}}), t);
        let kcm = |t| {
            entry(
                "kube-controller-manager",
                serde_json::json!({"f:status": {"f:replicas": {}}, "f:metadata": {}}),
                t,
            )
        };
        let a = fingerprint_k(&meta(vec![ours(1), kcm(1)]));
        assert_eq!(a, fingerprint_k(&meta(vec![ours(5), kcm(9)])));
        let edited = fingerprint_k(&meta(vec![
            ours(5),
            kcm(9),
            entry("kubectl-edit", serde_json::json!({"f:data": {}}), 10),
        ]));
        assert_ne!(a, edited);
        let edited_again = fingerprint_k(&meta(vec![
            ours(5),
            kcm(9),
            entry("kubectl-edit", serde_json::json!({"f:data": {}}), 11),
        ]));
        assert_ne!(edited, edited_again, "a second edit by the same manager");
    }
}
