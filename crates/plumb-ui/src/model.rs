//! The JSON the page reads: one summary per Flux object, with the references that make the
//! fleet graph. The contract between the server and `assets/app.js` (see the crate README).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The state an object is drawn in, from its kstatus conditions and `spec.suspend`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// `Ready=True`.
    Ready,
    /// `Reconciling=True`, or `Ready=Unknown` (progressing).
    Reconciling,
    /// `Ready=False` and not stalled: the last attempt failed and will be retried.
    Failed,
    /// `Stalled=True`: will not succeed until something changes.
    Stalled,
    /// `spec.suspend: true` (wins over every condition).
    Suspended,
    /// No conditions yet: never reconciled.
    Unknown,
}

/// How a reference relates an object to the one it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Rel {
    /// `sourceRef` (Kustomization, HelmChart, ImageUpdateAutomation) or a generator's source.
    Source,
    /// HelmRelease `chart.spec.sourceRef` or `chartRef`.
    Chart,
    /// `dependsOn`: waits for the named object to be Ready.
    DependsOn,
    /// Applied by the named Kustomization or HelmRelease (its inventory holds this object).
    AppliedBy,
    /// An ExternalArtifact produced by the named ArtifactGenerator.
    GeneratedBy,
    /// Alert `providerRef`.
    Provider,
    /// Alert `eventSources` and Receiver `resources` entries that name one object.
    Watches,
    /// ImagePolicy `imageRepositoryRef`.
    ImageRepository,
    /// An ImagePolicy an ImageUpdateAutomation's `policySelector` selects.
    Policy,
}

/// A reference from an object to another (an edge `id` -> this object in the graph).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ref {
    /// The referenced object's id (it may not exist: the page draws it as missing).
    pub id: String,
    /// What the reference means.
    pub rel: Rel,
}

/// One Flux object as the page shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectSummary {
    /// `Kind/namespace/name`: unique across the fleet, the key of every API path.
    pub id: String,
    /// The kind, e.g. `Kustomization`.
    pub kind: String,
    /// The served `group/version`.
    pub api_version: String,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// The state it is drawn in.
    pub state: State,
    /// The Ready (or Stalled) condition's reason, empty without one.
    pub reason: String,
    /// The Ready (or Stalled) condition's message.
    pub message: String,
    /// The revision shown for it (applied, artifact, chart version...), may be empty.
    pub revision: String,
    /// `metadata.labels`, for the label filter.
    pub labels: BTreeMap<String, String>,
    /// RFC 3339 time of the Ready condition's last transition (the failures list's order).
    pub last_transition: Option<String>,
    /// The objects this one reads or waits on.
    pub refs: Vec<Ref>,
}

impl ObjectSummary {
    /// The id of an object: `Kind/namespace/name`.
    pub fn id_of(kind: &str, namespace: &str, name: &str) -> String {
        format!("{kind}/{namespace}/{name}")
    }
}

/// `GET /api/fleet`: every object the user may list, and what the page may offer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Fleet {
    /// The kubeconfig context (or `in-cluster`), shown in the header.
    pub context: String,
    /// True when actions are off (the in-cluster shared view): the page shows no buttons.
    pub read_only: bool,
    /// Kinds the user may not list (RBAC): the page says so instead of showing none.
    pub forbidden_kinds: Vec<String>,
    /// The objects, sorted by id.
    pub objects: Vec<ObjectSummary>,
}

/// A change the server streams to the page (`GET /api/stream`, server-sent events).
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// An object appeared or changed (`event: upsert`, data: an [`ObjectSummary`]).
    Upsert(Box<ObjectSummary>),
    /// An object is gone (`event: delete`, data: `{"id": ...}`).
    Delete(String),
}
