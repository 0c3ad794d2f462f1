//! Test helpers of this family: a sample event and settings, scripted responses, and the
//! requests each type sends over a real socket ([`crate::testserver`]).

use std::collections::BTreeMap;

pub use crate::recorder::Recorder;
pub use crate::testserver::{PlainHttp, Received, Server};
use crate::{Delivery, Event, InvolvedObject, Notifier, NotifyError, Settings, Transport};
pub use crate::{HttpResponse, Method, Severity};

/// The commit every sample event names.
pub const SHA: &str = "4c1b2a9f0e3d5c6b7a8f9e0d1c2b3a4f5e6d7c8b";
/// The commit status key of every sample delivery.
pub const KEY: &str = "kustomization/apps/0c9c2e41";

/// Settings of `provider_type` with `address` and `token`.
pub fn settings(provider_type: &str, address: &str, token: &str) -> Settings {
    Settings {
        provider_type: provider_type.into(),
        provider: "flux-system/forge".into(),
        address: address.into(),
        token: token.into(),
        ..Settings::default()
    }
}

/// A Kustomization `flux-system/apps` commit-status update on [`SHA`].
pub fn event(severity: Severity, reason: &str) -> Event {
    let metadata = BTreeMap::from([
        ("revision".to_string(), format!("main@sha1:{SHA}")),
        ("commit_status".to_string(), "update".to_string()),
    ]);
    Event {
        involved_object: InvolvedObject {
            kind: "Kustomization".into(),
            namespace: "flux-system".into(),
            name: "apps".into(),
            uid: "9d3f2c1e-0000-4000-8000-000000000001".into(),
            api_version: "kustomize.toolkit.fluxcd.io/v1".into(),
            resource_version: String::new(),
        },
        severity,
        timestamp: chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default(),
        message: "Applied revision: main@sha1:4c1b2a9f".into(),
        reason: reason.into(),
        metadata,
        reporting_controller: "kustomize-controller".into(),
        reporting_instance: String::new(),
    }
}

/// A delivery of `event` through `settings` with the key [`KEY`].
pub fn delivery<'a>(settings: &'a Settings, event: &'a Event) -> Delivery<'a> {
    Delivery {
        settings,
        event,
        commit_status_key: Some(KEY.into()),
    }
}

/// `200` with `body` as JSON.
pub fn ok(body: &serde_json::Value) -> HttpResponse {
    HttpResponse {
        status: 200,
        body: serde_json::to_vec(body).unwrap_or_default(),
    }
}

/// `code` with a short JSON error body.
pub fn status(code: u16) -> HttpResponse {
    HttpResponse {
        status: code,
        body: br#"{"message":"scripted"}"#.to_vec(),
    }
}

/// How many requests `notifier` sends for `event` when the lookup is answered with `lookup`
/// (1: only the lookup, the status was a duplicate; 2: the status was posted).
pub fn requests_with_lookup(
    notifier: &dyn Notifier,
    settings: &Settings,
    event: &Event,
    lookup: HttpResponse,
) -> usize {
    let rec = Recorder::answering(vec![lookup]);
    notifier
        .send(&delivery(settings, event), &rec)
        .expect("send");
    rec.sent().len()
}

/// Asserts that `notifier` refuses each `(address, token)` as invalid settings.
pub fn assert_invalid(notifier: &dyn Notifier, provider_type: &str, cases: &[(&str, &str)]) {
    for (address, token) in cases {
        let err = notifier
            .validate(&settings(provider_type, address, token))
            .expect_err(address);
        assert!(
            matches!(err, NotifyError::InvalidSettings(_)),
            "{address} {token}: {err}"
        );
    }
}

/// Serves `script` on a loopback server, runs `send` with its base URL over [`PlainHttp`],
/// and returns what the server received, checked to be a lookup (GET) then a POST.
pub fn lookup_then_post_over_http(
    script: Vec<HttpResponse>,
    send: impl FnOnce(&str, &dyn Transport) -> Result<(), NotifyError>,
) -> Vec<Received> {
    let server = Server::start(script);
    send(&server.base, &PlainHttp).expect("send");
    let got = server.finish();
    let methods: Vec<&str> = got.iter().map(|r| r.method.as_str()).collect();
    assert_eq!(methods, ["GET", "POST"]);
    got
}
