//! `lark`: an interactive card to a Lark (Feishu) custom bot webhook: the object with an
//! emoji as title (turquoise header, red for errors), the message in bold and the metadata
//! as `key: value` lines in Lark markdown.

use serde_json::{Value, json};

use super::format::{Typed, check_url, object_name, truncate_bytes};
use crate::{Event, HttpRequest, NotifyError, Settings, Severity};

/// Lark's custom bots take request bodies up to 20 KB.
const MAX_MESSAGE_BYTES: usize = 16 * 1024;

/// The `lark` type.
pub(crate) static LARK: Typed = Typed { validate, requests };

fn card(e: &Event) -> Value {
    let (emoji, template) = if e.severity == Severity::Error {
        ("🚨", "red")
    } else {
        ("💫", "turquoise")
    };
    let mut content = format!("**{}**\n\n", truncate_bytes(&e.message, MAX_MESSAGE_BYTES));
    for (k, v) in &e.metadata {
        content.push_str(&format!("{k}: {v}\n"));
    }
    json!({
        "msg_type": "interactive",
        "card": {
            "config": {"wide_screen_mode": true},
            "header": {
                "title": {"tag": "plain_text", "content": format!("{emoji} {}", object_name(e))},
                "template": template,
            },
            "elements": [{"tag": "div", "text": {"tag": "lark_md", "content": content}}],
        },
    })
}

fn requests(s: &Settings, e: &Event) -> Result<Vec<HttpRequest>, NotifyError> {
    Ok(vec![HttpRequest::post_json(s.address.clone(), &card(e))])
}

fn validate(settings: &Settings) -> Result<(), NotifyError> {
    check_url("lark", &settings.address)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::testutil::{event, send_recorded, settings};

    const HOOK: &str = "https://open.feishu.cn/open-apis/bot/v2/hook/abc";

    #[test]
    fn posts_interactive_card() {
        let s = settings("lark", HOOK);
        let e = event(Severity::Error);
        let rec = send_recorded(&LARK, &s, &e);
        let sent = rec.sent();
        assert_eq!((sent.len(), sent[0].url.as_str()), (1, HOOK));
        assert_eq!(sent[0].method, crate::Method::Post);
        assert_eq!(
            rec.json(0),
            json!({
                "msg_type": "interactive",
                "card": {
                    "config": {"wide_screen_mode": true},
                    "header": {
                        "title": {"tag": "plain_text",
                                  "content": "🚨 kustomization/podinfo.flux-system"},
                        "template": "red",
                    },
                    "elements": [{"tag": "div", "text": {"tag": "lark_md", "content":
                        "**Applied revision: main@sha1:abc123**\n\nrevision: main@sha1:abc123\nsummary: prod cluster\n"}}],
                },
            })
        );
    }

    #[test]
    fn info_template() {
        let v = card(&event(Severity::Info));
        assert_eq!(v["card"]["header"]["template"], "turquoise");
        assert_eq!(
            v["card"]["header"]["title"]["content"],
            "💫 kustomization/podinfo.flux-system"
        );
    }

    #[test]
    fn validate_table() {
        assert!(validate(&settings("lark", HOOK)).is_ok());
        assert!(validate(&settings("lark", "")).is_err());
        assert!(validate(&settings("lark", "open.feishu.cn/x")).is_err());
    }
}
