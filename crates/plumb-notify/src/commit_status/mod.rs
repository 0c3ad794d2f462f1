//! The git-hosting types: commit statuses (`github`, `gitlab`, `gitea`, `bitbucket`,
//! `bitbucketserver`, `azuredevops`) and GitHub's repository dispatch (`githubdispatch`).
//!
//! A commit-status type posts one status per object on the commit the event's revision names,
//! keyed by the commit status key the controller resolves ([`commit_status_key`] or the
//! Provider's `commitStatusExpr`), so the forge shows one line per Kustomization/HelmRelease
//! that each reconcile updates. As in Flux:
//! - events that are neither commit-status updates (metadata `commit_status: update`) nor
//!   carry Flux's `commit` metadata are dropped without error (Flux's dispatcher drops them
//!   before the notifier);
//! - `Progressing` events are skipped (Gitea posts them as `pending`);
//! - the commit is the one `originRevision` names, else `revision`; an event without one, or
//!   whose revision names no commit, is an error;
//! - the status is not posted again when the forge already shows the same state and
//!   description under the key (one lookup request first).
//!
//! The description is the event's reason split into lowercase words
//! (`ReconciliationSucceeded` -> `reconciliation succeeded`), Flux's `formatNameAndDescription`.

mod address;
mod azuredevops;
mod bitbucket;
mod bitbucketserver;
mod dispatch;
mod gitea;
mod github;
mod gitlab;
#[cfg(test)]
mod testkit;

use crate::{Delivery, Event, HttpRequest, Notifier, NotifyError, Settings, Severity, Transport};

use crate::text::split_camel_case;
pub(crate) use crate::text::{basic_auth, encode};
pub(crate) use address::parse_git_address;
pub use github::uses_github_app;

/// The types that authenticate as a GitHub App when the Secret holds `githubAppID`,
/// `githubAppInstallationID` and `githubAppPrivateKey` instead of a `token`.
pub const GITHUB_APP_TYPES: &[&str] = &["github", "githubdispatch"];

/// The notifier of `provider_type` if it belongs to this family.
pub fn notifier(provider_type: &str) -> Option<&'static dyn Notifier> {
    Some(match provider_type {
        "github" => &github::GitHub,
        "githubdispatch" => &dispatch::GitHubDispatch,
        "gitlab" => &gitlab::GitLab,
        "gitea" => &gitea::Gitea,
        "bitbucket" => &bitbucket::Bitbucket,
        "bitbucketserver" => &bitbucketserver::BitbucketServer,
        "azuredevops" => &azuredevops::AzureDevOps,
        _ => return None,
    })
}

/// Flux's default commit status key (`generateCommitStatusID`): `<kind>/<name>/<uid>` in
/// lowercase, where `<uid>` is the Provider UID's first dash-separated group (8 hex digits).
/// Stable per Provider and object, so each reconcile updates the same status line.
pub fn commit_status_key(provider_uid: &str, kind: &str, name: &str) -> String {
    let uid = provider_uid.split('-').next().unwrap_or_default();
    format!("{kind}/{name}/{uid}").to_lowercase()
}

/// Flux's `Progressing` reason: such events are not outcomes, most types skip them.
const PROGRESSING: &str = "Progressing";

/// A service's commit states: for `info` and `error` events, and for `Progressing` events
/// (`None`: they are not posted).
pub(crate) struct States {
    /// For `info` events.
    pub info: &'static str,
    /// For `error` events.
    pub error: &'static str,
    /// For `Progressing` events, if the service gets them.
    pub progressing: Option<&'static str>,
}

/// One commit status to post, resolved from a delivery.
pub(crate) struct StatusUpdate<'a> {
    /// The commit SHA.
    pub sha: String,
    /// The commit status key.
    pub key: &'a str,
    /// `<kind>/<name>` in lowercase (the display name of Bitbucket's statuses).
    pub name: String,
    /// The reason split into lowercase words.
    pub description: String,
    /// The service's state.
    pub state: &'static str,
}

impl<'a> StatusUpdate<'a> {
    /// The status of `delivery`, `None` when Flux does not post the event.
    pub fn of(delivery: &'a Delivery<'_>, states: &States) -> Result<Option<Self>, NotifyError> {
        let event: &'a Event = delivery.event;
        if !event.is_commit_status_update() && !has_commit_key(event) {
            return Ok(None);
        }
        let state = if event.reason == PROGRESSING {
            match states.progressing {
                Some(state) => state,
                None => return Ok(None),
            }
        } else {
            match event.severity {
                Severity::Info => states.info,
                Severity::Error => states.error,
                Severity::Trace => {
                    return Err(NotifyError::Undeliverable(
                        "a trace event has no commit status state".into(),
                    ));
                }
            }
        };
        let sha = commit_of(event)?;
        let Some(key) = delivery
            .commit_status_key
            .as_deref()
            .filter(|k| !k.is_empty())
        else {
            return Err(NotifyError::Undeliverable(
                "the commit status key is empty".into(),
            ));
        };
        let obj = &event.involved_object;
        Ok(Some(StatusUpdate {
            sha,
            key,
            name: format!("{}/{}", obj.kind, obj.name).to_lowercase(),
            description: split_camel_case(&event.reason).join(" ").to_lowercase(),
            state,
        }))
    }
}

/// A GET of `url` with no headers yet.
pub(crate) fn get(url: String) -> HttpRequest {
    HttpRequest {
        method: crate::Method::Get,
        url,
        headers: Vec::new(),
        body: Vec::new(),
    }
}

/// Whether the event carries Flux's `commit` metadata (`event.toolkit.fluxcd.io/commit`
/// on the object): Flux hands such events to commit-status types as well.
fn has_commit_key(event: &Event) -> bool {
    event.metadata.get("commit").is_some_and(|c| !c.is_empty())
}

/// The commit the event is about: its `originRevision` (the git commit an OCI artifact was
/// built from) if set, else its `revision`, as Flux's `Event.GetRevision`.
fn commit_of(event: &Event) -> Result<String, NotifyError> {
    let revision = event
        .metadata
        .get("originRevision")
        .or(event.metadata.get("revision"));
    let Some(revision) = revision else {
        return Err(NotifyError::Undeliverable(
            "missing revision metadata".into(),
        ));
    };
    let probe = Event {
        metadata: [("revision".to_string(), revision.clone())].into(),
        ..Event::default()
    };
    match probe.commit_sha() {
        Some(sha) => Ok(sha.to_string()),
        None => Err(NotifyError::Undeliverable(format!(
            "revision '{revision}' names no git commit"
        ))),
    }
}

/// Fails when the Secret holds no token.
pub(crate) fn require_token(settings: &Settings, what: &str) -> Result<(), NotifyError> {
    if settings.token.is_empty() {
        return Err(NotifyError::InvalidSettings(format!(
            "{what} token cannot be empty (the Secret's 'token' key)"
        )));
    }
    Ok(())
}

/// The JSON body of a response, `Null` when it is not JSON (a lookup then finds nothing and
/// the status is posted, the safe side).
pub(crate) fn json_body(body: &[u8]) -> serde_json::Value {
    serde_json::from_slice(body).unwrap_or_default()
}

/// The SHA-1 hex of a commit status key: Bitbucket's status keys are at most 40 characters.
pub(crate) fn sha1_hex(key: &str) -> String {
    use sha1::Digest as _;
    sha1::Sha1::digest(key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The string at `v`, if any.
pub(crate) fn text(v: Option<&serde_json::Value>) -> Option<&str> {
    v.and_then(|v| v.as_str())
}

/// Flux's duplicate check of GitHub, Gitea and Azure DevOps: whether the first listed status
/// (newest first) with `context` has `state` and `description`. Entries lacking a field
/// (`None`) are passed over.
pub(crate) fn newest_is_same<'v, C: PartialEq>(
    listed: impl IntoIterator<Item = Option<(C, &'v str, &'v str)>>,
    context: C,
    state: &str,
    description: &str,
) -> bool {
    listed
        .into_iter()
        .flatten()
        .find(|(c, _, _)| *c == context)
        .is_some_and(|(_, s, d)| s == state && d == description)
}

/// Sends a lookup: the JSON answer, or `None` when the service answers 404 (nothing there
/// yet); other failures are errors.
pub(crate) fn lookup(
    transport: &dyn Transport,
    req: &HttpRequest,
) -> Result<Option<serde_json::Value>, NotifyError> {
    match transport.send_ok(req) {
        Ok(resp) => Ok(Some(json_body(&resp.body))),
        Err(NotifyError::Status { status: 404, .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_status_key_is_fluxs() {
        assert_eq!(
            commit_status_key(
                "0c9c2e41-d2f9-4f9b-9c41-bb6a3f1f0a9e",
                "Kustomization",
                "Apps"
            ),
            "kustomization/apps/0c9c2e41"
        );
        assert_eq!(commit_status_key("", "HelmRelease", "x"), "helmrelease/x/");
    }

    const GITHUB: States = States {
        info: "success",
        error: "failure",
        progressing: None,
    };

    #[test]
    fn which_events_become_statuses() {
        use testkit::{KEY, SHA, delivery, event, settings};
        let s = settings("github", "https://github.com/o/r", "t");
        // Owned fields: (sha, key, state, name, description).
        let update = |e: &Event| {
            let d = delivery(&s, e);
            StatusUpdate::of(&d, &GITHUB)
                .map(|u| u.map(|u| (u.sha, u.key.to_string(), u.state, u.name, u.description)))
        };

        let e = event(Severity::Error, "HealthCheckFailed");
        let u = update(&e).expect("ok").expect("posted");
        let want = (
            SHA,
            KEY,
            "failure",
            "kustomization/apps",
            "health check failed",
        );
        assert_eq!(
            (u.0.as_str(), u.1.as_str(), u.2, u.3.as_str(), u.4.as_str()),
            want
        );

        // The origin revision (an OCI artifact's git commit) wins over the revision.
        let mut e = event(Severity::Info, "ReconciliationSucceeded");
        let origin = "b".repeat(40);
        e.metadata
            .insert("revision".into(), "latest@sha256:abc".into());
        e.metadata
            .insert("originRevision".into(), format!("main@sha1:{origin}"));
        assert_eq!(update(&e).expect("ok").expect("posted").0, origin);

        // Not an update, but Flux's `commit` metadata: posted; neither: dropped.
        e.metadata.remove("commit_status");
        assert!(update(&e).expect("ok").is_none());
        e.metadata.insert("commit".into(), origin.clone());
        assert!(update(&e).expect("ok").is_some());

        // Progressing: dropped for types without a progressing state.
        let e = event(Severity::Info, PROGRESSING);
        assert!(update(&e).expect("ok").is_none());

        // A trace event or an empty key cannot be posted.
        let e = event(Severity::Trace, "Anything");
        assert!(update(&e).is_err());
        let e = event(Severity::Info, "ReconciliationSucceeded");
        let mut d = delivery(&s, &e);
        d.commit_status_key = Some(String::new());
        assert!(StatusUpdate::of(&d, &GITHUB).is_err());
    }

    #[test]
    fn reasons_split_as_flux_does() {
        for (reason, want) in [
            ("ReconciliationSucceeded", "reconciliation succeeded"),
            ("HealthCheckFailed", "health check failed"),
            ("PDFLoader", "pdf loader"),
            ("Progressing", "progressing"),
            ("ArtifactFailed2", "artifact failed 2"),
            ("", ""),
        ] {
            assert_eq!(split_camel_case(reason).join(" ").to_lowercase(), want);
        }
    }

    #[test]
    fn encode_keeps_unreserved_only() {
        assert_eq!(encode("group/sub/proj"), "group%2Fsub%2Fproj");
        assert_eq!(encode("a b?c#"), "a%20b%3Fc%23");
        assert_eq!(encode("My-repo_1.x~"), "My-repo_1.x~");
    }

    #[test]
    fn every_type_of_the_family_has_a_notifier() {
        for t in [
            "github",
            "githubdispatch",
            "gitlab",
            "gitea",
            "bitbucket",
            "bitbucketserver",
            "azuredevops",
        ] {
            assert!(notifier(t).is_some(), "{t}");
        }
        assert!(notifier("slack").is_none());
    }
}
