//! `googlechat`: a card (Chat API v1 `cards`) with the object as title, the reporting
//! controller as subtitle, the message (red for errors) and one key/value widget per
//! metadata entry. Fields Flux leaves unset are sent as `null`, as Flux does.

use serde_json::{Value, json};

use super::format::{Typed, check_url, object_name, truncate_chars};
use crate::{Event, HttpRequest, NotifyError, Settings, Severity};

/// Google Chat limits a message's text to 4096 characters.
const MAX_TEXT: usize = 4096;

/// The `googlechat` type.
pub(crate) static GOOGLECHAT: Typed = Typed { validate, requests };

fn card(e: &Event) -> Value {
    let message = truncate_chars(&e.message, MAX_TEXT);
    let text = if e.severity == Severity::Error {
        format!("<font color=\"#ff0000\">{message}</font>")
    } else {
        message.into_owned()
    };
    let mut sections = vec![json!({
        "header": "",
        "widgets": [{"textParagraph": {"text": text}, "keyValue": null}],
    })];
    if !e.metadata.is_empty() {
        let widgets: Vec<Value> = e
            .metadata
            .iter()
            .map(|(k, v)| {
                json!({"textParagraph": null, "keyValue": {
                    "topLabel": k, "content": v, "contentMultiline": false,
                    "bottomLabel": null, "icon": null,
                }})
            })
            .collect();
        sections.push(json!({"header": "", "widgets": widgets}));
    }
    json!({"cards": [{
        "header": {
            "title": object_name(e),
            "subtitle": e.reporting_controller,
            "imageUrl": null,
            "imageStyle": null,
        },
        "sections": sections,
    }]})
}

fn requests(s: &Settings, e: &Event) -> Result<Vec<HttpRequest>, NotifyError> {
    Ok(vec![HttpRequest::post_json(s.address.clone(), &card(e))])
}

fn validate(settings: &Settings) -> Result<(), NotifyError> {
    check_url("googlechat", &settings.address)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::testutil::{event, send_recorded, settings};

    const HOOK: &str = "https://chat.googleapis.com/v1/spaces/S/messages?key=k&token=t";

    #[test]
    fn posts_card() {
        let s = settings("googlechat", HOOK);
        let e = event(Severity::Error);
        let rec = send_recorded(&GOOGLECHAT, &s, &e);
        let sent = rec.sent();
        assert_eq!((sent.len(), sent[0].url.as_str()), (1, HOOK));
        assert_eq!(sent[0].method, crate::Method::Post);
        let kv = |k: &str, v: &str| {
            json!({"textParagraph": null, "keyValue": {
                "topLabel": k, "content": v, "contentMultiline": false,
                "bottomLabel": null, "icon": null}})
        };
        assert_eq!(
            rec.json(0),
            json!({"cards": [{
                "header": {
                    "title": "kustomization/podinfo.flux-system",
                    "subtitle": "kustomize-controller",
                    "imageUrl": null,
                    "imageStyle": null,
                },
                "sections": [
                    {"header": "", "widgets": [{"textParagraph": {"text":
                        "<font color=\"#ff0000\">Applied revision: main@sha1:abc123</font>"},
                        "keyValue": null}]},
                    {"header": "", "widgets": [
                        kv("revision", "main@sha1:abc123"),
                        kv("summary", "prod cluster"),
                    ]},
                ],
            }]})
        );
    }

    #[test]
    fn info_plain_text_and_no_metadata_section() {
        let mut e = event(Severity::Info);
        e.metadata.clear();
        let v = card(&e);
        let sections = v["cards"][0]["sections"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert_eq!(sections.len(), 1);
        assert_eq!(
            sections[0]["widgets"][0]["textParagraph"]["text"],
            "Applied revision: main@sha1:abc123"
        );
    }

    #[test]
    fn validate_table() {
        assert!(validate(&settings("googlechat", HOOK)).is_ok());
        for bad in ["", "chat.googleapis.com/v1", "https://"] {
            assert!(validate(&settings("googlechat", bad)).is_err(), "{bad}");
        }
    }
}
