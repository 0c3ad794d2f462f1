//! Values as Flux composes them: `valuesFrom` ConfigMaps and Secrets in order (whole
//! documents deep-merged, or one value at `targetPath`, verbatim when `literal`), then
//! `spec.values`.

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::ResourceExt;
use kube::api::Api;
use plumb_api::HelmRelease;
use plumb_api::consts::reason;
use plumb_api::kustomization::ValuesKind;
use serde_json::{Map, Value};

use crate::context::Context;
use crate::outcome::{Class, Failure};

/// Values as Flux composes them: each `valuesFrom` entry in order (whole documents
/// deep-merged, or one value set at `targetPath`), then `spec.values` on top.
pub async fn compose_values(
    obj: &HelmRelease,
    ctx: &Context,
) -> std::result::Result<Map<String, Value>, Failure> {
    let ns = obj.namespace().unwrap_or_default();
    let mut out = Map::new();
    for r in &obj.spec.values_from {
        let key = r.values_key.clone().unwrap_or_else(|| "values.yaml".into());
        let what = format!("{:?} '{ns}/{}'", r.kind, r.name);
        let miss = |m: String| Failure::new(Class::Waiting, reason::INIT_FAILED, m);
        let data: Option<Vec<u8>> = match r.kind {
            ValuesKind::ConfigMap => {
                let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &ns);
                let cm = api
                    .get_opt(&r.name)
                    .await
                    .map_err(|e| miss(format!("getting {what}: {e}")))?;
                match cm {
                    None => None,
                    Some(cm) => cm
                        .data
                        .as_ref()
                        .and_then(|d| d.get(&key))
                        .map(|s| s.as_bytes().to_vec())
                        .or_else(|| {
                            cm.binary_data
                                .as_ref()
                                .and_then(|d| d.get(&key))
                                .map(|b| b.0.clone())
                        }),
                }
            }
            ValuesKind::Secret => {
                let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
                let s = api
                    .get_opt(&r.name)
                    .await
                    .map_err(|e| miss(format!("getting {what}: {e}")))?;
                s.and_then(|s| s.data.and_then(|d| d.get(&key).map(|b| b.0.clone())))
            }
        };
        let Some(data) = data else {
            if r.optional {
                continue;
            }
            return Err(miss(format!(
                "could not find key '{key}' in {what} (or the object is missing)"
            )));
        };
        let text = String::from_utf8_lossy(&data).to_string();
        match &r.target_path {
            Some(path) if !path.is_empty() => {
                let tmp = plumb_helm::Value::empty_map();
                let set = if r.literal {
                    // Flux 2.9 `literal`: the value verbatim, as `helm --set-literal`.
                    plumb_helm::strvals::parse_literal_into(path, &text, &tmp)
                } else {
                    plumb_helm::strvals::parse_into(&format!("{path}={}", text.trim()), &tmp)
                };
                set.map_err(|e| {
                    Failure::new(
                        Class::Stalled,
                        reason::INIT_FAILED,
                        format!("invalid targetPath '{path}' for {what}: {e}"),
                    )
                })?;
                if let Value::Object(m) = tmp.to_json() {
                    merge_maps(&mut out, m);
                }
            }
            _ => {
                let v = plumb_helm::parse_values(&text).map_err(|e| {
                    Failure::new(
                        Class::Stalled,
                        reason::INIT_FAILED,
                        format!("unable to read values from key '{key}' in {what}: {e}"),
                    )
                })?;
                if let Value::Object(m) = v.to_json() {
                    merge_maps(&mut out, m);
                }
            }
        }
    }
    if let Some(Value::Object(m)) = &obj.spec.values {
        merge_maps(&mut out, m.clone());
    }
    Ok(out)
}

/// Deep merge as Helm's `MergeMaps`: maps merge key by key, anything else replaces.
pub(super) fn merge_maps(dst: &mut Map<String, Value>, src: Map<String, Value>) {
    for (k, v) in src {
        match (dst.get_mut(&k), v) {
            (Some(Value::Object(d)), Value::Object(s)) => merge_maps(d, s),
            (_, v) => {
                dst.insert(k, v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_maps_is_deep_and_later_wins() {
        let mut a = serde_json::json!({"a": {"b": 1, "c": 2}, "x": [1]})
            .as_object()
            .cloned()
            .unwrap();
        let b = serde_json::json!({"a": {"c": 3}, "x": [2]})
            .as_object()
            .cloned()
            .unwrap();
        merge_maps(&mut a, b);
        assert_eq!(
            Value::Object(a),
            serde_json::json!({"a": {"b": 1, "c": 3}, "x": [2]})
        );
    }
}
