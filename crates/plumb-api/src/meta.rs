//! Shared API types of `github.com/fluxcd/pkg/apis/meta` and `apis/acl`, used by several kinds.
//!
//! JSON names, required fields and validation follow Flux's Go types field by field.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

/// Go `metav1.Duration` as Flux validates it in most intervals and timeouts.
pub const DURATION_PATTERN: &str = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$";
/// Go `metav1.Duration` restricted to at most minutes (GitRepository and HelmRepository timeouts).
pub const DURATION_PATTERN_NO_HOURS: &str = r"^([0-9]+(\.[0-9]+)?(ms|s|m))+$";
/// Pattern of an artifact digest, `<algorithm>:<encoded>`.
pub const DIGEST_PATTERN: &str = r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$";

pub(crate) fn is_false(b: &bool) -> bool {
    !*b
}

/// A reference to an object in the same namespace (`meta.LocalObjectReference`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct LocalObjectReference {
    /// Name of the referent.
    pub name: String,
}

/// A reference to an object in any namespace (`meta.NamespacedObjectReference`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct NamespacedObjectReference {
    /// Name of the referent.
    pub name: String,
    /// Namespace of the referent; when not specified it acts as a local reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// A typed reference to an object in any namespace (`meta.NamespacedObjectKindReference`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NamespacedObjectKindReference {
    /// API version of the referent; the preferred version is used when empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// Kind of the referent.
    pub kind: String,
    /// Name of the referent.
    pub name: String,
    /// Namespace of the referent; when not specified it acts as a local reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// A reference to a key of a Secret in the same namespace (`meta.SecretKeyReference`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SecretKeyReference {
    /// Name of the Secret.
    pub name: String,
    /// Key in the Secret; when not specified an implementation-specific default is used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// Where to find the kubeconfig of a remote cluster (`meta.KubeConfigReference`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KubeConfigReference {
    /// ConfigMap holding the provider configuration of a workload-identity kubeconfig;
    /// mutually exclusive with `secretRef`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_ref: Option<LocalObjectReference>,
    /// Secret holding a kubeconfig, by default under the key `value` or `value.yaml`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretKeyReference>,
}

/// The `lastHandledReconcileAt` field shared by all statuses (`meta.ReconcileRequestStatus`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReconcileRequestStatus {
    /// The value of the most recent `reconcile.fluxcd.io/requestedAt` annotation handled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_reconcile_at: Option<String>,
}

/// The output of a source reconciliation (`meta.Artifact`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Artifact {
    /// Relative file path of the artifact in the storage, e.g. `gitrepository/ns/name/<sha>.tar.gz`.
    pub path: String,
    /// HTTP address of the artifact as exposed by the controller.
    pub url: String,
    /// Human-readable identifier of the artifact's origin, e.g. `main@sha1:<hex>`.
    pub revision: String,
    /// Digest of the file, `<algorithm>:<checksum>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DIGEST_PATTERN))]
    pub digest: Option<String>,
    /// When the artifact was last updated.
    pub last_update_time: Time,
    /// Size of the file in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<i64>,
    /// Additional metadata of the artifact.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
}

/// Access control list for cross-namespace references (`acl.AccessFrom`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccessFrom {
    /// Namespaces allowed to reference the object; an empty list allows none.
    pub namespace_selectors: Vec<NamespaceSelector>,
}

/// Selects namespaces by labels (`acl.NamespaceSelector`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NamespaceSelector {
    /// Label pairs a namespace must carry; the requirements are ANDed.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
}

/// One entry of a reconciliation history (`meta.Snapshot`), used by `Kustomization.status.history`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HistorySnapshot {
    /// Checksum `<algo>:<hex>` of the reconciled resources; identifies the snapshot.
    pub digest: String,
    /// When this digest was first reconciled.
    pub first_reconciled: Time,
    /// When this digest was last reconciled.
    pub last_reconciled: Time,
    /// How long the last reconciliation took (Go duration).
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub last_reconciled_duration: String,
    /// Outcome of the last reconciliation, e.g. `ReconciliationSucceeded`.
    pub last_reconciled_status: String,
    /// Number of reconciliations of this digest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_reconciliations: Option<i64>,
    /// Extra data of the reconciler, e.g. the revision.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
}

/// A dependency on another object of the same kind (`meta.DependencyReference`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DependencyReference {
    /// Name of the referent.
    pub name: String,
    /// Namespace; that of the dependent object when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// CEL expression replacing the built-in readiness check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_expr: Option<String>,
    /// plumb extension: kind of the referent when it differs from the dependent's (e.g. a
    /// Kustomization waiting for a `HelmRelease`). The referent is ready when its `Ready`
    /// condition is `True` and its status has observed its current generation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// plumb extension: apiVersion of the referent, with `kind`. Optional for Flux's own
    /// kinds (their GA version is used); required for any other kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
}

impl DependencyReference {
    /// The (apiVersion, kind) of a cross-kind dependency: `None` when it names the
    /// dependent's own kind (no `kind` set), `Some(Err(kind))` when `kind` needs an
    /// `apiVersion` that is missing.
    pub fn other_kind(&self) -> Option<Result<(String, String), String>> {
        let kind = self.kind.as_deref()?;
        if let Some(av) = &self.api_version {
            return Some(Ok((av.clone(), kind.to_string())));
        }
        let av = match kind {
            "Kustomization" => "kustomize.toolkit.fluxcd.io/v1",
            "HelmRelease" => "helm.toolkit.fluxcd.io/v2",
            "GitRepository" | "HelmRepository" | "HelmChart" | "OCIRepository" | "Bucket"
            | "ExternalArtifact" => "source.toolkit.fluxcd.io/v1",
            _ => return Some(Err(kind.to_string())),
        };
        Some(Ok((av.to_string(), kind.to_string())))
    }
}
