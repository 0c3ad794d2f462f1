//! Behaviours real repositories showed `plumb build` getting wrong, one test per class. The
//! expected values are what `kubectl kustomize` (kustomize v5.5) prints for the same fixture.
#![allow(clippy::unwrap_used)]

mod common;
use common::{run, run_in};

use plumb_kustomize::to_yaml_stream;
use serde_json::{Value, json};

fn named<'a>(objs: &'a [Value], name: &str) -> &'a Value {
    objs.iter()
        .find(|o| o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no object named {name} in {objs:#?}"))
}

const ONE: &str = "resources:\n- r.yaml\n";

#[test]
fn plain_scalars_are_typed_as_go_yaml_v3_types_them() {
    let objs = run(&[
        ("kustomization.yaml", ONE),
        (
            "r.yaml",
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  securityContext:\n    runAsUser: 011\n  volumes:\n  - name: x\n    secret:\n      defaultMode: 0755\n  x1: 2e-08\n  x2: 100.0\n  x3: 0x1F\n  x4: 1e3\n  x5: yes\n  x6: 0o17\n  x7: 1_000\n  x8: +12\n  x9: .5\n  x10: 1:20\n  x11: 08\n  x12: on\n",
        ),
    ]);
    let spec = &objs[0]["spec"];
    assert_eq!(spec["securityContext"]["runAsUser"], json!(9));
    assert_eq!(spec["volumes"][0]["secret"]["defaultMode"], json!(493));
    for (k, v) in [
        ("x2", json!(100)),
        ("x3", json!(31)),
        ("x4", json!(1000)),
        ("x5", json!("yes")),
        ("x6", json!(15)),
        ("x7", json!(1000)),
        ("x8", json!(12)),
        ("x9", json!(0.5)),
        ("x10", json!("1:20")),
        ("x11", json!(8)),
        ("x12", json!("on")),
    ] {
        assert_eq!(spec[k], v, "{k}");
    }
    let text = to_yaml_stream(&objs);
    for line in ["x1: 2e-08\n", "x2: 100\n", "x5: \"yes\"\n", "x9: 0.5\n"] {
        assert!(text.contains(line), "{line:?} missing from\n{text}");
    }
}

#[test]
fn annotations_end_as_strings_of_their_text_and_empty_ones_vanish() {
    let objs = run(&[
        (
            "kustomization.yaml",
            "resources:\n- r.yaml\npatches:\n- patch: |\n    apiVersion: v1\n    kind: ConfigMap\n    metadata:\n      name: p2\n      annotations:\n        t: true\n        n: 5\n      labels:\n        l: true\n",
        ),
        (
            "r.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: p\n  annotations: null\n  labels: {}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: p2\n  annotations: {}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: p3\n  annotations:\n    a: 0755\n    b: 1.0\n    c: yes\n    d: ~\n    e:\n  labels:\n    a: 0755\n    c: true\nspec:\n  template:\n    metadata:\n      annotations:\n        a: 0755\n      labels: {}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: p4\n  annotations: {}\n",
        ),
    ]);
    assert_eq!(
        named(&objs, "p")["metadata"],
        json!({"name": "p", "labels": {}})
    );
    assert_eq!(
        named(&objs, "p2")["metadata"],
        json!({"name": "p2", "annotations": {"t": "true", "n": "5"}, "labels": {"l": true}})
    );
    assert_eq!(
        named(&objs, "p3")["metadata"],
        json!({"name": "p3", "annotations": {"a": "0755", "b": "1.0", "c": "yes", "d": "~", "e": ""},
               "labels": {"a": 493, "c": true}})
    );
    assert_eq!(
        named(&objs, "p3")["spec"],
        json!({"template": {"metadata": {"annotations": {"a": 493}, "labels": {}}}})
    );
    assert_eq!(named(&objs, "p4")["metadata"], json!({"name": "p4"}));
}

#[test]
fn folded_scalars_come_out_as_kustomize_reprints_them() {
    // kustomize re-emits folded scalars with go-yaml's folded writer, which keeps an extra
    // line break before a more-indented line.
    let objs = run(&[
        ("kustomization.yaml", ONE),
        (
            "r.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: src\ndata:\n  fold: >-\n    hello\n    world\n      more indented\n    back\n  fold2: >\n    a\n\n      b\n    c\n  plain: >\n    one\n    two\n",
        ),
    ]);
    let data = &objs[0]["data"];
    assert_eq!(data["fold"], json!("hello world\n\n  more indented\nback"));
    assert_eq!(data["fold2"], json!("a\n\n\n  b\nc\n"));
    assert_eq!(data["plain"], json!("one two\n"));
}

#[test]
fn literal_block_at_end_of_file_without_newline_has_none() {
    let objs = run(&[
        ("kustomization.yaml", ONE),
        (
            "r.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: q\ndata:\n  a: |\n    x\n    y",
        ),
    ]);
    assert_eq!(objs[0]["data"]["a"], json!("x\ny"));
}

#[test]
fn null_and_empty_lists_in_a_kustomization_are_empty() {
    let objs = run(&[
        (
            "kustomization.yaml",
            "resources:\n- r.yaml\npatches: null\ncomponents:\nimages: ~\ncommonLabels:\n  a: null\n",
        ),
        (
            "r.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: q\n",
        ),
    ]);
    assert_eq!(objs[0]["metadata"]["labels"], json!({"a": ""}));
}

#[test]
fn many_comments_in_a_row_parse() {
    let mut r = String::from("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\ndata: {\n");
    for i in 0..300 {
        r.push_str(&format!("  # comment {i}\n"));
    }
    r.push_str("  a: b}\n");
    let objs = run(&[("kustomization.yaml", ONE), ("r.yaml", &r)]);
    assert_eq!(objs[0]["data"], json!({"a": "b"}));
}

#[test]
fn namespacing_follows_the_exact_api_version_of_the_builtin_schema() {
    // kustomize knows FlowSchema as cluster-scoped only in the versions of its built-in
    // schema; newer versions are unknown to it, hence namespaced.
    let objs = run(&[
        (
            "kustomization.yaml",
            "namespace: ns1\nresources:\n- r.yaml\n",
        ),
        (
            "r.yaml",
            "apiVersion: flowcontrol.apiserver.k8s.io/v1\nkind: FlowSchema\nmetadata:\n  name: fs\n---\napiVersion: flowcontrol.apiserver.k8s.io/v1\nkind: PriorityLevelConfiguration\nmetadata:\n  name: plc\n---\napiVersion: flowcontrol.apiserver.k8s.io/v1beta1\nkind: FlowSchema\nmetadata:\n  name: old\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: cr\n",
        ),
    ]);
    assert_eq!(named(&objs, "fs")["metadata"]["namespace"], "ns1");
    assert_eq!(named(&objs, "plc")["metadata"]["namespace"], "ns1");
    assert!(named(&objs, "old")["metadata"].get("namespace").is_none());
    assert!(named(&objs, "cr")["metadata"].get("namespace").is_none());
}

#[test]
fn env_file_bare_key_is_empty() {
    let objs = run(&[
        (
            "kustomization.yaml",
            "configMapGenerator:\n- name: env\n  envs: [a.env]\ngeneratorOptions:\n  disableNameSuffixHash: true\n",
        ),
        ("a.env", "# c\nA=1\nBARE\n"),
    ]);
    assert_eq!(objs[0]["data"], json!({"A": "1", "BARE": ""}));
}

#[test]
fn replacement_paths_with_escaped_dots() {
    let objs = run(&[
        (
            "kustomization.yaml",
            "resources:\n- r.yaml\nreplacements:\n- source:\n    kind: ConfigMap\n    name: src\n    fieldPath: data.user\n  targets:\n  - select:\n      kind: ConfigMap\n      name: dst\n    fieldPaths:\n    - metadata.labels.postgres-operator\\.crunchydata\\.com/pguser\n    - metadata.annotations.a\\.b/c\n    options:\n      create: true\n",
        ),
        (
            "r.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: src\ndata:\n  user: bob\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: dst\n  labels:\n    postgres-operator.crunchydata.com/pguser: old\n",
        ),
    ]);
    assert_eq!(
        named(&objs, "dst")["metadata"],
        json!({"name": "dst", "labels": {"postgres-operator.crunchydata.com/pguser": "bob"},
               "annotations": {"a.b/c": "bob"}})
    );
}

#[test]
fn vars_take_values_after_the_overlay_transforms() {
    let objs = run_in(
        &[
            (
                "base/kustomization.yaml",
                "resources:\n- r.yaml\nvars:\n- name: SVC_NS\n  objRef: {kind: Service, name: svc, apiVersion: v1}\n  fieldRef: {fieldPath: metadata.namespace}\n- name: SVC_NAME\n  objRef: {kind: Service, name: svc, apiVersion: v1}\n",
            ),
            (
                "base/r.yaml",
                "apiVersion: v1\nkind: Service\nmetadata:\n  name: svc\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: d\n  annotations:\n    x: $(SVC_NS).$(SVC_NAME)\nspec:\n  template:\n    metadata:\n      annotations:\n        y: $(SVC_NS)\n    spec:\n      containers:\n      - name: c\n        image: i\n        args: [\"$(SVC_NS)\", \"$(SVC_NAME)\", \"$(MISSING)\"]\n        env:\n        - name: A\n          value: $(SVC_NAME).$(SVC_NS).svc\n",
            ),
            (
                "ov/kustomization.yaml",
                "resources:\n- ../base\nnamespace: prod\nnamePrefix: p-\n",
            ),
        ],
        "ov",
    )
    .unwrap();
    let d = named(&objs, "p-d");
    assert_eq!(d["metadata"]["annotations"], json!({"x": "prod.p-svc"}));
    assert_eq!(
        d["spec"]["template"]["metadata"]["annotations"],
        json!({"y": "prod"})
    );
    let c = &d["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["args"], json!(["prod", "p-svc", "$(MISSING)"]));
    assert_eq!(c["env"][0]["value"], json!("p-svc.prod.svc"));
}

#[test]
fn admission_webhooks_sort_after_kinds_kustomize_does_not_list() {
    let objs = run(&[
        ("kustomization.yaml", ONE),
        (
            "r.yaml",
            "apiVersion: admissionregistration.k8s.io/v1\nkind: MutatingWebhookConfiguration\nmetadata:\n  name: m\n---\napiVersion: helm.toolkit.fluxcd.io/v2\nkind: HelmRelease\nmetadata:\n  name: h\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n",
        ),
    ]);
    let kinds: Vec<&str> = objs.iter().map(|o| o["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        ["ConfigMap", "HelmRelease", "MutatingWebhookConfiguration"]
    );
}

#[test]
fn tagged_merge_keys_merge() {
    let objs = run(&[
        ("kustomization.yaml", ONE),
        (
            "r.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\nx:\n  base: &b\n    image: i\n    env: [a]\n  one:\n    !!merge <<: *b\n    env: [b]\n",
        ),
    ]);
    assert_eq!(objs[0]["x"]["one"], json!({"image": "i", "env": ["b"]}));
}
