//! The Slack attachment payload Flux sends to Slack-compatible endpoints (`discord`'s
//! `/slack` webhook, `rocket`'s incoming webhook): one attachment with the object as author,
//! the message as text and the metadata as fields.

use serde_json::{Value, json};

use super::format::{object_name, truncate_chars};
use crate::Event;

/// Colours of the attachment's bar for info and error events.
pub(crate) struct Colors {
    pub(crate) info: &'static str,
    pub(crate) error: &'static str,
}

/// Flux's `SlackPayload`: `channel`, `username`, empty icons, one attachment. The message
/// is cut to `max_text` characters.
pub(crate) fn payload(
    e: &Event,
    channel: &str,
    username: &str,
    colors: &Colors,
    max_text: usize,
) -> Value {
    let color = match e.severity {
        crate::Severity::Error => colors.error,
        _ => colors.info,
    };
    let fields: Vec<Value> = e
        .metadata
        .iter()
        .map(|(k, v)| json!({"title": k, "value": v, "short": false}))
        .collect();
    json!({
        "channel": channel,
        "username": username,
        "icon_url": "",
        "icon_emoji": "",
        "attachments": [{
            "color": color,
            "author_name": object_name(e),
            "text": truncate_chars(&e.message, max_text),
            "mrkdwn_in": ["text"],
            "fields": fields,
        }],
    })
}
