//! `source.extensions.fluxcd.io/v1beta1` ArtifactGenerator (Flux 2.7, source-watcher):
//! composes the artifacts of several sources, or splits one source, into
//! [`crate::ExternalArtifact`]s by copy operations (`@alias/glob` to `@artifact/path`).

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::meta::{Condition, ReconcileRequestStatus};

/// Pattern of a source alias (`backend`, `my_app-1`).
pub const ALIAS_PATTERN: &str = "^[a-z0-9]([a-z0-9_-]*[a-z0-9])?$";
/// Pattern of a copy source: `@<alias>/<glob>`.
pub const COPY_FROM_PATTERN: &str = "^@([a-z0-9]([a-z0-9_-]*[a-z0-9])?)/(.*)$";
/// Pattern of a copy destination: `@artifact/<path>`.
pub const COPY_TO_PATTERN: &str = "^@(artifact)/(.*)$";
/// Pattern of an alias reference: `@<alias>`.
pub const ALIAS_REF_PATTERN: &str = "^@([a-z0-9]([a-z0-9_-]*[a-z0-9])?)$";
/// Pattern of a DNS-1123 label (source names, namespaces).
const NAME_PATTERN: &str = "^[a-z0-9]([a-z0-9-]*[a-z0-9])?$";

/// Generates ExternalArtifacts from the artifacts of other sources.
// The printcolumn(...) entries repeat keys such as `type_`; clippy mistakes them for
// duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "source.extensions.fluxcd.io",
    version = "v1beta1",
    kind = "ArtifactGenerator",
    plural = "artifactgenerators",
    namespaced,
    status = "ArtifactGeneratorStatus",
    shortname = "ag",
    category = "all",
    category = "fluxcd",
    category = "fluxcd-sources",
    derive = "PartialEq",
    annotation("kustomize.toolkit.fluxcd.io/substitute", "disabled"),
    doc = "ArtifactGenerator is the Schema for the artifactgenerators API.",
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
pub struct ArtifactGeneratorSpec {
    /// The sources the artifacts are generated from, by alias.
    #[schemars(length(min = 1, max = 1000))]
    pub sources: Vec<SourceReference>,
    /// The ExternalArtifacts to generate.
    #[schemars(length(min = 1, max = 1000))]
    pub artifacts: Vec<OutputArtifact>,
    /// Directory traversal pattern (`@alias/apps/{app}`) whose captures may be used in the
    /// artifacts' fields.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = COPY_FROM_PATTERN), length(max = 1024))]
    pub path_pattern: Option<String>,
    /// Labels and annotations put on every generated ExternalArtifact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub common_metadata: Option<CommonMetadata>,
}

/// Labels and annotations of the generated objects.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CommonMetadata {
    /// Annotations to add.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Labels to add.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// A source of the generator.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SourceReference {
    /// Alias of the source in the copy operations (`@alias/...`); unique per generator.
    #[schemars(regex(pattern = ALIAS_PATTERN), length(max = 63))]
    pub alias: String,
    /// Kind of the source.
    pub kind: GeneratorSourceKind,
    /// Name of the source.
    #[schemars(regex(pattern = NAME_PATTERN), length(max = 253))]
    pub name: String,
    /// Namespace of the source; that of the generator when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = NAME_PATTERN), length(min = 1, max = 63))]
    pub namespace: Option<String>,
}

/// Kinds a generator reads from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum GeneratorSourceKind {
    /// A Bucket (not served by plumb).
    Bucket,
    /// A GitRepository.
    #[default]
    GitRepository,
    /// An OCIRepository.
    OCIRepository,
    /// A HelmChart.
    HelmChart,
    /// An ExternalArtifact (e.g. another generator's output).
    ExternalArtifact,
}

/// One generated ExternalArtifact.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OutputArtifact {
    /// Name of the ExternalArtifact.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// `@alias` whose origin revision becomes the artifact's
    /// `org.opencontainers.image.revision` metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = ALIAS_REF_PATTERN), length(max = 64))]
    pub origin_revision: Option<String>,
    /// `@alias` whose revision the artifact takes; the digest of its content when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = ALIAS_REF_PATTERN), length(max = 64))]
    pub revision: Option<String>,
    /// Copy operations, in order; later ones overwrite earlier ones.
    #[schemars(length(min = 1))]
    pub copy: Vec<CopyOperation>,
}

/// One copy operation into an artifact.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CopyOperation {
    /// `@<alias>/<glob>`: the files to copy.
    #[schemars(regex(pattern = COPY_FROM_PATTERN), length(min = 1, max = 1024))]
    pub from: String,
    /// `@artifact/<path>`: where to put them.
    #[schemars(regex(pattern = COPY_TO_PATTERN), length(min = 1, max = 1024))]
    pub to: String,
    /// Globs of files not to copy, relative to the literal prefix of `from`; a pattern
    /// without `/` matches the file name at any depth.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100))]
    pub exclude: Vec<String>,
    /// How files are written: `Overwrite` (default), `Merge` (YAML deep merge) or `Extract`
    /// (unpack `.tar.gz`/`.tgz`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<CopyStrategy>,
}

/// How a copy operation writes its files.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum CopyStrategy {
    /// Replace existing files.
    #[default]
    Overwrite,
    /// Deep-merge YAML files into existing ones (Helm values merge).
    Merge,
    /// Extract tarballs.
    Extract,
}

/// Observed state of an ArtifactGenerator.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ArtifactGeneratorStatus {
    /// plumb: last reconciled generation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Conditions of the object.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The generated ExternalArtifacts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inventory: Vec<ExternalArtifactReference>,
    /// Digest of the sources' artifacts the inventory was generated from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_sources_digest: Option<String>,
    /// Handled reconcile request.
    #[serde(flatten)]
    pub reconcile_request: ReconcileRequestStatus,
}

/// A generated ExternalArtifact and its artifact's digest.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ExternalArtifactReference {
    /// Digest of the artifact.
    pub digest: String,
    /// File name of the artifact in storage.
    pub filename: String,
    /// Name of the ExternalArtifact.
    pub name: String,
    /// Namespace of the ExternalArtifact.
    pub namespace: String,
}

string_enum!(GeneratorSourceKind {
    Bucket => "Bucket",
    GitRepository => "GitRepository",
    OCIRepository => "OCIRepository",
    HelmChart => "HelmChart",
    ExternalArtifact => "ExternalArtifact",
});
string_enum!(CopyStrategy { Overwrite => "Overwrite", Merge => "Merge", Extract => "Extract" });
