//! HelmRelease drift detection (`spec.driftDetection`): the objects of the deployed
//! release are compared with the cluster through server-side dry-run applies, and in
//! `enabled` mode the drifted ones are re-applied, without a new Helm revision (as
//! helm-controller corrects drift).
//!
//! `ignore` rules name JSON pointers that are not compared. When correcting, an ignored
//! field keeps its live value in the applied object instead of being left out: leaving
//! a field out of a server-side apply would drop it from the object when helm-controller
//! was its only owner, which is the opposite of "ignore".
//!
//! Outside the interval, the objects of releases with drift detection on are watched
//! ([`crate::drift`]) and queue their HelmRelease when they change.

use futures::StreamExt;
use kube::{Resource, ResourceExt};
use plumb_api::HelmRelease;
use plumb_api::consts::{annotation, reason};
use plumb_api::helm_release::{DriftDetection, DriftDetectionMode, IgnoreRule};
use plumb_helm::storage::Release;
use plumb_ssa::{Applier, ApplyItem, ApplyOptions, ObjectRef};
use serde_json::Value;

use super::manifest::{manifest_refs, parse_manifest};
use super::target::Target;
use crate::context::Context;
use crate::outcome::{Class, Failure};
use crate::selector::selects;

/// What one drift pass found (and corrected).
#[derive(Debug, Default)]
pub struct DriftReport {
    /// One line per drifted object: `Kind/namespace/name changed` or `... removed`.
    pub drifted: Vec<String>,
    /// Objects re-applied (`enabled` mode).
    pub corrected: usize,
    /// Objects that could not be compared or corrected, with the error.
    pub errors: Vec<String>,
}

/// The drift mode of a HelmRelease (`disabled` unless set).
pub fn mode(dd: Option<&DriftDetection>) -> DriftDetectionMode {
    dd.and_then(|d| d.mode).unwrap_or_default()
}

/// Compares `objects` (the release's desired objects) with the cluster and, when
/// `correct`, re-applies those that drifted.
pub async fn check(
    applier: &Applier,
    objects: Vec<Value>,
    rules: &[IgnoreRule],
    correct: bool,
) -> DriftReport {
    let checks = objects
        .into_iter()
        .filter(|o| !opted_out(o))
        .map(|desired| {
            let pointers = ignored_pointers(&desired, rules);
            async move { check_one(applier, desired, &pointers, correct).await }
        });
    let results: Vec<Result<Option<(String, bool)>, String>> =
        futures::stream::iter(checks).buffered(8).collect().await;
    let mut report = DriftReport::default();
    for r in results {
        match r {
            Ok(Some((line, corrected))) => {
                report.drifted.push(line);
                report.corrected += usize::from(corrected);
            }
            Ok(None) => {}
            Err(e) => report.errors.push(e),
        }
    }
    report
}

/// `Some((line, corrected))` when the object drifted.
async fn check_one(
    applier: &Applier,
    mut desired: Value,
    pointers: &[String],
    correct: bool,
) -> Result<Option<(String, bool)>, String> {
    let r = ObjectRef::from_object(&desired).map_err(|e| e.to_string())?;
    let what = format!(
        "{}/{}{}",
        r.kind,
        if r.namespace.is_empty() {
            String::new()
        } else {
            format!("{}/", r.namespace)
        },
        r.name
    );
    let (live, after) = applier
        .dry_run(&ApplyItem::new(desired.clone()))
        .await
        .map_err(|e| format!("{what}: {e}"))?;
    let line = match &live {
        None => format!("{what} removed"),
        Some(live) => {
            let (mut a, mut b) = (comparable(live), comparable(&after));
            for p in pointers {
                remove_pointer(&mut a, p);
                remove_pointer(&mut b, p);
            }
            if a == b {
                return Ok(None);
            }
            format!("{what} changed")
        }
    };
    if !correct {
        return Ok(Some((line, false)));
    }
    if let Some(live) = &live {
        for p in pointers {
            match live.pointer(p) {
                Some(v) => set_pointer(&mut desired, p, v.clone()),
                None => remove_pointer(&mut desired, p),
            }
        }
    }
    applier
        .apply_all(vec![ApplyItem::new(desired)], &ApplyOptions::default())
        .await
        .map_err(|e| format!("correcting {what}: {e}"))?;
    Ok(Some((line, true)))
}

/// Objects annotated `helm.toolkit.fluxcd.io/driftDetection: disabled` are skipped.
fn opted_out(o: &Value) -> bool {
    o.pointer("/metadata/annotations")
        .and_then(|a| a.get(annotation::HELM_DRIFT_DETECTION))
        .and_then(Value::as_str)
        == Some(annotation::DISABLED)
}

/// The object without what the server maintains (and without status).
pub fn comparable(o: &Value) -> Value {
    let mut o = o.clone();
    if let Some(m) = o.as_object_mut() {
        m.remove("status");
        if let Some(meta) = m.get_mut("metadata").and_then(Value::as_object_mut) {
            for k in [
                "managedFields",
                "resourceVersion",
                "generation",
                "uid",
                "creationTimestamp",
                "selfLink",
            ] {
                meta.remove(k);
            }
        }
    }
    o
}

/// The JSON pointers of every rule whose target matches `o`.
fn ignored_pointers(o: &Value, rules: &[IgnoreRule]) -> Vec<String> {
    rules
        .iter()
        .filter(|r| r.target.as_ref().is_none_or(|t| selects(t, o)))
        .flat_map(|r| r.paths.iter().cloned())
        .collect()
}

/// Unescapes one RFC 6901 reference token.
fn token(t: &str) -> String {
    t.replace("~1", "/").replace("~0", "~")
}

fn remove_pointer(v: &mut Value, pointer: &str) {
    let Some((parent, last)) = pointer.rsplit_once('/') else {
        return;
    };
    let last = token(last);
    match v.pointer_mut(parent) {
        Some(Value::Object(m)) => {
            m.remove(&last);
        }
        Some(Value::Array(a)) => {
            if let Ok(i) = last.parse::<usize>()
                && i < a.len()
            {
                a.remove(i);
            }
        }
        _ => {}
    }
}

/// Sets `pointer` to `value`, creating missing parent maps.
fn set_pointer(v: &mut Value, pointer: &str, value: Value) {
    let tokens: Vec<String> = pointer.split('/').skip(1).map(token).collect();
    let Some((last, parents)) = tokens.split_last() else {
        return;
    };
    let mut cur = v;
    for t in parents {
        let next = match cur {
            Value::Object(m) => m
                .entry(t.clone())
                .or_insert_with(|| Value::Object(Default::default())),
            Value::Array(a) => match t.parse::<usize>().ok().and_then(|i| a.get_mut(i)) {
                Some(x) => x,
                None => return,
            },
            _ => return,
        };
        cur = next;
    }
    match cur {
        Value::Object(m) => {
            m.insert(last.clone(), value);
        }
        Value::Array(a) => {
            if let Some(x) = last.parse::<usize>().ok().and_then(|i| a.get_mut(i)) {
                *x = value;
            }
        }
        _ => {}
    }
}

/// `spec.driftDetection` on an up-to-date release: compare its objects with the cluster,
/// correct them (`enabled`) or report them (`warn`), and keep watching them.
pub(super) async fn drift(
    obj: &HelmRelease,
    ctx: &Context,
    applier: &Applier,
    t: &Target,
    latest: &Release,
) -> std::result::Result<(), Failure> {
    let dd = obj.spec.drift_detection.as_ref();
    let mode = mode(dd);
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
    let report = check(applier, objects.clone(), rules, correct).await;
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
pub(super) async fn track_drift(
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
pub(super) fn drift_watched(obj: &HelmRelease) -> bool {
    mode(obj.spec.drift_detection.as_ref()) != DriftDetectionMode::Disabled
        && obj.spec.kube_config.is_none()
}

/// Watches `refs` for drift on behalf of `obj`, or stops watching when it should not be.
pub(super) async fn track_refs(
    obj: &HelmRelease,
    ctx: &Context,
    applier: &Applier,
    refs: &[ObjectRef],
) {
    let owner = (obj.namespace().unwrap_or_default(), obj.name_any());
    let owner = (owner.0.as_str(), owner.1.as_str());
    if drift_watched(obj) {
        ctx.helm_drift.track(owner, refs, applier).await;
    } else {
        ctx.helm_drift.untrack(owner);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use plumb_api::kustomize::Selector;
    use serde_json::json;

    fn deploy() -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
               "metadata": {"name": "web-api", "namespace": "apps",
                            "labels": {"tier": "web", "env": "prod"}},
               "spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "a", "image": "x"}]}}}})
    }

    #[test]
    fn selectors_match_like_kustomize() {
        let o = deploy();
        let sel = |v: Value| serde_json::from_value::<Selector>(v).unwrap();
        assert!(selects(&sel(json!({"kind": "Deployment"})), &o));
        assert!(selects(
            &sel(json!({"group": "apps", "name": "web-.*"})),
            &o
        ));
        assert!(!selects(&sel(json!({"name": "web"})), &o), "anchored");
        assert!(!selects(&sel(json!({"kind": "Service"})), &o));
        assert!(selects(
            &sel(json!({"labelSelector": "tier=web,env in (prod, dev)"})),
            &o
        ));
        assert!(!selects(&sel(json!({"labelSelector": "tier!=web"})), &o));
        assert!(selects(&sel(json!({"labelSelector": "!missing,env"})), &o));
        assert!(!selects(&sel(json!({"annotationSelector": "a=b"})), &o));
    }

    #[test]
    fn pointers_set_and_remove() {
        let mut o = deploy();
        remove_pointer(&mut o, "/spec/replicas");
        assert!(o.pointer("/spec/replicas").is_none());
        set_pointer(&mut o, "/spec/replicas", json!(5));
        assert_eq!(o.pointer("/spec/replicas"), Some(&json!(5)));
        set_pointer(&mut o, "/metadata/annotations/a~1b", json!("x"));
        assert_eq!(o["metadata"]["annotations"]["a/b"], "x");
        remove_pointer(&mut o, "/spec/template/spec/containers/0");
        assert_eq!(
            o.pointer("/spec/template/spec/containers"),
            Some(&json!([]))
        );
    }

    #[test]
    fn rules_apply_to_their_targets_only() {
        let rules: Vec<IgnoreRule> = serde_json::from_value(json!([
            {"paths": ["/spec/replicas"], "target": {"kind": "Deployment"}},
            {"paths": ["/data"], "target": {"kind": "ConfigMap"}},
            {"paths": ["/metadata/annotations/x"]}
        ]))
        .unwrap();
        assert_eq!(
            ignored_pointers(&deploy(), &rules),
            vec!["/spec/replicas", "/metadata/annotations/x"]
        );
    }
}
