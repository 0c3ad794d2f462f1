//! `datadog`: an event `POST {scheme}://{host}/api/v1/events` (the site from the address,
//! e.g. `https://api.datadoghq.eu`) with the API key in `DD-API-KEY`: title `Events from the
//! <Kind> <name>/<namespace>`, the message as text, `source_type_name: fluxcd`, the event
//! time, `alert_type` error or info, and Flux's lower-cased tags (`flux_reporting_controller`,
//! `flux_reason`, `kube_kind`, `kube_name`, `kube_namespace`, then `key:value` per metadata).

use serde_json::json;

use crate::chat::{Typed, check_url_and_token, scheme_host, truncate_chars};
use crate::{Event, HttpRequest, NotifyError, Settings, Severity};

/// Datadog's limit on an event's text.
const MAX_TEXT: usize = 4000;

/// The `datadog` type.
pub(crate) static DATADOG: Typed = Typed { validate, requests };

fn tags(e: &Event) -> Vec<String> {
    let o = &e.involved_object;
    let mut tags = vec![
        format!("flux_reporting_controller:{}", e.reporting_controller),
        format!("flux_reason:{}", e.reason),
        format!("kube_kind:{}", o.kind),
        format!("kube_name:{}", o.name),
        format!("kube_namespace:{}", o.namespace),
    ];
    tags.extend(e.metadata.iter().map(|(k, v)| format!("{k}:{v}")));
    tags.iter().map(|t| t.to_lowercase()).collect()
}

fn dd_event(e: &Event) -> serde_json::Value {
    let o = &e.involved_object;
    let alert_type = if e.severity == Severity::Error {
        "error"
    } else {
        "info"
    };
    json!({
        "title": format!("Events from the {} {}/{}", o.kind, o.name, o.namespace),
        "text": truncate_chars(&e.message, MAX_TEXT),
        "tags": tags(e),
        "source_type_name": "fluxcd",
        "date_happened": e.timestamp.timestamp(),
        "alert_type": alert_type,
    })
}

fn requests(s: &Settings, e: &Event) -> Result<Vec<HttpRequest>, NotifyError> {
    let url = format!("{}/api/v1/events", scheme_host(&s.address));
    let req = HttpRequest::post_json(url, &dd_event(e))
        .header("Accept", "application/json")
        .header("DD-API-KEY", s.token.clone());
    Ok(vec![req])
}

fn validate(settings: &Settings) -> Result<(), NotifyError> {
    check_url_and_token("datadog", settings)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::testutil::{Spoil, assert_validate, event, header, send_recorded, settings};

    fn dd_settings() -> Settings {
        let mut s = settings("datadog", "https://api.datadoghq.eu/");
        s.token = "dd-key".into();
        s
    }

    #[test]
    fn posts_event_with_api_key() {
        let s = dd_settings();
        let mut e = event(Severity::Error);
        e.metadata.insert("Env".into(), "Prod".into());
        let rec = send_recorded(&DATADOG, &s, &e);
        let sent = rec.sent();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].method, crate::Method::Post);
        assert_eq!(sent[0].url, "https://api.datadoghq.eu/api/v1/events");
        assert_eq!(header(&sent[0], "DD-API-KEY"), Some("dd-key"));
        assert_eq!(header(&sent[0], "Accept"), Some("application/json"));
        assert_eq!(
            rec.json(0),
            json!({
                "title": "Events from the Kustomization podinfo/flux-system",
                "text": "Applied revision: main@sha1:abc123",
                "tags": [
                    "flux_reporting_controller:kustomize-controller",
                    "flux_reason:reconciliationsucceeded",
                    "kube_kind:kustomization",
                    "kube_name:podinfo",
                    "kube_namespace:flux-system",
                    "env:prod",
                    "revision:main@sha1:abc123",
                    "summary:prod cluster",
                ],
                "source_type_name": "fluxcd",
                "date_happened": 1714557600,
                "alert_type": "error",
            })
        );
    }

    #[test]
    fn info_and_text_limit() {
        let mut e = event(Severity::Info);
        e.message = "z".repeat(5000);
        let v = dd_event(&e);
        assert_eq!(v["alert_type"], "info");
        assert_eq!(
            v["text"].as_str().map(|t| t.chars().count()),
            Some(MAX_TEXT)
        );
    }

    #[test]
    fn validate_table() {
        let spoilt: [Spoil; 3] = [
            ("address", |s| s.address.clear()),
            ("token", |s| s.token.clear()),
            ("token", |s| s.token.push('\n')),
        ];
        assert_validate(&DATADOG, &dd_settings(), &spoilt);
    }
}
