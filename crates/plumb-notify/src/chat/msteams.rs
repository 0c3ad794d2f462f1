//! `msteams`: Flux sends an Adaptive Card (schema 1.4, the highest Teams renders) to Teams
//! Workflows webhooks, and the legacy `MessageCard` when the address is an Office 365
//! connector (host ending in `.webhook.office.com`), as Flux 2.9 decides.

use serde_json::{Value, json};

use super::format::{Typed, check_url, object_name, truncate_bytes};
use crate::{Event, HttpRequest, NotifyError, Settings, Severity};

/// Teams rejects webhook payloads over 28 KB; the message gets most of it, metadata the rest.
const MAX_MESSAGE_BYTES: usize = 20 * 1024;

/// The `msteams` type.
pub(crate) static MSTEAMS: Typed = Typed { validate, requests };

/// Whether `address` is an old Office 365 connector (Flux: host, port dropped, ends with
/// `.webhook.office.com`).
fn is_legacy_connector(address: &str) -> bool {
    let host = super::format::scheme_host(address);
    let host = host.split_once("://").map_or(host.as_str(), |(_, h)| h);
    let host = host.split(':').next().unwrap_or(host);
    host.to_ascii_lowercase().ends_with(".webhook.office.com")
}

/// The legacy connector's MessageCard: the message as title, the object as subtitle, the
/// metadata as facts; red theme for errors.
fn message_card(e: &Event, obj: &str, message: &str) -> Value {
    let facts: Vec<Value> = e
        .metadata
        .iter()
        .map(|(k, v)| json!({"name": k, "value": v}))
        .collect();
    let color = if e.severity == Severity::Error {
        "FF0000"
    } else {
        "0076D7"
    };
    json!({
        "@type": "MessageCard",
        "@context": "http://schema.org/extensions",
        "themeColor": color,
        "summary": obj,
        "sections": [{
            "activityTitle": message,
            "activitySubtitle": obj,
            "facts": facts,
        }],
    })
}

/// The Adaptive Card: the object in large bold, the message (red for errors), then a fact
/// set with `summary` first and the rest of the metadata sorted by key.
fn adaptive_card(e: &Event, obj: &str, message: &str) -> Value {
    let mut text = json!({"type": "TextBlock", "text": message, "wrap": true});
    if e.severity == Severity::Error {
        text["color"] = json!("attention");
    }
    let summary = e.metadata.get("summary").map(|v| ("summary", v));
    let rest = e
        .metadata
        .iter()
        .filter(|(k, _)| k.as_str() != "summary")
        .map(|(k, v)| (k.as_str(), v));
    let facts: Vec<Value> = summary
        .into_iter()
        .chain(rest)
        .map(|(k, v)| json!({"title": k, "value": v}))
        .collect();
    let mut fact_set = json!({"type": "FactSet"});
    if !facts.is_empty() {
        fact_set["facts"] = Value::Array(facts);
    }
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "content": {
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "type": "AdaptiveCard",
                "version": "1.4",
                "body": [{
                    "type": "Container",
                    "items": [
                        {"type": "TextBlock", "text": obj, "size": "large",
                         "weight": "bolder", "wrap": true},
                        text,
                        fact_set,
                    ],
                }],
                "msteams": {"width": "Full"},
            },
        }],
    })
}

fn requests(s: &Settings, e: &Event) -> Result<Vec<HttpRequest>, NotifyError> {
    let obj = object_name(e);
    let message = truncate_bytes(&e.message, MAX_MESSAGE_BYTES);
    let body = if is_legacy_connector(&s.address) {
        message_card(e, &obj, &message)
    } else {
        adaptive_card(e, &obj, &message)
    };
    Ok(vec![HttpRequest::post_json(s.address.clone(), &body)])
}

fn validate(settings: &Settings) -> Result<(), NotifyError> {
    check_url("msteams", &settings.address)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::testutil::{event, send_recorded, settings};

    const WORKFLOW: &str = "https://prod-01.westeurope.logic.azure.com:443/workflows/abc/triggers/manual/paths/invoke?sig=s";
    const CONNECTOR: &str = "https://contoso.webhook.office.com/webhookb2/abc/IncomingWebhook/d/e";

    fn send(address: &str, sev: Severity) -> crate::recorder::Recorder {
        let s = settings("msteams", address);
        let mut e = event(sev);
        e.metadata.insert("a_first".into(), "1".into());
        send_recorded(&MSTEAMS, &s, &e)
    }

    #[test]
    fn workflows_webhook_gets_adaptive_card() {
        let rec = send(WORKFLOW, Severity::Error);
        let sent = rec.sent();
        assert_eq!(sent.len(), 1);
        assert_eq!(
            (sent[0].method, sent[0].url.as_str()),
            (crate::Method::Post, WORKFLOW)
        );
        assert_eq!(
            rec.json(0),
            json!({
                "type": "message",
                "attachments": [{
                    "contentType": "application/vnd.microsoft.card.adaptive",
                    "content": {
                        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                        "type": "AdaptiveCard",
                        "version": "1.4",
                        "body": [{
                            "type": "Container",
                            "items": [
                                {"type": "TextBlock", "text": "kustomization/podinfo.flux-system",
                                 "size": "large", "weight": "bolder", "wrap": true},
                                {"type": "TextBlock", "text": "Applied revision: main@sha1:abc123",
                                 "wrap": true, "color": "attention"},
                                {"type": "FactSet", "facts": [
                                    {"title": "summary", "value": "prod cluster"},
                                    {"title": "a_first", "value": "1"},
                                    {"title": "revision", "value": "main@sha1:abc123"},
                                ]},
                            ],
                        }],
                        "msteams": {"width": "Full"},
                    },
                }],
            })
        );
    }

    #[test]
    fn info_has_no_color_and_no_metadata_omits_facts() {
        let s = settings("msteams", WORKFLOW);
        let mut e = event(Severity::Info);
        e.metadata.clear();
        let reqs = requests(&s, &e).expect("built");
        let v: Value = serde_json::from_slice(&reqs[0].body).expect("json");
        let items = &v["attachments"][0]["content"]["body"][0]["items"];
        assert!(items[1].get("color").is_none());
        assert_eq!(items[2], json!({"type": "FactSet"}));
    }

    #[test]
    fn office_connector_gets_message_card() {
        let rec = send(CONNECTOR, Severity::Error);
        assert_eq!(rec.sent()[0].url, CONNECTOR);
        assert_eq!(
            rec.json(0),
            json!({
                "@type": "MessageCard",
                "@context": "http://schema.org/extensions",
                "themeColor": "FF0000",
                "summary": "kustomization/podinfo.flux-system",
                "sections": [{
                    "activityTitle": "Applied revision: main@sha1:abc123",
                    "activitySubtitle": "kustomization/podinfo.flux-system",
                    "facts": [
                        {"name": "a_first", "value": "1"},
                        {"name": "revision", "value": "main@sha1:abc123"},
                        {"name": "summary", "value": "prod cluster"},
                    ],
                }],
            })
        );
        assert_eq!(
            send(CONNECTOR, Severity::Info).json(0)["themeColor"],
            "0076D7"
        );
    }

    #[test]
    fn connector_rule_and_truncation() {
        assert!(is_legacy_connector(CONNECTOR));
        assert!(is_legacy_connector("https://x.webhook.office.com:443/a"));
        assert!(!is_legacy_connector("https://webhook.office.com/a"));
        assert!(!is_legacy_connector(WORKFLOW));
        let s = settings("msteams", WORKFLOW);
        let mut e = event(Severity::Info);
        e.message = "é".repeat(30_000);
        let reqs = requests(&s, &e).expect("built");
        assert!(reqs[0].body.len() < 28 * 1024, "{}", reqs[0].body.len());
    }

    #[test]
    fn validate_table() {
        assert!(validate(&settings("msteams", WORKFLOW)).is_ok());
        for bad in ["", "contoso.webhook.office.com/x", "mailto:x@y"] {
            assert!(validate(&settings("msteams", bad)).is_err(), "{bad}");
        }
    }
}
