//! `matrix`: a client-server API `m.room.message` sent to the room in `channel`, with the
//! access token in `token`: `PUT {address}/_matrix/client/r0/rooms/{room}/send/
//! m.room.message/{txnId}`. The transaction id is, as in Flux, the SHA-1 of the event's JSON,
//! so a retried send of the same event is deduplicated by the homeserver.

use serde_json::json;
use sha1::Digest as _;

use super::format::{
    Typed, check_url, object_name, path_segment, require, require_secret, truncate_bytes,
};
use crate::{Event, HttpRequest, Method, NotifyError, Settings, Severity};

/// Matrix events are limited to 64 KiB; the message gets most of it.
const MAX_MESSAGE_BYTES: usize = 56 * 1024;

/// The `matrix` type.
pub(crate) static MATRIX: Typed = Typed { validate, requests };

/// Flux's transaction id: the hex SHA-1 of the event as JSON.
fn txn_id(e: &Event) -> String {
    let json = serde_json::to_vec(e).unwrap_or_default();
    hex::encode(sha1::Sha1::digest(&json))
}

/// The plain-text body: emoji and object, message, `- key: value` lines.
fn body(e: &Event) -> String {
    let emoji = if e.severity == Severity::Error {
        "🚨"
    } else {
        "💫"
    };
    let mut metadata = String::new();
    for (k, v) in &e.metadata {
        metadata.push_str(&format!("- {k}: {v}\n"));
    }
    let message = truncate_bytes(&e.message, MAX_MESSAGE_BYTES);
    format!("{emoji} {}\n{message}\n{metadata}", object_name(e))
}

fn requests(s: &Settings, e: &Event) -> Result<Vec<HttpRequest>, NotifyError> {
    let url = format!(
        "{}/_matrix/client/r0/rooms/{}/send/m.room.message/{}",
        s.address.trim_end_matches('/'),
        path_segment(&s.channel),
        txn_id(e)
    );
    let mut req = HttpRequest::post_json(url, &json!({"body": body(e), "msgtype": "m.text"}))
        .header("Authorization", format!("Bearer {}", s.token));
    req.method = Method::Put;
    Ok(vec![req])
}

fn validate(settings: &Settings) -> Result<(), NotifyError> {
    check_url("matrix", &settings.address)?;
    require("matrix", &settings.channel, "spec.channel (the room id)")?;
    require_secret(
        "matrix",
        &settings.token,
        "the secret's token (an access token)",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::testutil::{Spoil, assert_validate, event, header, send_recorded, settings};

    fn matrix_settings() -> Settings {
        let mut s = settings("matrix", "https://matrix.example.org/");
        s.channel = "!abc:example.org".into();
        s.token = "syt_secret".into();
        s
    }

    #[test]
    fn puts_room_message_with_txn_id() {
        let s = matrix_settings();
        let e = event(Severity::Error);
        let rec = send_recorded(&MATRIX, &s, &e);
        let sent = rec.sent();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].method, Method::Put);
        let txn = txn_id(&e);
        assert_eq!(txn.len(), 40);
        assert_eq!(
            sent[0].url,
            format!(
                "https://matrix.example.org/_matrix/client/r0/rooms/!abc:example.org/send/m.room.message/{txn}"
            )
        );
        assert_eq!(header(&sent[0], "Authorization"), Some("Bearer syt_secret"));
        assert_eq!(header(&sent[0], "Content-Type"), Some("application/json"));
        assert_eq!(
            rec.json(0),
            json!({
                "body": "🚨 kustomization/podinfo.flux-system\nApplied revision: main@sha1:abc123\n- revision: main@sha1:abc123\n- summary: prod cluster\n",
                "msgtype": "m.text",
            })
        );
    }

    #[test]
    fn txn_id_is_stable_per_event_and_differs_between_events() {
        let a = event(Severity::Info);
        let mut b = a.clone();
        b.message = "other".into();
        assert_eq!(txn_id(&a), txn_id(&a.clone()));
        assert_ne!(txn_id(&a), txn_id(&b));
        assert!(body(&a).starts_with("💫 "));
    }

    #[test]
    fn room_alias_is_escaped() {
        let mut s = matrix_settings();
        s.channel = "#ops/x?y".into();
        let reqs = requests(&s, &event(Severity::Info)).expect("built");
        assert!(
            reqs[0].url.contains("/rooms/%23ops%2Fx%3Fy/send/"),
            "{}",
            reqs[0].url
        );
    }

    #[test]
    fn validate_table() {
        let spoilt: [Spoil; 4] = [
            ("address", |s| s.address.clear()),
            ("channel", |s| s.channel.clear()),
            ("token", |s| s.token.clear()),
            ("token", |s| s.token.push('\r')),
        ];
        assert_validate(&MATRIX, &matrix_settings(), &spoilt);
    }
}
