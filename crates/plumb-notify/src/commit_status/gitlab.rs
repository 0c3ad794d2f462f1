//! `gitlab`: commit statuses through GitLab's REST API v4 (gitlab.com or self-managed, the
//! API at `<host>/api/v4`), authenticated with `PRIVATE-TOKEN`.
//!
//! The project is its URL-encoded path (`group%2Fsub%2Fproject`). As Flux, the commit's
//! statuses named by the key are listed first and nothing is posted when one already has the
//! same state and description.

use serde_json::json;

use super::{States, StatusUpdate, encode, get, json_body, parse_git_address, require_token};
use crate::{Delivery, HttpRequest, Notifier, NotifyError, Settings, Transport};

/// The service's states.
const STATES: States = States {
    info: "success",
    error: "failed",
    progressing: None,
};

/// `<host>/api/v4/projects/<encoded path>` of the Provider's address.
fn project_url(settings: &Settings) -> Result<String, NotifyError> {
    let address = parse_git_address(&settings.address)?;
    let path = &address.path;
    if path.split('/').count() < 2 || path.split('/').any(str::is_empty) {
        return Err(NotifyError::InvalidSettings(format!(
            "invalid project path '{path}' in the address, expected <group>[/<subgroup>...]/<project>"
        )));
    }
    Ok(format!("{}/api/v4/projects/{}", address.host, encode(path)))
}

/// The `gitlab` type.
pub(super) struct GitLab;

impl Notifier for GitLab {
    fn validate(&self, settings: &Settings) -> Result<(), NotifyError> {
        project_url(settings)?;
        require_token(settings, "gitlab")
    }

    fn send(&self, delivery: &Delivery<'_>, transport: &dyn Transport) -> Result<(), NotifyError> {
        let Some(update) = StatusUpdate::of(delivery, &STATES)? else {
            return Ok(());
        };
        let state = update.state;
        let project = project_url(delivery.settings)?;
        require_token(delivery.settings, "gitlab")?;
        let token = delivery.settings.token.as_str();

        let list = get(format!(
            "{project}/repository/commits/{}/statuses?name={}",
            update.sha,
            encode(update.key)
        ))
        .header("PRIVATE-TOKEN", token);
        let listed = json_body(&transport.send_ok(&list)?.body);
        let duplicate = listed.as_array().is_some_and(|statuses| {
            statuses.iter().any(|s| {
                let field = |k: &str| s.get(k).and_then(|v| v.as_str());
                field("sha") == Some(update.sha.as_str())
                    && field("status") == Some(state)
                    && field("description") == Some(update.description.as_str())
                    && field("name") == Some(update.key)
            })
        });
        if duplicate {
            return Ok(());
        }
        let body = json!({
            "state": state,
            "name": update.key,
            "description": update.description,
        });
        let post = HttpRequest::post_json(format!("{project}/statuses/{}", update.sha), &body)
            .header("PRIVATE-TOKEN", token);
        transport.send_ok(&post).map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::*;

    #[test]
    fn posts_a_status_on_the_encoded_project() {
        let s = settings(
            "gitlab",
            "https://gitlab.com/group/sub/project.git",
            "glpat",
        );
        let e = event(Severity::Info, "ReconciliationSucceeded");
        let rec = Recorder::default();
        GitLab.send(&delivery(&s, &e), &rec).expect("send");
        let sent = rec.sent();
        assert_eq!(sent.len(), 2);
        let project = "https://gitlab.com/api/v4/projects/group%2Fsub%2Fproject";
        assert_eq!(sent[0].method, Method::Get);
        assert_eq!(
            sent[0].url,
            format!(
                "{project}/repository/commits/{SHA}/statuses?name=kustomization%2Fapps%2F0c9c2e41"
            )
        );
        assert_eq!(sent[1].method, Method::Post);
        assert_eq!(sent[1].url, format!("{project}/statuses/{SHA}"));
        assert!(
            sent[1]
                .headers
                .contains(&("PRIVATE-TOKEN".into(), "glpat".into()))
        );
        assert_eq!(
            rec.json(1),
            json!({"state": "success", "name": KEY, "description": "reconciliation succeeded"})
        );
    }

    #[test]
    fn self_managed_host_and_failed_state() {
        let s = settings("gitlab", "ssh://git@gitlab.example.com:2222/team/app", "t");
        let e = event(Severity::Error, "BuildFailed");
        let rec = Recorder::default();
        GitLab.send(&delivery(&s, &e), &rec).expect("send");
        assert_eq!(
            rec.sent()[1].url,
            format!("https://gitlab.example.com:2222/api/v4/projects/team%2Fapp/statuses/{SHA}")
        );
        assert_eq!(rec.json(1)["state"], "failed");
        assert_eq!(rec.json(1)["description"], "build failed");
    }

    #[test]
    fn duplicate_status_is_not_posted_again() {
        let s = settings("gitlab", "https://gitlab.com/group/project", "t");
        let listed = || {
            ok(&json!([{"sha": SHA, "status": "success", "name": KEY,
                "description": "reconciliation succeeded"}]))
        };
        let e = event(Severity::Info, "ReconciliationSucceeded");
        assert_eq!(requests_with_lookup(&GitLab, &s, &e, listed()), 1);
        let e = event(Severity::Error, "HealthCheckFailed");
        assert_eq!(requests_with_lookup(&GitLab, &s, &e, listed()), 2);
    }

    #[test]
    fn validate_and_errors() {
        let cases = [
            ("https://gitlab.com/project", "t"),
            ("https://gitlab.com/group//project", "t"),
            ("https://gitlab.com/group/project", ""),
        ];
        assert_invalid(&GitLab, "gitlab", &cases);
        let s = settings("gitlab", "https://gitlab.com/group/project", "t");
        let e = event(Severity::Info, "ReconciliationSucceeded");
        let err = GitLab
            .send(&delivery(&s, &e), &Recorder::answering(vec![status(401)]))
            .expect_err("401");
        assert!(!err.is_retryable());
        let err = GitLab
            .send(&delivery(&s, &e), &Recorder::answering(vec![status(503)]))
            .expect_err("503");
        assert!(err.is_retryable());
    }

    #[test]
    fn over_http() {
        let e = event(Severity::Info, "ReconciliationSucceeded");
        let script = vec![ok(&json!([])), ok(&json!({"id": 1}))];
        let got = lookup_then_post_over_http(script, |base, transport| {
            let s = settings("gitlab", &format!("{base}/group/sub/project"), "glpat");
            GitLab.send(&delivery(&s, &e), transport)
        });
        let project = "/api/v4/projects/group%2Fsub%2Fproject";
        assert_eq!(got[1].target, format!("{project}/statuses/{SHA}"));
        assert_eq!(got[1].header("private-token"), Some("glpat"));
        assert_eq!(got[1].json["name"], KEY);
    }
}
