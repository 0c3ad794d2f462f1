//! `github`: commit statuses through GitHub's REST API (github.com and GitHub Enterprise
//! Server), and the repository/auth helpers `githubdispatch` shares.
//!
//! Flux lists the commit's statuses first (`GET .../commits/{sha}/statuses?per_page=50`, newest
//! first) and posts nothing when the newest status with the same context already has the same
//! state and description.

use serde_json::json;

use super::{
    States, StatusUpdate, encode, get, json_body, newest_is_same, parse_git_address, text,
};
use crate::{Delivery, HttpRequest, Notifier, NotifyError, Settings, Transport};

/// The service's states.
const STATES: States = States {
    info: "success",
    error: "failure",
    progressing: None,
};

/// The Secret key that marks GitHub App credentials (Flux's `githubAppID`).
const APP_ID_KEY: &str = "githubAppID";

/// A GitHub repository and the API base that serves it.
pub(super) struct Repo {
    /// `https://api.github.com` or `<host>/api/v3` for GitHub Enterprise Server.
    pub api: String,
    /// The owner (user or organization).
    pub owner: String,
    /// The repository name.
    pub repo: String,
}

impl Repo {
    /// `<api>/repos/<owner>/<repo>` followed by `tail`.
    pub fn url(&self, tail: &str) -> String {
        format!(
            "{}/repos/{}/{}{tail}",
            self.api,
            encode(&self.owner),
            encode(&self.repo)
        )
    }
}

/// The repository of a `github`/`githubdispatch` address.
pub(super) fn repo(settings: &Settings) -> Result<Repo, NotifyError> {
    let address = parse_git_address(&settings.address)?;
    let parts = address.segments(2, "<owner>/<repo>")?;
    let api = if address.authority() == "github.com" {
        "https://api.github.com".to_string()
    } else {
        format!("{}/api/v3", address.host)
    };
    Ok(Repo {
        api,
        owner: parts[0].to_string(),
        repo: parts[1].to_string(),
    })
}

/// The token to send. GitHub App credentials need the JWT and installation-token exchange
/// that plumb's git source code holds; until the controller resolves them into `token`,
/// they are refused here rather than ignored.
pub(super) fn token(settings: &Settings) -> Result<&str, NotifyError> {
    if !settings.token.is_empty() {
        return Ok(&settings.token);
    }
    if uses_github_app(settings) {
        // The controller exchanges the app's key for an installation token before each
        // delivery and puts it in `token`; an empty one means that did not happen.
        return Err(NotifyError::InvalidSettings(
            "no GitHub App installation token was obtained for this delivery".into(),
        ));
    }
    Err(NotifyError::InvalidSettings(
        "github token or github app details must be specified (the Secret's 'token' key)".into(),
    ))
}

/// Whether the Secret names a GitHub App (`githubAppID`) and no token: Flux then
/// authenticates as the app's installation.
pub fn uses_github_app(settings: &Settings) -> bool {
    settings.token.is_empty() && settings.extra.contains_key(APP_ID_KEY)
}

/// Checks the address, and that there is a token or a GitHub App to get one from.
pub(super) fn validate(settings: &Settings) -> Result<(), NotifyError> {
    repo(settings)?;
    if uses_github_app(settings) {
        return Ok(());
    }
    token(settings).map(drop)
}

pub(super) fn with_headers(req: HttpRequest, token: &str) -> HttpRequest {
    req.header("Accept", "application/vnd.github+json")
        .header("X-GitHub-Api-Version", "2022-11-28")
        .header("User-Agent", "plumb")
        .header("Authorization", format!("Bearer {token}"))
}

/// The `github` type.
pub(super) struct GitHub;

impl Notifier for GitHub {
    fn validate(&self, settings: &Settings) -> Result<(), NotifyError> {
        validate(settings)
    }

    fn send(&self, delivery: &Delivery<'_>, transport: &dyn Transport) -> Result<(), NotifyError> {
        let Some(update) = StatusUpdate::of(delivery, &STATES)? else {
            return Ok(());
        };
        let state = update.state;
        let repo = repo(delivery.settings)?;
        let token = token(delivery.settings)?;

        let list = with_headers(
            get(repo.url(&format!("/commits/{}/statuses?per_page=50", update.sha))),
            token,
        );
        let listed = json_body(&transport.send_ok(&list)?.body);
        if is_duplicate(&listed, update.key, state, &update.description) {
            return Ok(());
        }
        let body = json!({
            "state": state,
            "description": update.description,
            "context": update.key,
        });
        let post = with_headers(
            HttpRequest::post_json(repo.url(&format!("/statuses/{}", update.sha)), &body),
            token,
        );
        transport.send_ok(&post).map(drop)
    }
}

/// Whether GitHub already shows this status (newest first, as the API lists them).
fn is_duplicate(listed: &serde_json::Value, context: &str, state: &str, description: &str) -> bool {
    let statuses = listed.as_array().into_iter().flatten().map(|s| {
        Some((
            text(s.get("context"))?,
            text(s.get("state"))?,
            text(s.get("description"))?,
        ))
    });
    newest_is_same(statuses, context, state, description)
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::*;

    #[test]
    fn posts_a_status_after_listing() {
        let s = settings("github", "https://github.com/org/repo", "tok");
        let e = event(Severity::Error, "HealthCheckFailed");
        let rec = Recorder::default();
        GitHub.send(&delivery(&s, &e), &rec).expect("send");
        let sent = rec.sent();
        assert_eq!(sent.len(), 2);
        assert_eq!(sent[0].method, Method::Get);
        assert_eq!(
            sent[0].url,
            format!("https://api.github.com/repos/org/repo/commits/{SHA}/statuses?per_page=50")
        );
        assert_eq!(sent[1].method, Method::Post);
        assert_eq!(
            sent[1].url,
            format!("https://api.github.com/repos/org/repo/statuses/{SHA}")
        );
        assert!(
            sent[1]
                .headers
                .contains(&("Authorization".into(), "Bearer tok".into()))
        );
        assert!(
            sent[1]
                .headers
                .contains(&("Content-Type".into(), "application/json".into()))
        );
        assert_eq!(
            rec.json(1),
            json!({
                "state": "failure",
                "description": "health check failed",
                "context": "kustomization/apps/0c9c2e41",
            })
        );
    }

    #[test]
    fn enterprise_hosts_use_api_v3() {
        let s = settings("github", "https://ghe.example.com/org/repo.git", "tok");
        let e = event(Severity::Info, "ReconciliationSucceeded");
        let rec = Recorder::default();
        GitHub.send(&delivery(&s, &e), &rec).expect("send");
        assert_eq!(
            rec.sent()[1].url,
            format!("https://ghe.example.com/api/v3/repos/org/repo/statuses/{SHA}")
        );
        assert_eq!(rec.json(1)["state"], "success");
    }

    #[test]
    fn duplicate_status_is_not_posted_again() {
        let s = settings("github", "https://github.com/org/repo", "tok");
        let e = event(Severity::Info, "ReconciliationSucceeded");
        let success = json!({"context": KEY, "state": "success",
            "description": "reconciliation succeeded"});
        let failure = json!({"context": KEY, "state": "failure",
            "description": "health check failed"});
        let other = json!({"context": "other", "state": "failure", "description": "x"});
        // Newest first: the same state and description under the key -> nothing posted.
        let same = ok(&json!([other, success, failure]));
        assert_eq!(requests_with_lookup(&GitHub, &s, &e, same), 1);
        // The newest under the key differs -> posted, even though an older one matches.
        let changed = ok(&json!([failure, success]));
        assert_eq!(requests_with_lookup(&GitHub, &s, &e, changed), 2);
        // Same state, other description -> posted.
        let reworded = json!({"context": KEY, "state": "success", "description": "other"});
        let reworded = ok(&json!([reworded]));
        assert_eq!(requests_with_lookup(&GitHub, &s, &e, reworded), 2);
    }

    #[test]
    fn errors_map_to_retryable_or_not() {
        let s = settings("github", "https://github.com/org/repo", "tok");
        let e = event(Severity::Info, "ReconciliationSucceeded");
        let rec = Recorder::answering(vec![status(401)]);
        let err = GitHub.send(&delivery(&s, &e), &rec).expect_err("401");
        assert!(!err.is_retryable(), "{err}");
        assert!(!err.to_string().contains("tok"), "{err}");
        let rec = Recorder::answering(vec![ok(&json!([])), status(500)]);
        let err = GitHub.send(&delivery(&s, &e), &rec).expect_err("500");
        assert!(err.is_retryable(), "{err}");
    }

    #[test]
    fn drops_and_skips_as_flux_does() {
        let s = settings("github", "https://github.com/org/repo", "tok");
        let rec = Recorder::default();
        // Not a commit-status update: dropped.
        let mut e = event(Severity::Info, "ReconciliationSucceeded");
        e.metadata.remove("commit_status");
        GitHub.send(&delivery(&s, &e), &rec).expect("dropped");
        // Progressing: skipped.
        let e = event(Severity::Info, "Progressing");
        GitHub.send(&delivery(&s, &e), &rec).expect("skipped");
        assert!(rec.sent().is_empty());
        // An update without a commit: an error.
        let mut e = event(Severity::Info, "ReconciliationSucceeded");
        e.metadata
            .insert("revision".into(), "6.1.0@sha256:abcd".into());
        let err = GitHub.send(&delivery(&s, &e), &rec).expect_err("no sha");
        assert!(matches!(err, NotifyError::Undeliverable(_)), "{err}");
        e.metadata.remove("revision");
        let err = GitHub
            .send(&delivery(&s, &e), &rec)
            .expect_err("no revision");
        assert!(err.to_string().contains("missing revision"), "{err}");
    }

    #[test]
    fn validate_checks_address_and_token() {
        assert!(
            GitHub
                .validate(&settings("github", "https://github.com/o/r", "t"))
                .is_ok()
        );
        let cases = [
            ("https://github.com/o", "t"),
            ("https://github.com/o/r/x", "t"),
            ("ftp://github.com/o/r", "t"),
            ("https://github.com/o/r", ""),
        ];
        assert_invalid(&GitHub, "github", &cases);
        // A GitHub App instead of a token: valid; sending without the token the controller
        // gets from it fails clearly.
        let mut app = settings("github", "https://github.com/o/r", "");
        app.extra.insert(APP_ID_KEY.into(), "123".into());
        assert!(uses_github_app(&app));
        GitHub.validate(&app).expect("app");
        let e = event(Severity::Info, "ReconciliationSucceeded");
        let err = GitHub
            .send(&delivery(&app, &e), &Recorder::default())
            .expect_err("no token");
        assert!(err.to_string().contains("GitHub App"), "{err}");
    }

    #[test]
    fn over_http_enterprise_path() {
        let e = event(Severity::Error, "HealthCheckFailed");
        let got = lookup_then_post_over_http(vec![ok(&json!([])), ok(&json!({}))], |base, t| {
            let s = settings("github", &format!("{base}/org/repo"), "tok");
            GitHub.send(&delivery(&s, &e), t)
        });
        assert_eq!(
            got[0].target,
            format!("/api/v3/repos/org/repo/commits/{SHA}/statuses?per_page=50")
        );
        assert_eq!(
            got[1].target,
            format!("/api/v3/repos/org/repo/statuses/{SHA}")
        );
        assert_eq!(got[1].header("authorization"), Some("Bearer tok"));
        assert_eq!(got[1].header("user-agent"), Some("plumb"));
        assert_eq!(got[1].json["state"], "failure");
        assert_eq!(got[1].json["context"], KEY);
    }
}
