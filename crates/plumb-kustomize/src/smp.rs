//! Strategic merge patch with kustomize (kyaml merge2) semantics: schema-driven merge keys,
//! `$patch: delete|replace|merge` directives, null deletes, patch elements ordered first, and for
//! types without schema, lists of maps merged by kyaml's associative keys.

use serde_json::{Map, Value};

use crate::schema::Schema;

const ASSOC_KEYS: &[&str] = &[
    "mountPath",
    "devicePath",
    "ip",
    "type",
    "topologyKey",
    "name",
    "containerPort",
];

/// Applies `patch` to `dst` (both objects). Returns false when the patch deletes the object.
pub(crate) fn apply(
    dst: &mut Map<String, Value>,
    patch: &Map<String, Value>,
    schema: &Schema,
    def: Option<&str>,
) -> bool {
    if directive(patch) == Some("delete") {
        return false;
    }
    if directive(patch) == Some("replace") {
        *dst = clean_map(patch);
        return true;
    }
    merge_map(dst, patch, schema, def);
    true
}

fn directive(m: &Map<String, Value>) -> Option<&str> {
    m.get("$patch").and_then(Value::as_str)
}

fn clean(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(clean_map(m)),
        Value::Array(a) => Value::Array(
            a.iter()
                .filter(|x| !matches!(x, Value::Object(m) if directive(m) == Some("delete")))
                .filter(
                    |x| !matches!(x, Value::Object(m) if m.len() == 1 && directive(m).is_some()),
                )
                .map(clean)
                .collect(),
        ),
        other => other.clone(),
    }
}

fn clean_map(m: &Map<String, Value>) -> Map<String, Value> {
    m.iter()
        .filter(|(k, v)| !k.starts_with('$') && !v.is_null())
        .map(|(k, v)| (k.clone(), clean(v)))
        .collect()
}

fn merge_map(
    dst: &mut Map<String, Value>,
    patch: &Map<String, Value>,
    schema: &Schema,
    def: Option<&str>,
) {
    for (k, pv) in patch {
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(d)), Some(del)) = (dst.get_mut(field), pv.as_array()) {
                d.retain(|x| !del.contains(x));
            }
            continue;
        }
        if k.starts_with('$') {
            continue;
        }
        if pv.is_null() {
            dst.remove(k);
            continue;
        }
        let fi = def.and_then(|d| schema.field(d, k));
        let child_def = fi.filter(|f| !f.r.is_empty()).map(|f| f.r.as_str());
        match (dst.get_mut(k), pv) {
            (Some(Value::Object(d)), Value::Object(p)) => match directive(p) {
                Some("delete") => {
                    dst.remove(k);
                }
                Some("replace") => {
                    dst.insert(k.clone(), Value::Object(clean_map(p)));
                }
                _ => {
                    if fi.is_some_and(|f| f.shape == b'm') {
                        // A map of typed values: merge each entry with the value type.
                        for (mk, mv) in p {
                            if mk.starts_with('$') {
                                continue;
                            }
                            match (d.get_mut(mk), mv) {
                                (_, Value::Null) => {
                                    d.remove(mk);
                                }
                                (Some(Value::Object(dd)), Value::Object(pp)) => {
                                    merge_map(dd, pp, schema, child_def)
                                }
                                _ => {
                                    d.insert(mk.clone(), clean(mv));
                                }
                            }
                        }
                    } else {
                        merge_map(d, p, schema, child_def)
                    }
                }
            },
            (Some(Value::Array(d)), Value::Array(p)) => {
                let (mk, strategy) = match fi {
                    Some(f) => (f.merge_key.clone(), f.strategy.clone()),
                    None if def.is_none() || child_def.is_none() => {
                        (infer_key(d, p).unwrap_or_default(), "merge".into())
                    }
                    None => (String::new(), String::new()),
                };
                merge_list(d, p, &mk, &strategy, schema, child_def);
            }
            (Some(_), Value::Object(p)) if directive(p) == Some("delete") => {
                dst.remove(k);
            }
            (None, Value::Object(p)) if directive(p) == Some("delete") => {}
            _ => {
                dst.insert(k.clone(), clean(pv));
            }
        }
    }
}

fn infer_key(d: &[Value], p: &[Value]) -> Option<String> {
    if d.is_empty() && p.is_empty() {
        return None;
    }
    ASSOC_KEYS
        .iter()
        .find(|k| {
            d.iter().chain(p).all(|e| match e {
                Value::Object(m) => m.contains_key(**k) || directive(m).is_some() && m.len() == 1,
                _ => false,
            })
        })
        .map(|k| k.to_string())
}

fn merge_list(
    d: &mut Vec<Value>,
    p: &[Value],
    mk: &str,
    strategy: &str,
    schema: &Schema,
    def: Option<&str>,
) {
    // `$patch: replace` inside a list replaces the whole list.
    if p.iter()
        .any(|e| matches!(e, Value::Object(m) if directive(m) == Some("replace")))
    {
        *d = p
            .iter()
            .filter(|e| !matches!(e, Value::Object(m) if directive(m).is_some() && m.len() == 1))
            .map(clean)
            .collect();
        return;
    }
    let merging = strategy.split(',').any(|s| s == "merge");
    if !merging {
        *d = p.iter().map(clean).collect();
        return;
    }
    if mk.is_empty() {
        if p.iter().all(|e| !e.is_object() && !e.is_array()) {
            // Primitive list with merge strategy: set union.
            for e in p {
                if !d.contains(e) {
                    d.push(e.clone());
                }
            }
        } else {
            *d = p.iter().map(clean).collect();
        }
        return;
    }
    // kyaml's order: the patch's elements first (merged with their counterparts), then the
    // elements only the original has.
    let mut used = vec![false; d.len()];
    let mut out = Vec::with_capacity(d.len() + p.len());
    for pe in p {
        let Value::Object(pm) = pe else {
            out.push(pe.clone());
            continue;
        };
        let key = pm.get(mk);
        let pos = key.and_then(|kv| {
            d.iter()
                .enumerate()
                .position(|(i, de)| !used[i] && de.get(mk).is_some_and(|dk| same_key(dk, kv)))
        });
        if let Some(i) = pos {
            used[i] = true;
        }
        match (directive(pm), pos) {
            (Some("delete"), _) => {}
            (Some("replace"), _) => out.push(Value::Object(clean_map(pm))),
            (_, Some(i)) => {
                let mut merged = d[i].clone();
                if let Value::Object(dm) = &mut merged {
                    merge_map(dm, pm, schema, def);
                }
                out.push(merged);
            }
            (_, None) => out.push(Value::Object(clean_map(pm))),
        }
    }
    for (i, de) in d.drain(..).enumerate() {
        if !used[i] {
            out.push(de);
        }
    }
    *d = out;
}

fn same_key(a: &Value, b: &Value) -> bool {
    a == b || crate::resource::value_string(a) == crate::resource::value_string(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn merges_containers_by_name_and_deletes_nulls() {
        let schema = crate::schema::builtin();
        let def = schema.def_for(&crate::resource::Gvk::from_api_version(
            "apps/v1",
            "Deployment",
        ));
        let mut d = obj(
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x", "labels": {"a": "1"}},
            "spec": {"template": {"spec": {"containers": [{"name": "app", "image": "old"}]}}}}),
        );
        let p = obj(json!({"metadata": {"labels": {"a": null}},
            "spec": {"template": {"spec": {"containers": [{"name": "app", "image": "new"}, {"name": "side", "image": "s"}]}}}}));
        assert!(apply(&mut d, &p, schema, def));
        let c = &d["spec"]["template"]["spec"]["containers"];
        assert_eq!(
            c,
            &json!([{"name": "app", "image": "new"}, {"name": "side", "image": "s"}])
        );
        let p2 = obj(json!({"spec": {"template": {"spec": {"containers": [{"name": "first"}]}}}}));
        apply(&mut d, &p2, schema, def);
        assert_eq!(
            d["spec"]["template"]["spec"]["containers"][0]["name"],
            "first"
        );
        assert_eq!(d["metadata"]["labels"], json!({}));
    }

    #[test]
    fn delete_directive_in_list() {
        let schema = crate::schema::builtin();
        let def = schema.def_for(&crate::resource::Gvk::from_api_version(
            "apps/v1",
            "Deployment",
        ));
        let mut d = obj(
            json!({"spec": {"template": {"spec": {"containers": [{"name": "a"}, {"name": "b"}]}}}}),
        );
        let p = obj(
            json!({"spec": {"template": {"spec": {"containers": [{"name": "a", "$patch": "delete"}]}}}}),
        );
        apply(&mut d, &p, schema, def);
        assert_eq!(
            d["spec"]["template"]["spec"]["containers"],
            json!([{"name": "b"}])
        );
    }
}
