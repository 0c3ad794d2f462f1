//! `bitbucket`: build statuses on Bitbucket Cloud (`https://api.bitbucket.org/2.0`, or the
//! process's `BITBUCKET_API_BASE_URL` as Flux's Bitbucket client reads it; the address names
//! the workspace and repository, its host is not used, as in Flux).
//!
//! The Secret's `token` is `<username>:<app password or API token>` (Basic auth); with the
//! username `x-token-auth` or `x-bitbucket-api-token-auth` the second part is sent as a Bearer
//! token. The status key is the SHA-1 hex of the commit status key (Bitbucket allows 40
//! characters); the existing status under that key is read first and nothing is posted when it
//! has the same state and description.

use serde_json::json;

use super::{States, StatusUpdate, basic_auth, encode, get, lookup, parse_git_address, sha1_hex};
use crate::{Delivery, HttpRequest, Notifier, NotifyError, Settings, Transport};

/// The service's states.
const STATES: States = States {
    info: "SUCCESSFUL",
    error: "FAILED",
    progressing: None,
};

/// Bitbucket Cloud's API.
const API: &str = "https://api.bitbucket.org/2.0";

/// The environment variable that replaces [`API`] (Flux's go-bitbucket client reads it).
const API_ENV: &str = "BITBUCKET_API_BASE_URL";

/// The API root: `BITBUCKET_API_BASE_URL` when set, else Bitbucket Cloud's.
fn api() -> String {
    std::env::var(API_ENV)
        .ok()
        .map(|v| v.trim().trim_end_matches('/').to_string())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| API.to_string())
}

/// Usernames whose password part is an OAuth/API bearer token.
const BEARER_USERS: [&str; 2] = ["x-token-auth", "x-bitbucket-api-token-auth"];

/// The repository path and the `Authorization` header of the settings.
fn target(settings: &Settings) -> Result<(String, String), NotifyError> {
    if settings.token.is_empty() {
        return Err(NotifyError::InvalidSettings(
            "bitbucket token cannot be empty (the Secret's 'token' key)".into(),
        ));
    }
    let address = parse_git_address(&settings.address)?;
    let parts = address.segments(2, "<workspace>/<repo>")?;
    let creds: Vec<&str> = settings.token.split(':').collect();
    let [user, password] = creds[..] else {
        return Err(NotifyError::InvalidSettings(
            "invalid bitbucket token format, expected to be <user>:<password>".into(),
        ));
    };
    let auth = if BEARER_USERS.contains(&user) {
        format!("Bearer {password}")
    } else {
        basic_auth(user, password)
    };
    let repo = format!("repositories/{}/{}", encode(parts[0]), encode(parts[1]));
    Ok((repo, auth))
}

/// The `bitbucket` type.
pub(super) struct Bitbucket;

impl Bitbucket {
    /// Sends to the API at `api` (Bitbucket Cloud's, or a test server's).
    fn send_to(
        api: &str,
        delivery: &Delivery<'_>,
        transport: &dyn Transport,
    ) -> Result<(), NotifyError> {
        let Some(update) = StatusUpdate::of(delivery, &STATES)? else {
            return Ok(());
        };
        let state = update.state;
        let (repo, auth) = target(delivery.settings)?;
        let key = sha1_hex(update.key);
        let statuses = format!("{api}/{repo}/commit/{}/statuses/build", update.sha);

        let existing = get(format!("{statuses}/{key}")).header("Authorization", auth.as_str());
        if let Some(existing) = lookup(transport, &existing)? {
            let field = |k: &str| existing.get(k).and_then(|v| v.as_str());
            if field("state") == Some(state)
                && field("description") == Some(update.description.as_str())
            {
                return Ok(());
            }
        }
        let body = json!({
            "state": state,
            "key": key,
            "name": update.name,
            "description": update.description,
            "url": "https://bitbucket.org",
        });
        let post = HttpRequest::post_json(statuses, &body).header("Authorization", auth);
        transport.send_ok(&post).map(drop)
    }
}

impl Notifier for Bitbucket {
    fn validate(&self, settings: &Settings) -> Result<(), NotifyError> {
        target(settings).map(drop)
    }

    fn send(&self, delivery: &Delivery<'_>, transport: &dyn Transport) -> Result<(), NotifyError> {
        Bitbucket::send_to(&api(), delivery, transport)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::*;

    #[test]
    fn posts_a_build_status() {
        let s = settings(
            "bitbucket",
            "https://bitbucket.org/team/repo.git",
            "user:app-pw",
        );
        let e = event(Severity::Info, "ReconciliationSucceeded");
        let rec = Recorder::answering(vec![status(404)]);
        Bitbucket.send(&delivery(&s, &e), &rec).expect("send");
        let sent = rec.sent();
        assert_eq!(sent.len(), 2);
        let key = sha1_hex(KEY);
        assert_eq!(key.len(), 40);
        let base = format!("{API}/repositories/team/repo/commit/{SHA}/statuses/build");
        assert_eq!(sent[0].method, Method::Get);
        assert_eq!(sent[0].url, format!("{base}/{key}"));
        assert_eq!(sent[1].method, Method::Post);
        assert_eq!(sent[1].url, base);
        assert!(
            sent[1]
                .headers
                .contains(&("Authorization".into(), basic_auth("user", "app-pw")))
        );
        assert_eq!(basic_auth("user", "app-pw"), "Basic dXNlcjphcHAtcHc=");
        assert_eq!(
            rec.json(1),
            json!({"state": "SUCCESSFUL", "key": key, "name": "kustomization/apps",
                "description": "reconciliation succeeded", "url": "https://bitbucket.org"})
        );
    }

    #[test]
    fn token_users_send_a_bearer_token() {
        let s = settings(
            "bitbucket",
            "https://bitbucket.org/team/repo",
            "x-token-auth:abc",
        );
        let e = event(Severity::Error, "HealthCheckFailed");
        let rec = Recorder::default();
        Bitbucket.send(&delivery(&s, &e), &rec).expect("send");
        assert!(
            rec.sent()[1]
                .headers
                .contains(&("Authorization".into(), "Bearer abc".into()))
        );
        assert_eq!(rec.json(1)["state"], "FAILED");
    }

    #[test]
    fn duplicate_status_is_not_posted_again() {
        let s = settings("bitbucket", "https://bitbucket.org/team/repo", "u:p");
        let e = event(Severity::Info, "ReconciliationSucceeded");
        let same = ok(&json!({"state": "SUCCESSFUL", "description": "reconciliation succeeded"}));
        assert_eq!(requests_with_lookup(&Bitbucket, &s, &e, same), 1);
        let changed = ok(&json!({"state": "FAILED", "description": "health check failed"}));
        assert_eq!(requests_with_lookup(&Bitbucket, &s, &e, changed), 2);
        let rec = Recorder::answering(vec![status(500)]);
        let err = Bitbucket.send(&delivery(&s, &e), &rec).expect_err("500");
        assert!(err.is_retryable());
        assert!(!err.to_string().contains(":p"), "{err}");
    }

    #[test]
    fn validate_checks_token_format() {
        let valid = settings("bitbucket", "https://bitbucket.org/team/repo", "u:p");
        assert!(Bitbucket.validate(&valid).is_ok());
        let cases = [
            ("https://bitbucket.org/team/repo", "no-colon"),
            ("https://bitbucket.org/team/repo", "a:b:c"),
            ("https://bitbucket.org/team/repo", ""),
            ("https://bitbucket.org/team", "u:p"),
        ];
        assert_invalid(&Bitbucket, "bitbucket", &cases);
    }

    #[test]
    fn over_http() {
        let s = settings("bitbucket", "https://bitbucket.org/team/repo", "u:p");
        let e = event(Severity::Info, "ReconciliationSucceeded");
        let got = lookup_then_post_over_http(vec![status(404), ok(&json!({}))], |base, t| {
            Bitbucket::send_to(base, &delivery(&s, &e), t)
        });
        let statuses = format!("/repositories/team/repo/commit/{SHA}/statuses/build");
        assert_eq!(got[0].target, format!("{statuses}/{}", sha1_hex(KEY)));
        assert_eq!(got[1].target, statuses);
        assert_eq!(got[1].header("authorization"), Some("Basic dTpw"));
        assert_eq!(got[1].json["key"], sha1_hex(KEY));
    }
}
