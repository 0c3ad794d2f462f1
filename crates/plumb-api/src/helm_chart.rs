//! `source.toolkit.fluxcd.io/v1` HelmChart: a chart from a HelmRepository (index or OCI),
//! a GitRepository or a Bucket, packaged as an artifact.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::helm_release::{ChartSourceKind, ReconcileStrategy};
use crate::meta::{Artifact, Condition, DURATION_PATTERN, ReconcileRequestStatus, is_false};
use crate::oci_repository::OCIRepositoryVerification;

fn default_version() -> String {
    "*".to_owned()
}

/// Desired state of a HelmChart.
// The printcolumn(...) entries repeat keys such as `type_`; clippy mistakes them for
// duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "source.toolkit.fluxcd.io",
    version = "v1",
    kind = "HelmChart",
    plural = "helmcharts",
    namespaced,
    status = "HelmChartStatus",
    shortname = "hc",
    category = "all",
    category = "fluxcd",
    category = "fluxcd-sources",
    derive = "PartialEq",
    annotation("kustomize.toolkit.fluxcd.io/substitute", "disabled"),
    doc = "HelmChart is the Schema for the helmcharts API.",
    printcolumn(name = "Chart", type_ = "string", json_path = ".spec.chart"),
    printcolumn(name = "Version", type_ = "string", json_path = ".spec.version"),
    printcolumn(
        name = "Source Kind",
        type_ = "string",
        json_path = ".spec.sourceRef.kind"
    ),
    printcolumn(
        name = "Source Name",
        type_ = "string",
        json_path = ".spec.sourceRef.name"
    ),
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
pub struct HelmChartSpec {
    /// Name (repository sources) or path (Git and Bucket sources) of the chart.
    pub chart: String,
    /// SemVer range of the chart version; ignored for Git and Bucket sources.
    #[serde(default = "default_version")]
    pub version: String,
    /// The source holding the chart (in the HelmChart's namespace).
    pub source_ref: LocalHelmChartSourceReference,
    /// How often the source is checked for a new chart.
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub interval: String,
    /// What makes a new artifact: a new chart version or a new source revision.
    #[serde(default)]
    pub reconcile_strategy: ReconcileStrategy,
    /// Values files in the source merged in order into the packaged chart's values.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values_files: Vec<String>,
    /// Missing values files are skipped instead of failing.
    #[serde(default, skip_serializing_if = "is_false")]
    pub ignore_missing_values_files: bool,
    /// Stops reconciling.
    #[serde(default, skip_serializing_if = "is_false")]
    pub suspend: bool,
    /// Signature verification of OCI charts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<OCIRepositoryVerification>,
}

/// Reference to the source of a HelmChart (same namespace).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LocalHelmChartSourceReference {
    /// API version of the referent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// Kind of the referent.
    pub kind: ChartSourceKind,
    /// Name of the referent.
    pub name: String,
}

/// Observed state of a HelmChart.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HelmChartStatus {
    /// Last observed generation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Revision of the source artifact the chart was built from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_source_artifact_revision: Option<String>,
    /// Name of the chart in the artifact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_chart_name: Option<String>,
    /// Values files merged into the artifact.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub observed_values_files: Vec<String>,
    /// Conditions of the object.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Download link of the artifact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The packaged chart of the last successful reconciliation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact: Option<Artifact>,
    /// Handled reconcile request.
    #[serde(flatten)]
    pub reconcile_request: ReconcileRequestStatus,
}

impl HelmChart {
    /// `spec.interval` as a duration.
    pub fn interval(&self) -> Result<std::time::Duration, crate::Error> {
        crate::duration::parse(&self.spec.interval)
    }
}
