//! `notification.toolkit.fluxcd.io/v1beta3` Provider and Alert: where events go and which
//! events go there.
//!
//! Flux 2.9 serves both kinds without a status; plumb adds a status subresource with kstatus
//! conditions (`Ready`, `Stalled`) so that `kubectl get` and `plumb get` show whether a
//! Provider's type and Secrets, or an Alert's provider and regexes, are usable. Everything in
//! `spec` is Flux's schema unchanged.

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::meta::{
    Condition, DURATION_PATTERN, DURATION_PATTERN_NO_HOURS, LocalObjectReference,
    ReconcileRequestStatus, is_false,
};

/// Flux's default `spec.timeout` of a Provider.
pub const DEFAULT_PROVIDER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

/// The Provider types whose events are commit statuses (the only ones `commitStatusExpr`
/// applies to, and the only ones that receive `commit_status: update` events).
pub const COMMIT_STATUS_TYPES: &[&str] = &[
    "github",
    "gitlab",
    "gitea",
    "bitbucketserver",
    "bitbucket",
    "azuredevops",
];

/// Where and how events are sent.
// The printcolumn(...) entries repeat keys such as `type_`; clippy mistakes them for
// duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "notification.toolkit.fluxcd.io",
    version = "v1beta3",
    kind = "Provider",
    plural = "providers",
    namespaced,
    status = "NotificationStatus",
    category = "fluxcd",
    category = "flux",
    derive = "PartialEq",
    doc = "Provider is the Schema for the providers API",
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
pub struct ProviderSpec {
    /// Which Provider implementation to use.
    #[serde(rename = "type")]
    pub type_: ProviderType,
    /// Destination channel (Slack channel, Telegram chat, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    pub channel: Option<String>,
    /// Name under which events are posted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    pub username: Option<String>,
    /// Endpoint events are sent to (an HTTP/S URL for most types); the Secret's `address`
    /// overrides it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    pub address: Option<String>,
    /// Deprecated in Flux and not used in v1beta3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub interval: Option<String>,
    /// Timeout for sending an event (default 15s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN_NO_HOURS))]
    pub timeout: Option<String>,
    /// Deprecated: HTTP/S address of a proxy; use `proxySecretRef`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048), regex(pattern = r"^(http|https)://.*$"))]
    pub proxy: Option<String>,
    /// Secret with the proxy's `address` and optional `username` and `password`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_secret_ref: Option<LocalObjectReference>,
    /// Secret with the credentials: `address`, `token`, `username`, `password`, `headers`,
    /// `proxy`, and type-specific keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<LocalObjectReference>,
    /// Secret with TLS material: `ca.crt` (server CA), `tls.crt` and `tls.key` (client
    /// certificate); the legacy `caFile`, `certFile`, `keyFile` keys are read too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_secret_ref: Option<LocalObjectReference>,
    /// Kubernetes ServiceAccount for workload identity (azureeventhub, azuredevops,
    /// googlepubsub).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
    /// CEL expression (variables `event`, `provider`, `alert`) giving the commit status key
    /// of the commit-status types.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit_status_expr: Option<String>,
    /// Stops sending events through this Provider.
    #[serde(default, skip_serializing_if = "is_false")]
    pub suspend: bool,
}

/// Flux 2.9's Provider types.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
#[allow(missing_docs)]
pub enum ProviderType {
    Slack,
    Discord,
    Msteams,
    Rocket,
    Generic,
    #[serde(rename = "generic-hmac")]
    GenericHmac,
    Github,
    Gitlab,
    Gitea,
    Giteapullrequestcomment,
    Bitbucketserver,
    Bitbucket,
    Azuredevops,
    Googlechat,
    Googlepubsub,
    Webex,
    Sentry,
    Azureeventhub,
    Telegram,
    Lark,
    Matrix,
    Opsgenie,
    Alertmanager,
    Grafana,
    Githubdispatch,
    Githubpullrequestcomment,
    Gitlabmergerequestcomment,
    Pagerduty,
    Datadog,
    Nats,
    Zulip,
    Otel,
}

string_enum!(ProviderType {
    Slack => "slack",
    Discord => "discord",
    Msteams => "msteams",
    Rocket => "rocket",
    Generic => "generic",
    GenericHmac => "generic-hmac",
    Github => "github",
    Gitlab => "gitlab",
    Gitea => "gitea",
    Giteapullrequestcomment => "giteapullrequestcomment",
    Bitbucketserver => "bitbucketserver",
    Bitbucket => "bitbucket",
    Azuredevops => "azuredevops",
    Googlechat => "googlechat",
    Googlepubsub => "googlepubsub",
    Webex => "webex",
    Sentry => "sentry",
    Azureeventhub => "azureeventhub",
    Telegram => "telegram",
    Lark => "lark",
    Matrix => "matrix",
    Opsgenie => "opsgenie",
    Alertmanager => "alertmanager",
    Grafana => "grafana",
    Githubdispatch => "githubdispatch",
    Githubpullrequestcomment => "githubpullrequestcomment",
    Gitlabmergerequestcomment => "gitlabmergerequestcomment",
    Pagerduty => "pagerduty",
    Datadog => "datadog",
    Nats => "nats",
    Zulip => "zulip",
    Otel => "otel",
});

impl Provider {
    /// `spec.timeout`, or Flux's default of 15s.
    pub fn timeout(&self) -> Result<std::time::Duration, crate::Error> {
        match self.spec.timeout.as_deref() {
            Some(t) if !t.is_empty() => crate::duration::parse(t),
            _ => Ok(DEFAULT_PROVIDER_TIMEOUT),
        }
    }

    /// Whether the type posts commit statuses.
    pub fn is_commit_status(&self) -> bool {
        COMMIT_STATUS_TYPES.contains(&self.spec.type_.as_str())
    }
}

/// Which events go to a Provider.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "notification.toolkit.fluxcd.io",
    version = "v1beta3",
    kind = "Alert",
    plural = "alerts",
    namespaced,
    status = "NotificationStatus",
    category = "fluxcd",
    category = "flux",
    derive = "PartialEq",
    doc = "Alert is the Schema for the alerts API",
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
pub struct AlertSpec {
    /// The Provider (same namespace) events are sent through.
    pub provider_ref: LocalObjectReference,
    /// `info` sends every event, `error` only errors.
    #[serde(default)]
    pub event_severity: EventSeverity,
    /// Objects whose events are sent: kind, name (`*` wildcards), namespace (the Alert's
    /// when unset), labels.
    pub event_sources: Vec<CrossNamespaceObjectReference>,
    /// Go regular expressions; when set, only messages matching one are sent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inclusion_list: Vec<String>,
    /// Metadata added to every event sent (never overriding the event's own).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub event_metadata: BTreeMap<String, String>,
    /// Go regular expressions; messages matching one are not sent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclusion_list: Vec<String>,
    /// Deprecated in Flux (use eventMetadata): a short description added as `summary`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 255))]
    pub summary: Option<String>,
    /// Stops sending events for this Alert.
    #[serde(default, skip_serializing_if = "is_false")]
    pub suspend: bool,
}

/// An Alert's severity filter.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum EventSeverity {
    /// Every event.
    #[default]
    Info,
    /// Errors only.
    Error,
}

string_enum!(EventSeverity {
    Info => "info",
    Error => "error",
});

/// Objects whose events an Alert sends.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CrossNamespaceObjectReference {
    /// API version of the referent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// Kind of the referent.
    pub kind: EventSourceKind,
    /// Name of the referent; `*` wildcards match several.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Namespace of the referent; the Alert's when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub namespace: Option<String>,
    /// Labels the object must carry (requires name `*`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
}

/// Kinds whose events an Alert can send.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[allow(missing_docs)]
pub enum EventSourceKind {
    Bucket,
    GitRepository,
    Kustomization,
    HelmRelease,
    HelmChart,
    HelmRepository,
    ImageRepository,
    ImagePolicy,
    ImageUpdateAutomation,
    OCIRepository,
    ArtifactGenerator,
    ExternalArtifact,
}

string_enum!(EventSourceKind {
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
    ArtifactGenerator => "ArtifactGenerator",
    ExternalArtifact => "ExternalArtifact",
});

/// Observed state of a Provider or an Alert (a plumb addition; Flux's v1beta3 has none).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NotificationStatus {
    /// Handled reconcile request.
    #[serde(flatten)]
    pub reconcile_request: ReconcileRequestStatus,
    /// Conditions of the object.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Last observed generation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_defaults_and_commit_status_types() {
        let p = Provider::new(
            "p",
            serde_json::from_value(serde_json::json!({"type": "github"})).unwrap(),
        );
        assert_eq!(p.timeout().unwrap(), DEFAULT_PROVIDER_TIMEOUT);
        assert!(p.is_commit_status());
        let a: AlertSpec = serde_json::from_value(serde_json::json!({
            "providerRef": {"name": "p"},
            "eventSources": [{"kind": "Kustomization", "name": "*"}]
        }))
        .unwrap();
        assert_eq!(a.event_severity, EventSeverity::Info);
        assert_eq!(
            serde_json::to_value(ProviderType::GenericHmac).unwrap(),
            "generic-hmac"
        );
    }
}
