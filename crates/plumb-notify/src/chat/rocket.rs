//! `rocket`: Rocket.Chat's incoming webhook takes Flux's Slack payload with `channel` and
//! `username` from the Provider (both optional; the webhook's defaults apply when empty).

use super::format::{Typed, check_url};
use super::slack_compat::{Colors, payload};
use crate::{Event, HttpRequest, NotifyError, Settings};

/// Rocket.Chat's default `Message_MaxAllowedSize` is 5000 characters.
const MAX_TEXT: usize = 5000;

/// The `rocket` type.
pub(crate) static ROCKET: Typed = Typed { validate, requests };

fn requests(s: &Settings, e: &Event) -> Result<Vec<HttpRequest>, NotifyError> {
    let colors = Colors {
        info: "#0076D7",
        error: "#FF0000",
    };
    let body = payload(e, &s.channel, &s.username, &colors, MAX_TEXT);
    Ok(vec![HttpRequest::post_json(s.address.clone(), &body)])
}

fn validate(settings: &Settings) -> Result<(), NotifyError> {
    check_url("rocket", &settings.address)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Notifier;
    use crate::Severity;
    use crate::chat::testutil::{delivery, event, send_recorded, settings};
    use crate::recorder::Recorder;

    const HOOK: &str = "https://rocket.example.com/hooks/abc/def";

    #[test]
    fn posts_slack_payload_with_channel_and_username() {
        let mut s = settings("rocket", HOOK);
        s.channel = "#flux".into();
        s.username = "flux-bot".into();
        let mut e = event(Severity::Info);
        e.metadata.clear();
        let rec = send_recorded(&ROCKET, &s, &e);
        let sent = rec.sent();
        assert_eq!((sent.len(), sent[0].url.as_str()), (1, HOOK));
        assert_eq!(sent[0].method, crate::Method::Post);
        assert_eq!(
            rec.json(0),
            serde_json::json!({
                "channel": "#flux",
                "username": "flux-bot",
                "icon_url": "",
                "icon_emoji": "",
                "attachments": [{
                    "color": "#0076D7",
                    "author_name": "kustomization/podinfo.flux-system",
                    "text": "Applied revision: main@sha1:abc123",
                    "mrkdwn_in": ["text"],
                    "fields": [],
                }],
            })
        );
    }

    #[test]
    fn error_color_and_empty_username() {
        let s = settings("rocket", HOOK);
        let reqs = requests(&s, &event(Severity::Error)).expect("built");
        let v: serde_json::Value = serde_json::from_slice(&reqs[0].body).expect("json");
        assert_eq!(v["attachments"][0]["color"], "#FF0000");
        assert_eq!(v["username"], "");
        assert_eq!(v["attachments"][0]["fields"][0]["title"], "revision");
    }

    #[test]
    fn failures_map_to_retryable_or_not() {
        let s = settings("rocket", HOOK);
        let e = event(Severity::Info);
        let d = delivery(&s, &e);
        for (status, retry) in [(400, false), (404, false), (429, true), (503, true)] {
            let rec = Recorder::answering(vec![crate::HttpResponse {
                status,
                body: b"nope".to_vec(),
            }]);
            let err = ROCKET.send(&d, &rec).expect_err("fails");
            assert_eq!(err.is_retryable(), retry, "{status}");
            assert!(!err.to_string().contains("/hooks/"), "{err}");
        }
    }

    #[test]
    fn validate_table() {
        assert!(validate(&settings("rocket", HOOK)).is_ok());
        assert!(validate(&settings("rocket", "")).is_err());
        assert!(validate(&settings("rocket", "not a url")).is_err());
    }
}
