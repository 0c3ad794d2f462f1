//! `azuredevops`: commit statuses on Azure DevOps Repos, address
//! `https://dev.azure.com/{org}/{project}/_git/{repo}`, authenticated with a personal access
//! token as Basic auth (empty username).
//!
//! As Flux: the status context is genre `fluxcd` (`fluxcd:<summary>` when the Alert sets a
//! summary) and name = the commit status key; the commit's statuses are listed first and
//! nothing is posted when the first one with the same context has the same state and
//! description.

use serde_json::json;

use super::{
    States, StatusUpdate, basic_auth, encode, get, json_body, newest_is_same, parse_git_address,
    require_token, text,
};
use crate::{Delivery, HttpRequest, Notifier, NotifyError, Settings, Transport};

/// The service's states.
const STATES: States = States {
    info: "succeeded",
    error: "error",
    progressing: None,
};

/// Flux's status genre.
const GENRE: &str = "fluxcd";
/// The REST API version of the requests.
const API_VERSION: &str = "6.0";

/// `<host>/<org>/<project>/_apis/git/repositories/<repo>` of the Provider's address.
fn repo_url(settings: &Settings) -> Result<String, NotifyError> {
    let address = parse_git_address(&settings.address)?;
    let shape = "<org>/<project>/_git/<repo>";
    let parts = address.segments(4, shape)?;
    if parts[2] != "_git" {
        return Err(NotifyError::InvalidSettings(format!(
            "invalid repository id '{}' in the address, expected {shape}",
            address.path
        )));
    }
    Ok(format!(
        "{}/{}/{}/_apis/git/repositories/{}",
        address.host,
        encode(parts[0]),
        encode(parts[1]),
        encode(parts[3])
    ))
}

/// The `azuredevops` type.
pub(super) struct AzureDevOps;

impl Notifier for AzureDevOps {
    fn validate(&self, settings: &Settings) -> Result<(), NotifyError> {
        repo_url(settings)?;
        require_token(settings, "azure devops")
    }

    fn send(&self, delivery: &Delivery<'_>, transport: &dyn Transport) -> Result<(), NotifyError> {
        let Some(update) = StatusUpdate::of(delivery, &STATES)? else {
            return Ok(());
        };
        let state = update.state;
        let repo = repo_url(delivery.settings)?;
        require_token(delivery.settings, "azure devops")?;
        let auth = basic_auth("", &delivery.settings.token);
        let genre = match delivery.event.metadata.get("summary") {
            Some(summary) => format!("{GENRE}:{summary}"),
            None => GENRE.to_string(),
        };
        let url = format!(
            "{repo}/commits/{}/statuses?api-version={API_VERSION}",
            update.sha
        );

        let list = get(url.clone()).header("Authorization", auth.as_str());
        let listed = json_body(&transport.send_ok(&list)?.body);
        if is_duplicate(&listed, (&genre, update.key), state, &update.description) {
            return Ok(());
        }
        let body = json!({
            "state": state,
            "description": update.description,
            "context": {"genre": genre, "name": update.key},
        });
        let post = HttpRequest::post_json(url, &body).header("Authorization", auth);
        transport.send_ok(&post).map(drop)
    }
}

/// Whether Azure DevOps already shows this status under the same genre and name.
fn is_duplicate(
    listed: &serde_json::Value,
    context: (&str, &str),
    state: &str,
    description: &str,
) -> bool {
    let values = listed.get("value").and_then(|v| v.as_array());
    let statuses = values.into_iter().flatten().map(|s| {
        let c = s.get("context");
        let genre = text(c.and_then(|c| c.get("genre")))?;
        let name = text(c.and_then(|c| c.get("name")))?;
        Some((
            (genre, name),
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

    const ADDRESS: &str = "https://dev.azure.com/org/proj/_git/repo";

    #[test]
    fn posts_a_status() {
        let s = settings("azuredevops", ADDRESS, "pat");
        let e = event(Severity::Info, "ReconciliationSucceeded");
        let rec = Recorder::default();
        AzureDevOps.send(&delivery(&s, &e), &rec).expect("send");
        let sent = rec.sent();
        let url = format!(
            "https://dev.azure.com/org/proj/_apis/git/repositories/repo/commits/{SHA}/statuses?api-version=6.0"
        );
        assert_eq!(sent[0].method, Method::Get);
        assert_eq!(sent[0].url, url);
        assert_eq!(sent[1].method, Method::Post);
        assert_eq!(sent[1].url, url);
        // Basic base64(":pat").
        assert!(
            sent[1]
                .headers
                .contains(&("Authorization".into(), "Basic OnBhdA==".into()))
        );
        assert_eq!(
            rec.json(1),
            json!({"state": "succeeded", "description": "reconciliation succeeded",
                "context": {"genre": "fluxcd", "name": KEY}})
        );
    }

    #[test]
    fn summary_goes_into_the_genre() {
        let s = settings("azuredevops", ADDRESS, "pat");
        let mut e = event(Severity::Error, "HealthCheckFailed");
        e.metadata.insert("summary".into(), "prod".into());
        let rec = Recorder::default();
        AzureDevOps.send(&delivery(&s, &e), &rec).expect("send");
        assert_eq!(rec.json(1)["context"]["genre"], "fluxcd:prod");
        assert_eq!(rec.json(1)["state"], "error");
    }

    #[test]
    fn duplicate_status_is_not_posted_again() {
        let s = settings("azuredevops", ADDRESS, "pat");
        let e = event(Severity::Info, "ReconciliationSucceeded");
        let listed = |genre: &str| {
            ok(&json!({"count": 1, "value": [{"state": "succeeded",
                "description": "reconciliation succeeded",
                "context": {"genre": genre, "name": KEY}}]}))
        };
        assert_eq!(
            requests_with_lookup(&AzureDevOps, &s, &e, listed("fluxcd")),
            1
        );
        assert_eq!(
            requests_with_lookup(&AzureDevOps, &s, &e, listed("other")),
            2
        );
        let rec = Recorder::answering(vec![status(500)]);
        assert!(
            AzureDevOps
                .send(&delivery(&s, &e), &rec)
                .expect_err("500")
                .is_retryable()
        );
    }

    #[test]
    fn validate_checks_the_address() {
        assert!(
            AzureDevOps
                .validate(&settings("azuredevops", ADDRESS, "pat"))
                .is_ok()
        );
        let cases = [
            ("https://dev.azure.com/org/proj/repo", "pat"),
            ("https://dev.azure.com/org/proj/git/repo", "pat"),
            (ADDRESS, ""),
        ];
        assert_invalid(&AzureDevOps, "azuredevops", &cases);
    }

    #[test]
    fn over_http() {
        let e = event(Severity::Info, "ReconciliationSucceeded");
        let script = vec![ok(&json!({"count": 0, "value": []})), ok(&json!({}))];
        let got = lookup_then_post_over_http(script, |base, transport| {
            let s = settings("azuredevops", &format!("{base}/org/proj/_git/repo"), "pat");
            AzureDevOps.send(&delivery(&s, &e), transport)
        });
        let path = "/org/proj/_apis/git/repositories/repo/commits";
        let want = format!("{path}/{SHA}/statuses?api-version=6.0");
        assert_eq!(got[1].target, want);
        assert_eq!(got[1].header("authorization"), Some("Basic OnBhdA=="));
        assert_eq!(got[1].json["context"]["name"], KEY);
    }
}
