//! `telegram`: the Bot API's `sendMessage` at `{address}/bot{token}/sendMessage` (address
//! defaults to `https://api.telegram.org`), `chat_id` = `channel`, or `chat:thread` to post
//! in a forum topic (`message_thread_id`), text in MarkdownV2 with Flux's escaping.
//! The URL holds the token: errors show scheme and host only.

use serde_json::json;

use super::format::{Typed, check_url, require, require_secret, truncate_chars};
use crate::{Event, HttpRequest, NotifyError, Settings, Severity};

/// The Bot API's default server.
const DEFAULT_API: &str = "https://api.telegram.org";
/// `sendMessage` takes at most 4096 characters of text after entity parsing.
const MAX_TEXT: usize = 4096;

/// The `telegram` type.
pub(crate) static TELEGRAM: Typed = Typed { validate, requests };

/// MarkdownV2 escaping of every character Telegram reserves (Flux's set).
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\.-_[]()~>`#+=|{}!*".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Flux's text: bold emoji heading `kind/name/namespace`, the message, `- *key*: value`
/// lines. The message is cut so the visible text fits the 4096-character limit.
fn text(e: &Event) -> String {
    let emoji = if e.severity == Severity::Error {
        "🚨"
    } else {
        "💫"
    };
    let o = &e.involved_object;
    let heading = format!(
        "{emoji} {}/{}/{}",
        o.kind.to_lowercase(),
        o.name,
        o.namespace
    );
    let mut metadata = String::new();
    let mut visible = heading.chars().count() + 2;
    for (k, v) in &e.metadata {
        metadata.push_str(&format!("\\- *{}*: {}\n", escape(k), escape(v)));
        visible += k.chars().count() + v.chars().count() + 5;
    }
    let message = truncate_chars(&e.message, MAX_TEXT.saturating_sub(visible));
    format!("*{}*\n{}\n{metadata}", escape(&heading), escape(&message))
}

fn requests(s: &Settings, e: &Event) -> Result<Vec<HttpRequest>, NotifyError> {
    let base = if s.address.is_empty() {
        DEFAULT_API
    } else {
        s.address.trim_end_matches('/')
    };
    let url = format!("{base}/bot{}/sendMessage", s.token);
    let mut body = json!({"text": text(e), "parse_mode": "MarkdownV2"});
    match s.channel.split_once(':') {
        Some((chat, thread)) => {
            body["chat_id"] = json!(chat);
            body["message_thread_id"] = json!(thread);
        }
        None => body["chat_id"] = json!(s.channel),
    }
    Ok(vec![HttpRequest::post_json(url, &body)])
}

fn validate(settings: &Settings) -> Result<(), NotifyError> {
    if !settings.address.is_empty() {
        check_url("telegram", &settings.address)?;
    }
    require("telegram", &settings.channel, "spec.channel (the chat id)")?;
    require_secret(
        "telegram",
        &settings.token,
        "the secret's token (the bot token)",
    )?;
    if settings.token.contains(['/', '?', '#']) || settings.token.contains(char::is_whitespace) {
        return Err(NotifyError::InvalidSettings(
            "telegram: the token must be a bot token (no '/', '?', '#' or spaces)".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Notifier;
    use crate::chat::testutil::{Spoil, assert_validate, delivery, event, send_recorded, settings};
    use crate::recorder::Recorder;

    fn tg_settings(channel: &str) -> Settings {
        let mut s = settings("telegram", "");
        s.channel = channel.into();
        s.token = "123:ABC".into();
        s
    }

    #[test]
    fn sends_markdown_v2_message() {
        let s = tg_settings("@fluxtest");
        let e = event(Severity::Error);
        let rec = send_recorded(&TELEGRAM, &s, &e);
        let sent = rec.sent();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].method, crate::Method::Post);
        assert_eq!(
            sent[0].url,
            "https://api.telegram.org/bot123:ABC/sendMessage"
        );
        assert_eq!(
            rec.json(0),
            json!({
                "chat_id": "@fluxtest",
                "text": "*🚨 kustomization/podinfo/flux\\-system*\nApplied revision: main@sha1:abc123\n\\- *revision*: main@sha1:abc123\n\\- *summary*: prod cluster\n",
                "parse_mode": "MarkdownV2",
            })
        );
    }

    #[test]
    fn thread_id_and_custom_address() {
        let mut s = tg_settings("-100123:42");
        s.address = "http://bot-api.local:8081/".into();
        let reqs = requests(&s, &event(Severity::Info)).expect("built");
        assert_eq!(
            reqs[0].url,
            "http://bot-api.local:8081/bot123:ABC/sendMessage"
        );
        let v: serde_json::Value = serde_json::from_slice(&reqs[0].body).expect("json");
        assert_eq!(v["chat_id"], "-100123");
        assert_eq!(v["message_thread_id"], "42");
        assert!(v["text"].as_str().unwrap_or_default().starts_with("*💫 "));
    }

    #[test]
    fn escapes_every_reserved_character_and_limits_length() {
        assert_eq!(
            escape("a.b-c_d[e]f(g)h~i>j`k#l+m=n|o{p}q!r*s\\t"),
            "a\\.b\\-c\\_d\\[e\\]f\\(g\\)h\\~i\\>j\\`k\\#l\\+m\\=n\\|o\\{p\\}q\\!r\\*s\\\\t"
        );
        let mut e = event(Severity::Info);
        e.message = "y".repeat(10_000);
        let t = text(&e);
        let visible = t.replace(['\\', '*'], "");
        assert!(
            visible.chars().count() <= MAX_TEXT,
            "{}",
            visible.chars().count()
        );
    }

    #[test]
    fn errors_never_show_the_token() {
        let s = tg_settings("@c");
        let e = event(Severity::Info);
        let d = delivery(&s, &e);
        let rec = Recorder::answering(vec![crate::HttpResponse {
            status: 401,
            body: b"{\"ok\":false}".to_vec(),
        }]);
        let err = TELEGRAM.send(&d, &rec).expect_err("401");
        assert!(!err.is_retryable());
        assert!(!err.to_string().contains("ABC"), "{err}");
    }

    #[test]
    fn validate_table() {
        let spoilt: [Spoil; 4] = [
            ("channel", |s| s.channel.clear()),
            ("token", |s| s.token.clear()),
            ("token", |s| s.token = "a/b".into()),
            ("address", |s| s.address = "api.telegram.org".into()),
        ];
        assert_validate(&TELEGRAM, &tg_settings("@c"), &spoilt);
    }
}
