//! Flux's event (`github.com/fluxcd/pkg/apis/event/v1.Event`), as the controller hands it to
//! providers and as the `generic` types post it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The object an event is about.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InvolvedObject {
    /// Kind, e.g. `Kustomization`.
    pub kind: String,
    /// Namespace.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    /// Name.
    pub name: String,
    /// UID.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uid: String,
    /// `group/version`, e.g. `kustomize.toolkit.fluxcd.io/v1`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub api_version: String,
    /// Resource version when the event was recorded.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub resource_version: String,
}

/// Flux's event severities.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Progress events; Flux's Alerts never forward them.
    Trace,
    /// Normal events.
    #[default]
    Info,
    /// Warning events.
    Error,
}

/// One event, in Flux's JSON shape.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// The object the event is about.
    pub involved_object: InvolvedObject,
    /// `info` or `error` (Flux's `trace` never reaches providers).
    pub severity: Severity,
    /// When it happened (RFC 3339, seconds).
    pub timestamp: chrono::DateTime<chrono::Utc>,
    /// The message.
    pub message: String,
    /// The reason, e.g. `ReconciliationSucceeded`.
    pub reason: String,
    /// Metadata with the API group prefix removed: `revision`, `token`, `commit_status`,
    /// `summary`, and the Alert's `eventMetadata`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
    /// The controller that reported it, e.g. `kustomize-controller`.
    pub reporting_controller: String,
    /// The instance (pod) that reported it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reporting_instance: String,
}

impl Event {
    /// The source revision the event names (`main@sha1:<sha>`, `1.2.3@sha256:<digest>`, ...).
    pub fn revision(&self) -> Option<&str> {
        self.metadata.get("revision").map(String::as_str)
    }

    /// The git commit SHA in the revision, if it names one: `<ref>@sha1:<sha>`, `sha1:<sha>`,
    /// Flux v1's `<branch>/<sha>` or a bare 40- or 64-hex SHA.
    pub fn commit_sha(&self) -> Option<&str> {
        let rev = self.revision()?;
        let tail = match rev.rsplit_once('@') {
            Some((_, t)) => t,
            None => rev,
        };
        let sha = tail
            .strip_prefix("sha1:")
            .or_else(|| tail.strip_prefix("sha256:"))
            .unwrap_or_else(|| tail.rsplit('/').next().unwrap_or(tail));
        let hex = sha.bytes().all(|b| b.is_ascii_hexdigit());
        (hex && (sha.len() == 40 || sha.len() == 64)).then_some(sha)
    }

    /// Whether the event is one Flux sends to commit-status providers (metadata
    /// `commit_status: update`, set on Kustomization and HelmRelease reconcile outcomes).
    pub fn is_commit_status_update(&self) -> bool {
        self.metadata.get("commit_status").map(String::as_str) == Some("update")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_revision(rev: &str) -> Event {
        let mut e = Event::default();
        e.metadata.insert("revision".into(), rev.into());
        e
    }

    #[test]
    fn commit_sha_from_revision_forms() {
        let sha = "a".repeat(40);
        for rev in [
            format!("main@sha1:{sha}"),
            format!("sha1:{sha}"),
            format!("main/{sha}"),
            sha.clone(),
            format!("refs/heads/feature/x@sha1:{sha}"),
        ] {
            assert_eq!(
                with_revision(&rev).commit_sha(),
                Some(sha.as_str()),
                "{rev}"
            );
        }
        assert_eq!(with_revision("6.1.0@sha256:abc").commit_sha(), None);
        assert_eq!(Event::default().commit_sha(), None);
    }

    #[test]
    fn serializes_in_fluxs_shape() {
        let e = with_revision("main@sha1:x");
        let v = serde_json::to_value(&e).expect("json");
        assert!(v.get("involvedObject").is_some());
        assert_eq!(v["severity"], "info");
        assert_eq!(v["metadata"]["revision"], "main@sha1:x");
        assert!(v.get("reportingController").is_some());
    }
}
