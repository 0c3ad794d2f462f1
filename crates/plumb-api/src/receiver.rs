//! `notification.toolkit.fluxcd.io/v1` Receiver: an incoming webhook that triggers reconciles.

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::meta::{
    Condition, DURATION_PATTERN, LocalObjectReference, ReconcileRequestStatus, is_false,
};

fn default_interval() -> String {
    "10m".to_owned()
}

/// Incoming webhook that requests reconciliation of the listed resources.
// The printcolumn(...) entries repeat keys such as `type_`; clippy mistakes them for
// duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "notification.toolkit.fluxcd.io",
    version = "v1",
    kind = "Receiver",
    plural = "receivers",
    namespaced,
    status = "ReceiverStatus",
    category = "fluxcd",
    category = "flux",
    derive = "PartialEq",
    doc = "Receiver is the Schema for the receivers API.",
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
pub struct ReceiverSpec {
    /// Webhook sender; decides payload validation and parsing.
    #[serde(rename = "type")]
    pub type_: ReceiverType,
    /// OIDC issuers that authenticate calls to a `generic-oidc` Receiver (Flux 2.9): the
    /// provider whose `issuerURL` is the bearer token's `iss` verifies it.
    #[serde(
        default,
        rename = "oidcProviders",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub oidc_providers: Vec<OidcProvider>,
    /// How often the Receiver is reconciled with its Secret.
    #[serde(default = "default_interval")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub interval: String,
    /// Event types handled, e.g. `push` (GitHub) or `Push Hook` (GitLab); all when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<String>,
    /// Objects annotated with a reconcile request on a valid call.
    pub resources: Vec<ReceiverResource>,
    /// CEL expression over `res` (each resource's metadata) and `req` (the JSON body of the
    /// call): only the resources for which it is true are reconciled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_filter: Option<String>,
    /// Secret with the `token` that authenticates calls (and, for `gcr`, the `email` and
    /// `audience` of the Pub/Sub push identity). Required for every type but
    /// `generic-oidc`, which must not set it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<LocalObjectReference>,
    /// Suspends handling of events.
    #[serde(default, skip_serializing_if = "is_false")]
    pub suspend: bool,
}

/// Webhook sender type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ReceiverType {
    /// Any POST to the path.
    Generic,
    /// POST signed with an HMAC of the token (`X-Signature`).
    GenericHmac,
    /// POST with a bearer OIDC token verified against `spec.oidcProviders`.
    GenericOidc,
    /// GitHub (`X-Hub-Signature-256`).
    Github,
    /// GitLab (`X-Gitlab-Token`).
    Gitlab,
    /// Bitbucket Server.
    Bitbucket,
    /// Harbor.
    Harbor,
    /// Docker Hub.
    Dockerhub,
    /// Quay.
    Quay,
    /// Google Container Registry (Pub/Sub push).
    Gcr,
    /// Sonatype Nexus.
    Nexus,
    /// Azure Container Registry.
    Acr,
    /// CDEvents.
    Cdevents,
}

/// The audience a `generic-oidc` token must carry when `audience` is unset (Flux's).
pub const DEFAULT_OIDC_AUDIENCE: &str = "notification-controller";

/// An OIDC issuer trusted by a `generic-oidc` Receiver.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OidcProvider {
    /// Issuer URL, used for discovery; must equal the token's `iss`.
    #[serde(rename = "issuerURL")]
    #[schemars(regex(pattern = r"^https?://"))]
    pub issuer_url: String,
    /// Expected `aud` claim; `notification-controller` when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    /// Named CEL expressions over `claims` (and earlier `vars`), exposed as `vars.<name>`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub variables: Vec<OidcVariable>,
    /// CEL boolean expressions over `claims` and `vars`; every one must be true.
    #[schemars(length(min = 1))]
    pub validations: Vec<OidcValidation>,
}

impl OidcProvider {
    /// The expected audience, defaulting to [`DEFAULT_OIDC_AUDIENCE`].
    pub fn audience(&self) -> &str {
        self.audience
            .as_deref()
            .filter(|a| !a.is_empty())
            .unwrap_or(DEFAULT_OIDC_AUDIENCE)
    }
}

/// A named CEL expression of an [`OidcProvider`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct OidcVariable {
    /// Variable name (a CEL identifier).
    pub name: String,
    /// CEL expression giving its value.
    pub expression: String,
}

/// A CEL validation of an [`OidcProvider`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct OidcValidation {
    /// CEL boolean expression.
    pub expression: String,
    /// Returned to the caller when the expression is false.
    pub message: String,
}

/// An object, or with name `*` and matchLabels a set of objects, a Receiver triggers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReceiverResource {
    /// API version of the referent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// Kind of the referent.
    pub kind: ReceiverResourceKind,
    /// Name of the referent, or `*` with `matchLabels`.
    #[schemars(length(min = 1, max = 53))]
    pub name: String,
    /// Namespace of the referent; that of the Receiver when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 53))]
    pub namespace: Option<String>,
    /// Labels the objects must carry (requires name `*`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
    /// CEL expression over `res` (the object's metadata) and `req` (the JSON body), in
    /// addition to the top-level `resourceFilter`: the object is reconciled only when both
    /// (where set) are true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
}

/// Kinds a Receiver can trigger.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ReceiverResourceKind {
    /// Bucket.
    Bucket,
    /// GitRepository.
    GitRepository,
    /// Kustomization.
    Kustomization,
    /// HelmRelease.
    HelmRelease,
    /// HelmChart.
    HelmChart,
    /// HelmRepository.
    HelmRepository,
    /// ImageRepository.
    ImageRepository,
    /// ImagePolicy.
    ImagePolicy,
    /// ImageUpdateAutomation.
    ImageUpdateAutomation,
    /// OCIRepository.
    OCIRepository,
}

/// Observed state of a Receiver.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReceiverStatus {
    /// Handled reconcile request.
    #[serde(flatten)]
    pub reconcile_request: ReconcileRequestStatus,
    /// Conditions of the object.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// `/hook/<sha256(token+name+namespace)>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_path: Option<String>,
    /// Last observed generation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

impl Receiver {
    /// The webhook path Flux derives for this Receiver and token:
    /// `/hook/<hex sha256(token + name + namespace)>`.
    pub fn webhook_path(&self, token: &str) -> String {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        h.update(token.as_bytes());
        h.update(self.metadata.name.as_deref().unwrap_or("").as_bytes());
        h.update(self.metadata.namespace.as_deref().unwrap_or("").as_bytes());
        format!(
            "{}{}",
            crate::consts::RECEIVER_WEBHOOK_PATH_PREFIX,
            hex::encode(h.finalize())
        )
    }

    /// `spec.interval` as a duration.
    pub fn interval(&self) -> Result<std::time::Duration, crate::Error> {
        crate::duration::parse(&self.spec.interval)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_path_is_sha256_of_token_name_namespace() {
        let mut r = Receiver::new(
            "github-receiver",
            serde_json::from_value(serde_json::json!({
                "type": "github", "resources": [], "secretRef": {"name": "t"}
            }))
            .unwrap(),
        );
        r.metadata.namespace = Some("flux-system".into());
        // sha256("tokengithub-receiverflux-system"), computed independently.
        assert_eq!(
            r.webhook_path("token"),
            "/hook/8ed710969b945c0dc10d6d0b5084e120ec2228353d1fe42d56be5ba88500e684"
        );
        assert_eq!(r.interval().unwrap(), std::time::Duration::from_secs(600));
    }
}

string_enum!(ReceiverType {
    Generic => "generic",
    GenericHmac => "generic-hmac",
    GenericOidc => "generic-oidc",
    Github => "github",
    Gitlab => "gitlab",
    Bitbucket => "bitbucket",
    Harbor => "harbor",
    Dockerhub => "dockerhub",
    Quay => "quay",
    Gcr => "gcr",
    Nexus => "nexus",
    Acr => "acr",
    Cdevents => "cdevents",
});
string_enum!(ReceiverResourceKind {
    Bucket => "Bucket",
    GitRepository => "GitRepository",
    Kustomization => "Kustomization",
    HelmRelease => "HelmRelease",
    HelmChart => "HelmChart",
    HelmRepository => "HelmRepository",
    ImageRepository => "ImageRepository",
    ImagePolicy => "ImagePolicy",
    ImageUpdateAutomation => "ImageUpdateAutomation",
    OCIRepository => "OCIRepository",
});
