//! Fixtures for the chat and incident types' tests: one event as Flux's kustomize-controller
//! reports it, and settings of a type.

use std::collections::BTreeMap;

use chrono::TimeZone as _;

use crate::{Event, InvolvedObject, Settings, Severity};

/// An event about `Kustomization flux-system/podinfo`, with a revision and an Alert summary.
pub(crate) fn event(severity: Severity) -> Event {
    let mut metadata = BTreeMap::new();
    metadata.insert("revision".to_string(), "main@sha1:abc123".to_string());
    metadata.insert("summary".to_string(), "prod cluster".to_string());
    Event {
        involved_object: InvolvedObject {
            kind: "Kustomization".into(),
            namespace: "flux-system".into(),
            name: "podinfo".into(),
            uid: "7d0cdc51-ddcf-4743-b223-83ca5c699632".into(),
            api_version: "kustomize.toolkit.fluxcd.io/v1".into(),
            resource_version: String::new(),
        },
        severity,
        timestamp: chrono::Utc
            .with_ymd_and_hms(2024, 5, 1, 10, 0, 0)
            .single()
            .unwrap_or_default(),
        message: "Applied revision: main@sha1:abc123".into(),
        reason: "ReconciliationSucceeded".into(),
        metadata,
        reporting_controller: "kustomize-controller".into(),
        reporting_instance: String::new(),
    }
}

/// Settings of `provider_type` sending to `address`.
pub(crate) fn settings(provider_type: &str, address: &str) -> Settings {
    Settings {
        provider_type: provider_type.into(),
        provider: "flux-system/test".into(),
        address: address.into(),
        ..Settings::default()
    }
}

/// The header `name` of request `req`, if sent.
pub(crate) fn header<'a>(req: &'a crate::HttpRequest, name: &str) -> Option<&'a str> {
    req.headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// One row of a validate() table: what the error must name, and how the settings are spoilt.
pub(crate) type Spoil = (&'static str, fn(&mut Settings));

/// Asserts `n` accepts `good` and rejects each spoilt copy with an error naming the field
/// and quoting no secret.
pub(crate) fn assert_validate(n: &dyn crate::Notifier, good: &Settings, spoilt: &[Spoil]) {
    if let Err(e) = n.validate(good) {
        panic!("good settings rejected: {e}");
    }
    for (what, spoil) in spoilt {
        let mut s = good.clone();
        spoil(&mut s);
        let err = n.validate(&s).expect_err(what).to_string();
        assert!(err.contains(what), "{what}: {err}");
        if !good.token.is_empty() {
            assert!(!err.contains(&good.token), "{err}");
        }
    }
}

/// A delivery of `e` through `s`.
pub(crate) fn delivery<'a>(s: &'a Settings, e: &'a Event) -> crate::Delivery<'a> {
    crate::Delivery {
        settings: s,
        event: e,
        commit_status_key: None,
    }
}

/// Sends `e` through `n` to a recorder answering 200, and returns the recorder.
pub(crate) fn send_recorded(
    n: &dyn crate::Notifier,
    s: &Settings,
    e: &Event,
) -> crate::recorder::Recorder {
    let rec = crate::recorder::Recorder::default();
    if let Err(err) = n.send(&delivery(s, e), &rec) {
        panic!("send failed: {err}");
    }
    rec
}
