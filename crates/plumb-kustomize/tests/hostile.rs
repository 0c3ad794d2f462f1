//! Hostile nesting: chains of kustomizations and deeply nested YAML end in a clear error (or
//! build) on a 2 MiB thread stack, the size of a Tokio blocking thread, never in a stack
//! overflow.
#![allow(clippy::unwrap_used)]

mod common;
use common::write;

use plumb_kustomize::{BuildOptions, Error, build, to_yaml_stream};
use serde_json::Value;

const STACK: usize = 2 << 20;

/// Builds `dir` of `files` on a thread with a 2 MiB stack, printing the result as `plumb build`
/// does.
fn build_small_stack(files: Vec<(String, String)>, dir: &str) -> Result<String, Error> {
    let dir = dir.to_string();
    std::thread::Builder::new()
        .stack_size(STACK)
        .spawn(move || {
            let tmp = tempfile::tempdir().unwrap();
            let refs: Vec<(&str, &str)> = files
                .iter()
                .map(|(p, t)| (p.as_str(), t.as_str()))
                .collect();
            write(tmp.path(), &refs);
            build(&tmp.path().join(dir), tmp.path(), &BuildOptions::default())
                .map(|objs| to_yaml_stream(&objs))
        })
        .unwrap()
        .join()
        .unwrap()
}

const CM: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: leaf\n";

/// `d0` lists `d1` under `key`, which lists `d2`, and so on; the last one holds a ConfigMap.
fn chain(n: usize, key: &str, kind: &str) -> Vec<(String, String)> {
    let mut files = vec![("kustomization.yaml".to_string(), format!("{key}:\n- d0\n"))];
    let api = if kind == "Component" {
        "v1alpha1"
    } else {
        "v1beta1"
    };
    for i in 0..n {
        let body = if i + 1 < n {
            format!("{key}:\n- ../d{}\n", i + 1)
        } else {
            "resources:\n- cm.yaml\n".to_string()
        };
        files.push((
            format!("d{i}/kustomization.yaml"),
            format!("apiVersion: kustomize.config.k8s.io/{api}\nkind: {kind}\n{body}"),
        ));
    }
    files.push((format!("d{}/cm.yaml", n - 1), CM.to_string()));
    files
}

#[test]
fn a_chain_of_thousands_of_resource_directories_is_a_clear_error() {
    let e = build_small_stack(chain(3000, "resources", "Kustomization"), ".").unwrap_err();
    assert!(e.to_string().contains("nest more than 32 levels"), "{e}");
}

#[test]
fn a_chain_at_the_nesting_cap_builds_on_a_small_stack() {
    // The top kustomization and 31 nested ones: 32 levels.
    let out = build_small_stack(chain(31, "resources", "Kustomization"), ".").unwrap();
    assert!(out.contains("name: leaf"), "{out}");
    let e = build_small_stack(chain(32, "resources", "Kustomization"), ".").unwrap_err();
    assert!(e.to_string().contains("nest more than 32 levels"), "{e}");
}

#[test]
fn a_chain_of_components_is_a_clear_error() {
    let mut files = chain(3000, "components", "Component");
    // The top level is a Kustomization listing the first component; components list the next.
    files[0].1 = "components:\n- d0\n".to_string();
    let e = build_small_stack(files, ".").unwrap_err();
    assert!(e.to_string().contains("nest more than 32 levels"), "{e}");
}

#[test]
fn a_chain_of_generator_directories_is_a_clear_error() {
    let e = build_small_stack(chain(3000, "generators", "Kustomization"), ".").unwrap_err();
    assert!(e.to_string().contains("nest more than 32 levels"), "{e}");
}

fn nested(depth: usize) -> String {
    let mut t = String::from("apiVersion: v1\nkind: Thing\nmetadata:\n  name: deep\nspec: ");
    t.push_str(&"{a: ".repeat(depth));
    t.push('1');
    t.push_str(&"}".repeat(depth));
    t.push('\n');
    t
}

#[test]
fn deeply_nested_yaml_is_a_clear_error() {
    let files = vec![
        (
            "kustomization.yaml".to_string(),
            "resources:\n- r.yaml\n".to_string(),
        ),
        ("r.yaml".to_string(), nested(100_000)),
    ];
    let e = build_small_stack(files, ".").unwrap_err();
    assert!(e.to_string().contains("r.yaml"), "{e}");
}

#[test]
fn yaml_nested_just_under_the_cap_is_transformed_and_printed_on_a_small_stack() {
    let files = vec![
        (
            "kustomization.yaml".to_string(),
            "resources:\n- r.yaml\nnamePrefix: p-\ncommonLabels:\n  a: b\npatches:\n- patch: |\n    apiVersion: v1\n    kind: Thing\n    metadata:\n      name: deep\n    spec:\n      b: 2\n".to_string(),
        ),
        ("r.yaml".to_string(), nested(190)),
    ];
    let out = build_small_stack(files, ".").unwrap();
    let v: Vec<Value> = plumb_kustomize::parse_objects(&out, "out").unwrap();
    assert_eq!(v[0]["metadata"]["name"], "p-deep");
    assert_eq!(v[0]["spec"]["b"], 2);
}
