//! Structural checks of CRD schemas and of objects against them.
//!
//! [`unknown_fields`] answers "would the API server prune anything from this object?": it
//! walks the object along the version's openAPIV3Schema and reports every key that has no
//! property in the schema and is not below `x-kubernetes-preserve-unknown-fields`, and every
//! `null` where the schema is not nullable (the API server drops those too).
//! [`structural_violations`] checks the rules of a structural schema that Kubernetes 1.20
//! enforces for `apiextensions.k8s.io/v1`.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
};
use serde_json::Value;

/// Paths of fields of `object` the API server would prune, e.g. `.spec.foo` or
/// `.spec.items[0].bar`. The version is taken from the object's `apiVersion`; when it names no
/// served version, the whole object is reported as `.apiVersion`.
pub fn unknown_fields(crd: &CustomResourceDefinition, object: &Value) -> Vec<String> {
    let api_version = object
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("");
    let version = api_version.rsplit('/').next().unwrap_or("");
    let group_ok = api_version
        .rsplit_once('/')
        .is_some_and(|(g, _)| g == crd.spec.group);
    let schema = crd
        .spec
        .versions
        .iter()
        .find(|v| group_ok && v.name == version)
        .and_then(|v| v.schema.as_ref())
        .and_then(|s| s.open_api_v3_schema.as_ref());
    let Some(schema) = schema else {
        return vec![".apiVersion".to_owned()];
    };
    let mut out = Vec::new();
    let Value::Object(map) = object else {
        return vec![String::new()];
    };
    for (key, value) in map {
        // The API server handles these itself, with or without schema properties.
        if matches!(key.as_str(), "apiVersion" | "kind" | "metadata") {
            continue;
        }
        match schema.properties.as_ref().and_then(|p| p.get(key)) {
            Some(sub) => walk(sub, value, &format!(".{key}"), &mut out),
            None if preserves(schema) => {}
            None => out.push(format!(".{key}")),
        }
    }
    out
}

fn preserves(schema: &JSONSchemaProps) -> bool {
    schema.x_kubernetes_preserve_unknown_fields == Some(true)
}

fn walk(schema: &JSONSchemaProps, value: &Value, path: &str, out: &mut Vec<String>) {
    if preserves(schema) && schema.properties.is_none() {
        return;
    }
    match value {
        Value::Null if schema.nullable != Some(true) => out.push(format!("{path} (null)")),
        Value::Object(map) => {
            let additional = match &schema.additional_properties {
                Some(JSONSchemaPropsOrBool::Schema(s)) => Some(Some(s.as_ref())),
                Some(JSONSchemaPropsOrBool::Bool(true)) => Some(None),
                _ => None,
            };
            for (key, v) in map {
                let sub_path = format!("{path}.{key}");
                if let Some(sub) = schema.properties.as_ref().and_then(|p| p.get(key)) {
                    walk(sub, v, &sub_path, out);
                } else if let Some(additional) = additional {
                    if let Some(sub) = additional {
                        walk(sub, v, &sub_path, out);
                    }
                } else if !preserves(schema) {
                    out.push(sub_path);
                }
            }
        }
        Value::Array(items) => {
            let item_schema = match &schema.items {
                Some(JSONSchemaPropsOrArray::Schema(s)) => Some(s.as_ref()),
                Some(JSONSchemaPropsOrArray::Schemas(list)) => list.first(),
                None => None,
            };
            if let Some(item_schema) = item_schema {
                for (i, v) in items.iter().enumerate() {
                    walk(item_schema, v, &format!("{path}[{i}]"), out);
                }
            }
        }
        _ => {}
    }
}

/// Paths of values in `sent` that are missing from, or different in, `read_back`: what the API
/// server lost when it stored an object. Keys the server added (defaults, `metadata.uid`, ...)
/// are not reported; list elements are compared by position.
pub fn lost_fields(sent: &Value, read_back: &Value) -> Vec<String> {
    let mut out = Vec::new();
    diff(sent, read_back, "", &mut out);
    out
}

fn diff(sent: &Value, got: &Value, path: &str, out: &mut Vec<String>) {
    match (sent, got) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in a {
                let p = format!("{path}.{k}");
                match b.get(k) {
                    Some(w) => diff(v, w, &p, out),
                    None => out.push(p),
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            for (i, v) in a.iter().enumerate() {
                let p = format!("{path}[{i}]");
                match b.get(i) {
                    Some(w) => diff(v, w, &p, out),
                    None => out.push(p),
                }
            }
        }
        (Value::Number(a), Value::Number(b)) if a.as_f64() == b.as_f64() => {}
        (a, b) if a == b => {}
        _ => out.push(format!("{path} (changed)")),
    }
}

/// Violations of the structural-schema rules (and of what Kubernetes 1.20 supports) in every
/// version of `crd`. Empty when the CRD is acceptable.
pub fn structural_violations(crd: &CustomResourceDefinition) -> Vec<String> {
    let mut out = Vec::new();
    for v in &crd.spec.versions {
        match v
            .schema
            .as_ref()
            .and_then(|s| s.open_api_v3_schema.as_ref())
        {
            Some(s) => check_node(s, &format!("{}:", v.name), true, &mut out),
            None => out.push(format!("{}: no openAPIV3Schema", v.name)),
        }
    }
    out
}

fn check_node(s: &JSONSchemaProps, path: &str, root: bool, out: &mut Vec<String>) {
    let typeless_ok = preserves(s) || s.x_kubernetes_int_or_string == Some(true);
    if s.type_.is_none() && !typeless_ok {
        out.push(format!("{path} has no type"));
    }
    if s.ref_path.is_some() {
        out.push(format!("{path} uses $ref"));
    }
    if s.properties.is_some()
        && matches!(
            s.additional_properties,
            Some(JSONSchemaPropsOrBool::Schema(_)) | Some(JSONSchemaPropsOrBool::Bool(true))
        )
    {
        out.push(format!(
            "{path} has both properties and additionalProperties"
        ));
    }
    if s.x_kubernetes_validations.is_some() {
        out.push(format!(
            "{path} uses x-kubernetes-validations (not in Kubernetes 1.20)"
        ));
    }
    if root && s.nullable == Some(true) {
        out.push(format!("{path} root is nullable"));
    }
    for (name, list) in [
        ("allOf", &s.all_of),
        ("anyOf", &s.any_of),
        ("oneOf", &s.one_of),
    ] {
        for (i, sub) in list.iter().flatten().enumerate() {
            check_junctor(sub, &format!("{path}.{name}[{i}]"), out);
        }
    }
    if let Some(not) = &s.not {
        check_junctor(not, &format!("{path}.not"), out);
    }
    for (k, sub) in s.properties.iter().flatten() {
        check_node(sub, &format!("{path}.{k}"), false, out);
    }
    if let Some(JSONSchemaPropsOrBool::Schema(sub)) = &s.additional_properties {
        check_node(sub, &format!("{path}.*"), false, out);
    }
    match &s.items {
        Some(JSONSchemaPropsOrArray::Schema(sub)) => {
            check_node(sub, &format!("{path}[]"), false, out)
        }
        Some(JSONSchemaPropsOrArray::Schemas(_)) => out.push(format!("{path} has tuple items")),
        None => {
            if s.type_.as_deref() == Some("array") {
                out.push(format!("{path} is an array without items"));
            }
        }
    }
}

/// Inside allOf/anyOf/oneOf/not only value validations are allowed: no type, description,
/// default, nullable or additionalProperties, and only properties already specified outside.
fn check_junctor(s: &JSONSchemaProps, path: &str, out: &mut Vec<String>) {
    if s.type_.is_some()
        || s.description.is_some()
        || s.default.is_some()
        || s.nullable.is_some()
        || s.additional_properties.is_some()
        || s.x_kubernetes_preserve_unknown_fields.is_some()
    {
        out.push(format!(
            "{path} sets type/description/default/nullable/additionalProperties inside a junctor"
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn generated_crds_are_structural() {
        for crd in crate::crds() {
            let v = structural_violations(&crd);
            assert!(
                v.is_empty(),
                "{}: {v:#?}",
                crd.metadata.name.unwrap_or_default()
            );
        }
    }

    #[test]
    fn finds_unknown_and_null_fields() {
        let crd = crate::crds()
            .into_iter()
            .find(|c| c.spec.names.kind == "GitRepository")
            .unwrap();
        let obj = json!({
            "apiVersion": "source.toolkit.fluxcd.io/v1",
            "kind": "GitRepository",
            "metadata": {"name": "x", "labels": {"a": "b"}},
            "spec": {
                "url": "https://example.com/x.git",
                "interval": "1m",
                "bogus": 1,
                "ref": {"branch": "main", "nope": "x"},
                "include": [{"repository": {"name": "y", "extra": true}}],
                "timeout": null
            },
            "extraTop": {}
        });
        let mut got = unknown_fields(&crd, &obj);
        got.sort();
        assert_eq!(
            got,
            vec![
                ".extraTop",
                ".spec.bogus",
                ".spec.include[0].repository.extra",
                ".spec.ref.nope",
                ".spec.timeout (null)",
            ]
        );
        let wrong = json!({"apiVersion": "source.toolkit.fluxcd.io/v9", "kind": "GitRepository"});
        assert_eq!(unknown_fields(&crd, &wrong), vec![".apiVersion"]);
    }

    #[test]
    fn lost_fields_ignores_additions_and_reports_losses() {
        let sent = json!({"spec": {"a": 1, "b": [1, {"c": "x"}], "d": {"e": true}}});
        let same_plus =
            json!({"spec": {"a": 1.0, "b": [1, {"c": "x", "z": 0}], "d": {"e": true}, "n": 1}});
        assert!(lost_fields(&sent, &same_plus).is_empty());
        let lossy = json!({"spec": {"a": 2, "b": [1], "d": {}}});
        assert_eq!(
            lost_fields(&sent, &lossy),
            vec![".spec.a (changed)", ".spec.b[1]", ".spec.d.e"]
        );
    }

    #[test]
    fn preserve_unknown_fields_keeps_everything_below() {
        let crd = crate::crds()
            .into_iter()
            .find(|c| c.spec.names.kind == "HelmRelease")
            .unwrap();
        let obj = json!({
            "apiVersion": "helm.toolkit.fluxcd.io/v2",
            "kind": "HelmRelease",
            "spec": {"interval": "1m", "values": {"any": {"deep": [1, {"x": null}]}}}
        });
        assert!(unknown_fields(&crd, &obj).is_empty());
    }
}
