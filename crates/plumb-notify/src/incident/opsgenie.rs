//! `opsgenie`: an alert `POST {address}` (`https://api.opsgenie.com/v2/alerts`) with the
//! API key as `Authorization: GenieKey <token>`: `message` is `Kind/name`, `description`
//! the event message, `details` the metadata plus `severity`.

use serde_json::json;

use crate::chat::{Typed, check_url_and_token, truncate_chars};
use crate::{Event, HttpRequest, NotifyError, Settings, Severity};

/// Opsgenie keeps at most 15000 characters of a description.
const MAX_DESCRIPTION: usize = 15_000;

/// The `opsgenie` type.
pub(crate) static OPSGENIE: Typed = Typed { validate, requests };

fn alert(e: &Event) -> serde_json::Value {
    let mut details = e.metadata.clone();
    let severity = if e.severity == Severity::Error {
        "error"
    } else {
        "info"
    };
    details.insert("severity".into(), severity.into());
    let o = &e.involved_object;
    json!({
        "message": format!("{}/{}", o.kind, o.name),
        "description": truncate_chars(&e.message, MAX_DESCRIPTION),
        "details": details,
    })
}

fn requests(s: &Settings, e: &Event) -> Result<Vec<HttpRequest>, NotifyError> {
    let req = HttpRequest::post_json(s.address.clone(), &alert(e))
        .header("Authorization", format!("GenieKey {}", s.token));
    Ok(vec![req])
}

fn validate(settings: &Settings) -> Result<(), NotifyError> {
    check_url_and_token("opsgenie", settings)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::testutil::{Spoil, assert_validate, event, header, send_recorded, settings};

    const API: &str = "https://api.opsgenie.com/v2/alerts";

    fn og_settings() -> Settings {
        let mut s = settings("opsgenie", API);
        s.token = "genie-key".into();
        s
    }

    #[test]
    fn posts_alert_with_genie_key() {
        let s = og_settings();
        let e = event(Severity::Error);
        let rec = send_recorded(&OPSGENIE, &s, &e);
        let sent = rec.sent();
        assert_eq!((sent.len(), sent[0].url.as_str()), (1, API));
        assert_eq!(sent[0].method, crate::Method::Post);
        assert_eq!(
            header(&sent[0], "Authorization"),
            Some("GenieKey genie-key")
        );
        assert_eq!(
            rec.json(0),
            json!({
                "message": "Kustomization/podinfo",
                "description": "Applied revision: main@sha1:abc123",
                "details": {
                    "revision": "main@sha1:abc123",
                    "summary": "prod cluster",
                    "severity": "error",
                },
            })
        );
        assert_eq!(alert(&event(Severity::Info))["details"]["severity"], "info");
    }

    #[test]
    fn validate_table() {
        let spoilt: [Spoil; 3] = [
            ("address", |s| s.address.clear()),
            ("token", |s| s.token.clear()),
            ("token", |s| s.token.push('\n')),
        ];
        assert_validate(&OPSGENIE, &og_settings(), &spoilt);
    }
}
