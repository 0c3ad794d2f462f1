//! The HelmRelease reconciler (`helm.toolkit.fluxcd.io/v2`): load the chart from its
//! source, compose the values, render with plumb-helm, and install, upgrade, roll back or
//! uninstall a real Helm v3 release: objects are applied with server-side apply as
//! `helm-controller`, and each revision is recorded in a Helm release Secret that the
//! `helm` CLI reads (and writes: a `helm rollback` is seen on the next reconcile).
//!
//! Safety: a chart, values or template failure returns before anything is applied or
//! recorded; an apply, hook or health failure leaves a `failed` release record and the
//! remediation settings decide between retrying, rolling back and uninstalling.

use std::collections::{BTreeMap, HashMap};
use std::path::{Component, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::discovery::Scope as KubeScope;
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use plumb_api::conditions::{self, Status as CondStatus};
use plumb_api::consts::{FINALIZER, annotation, condition, field_manager, label, reason};
use plumb_api::helm_release::{
    ChartSourceKind, CrdsPolicy, DriftDetectionMode, ReconcileStrategy, ReleaseAction,
    RemediationStrategy, Snapshot,
};
use plumb_api::kustomization::ValuesKind;
use plumb_api::{GitRepository, HelmRelease, HelmReleaseStatus, HelmRepository};
use plumb_helm::storage::{self, Release, status as rstatus};
use plumb_ssa::kstatus::Status as Health;
use plumb_ssa::{Applier, ApplyItem, ApplyOptions, ObjectRef, PruneOptions, SsaMode};
use serde_json::{Map, Value};

use crate::context::Context;
use crate::outcome::{Class, Failure, jitter};
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
    let mut controller = crate::shared::desired_state_controller(api, watch.clone());
    // Objects of releases with drift detection on queue their HelmRelease when they
    // drift (see `drift`).
    if let Some(triggers) = ctx.helm_drift.take_triggers() {
        controller = controller.reconcile_on(triggers);
    }
    let store = controller.store();
    let repo_store = store.clone();
    controller
        // A new HelmRepository index reconciles the HelmReleases charted from it.
        .watches(helm_repos, watch.clone(), move |src: HelmRepository| {
            charted_from(&repo_store, ChartSourceKind::HelmRepository, &src)
        })
        // A new GitRepository artifact reconciles the HelmReleases whose chart it holds.
        .watches(sources, watch, move |src: GitRepository| {
            charted_from(&store, ChartSourceKind::GitRepository, &src)
        })
        .with_config(kube::runtime::controller::Config::default().concurrency(concurrency))
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx)
        .for_each(|res| async move {
            if let Err(e) = res {
                tracing::debug!(error = %e, "helmrelease reconcile error");
            }
        })
        .await;
}

/// The HelmReleases whose chart comes from `src` (a source of kind `kind`).
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

fn error_policy(_obj: Arc<HelmRelease>, err: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(error = %err, "helmrelease reconcile failed");
    Action::requeue(Duration::from_secs(10))
}

/// One reconcile of one HelmRelease (finalizer-aware).
pub async fn reconcile(obj: Arc<HelmRelease>, ctx: Arc<Context>) -> Result<Action> {
    let ns = obj.namespace().unwrap_or_default();
    let _timer = ctx
        .metrics
        .reconcile_timer("HelmRelease", &ns, &obj.name_any());
    let api: Api<HelmRelease> = Api::namespaced(ctx.client.clone(), &ns);
    finalizer(&api, FINALIZER, obj, |ev| async {
        match ev {
            Finalizer::Apply(o) => apply(o, &ctx, &api).await,
            Finalizer::Cleanup(o) => cleanup(o, &ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(e.to_string()))
}

/// The Helm release name Flux uses: `spec.releaseName` or `[targetNamespace-]name`,
/// shortened when longer than 53 characters.
pub fn release_name(obj: &HelmRelease) -> String {
    storage::shorten_name(&obj.release_name())
}

/// Where one release lives.
#[derive(Clone)]
struct Target {
    name: String,
    namespace: String,
    storage_ns: String,
    timeout: Duration,
    /// Flux's origin labels, stamped on every object.
    origin: BTreeMap<String, String>,
    /// Client of the release storage: the target cluster's (as Helm keeps releases where
    /// they are installed), the controller's own for the local cluster.
    store: kube::Client,
}

/// Where the release of `obj` lives, applied through `applier`.
fn target_of(obj: &HelmRelease, ctx: &Context, applier: &Applier) -> Target {
    let own = obj.namespace().unwrap_or_default();
    let store = if obj.spec.kube_config.is_some() {
        applier.client().clone()
    } else {
        ctx.client.clone()
    };
    Target {
        store,
        name: release_name(obj),
        namespace: obj.release_namespace().unwrap_or(&own).to_string(),
        storage_ns: obj.storage_namespace().unwrap_or(&own).to_string(),
        timeout: obj.timeout().unwrap_or(Duration::from_secs(300)),
        origin: origin_labels(obj),
    }
}

/// On deletion: run pre-delete hooks, delete the release's objects, run post-delete
/// hooks, and delete (or, with keepHistory, mark uninstalled) the release Secrets.
async fn cleanup(obj: Arc<HelmRelease>, ctx: &Context) -> Result<Action> {
    ctx.helm_drift
        .untrack((&obj.namespace().unwrap_or_default(), &obj.name_any()));
    if obj.spec.suspend {
        return Ok(Action::await_change());
    }
    let applier = applier_for(&obj, ctx)
        .await
        .map_err(|f| Error::Kube(f.message))?;
    let t = target_of(&obj, ctx, &applier);
    let history = load_history(&t).await.map_err(|f| Error::Kube(f.message))?;
    let Some(latest) = history.last().cloned() else {
        return Ok(Action::await_change());
    };
    let un = obj.spec.uninstall.clone().unwrap_or_default();
    uninstall(
        &applier,
        &with_timeout(&t, un.timeout.as_deref()),
        latest,
        &history,
        !un.disable_hooks,
        un.keep_history,
    )
    .await
    .map_err(|f| Error::Kube(f.message))?;
    Ok(Action::await_change())
}

async fn uninstall(
    applier: &Applier,
    t: &Target,
    mut latest: Release,
    history: &[Release],
    hooks: bool,
    keep_history: bool,
) -> std::result::Result<(), Failure> {
    let fail = |m: String| Failure::new(Class::Transient, reason::UNINSTALL_FAILED, m);
    latest.info.status = rstatus::UNINSTALLING.into();
    write_release(t, &latest).await?;
    if hooks {
        run_hooks(applier, &mut latest, "pre-delete", t)
            .await
            .map_err(fail)?;
    }
    let refs = manifest_refs(applier, &latest.manifest, &t.namespace)
        .await
        .map_err(fail)?;
    applier
        .prune(&refs, &PruneOptions::default())
        .await
        .map_err(|e| fail(format!("deleting objects of release {}: {e}", t.name)))?;
    if hooks {
        run_hooks(applier, &mut latest, "post-delete", t)
            .await
            .map_err(fail)?;
    }
    let secrets: Api<Secret> = Api::namespaced(t.store.clone(), &t.storage_ns);
    if keep_history {
        latest.info.status = rstatus::UNINSTALLED.into();
        latest.info.deleted = storage::now();
        latest.info.description = "Uninstallation complete".into();
        write_release(t, &latest).await?;
    } else {
        for r in history {
            let name = storage::secret_name(&r.name, r.version);
            match secrets.delete(&name, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(ae)) if ae.code == 404 => {}
                Err(e) => return Err(fail(format!("deleting release Secret {name}: {e}"))),
            }
        }
    }
    Ok(())
}

async fn apply(obj: Arc<HelmRelease>, ctx: &Context, api: &Api<HelmRelease>) -> Result<Action> {
    if obj.spec.suspend {
        ctx.helm_drift
            .untrack((&obj.namespace().unwrap_or_default(), &obj.name_any()));
        return Ok(Action::await_change());
    }
    let interval = obj.interval().unwrap_or(Duration::from_secs(600));
    let generation = obj.meta().generation;
    let mut status = obj.status.clone().unwrap_or_default();
    let before = status.clone();
    let obj_ref = obj.object_ref(&());
    let requested = obj
        .annotations()
        .get(annotation::RECONCILE_REQUESTED_AT)
        .cloned();
    if status.last_attempted_generation != generation {
        // A new desired state resets the failure counters, as Flux does.
        status.failures = None;
        status.install_failures = None;
        status.upgrade_failures = None;
    }
    status.last_attempted_generation = generation;
    // `flux reconcile hr --reset` / `--force`: the annotation equals `requestedAt` and
    // was not handled yet.
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
        status.failures = None;
        status.install_failures = None;
        status.upgrade_failures = None;
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

    let action = match run_once(&obj, ctx, &mut status, forced).await {
        Ok(mut done) => {
            let unsupported = obj.unsupported_fields();
            if !unsupported.is_empty() {
                done.message.push_str("; ");
                done.message
                    .push_str(&plumb_api::unsupported::message(&unsupported));
            }
            conditions::mark_ready(
                &mut status.conditions,
                done.reason,
                &done.message,
                generation,
            );
            if let Some(released) = done.released {
                conditions::set(
                    &mut status.conditions,
                    condition::RELEASED,
                    CondStatus::True,
                    released,
                    &done.message,
                    generation,
                );
                conditions::remove(&mut status.conditions, condition::REMEDIATED);
                ctx.event(&obj_ref, false, released, &done.message).await;
            }
            status.failures = None;
            status.install_failures = None;
            status.upgrade_failures = None;
            Action::requeue(jitter(interval, ctx.config.jitter_percent))
        }
        Err(f) => {
            if f.class == Class::Waiting {
                conditions::mark_reconciling(
                    &mut status.conditions,
                    f.reason,
                    &f.message,
                    generation,
                );
                conditions::set(
                    &mut status.conditions,
                    condition::READY,
                    CondStatus::False,
                    f.reason,
                    &f.message,
                    generation,
                );
            } else if f.class == Class::Stalled {
                conditions::mark_stalled(&mut status.conditions, f.reason, &f.message, generation);
            } else {
                conditions::mark_failed(&mut status.conditions, f.reason, &f.message, generation);
            }
            let previous = before
                .conditions
                .iter()
                .find(|c| c.type_ == condition::READY);
            if previous.is_none_or(|c| c.message != f.message) {
                ctx.event(&obj_ref, true, f.reason, &f.message).await;
            }
            let wait = if f.class == Class::Waiting {
                ctx.config.requeue_dependency
            } else {
                f.requeue_after(Duration::from_secs(10), interval)
            };
            Action::requeue(wait)
        }
    };
    status.observed_generation = generation;
    if requested.is_some() {
        status.reconcile_request.last_handled_reconcile_at = requested;
    }
    if status != before {
        crate::shared::write_status(api, &obj.name_any(), &before, &status).await?;
    }
    ctx.metrics.observe(
        "HelmRelease",
        &obj.namespace().unwrap_or_default(),
        &obj.name_any(),
        crate::metrics::Observed {
            conditions: &status.conditions,
            suspended: obj.spec.suspend,
            revision: status.last_attempted_revision.as_deref().unwrap_or(""),
        },
    );
    Ok(action)
}

/// A successful reconcile.
struct Done {
    /// Ready reason.
    reason: &'static str,
    message: String,
    /// Set when a release was made (Released condition reason).
    released: Option<&'static str>,
}

/// The chart as loaded and rendered (thread-safe parts only).
struct Built {
    chart: storage::ChartRecord,
    rendered: plumb_helm::Rendered,
}

async fn run_once(
    obj: &HelmRelease,
    ctx: &Context,
    status: &mut HelmReleaseStatus,
    force: bool,
) -> std::result::Result<Done, Failure> {
    check_dependencies(obj, ctx).await?;
    let applier = applier_for(obj, ctx).await?;
    let t = target_of(obj, ctx, &applier);
    let (chart_src, _work) = fetch_chart(obj, ctx).await?;
    let config = compose_values(obj, ctx).await?;
    let config_digest = storage::values_digest(&config);
    status.last_attempted_config_digest = Some(config_digest.clone());
    status.storage_namespace = Some(t.storage_ns.clone());

    let history = load_history(&t).await?;
    let latest = history.last().cloned();
    let revision = latest.as_ref().map_or(1, |r| r.version + 1);
    let is_install = latest
        .as_ref()
        .is_none_or(|r| r.info.status == rstatus::UNINSTALLED);

    let built = build(
        chart_src,
        &config,
        &t,
        revision,
        is_install,
        post_overlays(obj),
        chart_options(obj, &t).await,
    )
    .await?;
    let chart_version = built.chart.version().to_string();
    status.last_attempted_revision = Some(chart_version.clone());

    // Up to date: the latest release is deployed from the same chart and values (and no
    // one-off upgrade is forced).
    if let Some(l) = &latest
        && !force
        && l.info.status == rstatus::DEPLOYED
        && l.chart.name() == built.chart.name()
        && l.chart.version() == chart_version
        && storage::values_digest(&l.config) == config_digest
    {
        status.history = snapshots(&history);
        drift(obj, ctx, &applier, &t, l).await?;
        return Ok(Done {
            reason: if is_install_only(&history) {
                reason::INSTALL_SUCCEEDED
            } else {
                reason::UPGRADE_SUCCEEDED
            },
            message: format!(
                "Helm {} succeeded for release {}/{}.v{} with chart {}@{}",
                if is_install_only(&history) {
                    "install"
                } else {
                    "upgrade"
                },
                t.namespace,
                t.name,
                l.version,
                l.chart.name(),
                l.chart.version()
            ),
            released: None,
        });
    }

    let action = if is_install {
        ReleaseAction::Install
    } else {
        ReleaseAction::Upgrade
    };
    status.last_attempted_release_action = Some(action);
    let failures_before = if is_install {
        status.install_failures.unwrap_or(0)
    } else {
        status.upgrade_failures.unwrap_or(0)
    };
    let (retries, remediate_last) = remediation_of(obj, is_install);
    if !force && failures_before > 0 && failures_before > retries {
        // Retries are exhausted: wait for a change of the object or its inputs.
        return Err(Failure::new(
            Class::Stalled,
            if is_install {
                reason::INSTALL_FAILED
            } else {
                reason::UPGRADE_FAILED
            },
            format!(
                "{} retries exhausted for release {}/{} ({failures_before} failures)",
                if is_install { "install" } else { "upgrade" },
                t.namespace,
                t.name
            ),
        ));
    }

    let mut rel = Release {
        name: t.name.clone(),
        info: storage::Info {
            first_deployed: storage::now(),
            last_deployed: storage::now(),
            deleted: String::new(),
            description: if is_install {
                "Initial install underway".into()
            } else {
                "Preparing upgrade".into()
            },
            status: if is_install {
                rstatus::PENDING_INSTALL.into()
            } else {
                rstatus::PENDING_UPGRADE.into()
            },
            notes: built.rendered.notes.clone(),
        },
        chart: built.chart,
        config,
        manifest: storage::manifest_text(&built.rendered.manifests),
        hooks: built
            .rendered
            .hooks
            .iter()
            .map(storage::hook_record)
            .collect(),
        version: revision,
        namespace: t.namespace.clone(),
        labels: BTreeMap::new(),
    };
    if let Some(prev) = latest.as_ref().filter(|_| !is_install) {
        rel.info.first_deployed = prev.info.first_deployed.clone();
    }
    write_release(&t, &rel).await?;

    let result = perform(
        obj,
        ctx,
        &applier,
        &t,
        &mut rel,
        &built.rendered,
        latest.as_ref(),
        is_install,
    )
    .await;
    // Helm's test action after a successful install or upgrade.
    let tests_enabled = obj.spec.test.as_ref().is_some_and(|t| t.enable);
    let result = match result {
        Ok(()) if tests_enabled => {
            let tested = run_tests(obj, &applier, &t, &mut rel).await;
            let generation = obj.meta().generation;
            let what = format!("release {}/{}.v{}", t.namespace, t.name, rel.version);
            match tested {
                Ok(n) => {
                    conditions::set(
                        &mut status.conditions,
                        condition::TEST_SUCCESS,
                        CondStatus::True,
                        reason::TEST_SUCCEEDED,
                        &format!(
                            "Helm test succeeded for {what}: {n} test hooks completed successfully"
                        ),
                        generation,
                    );
                    Ok(())
                }
                Err(m) => {
                    let message = format!("Helm test failed for {what}: {m}");
                    conditions::set(
                        &mut status.conditions,
                        condition::TEST_SUCCESS,
                        CondStatus::False,
                        reason::TEST_FAILED,
                        &message,
                        generation,
                    );
                    ctx.event(&obj.object_ref(&()), true, reason::TEST_FAILED, &message)
                        .await;
                    if ignores_test_failures(obj, is_install) {
                        Ok(())
                    } else {
                        Err(format!("test failed: {m}"))
                    }
                }
            }
        }
        Ok(()) => {
            conditions::remove(&mut status.conditions, condition::TEST_SUCCESS);
            Ok(())
        }
        Err(e) => Err(e),
    };
    // The history after this release, kept locally to save two list calls; a
    // remediation (rare) re-reads it.
    let after: Option<Vec<Release>>;
    let done = match result {
        Ok(()) => {
            rel.info.status = rstatus::DEPLOYED.into();
            rel.info.description = if is_install {
                "Install complete".into()
            } else {
                "Upgrade complete".into()
            };
            write_release(&t, &rel).await?;
            for prev in history
                .iter()
                .filter(|r| r.info.status == rstatus::DEPLOYED)
            {
                let mut p = prev.clone();
                p.info.status = rstatus::SUPERSEDED.into();
                write_release(&t, &p).await?;
            }
            let mut h: Vec<Release> = history
                .iter()
                .cloned()
                .map(|mut p| {
                    if p.info.status == rstatus::DEPLOYED {
                        p.info.status = rstatus::SUPERSEDED.into();
                    }
                    p
                })
                .collect();
            h.push(rel.clone());
            after = Some(h);
            track_drift(obj, ctx, &applier, &t, &rel).await;
            let r = if is_install {
                reason::INSTALL_SUCCEEDED
            } else {
                reason::UPGRADE_SUCCEEDED
            };
            Ok(Done {
                reason: r,
                message: format!(
                    "Helm {} succeeded for release {}/{}.v{} with chart {}@{}",
                    if is_install { "install" } else { "upgrade" },
                    t.namespace,
                    t.name,
                    rel.version,
                    rel.chart.name(),
                    rel.chart.version()
                ),
                released: Some(r),
            })
        }
        Err(msg) => {
            rel.info.status = rstatus::FAILED.into();
            rel.info.description = format!(
                "{} \"{}\" failed: {msg}",
                if is_install { "Release" } else { "Upgrade" },
                t.name
            );
            write_release(&t, &rel).await?;
            let failures = failures_before + 1;
            *status.failures.get_or_insert(0) += 1;
            if is_install {
                status.install_failures = Some(failures);
            } else {
                status.upgrade_failures = Some(failures);
            }
            let r = if is_install {
                reason::INSTALL_FAILED
            } else {
                reason::UPGRADE_FAILED
            };
            let message = format!(
                "Helm {} failed for release {}/{} with chart {}@{}: {msg}",
                if is_install { "install" } else { "upgrade" },
                t.namespace,
                t.name,
                rel.chart.name(),
                rel.chart.version()
            );
            conditions::set(
                &mut status.conditions,
                condition::RELEASED,
                CondStatus::False,
                r,
                &message,
                obj.meta().generation,
            );
            // Remediate between attempts, and after the last one when configured.
            let remediating = retries > 0 && (failures <= retries || remediate_last);
            after = (!remediating).then(|| {
                let mut h = history.clone();
                h.push(rel.clone());
                h
            });
            if remediating {
                let remediated = remediate(obj, &applier, &t, is_install, rel.clone()).await;
                let (cs, rr, rm) = match &remediated {
                    Ok(m) => (
                        CondStatus::True,
                        remediation_reason(obj, is_install, true),
                        m.clone(),
                    ),
                    Err(f) => (
                        CondStatus::False,
                        remediation_reason(obj, is_install, false),
                        f.message.clone(),
                    ),
                };
                conditions::set(
                    &mut status.conditions,
                    condition::REMEDIATED,
                    cs,
                    rr,
                    &rm,
                    obj.meta().generation,
                );
            }
            Err(Failure::new(
                if retries > 0 && failures <= retries {
                    Class::Transient
                } else {
                    Class::Stalled
                },
                r,
                message,
            ))
        }
    };
    let history = match after {
        Some(h) => h,
        None => load_history(&t).await?,
    };
    let pruned = prune_history(&t, &history, obj.max_history()).await?;
    status.history = snapshots(&history[pruned..]);
    done
}

/// `spec.driftDetection` on an up-to-date release: compare its objects with the cluster,
/// correct them (`enabled`) or report them (`warn`), and keep watching them.
async fn drift(
    obj: &HelmRelease,
    ctx: &Context,
    applier: &Applier,
    t: &Target,
    latest: &Release,
) -> std::result::Result<(), Failure> {
    let dd = obj.spec.drift_detection.as_ref();
    let mode = crate::helmdrift::mode(dd);
    if mode == DriftDetectionMode::Disabled {
        ctx.helm_drift
            .untrack((&obj.namespace().unwrap_or_default(), &obj.name_any()));
        return Ok(());
    }
    let objects = parse_manifest(applier, &latest.manifest, t)
        .await
        .map_err(|m| Failure::new(Class::Transient, reason::DRIFT_DETECTED, m))?;
    let rules = dd.map(|d| d.ignore.as_slice()).unwrap_or_default();
    let correct = mode == DriftDetectionMode::Enabled;
    let report = crate::helmdrift::check(applier, objects.clone(), rules, correct).await;
    let what = format!("release {}/{}.v{}", t.namespace, t.name, latest.version);
    let obj_ref = obj.object_ref(&());
    if !report.drifted.is_empty() {
        let list = report.drifted.join("\n");
        if correct {
            ctx.event(
                &obj_ref,
                false,
                reason::DRIFT_CORRECTED,
                &format!("Cluster state of {what} has been corrected:\n{list}"),
            )
            .await;
        } else {
            ctx.event(
                &obj_ref,
                true,
                reason::DRIFT_DETECTED,
                &format!("Cluster state of {what} has drifted from the desired state:\n{list}"),
            )
            .await;
        }
    }
    // The objects are parsed already: track them without parsing the manifest again.
    let refs: Vec<ObjectRef> = objects
        .iter()
        .filter_map(|o| ObjectRef::from_object(o).ok())
        .collect();
    track_refs(obj, ctx, applier, &refs).await;
    if !report.errors.is_empty() {
        return Err(Failure::new(
            Class::Transient,
            reason::DRIFT_DETECTED,
            format!(
                "drift detection for {what} failed: {}",
                report.errors.join("; ")
            ),
        ));
    }
    Ok(())
}

/// Watches the objects of `rel` for drift when `spec.driftDetection` is on.
async fn track_drift(
    obj: &HelmRelease,
    ctx: &Context,
    applier: &Applier,
    t: &Target,
    rel: &Release,
) {
    if !drift_watched(obj) {
        return track_refs(obj, ctx, applier, &[]).await;
    }
    match manifest_refs(applier, &rel.manifest, &t.namespace).await {
        Ok(refs) => track_refs(obj, ctx, applier, &refs).await,
        Err(e) => tracing::debug!(error = %e, "drift: release objects not tracked"),
    }
}

/// Whether the objects of `obj` are watched for drift. Remote clusters are compared at
/// the interval only: the watches use the controller's own client.
fn drift_watched(obj: &HelmRelease) -> bool {
    crate::helmdrift::mode(obj.spec.drift_detection.as_ref()) != DriftDetectionMode::Disabled
        && obj.spec.kube_config.is_none()
}

/// Watches `refs` for drift on behalf of `obj`, or stops watching when it should not be.
async fn track_refs(obj: &HelmRelease, ctx: &Context, applier: &Applier, refs: &[ObjectRef]) {
    let owner = (obj.namespace().unwrap_or_default(), obj.name_any());
    let owner = (owner.0.as_str(), owner.1.as_str());
    if drift_watched(obj) {
        ctx.helm_drift.track(owner, refs, applier).await;
    } else {
        ctx.helm_drift.untrack(owner);
    }
}

/// The chart settings of `obj`, and the capabilities of the cluster it targets.
async fn chart_options(obj: &HelmRelease, t: &Target) -> ChartOptions {
    let spec = obj.spec.chart.as_ref().map(|c| &c.spec);
    ChartOptions {
        values_files: spec.map(|s| s.values_files.clone()).unwrap_or_default(),
        ignore_missing_values_files: spec.is_some_and(|s| s.ignore_missing_values_files),
        by_revision: spec.is_some_and(|s| s.reconcile_strategy == ReconcileStrategy::Revision),
        capabilities: capabilities(obj, t).await,
    }
}

/// `.Capabilities` as the target cluster reports them (its version and served API
/// versions, as helm-controller reads them through discovery), cached per cluster for
/// ten minutes; Helm's defaults when discovery fails.
async fn capabilities(obj: &HelmRelease, t: &Target) -> plumb_helm::Capabilities {
    type Cached = HashMap<String, (Instant, plumb_helm::Capabilities)>;
    static CACHE: OnceLock<Mutex<Cached>> = OnceLock::new();
    const TTL: Duration = Duration::from_secs(600);
    let key = match &obj.spec.kube_config {
        None => String::new(),
        Some(kc) => format!(
            "{}/{:?}/{:?}",
            obj.namespace().unwrap_or_default(),
            kc.secret_ref.as_ref().map(|s| &s.name),
            kc.config_map_ref.as_ref().map(|c| &c.name)
        ),
    };
    let cache = CACHE.get_or_init(Mutex::default);
    if let Some((at, caps)) = cache.lock().unwrap_or_else(|p| p.into_inner()).get(&key)
        && at.elapsed() < TTL
    {
        return caps.clone();
    }
    let client = t.store.clone();
    let discovered = async {
        let version = client.apiserver_version().await.ok()?;
        let groups = client.list_api_groups().await.ok()?;
        let core = client.list_core_api_versions().await.ok()?;
        // Helm's version set: every served group/version and every `group/version/Kind`.
        let mut gvs: Vec<String> = core.versions.clone();
        for g in &groups.groups {
            gvs.extend(g.versions.iter().map(|v| v.group_version.clone()));
        }
        let mut api_versions = gvs.clone();
        for gv in &gvs {
            let resources = if gv.contains('/') {
                client.list_api_group_resources(gv).await
            } else {
                client.list_core_api_resources(gv).await
            };
            let Ok(list) = resources else { continue };
            for r in list.resources.iter().filter(|r| !r.name.contains('/')) {
                api_versions.push(format!("{gv}/{}", r.kind));
            }
        }
        api_versions.sort();
        api_versions.dedup();
        Some(plumb_helm::Capabilities {
            kube_version: version.git_version,
            api_versions,
        })
    }
    .await;
    match discovered {
        Some(caps) => {
            cache
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(key, (Instant::now(), caps.clone()));
            caps
        }
        None => plumb_helm::Capabilities::default(),
    }
}

/// The kustomize post-renderers of `spec.postRenderers`.
fn post_overlays(obj: &HelmRelease) -> Vec<plumb_kustomize::Overlay> {
    obj.spec
        .post_renderers
        .iter()
        .filter_map(|p| p.kustomize.as_ref())
        .map(|k| plumb_kustomize::Overlay {
            patches: crate::kustomization::overlay_patches(&k.patches),
            images: crate::kustomization::overlay_images(&k.images),
            ..Default::default()
        })
        .collect()
}

/// What the next install or upgrade of a HelmRelease would do (`plumb diff hr`).
pub struct Plan {
    /// The applier the controller would use (its identity and cluster).
    pub applier: Applier,
    /// Objects of the new manifest, as they would be applied.
    pub objects: Vec<Value>,
    /// Objects of the deployed release that the new manifest no longer has.
    pub removed: Vec<ObjectRef>,
    /// `namespace/name` of the Helm release.
    pub release: String,
    /// The chart and version that would be released (`name@version`).
    pub chart: String,
    /// The deployed revision, if any.
    pub deployed: Option<i64>,
}

/// Renders `obj` exactly as its next reconcile would (chart, values, post-renderers,
/// labels and namespaces), without applying or recording anything.
pub async fn plan(obj: &HelmRelease, ctx: &Context) -> std::result::Result<Plan, Failure> {
    let applier = applier_for(obj, ctx).await?;
    let t = target_of(obj, ctx, &applier);
    let (chart_src, _work) = fetch_chart(obj, ctx).await?;
    let config = compose_values(obj, ctx).await?;
    let history = load_history(&t).await?;
    let latest = history
        .iter()
        .rev()
        .find(|r| r.info.status == rstatus::DEPLOYED)
        .cloned();
    let revision = history.last().map_or(1, |r| r.version + 1);
    let built = build(
        chart_src,
        &config,
        &t,
        revision,
        latest.is_none(),
        post_overlays(obj),
        chart_options(obj, &t).await,
    )
    .await?;
    let fail = |m: String| Failure::new(Class::Stalled, reason::INSTALL_FAILED, m);
    let manifest = storage::manifest_text(&built.rendered.manifests);
    let objects = parse_manifest(&applier, &manifest, &t)
        .await
        .map_err(fail)?;
    let mut removed = Vec::new();
    if let Some(l) = &latest {
        let keep: std::collections::HashSet<_> = objects
            .iter()
            .filter_map(|o| ObjectRef::from_object(o).ok())
            .map(|r| r.key())
            .collect();
        removed = manifest_refs(&applier, &l.manifest, &t.namespace)
            .await
            .map_err(fail)?
            .into_iter()
            .filter(|r| !keep.contains(&r.key()))
            .collect();
    }
    Ok(Plan {
        applier,
        objects,
        removed,
        release: format!("{}/{}", t.namespace, t.name),
        chart: format!("{}@{}", built.chart.name(), built.chart.version()),
        deployed: latest.map(|l| l.version),
    })
}

fn is_install_only(history: &[Release]) -> bool {
    history.len() <= 1
}

/// (retries, remediateLastFailure) of the action.
fn remediation_of(obj: &HelmRelease, install: bool) -> (i64, bool) {
    let (retries, last) = if install {
        let r = obj
            .spec
            .install
            .as_ref()
            .and_then(|i| i.remediation.as_ref());
        (
            r.and_then(|r| r.retries).unwrap_or(0),
            r.and_then(|r| r.remediate_last_failure),
        )
    } else {
        let r = obj
            .spec
            .upgrade
            .as_ref()
            .and_then(|i| i.remediation.as_ref());
        (
            r.and_then(|r| r.retries).unwrap_or(0),
            r.and_then(|r| r.remediate_last_failure),
        )
    };
    // Flux: remediateLastFailure defaults to true when retries are set.
    (retries.max(-1), last.unwrap_or(retries != 0))
}

fn upgrade_strategy(obj: &HelmRelease) -> RemediationStrategy {
    obj.spec
        .upgrade
        .as_ref()
        .and_then(|u| u.remediation.as_ref())
        .and_then(|r| r.strategy)
        .unwrap_or(RemediationStrategy::Rollback)
}

fn remediation_reason(obj: &HelmRelease, install: bool, ok: bool) -> &'static str {
    let uninstall = install || upgrade_strategy(obj) == RemediationStrategy::Uninstall;
    match (uninstall, ok) {
        (true, true) => reason::UNINSTALL_SUCCEEDED,
        (true, false) => reason::UNINSTALL_FAILED,
        (false, true) => reason::ROLLBACK_SUCCEEDED,
        (false, false) => reason::ROLLBACK_FAILED,
    }
}

/// A failed install is uninstalled; a failed upgrade is rolled back to the last
/// successful release (or uninstalled, per `upgrade.remediation.strategy`).
async fn remediate(
    obj: &HelmRelease,
    applier: &Applier,
    t: &Target,
    install: bool,
    failed: Release,
) -> std::result::Result<String, Failure> {
    let history = load_history(t).await?;
    if install || upgrade_strategy(obj) == RemediationStrategy::Uninstall {
        let un = obj.spec.uninstall.clone().unwrap_or_default();
        uninstall(
            applier,
            &with_timeout(t, un.timeout.as_deref()),
            failed,
            &history,
            !un.disable_hooks,
            un.keep_history,
        )
        .await?;
        return Ok(format!(
            "Helm uninstall succeeded for release {}/{}",
            t.namespace, t.name
        ));
    }
    let Some(good) = history
        .iter()
        .rev()
        .find(|r| {
            r.version < failed.version
                && (r.info.status == rstatus::DEPLOYED || r.info.status == rstatus::SUPERSEDED)
        })
        .cloned()
    else {
        return Err(Failure::new(
            Class::Stalled,
            reason::ROLLBACK_FAILED,
            format!(
                "no successful release of {}/{} to roll back to",
                t.namespace, t.name
            ),
        ));
    };
    let hooks = !obj.spec.rollback.as_ref().is_some_and(|r| r.disable_hooks);
    let rollback_timeout = obj
        .spec
        .rollback
        .as_ref()
        .and_then(|r| r.timeout.as_deref());
    rollback(
        applier,
        &with_timeout(t, rollback_timeout),
        &failed,
        &good,
        hooks,
    )
    .await?;
    Ok(format!(
        "Helm rollback to previous release {}/{}.v{} with chart {}@{} succeeded",
        t.namespace,
        t.name,
        good.version,
        good.chart.name(),
        good.chart.version()
    ))
}

/// Helm's rollback: a new revision with the chart, values, manifest and hooks of
/// `good`; the objects of `current` that `good` lacks are deleted.
async fn rollback(
    applier: &Applier,
    t: &Target,
    current: &Release,
    good: &Release,
    hooks: bool,
) -> std::result::Result<(), Failure> {
    let fail = |m: String| Failure::new(Class::Transient, reason::ROLLBACK_FAILED, m);
    let mut rel = good.clone();
    rel.version = current.version + 1;
    rel.info.status = rstatus::PENDING_ROLLBACK.into();
    rel.info.last_deployed = storage::now();
    rel.info.description = format!("Rollback to {}", good.version);
    for h in &mut rel.hooks {
        h.last_run = Default::default();
    }
    write_release(t, &rel).await?;
    if hooks {
        run_hooks(applier, &mut rel, "pre-rollback", t)
            .await
            .map_err(fail)?;
    }
    let objects = parse_manifest(applier, &rel.manifest, t)
        .await
        .map_err(fail)?;
    apply_objects(applier, objects.clone(), t)
        .await
        .map_err(fail)?;
    let old = manifest_refs(applier, &current.manifest, &t.namespace)
        .await
        .map_err(fail)?;
    prune_removed(applier, &old, &objects).await.map_err(fail)?;
    if hooks {
        run_hooks(applier, &mut rel, "post-rollback", t)
            .await
            .map_err(fail)?;
    }
    rel.info.status = rstatus::DEPLOYED.into();
    write_release(t, &rel).await?;
    let history = load_history(t).await?;
    for p in history
        .iter()
        .filter(|r| r.version != rel.version && r.info.status == rstatus::DEPLOYED)
    {
        let mut p = p.clone();
        p.info.status = rstatus::SUPERSEDED.into();
        write_release(t, &p).await?;
    }
    Ok(())
}

/// Install or upgrade: hooks, CRDs, objects, removed objects, hooks, wait.
#[allow(clippy::too_many_arguments)]
async fn perform(
    obj: &HelmRelease,
    ctx: &Context,
    applier: &Applier,
    t: &Target,
    rel: &mut Release,
    rendered: &plumb_helm::Rendered,
    previous: Option<&Release>,
    install: bool,
) -> std::result::Result<(), String> {
    let _ = ctx;
    let action_timeout = if install {
        obj.spec.install.as_ref().and_then(|i| i.timeout.as_deref())
    } else {
        obj.spec.upgrade.as_ref().and_then(|u| u.timeout.as_deref())
    };
    let t = &with_timeout(t, action_timeout);
    let (hooks, crds, wait, create_ns) = if install {
        let i = obj.spec.install.clone().unwrap_or_default();
        let crds = i.crds.unwrap_or(if i.skip_crds {
            CrdsPolicy::Skip
        } else {
            CrdsPolicy::Create
        });
        (!i.disable_hooks, crds, !i.disable_wait, i.create_namespace)
    } else {
        let u = obj.spec.upgrade.clone().unwrap_or_default();
        (
            !u.disable_hooks,
            u.crds.unwrap_or(CrdsPolicy::Skip),
            !u.disable_wait,
            false,
        )
    };
    if create_ns {
        let ns = serde_json::json!({
            "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": t.namespace}
        });
        applier
            .apply_all(
                vec![ApplyItem {
                    object: ns,
                    mode: SsaMode::IfNotPresent,
                    force: false,
                }],
                &ApplyOptions::default(),
            )
            .await
            .map_err(|e| format!("creating namespace {}: {e}", t.namespace))?;
    }
    let pre = if install {
        "pre-install"
    } else {
        "pre-upgrade"
    };
    let post = if install {
        "post-install"
    } else {
        "post-upgrade"
    };
    if crds != CrdsPolicy::Skip && !rendered.crds.is_empty() {
        let mut items = Vec::new();
        for (path, text) in &rendered.crds {
            for doc in plumb_helm::render::split_manifests(text) {
                let v = yaml_object(&doc).map_err(|e| format!("CRD {path}: {e}"))?;
                if v.is_null() {
                    continue;
                }
                items.push(ApplyItem {
                    object: v,
                    mode: if crds == CrdsPolicy::Create {
                        SsaMode::IfNotPresent
                    } else {
                        SsaMode::Override
                    },
                    force: false,
                });
            }
        }
        applier
            .apply_all(items, &ApplyOptions::default())
            .await
            .map_err(|e| format!("applying CRDs: {e}"))?;
    }
    if hooks {
        run_hooks(applier, rel, pre, t).await?;
    }
    let objects = parse_manifest(applier, &rel.manifest, t).await?;
    apply_objects(applier, objects.clone(), t).await?;
    if let Some(prev) = previous {
        let old = manifest_refs(applier, &prev.manifest, &t.namespace).await?;
        prune_removed(applier, &old, &objects).await?;
    }
    if hooks {
        run_hooks(applier, rel, post, t).await?;
    }
    if wait {
        let refs: Vec<ObjectRef> = objects
            .iter()
            .filter_map(|o| ObjectRef::from_object(o).ok())
            .collect();
        wait_healthy(applier, &refs, t.timeout).await?;
    }
    Ok(())
}

async fn apply_objects(
    applier: &Applier,
    objects: Vec<Value>,
    t: &Target,
) -> std::result::Result<(), String> {
    let items = objects.into_iter().map(ApplyItem::new).collect();
    let opts = ApplyOptions {
        wait_timeout: t.timeout,
        ..ApplyOptions::default()
    };
    applier
        .apply_all(items, &opts)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Deletes the objects of the previous manifest that the new one no longer has.
async fn prune_removed(
    applier: &Applier,
    old: &[ObjectRef],
    new: &[Value],
) -> std::result::Result<(), String> {
    let keep: std::collections::HashSet<(String, String, String, String)> = new
        .iter()
        .filter_map(|o| ObjectRef::from_object(o).ok())
        .map(|r| (r.group, r.kind, r.namespace, r.name))
        .collect();
    let stale: Vec<ObjectRef> = old
        .iter()
        .filter(|r| {
            !keep.contains(&(
                r.group.clone(),
                r.kind.clone(),
                r.namespace.clone(),
                r.name.clone(),
            ))
        })
        .cloned()
        .collect();
    if stale.is_empty() {
        return Ok(());
    }
    applier
        .prune(&stale, &PruneOptions::default())
        .await
        .map(|_| ())
        .map_err(|e| format!("deleting removed objects: {e}"))
}

async fn wait_healthy(
    applier: &Applier,
    refs: &[ObjectRef],
    timeout: Duration,
) -> std::result::Result<(), String> {
    let start = Instant::now();
    let mut delay = Duration::from_millis(200);
    loop {
        let health = applier.health(refs).await.map_err(|e| e.to_string())?;
        let pending: Vec<String> = health
            .iter()
            .filter(|(_, h)| h.status != Health::Current)
            .map(|(r, h)| format!("{r}: {} {}", h.status, h.message))
            .collect();
        if let Some((r, h)) = health.iter().find(|(_, h)| h.status == Health::Failed) {
            return Err(format!("{r} failed: {}", h.message));
        }
        if pending.is_empty() {
            return Ok(());
        }
        if start.elapsed() >= timeout {
            return Err(format!("timeout waiting for: [{}]", pending.join(", ")));
        }
        tokio::time::sleep(delay.min(timeout.saturating_sub(start.elapsed()))).await;
        delay = (delay * 2).min(Duration::from_secs(2));
    }
}

/// Runs the hooks of `event` in weight order, recording each run in `rel`.
async fn run_hooks(
    applier: &Applier,
    rel: &mut Release,
    event: &str,
    t: &Target,
) -> std::result::Result<(), String> {
    run_hooks_where(applier, rel, event, t, |_| true)
        .await
        .map(|_| ())
}

/// Runs the hooks of `event` that `select` accepts; returns how many ran.
async fn run_hooks_where(
    applier: &Applier,
    rel: &mut Release,
    event: &str,
    t: &Target,
    select: impl Fn(&storage::HookRecord) -> bool,
) -> std::result::Result<usize, String> {
    // Helm 3 still runs hooks of the deprecated `test-success` event as tests.
    let matches = |e: &String| e == event || (event == "test" && e == "test-success");
    let mut order: Vec<usize> = (0..rel.hooks.len())
        .filter(|&i| rel.hooks[i].events.iter().any(matches) && select(&rel.hooks[i]))
        .collect();
    let count = order.len();
    order.sort_by(|&a, &b| {
        let (x, y) = (&rel.hooks[a], &rel.hooks[b]);
        x.weight.cmp(&y.weight).then_with(|| x.name.cmp(&y.name))
    });
    for i in order {
        let hook = rel.hooks[i].clone();
        let mut objs = parse_docs(applier, &hook.manifest, t).await?;
        let Some(object) = objs.pop() else { continue };
        let r = ObjectRef::from_object(&object).map_err(|e| e.to_string())?;
        let policies: Vec<&str> = if hook.delete_policies.is_empty() {
            vec!["before-hook-creation"]
        } else {
            hook.delete_policies.iter().map(String::as_str).collect()
        };
        if policies.contains(&"before-hook-creation") {
            delete_and_wait(applier, &r, t.timeout).await?;
        }
        rel.hooks[i].last_run.started_at = storage::now();
        rel.hooks[i].last_run.phase = "Running".into();
        let outcome = async {
            applier
                .apply_all(vec![ApplyItem::new(object)], &ApplyOptions::default())
                .await
                .map_err(|e| format!("{event} hook {}: {e}", hook.path))?;
            wait_hook(applier, &r, t.timeout)
                .await
                .map_err(|e| format!("{event} hook {} ({r}): {e}", hook.path))
        }
        .await;
        rel.hooks[i].last_run.completed_at = storage::now();
        rel.hooks[i].last_run.phase = if outcome.is_ok() {
            "Succeeded".into()
        } else {
            "Failed".into()
        };
        let delete = match &outcome {
            Ok(()) => policies.contains(&"hook-succeeded"),
            Err(_) => policies.contains(&"hook-failed"),
        };
        if delete {
            delete_and_wait(applier, &r, t.timeout).await?;
        }
        outcome?;
    }
    Ok(count)
}

/// Helm's test action: the release's `test` hooks that `spec.test.filters` select, with
/// `spec.test.timeout`; returns how many ran.
async fn run_tests(
    obj: &HelmRelease,
    applier: &Applier,
    t: &Target,
    rel: &mut Release,
) -> std::result::Result<usize, String> {
    let test = obj.spec.test.clone().unwrap_or_default();
    let mut t = t.clone();
    if let Some(d) = test.timeout.as_deref() {
        t.timeout = plumb_api::duration::parse(d).map_err(|e| format!("spec.test.timeout: {e}"))?;
    }
    let filters = test.filters.unwrap_or_default();
    let include: Vec<&str> = filters
        .iter()
        .filter(|f| !f.exclude)
        .map(|f| f.name.as_str())
        .collect();
    let exclude: Vec<&str> = filters
        .iter()
        .filter(|f| f.exclude)
        .map(|f| f.name.as_str())
        .collect();
    run_hooks_where(applier, rel, "test", &t, |h| {
        (include.is_empty() || include.contains(&h.name.as_str()))
            && !exclude.contains(&h.name.as_str())
    })
    .await
}

/// Whether a failed test is ignored (no remediation): the action's
/// `remediation.ignoreTestFailures`, else `test.ignoreFailures`.
fn ignores_test_failures(obj: &HelmRelease, install: bool) -> bool {
    let action = if install {
        obj.spec
            .install
            .as_ref()
            .and_then(|i| i.remediation.as_ref())
            .and_then(|r| r.ignore_test_failures)
    } else {
        obj.spec
            .upgrade
            .as_ref()
            .and_then(|u| u.remediation.as_ref())
            .and_then(|r| r.ignore_test_failures)
    };
    action.unwrap_or_else(|| obj.spec.test.as_ref().is_some_and(|t| t.ignore_failures))
}

/// Waits for a Job to complete or a Pod to succeed; other kinds are done once applied.
async fn wait_hook(
    applier: &Applier,
    r: &ObjectRef,
    timeout: Duration,
) -> std::result::Result<(), String> {
    if !matches!(r.kind.as_str(), "Job" | "Pod") {
        return Ok(());
    }
    let api = dynamic_api(applier, r).await?;
    let start = Instant::now();
    loop {
        let o = api
            .get_opt(&r.name)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| "hook object disappeared".to_string())?;
        let st = &o.data["status"];
        if r.kind == "Job" {
            if let Some(conds) = st["conditions"].as_array() {
                for c in conds {
                    if c["status"] == "True" && c["type"] == "Complete" {
                        return Ok(());
                    }
                    if c["status"] == "True" && c["type"] == "Failed" {
                        return Err(format!(
                            "job failed: {}",
                            c["message"].as_str().unwrap_or("BackoffLimitExceeded")
                        ));
                    }
                }
            }
        } else {
            match st["phase"].as_str() {
                Some("Succeeded") => return Ok(()),
                Some("Failed") => return Err("pod failed".into()),
                _ => {}
            }
        }
        if start.elapsed() >= timeout {
            return Err("timed out waiting for the hook to complete".into());
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

async fn delete_and_wait(
    applier: &Applier,
    r: &ObjectRef,
    timeout: Duration,
) -> std::result::Result<(), String> {
    let api = dynamic_api(applier, r).await?;
    let dp = DeleteParams::background();
    match api.delete(&r.name, &dp).await {
        Ok(_) => {}
        Err(kube::Error::Api(ae)) if ae.code == 404 => return Ok(()),
        Err(e) => return Err(format!("deleting {r}: {e}")),
    }
    let start = Instant::now();
    while api
        .get_opt(&r.name)
        .await
        .map_err(|e| format!("reading {r}: {e}"))?
        .is_some()
    {
        if start.elapsed() >= timeout {
            return Err(format!("timed out waiting for {r} to be deleted"));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

type KindKey = (String, String, String);

fn kind_cache() -> &'static Mutex<HashMap<KindKey, (ApiResource, bool)>> {
    static CACHE: OnceLock<Mutex<HashMap<KindKey, (ApiResource, bool)>>> = OnceLock::new();
    CACHE.get_or_init(Mutex::default)
}

/// (resource, namespaced) of a kind, through discovery (cached per process).
async fn resolve_kind(
    applier: &Applier,
    r: &ObjectRef,
) -> std::result::Result<(ApiResource, bool), String> {
    let key = (r.group.clone(), r.version.clone(), r.kind.clone());
    if let Some(v) = kind_cache().lock().ok().and_then(|m| m.get(&key).cloned()) {
        return Ok(v);
    }
    let gvk = kube::api::GroupVersionKind::gvk(&r.group, &r.version, &r.kind);
    let (ar, caps) = kube::discovery::pinned_kind(applier.client(), &gvk)
        .await
        .map_err(|e| format!("resolving kind {} {}: {e}", r.api_version(), r.kind))?;
    let v = (ar, caps.scope == KubeScope::Namespaced);
    if let Ok(mut m) = kind_cache().lock() {
        m.insert(key, v.clone());
    }
    Ok(v)
}

async fn dynamic_api(
    applier: &Applier,
    r: &ObjectRef,
) -> std::result::Result<Api<DynamicObject>, String> {
    let (ar, namespaced) = resolve_kind(applier, r).await?;
    Ok(if namespaced {
        Api::namespaced_with(applier.client().clone(), &r.namespace, &ar)
    } else {
        Api::all_with(applier.client().clone(), &ar)
    })
}

fn yaml_object(doc: &str) -> std::result::Result<Value, String> {
    let v = plumb_helm::encode::yaml_to_value(doc)?.to_json();
    match v {
        Value::Null | Value::Object(_) => Ok(v),
        _ => Err("document is not a map".into()),
    }
}

/// Parses documents, fills in the release namespace of namespaced objects and stamps
/// Helm's ownership metadata and Flux's origin labels.
async fn parse_docs(
    applier: &Applier,
    text: &str,
    t: &Target,
) -> std::result::Result<Vec<Value>, String> {
    let mut out = Vec::new();
    for doc in plumb_helm::render::split_manifests(text) {
        let mut v = yaml_object(&doc)?;
        if v.is_null() {
            continue;
        }
        let r = ObjectRef::from_object(&v).map_err(|e| e.to_string())?;
        let (_, namespaced) = resolve_kind(applier, &r).await?;
        let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) else {
            continue;
        };
        if namespaced && r.namespace.is_empty() {
            meta.insert("namespace".into(), Value::String(t.namespace.clone()));
        }
        if !namespaced {
            meta.remove("namespace");
        }
        let labels = meta
            .entry("labels")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Some(l) = labels.as_object_mut() {
            l.insert("app.kubernetes.io/managed-by".into(), "Helm".into());
            for (k, v) in &t.origin {
                l.insert(k.clone(), Value::String(v.clone()));
            }
        }
        let ann = meta
            .entry("annotations")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Some(a) = ann.as_object_mut() {
            a.insert("meta.helm.sh/release-name".into(), t.name.clone().into());
            a.insert(
                "meta.helm.sh/release-namespace".into(),
                t.namespace.clone().into(),
            );
        }
        out.push(v);
    }
    Ok(out)
}

async fn parse_manifest(
    applier: &Applier,
    manifest: &str,
    t: &Target,
) -> std::result::Result<Vec<Value>, String> {
    parse_docs(applier, manifest, t).await
}

/// The objects a stored manifest names (kinds no longer served are skipped).
async fn manifest_refs(
    applier: &Applier,
    manifest: &str,
    namespace: &str,
) -> std::result::Result<Vec<ObjectRef>, String> {
    let mut out = Vec::new();
    for doc in plumb_helm::render::split_manifests(manifest) {
        let v = yaml_object(&doc)?;
        let Ok(mut r) = ObjectRef::from_object(&v) else {
            continue;
        };
        let Ok((_, namespaced)) = resolve_kind(applier, &r).await else {
            continue;
        };
        if namespaced && r.namespace.is_empty() {
            r.namespace = namespace.to_string();
        }
        if !namespaced {
            r.namespace.clear();
        }
        out.push(r);
    }
    Ok(out)
}

/// All stored revisions of the release, oldest first.
async fn load_history(t: &Target) -> std::result::Result<Vec<Release>, Failure> {
    let api: Api<Secret> = Api::namespaced(t.store.clone(), &t.storage_ns);
    let lp = ListParams::default().labels(&format!("owner=helm,name={}", t.name));
    let list = api.list(&lp).await.map_err(|e| {
        Failure::new(
            Class::Transient,
            reason::GET_LAST_RELEASE_FAILED,
            format!(
                "listing release Secrets of {} in {}: {e}",
                t.name, t.storage_ns
            ),
        )
    })?;
    let mut out = Vec::new();
    for s in list.items {
        let Some(data) = s.data.as_ref().and_then(|d| d.get("release")) else {
            continue;
        };
        let rel = storage::decode(&data.0).map_err(|e| {
            Failure::new(
                Class::Stalled,
                reason::GET_LAST_RELEASE_FAILED,
                format!("reading Secret {}/{}: {e}", t.storage_ns, s.name_any()),
            )
        })?;
        out.push(rel);
    }
    out.sort_by_key(|r| r.version);
    Ok(out)
}

async fn write_release(t: &Target, rel: &Release) -> std::result::Result<(), Failure> {
    let fail = |m: String| Failure::new(Class::Transient, reason::RECONCILIATION_FAILED, m);
    let storage_ns = t.storage_ns.as_str();
    let obj = storage::secret_object(rel, storage_ns).map_err(|e| fail(e.to_string()))?;
    let api: Api<Secret> = Api::namespaced(t.store.clone(), storage_ns);
    let name = storage::secret_name(&rel.name, rel.version);
    api.patch(
        &name,
        &PatchParams::apply(field_manager::HELM_CONTROLLER).force(),
        &Patch::Apply(&obj),
    )
    .await
    .map_err(|e| fail(format!("writing release Secret {storage_ns}/{name}: {e}")))?;
    Ok(())
}

/// Deletes the oldest revisions beyond `max` (0 keeps everything); returns how many.
async fn prune_history(
    t: &Target,
    history: &[Release],
    max: i64,
) -> std::result::Result<usize, Failure> {
    if max <= 0 || history.len() as i64 <= max {
        return Ok(0);
    }
    let api: Api<Secret> = Api::namespaced(t.store.clone(), &t.storage_ns);
    let excess = history.len() - max as usize;
    for r in history.iter().take(excess) {
        let name = storage::secret_name(&r.name, r.version);
        match api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(ae)) if ae.code == 404 => {}
            Err(e) => {
                return Err(Failure::new(
                    Class::Transient,
                    reason::RECONCILIATION_FAILED,
                    format!("deleting old release Secret {}/{name}: {e}", t.storage_ns),
                ));
            }
        }
    }
    Ok(excess)
}

/// Status history: newest first, down to the newest successful release.
fn snapshots(history: &[Release]) -> Vec<Snapshot> {
    let mut out = Vec::new();
    for r in history.iter().rev() {
        out.push(snapshot(r));
        if r.info.status == rstatus::DEPLOYED || r.info.status == rstatus::SUPERSEDED {
            break;
        }
    }
    out
}

fn time_of(s: &str) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Time {
    let t = s
        .parse::<k8s_openapi::jiff::Timestamp>()
        .unwrap_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH);
    k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(t)
}

fn snapshot(r: &Release) -> Snapshot {
    Snapshot {
        api_version: None,
        digest: storage::release_digest(r),
        name: r.name.clone(),
        namespace: r.namespace.clone(),
        version: r.version,
        status: r.info.status.clone(),
        chart_name: r.chart.name().to_string(),
        chart_version: r.chart.version().to_string(),
        app_version: r.chart.app_version().map(str::to_string),
        config_digest: storage::values_digest(&r.config),
        first_deployed: time_of(&r.info.first_deployed),
        last_deployed: time_of(&r.info.last_deployed),
        deleted: (!r.info.deleted.is_empty()).then(|| time_of(&r.info.deleted)),
        test_hooks: test_hooks(r),
        oci_digest: None,
    }
}

/// `t` with an action's own timeout (`install.timeout`, ...) when it sets a valid one;
/// `spec.timeout` otherwise.
fn with_timeout(t: &Target, action: Option<&str>) -> Target {
    let mut t = t.clone();
    if let Some(d) = action.and_then(|a| plumb_api::duration::parse(a).ok()) {
        t.timeout = d;
    }
    t
}

/// The test hooks of `r` that ran, by name, as Flux records them in `status.history`.
fn test_hooks(r: &Release) -> Option<BTreeMap<String, plumb_api::helm_release::TestHookStatus>> {
    let time = |s: &str| (!s.is_empty()).then(|| time_of(s));
    let hooks: BTreeMap<_, _> = r
        .hooks
        .iter()
        .filter(|h| h.events.iter().any(|e| e == "test" || e == "test-success"))
        .filter(|h| !h.last_run.started_at.is_empty())
        .map(|h| {
            (
                h.name.clone(),
                plumb_api::helm_release::TestHookStatus {
                    last_started: time(&h.last_run.started_at),
                    last_completed: time(&h.last_run.completed_at),
                    phase: (!h.last_run.phase.is_empty()).then(|| h.last_run.phase.clone()),
                },
            )
        })
        .collect();
    (!hooks.is_empty()).then_some(hooks)
}

/// Loads and renders the chart off the async runtime (the chart model is single-threaded).
async fn build(
    src: ChartSource,
    config: &Map<String, Value>,
    t: &Target,
    revision: i64,
    is_install: bool,
    post: Vec<plumb_kustomize::Overlay>,
    chart_opts: ChartOptions,
) -> std::result::Result<Built, Failure> {
    let values = Value::Object(config.clone());
    let release = plumb_helm::ReleaseInfo {
        name: t.name.clone(),
        namespace: t.namespace.clone(),
        revision,
        is_install,
    };
    tokio::task::spawn_blocking(move || {
        let mut chart = match &src {
            ChartSource::Dir { chart, .. } => plumb_helm::load_dir(chart),
            ChartSource::Archive(data) => plumb_helm::load_archive(data),
        }
        .map_err(|e| {
            Failure::new(
                Class::Stalled,
                reason::ARTIFACT_FAILED,
                format!("loading chart failed: {e}"),
            )
        })?;
        apply_values_files(&mut chart, &src, &chart_opts)?;
        apply_revision_version(&mut chart, &src, &chart_opts);
        let user = match plumb_helm::Value::from_json(&values) {
            plumb_helm::Value::Nil => plumb_helm::Value::empty_map(),
            v => v,
        };
        let opts = plumb_helm::RenderOptions {
            release,
            capabilities: chart_opts.capabilities,
            lookup: None,
        };
        let mut rendered = plumb_helm::render(&chart, &user, &opts).map_err(|e| {
            let r = match e {
                plumb_helm::HelmError::Load { .. } => reason::ARTIFACT_FAILED,
                _ => reason::INSTALL_FAILED,
            };
            Failure::new(Class::Stalled, r, format!("chart render failed: {e}"))
        })?;
        for overlay in &post {
            rendered.manifests = post_render(&rendered.manifests, overlay)?;
        }
        Ok(Built {
            chart: storage::chart_record(&chart),
            rendered,
        })
    })
    .await
    .map_err(|e| Failure::new(Class::Transient, reason::INSTALL_FAILED, e.to_string()))?
}

/// Runs one kustomize post-renderer (patches, images) over the rendered manifests, as
/// Flux's post-renderer does (hooks are not post-rendered).
fn post_render(
    manifests: &[plumb_helm::Manifest],
    overlay: &plumb_kustomize::Overlay,
) -> std::result::Result<Vec<plumb_helm::Manifest>, Failure> {
    let fail = |m: String| {
        Failure::new(
            Class::Stalled,
            reason::INSTALL_FAILED,
            format!("post-renderer failed: {m}"),
        )
    };
    let dir = tempfile::Builder::new()
        .prefix("plumb-hr-post-")
        .tempdir()
        .map_err(|e| fail(format!("creating work dir: {e}")))?;
    std::fs::write(
        dir.path().join("resources.yaml"),
        storage::manifest_text(manifests),
    )
    .map_err(|e| fail(format!("writing manifests: {e}")))?;
    let opts = plumb_kustomize::BuildOptions {
        generate_missing_kustomization: true,
        ..Default::default()
    };
    let objects = plumb_kustomize::build_with_overlay(dir.path(), dir.path(), &opts, overlay)
        .map_err(|e| fail(e.to_string()))?;
    let str_at = |o: &Value, p: &str| {
        o.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    Ok(objects
        .iter()
        .map(|o| plumb_helm::Manifest {
            path: "post-renderer/kustomize".into(),
            content: plumb_kustomize::to_yaml(o).trim().to_string(),
            api_version: str_at(o, "/apiVersion"),
            kind: str_at(o, "/kind"),
            name: str_at(o, "/metadata/name"),
        })
        .collect())
}

/// Where a chart is loaded from.
enum ChartSource {
    /// A chart directory inside a GitRepository artifact.
    Dir {
        /// The chart directory.
        chart: PathBuf,
        /// The extracted artifact (`valuesFiles` are relative to it).
        root: PathBuf,
        /// The artifact revision (`<ref>@sha1:<hex>`).
        revision: String,
    },
    /// A packaged chart from a HelmRepository.
    Archive(Vec<u8>),
}

/// How the chart's defaults and version are settled before rendering
/// (`spec.chart.spec.valuesFiles`, `reconcileStrategy`) and what the cluster offers.
struct ChartOptions {
    values_files: Vec<String>,
    ignore_missing_values_files: bool,
    /// `reconcileStrategy: Revision`: the version gets `+<commit>`.
    by_revision: bool,
    capabilities: plumb_helm::Capabilities,
}

/// Replaces the chart's default values with `valuesFiles` merged in order (Flux: the
/// chart's `values.yaml` counts only when listed). Paths are relative to the source
/// artifact for a GitRepository chart, to the chart for a packaged one.
fn apply_values_files(
    chart: &mut plumb_helm::Chart,
    src: &ChartSource,
    opts: &ChartOptions,
) -> std::result::Result<(), Failure> {
    if opts.values_files.is_empty() {
        return Ok(());
    }
    let fail = |m: String| Failure::new(Class::Stalled, reason::ARTIFACT_FAILED, m);
    let mut files = Vec::new();
    for f in &opts.values_files {
        let rel = f.trim_start_matches("./");
        let text: Option<String> = match src {
            ChartSource::Dir { root, .. } => {
                let p = PathBuf::from(rel);
                if !p
                    .components()
                    .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
                {
                    return Err(fail(format!(
                        "values file '{f}' must stay inside the source"
                    )));
                }
                let path = root.join(&p);
                // Symlinks may not lead out of the artifact.
                match (path.canonicalize(), root.canonicalize()) {
                    (Ok(real), Ok(base)) if real.starts_with(&base) => Some(
                        std::fs::read_to_string(&real)
                            .map_err(|e| fail(format!("reading values file '{f}': {e}")))?,
                    ),
                    (Ok(_), Ok(_)) => {
                        return Err(fail(format!(
                            "values file '{f}' must stay inside the source"
                        )));
                    }
                    _ => None,
                }
            }
            ChartSource::Archive(_) if rel == "values.yaml" => {
                Some(plumb_helm::encode::to_yaml(&chart.values))
            }
            ChartSource::Archive(_) => chart
                .files
                .get(rel)
                .map(|b| String::from_utf8_lossy(b).into_owned()),
        };
        match text {
            Some(t) => files.push(
                plumb_helm::parse_values(&t)
                    .map_err(|e| fail(format!("values file '{f}': {e}")))?,
            ),
            None if opts.ignore_missing_values_files => {}
            None => {
                return Err(fail(format!(
                    "values file '{f}' not found in the chart source"
                )));
            }
        }
    }
    chart.values = plumb_helm::merge_user_values(&files, &[])
        .map_err(|e| fail(format!("merging values files: {e}")))?;
    Ok(())
}

/// `reconcileStrategy: Revision`: the chart version gets the source commit as build
/// metadata (`1.2.3+0123456789ab`), so every new commit is a new release, as Flux does.
fn apply_revision_version(chart: &mut plumb_helm::Chart, src: &ChartSource, opts: &ChartOptions) {
    let ChartSource::Dir { revision, .. } = src else {
        return;
    };
    if !opts.by_revision {
        return;
    }
    let commit = revision.rsplit(':').next().unwrap_or(revision);
    let short: String = commit.chars().take(12).collect();
    if short.is_empty() {
        return;
    }
    let version = format!("{}+{short}", chart.version);
    let mut meta = chart.meta.to_json();
    if let Some(m) = meta.as_object_mut() {
        m.insert("version".into(), Value::String(version.clone()));
    }
    chart.meta = plumb_helm::Value::from_json(&meta);
    chart.version = version;
}

/// Fetches the chart: a directory of the GitRepository artifact (extracted into a work
/// dir that lives as long as the returned guard), or an archive of a HelmRepository.
async fn fetch_chart(
    obj: &HelmRelease,
    ctx: &Context,
) -> std::result::Result<(ChartSource, Option<Arc<tempfile::TempDir>>), Failure> {
    let Some(tpl) = &obj.spec.chart else {
        return Err(Failure::new(
            Class::Stalled,
            reason::ARTIFACT_FAILED,
            "spec.chartRef is not supported yet; use spec.chart",
        ));
    };
    let src = &tpl.spec.source_ref;
    let own = obj.namespace().unwrap_or_default();
    let ns = src.namespace.clone().unwrap_or_else(|| own.clone());
    if ctx.config.no_cross_namespace_refs && ns != own {
        return Err(Failure::new(
            Class::Stalled,
            reason::ACCESS_DENIED,
            format!(
                "cannot access {}/{ns}/{}: cross-namespace references are disabled",
                src.kind, src.name
            ),
        ));
    }
    if src.kind == ChartSourceKind::HelmRepository {
        let api: Api<HelmRepository> = Api::namespaced(ctx.client.clone(), &ns);
        let repo = api
            .get_opt(&src.name)
            .await
            .map_err(|e| {
                Failure::new(
                    Class::Transient,
                    reason::ARTIFACT_FAILED,
                    format!("getting HelmRepository '{ns}/{}': {e}", src.name),
                )
            })?
            .ok_or_else(|| {
                Failure::new(
                    Class::Waiting,
                    reason::ARTIFACT_FAILED,
                    format!("Source 'HelmRepository/{ns}/{}' not found", src.name),
                )
            })?;
        let version = if tpl.spec.version.is_empty() {
            "*"
        } else {
            tpl.spec.version.as_str()
        };
        let chart =
            crate::helmrepository::resolve_chart(ctx, &repo, &tpl.spec.chart, version).await?;
        return Ok((ChartSource::Archive(chart.archive), None));
    }
    if src.kind != ChartSourceKind::GitRepository {
        return Err(Failure::new(
            Class::Stalled,
            reason::ARTIFACT_FAILED,
            format!("chart source kind {} is not supported yet", src.kind),
        ));
    }
    // Read from the server, not a watch store: this reconcile may have been queued by a
    // GitRepository watch event that another watch's store has not seen yet.
    let api: Api<GitRepository> = Api::namespaced(ctx.client.clone(), &ns);
    let repo = api.get_opt(&src.name).await.map_err(|e| {
        Failure::new(
            Class::Transient,
            reason::ARTIFACT_FAILED,
            format!("getting GitRepository '{ns}/{}': {e}", src.name),
        )
    })?;
    let artifact = repo
        .and_then(|r| r.status)
        .and_then(|s| s.artifact)
        .ok_or_else(|| {
            Failure::new(
                Class::Waiting,
                reason::ARTIFACT_FAILED,
                format!(
                    "Source 'GitRepository/{ns}/{}' is not ready, artifact not found",
                    src.name
                ),
            )
        })?;
    let work = extracted(
        ctx,
        &artifact,
        obj.timeout().unwrap_or(Duration::from_secs(300)),
    )
    .await?;
    let rel = PathBuf::from(
        tpl.spec
            .chart
            .trim_start_matches("./")
            .trim_start_matches('/'),
    );
    if !rel
        .components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(Failure::new(
            Class::Stalled,
            reason::ARTIFACT_FAILED,
            format!(
                "invalid chart path '{}': must stay inside the source",
                tpl.spec.chart
            ),
        ));
    }
    let dir = work.path().join(rel);
    if !dir.join("Chart.yaml").is_file() {
        return Err(Failure::new(
            Class::Stalled,
            reason::ARTIFACT_FAILED,
            format!(
                "no chart at '{}' in GitRepository '{ns}/{}'",
                tpl.spec.chart, src.name
            ),
        ));
    }
    Ok((
        ChartSource::Dir {
            chart: dir,
            root: work.path().to_path_buf(),
            revision: artifact.revision.clone(),
        },
        Some(work),
    ))
}

/// A GitRepository artifact extracted once per digest and shared (read-only) by the
/// HelmReleases charted from it: a thousand releases of one source extract it once.
type Extracted = Arc<tokio::sync::OnceCell<Arc<tempfile::TempDir>>>;

/// Most recently used extracted artifacts, newest last.
fn extracted_cache() -> &'static Mutex<Vec<(String, Extracted)>> {
    static CACHE: OnceLock<Mutex<Vec<(String, Extracted)>>> = OnceLock::new();
    CACHE.get_or_init(Mutex::default)
}

/// How many extracted artifacts are kept; a directory in use outlives its eviction.
const EXTRACTED_KEEP: usize = 16;

async fn extracted(
    ctx: &Context,
    artifact: &plumb_api::meta::Artifact,
    timeout: Duration,
) -> std::result::Result<Arc<tempfile::TempDir>, Failure> {
    let key = artifact
        .digest
        .clone()
        .unwrap_or_else(|| artifact.url.clone());
    let cell = {
        let mut cache = extracted_cache().lock().unwrap_or_else(|p| p.into_inner());
        let cell = match cache.iter().position(|(k, _)| *k == key) {
            Some(i) => cache.remove(i).1,
            None => Extracted::default(),
        };
        cache.push((key.clone(), cell.clone()));
        let excess = cache.len().saturating_sub(EXTRACTED_KEEP);
        cache.drain(..excess);
        cell
    };
    let dir = cell
        .get_or_try_init(|| async {
            let work =
                crate::kustomization::fetch_artifact(ctx, artifact, "plumb-hr-", timeout).await?;
            Ok::<_, Failure>(Arc::new(work))
        })
        .await?;
    Ok(dir.clone())
}

/// Values as Flux composes them: each `valuesFrom` entry in order (whole documents
/// deep-merged, or one value set at `targetPath`), then `spec.values` on top.
pub async fn compose_values(
    obj: &HelmRelease,
    ctx: &Context,
) -> std::result::Result<Map<String, Value>, Failure> {
    let ns = obj.namespace().unwrap_or_default();
    let mut out = Map::new();
    for r in &obj.spec.values_from {
        let key = r.values_key.clone().unwrap_or_else(|| "values.yaml".into());
        let what = format!("{:?} '{ns}/{}'", r.kind, r.name);
        let miss = |m: String| Failure::new(Class::Waiting, reason::INIT_FAILED, m);
        let data: Option<Vec<u8>> = match r.kind {
            ValuesKind::ConfigMap => {
                let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &ns);
                let cm = api
                    .get_opt(&r.name)
                    .await
                    .map_err(|e| miss(format!("getting {what}: {e}")))?;
                match cm {
                    None => None,
                    Some(cm) => cm
                        .data
                        .as_ref()
                        .and_then(|d| d.get(&key))
                        .map(|s| s.as_bytes().to_vec())
                        .or_else(|| {
                            cm.binary_data
                                .as_ref()
                                .and_then(|d| d.get(&key))
                                .map(|b| b.0.clone())
                        }),
                }
            }
            ValuesKind::Secret => {
                let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
                let s = api
                    .get_opt(&r.name)
                    .await
                    .map_err(|e| miss(format!("getting {what}: {e}")))?;
                s.and_then(|s| s.data.and_then(|d| d.get(&key).map(|b| b.0.clone())))
            }
        };
        let Some(data) = data else {
            if r.optional {
                continue;
            }
            return Err(miss(format!(
                "could not find key '{key}' in {what} (or the object is missing)"
            )));
        };
        let text = String::from_utf8_lossy(&data).to_string();
        match &r.target_path {
            Some(path) if !path.is_empty() => {
                let tmp = plumb_helm::Value::empty_map();
                plumb_helm::strvals::parse_into(&format!("{path}={}", text.trim()), &tmp).map_err(
                    |e| {
                        Failure::new(
                            Class::Stalled,
                            reason::INIT_FAILED,
                            format!("invalid targetPath '{path}' for {what}: {e}"),
                        )
                    },
                )?;
                if let Value::Object(m) = tmp.to_json() {
                    merge_maps(&mut out, m);
                }
            }
            _ => {
                let v = plumb_helm::parse_values(&text).map_err(|e| {
                    Failure::new(
                        Class::Stalled,
                        reason::INIT_FAILED,
                        format!("unable to read values from key '{key}' in {what}: {e}"),
                    )
                })?;
                if let Value::Object(m) = v.to_json() {
                    merge_maps(&mut out, m);
                }
            }
        }
    }
    if let Some(Value::Object(m)) = &obj.spec.values {
        merge_maps(&mut out, m.clone());
    }
    Ok(out)
}

/// Deep merge as Helm's `MergeMaps`: maps merge key by key, anything else replaces.
fn merge_maps(dst: &mut Map<String, Value>, src: Map<String, Value>) {
    for (k, v) in src {
        match (dst.get_mut(&k), v) {
            (Some(Value::Object(d)), Value::Object(s)) => merge_maps(d, s),
            (_, v) => {
                dst.insert(k, v);
            }
        }
    }
}

/// The applier to use: the shared one (as `helm-controller`), or one impersonating
/// `spec.serviceAccountName`.
async fn applier_for(obj: &HelmRelease, ctx: &Context) -> std::result::Result<Applier, Failure> {
    let sa = obj
        .spec
        .service_account_name
        .clone()
        .or_else(|| ctx.config.default_service_account.clone());
    if let Some(kc) = &obj.spec.kube_config {
        let ns = obj.namespace().unwrap_or_default();
        return ctx
            .remote
            .applier(
                &ctx.client,
                &ns,
                kc,
                sa.as_deref(),
                field_manager::HELM_CONTROLLER,
                ctx.config.apply_concurrency,
            )
            .await;
    }
    let Some(sa) = sa else {
        return Ok(ctx.helm_applier.clone());
    };
    let ns = obj.namespace().unwrap_or_default();
    ctx.impersonating_applier_as(&ns, &sa, field_manager::HELM_CONTROLLER)
        .map_err(|e| {
            Failure::new(
                Class::Stalled,
                reason::RECONCILIATION_FAILED,
                format!("impersonating service account '{ns}/{sa}': {e}"),
            )
        })
}

async fn check_dependencies(obj: &HelmRelease, ctx: &Context) -> std::result::Result<(), Failure> {
    let ns = obj.namespace().unwrap_or_default();
    for dep in &obj.spec.depends_on {
        let dns = dep.namespace.clone().unwrap_or_else(|| ns.clone());
        // plumb's extension: `kind`/`apiVersion` name a dependency of another kind (a
        // Kustomization that installs a CRD the chart needs, say).
        if let Some(other) = dep.other_kind() {
            crate::kustomization::check_other_kind(ctx, other, &dns, &dep.name).await?;
            continue;
        }
        let api: Api<HelmRelease> = Api::namespaced(ctx.client.clone(), &dns);
        let d = api.get_opt(&dep.name).await.map_err(|e| {
            Failure::new(
                Class::Transient,
                reason::DEPENDENCY_NOT_READY,
                format!("getting dependency '{dns}/{}': {e}", dep.name),
            )
        })?;
        let ready = d.as_ref().is_some_and(|d| {
            let st = d.status.as_ref();
            conditions::is_ready_for_generation(
                st.map(|s| s.conditions.as_slice()).unwrap_or_default(),
                d.meta().generation,
            ) && st.and_then(|s| s.observed_generation) == d.meta().generation
        });
        if !ready {
            return Err(Failure::new(
                Class::Waiting,
                reason::DEPENDENCY_NOT_READY,
                format!("dependency '{dns}/{}' is not ready", dep.name),
            ));
        }
    }
    Ok(())
}

/// Origin labels Flux puts on the objects of a HelmRelease (not used for ownership: the
/// release manifest is the record of what the release owns).
pub fn origin_labels(obj: &HelmRelease) -> BTreeMap<String, String> {
    BTreeMap::from([
        (label::HELM_NAME.to_string(), obj.name_any()),
        (
            label::HELM_NAMESPACE.to_string(),
            obj.namespace().unwrap_or_default(),
        ),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_maps_is_deep_and_later_wins() {
        let mut a = serde_json::json!({"a": {"b": 1, "c": 2}, "x": [1]})
            .as_object()
            .cloned()
            .unwrap();
        let b = serde_json::json!({"a": {"c": 3}, "x": [2]})
            .as_object()
            .cloned()
            .unwrap();
        merge_maps(&mut a, b);
        assert_eq!(
            Value::Object(a),
            serde_json::json!({"a": {"b": 1, "c": 3}, "x": [2]})
        );
    }

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

    #[test]
    fn remediation_defaults_follow_flux() {
        let spec: plumb_api::HelmReleaseSpec = serde_json::from_value(serde_json::json!({
            "interval": "5m", "upgrade": {"remediation": {"retries": 2}}
        }))
        .unwrap();
        let hr = HelmRelease::new("x", spec);
        assert_eq!(remediation_of(&hr, false), (2, true));
        assert_eq!(remediation_of(&hr, true), (0, false));
        assert_eq!(upgrade_strategy(&hr), RemediationStrategy::Rollback);
    }
}
