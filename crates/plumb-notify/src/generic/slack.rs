//! `slack`: Flux's Slack message, one attachment per event (color `good` or `danger`,
//! author `<kind>/<name>.<namespace>`, the message as markdown text, one field per metadata
//! entry). Webhook mode posts to the incoming-webhook address; bot mode (a `token` in the
//! Secret) posts to the address (`https://slack.com/api/chat.postMessage`) with
//! `Authorization: Bearer <token>` and needs `spec.channel`. Slack's Web API answers
//! `200 {"ok": false, "error": ...}` on failure, which counts as a failure here.

use serde_json::{Value, json};

use crate::{Delivery, HttpRequest, Notifier, NotifyError, Settings, Severity, Transport};

/// The `slack` type.
pub(super) struct Slack;

/// Slack's JSON body for an event.
fn payload(d: &Delivery<'_>) -> Value {
    let e = d.event;
    let color = if e.severity == Severity::Error {
        "danger"
    } else {
        "good"
    };
    let fields: Vec<Value> = e
        .metadata
        .iter()
        .map(|(k, v)| json!({"title": k, "value": v, "short": false}))
        .collect();
    let o = &e.involved_object;
    let username = if d.settings.username.is_empty() {
        &e.reporting_controller
    } else {
        &d.settings.username
    };
    let mut body = json!({
        "username": username,
        "attachments": [{
            "color": color,
            "author_name": format!("{}/{}.{}", o.kind.to_lowercase(), o.name, o.namespace),
            "text": e.message,
            "mrkdwn_in": ["text"],
            "fields": fields,
        }],
    });
    if !d.settings.channel.is_empty() {
        body["channel"] = json!(d.settings.channel);
    }
    body
}

impl Notifier for Slack {
    fn validate(&self, settings: &Settings) -> Result<(), NotifyError> {
        super::webhook_url(&settings.address)?;
        if !settings.token.is_empty() && settings.channel.is_empty() {
            return Err(NotifyError::InvalidSettings(
                "a Slack bot token needs spec.channel".into(),
            ));
        }
        Ok(())
    }

    fn send(&self, d: &Delivery<'_>, transport: &dyn Transport) -> Result<(), NotifyError> {
        if d.event.is_commit_status_update() {
            return Ok(());
        }
        let mut req = HttpRequest::post_json(d.settings.address.clone(), &payload(d));
        if !d.settings.token.is_empty() {
            req = req.header("Authorization", format!("Bearer {}", d.settings.token));
        }
        let resp = transport.send_ok(&req)?;
        // Incoming webhooks answer the text `ok`; the Web API answers JSON with `ok`.
        let answer: Value = serde_json::from_slice(&resp.body).unwrap_or(Value::Null);
        if answer.get("ok") == Some(&Value::Bool(false)) {
            let why = answer["error"].as_str().unwrap_or("unknown error");
            return Err(NotifyError::Status {
                host: req.host(),
                status: resp.status,
                body: format!("Slack answered ok=false: {why}"),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recorder::Recorder;
    use crate::{Event, HttpResponse};

    fn event(severity: Severity) -> Event {
        let mut e = Event {
            severity,
            message: "Health check failed".into(),
            reason: "HealthCheckFailed".into(),
            reporting_controller: "kustomize-controller".into(),
            ..Default::default()
        };
        e.involved_object.kind = "Kustomization".into();
        e.involved_object.name = "apps".into();
        e.involved_object.namespace = "flux-system".into();
        e.metadata.insert("revision".into(), "main@sha1:abc".into());
        e.metadata.insert("env".into(), "prod".into());
        e
    }

    fn run(s: &Settings, e: &Event, rec: &Recorder) -> Result<(), NotifyError> {
        Slack.validate(s)?;
        Slack.send(
            &Delivery {
                settings: s,
                event: e,
                commit_status_key: None,
            },
            rec,
        )
    }

    #[test]
    fn webhook_mode_posts_fluxs_attachment() {
        let s = Settings {
            address: "https://hooks.slack.com/services/T/B/x".into(),
            ..Default::default()
        };
        let rec = Recorder::default();
        run(&s, &event(Severity::Error), &rec).unwrap();
        let req = &rec.sent()[0];
        assert_eq!(req.url, "https://hooks.slack.com/services/T/B/x");
        assert!(!req.headers.iter().any(|(k, _)| k == "Authorization"));
        assert_eq!(
            rec.json(0),
            json!({
                "username": "kustomize-controller",
                "attachments": [{
                    "color": "danger",
                    "author_name": "kustomization/apps.flux-system",
                    "text": "Health check failed",
                    "mrkdwn_in": ["text"],
                    "fields": [
                        {"title": "env", "value": "prod", "short": false},
                        {"title": "revision", "value": "main@sha1:abc", "short": false},
                    ],
                }],
            })
        );
    }

    #[test]
    fn bot_mode_sends_token_and_channel_and_reads_ok_false() {
        let s = Settings {
            address: "https://slack.com/api/chat.postMessage".into(),
            token: "xoxb-1".into(),
            channel: "C0123".into(),
            username: "flux".into(),
            ..Default::default()
        };
        let rec = Recorder::default();
        run(&s, &event(Severity::Info), &rec).unwrap();
        let req = &rec.sent()[0];
        assert!(
            req.headers
                .contains(&("Authorization".into(), "Bearer xoxb-1".into()))
        );
        let v = rec.json(0);
        assert_eq!(v["channel"], "C0123");
        assert_eq!(v["username"], "flux");
        assert_eq!(v["attachments"][0]["color"], "good");

        let rec = Recorder::answering(vec![HttpResponse {
            status: 200,
            body: br#"{"ok":false,"error":"channel_not_found"}"#.to_vec(),
        }]);
        let err = run(&s, &event(Severity::Info), &rec)
            .unwrap_err()
            .to_string();
        assert!(err.contains("channel_not_found"), "{err}");
        assert!(!err.contains("xoxb"), "{err}");

        let mut no_channel = s.clone();
        no_channel.channel.clear();
        assert!(Slack.validate(&no_channel).is_err());
    }
}
