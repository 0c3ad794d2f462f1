//! Per-action options of a HelmRelease that change how an install, upgrade, rollback or
//! uninstall runs, with Flux's (Helm's) semantics:
//! - `disableTakeOwnership`: an object that exists and is not owned by this release fails
//!   the action instead of being adopted ([`check_ownership`]);
//! - `cleanupOnFail`: the objects a failed upgrade or rollback created are deleted
//!   ([`absent`] before, [`cleanup_created`] after);
//! - `strategy`: `RemediateOnFailure` or `RetryOnFailure` (no remediation, retried after
//!   `retryInterval`) ([`retry_interval`]);
//! - `uninstall.deletionPropagation` ([`propagation`]).

use std::time::Duration;

use plumb_api::HelmRelease;
use plumb_api::consts::annotation;
use plumb_api::helm_release::{ActionStrategy, ActionStrategyName, DeletionPropagation, Uninstall};
use plumb_helm::storage::{Release, status as rstatus};
use plumb_ssa::{Applier, ObjectRef, PropagationPolicy};
use serde_json::Value;

use super::manifest::dynamic_api;
use super::perform::helm_prune_options;
use super::target::Target;

/// Helm's managed-by label, required on an object a release may take over.
const MANAGED_BY: &str = "app.kubernetes.io/managed-by";

/// Whether the install (or upgrade) takes ownership of existing objects (Flux's default).
pub(super) fn takes_ownership(obj: &HelmRelease, install: bool) -> bool {
    if install {
        !obj.spec
            .install
            .as_ref()
            .is_some_and(|i| i.disable_take_ownership)
    } else {
        !obj.spec
            .upgrade
            .as_ref()
            .is_some_and(|u| u.disable_take_ownership)
    }
}

/// With `disableTakeOwnership`: every object of `objects` not in `previous` (the objects
/// the release already owns) that exists in the cluster must carry this release's
/// ownership metadata, as Helm checks without `--take-ownership`; the first that does not
/// fails the action with Helm's message.
pub(super) async fn check_ownership(
    applier: &Applier,
    objects: &[Value],
    previous: &[ObjectRef],
    t: &Target,
    verb: &str,
) -> std::result::Result<(), String> {
    let owned: std::collections::BTreeSet<_> = previous.iter().map(ObjectRef::key).collect();
    for o in objects {
        let r = ObjectRef::from_object(o).map_err(|e| e.to_string())?;
        if owned.contains(&r.key()) {
            continue;
        }
        let api = dynamic_api(applier, &r).await?;
        let Some(live) = api
            .get_opt(&r.name)
            .await
            .map_err(|e| format!("reading {r}: {e}"))?
        else {
            continue;
        };
        let errs = ownership_errors(&live.metadata, &t.name, &t.namespace);
        if !errs.is_empty() {
            let ns = if r.namespace.is_empty() {
                String::new()
            } else {
                format!(" in namespace \"{}\"", r.namespace)
            };
            return Err(format!(
                "Unable to continue with {verb}: {} \"{}\"{ns} exists and cannot be imported \
                 into the current release: invalid ownership metadata; {}",
                r.kind,
                r.name,
                errs.join("; ")
            ));
        }
    }
    Ok(())
}

/// Helm's ownership validation errors for `meta` (empty: owned by release
/// `namespace/name`).
fn ownership_errors(meta: &kube::api::ObjectMeta, name: &str, namespace: &str) -> Vec<String> {
    let mut errs = Vec::new();
    let labels = meta.labels.clone().unwrap_or_default();
    let annotations = meta.annotations.clone().unwrap_or_default();
    let mut check = |what: &str,
                     map: &std::collections::BTreeMap<String, String>,
                     k: &str,
                     want: &str| {
        match map.get(k) {
            None => errs.push(format!(
                "{what} validation error: missing key \"{k}\": must be set to \"{want}\""
            )),
            Some(v) if v != want => errs.push(format!(
                "{what} validation error: key \"{k}\" must equal \"{want}\": current value is \"{v}\""
            )),
            Some(_) => {}
        }
    };
    check("label", &labels, MANAGED_BY, "Helm");
    check(
        "annotation",
        &annotations,
        annotation::HELM_RELEASE_NAME,
        name,
    );
    check(
        "annotation",
        &annotations,
        annotation::HELM_RELEASE_NAMESPACE,
        namespace,
    );
    errs
}

/// The objects of `objects` that do not exist in the cluster yet: what applying them
/// creates (Helm's `created` list, deleted by `cleanupOnFail`).
pub(super) async fn absent(
    applier: &Applier,
    objects: &[Value],
) -> std::result::Result<Vec<ObjectRef>, String> {
    let mut out = Vec::new();
    for o in objects {
        let r = ObjectRef::from_object(o).map_err(|e| e.to_string())?;
        let api = dynamic_api(applier, &r).await?;
        if api
            .get_opt(&r.name)
            .await
            .map_err(|e| format!("reading {r}: {e}"))?
            .is_none()
        {
            out.push(r);
        }
    }
    Ok(out)
}

/// `cleanupOnFail`: deletes the objects a failed action created (only those carrying this
/// release's ownership annotations); returns the note for the failure message.
pub(super) async fn cleanup_created(
    applier: &Applier,
    created: &[ObjectRef],
    t: &Target,
) -> String {
    if created.is_empty() {
        return String::new();
    }
    match applier.prune(created, &helm_prune_options(t)).await {
        Ok(_) => format!("; cleanup on fail deleted {} new object(s)", created.len()),
        Err(e) => format!("; cleanup on fail: deleting new objects: {e}"),
    }
}

/// The action's strategy: `None` for `RemediateOnFailure` (the default), the retry
/// interval for `RetryOnFailure` (`retryInterval`, 5m when unset).
pub(super) fn retry_interval(obj: &HelmRelease, install: bool) -> Option<Duration> {
    let strategy: Option<&ActionStrategy> = if install {
        obj.spec.install.as_ref().and_then(|i| i.strategy.as_ref())
    } else {
        obj.spec.upgrade.as_ref().and_then(|u| u.strategy.as_ref())
    };
    let s = strategy.filter(|s| s.name == ActionStrategyName::RetryOnFailure)?;
    Some(
        s.retry_interval
            .as_deref()
            .and_then(|d| plumb_api::duration::parse(d).ok())
            .unwrap_or(Duration::from_secs(300)),
    )
}

/// The retry interval of this attempt when its strategy is `RetryOnFailure`: the
/// action's own, or, for the upgrade that retries a release never deployed (a failed
/// install), the install's.
pub(super) fn attempt_retry_interval(
    obj: &HelmRelease,
    install: bool,
    history: &[Release],
) -> Option<Duration> {
    let never_deployed = !history
        .iter()
        .any(|r| r.info.status == rstatus::DEPLOYED || r.info.status == rstatus::SUPERSEDED);
    retry_interval(obj, install)
        .or_else(|| never_deployed.then(|| retry_interval(obj, true)).flatten())
}

/// `uninstall.deletionPropagation` as a Kubernetes propagation policy.
pub(super) fn propagation(un: &Uninstall) -> PropagationPolicy {
    match un.deletion_propagation {
        DeletionPropagation::Background => PropagationPolicy::Background,
        DeletionPropagation::Foreground => PropagationPolicy::Foreground,
        DeletionPropagation::Orphan => PropagationPolicy::Orphan,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hr(spec: Value) -> HelmRelease {
        let mut s = serde_json::json!({"interval": "5m"});
        if let (Some(m), Value::Object(e)) = (s.as_object_mut(), spec) {
            m.extend(e);
        }
        HelmRelease::new("x", serde_json::from_value(s).unwrap())
    }

    #[test]
    fn strategy_and_propagation_follow_flux() {
        let h = hr(
            serde_json::json!({"upgrade": {"strategy": {"name": "RetryOnFailure"}},
            "install": {"strategy": {"name": "RetryOnFailure", "retryInterval": "30s"}},
            "uninstall": {"deletionPropagation": "orphan"}}),
        );
        assert_eq!(retry_interval(&h, false), Some(Duration::from_secs(300)));
        assert_eq!(retry_interval(&h, true), Some(Duration::from_secs(30)));
        // The upgrade retrying a failed install follows the install's strategy.
        let only_install =
            hr(serde_json::json!({"install": {"strategy": {"name": "RetryOnFailure"}}}));
        assert_eq!(
            attempt_retry_interval(&only_install, false, &[]),
            Some(Duration::from_secs(300))
        );
        assert!(matches!(
            propagation(h.spec.uninstall.as_ref().unwrap()),
            PropagationPolicy::Orphan
        ));
        let h = hr(serde_json::json!({"upgrade": {"strategy": {"name": "RemediateOnFailure"}}}));
        assert_eq!(retry_interval(&h, false), None);
        assert!(matches!(
            propagation(&Uninstall::default()),
            PropagationPolicy::Background
        ));
        assert!(takes_ownership(&h, true));
    }

    #[test]
    fn ownership_errors_are_helms() {
        let meta = kube::api::ObjectMeta {
            annotations: Some([(annotation::HELM_RELEASE_NAME.to_string(), "other".into())].into()),
            ..Default::default()
        };
        let errs = ownership_errors(&meta, "rel", "ns");
        assert_eq!(
            errs,
            [
                "label validation error: missing key \"app.kubernetes.io/managed-by\": must be set to \"Helm\"",
                "annotation validation error: key \"meta.helm.sh/release-name\" must equal \"rel\": current value is \"other\"",
                "annotation validation error: missing key \"meta.helm.sh/release-namespace\": must be set to \"ns\"",
            ]
        );
    }
}
