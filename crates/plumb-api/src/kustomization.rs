//! `kustomize.toolkit.fluxcd.io/v1` Kustomization.

use std::collections::BTreeMap;
use std::time::Duration;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::inventory::ResourceInventory;
use crate::kustomize::{CustomHealthCheck, Image, Patch, Selector};
use crate::meta::{
    Condition, DURATION_PATTERN, DependencyReference, HistorySnapshot, KubeConfigReference,
    LocalObjectReference, NamespacedObjectKindReference, ReconcileRequestStatus, is_false,
};

/// Builds a kustomize overlay (or plain YAML) from a source artifact and applies it.
// The printcolumn(...) entries repeat keys such as `type_`; clippy mistakes them for
// duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "kustomize.toolkit.fluxcd.io",
    version = "v1",
    kind = "Kustomization",
    plural = "kustomizations",
    namespaced,
    status = "KustomizationStatus",
    shortname = "ks",
    category = "fluxcd",
    category = "flux",
    derive = "PartialEq",
    doc = "Kustomization is the Schema for the kustomizations API.",
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Status",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].message"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct KustomizationSpec {
    /// Labels and annotations added to every applied object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub common_metadata: Option<CommonMetadata>,
    /// JSON pointers excluded from drift detection and apply on objects that already exist
    /// (Flux 2.9): their in-cluster value is kept (adopted, or released to the other
    /// server-side apply manager that owns it); a created object gets the whole manifest.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignore: Vec<DriftIgnoreRule>,
    /// kustomize build metadata added to every object: `originAnnotations`
    /// (`config.kubernetes.io/origin`) and `transformerAnnotations`
    /// (`alpha.config.kubernetes.io/transformations`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub build_metadata: Vec<BuildMetadataOption>,
    /// Kustomizations that must be ready before this one is reconciled.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<DependencyReference>,
    /// Decryption of SOPS-encrypted Secrets before applying.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decryption: Option<Decryption>,
    /// How often the Kustomization is reconciled.
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub interval: String,
    /// Retry interval after a failure; defaults to `interval`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub retry_interval: Option<String>,
    /// Kubeconfig of a remote cluster to apply to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kube_config: Option<KubeConfigReference>,
    /// Directory in the artifact with the kustomization.yaml or plain YAML; the root when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Post-build variable substitution.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_build: Option<PostBuild>,
    /// Enables garbage collection of objects removed from the source.
    pub prune: bool,
    /// What happens to applied objects when the Kustomization is deleted; `MirrorPrune` when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_policy: Option<DeletionPolicy>,
    /// Objects included in the health assessment.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub health_checks: Vec<NamespacedObjectKindReference>,
    /// Prefix added to the names of all objects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 200))]
    pub name_prefix: Option<String>,
    /// Suffix added to the names of all objects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 200))]
    pub name_suffix: Option<String>,
    /// Strategic-merge and JSON6902 patches.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub patches: Vec<Patch>,
    /// Image overrides.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<Image>,
    /// ServiceAccount to impersonate when applying.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
    /// The source that holds the manifests.
    pub source_ref: CrossNamespaceSourceReference,
    /// Suspends reconciliation.
    #[serde(default, skip_serializing_if = "is_false")]
    pub suspend: bool,
    /// Sets or overrides the namespace of all namespaced objects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub target_namespace: Option<String>,
    /// Timeout of apply and health checks; derived from `interval` when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub timeout: Option<String>,
    /// Recreates objects whose immutable fields changed.
    #[serde(default, skip_serializing_if = "is_false")]
    #[schemars(extend("default" = false))]
    pub force: bool,
    /// Waits for all applied objects to become ready (health checks are then ignored).
    #[serde(default, skip_serializing_if = "is_false")]
    pub wait: bool,
    /// Relative paths of kustomize components.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub components: Vec<String>,
    /// Drops components whose path does not exist instead of failing.
    #[serde(default, skip_serializing_if = "is_false")]
    pub ignore_missing_components: bool,
    /// CEL health checks for custom resource kinds.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub health_check_exprs: Vec<CustomHealthCheck>,
    /// plumb's earlier name of `spec.ignore`; its rules are added to those of `spec.ignore`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drift_ignore_rules: Vec<DriftIgnoreRule>,
}

/// A kustomize build metadata option Flux accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum BuildMetadataOption {
    /// `config.kubernetes.io/origin` on every object.
    #[serde(rename = "originAnnotations")]
    OriginAnnotations,
    /// `alpha.config.kubernetes.io/transformations` on every object.
    #[serde(rename = "transformerAnnotations")]
    TransformerAnnotations,
}

impl BuildMetadataOption {
    /// The kustomization.yaml spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            BuildMetadataOption::OriginAnnotations => "originAnnotations",
            BuildMetadataOption::TransformerAnnotations => "transformerAnnotations",
        }
    }
}

/// When postBuild substitution runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum SubstituteStrategy {
    /// Only when at least one variable is defined (inline or from a ConfigMap or Secret).
    #[default]
    WithVariables,
    /// Always, even with no variable defined (defaults such as `${x:=y}` apply).
    Always,
}

/// Labels and annotations applied to every object.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CommonMetadata {
    /// Annotations to add.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Labels to add.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// Paths ignored by drift detection for the selected objects.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct DriftIgnoreRule {
    /// JSON pointers (RFC 6901) to ignore.
    pub paths: Vec<String>,
    /// Objects the rule applies to; all objects when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<Selector>,
}

/// Decryption settings.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Decryption {
    /// Decryption engine.
    pub provider: DecryptionProvider,
    /// ServiceAccount used to authenticate with cloud KMS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
    /// Secret with the private keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<LocalObjectReference>,
}

/// Decryption engine.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DecryptionProvider {
    /// Mozilla SOPS.
    #[default]
    Sops,
}

/// Post-build actions on the rendered YAML.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PostBuild {
    /// Variables substituted in `${var}` expressions.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub substitute: BTreeMap<String, String>,
    /// ConfigMaps and Secrets holding variables.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub substitute_from: Vec<SubstituteReference>,
    /// When substitution runs: `WithVariables` (default) or `Always`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub substitute_strategy: Option<SubstituteStrategy>,
}

/// A ConfigMap or Secret holding substitution variables.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SubstituteReference {
    /// `Secret` or `ConfigMap`.
    pub kind: ValuesKind,
    /// Name, in the namespace of the Kustomization.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Tolerates the absence of the object.
    #[serde(default, skip_serializing_if = "is_false")]
    #[schemars(extend("default" = false))]
    pub optional: bool,
}

/// Kind of an object holding values or variables.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ValuesKind {
    /// A core/v1 Secret.
    Secret,
    /// A core/v1 ConfigMap.
    ConfigMap,
}

/// Deletion policy of a Kustomization.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum DeletionPolicy {
    /// Delete when `prune` is true, orphan otherwise.
    #[default]
    MirrorPrune,
    /// Delete the applied objects.
    Delete,
    /// Delete and wait until they are gone.
    WaitForTermination,
    /// Leave the applied objects in place.
    Orphan,
}

/// Reference to a source object, possibly in another namespace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CrossNamespaceSourceReference {
    /// API version of the source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// Kind of the source.
    pub kind: SourceKind,
    /// Name of the source.
    pub name: String,
    /// Namespace of the source; that of the Kustomization when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// Kinds a Kustomization can take manifests from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum SourceKind {
    /// `source.toolkit.fluxcd.io` OCIRepository.
    OCIRepository,
    /// `source.toolkit.fluxcd.io` GitRepository.
    GitRepository,
    /// `source.toolkit.fluxcd.io` Bucket.
    Bucket,
    /// `source.toolkit.fluxcd.io` ExternalArtifact.
    ExternalArtifact,
}

/// Observed state of a Kustomization.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KustomizationStatus {
    /// Handled reconcile request.
    #[serde(flatten)]
    pub reconcile_request: ReconcileRequestStatus,
    /// Last reconciled generation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Conditions of the object.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Revision of the last successfully applied artifact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_applied_revision: Option<String>,
    /// Origin revision (artifact metadata) of the last successfully applied artifact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_applied_origin_revision: Option<String>,
    /// Revision of the last reconciliation attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_attempted_revision: Option<String>,
    /// Objects applied by the last successful reconciliation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inventory: Option<ResourceInventory>,
    /// Snapshots of the last reconciliations.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<HistorySnapshot>,
}

impl Kustomization {
    /// `spec.interval` as a duration.
    pub fn interval(&self) -> Result<Duration, crate::Error> {
        crate::duration::parse(&self.spec.interval)
    }

    /// The retry interval after a failure: `spec.retryInterval`, else `spec.interval`.
    pub fn retry_interval(&self) -> Result<Duration, crate::Error> {
        match &self.spec.retry_interval {
            Some(r) => crate::duration::parse(r),
            None => self.interval(),
        }
    }

    /// The apply and health-check timeout as Flux computes it: `spec.timeout`, else
    /// `interval - 30s`, and never less than 30s.
    pub fn timeout(&self) -> Result<Duration, crate::Error> {
        const MIN: Duration = Duration::from_secs(30);
        let d = match &self.spec.timeout {
            Some(t) => crate::duration::parse(t)?,
            None => self.interval()?.saturating_sub(MIN),
        };
        Ok(d.max(MIN))
    }

    /// The deletion policy, `MirrorPrune` when unset.
    pub fn deletion_policy(&self) -> DeletionPolicy {
        self.spec.deletion_policy.unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ks(spec: serde_json::Value) -> Kustomization {
        Kustomization::new("x", serde_json::from_value(spec).unwrap())
    }

    #[test]
    fn timeouts_follow_flux() {
        let base = serde_json::json!({
            "interval": "10m", "prune": true,
            "sourceRef": {"kind": "GitRepository", "name": "r"}
        });
        let k = ks(base.clone());
        assert_eq!(k.timeout().unwrap(), Duration::from_secs(570));
        assert_eq!(k.retry_interval().unwrap(), Duration::from_secs(600));
        assert_eq!(k.deletion_policy(), DeletionPolicy::MirrorPrune);
        let mut short = base.clone();
        short["interval"] = "40s".into();
        assert_eq!(ks(short).timeout().unwrap(), Duration::from_secs(30));
        let mut explicit = base;
        explicit["timeout"] = "2m".into();
        explicit["retryInterval"] = "1m".into();
        let k = ks(explicit);
        assert_eq!(k.timeout().unwrap(), Duration::from_secs(120));
        assert_eq!(k.retry_interval().unwrap(), Duration::from_secs(60));
    }
}

string_enum!(SourceKind {
    OCIRepository => "OCIRepository",
    GitRepository => "GitRepository",
    Bucket => "Bucket",
    ExternalArtifact => "ExternalArtifact",
});
string_enum!(ValuesKind { Secret => "Secret", ConfigMap => "ConfigMap" });
string_enum!(DeletionPolicy {
    MirrorPrune => "MirrorPrune",
    Delete => "Delete",
    WaitForTermination => "WaitForTermination",
    Orphan => "Orphan",
});
