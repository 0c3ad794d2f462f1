//! Alert (`notification.toolkit.fluxcd.io/v1beta3`): the reconciler checks the Alert can
//! send (its Provider exists and is Ready, its inclusion and exclusion regexes compile,
//! `matchLabels` only with name `*`) and reports it in status; the dispatcher
//! ([`crate::notification`]) matches events against Ready Alerts from this controller's
//! watch store. A change of a Provider re-reconciles the Alerts that reference it.

use std::sync::Arc;
use std::time::Duration;

use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::Controller;
use kube::runtime::watcher;
use plumb_api::conditions;
use plumb_api::consts::{condition, reason};
use plumb_api::{Alert, NotificationStatus, Provider};

use crate::context::Context;
use crate::notification::Dispatcher;
use crate::outcome::{Class, Failure};
use crate::reconciler::{Done, Kind, Policy, Warn};

const EVERY: Duration = Duration::from_secs(600);

/// Runs the Alert reconciler until a shutdown signal.
pub async fn run(ctx: Arc<Context>, api: Api<Alert>, watch: watcher::Config, concurrency: u16) {
    let providers: Api<Provider> = match api.namespace() {
        Some(ns) => Api::namespaced(ctx.client.clone(), ns),
        None => Api::all(ctx.client.clone()),
    };
    let controller = Controller::new(api, watch);
    ctx.memo::<Dispatcher>().set_alerts(controller.store());
    let controller =
        crate::reconciler::watch_referenced(controller, providers, |a: &Alert, name| {
            a.spec.provider_ref.name == name
        });
    crate::reconciler::run(controller, ctx, concurrency).await;
}

/// The spec checks Flux's API cannot express: regexes compile, `matchLabels` needs `*`.
fn validate(a: &Alert) -> Result<(), String> {
    for (list, patterns) in [
        ("inclusionList", &a.spec.inclusion_list),
        ("exclusionList", &a.spec.exclusion_list),
    ] {
        for p in patterns {
            regex::Regex::new(p).map_err(|e| format!("spec.{list}: invalid regex '{p}': {e}"))?;
        }
    }
    for s in &a.spec.event_sources {
        if !s.match_labels.is_empty() && s.name != "*" {
            return Err(format!(
                "spec.eventSources: matchLabels requires name '*' (got '{}')",
                s.name
            ));
        }
    }
    Ok(())
}

impl Kind for Alert {
    const KIND: &'static str = "Alert";
    const POLICY: Policy = Policy {
        warn: Warn::OnChange,
        ..Policy::APPLIER
    };
    // Alerts own nothing outside their status.
    const FINALIZER: bool = false;

    fn suspended(&self) -> bool {
        self.spec.suspend
    }

    fn every(&self) -> Duration {
        EVERY
    }

    fn revision(_status: &NotificationStatus) -> &str {
        ""
    }

    async fn steps(
        obj: &Self,
        ctx: &Context,
        _status: &mut NotificationStatus,
    ) -> std::result::Result<Done, Failure> {
        validate(obj).map_err(|m| Failure::new(Class::Stalled, reason::VALIDATION_FAILED, m))?;
        let ns = obj.namespace().unwrap_or_default();
        let name = &obj.spec.provider_ref.name;
        let api: Api<Provider> = Api::namespaced(ctx.client.clone(), &ns);
        let provider = api.get_opt(name).await.map_err(|e| {
            Failure::new(
                Class::Transient,
                reason::DEPENDENCY_NOT_READY,
                format!("failed to get Provider '{ns}/{name}': {e}"),
            )
        })?;
        let not_ready =
            |why: String| Failure::new(Class::Waiting, reason::DEPENDENCY_NOT_READY, why);
        let Some(provider) = provider else {
            return Err(not_ready(format!("Provider '{ns}/{name}' not found")));
        };
        let ready = provider
            .status
            .as_ref()
            .and_then(|s| conditions::find(&s.conditions, condition::READY))
            .filter(|c| c.status == "True");
        if ready.is_none() {
            return Err(not_ready(format!("Provider '{ns}/{name}' is not ready")));
        }
        Ok(Done {
            ready: Some((reason::SUCCEEDED, "Alert initialized".to_string())),
            event: None,
            requeue: None,
        })
    }
}
