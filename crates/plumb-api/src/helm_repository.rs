//! `source.toolkit.fluxcd.io/v1` HelmRepository.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::meta::{
    AccessFrom, Artifact, Condition, DURATION_PATTERN, DURATION_PATTERN_NO_HOURS,
    LocalObjectReference, ReconcileRequestStatus, is_false,
};

/// Produces an artifact from a Helm repository index (or points at an OCI registry).
// The printcolumn(...) entries repeat keys such as `type_`; clippy mistakes them for
// duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "source.toolkit.fluxcd.io",
    version = "v1",
    kind = "HelmRepository",
    plural = "helmrepositories",
    namespaced,
    status = "HelmRepositoryStatus",
    shortname = "helmrepo",
    category = "all",
    category = "fluxcd",
    category = "flux",
    category = "fluxcd-sources",
    derive = "PartialEq",
    annotation("kustomize.toolkit.fluxcd.io/substitute", "disabled"),
    doc = "HelmRepository is the Schema for the helmrepositories API.",
    printcolumn(name = "URL", type_ = "string", json_path = ".spec.url"),
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
pub struct HelmRepositorySpec {
    /// Repository URL: `http(s)://` for an index, `oci://` for a registry.
    #[schemars(regex(pattern = r"^(http|https|oci)://.*$"))]
    pub url: String,
    /// Secret with `username`/`password` (and deprecated TLS keys).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<LocalObjectReference>,
    /// Secret with `tls.crt`/`tls.key` and/or `ca.crt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_secret_ref: Option<LocalObjectReference>,
    /// Passes the credentials to hosts other than the URL's host.
    #[serde(default, skip_serializing_if = "is_false")]
    pub pass_credentials: bool,
    /// How often the index is fetched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub interval: Option<String>,
    /// Allows plain-HTTP OCI registries (type `oci` only).
    #[serde(default, skip_serializing_if = "is_false")]
    pub insecure: bool,
    /// Timeout of the index fetch or OCI operations; 60s when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN_NO_HOURS))]
    pub timeout: Option<String>,
    /// Suspends reconciliation.
    #[serde(default, skip_serializing_if = "is_false")]
    pub suspend: bool,
    /// Cross-namespace access list (provisional, not enforced by Flux either).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_from: Option<AccessFrom>,
    /// Repository type; `oci` requires an `oci://` URL.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<HelmRepositoryType>,
    /// OCI authentication provider.
    #[serde(default)]
    pub provider: HelmRepositoryProvider,
}

/// Type of a HelmRepository.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum HelmRepositoryType {
    /// A classic Helm repository with an `index.yaml`.
    Default,
    /// An OCI registry.
    Oci,
}

/// OCI authentication provider of a HelmRepository.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum HelmRepositoryProvider {
    /// Credentials from `secretRef`.
    #[default]
    Generic,
    /// AWS ECR.
    Aws,
    /// Azure ACR.
    Azure,
    /// Google Artifact Registry.
    Gcp,
}

/// Observed state of a HelmRepository.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HelmRepositoryStatus {
    /// Last observed generation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Conditions of the object.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Dynamic fetch link of the latest artifact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The artifact of the last successful reconciliation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact: Option<Artifact>,
    /// Handled reconcile request.
    #[serde(flatten)]
    pub reconcile_request: ReconcileRequestStatus,
}

impl HelmRepository {
    /// `spec.interval` as a duration; one minute when unset, as in Flux.
    pub fn interval(&self) -> Result<std::time::Duration, crate::Error> {
        match &self.spec.interval {
            Some(i) => crate::duration::parse(i),
            None => Ok(std::time::Duration::from_secs(60)),
        }
    }

    /// `spec.timeout` as a duration; one minute when unset, as in Flux.
    pub fn timeout(&self) -> Result<std::time::Duration, crate::Error> {
        match &self.spec.timeout {
            Some(t) => crate::duration::parse(t),
            None => Ok(std::time::Duration::from_secs(60)),
        }
    }
}

string_enum!(HelmRepositoryType { Default => "default", Oci => "oci" });
string_enum!(HelmRepositoryProvider { Generic => "generic", Aws => "aws", Azure => "azure", Gcp => "gcp" });
