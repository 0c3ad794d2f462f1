//! `webex`: `POST {address}` (the Messages API, `https://webexapis.com/v1/messages`) with the
//! bot's access token as bearer, `roomId` = `channel` and the text as markdown: emoji and
//! bold object, message, one `>**key**: value` quote line per metadata entry.

use serde_json::json;

use super::format::{Typed, check_url, object_name, require, require_secret, truncate_bytes};
use crate::{Event, HttpRequest, NotifyError, Settings, Severity};

/// Webex rejects markdown over 7439 bytes.
const MAX_MARKDOWN_BYTES: usize = 7439;

/// The `webex` type.
pub(crate) static WEBEX: Typed = Typed { validate, requests };

/// Flux's markdown, the message cut so the whole fits Webex's limit.
fn markdown(e: &Event) -> String {
    let emoji = if e.severity == Severity::Error {
        "💣"
    } else {
        "✅"
    };
    let head = format!("{emoji} **{}**\n", object_name(e));
    let mut tail = String::new();
    for (k, v) in &e.metadata {
        tail.push_str(&format!(">**{k}**: {v}\n"));
    }
    let room = MAX_MARKDOWN_BYTES.saturating_sub(head.len() + tail.len() + 1);
    format!("{head}{}\n{tail}", truncate_bytes(&e.message, room))
}

fn requests(s: &Settings, e: &Event) -> Result<Vec<HttpRequest>, NotifyError> {
    let body = json!({"roomId": s.channel, "markdown": markdown(e)});
    let req = HttpRequest::post_json(s.address.clone(), &body)
        .header("Authorization", format!("Bearer {}", s.token));
    Ok(vec![req])
}

fn validate(settings: &Settings) -> Result<(), NotifyError> {
    check_url("webex", &settings.address)?;
    require("webex", &settings.channel, "spec.channel (the room id)")?;
    require_secret(
        "webex",
        &settings.token,
        "the secret's token (the bot token)",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::testutil::{Spoil, assert_validate, event, header, send_recorded, settings};

    const API: &str = "https://webexapis.com/v1/messages";

    fn webex_settings() -> Settings {
        let mut s = settings("webex", API);
        s.channel = "Y2lzY29zcGFyazovL3VzL1JPT00v".into();
        s.token = "bot-token".into();
        s
    }

    #[test]
    fn posts_markdown_to_room() {
        let s = webex_settings();
        let e = event(Severity::Error);
        let rec = send_recorded(&WEBEX, &s, &e);
        let sent = rec.sent();
        assert_eq!((sent.len(), sent[0].url.as_str()), (1, API));
        assert_eq!(sent[0].method, crate::Method::Post);
        assert_eq!(header(&sent[0], "Authorization"), Some("Bearer bot-token"));
        assert_eq!(
            rec.json(0),
            json!({
                "roomId": "Y2lzY29zcGFyazovL3VzL1JPT00v",
                "markdown": "💣 **kustomization/podinfo.flux-system**\nApplied revision: main@sha1:abc123\n>**revision**: main@sha1:abc123\n>**summary**: prod cluster\n",
            })
        );
    }

    #[test]
    fn info_emoji_and_limit() {
        let mut e = event(Severity::Info);
        assert!(markdown(&e).starts_with("✅ **"));
        e.message = "ü".repeat(10_000);
        let md = markdown(&e);
        assert!(md.len() <= MAX_MARKDOWN_BYTES, "{}", md.len());
        assert!(md.ends_with(">**summary**: prod cluster\n"));
    }

    #[test]
    fn validate_table() {
        let spoilt: [Spoil; 4] = [
            ("address", |s| s.address = "webexapis.com".into()),
            ("channel", |s| s.channel.clear()),
            ("token", |s| s.token.clear()),
            ("token", |s| s.token.push('\n')),
        ];
        assert_validate(&WEBEX, &webex_settings(), &spoilt);
    }
}
