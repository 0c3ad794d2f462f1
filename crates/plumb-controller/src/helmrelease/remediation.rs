//! Remediation of a failed release: a failed install is uninstalled; a failed upgrade is
//! rolled back to the last successful release (or uninstalled, per
//! `upgrade.remediation.strategy`); and the uninstall that deletion runs too.

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams};
use plumb_api::HelmRelease;
use plumb_api::consts::{annotation, reason};
use plumb_api::helm_release::RemediationStrategy;
use plumb_helm::storage::{self, Release, status as rstatus};
use plumb_ssa::Applier;
use serde_json::Value;

use super::history::{load_history, with_timeout, write_release};
use super::hooks::run_hooks;
use super::manifest::{manifest_refs, parse_manifest, yaml_object};
use super::perform::{apply_objects, helm_prune_options, prune_removed};
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
pub(super) async fn rollback(
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
    prune_removed(applier, &old, &objects, t)
        .await
        .map_err(fail)?;
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

pub(super) async fn uninstall(
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
    // Objects the manifest marks `helm.sh/resource-policy: keep` stay, as with Helm, even
    // if someone removed the annotation from the live object.
    let refs = manifest_refs(applier, &kept_out(&latest.manifest), &t.namespace)
        .await
        .map_err(fail)?;
    applier
        .prune(&refs, &helm_prune_options(t))
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
