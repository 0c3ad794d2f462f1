//! Remediation of a failed release: a failed install is uninstalled; a failed upgrade is
//! rolled back to the last successful release (or uninstalled, per
//! `upgrade.remediation.strategy`); and the uninstall that deletion runs too.

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams};
use plumb_api::HelmRelease;
use plumb_api::consts::{annotation, reason};
use plumb_api::helm_release::{RemediationStrategy, Uninstall};
use plumb_helm::storage::{self, Release, status as rstatus};
use plumb_ssa::{Applier, PruneOptions};
use serde_json::Value;

use super::actions::{absent, cleanup_created, propagation};
use super::apply_method::{self, Method, apply_client_side};
use super::history::{load_history, with_timeout, write_release};
use super::hooks::run_hooks;
use super::manifest::{manifest_refs, parse_manifest, yaml_object};
use super::perform::{Wait, apply_objects, helm_prune_options, prune_removed};
use super::target::Target;
use crate::outcome::{Class, Failure};

/// (retries, remediateLastFailure) of the action.
pub(super) fn remediation_of(obj: &HelmRelease, install: bool) -> (i64, bool) {
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

pub(super) fn upgrade_strategy(obj: &HelmRelease) -> RemediationStrategy {
    obj.spec
        .upgrade
        .as_ref()
        .and_then(|u| u.remediation.as_ref())
        .and_then(|r| r.strategy)
        .unwrap_or(RemediationStrategy::Rollback)
}

pub(super) fn remediation_reason(obj: &HelmRelease, install: bool, ok: bool) -> &'static str {
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
pub(super) async fn remediate(
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
            &un,
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
    let rb = obj.spec.rollback.clone().unwrap_or_default();
    if rb.recreate {
        // Flux 2.9 (Helm 4 SDK): no longer functional, a warning only.
        tracing::warn!(release = %t.name, namespace = %t.namespace,
            "spec.rollback.recreate is deprecated and has no effect");
    }
    let opts = RollbackOptions {
        hooks: !rb.disable_hooks,
        wait: Wait::of(rb.disable_wait, rb.disable_wait_for_jobs),
        cleanup_on_fail: rb.cleanup_on_fail,
        method: apply_method::for_rollback(obj, &good),
    };
    rollback(
        applier,
        &with_timeout(t, rb.timeout.as_deref()),
        &failed,
        &good,
        opts,
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

/// How a rollback runs (`spec.rollback`).
#[derive(Clone, Copy, Debug)]
pub(super) struct RollbackOptions {
    /// Run the pre- and post-rollback hooks.
    pub(super) hooks: bool,
    /// Wait for the objects after applying them.
    pub(super) wait: Wait,
    /// Delete the objects a failed rollback created.
    pub(super) cleanup_on_fail: bool,
    /// Server-side or client-side apply (`rollback.serverSideApply`).
    pub(super) method: Method,
}

/// Helm's rollback: a new revision with the chart, values, manifest and hooks of
/// `good`; the objects of `current` that `good` lacks are deleted; a failure after the
/// pending record marks the new revision failed.
pub(super) async fn rollback(
    applier: &Applier,
    t: &Target,
    current: &Release,
    good: &Release,
    opts: RollbackOptions,
) -> std::result::Result<(), Failure> {
    let fail = |m: String| Failure::new(Class::Transient, reason::ROLLBACK_FAILED, m);
    let mut rel = good.clone();
    rel.version = current.version + 1;
    rel.info.status = rstatus::PENDING_ROLLBACK.into();
    rel.info.last_deployed = storage::now();
    rel.info.description = format!("Rollback to {}", good.version);
    rel.apply_method = opts.method.as_str().into();
    for h in &mut rel.hooks {
        h.last_run = Default::default();
    }
    write_release(t, &rel).await?;
    if let Err(m) = perform_rollback(applier, t, current, &mut rel, opts).await {
        rel.info.status = rstatus::FAILED.into();
        rel.info.description = format!("Rollback \"{}\" failed: {m}", t.name);
        write_release(t, &rel).await?;
        return Err(fail(m));
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

/// The steps of a rollback: hooks, objects, removed objects, hooks, wait; with
/// `cleanupOnFail`, what a failed rollback created is deleted.
async fn perform_rollback(
    applier: &Applier,
    t: &Target,
    current: &Release,
    rel: &mut Release,
    opts: RollbackOptions,
) -> std::result::Result<(), String> {
    if opts.hooks {
        run_hooks(applier, rel, "pre-rollback", t).await?;
    }
    let objects = parse_manifest(applier, &rel.manifest, t).await?;
    let created = if opts.cleanup_on_fail {
        absent(applier, &objects).await?
    } else {
        Vec::new()
    };
    let result: std::result::Result<(), String> = async {
        match opts.method {
            Method::ServerSide => apply_objects(applier, objects.clone(), t).await?,
            Method::ClientSide => apply_client_side(applier, Some(current), &objects, t).await?,
        }
        let old = manifest_refs(applier, &current.manifest, &t.namespace).await?;
        prune_removed(applier, &old, &objects, t).await?;
        opts.wait.run(applier, &objects, t).await?;
        if opts.hooks {
            run_hooks(applier, rel, "post-rollback", t).await?;
        }
        Ok(())
    }
    .await;
    match result {
        Ok(()) => Ok(()),
        Err(e) => Err(format!(
            "{e}{}",
            cleanup_created(applier, &created, t).await
        )),
    }
}

pub(super) async fn uninstall(
    applier: &Applier,
    t: &Target,
    mut latest: Release,
    history: &[Release],
    un: &Uninstall,
) -> std::result::Result<(), Failure> {
    let (hooks, keep_history) = (!un.disable_hooks, un.keep_history);
    let fail = |m: String| Failure::new(Class::Transient, reason::UNINSTALL_FAILED, m);
    latest.info.status = rstatus::UNINSTALLING.into();
    write_release(t, &latest).await?;
    if hooks {
        run_hooks(applier, &mut latest, "pre-delete", t)
            .await
            .map_err(fail)?;
    }
    // Objects the manifest marks `helm.sh/resource-policy: keep` stay, as with Helm, even
    // if someone removed the annotation from the live object.
    let refs = manifest_refs(applier, &kept_out(&latest.manifest), &t.namespace)
        .await
        .map_err(fail)?;
    applier
        .prune(
            &refs,
            &PruneOptions {
                propagation: Some(propagation(un)),
                ..helm_prune_options(t)
            },
        )
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

/// `manifest` without the documents whose object is marked `helm.sh/resource-policy: keep`.
fn kept_out(manifest: &str) -> String {
    plumb_helm::render::split_manifests(manifest)
        .into_iter()
        .filter(|doc| {
            let keep = yaml_object(doc).ok().and_then(|v| {
                v.pointer("/metadata/annotations")
                    .and_then(|a| a.get(annotation::HELM_RESOURCE_POLICY))
                    .and_then(Value::as_str)
                    .map(|p| p.trim() == annotation::HELM_KEEP)
            });
            keep != Some(true)
        })
        .map(|doc| format!("---\n{doc}\n"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

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
