//! Release plan and perform: decide between up to date, install and upgrade; record the
//! pending release; perform it (namespace, CRDs, hooks, objects, removed objects, wait),
//! run the tests; record the outcome, count failures and remediate; keep the history.
//! [`plan`] renders what the next release would do without doing it (`plumb diff hr`).

use std::collections::BTreeMap;

use kube::Resource;
use plumb_api::conditions::{self, Status as CondStatus};
use plumb_api::consts::{condition, reason};
use plumb_api::helm_release::ReleaseAction;
use plumb_api::{HelmRelease, HelmReleaseStatus};
use plumb_helm::storage::{self, Release, status as rstatus};
use plumb_ssa::{Applier, ObjectRef};
use serde_json::Value;

use super::actions::attempt_retry_interval;
use super::apply_method;
use super::chart::fetch_chart;
use super::drift::{drift, track_drift};
use super::history::{is_install_only, load_history, prune_history, snapshots, write_release};
use super::hooks::{ignores_test_failures, run_tests};
use super::manifest::{manifest_refs, parse_manifest};
use super::perform::{Attempt, check_prune_budget, inventory_of, perform};
use super::postrender::PostRender;
use super::remediation::{remediate, remediation_of, remediation_reason};
use super::render::{build, chart_options, post_render_changed, post_render_digests};
use super::target::{Target, applier, target_of};
use super::values::{compose_values, merge_maps};
use crate::context::Context;
use crate::outcome::{Class, Failure};

/// A successful reconcile of a HelmRelease.
pub(super) struct Released {
    /// Ready reason.
    pub(super) reason: &'static str,
    /// Ready (and Released) message.
    pub(super) message: String,
    /// Set when a release was made (Released condition reason).
    pub(super) released: Option<&'static str>,
}

/// The steps after dependencies: chart, values, render, then up to date, or a new release.
pub(super) async fn run_once(
    obj: &HelmRelease,
    ctx: &Context,
    status: &mut HelmReleaseStatus,
    force: bool,
) -> std::result::Result<Released, Failure> {
    let applier = applier(obj, ctx).await?;
    let t = target_of(obj, ctx, &applier);
    status.helm_chart =
        super::helmchart::helm_chart_ref(obj, ctx).map(|(ns, n)| format!("{ns}/{n}"));
    let (chart_src, _work) = fetch_chart(obj, ctx, true).await?;
    let config = compose_values(obj, ctx).await?;
    status.storage_namespace = Some(t.storage_ns.clone());

    let history = unlock_pending(&t, load_history(&t).await?).await?;
    let latest = history.last().cloned();
    let revision = latest.as_ref().map_or(1, |r| r.version + 1);
    let install = latest
        .as_ref()
        .is_none_or(|r| r.info.status == rstatus::UNINSTALLED);
    let config = if install {
        config
    } else {
        preserve_values(obj, &history, config)
    };
    let config_digest = storage::values_digest(&config);
    status.last_attempted_config_digest = Some(config_digest.clone());
    // The HelmChart already merged valuesFiles and stamped the Revision version.
    let mut opts = chart_options(obj, ctx, &t, true).await;
    opts.skip_schema_validation = skips_schema_validation(obj, install);
    let built = build(
        chart_src,
        &config,
        &t,
        revision,
        install,
        PostRender::of(obj),
        opts,
    )
    .await?;
    // chartNameChangeStrategy Reinstall (the default): a release of another chart is
    // uninstalled, then installed afresh.
    if let Some(l) = latest.as_ref().filter(|_| !install)
        && l.chart.name() != built.chart.name()
        && reinstalls_on_rename(obj)
    {
        uninstall_renamed(obj, &applier, &t, l, &history, built.chart.name()).await?;
        return Box::pin(run_once(obj, ctx, status, force)).await;
    }
    let chart_version = built.chart.version().to_string();
    status.last_attempted_revision = Some(chart_version.clone());
    let digests = post_render_digests(obj);
    let post_changed = post_render_changed(obj, status, &digests);

    // Up to date: the latest release is deployed from the same chart and values (and no
    // one-off upgrade is forced).
    if let Some(l) = &latest
        && !force
        && l.info.status == rstatus::DEPLOYED
        && l.chart.name() == built.chart.name()
        && l.chart.version() == chart_version
        && storage::values_digest(&l.config) == config_digest
        && !post_changed
    {
        (
            status.observed_post_renderers_digest,
            status.observed_common_metadata_digest,
        ) = (Some(digests.0), Some(digests.1));
        status.history = snapshots(&history);
        drift(obj, ctx, &applier, &t, l).await?;
        return Ok(up_to_date(&history, &t, l));
    }

    let a = Attempt {
        obj,
        ctx,
        applier,
        t,
        install,
    };
    let failures_before = check_retries(&a, status, force, &history)?;
    let mut rel = pending_release(&a, built.chart, config, &built.rendered, revision);
    let live = if install {
        &[][..]
    } else {
        live_releases(&history)
    };
    rel.apply_method = apply_method::for_attempt(obj, install, live)
        .as_str()
        .into();
    if let Some(prev) = latest.as_ref().filter(|_| !install) {
        rel.info.first_deployed = prev.info.first_deployed.clone();
        check_prune_budget(&a, live, &rel.manifest).await?;
    }
    // The pending record is the intent: written before anything is applied, so a crash
    // from here on leaves a record naming every object this attempt may create.
    write_release(&a.t, &rel).await?;
    let result = perform(&a, &mut rel, &built.rendered, live).await;
    let result = test(&a, &mut rel, status, result).await;
    record(
        &a,
        &history,
        &mut rel,
        status,
        result,
        failures_before,
        digests,
    )
    .await
}

/// Records the outcome of an attempt (success, or failure and remediation), prunes the
/// history and reports it in the status.
async fn record(
    a: &Attempt<'_>,
    history: &[Release],
    rel: &mut Release,
    status: &mut HelmReleaseStatus,
    result: std::result::Result<(), String>,
    failures_before: i64,
    digests: (String, String),
) -> std::result::Result<Released, Failure> {
    // The history after this release, kept locally to save two list calls; a
    // remediation (rare) re-reads it.
    let (done, after) = match result {
        Ok(()) => {
            (
                status.observed_post_renderers_digest,
                status.observed_common_metadata_digest,
            ) = (Some(digests.0), Some(digests.1));
            succeeded(a, history, rel).await?
        }
        Err(msg) => failed(a, history, rel, status, &msg, failures_before).await?,
    };
    let history = match after {
        Some(h) => h,
        None => load_history(&a.t).await?,
    };
    let pruned = prune_history(&a.t, &history, a.obj.max_history()).await?;
    status.history = snapshots(&history[pruned..]);
    done
}

/// `install.disableSchemaValidation` or `upgrade.disableSchemaValidation`.
fn skips_schema_validation(obj: &HelmRelease, install: bool) -> bool {
    if install {
        obj.spec
            .install
            .as_ref()
            .is_some_and(|i| i.disable_schema_validation)
    } else {
        obj.spec
            .upgrade
            .as_ref()
            .is_some_and(|u| u.disable_schema_validation)
    }
}

/// Uninstalls release `latest` of another chart than `chart` (with the uninstall
/// settings), so that the next pass installs the new chart afresh.
async fn uninstall_renamed(
    obj: &HelmRelease,
    applier: &plumb_ssa::Applier,
    t: &Target,
    latest: &Release,
    history: &[Release],
    chart: &str,
) -> std::result::Result<(), Failure> {
    let un = obj.spec.uninstall.clone().unwrap_or_default();
    let ut = super::history::with_timeout(t, un.timeout.as_deref());
    super::remediation::uninstall(applier, &ut, latest.clone(), history, &un).await?;
    tracing::info!(release = %t.name, namespace = %t.namespace, from = %latest.chart.name(),
        to = %chart, "chart name changed: release uninstalled to reinstall");
    Ok(())
}

/// Whether a change of chart name reinstalls the release (`Reinstall`, the default) rather
/// than upgrading it in place (`InPlaceUpdate`).
fn reinstalls_on_rename(obj: &HelmRelease) -> bool {
    obj.spec
        .upgrade
        .as_ref()
        .and_then(|u| u.chart_name_change_strategy.as_deref())
        != Some("InPlaceUpdate")
}

/// `upgrade.preserveValues`: the values of the last release (the last deployed one, else
/// the latest) with the composed values merged over them, as Flux documents it ("reuse
/// the last release's values and merge in overrides"); the merged values are recorded,
/// so an unchanged spec stays up to date.
fn preserve_values(
    obj: &HelmRelease,
    history: &[Release],
    config: serde_json::Map<String, Value>,
) -> serde_json::Map<String, Value> {
    if !obj.spec.upgrade.as_ref().is_some_and(|u| u.preserve_values) {
        return config;
    }
    let last = history
        .iter()
        .rev()
        .find(|r| r.info.status == rstatus::DEPLOYED)
        .or(history.last());
    let Some(last) = last else { return config };
    let mut merged = last.config.clone();
    merge_maps(&mut merged, config);
    merged
}

/// The outcome of an up-to-date release: Ready, nothing released.
fn up_to_date(history: &[Release], t: &Target, l: &Release) -> Released {
    let (r, verb) = if is_install_only(history) {
        (reason::INSTALL_SUCCEEDED, "install")
    } else {
        (reason::UPGRADE_SUCCEEDED, "upgrade")
    };
    Released {
        reason: r,
        message: format!(
            "Helm {verb} succeeded for release {}/{}.v{} with chart {}@{}",
            t.namespace,
            t.name,
            l.version,
            l.chart.name(),
            l.chart.version()
        ),
        released: None,
    }
}

/// Records the attempted action; refuses (stalled) when its retries are exhausted.
/// Returns the failures of this action so far.
fn check_retries(
    a: &Attempt<'_>,
    status: &mut HelmReleaseStatus,
    force: bool,
    history: &[Release],
) -> std::result::Result<i64, Failure> {
    status.last_attempted_release_action = Some(if a.install {
        ReleaseAction::Install
    } else {
        ReleaseAction::Upgrade
    });
    let failures_before = if a.install {
        status.install_failures.unwrap_or(0)
    } else {
        status.upgrade_failures.unwrap_or(0)
    };
    let (retries, _) = remediation_of(a.obj, a.install);
    // RetryOnFailure retries without a limit (every retryInterval).
    let retrying = attempt_retry_interval(a.obj, a.install, history).is_some();
    if !force && !retrying && failures_before > 0 && failures_before > retries {
        // Retries are exhausted: wait for a change of the object or its inputs.
        return Err(Failure::new(
            Class::Stalled,
            a.reason(false),
            format!(
                "{} retries exhausted for release {}/{} ({failures_before} failures)",
                a.verb(),
                a.t.namespace,
                a.t.name
            ),
        ));
    }
    Ok(failures_before)
}

/// The releases whose objects may be live: from the last deployed one (or the first) to
/// the latest, which may be a failed or interrupted attempt that applied part of its own.
fn live_releases(history: &[Release]) -> &[Release] {
    let from = history
        .iter()
        .rposition(|r| r.info.status == rstatus::DEPLOYED)
        .unwrap_or(0);
    &history[from..]
}

/// A latest release left pending (the process stopped mid-operation) is marked failed, as
/// helm-controller does, so the next attempt upgrades from it instead of waiting forever.
async fn unlock_pending(
    t: &Target,
    mut history: Vec<Release>,
) -> std::result::Result<Vec<Release>, Failure> {
    if let Some(last) = history.last_mut()
        && matches!(
            last.info.status.as_str(),
            rstatus::PENDING_INSTALL | rstatus::PENDING_UPGRADE | rstatus::PENDING_ROLLBACK
        )
    {
        tracing::warn!(release = %t.name, namespace = %t.namespace, status = %last.info.status,
            "release was left pending by an interrupted operation; marking it failed");
        last.info.description = format!(
            "Release {} was interrupted ({}); marked failed",
            last.version, last.info.status
        );
        last.info.status = rstatus::FAILED.into();
        write_release(t, last).await?;
    }
    Ok(history)
}

/// The release record of this attempt, pending.
fn pending_release(
    a: &Attempt<'_>,
    chart: storage::ChartRecord,
    config: serde_json::Map<String, Value>,
    rendered: &plumb_helm::Rendered,
    revision: i64,
) -> Release {
    Release {
        name: a.t.name.clone(),
        info: storage::Info {
            first_deployed: storage::now(),
            last_deployed: storage::now(),
            deleted: String::new(),
            description: if a.install {
                "Initial install underway".into()
            } else {
                "Preparing upgrade".into()
            },
            status: if a.install {
                rstatus::PENDING_INSTALL.into()
            } else {
                rstatus::PENDING_UPGRADE.into()
            },
            notes: rendered.notes.clone(),
        },
        chart,
        config,
        manifest: storage::manifest_text(&rendered.manifests),
        hooks: rendered.hooks.iter().map(storage::hook_record).collect(),
        version: revision,
        namespace: a.t.namespace.clone(),
        // Set by the caller, which knows the releases it upgrades from.
        apply_method: String::new(),
        labels: BTreeMap::new(),
    }
}

/// Helm's test action after a successful install or upgrade (when `spec.test.enable`),
/// reported in `TestSuccess`; a failed test fails the release unless ignored.
async fn test(
    a: &Attempt<'_>,
    rel: &mut Release,
    status: &mut HelmReleaseStatus,
    result: std::result::Result<(), String>,
) -> std::result::Result<(), String> {
    result?;
    if !a.obj.spec.test.as_ref().is_some_and(|t| t.enable) {
        conditions::remove(&mut status.conditions, condition::TEST_SUCCESS);
        return Ok(());
    }
    let tested = run_tests(a.obj, &a.applier, &a.t, rel).await;
    let generation = a.obj.meta().generation;
    let what = format!("release {}/{}.v{}", a.t.namespace, a.t.name, rel.version);
    match tested {
        Ok(n) => {
            conditions::set(
                &mut status.conditions,
                condition::TEST_SUCCESS,
                CondStatus::True,
                reason::TEST_SUCCEEDED,
                &format!("Helm test succeeded for {what}: {n} test hooks completed successfully"),
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
            a.ctx
                .event(&a.obj.object_ref(&()), true, reason::TEST_FAILED, &message)
                .await;
            if ignores_test_failures(a.obj, a.install) {
                Ok(())
            } else {
                Err(format!("test failed: {m}"))
            }
        }
    }
}

/// The outcome of this attempt and the history after it (`None`: re-read it).
type Outcome = (std::result::Result<Released, Failure>, Option<Vec<Release>>);

/// Records a successful release: deployed, the previous deployed ones superseded.
async fn succeeded(
    a: &Attempt<'_>,
    history: &[Release],
    rel: &mut Release,
) -> std::result::Result<Outcome, Failure> {
    rel.info.status = rstatus::DEPLOYED.into();
    rel.info.description = if a.install {
        "Install complete".into()
    } else {
        "Upgrade complete".into()
    };
    write_release(&a.t, rel).await?;
    for prev in history
        .iter()
        .filter(|r| r.info.status == rstatus::DEPLOYED)
    {
        let mut p = prev.clone();
        p.info.status = rstatus::SUPERSEDED.into();
        write_release(&a.t, &p).await?;
    }
    let mut after: Vec<Release> = history
        .iter()
        .cloned()
        .map(|mut p| {
            if p.info.status == rstatus::DEPLOYED {
                p.info.status = rstatus::SUPERSEDED.into();
            }
            p
        })
        .collect();
    after.push(rel.clone());
    track_drift(a.obj, a.ctx, &a.applier, &a.t, rel).await;
    let r = a.reason(true);
    let message = format!(
        "Helm {} succeeded for release {}/{}.v{} with chart {}@{}",
        a.verb(),
        a.t.namespace,
        a.t.name,
        rel.version,
        rel.chart.name(),
        rel.chart.version()
    );
    let done = Released {
        reason: r,
        message,
        released: Some(r),
    };
    Ok((Ok(done), Some(after)))
}

/// Records a failed release, counts the failure and remediates when configured.
async fn failed(
    a: &Attempt<'_>,
    history: &[Release],
    rel: &mut Release,
    status: &mut HelmReleaseStatus,
    msg: &str,
    failures_before: i64,
) -> std::result::Result<Outcome, Failure> {
    let what = if a.install { "Release" } else { "Upgrade" };
    rel.info.status = rstatus::FAILED.into();
    rel.info.description = format!("{what} \"{}\" failed: {msg}", a.t.name);
    write_release(&a.t, rel).await?;
    let failures = failures_before + 1;
    *status.failures.get_or_insert(0) += 1;
    if a.install {
        status.install_failures = Some(failures);
    } else {
        status.upgrade_failures = Some(failures);
    }
    let r = a.reason(false);
    let message = format!(
        "Helm {} failed for release {}/{} with chart {}@{}: {msg}",
        a.verb(),
        a.t.namespace,
        a.t.name,
        rel.chart.name(),
        rel.chart.version()
    );
    let generation = a.obj.meta().generation;
    conditions::set(
        &mut status.conditions,
        condition::RELEASED,
        CondStatus::False,
        r,
        &message,
        generation,
    );
    // RetryOnFailure: no remediation; the action is retried after retryInterval.
    if let Some(every) = attempt_retry_interval(a.obj, a.install, history) {
        let mut h = history.to_vec();
        h.push(rel.clone());
        let message = format!("{message}; retrying in {}", humantime_short(every));
        let f = Failure::new(Class::Transient, r, message).with_retry_after(every);
        return Ok((Err(f), Some(h)));
    }
    // Remediate between attempts, and after the last one when configured.
    let (retries, remediate_last) = remediation_of(a.obj, a.install);
    let remediating = retries > 0 && (failures <= retries || remediate_last);
    let after = (!remediating).then(|| {
        let mut h = history.to_vec();
        h.push(rel.clone());
        h
    });
    if remediating {
        let remediated = remediate(a.obj, &a.applier, &a.t, a.install, rel.clone()).await;
        let ok = remediated.is_ok();
        let (cs, rm) = match remediated {
            Ok(m) => (CondStatus::True, m),
            Err(f) => (CondStatus::False, f.message),
        };
        let rr = remediation_reason(a.obj, a.install, ok);
        conditions::set(
            &mut status.conditions,
            condition::REMEDIATED,
            cs,
            rr,
            &rm,
            generation,
        );
    }
    let class = if retries > 0 && failures <= retries {
        Class::Transient
    } else {
        Class::Stalled
    };
    Ok((Err(Failure::new(class, r, message)), after))
}

/// `d` as Go prints a duration of whole seconds or minutes (`30s`, `5m0s`).
fn humantime_short(d: std::time::Duration) -> String {
    let s = d.as_secs();
    match (s / 3600, (s % 3600) / 60, s % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, s) => format!("{m}m{s}s"),
        (h, m, s) => format!("{h}h{m}m{s}s"),
    }
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
    let applier = applier(obj, ctx).await?;
    let t = target_of(obj, ctx, &applier);
    let (chart_src, _work) = fetch_chart(obj, ctx, false).await?;
    let config = compose_values(obj, ctx).await?;
    let history = load_history(&t).await?;
    let latest = history
        .iter()
        .rev()
        .find(|r| r.info.status == rstatus::DEPLOYED)
        .cloned();
    let config = if latest.is_some() {
        preserve_values(obj, &history, config)
    } else {
        config
    };
    let revision = history.last().map_or(1, |r| r.version + 1);
    let built = build(
        chart_src,
        &config,
        &t,
        revision,
        latest.is_none(),
        PostRender::of(obj),
        chart_options(obj, ctx, &t, false).await,
    )
    .await?;
    let fail = |m: String| Failure::new(Class::Stalled, reason::INSTALL_FAILED, m);
    let manifest = storage::manifest_text(&built.rendered.manifests);
    let objects = parse_manifest(&applier, &manifest, &t)
        .await
        .map_err(fail)?;
    let mut removed = Vec::new();
    if let Some(l) = &latest {
        let old = manifest_refs(&applier, &l.manifest, &t.namespace)
            .await
            .map_err(fail)?;
        removed = inventory_of(&objects).stale(&old);
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
