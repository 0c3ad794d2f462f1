//! `spec.ignore` (and plumb's older `spec.driftIgnoreRules`): JSON pointers excluded from
//! drift detection and apply, with Flux 2.9's semantics.
//!
//! A rule applies to the objects its `target` selects (all objects without a target). Before
//! the apply, every selected object that already exists is reshaped, path by path:
//! - the path is absent in the cluster: the manifest's value stays (nothing to keep);
//! - the manifest's value equals the cluster's: it stays (no drift, ownership unchanged);
//! - another server-side apply manager owns the field: the path leaves the manifest, so
//!   plumb releases it and the other manager's value is kept;
//! - otherwise (an `Update` writer such as `kubectl edit`, or plumb alone): the cluster's
//!   value is adopted into the manifest, so the apply keeps it.
//!
//! An object being created gets the whole manifest. Since the reshaped manifest agrees with
//! the cluster on every ignored path, a change there is no drift and applies nothing.

use kube::api::{Api, DynamicObject};
use plumb_api::Kustomization;
use plumb_api::consts::reason;
use plumb_api::kustomization::DriftIgnoreRule;
use plumb_ssa::{Applier, ApplyItem, ObjectRef};
use serde_json::Value;

use crate::outcome::{Class, Failure};
use crate::selector::selects;

/// Every rule of `spec.ignore` and `spec.driftIgnoreRules`.
fn rules(obj: &Kustomization) -> impl Iterator<Item = &DriftIgnoreRule> {
    obj.spec.ignore.iter().chain(&obj.spec.drift_ignore_rules)
}

/// Refuses a path that is not a JSON pointer (RFC 6901: empty or starting with `/`).
pub(super) fn validate(obj: &Kustomization) -> Result<(), Failure> {
    for r in rules(obj) {
        if let Some(p) = r
            .paths
            .iter()
            .find(|p| !p.is_empty() && !p.starts_with('/'))
        {
            return Err(Failure::new(
                Class::Stalled,
                reason::RECONCILIATION_FAILED,
                format!("spec.ignore: invalid JSON pointer '{p}': it must start with '/'"),
            ));
        }
    }
    Ok(())
}

/// Reshapes the items that already exist in the cluster per the ignore rules (see the
/// module documentation).
pub(super) async fn reshape(
    obj: &Kustomization,
    applier: &Applier,
    items: &mut [ApplyItem],
) -> Result<(), Failure> {
    if rules(obj).next().is_none() {
        return Ok(());
    }
    for item in items.iter_mut() {
        let paths: Vec<String> = rules(obj)
            .filter(|r| r.target.as_ref().is_none_or(|t| selects(t, &item.object)))
            .flat_map(|r| r.paths.iter().cloned())
            .collect();
        if paths.is_empty() {
            continue;
        }
        let Some(live) = live_object(applier, &item.object).await? else {
            continue;
        };
        for p in &paths {
            reshape_path(&mut item.object, &live, p, applier.field_manager());
        }
    }
    Ok(())
}

/// The object as it is in the cluster, `None` when it does not exist (or its kind does not
/// exist yet: the apply creates it, or reports the unknown kind).
async fn live_object(applier: &Applier, desired: &Value) -> Result<Option<Value>, Failure> {
    let Ok(r) = ObjectRef::from_object(desired) else {
        return Ok(None);
    };
    let Ok((ar, namespaced)) = applier.kind_of(&r).await else {
        return Ok(None);
    };
    let api: Api<DynamicObject> = if namespaced {
        Api::namespaced_with(applier.client().clone(), &r.namespace, &ar)
    } else {
        Api::all_with(applier.client().clone(), &ar)
    };
    let live = api.get_opt(&r.name).await.map_err(|e| {
        Failure::new(
            Class::Transient,
            reason::RECONCILIATION_FAILED,
            format!("{r}: reading it for spec.ignore: {e}"),
        )
    })?;
    Ok(live.and_then(|o| serde_json::to_value(o).ok()))
}

/// Applies one ignored `pointer` to `desired` given the `live` object.
fn reshape_path(desired: &mut Value, live: &Value, pointer: &str, us: &str) {
    let Some(live_v) = live.pointer(pointer) else {
        return;
    };
    if desired.pointer(pointer) == Some(live_v) {
        return;
    }
    if owned_by_other_applier(live, pointer, us) {
        remove_at(desired, pointer);
    } else {
        set_at(desired, pointer, live_v.clone());
    }
}

fn segments(pointer: &str) -> Vec<String> {
    pointer
        .split('/')
        .skip(1)
        .map(|s| s.replace("~1", "/").replace("~0", "~"))
        .collect()
}

fn remove_at(v: &mut Value, pointer: &str) {
    let segs = segments(pointer);
    let Some((last, parents)) = segs.split_last() else {
        return;
    };
    let mut cur = v;
    for s in parents {
        let next = match cur {
            Value::Object(m) => m.get_mut(s),
            Value::Array(a) => s.parse::<usize>().ok().and_then(|i| a.get_mut(i)),
            _ => None,
        };
        let Some(n) = next else { return };
        cur = n;
    }
    match cur {
        Value::Object(m) => {
            m.remove(last);
        }
        Value::Array(a) => {
            if let Some(i) = last.parse::<usize>().ok().filter(|i| *i < a.len()) {
                a.remove(i);
            }
        }
        _ => {}
    }
}

/// Sets `pointer` in `v` to `new`, creating missing maps on the way; leaves `v` alone when a
/// list index on the way does not exist.
fn set_at(v: &mut Value, pointer: &str, new: Value) {
    let segs = segments(pointer);
    let Some((last, parents)) = segs.split_last() else {
        *v = new;
        return;
    };
    let mut cur = v;
    for s in parents {
        if cur.is_null() {
            *cur = Value::Object(Default::default());
        }
        let next = match cur {
            Value::Object(m) => Some(
                m.entry(s.clone())
                    .or_insert_with(|| Value::Object(Default::default())),
            ),
            Value::Array(a) => s.parse::<usize>().ok().and_then(|i| a.get_mut(i)),
            _ => None,
        };
        let Some(n) = next else { return };
        cur = n;
    }
    match cur {
        Value::Object(m) => {
            m.insert(last.clone(), new);
        }
        Value::Array(a) => {
            if let Some(slot) = last.parse::<usize>().ok().and_then(|i| a.get_mut(i)) {
                *slot = new;
            }
        }
        _ => {}
    }
}

/// Whether a server-side apply manager other than `us` owns the field at `pointer` (or a
/// field below it) of `live`, per `metadata.managedFields`.
fn owned_by_other_applier(live: &Value, pointer: &str, us: &str) -> bool {
    let Some(entries) = live
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
    else {
        return false;
    };
    let segs = segments(pointer);
    entries
        .iter()
        .filter(|e| e["operation"] == "Apply" && e["manager"].as_str() != Some(us))
        .any(|e| fieldset_has(&e["fieldsV1"], live, &segs))
}

/// Walks a `fieldsV1` set along `segs` of the object `live`: map keys are `f:<key>`, list
/// items `k:<merge keys>` (associative lists) or `v:<value>` (sets).
fn fieldset_has(set: &Value, live: &Value, segs: &[String]) -> bool {
    let Some((s, rest)) = segs.split_first() else {
        return set.is_object();
    };
    match live {
        Value::Object(m) => {
            let (Some(child), Some(next)) = (set.get(format!("f:{s}")), m.get(s)) else {
                return false;
            };
            fieldset_has(child, next, rest)
        }
        Value::Array(a) => {
            let Some(item) = s.parse::<usize>().ok().and_then(|i| a.get(i)) else {
                return false;
            };
            let Some(keys) = set.as_object() else {
                return false;
            };
            keys.iter()
                .filter(|(k, _)| item_key_matches(k, item))
                .any(|(_, child)| fieldset_has(child, item, rest))
        }
        _ => false,
    }
}

fn item_key_matches(key: &str, item: &Value) -> bool {
    if let Some(json) = key.strip_prefix("k:") {
        let Ok(Value::Object(want)) = serde_json::from_str::<Value>(json) else {
            return false;
        };
        return want.iter().all(|(k, v)| item.get(k) == Some(v));
    }
    if let Some(json) = key.strip_prefix("v:") {
        return serde_json::from_str::<Value>(json).is_ok_and(|v| &v == item);
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use plumb_api::kustomize::Selector;
    use serde_json::json;

    fn live() -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "d", "namespace": "n", "managedFields": [
                {"manager": "kustomize-controller", "operation": "Apply",
                 "fieldsV1": {"f:spec": {"f:replicas": {}, "f:template": {}}}},
                {"manager": "hpa", "operation": "Apply",
                 "fieldsV1": {"f:spec": {"f:replicas": {}}}},
                {"manager": "kubectl-edit", "operation": "Update",
                 "fieldsV1": {"f:spec": {"f:minReadySeconds": {}}}},
                {"manager": "sidecar", "operation": "Apply",
                 "fieldsV1": {"f:spec": {"f:template": {"f:spec": {"f:containers": {
                    "k:{\"name\":\"app\"}": {"f:image": {}}}}}}}}
            ]},
            "spec": {"replicas": 5, "minReadySeconds": 9, "paused": false,
                     "template": {"spec": {"containers": [{"name": "app", "image": "x:2"}]}}}
        })
    }

    fn desired() -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
               "metadata": {"name": "d", "namespace": "n"},
               "spec": {"replicas": 2, "minReadySeconds": 1,
                        "template": {"spec": {"containers": [{"name": "app", "image": "x:1"}]}}}})
    }

    #[test]
    fn a_field_another_applier_owns_is_released() {
        let mut d = desired();
        reshape_path(&mut d, &live(), "/spec/replicas", "kustomize-controller");
        assert!(d.pointer("/spec/replicas").is_none(), "{d}");
        reshape_path(
            &mut d,
            &live(),
            "/spec/template/spec/containers/0/image",
            "kustomize-controller",
        );
        assert!(
            d.pointer("/spec/template/spec/containers/0/image")
                .is_none(),
            "associative list items are matched by their keys: {d}"
        );
    }

    #[test]
    fn a_field_an_update_writer_changed_is_adopted() {
        let mut d = desired();
        reshape_path(
            &mut d,
            &live(),
            "/spec/minReadySeconds",
            "kustomize-controller",
        );
        assert_eq!(d["spec"]["minReadySeconds"], 9);
        // Absent from the manifest, present in the cluster and owned by nobody else: adopted.
        reshape_path(&mut d, &live(), "/spec/paused", "kustomize-controller");
        assert_eq!(d["spec"]["paused"], false);
    }

    #[test]
    fn absent_or_equal_values_keep_the_manifest() {
        let mut d = desired();
        let before = d.clone();
        reshape_path(&mut d, &live(), "/spec/strategy", "kustomize-controller");
        reshape_path(&mut d, &live(), "/metadata/name", "kustomize-controller");
        assert_eq!(d, before);
    }

    #[test]
    fn pointers_unescape_and_validate() {
        assert_eq!(
            segments("/metadata/annotations/a~1b~0c"),
            vec!["metadata", "annotations", "a/b~c"]
        );
        let ks: Kustomization = serde_json::from_value(json!({
            "apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
            "metadata": {"name": "k"},
            "spec": {"interval": "1m", "prune": true, "sourceRef": {"kind": "GitRepository", "name": "r"},
                     "ignore": [{"paths": ["spec/replicas"]}]}
        }))
        .unwrap();
        let f = validate(&ks).unwrap_err();
        assert!(f.message.contains("invalid JSON pointer 'spec/replicas'"));
    }

    #[test]
    fn targets_select_by_kind_name_and_labels() {
        let o = json!({"apiVersion": "apps/v1", "kind": "Deployment",
                       "metadata": {"name": "web-1", "namespace": "n", "labels": {"tier": "front"}}});
        let sel = |v: Value| -> Selector { serde_json::from_value(v).unwrap() };
        assert!(selects(
            &sel(json!({"kind": "Deployment", "name": "web-.*"})),
            &o
        ));
        assert!(!selects(&sel(json!({"kind": "Deploy"})), &o), "anchored");
        assert!(selects(
            &sel(json!({"group": "apps", "labelSelector": "tier in (front,back)"})),
            &o
        ));
        assert!(!selects(&sel(json!({"labelSelector": "tier!=front"})), &o));
        assert!(!selects(&sel(json!({"annotationSelector": "a"})), &o));
    }
}
