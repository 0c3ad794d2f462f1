//! `alertmanager`: `POST {address}` (Alertmanager's `/api/v2/alerts`) with one firing alert.
//! As Flux maps it: labels are the event metadata (without `summary`) plus `alertname`
//! (`Flux` + kind + title-cased reason), `severity`, `reason`, `kind`, `name`, `namespace`,
//! `reportingcontroller`; annotations are `message` and `summary`; `startsAt` is the event
//! time. `endsAt` is left out, so Alertmanager's `resolve_timeout` ends the alert. Auth: basic
//! with username and password, else bearer with the token.

use std::collections::BTreeMap;

use serde_json::json;

use crate::chat::{Typed, check_url_and_credentials, with_credentials};
use crate::{Event, HttpRequest, NotifyError, Settings, Severity};

/// The `alertmanager` type.
pub(crate) static ALERTMANAGER: Typed = Typed { validate, requests };

/// Go's `cases.Title`: each word's first letter upper case, the rest lower case.
fn title_case(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut at_start = true;
    for c in s.chars() {
        if at_start {
            out.extend(c.to_uppercase());
        } else {
            out.extend(c.to_lowercase());
        }
        at_start = !c.is_alphanumeric() && c != '\'';
    }
    out
}

fn severity(e: &Event) -> &'static str {
    match e.severity {
        Severity::Error => "error",
        Severity::Info => "info",
        Severity::Trace => "trace",
    }
}

/// The alert Flux posts for `e`.
fn alert(e: &Event) -> serde_json::Value {
    let mut labels: BTreeMap<&str, &str> = e
        .metadata
        .iter()
        .filter(|(k, _)| k.as_str() != "summary")
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let o = &e.involved_object;
    let alertname = format!("Flux{}{}", o.kind, title_case(&e.reason));
    labels.insert("alertname", &alertname);
    labels.insert("severity", severity(e));
    labels.insert("reason", &e.reason);
    labels.insert("kind", &o.kind);
    labels.insert("name", &o.name);
    labels.insert("namespace", &o.namespace);
    labels.insert("reportingcontroller", &e.reporting_controller);
    let mut annotations = json!({"message": e.message});
    if let Some(summary) = e.metadata.get("summary") {
        annotations["summary"] = json!(summary);
    }
    json!({
        "status": "firing",
        "labels": labels,
        "annotations": annotations,
        "startsAt": e.timestamp.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    })
}

fn requests(s: &Settings, e: &Event) -> Result<Vec<HttpRequest>, NotifyError> {
    let req = HttpRequest::post_json(s.address.clone(), &json!([alert(e)]));
    Ok(vec![with_credentials(req, s, false)])
}

fn validate(settings: &Settings) -> Result<(), NotifyError> {
    check_url_and_credentials("alertmanager", settings)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::testutil::{Spoil, assert_validate, event, header, send_recorded, settings};

    const API: &str = "https://alertmanager.example.com/api/v2/alerts";

    #[test]
    fn posts_one_firing_alert() {
        let s = settings("alertmanager", API);
        let e = event(Severity::Error);
        let rec = send_recorded(&ALERTMANAGER, &s, &e);
        let sent = rec.sent();
        assert_eq!((sent.len(), sent[0].url.as_str()), (1, API));
        assert_eq!(sent[0].method, crate::Method::Post);
        assert_eq!(header(&sent[0], "Authorization"), None);
        assert_eq!(
            rec.json(0),
            json!([{
                "status": "firing",
                "labels": {
                    "alertname": "FluxKustomizationReconciliationsucceeded",
                    "severity": "error",
                    "reason": "ReconciliationSucceeded",
                    "kind": "Kustomization",
                    "name": "podinfo",
                    "namespace": "flux-system",
                    "reportingcontroller": "kustomize-controller",
                    "revision": "main@sha1:abc123",
                },
                "annotations": {
                    "message": "Applied revision: main@sha1:abc123",
                    "summary": "prod cluster",
                },
                "startsAt": "2024-05-01T10:00:00Z",
            }])
        );
    }

    #[test]
    fn auth_headers() {
        let mut s = settings("alertmanager", API);
        s.token = "tok".into();
        let e = event(Severity::Info);
        let reqs = requests(&s, &e).expect("built");
        assert_eq!(header(&reqs[0], "Authorization"), Some("Bearer tok"));
        s.username = "user".into();
        s.password = "pass".into();
        let reqs = requests(&s, &e).expect("built");
        assert_eq!(
            header(&reqs[0], "Authorization"),
            Some("Basic dXNlcjpwYXNz")
        );
    }

    #[test]
    fn event_labels_win_over_metadata_and_no_summary_annotation() {
        let mut e = event(Severity::Info);
        e.metadata.remove("summary");
        e.metadata.insert("kind".into(), "spoof".into());
        let a = alert(&e);
        assert_eq!(a["labels"]["kind"], "Kustomization");
        assert_eq!(a["labels"]["severity"], "info");
        assert!(a["annotations"].get("summary").is_none());
    }

    #[test]
    fn title_case_like_go() {
        assert_eq!(title_case("ReconciliationFailed"), "Reconciliationfailed");
        assert_eq!(title_case("health check failed"), "Health Check Failed");
        assert_eq!(title_case(""), "");
    }

    #[test]
    fn validate_table() {
        let spoilt: [Spoil; 3] = [
            ("address", |s| s.address.clear()),
            ("token", |s| s.token = "tok\n".into()),
            ("address", |s| {
                s.address = "alertmanager.example.com/api".into()
            }),
        ];
        assert_validate(&ALERTMANAGER, &settings("alertmanager", API), &spoilt);
    }
}
