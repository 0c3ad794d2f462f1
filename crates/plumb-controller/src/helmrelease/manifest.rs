//! Release manifests: YAML documents parsed into objects with the release namespace filled
//! in and Helm's ownership metadata and Flux's origin labels stamped, and the objects a
//! stored manifest names. Kinds are resolved through the applier's discovery cache.

use kube::api::{Api, ApiResource, DynamicObject};
use plumb_api::consts::annotation;
use plumb_ssa::{Applier, ObjectRef};
use serde_json::{Map, Value};

use super::target::Target;

/// (resource, namespaced) of a kind, through the applier's discovery cache.
pub(super) async fn resolve_kind(
    applier: &Applier,
    r: &ObjectRef,
) -> std::result::Result<(ApiResource, bool), String> {
    applier
        .kind_of(r)
        .await
        .map_err(|e| format!("resolving kind {} {}: {e}", r.api_version(), r.kind))
}

pub(super) async fn dynamic_api(
    applier: &Applier,
    r: &ObjectRef,
) -> std::result::Result<Api<DynamicObject>, String> {
    let (ar, namespaced) = resolve_kind(applier, r).await?;
    Ok(if namespaced {
        Api::namespaced_with(applier.client().clone(), &r.namespace, &ar)
    } else {
        Api::all_with(applier.client().clone(), &ar)
    })
}

pub(super) fn yaml_object(doc: &str) -> std::result::Result<Value, String> {
    let v = plumb_helm::encode::yaml_to_value(doc)?.to_json();
    match v {
        Value::Null | Value::Object(_) => Ok(v),
        _ => Err("document is not a map".into()),
    }
}

/// Parses documents, fills in the release namespace of namespaced objects and stamps
/// Helm's ownership metadata and Flux's origin labels.
pub(super) async fn parse_docs(
    applier: &Applier,
    text: &str,
    t: &Target,
) -> std::result::Result<Vec<Value>, String> {
    let mut out = Vec::new();
    for doc in plumb_helm::render::split_manifests(text) {
        let mut v = yaml_object(&doc)?;
        if v.is_null() {
            continue;
        }
        let r = ObjectRef::from_object(&v).map_err(|e| e.to_string())?;
        let (_, namespaced) = resolve_kind(applier, &r).await?;
        let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) else {
            continue;
        };
        if namespaced && r.namespace.is_empty() {
            meta.insert("namespace".into(), Value::String(t.namespace.clone()));
        }
        if !namespaced {
            meta.remove("namespace");
        }
        let labels = meta
            .entry("labels")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Some(l) = labels.as_object_mut() {
            l.insert("app.kubernetes.io/managed-by".into(), "Helm".into());
            for (k, v) in &t.origin {
                l.insert(k.clone(), Value::String(v.clone()));
            }
        }
        let ann = meta
            .entry("annotations")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Some(a) = ann.as_object_mut() {
            a.insert(annotation::HELM_RELEASE_NAME.into(), t.name.clone().into());
            a.insert(
                annotation::HELM_RELEASE_NAMESPACE.into(),
                t.namespace.clone().into(),
            );
        }
        out.push(v);
    }
    Ok(out)
}

pub(super) async fn parse_manifest(
    applier: &Applier,
    manifest: &str,
    t: &Target,
) -> std::result::Result<Vec<Value>, String> {
    parse_docs(applier, manifest, t).await
}

/// The objects a stored manifest names (kinds no longer served are skipped).
pub(super) async fn manifest_refs(
    applier: &Applier,
    manifest: &str,
    namespace: &str,
) -> std::result::Result<Vec<ObjectRef>, String> {
    let mut out = Vec::new();
    for doc in plumb_helm::render::split_manifests(manifest) {
        let v = yaml_object(&doc)?;
        let Ok(mut r) = ObjectRef::from_object(&v) else {
            continue;
        };
        let Ok((_, namespaced)) = resolve_kind(applier, &r).await else {
            continue;
        };
        if namespaced && r.namespace.is_empty() {
            r.namespace = namespace.to_string();
        }
        if !namespaced {
            r.namespace.clear();
        }
        out.push(r);
    }
    Ok(out)
}
