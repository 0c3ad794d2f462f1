//! The HelmRelease reconciler (`helm.toolkit.fluxcd.io/v2`): load the chart from its
//! source, compose the values, render with plumb-helm, and install, upgrade, roll back or
//! uninstall a real Helm v3 release: objects are applied with server-side apply as
//! `helm-controller`, and each revision is recorded in a Helm release Secret that the
//! `helm` CLI reads (and writes: a `helm rollback` is seen on the next reconcile).
//!
//! Steps ([`Kind::steps`]), top to bottom, one module per responsibility:
//! 1. **requests**: a new generation or `--reset` clears the failure counters, `--force`
//!    forces one upgrade (this module);
//! 2. **dependencies**: every `dependsOn` Ready ([`crate::dependencies`]);
//! 3. **chart** and **values**: fetch the chart ([`chart`]), compose values ([`values`]);
//! 4. **render**: `valuesFiles`, revision version, capabilities, post-renderers ([`render`]);
//! 5. **release**: up to date (then drift, [`drift`]), or install/upgrade: record, perform,
//!    test, record the outcome ([`release`]); hooks and tests in [`hooks`]; the objects of a
//!    manifest in [`manifest`];
//! 6. **remediation**: retry, roll back or uninstall a failed release ([`remediation`]), or
//!    retry it without remediation (`RetryOnFailure`); action options in [`actions`];
//! 7. **history**: release Secrets and `status.history` ([`history`]).
//!
//! Safety: a chart, values or template failure returns before anything is applied or
//! recorded; an apply, hook or health failure leaves a `failed` release record and the
//! remediation settings decide between retrying, rolling back and uninstalling.

mod actions;
mod apply_method;
mod chart;
pub mod drift;
mod helmchart;
mod history;
mod hooks;
mod lookup;
mod manifest;
mod perform;
mod postrender;
mod release;
mod remediation;
mod render;
mod target;
mod values;

pub use chart::chart_dir_of;
pub use release::{Plan, plan};
use target::{applier, target_of};
pub use target::{origin_labels, release_name};
pub use values::compose_values;

use std::sync::Arc;
use std::time::Duration;

use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use plumb_api::conditions::{self, Status as CondStatus};
use plumb_api::consts::{annotation, condition};
use plumb_api::helm_release::{ChartReferenceKind, ChartSourceKind};
use plumb_api::{
    GitRepository, HelmChart, HelmRelease, HelmReleaseStatus, HelmRepository, OCIRepository,
};

use crate::context::Context;
use crate::outcome::Failure;
use crate::reconciler::{Done, Kind, Policy};
use crate::{Error, Result};

/// Runs the HelmRelease controller until shutdown.
pub async fn run(
    ctx: Arc<Context>,
    api: Api<HelmRelease>,
    sources: Api<GitRepository>,
    helm_repos: Api<HelmRepository>,
    watch: watcher::Config,
    concurrency: u16,
) {
    let mut controller = crate::reconciler::desired_state_controller(api, watch.clone());
    // Objects of releases with drift detection on queue their HelmRelease when they
    // drift (see `drift`).
    if let Some(triggers) = ctx.helm_drift.take_triggers() {
        controller = controller.reconcile_on(triggers);
    }
    let store = controller.store();
    let repo_store = store.clone();
    let oci_store = store.clone();
    let chart_store = store.clone();
    let ea_store = store.clone();
    let eas = crate::artifact::external_api(&ctx, sources.namespace());
    let (oci, helm_charts): (Api<OCIRepository>, Api<HelmChart>) = match sources.namespace() {
        Some(ns) => (
            Api::namespaced(ctx.client.clone(), ns),
            Api::namespaced(ctx.client.clone(), ns),
        ),
        None => (Api::all(ctx.client.clone()), Api::all(ctx.client.clone())),
    };
    let controller = controller
        // A new HelmRepository index reconciles the HelmReleases charted from it.
        .watches(helm_repos, watch.clone(), move |src: HelmRepository| {
            charted_from(&repo_store, ChartSourceKind::HelmRepository, &src)
        })
        // A new GitRepository artifact reconciles the HelmReleases whose chart it holds.
        .watches(sources, watch.clone(), move |src: GitRepository| {
            charted_from(&store, ChartSourceKind::GitRepository, &src)
        })
        // A new OCIRepository or HelmChart artifact reconciles the HelmReleases whose
        // chartRef names it.
        .watches(oci, watch.clone(), move |src: OCIRepository| {
            referenced_by(&oci_store, ChartReferenceKind::OCIRepository, &src)
        })
        // A new ExternalArtifact artifact (chartRef kind ExternalArtifact) likewise.
        .watches(
            eas,
            watch.clone(),
            move |src: plumb_api::ExternalArtifact| {
                referenced_by(&ea_store, ChartReferenceKind::ExternalArtifact, &src)
            },
        )
        .watches(helm_charts, watch, move |src: HelmChart| {
            let mut refs = referenced_by(&chart_store, ChartReferenceKind::HelmChart, &src);
            // And the release whose `spec.chart` made it (`<namespace>-<name>`).
            refs.extend(
                chart_store
                    .state()
                    .into_iter()
                    .filter(|hr| hr.spec.chart.is_some() && hr.helm_chart_name() == src.name_any())
                    .map(|hr| kube::runtime::reflector::ObjectRef::from_obj(&*hr)),
            );
            refs
        });
    crate::reconciler::run(controller, ctx, concurrency).await;
}

/// The HelmReleases whose chart comes from `src` (a source of kind `kind`).
/// The HelmReleases of the store whose `chartRef` names `src`.
fn referenced_by<S: ResourceExt>(
    store: &kube::runtime::reflector::Store<HelmRelease>,
    kind: ChartReferenceKind,
    src: &S,
) -> Vec<kube::runtime::reflector::ObjectRef<HelmRelease>> {
    let (ns, name) = (src.namespace(), src.name_any());
    store
        .state()
        .into_iter()
        .filter(|hr| {
            hr.spec.chart_ref.as_ref().is_some_and(|r| {
                r.kind == kind
                    && r.name == name
                    && r.namespace.clone().or_else(|| hr.namespace()) == ns
            })
        })
        .map(|hr| kube::runtime::reflector::ObjectRef::from_obj(&*hr))
        .collect()
}

fn charted_from<S: ResourceExt>(
    store: &kube::runtime::reflector::Store<HelmRelease>,
    kind: ChartSourceKind,
    src: &S,
) -> Vec<kube::runtime::reflector::ObjectRef<HelmRelease>> {
    let (src_ns, src_name) = (src.namespace(), src.name_any());
    store
        .state()
        .into_iter()
        .filter(|hr| {
            hr.spec.chart.as_ref().is_some_and(|c| {
                let r = &c.spec.source_ref;
                r.kind == kind
                    && r.name == src_name
                    && r.namespace.clone().or_else(|| hr.namespace()) == src_ns
            })
        })
        .map(|hr| kube::runtime::reflector::ObjectRef::from_obj(&*hr))
        .collect()
}

impl Kind for HelmRelease {
    const KIND: &'static str = "HelmRelease";
    const POLICY: Policy = Policy::APPLIER;

    fn suspended(&self) -> bool {
        self.spec.suspend
    }

    fn every(&self) -> Duration {
        self.interval().unwrap_or(Duration::from_secs(600))
    }

    const COMMIT_STATUS: bool = true;

    fn revision(status: &HelmReleaseStatus) -> &str {
        status.last_attempted_revision.as_deref().unwrap_or("")
    }

    /// helm-controller's metadata: the chart version as `revision` and the digest of the
    /// values as `token` (a values change is a new event for the rate limit).
    fn event_metadata(status: &HelmReleaseStatus) -> std::collections::BTreeMap<String, String> {
        let mut m = std::collections::BTreeMap::new();
        if let Some(r) = status
            .last_attempted_revision
            .as_deref()
            .filter(|r| !r.is_empty())
        {
            m.insert("revision".to_string(), r.to_string());
        }
        if let Some(t) = status
            .last_attempted_config_digest
            .as_deref()
            .filter(|t| !t.is_empty())
        {
            m.insert("token".to_string(), t.to_string());
        }
        m
    }

    async fn steps(
        obj: &Self,
        ctx: &Context,
        status: &mut HelmReleaseStatus,
    ) -> std::result::Result<Done, Failure> {
        let forced = handle_requests(obj, status);
        target::check_health_exprs(obj)?;
        crate::dependencies::check(obj, &obj.spec.depends_on, ctx).await?;
        let mut done = release::run_once(obj, ctx, status, forced).await?;
        // The unsupported-fields note goes into the Released message and event too.
        let unsupported = obj.unsupported_fields();
        if !unsupported.is_empty() {
            done.message.push_str("; ");
            done.message
                .push_str(&plumb_api::unsupported::message(&unsupported));
        }
        let event = done.released.map(|released| {
            conditions::set(
                &mut status.conditions,
                condition::RELEASED,
                CondStatus::True,
                released,
                &done.message,
                obj.meta().generation,
            );
            conditions::remove(&mut status.conditions, condition::REMEDIATED);
            (released, done.message.clone())
        });
        reset_failures(status);
        Ok(Done {
            ready: Some((done.reason, done.message)),
            event,
            requeue: None,
        })
    }

    fn on_suspend(obj: &Self, ctx: &Context) {
        ctx.helm_drift
            .untrack((&obj.namespace().unwrap_or_default(), &obj.name_any()));
    }

    /// On deletion: run pre-delete hooks, delete the release's objects, run post-delete
    /// hooks, and delete (or, with keepHistory, mark uninstalled) the release Secrets.
    async fn cleanup(obj: Arc<Self>, ctx: &Context) -> Result<Action> {
        ctx.helm_drift
            .untrack((&obj.namespace().unwrap_or_default(), &obj.name_any()));
        helmchart::delete_helm_chart(&obj, ctx).await?;
        if obj.spec.suspend {
            return Ok(Action::await_change());
        }
        let applier = applier(&obj, ctx)
            .await
            .map_err(|f| Error::Kube(f.message))?;
        let t = target_of(&obj, ctx, &applier);
        let history = history::load_history(&t)
            .await
            .map_err(|f| Error::Kube(f.message))?;
        let Some(latest) = history.last().cloned() else {
            return Ok(Action::await_change());
        };
        let un = obj.spec.uninstall.clone().unwrap_or_default();
        remediation::uninstall(
            &applier,
            &history::with_timeout(&t, un.timeout.as_deref()),
            latest,
            &history,
            &un,
        )
        .await
        .map_err(|f| Error::Kube(f.message))?;
        Ok(Action::await_change())
    }
}

/// A new generation, or a `flux reconcile hr --reset` not handled yet, clears the failure
/// counters; returns whether a `--force` not handled yet asks for one upgrade. `--reset` and
/// `--force` count when their annotation equals `requestedAt`.
fn handle_requests(obj: &HelmRelease, status: &mut HelmReleaseStatus) -> bool {
    let generation = obj.meta().generation;
    if status.last_attempted_generation != generation {
        // A new desired state resets the failure counters, as Flux does.
        reset_failures(status);
    }
    status.last_attempted_generation = generation;
    let requested = obj
        .annotations()
        .get(annotation::RECONCILE_REQUESTED_AT)
        .cloned();
    let pending = |key: &str, handled: &Option<String>| {
        let v = obj.annotations().get(key).cloned();
        (v.is_some() && v == requested && *handled != v)
            .then_some(v)
            .flatten()
    };
    if let Some(reset) = pending(
        annotation::RECONCILE_RESET_AT,
        &status.last_handled_reset_at,
    ) {
        reset_failures(status);
        status.last_handled_reset_at = Some(reset);
    }
    let force = pending(
        annotation::RECONCILE_FORCE_AT,
        &status.last_handled_force_at,
    );
    let forced = force.is_some();
    if force.is_some() {
        status.last_handled_force_at = force;
    }
    forced
}

fn reset_failures(status: &mut HelmReleaseStatus) {
    status.failures = None;
    status.install_failures = None;
    status.upgrade_failures = None;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_name_is_flux_default_and_shortened() {
        let spec: plumb_api::HelmReleaseSpec = serde_json::from_value(serde_json::json!({
            "interval": "5m", "targetNamespace": "apps"
        }))
        .unwrap();
        let mut hr = HelmRelease::new("podinfo", spec);
        hr.metadata.namespace = Some("flux".into());
        assert_eq!(release_name(&hr), "apps-podinfo");
        hr.spec.target_namespace = Some("n".repeat(60));
        assert_eq!(release_name(&hr).len(), 53);
    }
}
