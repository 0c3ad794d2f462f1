//! `pagerduty`: Events API v2 at the address's scheme and host (`https://events.pagerduty.com`)
//! with the integration's routing key in `channel`. As Flux does: an error event triggers an
//! incident deduplicated by the object's UID; an info event resolves that incident and also
//! records a change event (`/v2/change/enqueue`); `Progressing` events are not sent.

use serde_json::json;

use crate::chat::{Typed, check_url, require, scheme_host, truncate_chars};
use crate::text::split_camel_case;
use crate::{Event, HttpRequest, NotifyError, Settings, Severity};

/// PagerDuty's limit on an event's summary.
const MAX_SUMMARY: usize = 1024;

/// The `pagerduty` type.
pub(crate) static PAGERDUTY: Typed = Typed { validate, requests };

/// Flux's `<reason in words>: <summary/>kind/name`, lower case.
fn summary(e: &Event) -> String {
    let o = &e.involved_object;
    let name = match e.metadata.get("summary") {
        Some(s) => format!("{s}/{}/{}", o.kind, o.name),
        None => format!("{}/{}", o.kind, o.name),
    };
    let desc = split_camel_case(&e.reason).join(" ");
    let text = format!("{desc}: {name}").to_lowercase();
    truncate_chars(&text, MAX_SUMMARY).into_owned()
}

fn timestamp(e: &Event) -> String {
    e.timestamp
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The alert event: `trigger` with a payload for errors, `resolve` otherwise.
fn alert_event(s: &Settings, e: &Event) -> serde_json::Value {
    let o = &e.involved_object;
    let mut v = json!({"routing_key": s.channel, "event_action": "resolve"});
    if !o.uid.is_empty() {
        v["dedup_key"] = json!(o.uid);
    }
    if e.severity == Severity::Error {
        v["event_action"] = json!("trigger");
        v["payload"] = json!({
            "summary": summary(e),
            "source": format!("Flux {}", e.reporting_controller),
            "severity": "error",
            "timestamp": timestamp(e),
            "component": o.name,
            "group": o.kind,
            "custom_details": {"message": e.message, "metadata": e.metadata},
        });
    }
    v
}

fn change_event(s: &Settings, e: &Event) -> serde_json::Value {
    json!({
        "routing_key": s.channel,
        "payload": {
            "summary": summary(e),
            "source": format!("Flux {}", e.reporting_controller),
            "timestamp": timestamp(e),
            "custom_details": {"message": e.message, "metadata": e.metadata},
        },
    })
}

fn requests(s: &Settings, e: &Event) -> Result<Vec<HttpRequest>, NotifyError> {
    if e.reason == "Progressing" {
        return Ok(Vec::new());
    }
    let base = scheme_host(&s.address);
    let mut reqs = Vec::new();
    // A resolve without a dedup key names no incident: PagerDuty would reject it.
    if e.severity == Severity::Error || !e.involved_object.uid.is_empty() {
        reqs.push(HttpRequest::post_json(
            format!("{base}/v2/enqueue"),
            &alert_event(s, e),
        ));
    }
    if e.severity == Severity::Info {
        reqs.push(HttpRequest::post_json(
            format!("{base}/v2/change/enqueue"),
            &change_event(s, e),
        ));
    }
    Ok(reqs)
}

fn validate(settings: &Settings) -> Result<(), NotifyError> {
    check_url("pagerduty", &settings.address)?;
    require(
        "pagerduty",
        &settings.channel,
        "spec.channel (the routing key)",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::testutil::{Spoil, assert_validate, event, send_recorded, settings};

    fn pd_settings() -> Settings {
        let mut s = settings("pagerduty", "https://events.pagerduty.com/ignored/path");
        s.channel = "R0UTINGKEY".into();
        s
    }

    fn send(e: &Event) -> crate::recorder::Recorder {
        let s = pd_settings();
        send_recorded(&PAGERDUTY, &s, e)
    }

    #[test]
    fn error_triggers_incident_deduplicated_by_uid() {
        let mut e = event(Severity::Error);
        e.reason = "HealthCheckFailed".into();
        let rec = send(&e);
        let sent = rec.sent();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].method, crate::Method::Post);
        assert_eq!(sent[0].url, "https://events.pagerduty.com/v2/enqueue");
        assert_eq!(
            rec.json(0),
            json!({
                "routing_key": "R0UTINGKEY",
                "event_action": "trigger",
                "dedup_key": "7d0cdc51-ddcf-4743-b223-83ca5c699632",
                "payload": {
                    "summary": "health check failed: prod cluster/kustomization/podinfo",
                    "source": "Flux kustomize-controller",
                    "severity": "error",
                    "timestamp": "2024-05-01T10:00:00Z",
                    "component": "podinfo",
                    "group": "Kustomization",
                    "custom_details": {
                        "message": "Applied revision: main@sha1:abc123",
                        "metadata": {"revision": "main@sha1:abc123", "summary": "prod cluster"},
                    },
                },
            })
        );
    }

    #[test]
    fn info_resolves_and_records_change() {
        let mut e = event(Severity::Info);
        e.metadata.remove("summary");
        let rec = send(&e);
        let sent = rec.sent();
        assert_eq!(sent.len(), 2);
        assert_eq!(
            sent[1].url,
            "https://events.pagerduty.com/v2/change/enqueue"
        );
        assert_eq!(
            rec.json(0),
            json!({
                "routing_key": "R0UTINGKEY",
                "event_action": "resolve",
                "dedup_key": "7d0cdc51-ddcf-4743-b223-83ca5c699632",
            })
        );
        assert_eq!(
            rec.json(1),
            json!({
                "routing_key": "R0UTINGKEY",
                "payload": {
                    "summary": "reconciliation succeeded: kustomization/podinfo",
                    "source": "Flux kustomize-controller",
                    "timestamp": "2024-05-01T10:00:00Z",
                    "custom_details": {
                        "message": "Applied revision: main@sha1:abc123",
                        "metadata": {"revision": "main@sha1:abc123"},
                    },
                },
            })
        );
    }

    #[test]
    fn progressing_is_not_sent_and_no_uid_no_resolve() {
        let mut e = event(Severity::Info);
        e.reason = "Progressing".into();
        assert!(send(&e).sent().is_empty());
        let mut e = event(Severity::Info);
        e.involved_object.uid.clear();
        let sent = send(&e).sent();
        assert_eq!(sent.len(), 1);
        assert!(sent[0].url.ends_with("/v2/change/enqueue"));
    }

    #[test]
    fn camel_case_split_like_flux() {
        assert_eq!(
            split_camel_case("ReconciliationSucceeded"),
            ["Reconciliation", "Succeeded"]
        );
        assert_eq!(split_camel_case("PDFLoader"), ["PDF", "Loader"]);
        assert_eq!(
            split_camel_case("GitOperationFailed2"),
            ["Git", "Operation", "Failed", "2"]
        );
        assert!(split_camel_case("").is_empty());
        let mut e = event(Severity::Error);
        e.reason = "X".repeat(2000);
        assert_eq!(summary(&e).chars().count(), MAX_SUMMARY);
    }

    #[test]
    fn validate_table() {
        let spoilt: [Spoil; 2] = [
            ("address", |s| s.address = "events.pagerduty.com".into()),
            ("channel", |s| s.channel.clear()),
        ];
        assert_validate(&PAGERDUTY, &pd_settings(), &spoilt);
    }
}
