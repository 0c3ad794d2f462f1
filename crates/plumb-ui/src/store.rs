//! The fleet as the server holds it: the latest summary of every object, and a broadcast of
//! changes so that each open page gets live updates from one set of watches (no polling).

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use tokio::sync::broadcast;

use crate::model::{Change, ObjectSummary};

/// How many changes a slow page may fall behind before it is told to reload the fleet.
const CHANGE_BUFFER: usize = 4096;

/// The shared, cheaply cloned fleet store.
#[derive(Debug, Clone)]
pub struct Store {
    inner: Arc<RwLock<BTreeMap<String, ObjectSummary>>>,
    forbidden: Arc<RwLock<std::collections::BTreeSet<String>>>,
    changes: broadcast::Sender<Change>,
}

impl Default for Store {
    fn default() -> Self {
        Self::new()
    }
}

impl Store {
    /// An empty store.
    pub fn new() -> Self {
        let (changes, _) = broadcast::channel(CHANGE_BUFFER);
        Store {
            inner: Arc::new(RwLock::new(BTreeMap::new())),
            forbidden: Arc::default(),
            changes,
        }
    }

    /// Inserts or replaces an object; streams the change only when the summary changed, so
    /// that status-only churn the page cannot see costs no traffic.
    pub fn upsert(&self, summary: ObjectSummary) {
        let mut map = self.inner.write().unwrap_or_else(|e| e.into_inner());
        if map.get(&summary.id) == Some(&summary) {
            return;
        }
        map.insert(summary.id.clone(), summary.clone());
        drop(map);
        // No receiver (no page open) is fine.
        let _ = self.changes.send(Change::Upsert(Box::new(summary)));
    }

    /// Removes an object by id.
    pub fn delete(&self, id: &str) {
        let mut map = self.inner.write().unwrap_or_else(|e| e.into_inner());
        if map.remove(id).is_some() {
            drop(map);
            let _ = self.changes.send(Change::Delete(id.to_string()));
        }
    }

    /// Replaces every object of one kind (a watch's initial list or relist): objects of that
    /// kind not in `objects` are deleted.
    pub fn replace_kind(&self, kind: &str, objects: Vec<ObjectSummary>) {
        self.replace_kind_in(kind, None, objects);
    }

    /// [`Store::replace_kind`] limited to one namespace when `namespace` is set (a watch of
    /// one namespace, when the user may not list the kind cluster-wide).
    pub fn replace_kind_in(
        &self,
        kind: &str,
        namespace: Option<&str>,
        objects: Vec<ObjectSummary>,
    ) {
        let keep: std::collections::BTreeSet<String> =
            objects.iter().map(|o| o.id.clone()).collect();
        let stale: Vec<String> = {
            let map = self.inner.read().unwrap_or_else(|e| e.into_inner());
            map.values()
                .filter(|o| o.kind == kind && !keep.contains(&o.id))
                .filter(|o| namespace.is_none_or(|ns| o.namespace == ns))
                .map(|o| o.id.clone())
                .collect()
        };
        for id in stale {
            self.delete(&id);
        }
        for o in objects {
            self.upsert(o);
        }
    }

    /// One object by id.
    pub fn get(&self, id: &str) -> Option<ObjectSummary> {
        let map = self.inner.read().unwrap_or_else(|e| e.into_inner());
        map.get(id).cloned()
    }

    /// The objects of `kind` in namespace `ns` (a range of the id order: cheap).
    pub fn of_kind_in(&self, kind: &str, ns: &str) -> Vec<ObjectSummary> {
        let prefix = format!("{kind}/{ns}/");
        let map = self.inner.read().unwrap_or_else(|e| e.into_inner());
        map.range(prefix.clone()..)
            .take_while(|(id, _)| id.starts_with(&prefix))
            .map(|(_, o)| o.clone())
            .collect()
    }

    /// How many objects the store holds.
    pub fn len(&self) -> usize {
        self.inner.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Whether the store holds no object.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every object, sorted by id.
    pub fn snapshot(&self) -> Vec<ObjectSummary> {
        let map = self.inner.read().unwrap_or_else(|e| e.into_inner());
        map.values().cloned().collect()
    }

    /// Records whether the user may list `kind` (a watch answered 403).
    pub fn set_forbidden(&self, kind: &str, forbidden: bool) {
        let mut set = self.forbidden.write().unwrap_or_else(|e| e.into_inner());
        if forbidden {
            set.insert(kind.to_string());
        } else {
            set.remove(kind);
        }
    }

    /// The kinds the user may not list.
    pub fn forbidden_kinds(&self) -> Vec<String> {
        let set = self.forbidden.read().unwrap_or_else(|e| e.into_inner());
        set.iter().cloned().collect()
    }

    /// A receiver of the changes made from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.changes.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::State;

    fn obj(name: &str, state: State) -> ObjectSummary {
        ObjectSummary {
            id: ObjectSummary::id_of("Kustomization", "ns", name),
            kind: "Kustomization".into(),
            api_version: "kustomize.toolkit.fluxcd.io/v1".into(),
            namespace: "ns".into(),
            name: name.into(),
            state,
            reason: String::new(),
            message: String::new(),
            revision: String::new(),
            labels: Default::default(),
            last_transition: None,
            refs: vec![],
        }
    }

    #[test]
    fn streams_only_real_changes_and_relists_delete_the_missing() {
        let store = Store::new();
        let mut rx = store.subscribe();
        store.upsert(obj("a", State::Ready));
        store.upsert(obj("a", State::Ready));
        store.upsert(obj("b", State::Failed));
        store.replace_kind("Kustomization", vec![obj("b", State::Failed)]);
        let got: Vec<String> = std::iter::from_fn(|| rx.try_recv().ok())
            .map(|c| match c {
                Change::Upsert(o) => format!("+{}", o.name),
                Change::Delete(id) => format!("-{id}"),
            })
            .collect();
        assert_eq!(got, ["+a", "+b", "-Kustomization/ns/a"]);
        assert_eq!(store.snapshot().len(), 1);
    }
}
