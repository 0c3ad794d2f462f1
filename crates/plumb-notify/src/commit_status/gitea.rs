//! `gitea`: commit statuses through Gitea's (and Forgejo's) API at `<host>/api/v1`,
//! authenticated with `Authorization: token <token>`.
//!
//! Unlike the other types, Flux posts `Progressing` events too, as `pending`. The commit's
//! statuses are listed first and nothing is posted when the newest one with the same context
//! has the same state and description.

use serde_json::json;

use super::{
    States, StatusUpdate, encode, get, json_body, newest_is_same, parse_git_address, require_token,
    text,
};
use crate::{Delivery, HttpRequest, Notifier, NotifyError, Settings, Transport};

/// The service's states.
const STATES: States = States {
    info: "success",
    error: "failure",
    progressing: Some("pending"),
};

/// `<host>/api/v1/repos/<owner>/<repo>` of the Provider's address.
fn repo_url(settings: &Settings) -> Result<String, NotifyError> {
    let address = parse_git_address(&settings.address)?;
    let parts = address.segments(2, "<owner>/<repo>")?;
    Ok(format!(
        "{}/api/v1/repos/{}/{}",
        address.host,
        encode(parts[0]),
        encode(parts[1])
    ))
}

/// The `gitea` type.
pub(super) struct Gitea;

impl Notifier for Gitea {
    fn validate(&self, settings: &Settings) -> Result<(), NotifyError> {
        repo_url(settings)?;
        require_token(settings, "gitea")
    }

    fn send(&self, delivery: &Delivery<'_>, transport: &dyn Transport) -> Result<(), NotifyError> {
        let Some(update) = StatusUpdate::of(delivery, &STATES)? else {
            return Ok(());
        };
        let state = update.state;
        let repo = repo_url(delivery.settings)?;
        require_token(delivery.settings, "gitea")?;
        let auth = format!("token {}", delivery.settings.token);

        let list = get(format!(
            "{repo}/commits/{}/statuses?page=1&limit=50",
            update.sha
        ))
        .header("Authorization", auth.as_str());
        let listed = json_body(&transport.send_ok(&list)?.body);
        if is_duplicate(&listed, update.key, state, &update.description) {
            return Ok(());
        }
        let body = json!({
            "state": state,
            "target_url": "",
            "description": update.description,
            "context": update.key,
        });
        let post = HttpRequest::post_json(format!("{repo}/statuses/{}", update.sha), &body)
            .header("Authorization", auth);
        transport.send_ok(&post).map(drop)
    }
}

/// Whether Gitea already shows this status; entries with an empty field are passed over.
fn is_duplicate(listed: &serde_json::Value, context: &str, state: &str, description: &str) -> bool {
    let statuses = listed.as_array().into_iter().flatten().map(|s| {
        let field = |k: &str| text(s.get(k)).filter(|v| !v.is_empty());
        // Gitea names the state `status` in responses (`state` in older versions).
        let st = field("status").or_else(|| field("state"))?;
        Some((field("context")?, st, field("description")?))
    });
    newest_is_same(statuses, context, state, description)
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::*;

    #[test]
    fn posts_a_status() {
        let s = settings("gitea", "https://gitea.example.com/org/repo.git", "tok");
        let e = event(Severity::Error, "HealthCheckFailed");
        let rec = Recorder::default();
        Gitea.send(&delivery(&s, &e), &rec).expect("send");
        let sent = rec.sent();
        let repo = "https://gitea.example.com/api/v1/repos/org/repo";
        assert_eq!(sent[0].method, Method::Get);
        assert_eq!(
            sent[0].url,
            format!("{repo}/commits/{SHA}/statuses?page=1&limit=50")
        );
        assert_eq!(sent[1].method, Method::Post);
        assert_eq!(sent[1].url, format!("{repo}/statuses/{SHA}"));
        assert!(
            sent[1]
                .headers
                .contains(&("Authorization".into(), "token tok".into()))
        );
        assert_eq!(
            rec.json(1),
            json!({"state": "failure", "target_url": "", "description": "health check failed",
                "context": KEY})
        );
    }

    #[test]
    fn progressing_is_pending() {
        let s = settings("gitea", "https://gitea.example.com/org/repo", "tok");
        let e = event(Severity::Info, "Progressing");
        let rec = Recorder::default();
        Gitea.send(&delivery(&s, &e), &rec).expect("send");
        assert_eq!(rec.json(1)["state"], "pending");
    }

    #[test]
    fn duplicate_status_is_not_posted_again() {
        let s = settings("gitea", "https://gitea.example.com/org/repo", "tok");
        let e = event(Severity::Info, "ReconciliationSucceeded");
        let listed = |status: &str, description: &str| {
            ok(&json!([{"context": KEY, "status": status, "description": description}]))
        };
        let same = listed("success", "reconciliation succeeded");
        assert_eq!(requests_with_lookup(&Gitea, &s, &e, same), 1);
        let changed = listed("failure", "health check failed");
        assert_eq!(requests_with_lookup(&Gitea, &s, &e, changed), 2);
    }

    #[test]
    fn validate_and_errors() {
        let cases = [
            ("https://gitea.example.com/org", "t"),
            ("https://gitea.example.com/org/repo", ""),
        ];
        assert_invalid(&Gitea, "gitea", &cases);
        let s = settings("gitea", "https://gitea.example.com/org/repo", "t");
        let e = event(Severity::Info, "ReconciliationSucceeded");
        let err = Gitea
            .send(&delivery(&s, &e), &Recorder::answering(vec![status(403)]))
            .expect_err("403");
        assert!(!err.is_retryable());
    }

    #[test]
    fn over_http() {
        let e = event(Severity::Info, "ReconciliationSucceeded");
        let script = vec![ok(&json!([])), ok(&json!({"id": 1}))];
        let got = lookup_then_post_over_http(script, |base, transport| {
            let s = settings("gitea", &format!("{base}/org/repo"), "tok");
            Gitea.send(&delivery(&s, &e), transport)
        });
        assert_eq!(
            got[1].target,
            format!("/api/v1/repos/org/repo/statuses/{SHA}")
        );
        assert_eq!(got[1].header("authorization"), Some("token tok"));
        assert_eq!(got[1].json["state"], "success");
    }
}
