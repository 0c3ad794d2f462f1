//! `githubdispatch`: a `repository_dispatch` event on GitHub that a workflow can wait on
//! (`on: repository_dispatch: types: [Kustomization/apps.flux-system]`).
//!
//! As Flux: `POST /repos/{owner}/{repo}/dispatches` with `event_type` =
//! `<Kind>/<name>.<namespace>` and `client_payload` = the whole event; commit-status updates
//! are not dispatched (they are the commit-status types' events).

use serde_json::json;

use super::github::{repo, token, validate, with_headers};
use crate::{Delivery, HttpRequest, Notifier, NotifyError, Settings, Transport};

/// The `githubdispatch` type.
pub(super) struct GitHubDispatch;

impl Notifier for GitHubDispatch {
    fn validate(&self, settings: &Settings) -> Result<(), NotifyError> {
        validate(settings)
    }

    fn send(&self, delivery: &Delivery<'_>, transport: &dyn Transport) -> Result<(), NotifyError> {
        let event = delivery.event;
        if event.is_commit_status_update() {
            return Ok(());
        }
        let repo = repo(delivery.settings)?;
        let token = token(delivery.settings)?;
        let obj = &event.involved_object;
        let body = json!({
            "event_type": format!("{}/{}.{}", obj.kind, obj.name, obj.namespace),
            "client_payload": event,
        });
        let req = with_headers(
            HttpRequest::post_json(repo.url("/dispatches"), &body),
            token,
        );
        transport.send_ok(&req).map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::*;

    fn not_an_update() -> crate::Event {
        let mut e = event(Severity::Info, "ReconciliationSucceeded");
        e.metadata.remove("commit_status");
        e
    }

    #[test]
    fn dispatches_the_event() {
        let s = settings("githubdispatch", "https://github.com/org/repo", "tok");
        let e = not_an_update();
        let rec = Recorder::default();
        GitHubDispatch.send(&delivery(&s, &e), &rec).expect("send");
        let sent = rec.sent();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].method, Method::Post);
        assert_eq!(
            sent[0].url,
            "https://api.github.com/repos/org/repo/dispatches"
        );
        assert!(
            sent[0]
                .headers
                .contains(&("Authorization".into(), "Bearer tok".into()))
        );
        let body = rec.json(0);
        assert_eq!(body["event_type"], "Kustomization/apps.flux-system");
        assert_eq!(
            body["client_payload"],
            serde_json::to_value(&e).expect("event json")
        );
        assert_eq!(body["client_payload"]["reason"], "ReconciliationSucceeded");
        assert_eq!(body.as_object().map(|o| o.len()), Some(2));
    }

    #[test]
    fn commit_status_updates_are_not_dispatched() {
        let s = settings("githubdispatch", "https://github.com/org/repo", "tok");
        let e = event(Severity::Info, "ReconciliationSucceeded");
        let rec = Recorder::default();
        GitHubDispatch.send(&delivery(&s, &e), &rec).expect("send");
        assert!(rec.sent().is_empty());
    }

    #[test]
    fn validate_and_errors() {
        assert!(
            GitHubDispatch
                .validate(&settings("githubdispatch", "https://github.com/o", "t"))
                .is_err()
        );
        assert!(
            GitHubDispatch
                .validate(&settings("githubdispatch", "https://github.com/o/r", ""))
                .is_err()
        );
        let s = settings("githubdispatch", "https://github.com/org/repo", "tok");
        let e = not_an_update();
        let err = GitHubDispatch
            .send(&delivery(&s, &e), &Recorder::answering(vec![status(422)]))
            .expect_err("422");
        assert!(!err.is_retryable(), "{err}");
    }

    #[test]
    fn over_http() {
        let server = Server::start(vec![crate::HttpResponse {
            status: 204,
            body: Vec::new(),
        }]);
        let s = settings(
            "githubdispatch",
            &format!("{}/org/repo", server.base),
            "tok",
        );
        let e = not_an_update();
        GitHubDispatch
            .send(&delivery(&s, &e), &PlainHttp)
            .expect("send");
        let got = server.finish();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].method, "POST");
        assert_eq!(got[0].target, "/api/v3/repos/org/repo/dispatches");
        assert_eq!(got[0].header("authorization"), Some("Bearer tok"));
        assert_eq!(got[0].header("content-type"), Some("application/json"));
        assert_eq!(got[0].json["event_type"], "Kustomization/apps.flux-system");
    }
}
