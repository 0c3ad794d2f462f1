//! Three-way merge patches, as Helm 3 computes them for a client-side update: `original`
//! (the object in the previous release's manifest), `modified` (the new manifest) and
//! `current` (the live object). The patch sets what `modified` changes against `current`
//! and deletes what `original` had and `modified` dropped; fields only `current` has
//! (set by someone else) are left alone.
//!
//! Two flavours: a JSON merge patch (RFC 7386, lists replaced whole) for custom resources,
//! and a strategic merge patch for built-in kinds, where lists of containers, env vars,
//! ports, volumes (and the other lists of [`merge_key`]) are merged element by element on
//! their merge key and a dropped element is deleted with a `$patch: delete` directive.

use serde_json::{Map, Value};

/// Groups whose kinds the API server serves with strategic merge patch (built-in kinds).
const BUILT_IN_GROUPS: &[&str] = &[
    "",
    "apps",
    "batch",
    "autoscaling",
    "policy",
    "networking.k8s.io",
    "rbac.authorization.k8s.io",
    "storage.k8s.io",
    "scheduling.k8s.io",
    "coordination.k8s.io",
    "node.k8s.io",
    "discovery.k8s.io",
    "admissionregistration.k8s.io",
    "certificates.k8s.io",
    "apiextensions.k8s.io",
    "apiregistration.k8s.io",
];

/// Whether objects of `group` take strategic merge patches (built-in kinds do, custom
/// resources do not).
pub fn is_strategic(group: &str) -> bool {
    BUILT_IN_GROUPS.contains(&group)
}

/// The merge key of a list field of a built-in kind (Kubernetes' `patchMergeKey`), when
/// every element is a map carrying it; `None` means the list is replaced whole.
pub fn merge_key(field: &str, elements: &[Value]) -> Option<&'static str> {
    let key = match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "env"
        | "volumes"
        | "imagePullSecrets" => "name",
        "volumeMounts" => "mountPath",
        "volumeDevices" => "devicePath",
        "hostAliases" => "ip",
        // Container ports merge on containerPort, Service ports on port.
        "ports" if elements.iter().any(|e| e.get("containerPort").is_some()) => "containerPort",
        "ports" => "port",
        _ => return None,
    };
    elements
        .iter()
        .all(|e| e.get(key).is_some_and(|k| !k.is_null()))
        .then_some(key)
}

/// The three-way patch (see the module docs); an empty map when nothing changes.
pub fn patch(original: &Value, modified: &Value, current: &Value, strategic: bool) -> Value {
    let empty = Map::new();
    let as_map = |v: &Value| v.as_object().cloned().unwrap_or_else(|| empty.clone());
    let (o, m, c) = (as_map(original), as_map(modified), as_map(current));
    let deletions = deletions(&o, &m, strategic);
    let changes = changes(&c, &m, strategic);
    Value::Object(merge(deletions, changes, strategic))
}

/// What `modified` sets differently from `current` (nothing is deleted here).
fn changes(
    current: &Map<String, Value>,
    modified: &Map<String, Value>,
    sm: bool,
) -> Map<String, Value> {
    let mut out = Map::new();
    for (k, mv) in modified {
        let cv = current.get(k);
        match (cv, mv) {
            (Some(Value::Object(c)), Value::Object(m)) => {
                let sub = changes(c, m, sm);
                if !sub.is_empty() {
                    out.insert(k.clone(), Value::Object(sub));
                }
            }
            (Some(Value::Array(c)), Value::Array(m)) if c == m => {}
            (Some(Value::Array(c)), Value::Array(m)) => match keyed(k, m, c, sm) {
                Some(key) => {
                    let items = list_changes(c, m, key, sm);
                    if !items.is_empty() {
                        out.insert(k.clone(), Value::Array(items));
                    }
                }
                None => {
                    out.insert(k.clone(), mv.clone());
                }
            },
            (Some(c), m) if c == m => {}
            _ => {
                out.insert(k.clone(), mv.clone());
            }
        }
    }
    out
}

/// The merge key of `field` when both lists are mergeable by it under a strategic patch.
fn keyed(field: &str, a: &[Value], b: &[Value], sm: bool) -> Option<&'static str> {
    if !sm {
        return None;
    }
    let key = merge_key(field, a)?;
    b.iter()
        .all(|e| e.get(key).is_some_and(|k| !k.is_null()))
        .then_some(key)
}

fn find<'a>(list: &'a [Value], key: &str, value: &Value) -> Option<&'a Value> {
    list.iter().find(|e| e.get(key) == Some(value))
}

/// Per-element changes of a keyed list: new elements whole, changed ones as a patch
/// carrying their key.
fn list_changes(current: &[Value], modified: &[Value], key: &str, sm: bool) -> Vec<Value> {
    let mut out = Vec::new();
    for m in modified {
        let kv = m.get(key).cloned().unwrap_or(Value::Null);
        match (find(current, key, &kv), m) {
            (Some(Value::Object(c)), Value::Object(mm)) => {
                let mut sub = changes(c, mm, sm);
                if !sub.is_empty() {
                    sub.insert(key.to_string(), kv);
                    out.push(Value::Object(sub));
                }
            }
            (Some(c), _) if c == m => {}
            _ => out.push(m.clone()),
        }
    }
    out
}

/// What `original` had and `modified` dropped, as deletions (`null`, or `$patch: delete`
/// elements of keyed lists).
fn deletions(
    original: &Map<String, Value>,
    modified: &Map<String, Value>,
    sm: bool,
) -> Map<String, Value> {
    let mut out = Map::new();
    for (k, ov) in original {
        let Some(mv) = modified.get(k) else {
            out.insert(k.clone(), Value::Null);
            continue;
        };
        match (ov, mv) {
            (Value::Object(o), Value::Object(m)) => {
                let sub = deletions(o, m, sm);
                if !sub.is_empty() {
                    out.insert(k.clone(), Value::Object(sub));
                }
            }
            (Value::Array(o), Value::Array(m)) => {
                if let Some(key) = keyed(k, o, m, sm) {
                    let items = list_deletions(o, m, key, sm);
                    if !items.is_empty() {
                        out.insert(k.clone(), Value::Array(items));
                    }
                }
            }
            _ => {}
        }
    }
    out
}

fn list_deletions(original: &[Value], modified: &[Value], key: &str, sm: bool) -> Vec<Value> {
    let mut out = Vec::new();
    for o in original {
        let kv = o.get(key).cloned().unwrap_or(Value::Null);
        match (find(modified, key, &kv), o) {
            (None, _) => {
                let mut d = Map::new();
                d.insert("$patch".into(), Value::String("delete".into()));
                d.insert(key.to_string(), kv);
                out.push(Value::Object(d));
            }
            (Some(Value::Object(m)), Value::Object(oo)) => {
                let mut sub = deletions(oo, m, sm);
                if !sub.is_empty() {
                    sub.insert(key.to_string(), kv);
                    out.push(Value::Object(sub));
                }
            }
            _ => {}
        }
    }
    out
}

/// Deep-merges two patches; keyed list entries for the same element are merged into one.
fn merge(mut a: Map<String, Value>, b: Map<String, Value>, sm: bool) -> Map<String, Value> {
    for (k, bv) in b {
        let merged = match (a.remove(&k), bv) {
            (Some(Value::Object(x)), Value::Object(y)) => Value::Object(merge(x, y, sm)),
            (Some(Value::Array(x)), Value::Array(y)) if sm => {
                let all: Vec<Value> = x.iter().chain(&y).cloned().collect();
                Value::Array(match merge_key(&k, &all) {
                    Some(key) => merge_lists(x, y, key),
                    None => y,
                })
            }
            (_, y) => y,
        };
        a.insert(k, merged);
    }
    a
}

fn merge_lists(mut x: Vec<Value>, y: Vec<Value>, key: &str) -> Vec<Value> {
    for e in y {
        let kv = e.get(key).cloned();
        match x.iter_mut().find(|o| o.get(key).cloned() == kv) {
            Some(Value::Object(o)) => {
                if let Value::Object(em) = e {
                    let merged = merge(std::mem::take(o), em, true);
                    *o = merged;
                }
            }
            _ => x.push(e),
        }
    }
    x
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deploy(containers: Value, labels: Value) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "d", "labels": labels},
            "spec": {"template": {"spec": {"containers": containers}}}})
    }

    #[test]
    fn keeps_foreign_fields_and_deletes_dropped_ones() {
        let original = deploy(
            json!([{"name": "app", "image": "a:1", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]}]),
            json!({"team": "x", "old": "y"}),
        );
        let modified = deploy(
            json!([{"name": "app", "image": "a:2", "env": [{"name": "A", "value": "1"}]}]),
            json!({"team": "x"}),
        );
        // Someone else added a label and a sidecar to the live object.
        let mut current = deploy(
            json!([{"name": "app", "image": "a:1", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]},
                   {"name": "sidecar", "image": "s:1"}]),
            json!({"team": "x", "old": "y", "foreign": "z"}),
        );
        current["metadata"]["uid"] = json!("123");
        let p = patch(&original, &modified, &current, true);
        assert_eq!(
            p,
            json!({"metadata": {"labels": {"old": null}},
                "spec": {"template": {"spec": {"containers": [
                    {"name": "app", "image": "a:2",
                     "env": [{"$patch": "delete", "name": "B"}]}]}}}})
        );
        // A merge patch for a custom resource replaces lists whole.
        let p = patch(&original, &modified, &current, false);
        assert_eq!(p["metadata"], json!({"labels": {"old": null}}));
        assert_eq!(
            p["spec"]["template"]["spec"]["containers"],
            modified["spec"]["template"]["spec"]["containers"]
        );
    }

    #[test]
    fn unchanged_is_empty_and_new_elements_are_whole() {
        let m = deploy(json!([{"name": "app", "image": "a:1"}]), json!({}));
        assert_eq!(patch(&m, &m, &m, true), json!({}));
        let added = deploy(
            json!([{"name": "app", "image": "a:1"}, {"name": "b", "image": "b:1",
                "ports": [{"containerPort": 80}]}]),
            json!({}),
        );
        assert_eq!(
            patch(&m, &added, &m, true),
            json!({"spec": {"template": {"spec": {"containers": [
                {"name": "b", "image": "b:1", "ports": [{"containerPort": 80}]}]}}}})
        );
        assert_eq!(merge_key("ports", &[json!({"port": 80})]), Some("port"));
        assert_eq!(merge_key("args", &[json!("a")]), None);
        assert!(is_strategic("apps") && !is_strategic("example.com"));
    }

    #[test]
    fn changes_and_deletions_of_one_element_merge() {
        let original = deploy(
            json!([{"name": "app", "image": "a:1", "args": ["x"]}]),
            json!({}),
        );
        let modified = deploy(json!([{"name": "app", "image": "a:2"}]), json!({}));
        let p = patch(&original, &modified, &original, true);
        assert_eq!(
            p["spec"]["template"]["spec"]["containers"],
            json!([{"name": "app", "args": null, "image": "a:2"}])
        );
    }
}
