//! `zulip`: a stream message through Zulip's REST API, `POST <scheme://host>/api/v1/messages`
//! (the address's path is replaced, as Flux does), form-encoded (`type=stream`, `to`, `topic`,
//! `content`) with the bot's email and API key as Basic auth (`username`, `password`).
//! `spec.channel` is `<stream>/<topic>`. The content is Flux's Markdown post: a `## Flux
//! Status` heading, a severity emoji with `Kind/namespace/name`, the message, and the metadata
//! as a sorted list.

use super::format::{Typed, check_url, scheme_host};
use crate::text::{basic_auth, encode};
use crate::{Event, HttpRequest, NotifyError, Settings, Severity};

/// The `zulip` type.
pub(crate) static ZULIP: Typed = Typed { validate, requests };

/// Flux's metadata key of a change request (pull request comment types); not listed.
const CHANGE_REQUEST_KEY: &str = "changeRequest";

/// `<stream>/<topic>`, both non-empty (the topic may hold more slashes).
fn stream_topic(channel: &str) -> Result<(&str, &str), NotifyError> {
    match channel.split_once('/') {
        Some((stream, topic)) if !stream.is_empty() && !topic.is_empty() => Ok((stream, topic)),
        _ => Err(NotifyError::InvalidSettings(format!(
            "invalid Zulip channel format, expected <channel>/<topic>, got '{channel}'"
        ))),
    }
}

/// Flux's Markdown post of an event.
fn markdown(e: &Event) -> String {
    let emoji = if e.severity == Severity::Error {
        "\u{26a0}\u{fe0f}"
    } else {
        "\u{2139}\u{fe0f}"
    };
    let o = &e.involved_object;
    let metadata: String = e
        .metadata
        .iter()
        .filter(|(k, _)| k.as_str() != CHANGE_REQUEST_KEY)
        .map(|(k, v)| format!("* `{k}`: {v}\n"))
        .collect();
    format!(
        "## Flux Status\n\n{emoji} {}/{}/{}\n\n{}\n\nMetadata:\n{metadata}",
        o.kind, o.namespace, o.name, e.message
    )
}

/// A form value as Go's `url.Values.Encode` writes it (spaces as `+`).
fn form(v: &str) -> String {
    encode(v).replace("%20", "+")
}

fn requests(s: &Settings, e: &Event) -> Result<Vec<HttpRequest>, NotifyError> {
    let (stream, topic) = stream_topic(&s.channel)?;
    // Keys sorted, as Go encodes them.
    let body = format!(
        "content={}&to={}&topic={}&type=stream",
        form(&markdown(e)),
        form(stream),
        form(topic)
    );
    let mut req = HttpRequest {
        method: crate::Method::Post,
        url: format!("{}/api/v1/messages", scheme_host(&s.address)),
        headers: vec![(
            "Content-Type".into(),
            "application/x-www-form-urlencoded".into(),
        )],
        body: body.into_bytes(),
    };
    if !s.username.is_empty() || !s.password.is_empty() {
        req = req.header("Authorization", basic_auth(&s.username, &s.password));
    }
    Ok(vec![req])
}

fn validate(settings: &Settings) -> Result<(), NotifyError> {
    check_url("zulip", &settings.address)?;
    stream_topic(&settings.channel).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::testutil::{event, send_recorded, settings};

    fn zulip() -> Settings {
        let mut s = settings("zulip", "https://chat.example.com/ignored/path");
        s.channel = "ops/flux alerts".into();
        s.username = "bot@example.com".into();
        s.password = "key".into();
        s
    }

    #[test]
    fn posts_a_form_encoded_stream_message() {
        let e = event(Severity::Error);
        let rec = send_recorded(&ZULIP, &zulip(), &e);
        let sent = rec.sent();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].url, "https://chat.example.com/api/v1/messages");
        assert!(sent[0].headers.contains(&(
            "Content-Type".into(),
            "application/x-www-form-urlencoded".into()
        )));
        assert!(
            sent[0]
                .headers
                .contains(&("Authorization".into(), basic_auth("bot@example.com", "key")))
        );
        let body = String::from_utf8(sent[0].body.clone()).expect("utf8");
        let (content, rest) = body.split_once('&').expect("fields");
        assert_eq!(rest, "to=ops&topic=flux+alerts&type=stream");
        let want = markdown(&e);
        assert_eq!(content, format!("content={}", form(&want)));
        assert!(
            want.starts_with(
                "## Flux Status\n\n\u{26a0}\u{fe0f} Kustomization/flux-system/podinfo\n\n"
            ),
            "{want}"
        );
        assert!(
            want.contains("Metadata:\n* `revision`: main@sha1:abc123\n"),
            "{want}"
        );
    }

    #[test]
    fn markdown_skips_the_change_request_and_marks_info() {
        let mut e = event(Severity::Info);
        e.metadata.insert(CHANGE_REQUEST_KEY.into(), "42".into());
        let md = markdown(&e);
        assert!(md.contains("\u{2139}\u{fe0f} Kustomization/"), "{md}");
        assert!(!md.contains("changeRequest"), "{md}");
    }

    #[test]
    fn form_encodes_like_go() {
        assert_eq!(form("a b&c=d/é"), "a+b%26c%3Dd%2F%C3%A9");
    }

    #[test]
    fn validate_table() {
        assert!(validate(&zulip()).is_ok());
        for channel in ["", "ops", "/topic", "ops/"] {
            let mut s = zulip();
            s.channel = channel.into();
            let err = validate(&s).expect_err(channel);
            assert!(err.to_string().contains("<channel>/<topic>"), "{err}");
        }
        let mut s = zulip();
        s.address = "chat.example.com".into();
        assert!(validate(&s).is_err());
    }
}
