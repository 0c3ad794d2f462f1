// Shared by build.rs (through `#[path]`) and by the runtime loader of custom `openapi:` schemas,
// so the built-in table and user schemas take the same conversion path.

/// Reduces an OpenAPI v2 (swagger) document to what strategic merge and namespace scoping need:
/// `{"defs": {def: {field: [ref, shape, mergeKey, strategy]}}, "gvk": {"g|v|k": def},
///  "namespaced": ["g|v|k"], "cluster": ["g|v|k"]}`. Scalar fields are left out. Scope is per
/// exact group, version and kind, as kustomize looks it up: a version the document does not
/// list is namespaced.
pub(crate) fn compact_schema(swagger: &serde_json::Value) -> serde_json::Value {
    use serde_json::{Map, Value, json};
    fn ref_name(v: &Value) -> Option<String> {
        v.get("$ref")
            .and_then(Value::as_str)
            .map(|r| r.trim_start_matches("#/definitions/").to_string())
    }
    let mut defs = Map::new();
    let mut gvks = Map::new();
    let empty = Map::new();
    let definitions = swagger
        .get("definitions")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    for (name, def) in definitions {
        if let Some(list) = def
            .get("x-kubernetes-group-version-kind")
            .and_then(Value::as_array)
        {
            for g in list {
                let key = format!(
                    "{}|{}|{}",
                    g.get("group").and_then(Value::as_str).unwrap_or(""),
                    g.get("version").and_then(Value::as_str).unwrap_or(""),
                    g.get("kind").and_then(Value::as_str).unwrap_or("")
                );
                gvks.insert(key, Value::String(name.clone()));
            }
        }
        let mut fields = Map::new();
        if let Some(props) = def.get("properties").and_then(Value::as_object) {
            for (fname, f) in props {
                let mk = f
                    .get("x-kubernetes-patch-merge-key")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                let strat = f
                    .get("x-kubernetes-patch-strategy")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                let ty = f.get("type").and_then(Value::as_str).unwrap_or("");
                let (shape, r) = if let Some(r) = ref_name(f) {
                    ("o", r)
                } else if ty == "array" {
                    let items = f.get("items").cloned().unwrap_or(Value::Null);
                    ("l", ref_name(&items).unwrap_or_default())
                } else if ty == "object" {
                    let ap = f
                        .get("additionalProperties")
                        .cloned()
                        .unwrap_or(Value::Null);
                    ("m", ref_name(&ap).unwrap_or_default())
                } else {
                    continue;
                };
                fields.insert(fname.clone(), json!([r, shape, mk, strat]));
            }
        }
        if !fields.is_empty() {
            defs.insert(name.clone(), Value::Object(fields));
        }
    }
    let mut namespaced = std::collections::BTreeSet::new();
    let mut cluster = std::collections::BTreeSet::new();
    if let Some(paths) = swagger.get("paths").and_then(Value::as_object) {
        for (path, ops) in paths {
            let Some(ops) = ops.as_object() else { continue };
            for op in ops.values() {
                let Some(g) = op.get("x-kubernetes-group-version-kind") else {
                    continue;
                };
                let key = format!(
                    "{}|{}|{}",
                    g.get("group").and_then(Value::as_str).unwrap_or(""),
                    g.get("version").and_then(Value::as_str).unwrap_or(""),
                    g.get("kind").and_then(Value::as_str).unwrap_or("")
                );
                if path.contains("{namespace}") {
                    namespaced.insert(key);
                } else if !path.contains("/watch/") && !path.ends_with("/status") {
                    cluster.insert(key);
                }
            }
        }
    }
    let cluster: Vec<String> = cluster
        .into_iter()
        .filter(|k| !namespaced.contains(k))
        .collect();
    json!({"defs": defs, "gvk": gvks, "namespaced": namespaced, "cluster": cluster})
}
