//! `discord`: Flux posts the Slack payload to the webhook's Slack-compatible endpoint (the
//! address with `/slack` appended unless it ends so). The username defaults to the reporting
//! controller; the channel is not used (a Discord webhook is bound to one).

use super::format::{Typed, check_url};
use super::slack_compat::{Colors, payload};
use crate::{Event, HttpRequest, NotifyError, Settings};

/// Discord maps the attachment text to an embed description, limited to 4096 characters.
const MAX_TEXT: usize = 4096;

/// The `discord` type.
pub(crate) static DISCORD: Typed = Typed { validate, requests };

/// The webhook URL with `/slack` as its last path segment (query kept).
fn slack_url(address: &str) -> String {
    let split = address.find(['?', '#']).unwrap_or(address.len());
    let (base, rest) = address.split_at(split);
    let base = base.trim_end_matches('/');
    if base.ends_with("/slack") {
        return address.to_string();
    }
    format!("{base}/slack{rest}")
}

fn requests(s: &Settings, e: &Event) -> Result<Vec<HttpRequest>, NotifyError> {
    let username = if s.username.is_empty() {
        &e.reporting_controller
    } else {
        &s.username
    };
    let colors = Colors {
        info: "good",
        error: "danger",
    };
    let body = payload(e, "", username, &colors, MAX_TEXT);
    Ok(vec![HttpRequest::post_json(slack_url(&s.address), &body)])
}

fn validate(settings: &Settings) -> Result<(), NotifyError> {
    check_url("discord", &settings.address)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Severity;
    use crate::chat::testutil::{event, send_recorded, settings};

    const HOOK: &str = "https://discord.com/api/webhooks/123/tok";

    #[test]
    fn posts_slack_payload_to_slack_suffix() {
        let s = settings("discord", HOOK);
        let e = event(Severity::Error);
        let rec = send_recorded(&DISCORD, &s, &e);
        let sent = rec.sent();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].method, crate::Method::Post);
        assert_eq!(sent[0].url, format!("{HOOK}/slack"));
        assert_eq!(
            sent[0].headers,
            vec![("Content-Type".to_string(), "application/json".to_string())]
        );
        assert_eq!(
            rec.json(0),
            serde_json::json!({
                "channel": "",
                "username": "kustomize-controller",
                "icon_url": "",
                "icon_emoji": "",
                "attachments": [{
                    "color": "danger",
                    "author_name": "kustomization/podinfo.flux-system",
                    "text": "Applied revision: main@sha1:abc123",
                    "mrkdwn_in": ["text"],
                    "fields": [
                        {"title": "revision", "value": "main@sha1:abc123", "short": false},
                        {"title": "summary", "value": "prod cluster", "short": false},
                    ],
                }],
            })
        );
    }

    #[test]
    fn username_and_info_color_and_long_text() {
        let mut s = settings("discord", &format!("{HOOK}/slack"));
        s.username = "flux".into();
        let mut e = event(Severity::Info);
        e.message = "x".repeat(5000);
        let body = requests(&s, &e).expect("built");
        assert_eq!(body[0].url, format!("{HOOK}/slack"));
        let v: serde_json::Value = serde_json::from_slice(&body[0].body).expect("json");
        assert_eq!(v["username"], "flux");
        assert_eq!(v["attachments"][0]["color"], "good");
        let text = v["attachments"][0]["text"].as_str().unwrap_or_default();
        assert_eq!(text.chars().count(), MAX_TEXT);
    }

    #[test]
    fn slack_url_forms() {
        assert_eq!(
            slack_url("https://d/api/w/1/t"),
            "https://d/api/w/1/t/slack"
        );
        assert_eq!(
            slack_url("https://d/api/w/1/t/"),
            "https://d/api/w/1/t/slack"
        );
        assert_eq!(slack_url("https://d/w/1/t/slack"), "https://d/w/1/t/slack");
        assert_eq!(
            slack_url("https://d/w/1/t?thread_id=9"),
            "https://d/w/1/t/slack?thread_id=9"
        );
    }

    #[test]
    fn validate_table() {
        assert!(validate(&settings("discord", HOOK)).is_ok());
        for bad in ["", "discord.com/api/webhooks/1/t", "ftp://d/x"] {
            assert!(validate(&settings("discord", bad)).is_err(), "{bad}");
        }
    }
}
