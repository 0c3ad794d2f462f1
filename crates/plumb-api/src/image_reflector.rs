//! `image.toolkit.fluxcd.io/v1` ImageRepository and ImagePolicy (Flux's
//! image-reflector-controller): scan the tags of an image in a registry, and pick the latest
//! tag by a policy (semver range, alphabetical or numerical order).

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::meta::{
    AccessFrom, Condition, DURATION_PATTERN, DURATION_PATTERN_NO_HOURS, LocalObjectReference,
    NamespacedObjectReference, ReconcileRequestStatus, is_false,
};

/// Flux's default `exclusionList`: cosign signature tags.
pub const DEFAULT_EXCLUSION: &str = r"^.*\.sig$";

fn default_exclusion_list() -> Vec<String> {
    vec![DEFAULT_EXCLUSION.to_owned()]
}

/// Scans the tags of an image repository.
// The printcolumn(...) entries repeat keys such as `type_`; clippy mistakes them for
// duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "image.toolkit.fluxcd.io",
    version = "v1",
    kind = "ImageRepository",
    plural = "imagerepositories",
    namespaced,
    status = "ImageRepositoryStatus",
    shortname = "imgrepo",
    shortname = "imagerepo",
    category = "all",
    category = "fluxcd",
    category = "fluxcd-images",
    derive = "PartialEq",
    annotation("kustomize.toolkit.fluxcd.io/substitute", "disabled"),
    doc = "ImageRepository is the Schema for the imagerepositories API.",
    printcolumn(name = "Image", type_ = "string", json_path = ".spec.image"),
    printcolumn(
        name = "Tags",
        type_ = "string",
        json_path = ".status.lastScanResult.tagCount"
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
    ),
    printcolumn(
        name = "Last scan",
        type_ = "string",
        priority = 1,
        json_path = ".status.lastScanResult.scanTime"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct ImageRepositorySpec {
    /// Image to scan, without tag or digest (`ghcr.io/org/app`, `nginx`).
    pub image: String,
    /// How often the registry is scanned.
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub interval: String,
    /// Timeout of a scan; the interval when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN_NO_HOURS))]
    pub timeout: Option<String>,
    /// Secret of type `kubernetes.io/dockerconfigjson` with registry credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<LocalObjectReference>,
    /// ServiceAccount whose image pull secrets authenticate to the registry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub service_account_name: Option<String>,
    /// Secret with `ca.crt` and/or `tls.crt`/`tls.key` for the registry's TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_secret_ref: Option<LocalObjectReference>,
    /// Secret with the proxy configuration (`address`, `username`, `password`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_secret_ref: Option<LocalObjectReference>,
    /// Namespaces whose ImagePolicies may refer to this repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_from: Option<AccessFrom>,
    /// Suspends scanning.
    #[serde(default, skip_serializing_if = "is_false")]
    pub suspend: bool,
    /// Regular expressions of tags left out of the scan; `^.*\.sig$` by default.
    #[serde(default = "default_exclusion_list")]
    #[schemars(length(max = 25), extend("default" = [DEFAULT_EXCLUSION]))]
    pub exclusion_list: Vec<String>,
    /// Authentication provider; `generic` (credentials from Secrets) by default.
    #[serde(default)]
    pub provider: ImageProvider,
    /// Allows plain-HTTP registries.
    #[serde(default, skip_serializing_if = "is_false")]
    pub insecure: bool,
}

/// Registry authentication provider of an ImageRepository.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ImageProvider {
    /// Credentials from `secretRef` or the ServiceAccount's image pull secrets.
    #[default]
    Generic,
    /// AWS ECR.
    Aws,
    /// Azure ACR.
    Azure,
    /// Google Artifact Registry.
    Gcp,
}

/// The result of the last scan.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScanResult {
    /// Digest of the scanned tag list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// Number of tags found (after the exclusion list).
    pub tag_count: i64,
    /// When the scan finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scan_time: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
    /// The most recent tags, at most ten, in reverse alphabetical order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub latest_tags: Vec<String>,
}

/// Observed state of an ImageRepository.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImageRepositoryStatus {
    /// Last observed generation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Conditions of the object.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The image name as the registry knows it (`index.docker.io/library/nginx`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canonical_image_name: Option<String>,
    /// The result of the last successful scan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scan_result: Option<ScanResult>,
    /// The exclusion list of the last scan.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub observed_exclusion_list: Vec<String>,
    /// Handled reconcile request.
    #[serde(flatten)]
    pub reconcile_request: ReconcileRequestStatus,
}

/// Picks the latest image tag of an ImageRepository by a policy.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "image.toolkit.fluxcd.io",
    version = "v1",
    kind = "ImagePolicy",
    plural = "imagepolicies",
    namespaced,
    status = "ImagePolicyStatus",
    shortname = "imgpol",
    shortname = "imagepol",
    category = "all",
    category = "fluxcd",
    category = "fluxcd-images",
    derive = "PartialEq",
    annotation("kustomize.toolkit.fluxcd.io/substitute", "disabled"),
    doc = "ImagePolicy is the Schema for the imagepolicies API.",
    printcolumn(name = "Image", type_ = "string", json_path = ".status.latestRef.name"),
    printcolumn(name = "Tag", type_ = "string", json_path = ".status.latestRef.tag"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Status",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].message"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct ImagePolicySpec {
    /// The ImageRepository whose tags are chosen from; another namespace needs its
    /// `accessFrom`.
    pub image_repository_ref: NamespacedObjectReference,
    /// How the latest tag is chosen.
    pub policy: ImagePolicyChoice,
    /// Filters (and extracts the compared part of) the tags before the policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter_tags: Option<TagFilter>,
    /// Whether the digest of the chosen tag is looked up: `Never` (default), `IfNotPresent`,
    /// `Always` (re-checked every `interval`).
    #[serde(default)]
    pub digest_reflection_policy: ReflectionPolicy,
    /// How often the digest is re-checked; only with `digestReflectionPolicy: Always`, and
    /// required there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub interval: Option<String>,
    /// Suspends the policy.
    #[serde(default, skip_serializing_if = "is_false")]
    pub suspend: bool,
}

/// One of the policies; exactly one should be set.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ImagePolicyChoice {
    /// The highest version within a semver range.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub semver: Option<SemVerPolicy>,
    /// The first tag in alphabetical order (`asc`: the last letter wins).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alphabetical: Option<AlphabeticalPolicy>,
    /// The first tag in numerical order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub numerical: Option<NumericalPolicy>,
}

/// A semver range (Masterminds syntax: `>=1.0.0 <2.0.0`, `^1.2`, `~1.2.3`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SemVerPolicy {
    /// The range.
    pub range: String,
}

/// Sort order of the alphabetical and numerical policies.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SortOrder {
    /// Ascending: the last tag (highest) is chosen.
    #[default]
    Asc,
    /// Descending: the first tag (lowest) is chosen.
    Desc,
}

/// Alphabetical order policy.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AlphabeticalPolicy {
    /// `asc` (default) or `desc`.
    #[serde(default)]
    pub order: SortOrder,
}

/// Numerical order policy.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct NumericalPolicy {
    /// `asc` (default) or `desc`.
    #[serde(default)]
    pub order: SortOrder,
}

/// Tag filter: a regular expression, and optionally the part compared by the policy.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TagFilter {
    /// Regular expression tags must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// Replacement with `$name` capture groups of `pattern`; its expansion is what the policy
    /// compares (`$ts` of `^main-[a-f0-9]+-(?P<ts>[0-9]+)`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extract: Option<String>,
}

/// When the digest of the chosen tag is looked up.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ReflectionPolicy {
    /// Every `interval`, and whenever the tag changes.
    Always,
    /// When the tag changes or no digest is known.
    IfNotPresent,
    /// Never; `latestRef.digest` stays empty.
    #[default]
    Never,
}

/// A chosen image: name, tag and optionally digest.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ImageRef {
    /// Image name without tag (`ghcr.io/org/app`).
    pub name: String,
    /// The tag.
    pub tag: String,
    /// Digest of the tag's manifest (`sha256:...`), per `digestReflectionPolicy`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
}

impl ImageRef {
    /// `name:tag`, or `name:tag@digest` when the digest is known.
    pub fn to_reference(&self) -> String {
        match &self.digest {
            Some(d) if !d.is_empty() => format!("{}:{}@{d}", self.name, self.tag),
            _ => format!("{}:{}", self.name, self.tag),
        }
    }
}

/// Observed state of an ImagePolicy.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImagePolicyStatus {
    /// Last observed generation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Conditions of the object.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The latest image chosen by the policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest_ref: Option<ImageRef>,
    /// The image chosen before the latest one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_previous_ref: Option<ImageRef>,
    /// Handled reconcile request.
    #[serde(flatten)]
    pub reconcile_request: ReconcileRequestStatus,
}

impl ImageRepository {
    /// `spec.interval` as a duration.
    pub fn interval(&self) -> Result<std::time::Duration, crate::Error> {
        crate::duration::parse(&self.spec.interval)
    }

    /// `spec.timeout` as a duration; the interval when unset, as Flux.
    pub fn timeout(&self) -> Result<std::time::Duration, crate::Error> {
        crate::duration::parse(self.spec.timeout.as_deref().unwrap_or(&self.spec.interval))
    }
}

string_enum!(ImageProvider { Generic => "generic", Aws => "aws", Azure => "azure", Gcp => "gcp" });
string_enum!(SortOrder { Asc => "asc", Desc => "desc" });
string_enum!(ReflectionPolicy { Always => "Always", IfNotPresent => "IfNotPresent", Never => "Never" });
