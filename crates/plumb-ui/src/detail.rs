//! One object's page: `GET /api/object/{kind}/{namespace}/{name}` (conditions, history,
//! events, inventory tree, spec, status) and `.../diff` (the `plumb diff` of its next apply,
//! computed by the binary through [`Differ`]).
//!
//! Everything is read on request with the user's client (no watch): Events by field
//! selector, nested inventories by GET, within depth and count budgets.

use std::collections::BTreeSet;
use std::time::Duration;

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Event;
use kube::api::{Api, ListParams};
use plumb_api::inventory::ObjMetadata;
use plumb_api::kinds::FluxKind;
use serde::Serialize;
use serde_json::{Value, json};

use crate::error::UiError;
use crate::model::ObjectSummary;
use crate::summary::summarize;

/// Nested Kustomizations/HelmReleases expanded at most this deep.
const MAX_DEPTH: usize = 8;
/// At most this many nested inventories read per request.
const MAX_FETCHES: usize = 100;
/// At most this many inventory nodes answered.
const MAX_NODES: usize = 10_000;
/// At most this many Events answered (the newest).
const MAX_EVENTS: usize = 100;
/// How long a diff may take.
pub const DIFF_TIMEOUT: Duration = Duration::from_secs(120);

/// `GET /api/object/...`: one object in full.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectDetail {
    /// As in the fleet.
    pub summary: ObjectSummary,
    /// `status.conditions` as written.
    pub conditions: Value,
    /// `status.history` (Kustomization, HelmRelease), else the last applied/attempted
    /// revision as one `{revision}` entry; newest first.
    pub history: Value,
    /// core/v1 Events about the object, newest first.
    pub events: Vec<EventRow>,
    /// Why there are no events when they could not be read (e.g. RBAC).
    pub events_error: Option<String>,
    /// The objects it applied, as a tree.
    pub inventory: Inventory,
    /// `spec`.
    pub spec: Value,
    /// `status`.
    pub status: Value,
}

/// One Event.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EventRow {
    /// `Normal` or `Warning`.
    #[serde(rename = "type")]
    pub type_: String,
    /// Reason.
    pub reason: String,
    /// Message.
    pub message: String,
    /// How many times it happened.
    pub count: i32,
    /// RFC 3339 time it last happened.
    pub last_seen: Option<String>,
    /// The reporting controller.
    pub source: String,
}

/// The inventory as a tree.
#[derive(Debug, Serialize, Default)]
pub struct Inventory {
    /// Set when nothing could be listed or a budget cut the tree, e.g. "no inventory".
    pub note: Option<String>,
    /// The applied objects.
    pub entries: Vec<InventoryNode>,
}

/// One applied object; a Kustomization or HelmRelease holds what it applied in turn.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InventoryNode {
    /// The fleet id when it is a Flux object (`Kind/namespace/name`), for a link.
    pub id: Option<String>,
    /// API group (empty for core).
    pub group: String,
    /// API version of its kind.
    pub version: String,
    /// Kind.
    pub kind: String,
    /// Namespace (empty when cluster-scoped).
    pub namespace: String,
    /// Name.
    pub name: String,
    /// What it applied (nested Kustomizations and HelmReleases).
    pub children: Vec<InventoryNode>,
    /// Why it was not expanded: `cycle`, `depth budget`, `count budget`, or a read error.
    pub note: Option<String>,
}

/// `GET .../diff`: what the next apply would change.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DiffOutput {
    /// Whether anything would change (`plumb diff` exit code 1).
    pub changed: bool,
    /// `plumb diff`'s output.
    pub text: String,
}

/// Computes `plumb diff ks|hr` for the UI; implemented by the binary (the diff needs the
/// controllers' render path), so this crate stays free of it.
pub trait Differ: Send + Sync {
    /// The diff of Kustomization or HelmRelease `namespace/name`; the error text is shown.
    fn diff(
        &self,
        kind: FluxKind,
        namespace: String,
        name: String,
    ) -> BoxFuture<'static, Result<DiffOutput, String>>;
}

/// Runs `differ` on one object within [`DIFF_TIMEOUT`].
pub async fn diff(
    differ: &dyn Differ,
    kind: FluxKind,
    ns: &str,
    name: &str,
) -> Result<DiffOutput, UiError> {
    if !matches!(kind, FluxKind::Kustomization | FluxKind::HelmRelease) {
        return Err(UiError::Diff(
            "only Kustomizations and HelmReleases have a diff".into(),
        ));
    }
    let run = differ.diff(kind, ns.to_string(), name.to_string());
    match tokio::time::timeout(DIFF_TIMEOUT, run).await {
        Ok(r) => r.map_err(UiError::Diff),
        Err(_) => Err(UiError::Diff(format!(
            "timed out after {}s",
            DIFF_TIMEOUT.as_secs()
        ))),
    }
}

async fn get_json(
    client: &kube::Client,
    kind: FluxKind,
    ns: &str,
    name: &str,
) -> Result<Value, UiError> {
    let what = format!("{} {ns}/{name}", kind.kind());
    let o = kind
        .api(client, ns)
        .get(name)
        .await
        .map_err(|e| UiError::from_kube(format!("getting {what}"), &what, e))?;
    let mut v = o.data;
    // Only what the page shows is kept; managedFields are large and never shown.
    v["metadata"] = json!({"name": o.metadata.name, "namespace": o.metadata.namespace,
                           "labels": o.metadata.labels});
    Ok(v)
}

/// One object's page. `known` is the fleet's summary of it, if any (it holds the references
/// resolved against other objects).
pub async fn object_detail(
    client: &kube::Client,
    kind: FluxKind,
    ns: &str,
    name: &str,
    known: Option<ObjectSummary>,
) -> Result<ObjectDetail, UiError> {
    let obj = get_json(client, kind, ns, name).await?;
    let summary = known.unwrap_or_else(|| summarize(kind, &obj));
    let status = obj["status"].clone();
    let (events, events_error) = match events(client, kind, ns, name).await {
        Ok(e) => (e, None),
        Err(e) => (Vec::new(), Some(e.to_string())),
    };
    let inventory = match kind {
        FluxKind::Kustomization | FluxKind::HelmRelease => {
            inventory_tree(client, kind, ns, name, &status).await
        }
        _ => Inventory {
            note: Some(format!("a {} applies nothing", kind.kind())),
            entries: vec![],
        },
    };
    Ok(ObjectDetail {
        summary,
        conditions: status["conditions"]
            .as_array()
            .map_or(json!([]), |c| json!(c)),
        history: history_of(&status),
        events,
        events_error,
        inventory,
        spec: obj["spec"].clone(),
        status,
    })
}

/// `status.history`, else the last applied (or attempted) revision.
fn history_of(status: &Value) -> Value {
    match status["history"].as_array() {
        Some(h) if !h.is_empty() => json!(h),
        _ => {
            let rev = status["lastAppliedRevision"]
                .as_str()
                .or_else(|| status["lastAttemptedRevision"].as_str());
            match rev {
                Some(r) => json!([{ "revision": r }]),
                None => json!([]),
            }
        }
    }
}

/// Events about the object, newest first.
async fn events(
    client: &kube::Client,
    kind: FluxKind,
    ns: &str,
    name: &str,
) -> Result<Vec<EventRow>, UiError> {
    let selector = format!(
        "involvedObject.kind={},involvedObject.name={name},involvedObject.namespace={ns}",
        kind.kind()
    );
    let list = Api::<Event>::namespaced(client.clone(), ns)
        .list(&ListParams::default().fields(&selector))
        .await
        .map_err(|e| UiError::from_kube(format!("listing events in {ns}"), ns, e))?;
    let mut rows: Vec<EventRow> = list
        .items
        .into_iter()
        .map(|e| EventRow {
            type_: e.type_.unwrap_or_default(),
            reason: e.reason.unwrap_or_default(),
            message: e.message.unwrap_or_default(),
            count: e.count.unwrap_or(1),
            last_seen: e
                .last_timestamp
                .map(|t| t.0.to_string())
                .or_else(|| e.event_time.map(|t| t.0.to_string())),
            source: e.source.and_then(|s| s.component).unwrap_or_default(),
        })
        .collect();
    rows.sort_by(|a, b| b.last_seen.cmp(&a.last_seen));
    rows.truncate(MAX_EVENTS);
    Ok(rows)
}

/// What one request may still spend while expanding the tree.
struct Budget {
    fetches: usize,
    nodes: usize,
}

/// The tree of a Kustomization's or HelmRelease's `status.inventory`.
async fn inventory_tree(
    client: &kube::Client,
    kind: FluxKind,
    ns: &str,
    name: &str,
    status: &Value,
) -> Inventory {
    let Some(entries) = status["inventory"]["entries"].as_array() else {
        let note = match kind {
            FluxKind::HelmRelease => {
                "no inventory in status (plumb writes one after a release; \
                                      Helm's release storage is not read)"
            }
            _ => "no inventory yet",
        };
        return Inventory {
            note: Some(note.into()),
            entries: vec![],
        };
    };
    let mut budget = Budget {
        fetches: MAX_FETCHES,
        nodes: MAX_NODES,
    };
    let mut path = BTreeSet::from([ObjectSummary::id_of(kind.kind(), ns, name)]);
    let entries = expand(client, entries.clone(), 1, &mut path, &mut budget).await;
    let note = (budget.nodes == 0).then(|| format!("cut at {MAX_NODES} objects"));
    Inventory { note, entries }
}

/// The Flux kind that applies objects, of an inventory entry.
fn applier_kind(m: &ObjMetadata) -> Option<FluxKind> {
    match (m.group.as_str(), m.kind.as_str()) {
        ("kustomize.toolkit.fluxcd.io", "Kustomization") => Some(FluxKind::Kustomization),
        ("helm.toolkit.fluxcd.io", "HelmRelease") => Some(FluxKind::HelmRelease),
        _ => None,
    }
}

/// The nodes of `entries` (inventory JSON), nested appliers expanded; `path` holds the ids
/// from the root down, to cut cycles.
fn expand<'a>(
    client: &'a kube::Client,
    entries: Vec<Value>,
    depth: usize,
    path: &'a mut BTreeSet<String>,
    budget: &'a mut Budget,
) -> BoxFuture<'a, Vec<InventoryNode>> {
    Box::pin(async move {
        let mut out = Vec::new();
        for e in entries {
            if budget.nodes == 0 {
                break;
            }
            budget.nodes -= 1;
            let Some(m) = e["id"]
                .as_str()
                .and_then(|id| id.parse::<ObjMetadata>().ok())
            else {
                continue;
            };
            let flux = FluxKind::ALL
                .into_iter()
                .find(|k| k.parts().0 == m.group && k.kind() == m.kind);
            let mut node = InventoryNode {
                id: flux.map(|k| ObjectSummary::id_of(k.kind(), &m.namespace, &m.name)),
                version: e["v"].as_str().unwrap_or_default().to_string(),
                children: vec![],
                note: None,
                group: m.group.clone(),
                kind: m.kind.clone(),
                namespace: m.namespace.clone(),
                name: m.name.clone(),
            };
            if let (Some(kind), Some(id)) = (applier_kind(&m), node.id.clone()) {
                node.note = if path.contains(&id) {
                    Some("cycle".into())
                } else if depth >= MAX_DEPTH {
                    Some("depth budget".into())
                } else if budget.fetches == 0 {
                    Some("count budget".into())
                } else {
                    budget.fetches -= 1;
                    match get_json(client, kind, &m.namespace, &m.name).await {
                        Ok(child) => {
                            let nested = child["status"]["inventory"]["entries"]
                                .as_array()
                                .cloned()
                                .unwrap_or_default();
                            path.insert(id.clone());
                            node.children = expand(client, nested, depth + 1, path, budget).await;
                            path.remove(&id);
                            None
                        }
                        Err(e) => Some(e.to_string()),
                    }
                };
            }
            out.push(node);
        }
        out
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn history_falls_back_to_the_revisions() {
        let h = json!([{"digest": "sha256:1", "metadata": {"revision": "main@sha1:a"}}]);
        assert_eq!(history_of(&json!({"history": h})), h);
        assert_eq!(
            history_of(&json!({"lastAttemptedRevision": "main@sha1:b"})),
            json!([{"revision": "main@sha1:b"}])
        );
        assert_eq!(history_of(&json!({})), json!([]));
    }

    #[tokio::test]
    async fn leaves_are_listed_without_requests() {
        // A client that is never called: the entries name no Kustomization or HelmRelease.
        let cfg = kube::Config::new("http://127.0.0.1:9".parse().unwrap());
        let client = kube::Client::try_from(cfg).unwrap();
        let entries = vec![
            json!({"id": "ns_app_apps_Deployment", "v": "v1"}),
            json!({"id": "ns_cfg__ConfigMap", "v": "v1"}),
            json!({"id": "not-an-id", "v": "v1"}),
        ];
        let mut budget = Budget {
            fetches: 0,
            nodes: 10,
        };
        let mut path = BTreeSet::new();
        let nodes = expand(&client, entries, 1, &mut path, &mut budget).await;
        let names: Vec<(&str, &str)> = nodes
            .iter()
            .map(|n| (n.kind.as_str(), n.name.as_str()))
            .collect();
        assert_eq!(names, [("Deployment", "app"), ("ConfigMap", "cfg")]);
        assert!(nodes.iter().all(|n| n.id.is_none() && n.note.is_none()));
    }
}
