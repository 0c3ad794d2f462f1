//! What an apply or prune did ([`ChangeSet`]), and the inventory of a revision with its diff
//! against the previous one ([`Inventory`]): what to keep and what to prune.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::Error;
use crate::object::ObjectRef;

/// What happened to one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    /// The object did not exist and was created (or was recreated).
    Created,
    /// The object existed and changed.
    Configured,
    /// The object existed and did not change.
    Unchanged,
    /// The object was deleted.
    Deleted,
    /// The object was left alone (ssa Ignore/IfNotPresent, prune disabled, not owned).
    Skipped,
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Flux's wording in events: "Deployment/ns/x configured".
        f.write_str(match self {
            Action::Created => "created",
            Action::Configured => "configured",
            Action::Unchanged => "unchanged",
            Action::Deleted => "deleted",
            Action::Skipped => "skipped",
        })
    }
}

/// One entry of a [`ChangeSet`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The object.
    pub object: ObjectRef,
    /// What happened.
    pub action: Action,
}

/// What an apply or prune did, object by object, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChangeSet {
    /// The changes.
    pub entries: Vec<Change>,
}

impl ChangeSet {
    /// Entries other than Unchanged/Skipped, as `Kind/ns/name action` lines (event text).
    pub fn summary(&self) -> String {
        self.entries
            .iter()
            .filter(|c| !matches!(c.action, Action::Unchanged | Action::Skipped))
            .map(|c| format!("{} {}", c.object, c.action))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// How many entries had `action`.
    pub fn count(&self, action: Action) -> usize {
        self.entries.iter().filter(|c| c.action == action).count()
    }
}

/// The objects one revision applies, in render order: the next inventory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inventory {
    /// The objects.
    pub objects: Vec<ObjectRef>,
}

impl Inventory {
    /// The inventory of rendered `objects` (each must name its apiVersion, kind and name).
    pub fn of(objects: &[Value]) -> Result<Self, Error> {
        let objects = objects
            .iter()
            .map(ObjectRef::from_object)
            .collect::<Result<_, _>>()?;
        Ok(Inventory { objects })
    }

    /// What `previous` holds that this inventory does not (identity without the API
    /// version, so a moved apiVersion is not pruned): the objects to prune, in `previous`'s
    /// order.
    pub fn stale(&self, previous: &[ObjectRef]) -> Vec<ObjectRef> {
        let keep: BTreeSet<_> = self.objects.iter().map(ObjectRef::key).collect();
        previous
            .iter()
            .filter(|r| !keep.contains(&r.key()))
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_is_previous_minus_next_by_identity() {
        let cm = |name: &str, version: &str| {
            serde_json::json!({"apiVersion": version, "kind": "ConfigMap",
                "metadata": {"name": name, "namespace": "ns"}})
        };
        let next = Inventory::of(&[cm("a", "v1"), cm("b", "v1")]).unwrap();
        let previous = Inventory::of(&[cm("a", "v2"), cm("c", "v1")])
            .unwrap()
            .objects;
        let stale = next.stale(&previous);
        assert_eq!(stale.len(), 1);
        assert_eq!(stale[0].name, "c");
        assert!(Inventory::of(&[serde_json::json!({"kind": "X"})]).is_err());
    }
}
