//! The ImageUpdateAutomation reconciler (image.toolkit.fluxcd.io/v1), as Flux's
//! image-automation-controller.
//!
//! Steps ([`Kind::steps`]), top to bottom:
//! 1. **source**: the `sourceRef` GitRepository (its URL, auth Secret, proxy), the checkout
//!    reference (`git.checkout.ref`, else the GitRepository's) ([`source`]);
//! 2. **policies**: the ImagePolicies of the namespace selected by `policySelector` that have
//!    a `latestRef` ([`policies`]);
//! 3. **update and push**: fetch, check out, run the Setters over `update.path`, commit with
//!    the rendered message ([`message`]) and push (`plumb_source::git::push`), retrying on
//!    the new head when someone pushed first;
//! 4. **report**: `lastAutomationRunTime`, `observedSourceRevision`, `observedPolicies`,
//!    `lastPushCommit`/`lastPushTime` when something was pushed.
//!
//! An ImagePolicy change re-runs the automations of its namespace at once.

pub mod message;
mod policies;
mod source;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use plumb_api::consts::reason;
use plumb_api::{ImagePolicy, ImageUpdateAutomation, ImageUpdateAutomationStatus};
use plumb_image::setters::{self, Outcome};
use plumb_source::SourceError;
use plumb_source::git::push::{Applied, commit_and_push};

use crate::context::Context;
use crate::outcome::{Class, Failure};
use crate::reconciler::{Done, Kind, Policy};

/// Flux's image-automation reasons.
pub mod reasons {
    /// The sourceRef or its Secret is unusable.
    pub const INVALID_SOURCE_CONFIG: &str = "InvalidSourceConfig";
    /// `policySelector` is not a valid selector.
    pub const INVALID_POLICY_SELECTOR: &str = "InvalidPolicySelector";
    /// The update step failed (bad path, budget, template).
    pub const UPDATE_FAILED: &str = "UpdateFailed";
}

/// Most fetch-apply-push rounds when pushes lose races with other writers.
const PUSH_ATTEMPTS: u32 = 3;

/// Runs the ImageUpdateAutomation controller until shutdown.
pub async fn run(
    ctx: Arc<Context>,
    api: Api<ImageUpdateAutomation>,
    policies: Api<ImagePolicy>,
    watch: watcher::Config,
    concurrency: u16,
) {
    let controller = crate::reconciler::desired_state_controller(api, watch.clone());
    let store = controller.store();
    // A policy's new latest image re-runs the automations of its namespace.
    let controller = controller.watches(policies, watch, move |p: ImagePolicy| {
        let ns = p.namespace();
        store
            .state()
            .into_iter()
            .filter(|o| o.namespace() == ns)
            .map(|o| ObjectRef::from_obj(&*o))
            .collect::<Vec<_>>()
    });
    crate::reconciler::run(controller, ctx, concurrency).await;
}

impl Kind for ImageUpdateAutomation {
    const KIND: &'static str = "ImageUpdateAutomation";
    const POLICY: Policy = Policy::SOURCE;

    fn suspended(&self) -> bool {
        self.spec.suspend
    }

    fn every(&self) -> Duration {
        self.interval().unwrap_or(Duration::from_secs(60))
    }

    fn unsupported_note(&self) -> Option<String> {
        let unsupported = self.unsupported_fields();
        (!unsupported.is_empty()).then(|| plumb_api::unsupported::message(&unsupported))
    }

    fn revision(status: &ImageUpdateAutomationStatus) -> &str {
        status.observed_source_revision.as_deref().unwrap_or("")
    }

    async fn steps(
        obj: &Self,
        ctx: &Context,
        status: &mut ImageUpdateAutomationStatus,
    ) -> std::result::Result<Done, Failure> {
        let mut opts = source::push_options(obj, ctx).await?;
        let selected = policies::selected(obj, ctx).await?;
        let ns = obj.namespace().unwrap_or_default();
        let name = obj.name_any();
        opts.fetch.cache_dir = plumb_source::git::cache_path(
            &ctx.git_cache_root().join("_imageupdateautomation"),
            &ns,
            &name,
        );
        let path = obj
            .spec
            .update
            .as_ref()
            .and_then(|u| u.path.clone())
            .unwrap_or_default();
        let commit = obj.spec.git.as_ref().map(|g| g.commit.clone());
        let template = commit.as_ref().and_then(|c| c.message_template.clone());
        let values = commit
            .map(|c| c.message_template_values)
            .unwrap_or_default();
        let setter_policies = selected.setters.clone();
        let push_branch = opts.branch.clone();
        let (ns2, name2) = (ns.clone(), name.clone());
        let pushed = tokio::task::spawn_blocking(move || {
            let work = tempfile::Builder::new()
                .prefix("plumb-automation-")
                .tempdir()
                .map_err(|e| SourceError::Io {
                    op: "create work dir",
                    path: std::env::temp_dir(),
                    source: e,
                })?;
            commit_and_push(&opts, work.path(), |dir, _base| {
                update(
                    dir,
                    &path,
                    &setter_policies,
                    template.as_deref(),
                    &ns2,
                    &name2,
                    &values,
                )
            })
        })
        .await
        .map_err(|e| {
            Failure::new(
                Class::Transient,
                reason::GIT_OPERATION_FAILED,
                e.to_string(),
            )
        })?
        .map_err(|e| classify(&e))?;

        let now = Time(k8s_openapi::jiff::Timestamp::now());
        status.last_automation_run_time = Some(now.clone());
        status.observed_source_revision = Some(pushed.base.revision.clone());
        status.observed_policies = selected.observed;
        let outcome = pushed.data?;
        let notes = notes(&outcome);
        let (msg, event) = match &pushed.pushed {
            None => (format!("repository up-to-date{notes}"), None),
            Some(commit) => {
                status.last_push_commit = Some(commit.clone());
                status.last_push_time = Some(now);
                let branch = push_branch
                    .or_else(|| {
                        pushed
                            .base
                            .reference
                            .strip_prefix("refs/heads/")
                            .map(str::to_string)
                    })
                    .unwrap_or_default();
                let short: String = commit.chars().take(7).collect();
                let msg = format!("pushed commit '{short}' to branch '{branch}'{notes}");
                (msg.clone(), Some(("Succeeded", msg)))
            }
        };
        Ok(Done {
            ready: Some((reason::SUCCEEDED, msg)),
            event,
            requeue: None,
        })
    }
}

/// The change step run in the work tree: the Setters, then the message when files changed.
fn update(
    dir: &std::path::Path,
    path: &str,
    policies: &[setters::Policy],
    template: Option<&str>,
    ns: &str,
    name: &str,
    values: &BTreeMap<String, String>,
) -> plumb_source::Result<Applied<std::result::Result<Outcome, Failure>>> {
    let stop = |why: String| {
        Ok(Applied {
            message: None,
            data: Err(Failure::new(Class::Stalled, reasons::UPDATE_FAILED, why)),
        })
    };
    let outcome = match setters::apply(dir, path, policies, &setters::Limits::default()) {
        Ok(o) => o,
        Err(e) => return stop(e.to_string()),
    };
    if outcome.changes.is_empty() {
        return Ok(Applied {
            message: None,
            data: Ok(outcome),
        });
    }
    match message::render(template, ns, name, &outcome.changes, values) {
        Ok(msg) => Ok(Applied {
            message: Some(msg),
            data: Ok(outcome),
        }),
        Err(e) => stop(format!("commit message template: {e}")),
    }
}

/// What the Ready message adds about markers left alone and files not read.
fn notes(o: &Outcome) -> String {
    let mut parts = Vec::new();
    for u in o.unresolved.iter().take(5) {
        parts.push(format!(
            "{}:{}: {} ({})",
            u.file, u.line, u.setter, u.reason
        ));
    }
    for s in o.skipped.iter().take(5) {
        parts.push(format!("{} skipped: {}", s.file, s.reason));
    }
    let more = (o.unresolved.len() + o.skipped.len()).saturating_sub(parts.len());
    if more > 0 {
        parts.push(format!("{more} more"));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("; left alone: {}", parts.join("; "))
    }
}

fn classify(e: &SourceError) -> Failure {
    use plumb_source::ErrorKind as K;
    let (class, why) = match e {
        SourceError::PushRejected { .. } => (Class::Stalled, reason::GIT_OPERATION_FAILED),
        _ => match e.kind() {
            K::AuthFailed | K::HostUntrusted => (Class::Stalled, reason::AUTHENTICATION_FAILED),
            K::InvalidInput => (Class::Stalled, reasons::INVALID_SOURCE_CONFIG),
            K::RefNotFound | K::BadContent | K::Unverified => {
                (Class::Stalled, reason::GIT_OPERATION_FAILED)
            }
            K::Unreachable | K::Timeout | K::Internal => {
                (Class::Transient, reason::GIT_OPERATION_FAILED)
            }
        },
    };
    Failure::new(class, why, e.to_string())
}
