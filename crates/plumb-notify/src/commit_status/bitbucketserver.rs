//! `bitbucketserver`: build statuses on Bitbucket Server / Data Center
//! (`<host><context>/rest/api/latest/projects/{project}/repos/{repo}/commits/{sha}/builds`).
//!
//! The address is the repository's HTTP(S) clone URL (`https://host[/context]/scm/PROJ/repo.git`);
//! what comes before the last `/scm/` is the server's context path. Auth is the Secret's
//! `token` as a Bearer token, else its `username` and `password` as Basic auth. As Flux, the
//! key is the SHA-1 hex of the commit status key, the name is `<kind>/<name> [<description>]`,
//! and the status under the key is read first (`?key=`) so an identical one is not posted again.

use serde_json::json;

use super::{States, StatusUpdate, basic_auth, encode, get, lookup, parse_git_address, sha1_hex};
use crate::{Delivery, HttpRequest, Notifier, NotifyError, Settings, Transport};

/// The service's states.
const STATES: States = States {
    info: "SUCCESSFUL",
    error: "FAILED",
    progressing: None,
};

/// The server's repository: its API prefix and the address shown as the status URL.
struct Repo {
    /// `<host><context>/rest/api/latest/projects/<project>/repos/<repo>`.
    api: String,
    /// The Provider's address without credentials.
    url: String,
}

/// The repository of the Provider's address.
fn repo(settings: &Settings) -> Result<Repo, NotifyError> {
    let bad =
        |why: String| NotifyError::InvalidSettings(format!("could not parse git address: {why}"));
    let scheme = settings.address.split(':').next().unwrap_or_default();
    if scheme != "http" && scheme != "https" {
        return Err(bad(format!(
            "unsupported scheme '{scheme}', must be http or https"
        )));
    }
    let address = parse_git_address(&settings.address)?;
    let path = format!("/{}", address.path);
    let Some(at) = path.rfind("/scm/") else {
        return Err(bad(
            "the address is not an http(s) clone URL (no /scm/)".into()
        ));
    };
    let (context, id) = (&path[..at], &path[at + "/scm/".len()..]);
    let parts: Vec<&str> = id.split('/').collect();
    let [project, slug] = parts[..] else {
        return Err(bad(format!(
            "invalid repository id '{id}', expected <project>/<repo>"
        )));
    };
    if project.is_empty() || slug.is_empty() {
        return Err(bad(format!(
            "invalid repository id '{id}', expected <project>/<repo>"
        )));
    }
    Ok(Repo {
        api: format!(
            "{}{context}/rest/api/latest/projects/{}/repos/{}",
            address.host,
            encode(project),
            encode(slug)
        ),
        url: without_userinfo(&settings.address),
    })
}

/// `address` without `user[:password]@`.
fn without_userinfo(address: &str) -> String {
    match address.split_once("://") {
        Some((scheme, rest)) => {
            let end = rest.find('/').unwrap_or(rest.len());
            let host = rest[..end].rsplit('@').next().unwrap_or_default();
            format!("{scheme}://{host}{}", &rest[end..])
        }
        None => address.to_string(),
    }
}

/// The `Authorization` header: Bearer token, else Basic username/password.
fn auth(settings: &Settings) -> Result<String, NotifyError> {
    if !settings.token.is_empty() {
        return Ok(format!("Bearer {}", settings.token));
    }
    if settings.username.is_empty() || settings.password.is_empty() {
        return Err(NotifyError::InvalidSettings(
            "invalid credentials, expected to be one of username/password or API Token".into(),
        ));
    }
    Ok(basic_auth(&settings.username, &settings.password))
}

/// `req` with Bitbucket Server's headers.
fn with_headers(req: HttpRequest, auth: &str) -> HttpRequest {
    req.header("Authorization", auth)
        .header("x-atlassian-token", "no-check")
        .header("x-requested-with", "XMLHttpRequest")
}

/// The `bitbucketserver` type.
pub(super) struct BitbucketServer;

impl Notifier for BitbucketServer {
    fn validate(&self, settings: &Settings) -> Result<(), NotifyError> {
        repo(settings)?;
        auth(settings).map(drop)
    }

    fn send(&self, delivery: &Delivery<'_>, transport: &dyn Transport) -> Result<(), NotifyError> {
        let Some(update) = StatusUpdate::of(delivery, &STATES)? else {
            return Ok(());
        };
        let state = update.state;
        let repo = repo(delivery.settings)?;
        let auth = auth(delivery.settings)?;
        let key = sha1_hex(update.key);
        // Bitbucket Server shows the name in the browser, so it carries the description.
        let name = format!("{} [{}]", update.name, update.description);
        let builds = format!("{}/commits/{}/builds", repo.api, update.sha);

        let existing = get(format!("{builds}?key={key}"));
        if let Some(existing) = lookup(transport, &with_headers(existing, &auth))? {
            let field = |k: &str| existing.get(k).and_then(|v| v.as_str());
            if field("key") == Some(key.as_str())
                && field("state") == Some(state)
                && field("description") == Some(update.description.as_str())
                && field("name") == Some(name.as_str())
            {
                return Ok(());
            }
        }
        let body = json!({
            "key": key,
            "state": state,
            "url": repo.url,
            "description": update.description,
            "name": name,
        });
        let post = with_headers(HttpRequest::post_json(builds, &body), &auth);
        transport.send_ok(&post).map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::*;

    const ADDRESS: &str = "https://bb.example.com/context/scm/PROJ/repo.git";

    #[test]
    fn posts_a_build_status() {
        let s = settings("bitbucketserver", ADDRESS, "bbtoken");
        let e = event(Severity::Info, "ReconciliationSucceeded");
        let rec = Recorder::answering(vec![status(404)]);
        BitbucketServer.send(&delivery(&s, &e), &rec).expect("send");
        let sent = rec.sent();
        assert_eq!(sent.len(), 2);
        let builds = format!(
            "https://bb.example.com/context/rest/api/latest/projects/PROJ/repos/repo/commits/{SHA}/builds"
        );
        assert_eq!(sent[0].method, Method::Get);
        assert!(
            sent[0].url.starts_with(&format!("{builds}?key=")),
            "{}",
            sent[0].url
        );
        assert_eq!(sent[1].method, Method::Post);
        assert_eq!(sent[1].url, builds);
        for h in [
            ("Authorization", "Bearer bbtoken"),
            ("x-atlassian-token", "no-check"),
            ("x-requested-with", "XMLHttpRequest"),
        ] {
            assert!(sent[1].headers.contains(&(h.0.into(), h.1.into())), "{h:?}");
        }
        let body = rec.json(1);
        assert_eq!(body["state"], "SUCCESSFUL");
        assert_eq!(
            body["name"],
            "kustomization/apps [reconciliation succeeded]"
        );
        assert_eq!(body["description"], "reconciliation succeeded");
        assert_eq!(body["url"], ADDRESS);
        assert_eq!(body["key"].as_str().map(str::len), Some(40));
    }

    #[test]
    fn basic_auth_without_token_and_no_credentials_in_url() {
        let mut s = settings(
            "bitbucketserver",
            "https://me:pw@bb.example.com/scm/PROJ/repo.git",
            "",
        );
        s.username = "me".into();
        s.password = "pw".into();
        let e = event(Severity::Error, "HealthCheckFailed");
        let rec = Recorder::default();
        BitbucketServer.send(&delivery(&s, &e), &rec).expect("send");
        let sent = rec.sent();
        assert!(
            sent[1]
                .headers
                .contains(&("Authorization".into(), basic_auth("me", "pw")))
        );
        assert!(
            sent[1]
                .url
                .starts_with("https://bb.example.com/rest/api/latest/projects/PROJ/")
        );
        assert_eq!(
            rec.json(1)["url"],
            "https://bb.example.com/scm/PROJ/repo.git"
        );
        assert_eq!(rec.json(1)["state"], "FAILED");
    }

    #[test]
    fn duplicate_status_is_not_posted_again() {
        let s = settings("bitbucketserver", ADDRESS, "t");
        let e = event(Severity::Info, "ReconciliationSucceeded");
        let rec = Recorder::answering(vec![status(404)]);
        BitbucketServer
            .send(&delivery(&s, &e), &rec)
            .expect("first");
        let posted = rec.json(1);
        assert_eq!(
            requests_with_lookup(&BitbucketServer, &s, &e, ok(&posted)),
            1
        );
        let e = event(Severity::Error, "HealthCheckFailed");
        assert_eq!(
            requests_with_lookup(&BitbucketServer, &s, &e, ok(&posted)),
            2
        );
        let rec = Recorder::answering(vec![status(401)]);
        let err = BitbucketServer
            .send(&delivery(&s, &e), &rec)
            .expect_err("401");
        assert!(!err.is_retryable());
    }

    #[test]
    fn validate_checks_address_and_credentials() {
        let valid = settings("bitbucketserver", ADDRESS, "t");
        assert!(BitbucketServer.validate(&valid).is_ok());
        let cases = [
            ("ssh://git@bb.example.com/scm/PROJ/repo.git", "t"),
            ("https://bb.example.com/PROJ/repo.git", "t"),
            ("https://bb.example.com/scm/PROJ", "t"),
            ("https://bb.example.com/scm/PROJ/repo/x", "t"),
            (ADDRESS, ""),
        ];
        assert_invalid(&BitbucketServer, "bitbucketserver", &cases);
    }

    #[test]
    fn over_http() {
        let e = event(Severity::Info, "ReconciliationSucceeded");
        let script = vec![status(404), ok(&serde_json::json!({}))];
        let got = lookup_then_post_over_http(script, |base, transport| {
            let s = settings(
                "bitbucketserver",
                &format!("{base}/scm/PROJ/repo.git"),
                "bbt",
            );
            BitbucketServer.send(&delivery(&s, &e), transport)
        });
        let builds = format!("/rest/api/latest/projects/PROJ/repos/repo/commits/{SHA}/builds");
        assert!(got[0].target.starts_with(&format!("{builds}?key=")));
        assert_eq!(got[1].target, builds);
        assert_eq!(got[1].header("authorization"), Some("Bearer bbt"));
        assert_eq!(got[1].header("x-atlassian-token"), Some("no-check"));
        assert_eq!(got[1].json["state"], "SUCCESSFUL");
    }
}
