//! Flux spec-level options of the overlay: `buildMetadata` and `ignoreMissingComponents`.
#![allow(clippy::unwrap_used)]

mod common;
use common::write;

use plumb_kustomize::{BuildOptions, Overlay, build_with_overlay};
use serde_json::Value;

const CM: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\ndata:\n  k: v\n";
const COMPONENT: &str = "apiVersion: kustomize.config.k8s.io/v1alpha1\nkind: Component\ncommonLabels:\n  comp: \"on\"\n";

fn build_app(files: &[(&str, &str)], overlay: &Overlay) -> Result<Vec<Value>, String> {
    let tmp = tempfile::tempdir().unwrap();
    write(tmp.path(), files);
    build_with_overlay(
        &tmp.path().join("app"),
        tmp.path(),
        &BuildOptions::default(),
        overlay,
    )
    .map_err(|e| e.to_string())
}

fn annotation<'a>(o: &'a Value, key: &str) -> Option<&'a str> {
    o.pointer("/metadata/annotations")?.get(key)?.as_str()
}

#[test]
fn build_metadata_from_the_spec_annotates_every_object() {
    let files = [
        (
            "app/kustomization.yaml",
            "resources:\n- cm.yaml\nnamePrefix: p-\n",
        ),
        ("app/cm.yaml", CM),
    ];
    let plain = build_app(&files, &Overlay::default()).unwrap();
    assert!(annotation(&plain[0], "config.kubernetes.io/origin").is_none());
    let overlay = Overlay {
        build_metadata: vec!["originAnnotations".into(), "transformerAnnotations".into()],
        ..Default::default()
    };
    let objs = build_app(&files, &overlay).unwrap();
    let origin = annotation(&objs[0], "config.kubernetes.io/origin").unwrap();
    assert!(origin.contains("path: cm.yaml"), "{origin}");
    let t = annotation(&objs[0], "alpha.config.kubernetes.io/transformations").unwrap();
    assert!(t.contains("PrefixTransformer"), "{t}");
    assert_eq!(objs[0]["metadata"]["name"], "p-a");
}

#[test]
fn build_metadata_merges_with_the_directory_options() {
    let files = [
        (
            "app/kustomization.yaml",
            "resources:\n- cm.yaml\nbuildMetadata: [managedByLabel]\n",
        ),
        ("app/cm.yaml", CM),
    ];
    let overlay = Overlay {
        build_metadata: vec!["originAnnotations".into()],
        ..Default::default()
    };
    let objs = build_app(&files, &overlay).unwrap();
    assert!(annotation(&objs[0], "config.kubernetes.io/origin").is_some());
    assert!(
        objs[0]
            .pointer("/metadata/labels/app.kubernetes.io~1managed-by")
            .is_some()
    );
}

#[test]
fn missing_components_fail_unless_ignored() {
    let files = [
        (
            "app/kustomization.yaml",
            "resources:\n- cm.yaml\ncomponents:\n- ../gone-in-file\n",
        ),
        ("app/cm.yaml", CM),
        ("comp/kustomization.yaml", COMPONENT),
    ];
    let mut overlay = Overlay {
        components: vec!["../comp".into(), "../gone-in-spec".into()],
        ..Default::default()
    };
    let err = build_app(&files, &overlay).unwrap_err();
    assert!(err.contains("gone-in-file"), "{err}");
    overlay.ignore_missing_components = true;
    let objs = build_app(&files, &overlay).unwrap();
    assert_eq!(objs.len(), 1);
    assert_eq!(
        objs[0]["metadata"]["labels"]["comp"], "on",
        "the component that exists still applies"
    );
}

#[test]
fn ignoring_missing_components_does_not_hide_a_broken_one() {
    let files = [
        ("app/kustomization.yaml", "resources:\n- cm.yaml\n"),
        ("app/cm.yaml", CM),
        ("comp/kustomization.yaml", "not: [valid\n"),
    ];
    let overlay = Overlay {
        components: vec!["../comp".into()],
        ignore_missing_components: true,
        ..Default::default()
    };
    assert!(build_app(&files, &overlay).is_err());
}
