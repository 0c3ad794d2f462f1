//! Full example objects of every kind: the generated schema keeps every field, and the Rust
//! types round-trip them without loss.

#![allow(clippy::unwrap_used)] // Tests may unwrap (DEVELOPERS.md rule 6).

use std::path::PathBuf;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use plumb_api::schema_check::unknown_fields;
use plumb_api::{
    GitRepository, HelmChart, HelmRelease, HelmRepository, Kustomization, OCIRepository, Receiver,
};
use plumb_api::{ImagePolicy, ImageRepository, ImageUpdateAutomation};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

fn fixture(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap();
    serde_saphyr::from_str(&text).unwrap()
}

fn crd_for(obj: &Value) -> CustomResourceDefinition {
    let kind = obj["kind"].as_str().unwrap();
    plumb_api::crds()
        .into_iter()
        .find(|c| c.spec.names.kind == kind)
        .unwrap()
}

/// Counts the leaves of a JSON value, so that a test cannot pass on an empty fixture.
fn leaves(v: &Value) -> usize {
    match v {
        Value::Object(m) => m.values().map(leaves).sum(),
        Value::Array(a) => a.iter().map(leaves).sum(),
        _ => 1,
    }
}

fn check<K: Serialize + DeserializeOwned>(name: &str, min_leaves: usize) {
    let obj = fixture(name);
    assert!(
        leaves(&obj) >= min_leaves,
        "{name} has only {} leaves",
        leaves(&obj)
    );
    let lost = unknown_fields(&crd_for(&obj), &obj);
    assert!(lost.is_empty(), "{name}: the schema would prune {lost:#?}");
    let typed: K = serde_json::from_value(obj.clone()).unwrap();
    let back = serde_json::to_value(&typed).unwrap();
    assert_eq!(back, obj, "{name}: the Rust type does not round-trip");
}

#[test]
fn gitrepository_full() {
    check::<GitRepository>("gitrepository-full.yaml", 60);
}

#[test]
fn helmrepository_full() {
    check::<HelmRepository>("helmrepository-full.yaml", 30);
}

#[test]
fn ocirepository_full() {
    check::<OCIRepository>("ocirepository-full.yaml", 35);
}

#[test]
fn helmchart_full() {
    check::<HelmChart>("helmchart-full.yaml", 35);
}

#[test]
fn kustomization_full() {
    check::<Kustomization>("kustomization-full.yaml", 80);
}

#[test]
fn helmrelease_full() {
    check::<HelmRelease>("helmrelease-full.yaml", 150);
}

#[test]
fn receiver_full() {
    check::<Receiver>("receiver-full.yaml", 20);
}

#[test]
fn provider_full() {
    check::<plumb_api::Provider>("provider-full.yaml", 20);
}

#[test]
fn alert_full() {
    check::<plumb_api::Alert>("alert-full.yaml", 20);
}

#[test]
fn imagerepository_full() {
    check::<ImageRepository>("imagerepository-full.yaml", 30);
}

#[test]
fn imagepolicy_full() {
    check::<ImagePolicy>("imagepolicy-full.yaml", 25);
}

#[test]
fn imageupdateautomation_full() {
    check::<ImageUpdateAutomation>("imageupdateautomation-full.yaml", 40);
}

/// Every property the schema declares under `spec` appears in the fixture, so a field added
/// to a type without a fixture update fails here.
#[test]
fn fixtures_cover_every_spec_and_status_property() {
    for name in [
        "gitrepository-full.yaml",
        "helmrepository-full.yaml",
        "ocirepository-full.yaml",
        "helmchart-full.yaml",
        "kustomization-full.yaml",
        "helmrelease-full.yaml",
        "receiver-full.yaml",
        "provider-full.yaml",
        "alert-full.yaml",
        "imagerepository-full.yaml",
        "imagepolicy-full.yaml",
        "imageupdateautomation-full.yaml",
    ] {
        let obj = fixture(name);
        let crd = crd_for(&obj);
        let schema = serde_json::to_value(
            crd.spec.versions[0]
                .schema
                .as_ref()
                .unwrap()
                .open_api_v3_schema
                .as_ref()
                .unwrap(),
        )
        .unwrap();
        let mut missing = Vec::new();
        for top in ["spec", "status"] {
            missing_props(&schema["properties"][top], &obj[top], top, &mut missing);
        }
        assert!(missing.is_empty(), "{name} does not set {missing:#?}");
    }
}

fn missing_props(schema: &Value, value: &Value, path: &str, out: &mut Vec<String>) {
    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
        for (key, sub) in props {
            match value.get(key) {
                None => out.push(format!("{path}.{key}")),
                Some(v) => missing_props(sub, v, &format!("{path}.{key}"), out),
            }
        }
    } else if let (Some(items), Some(arr)) = (schema.get("items"), value.as_array()) {
        // Every item property must be set in at least one element.
        if let Some(props) = items.get("properties").and_then(Value::as_object) {
            for (key, sub) in props {
                let set: Vec<_> = arr.iter().filter_map(|v| v.get(key)).collect();
                match set.first() {
                    None => out.push(format!("{path}[].{key}")),
                    Some(v) => missing_props(sub, v, &format!("{path}[].{key}"), out),
                }
            }
        }
    } else if let (Some(add), Some(map)) = (schema.get("additionalProperties"), value.as_object()) {
        for (k, v) in map {
            missing_props(add, v, &format!("{path}.{k}"), out);
        }
    }
}
