//! One small fixture per kustomize feature, plus the bad-input cases. Fixtures are written to a
//! temporary directory by each test.
#![allow(clippy::unwrap_used)]

mod common;
use common::{run, run_in, write};

use plumb_kustomize::{BuildOptions, Error, Overlay, OverlayPatch, build, build_with_overlay};
use serde_json::Value;

fn find<'a>(objs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objs.iter().filter(|o| o["kind"] == kind).collect()
}

const DEPLOY: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels:
    tier: front
spec:
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      serviceAccountName: runner
      containers:
      - name: app
        image: nginx:1.0
        envFrom:
        - configMapRef:
            name: settings
";

const SVC: &str = "apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector:
    app: web
  ports:
  - port: 80
";

#[test]
fn resources_nested_directories_and_legacy_order() {
    let objs = run(&[
        ("kustomization.yaml", "resources:\n- base\n- svc.yaml\n"),
        (
            "base/kustomization.yaml",
            "resources:\n- deploy.yaml\n- ns.yaml\n",
        ),
        ("base/deploy.yaml", DEPLOY),
        (
            "base/ns.yaml",
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: zz\n",
        ),
        ("svc.yaml", SVC),
    ]);
    let kinds: Vec<&str> = objs.iter().map(|o| o["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["Namespace", "Service", "Deployment"]);
}

#[test]
fn sort_options_fifo_keeps_input_order() {
    let objs = run(&[
        (
            "kustomization.yaml",
            "resources:\n- deploy.yaml\n- svc.yaml\nsortOptions:\n  order: fifo\n",
        ),
        ("deploy.yaml", DEPLOY),
        ("svc.yaml", SVC),
    ]);
    assert_eq!(objs[0]["kind"], "Deployment");
}

#[test]
fn namespace_prefix_suffix_and_name_references() {
    let objs = run(&[
        (
            "kustomization.yaml",
            "namespace: prod\nnamePrefix: p-\nnameSuffix: -s\nresources:\n- deploy.yaml\n- cm.yaml\n- sa.yaml\n",
        ),
        ("deploy.yaml", DEPLOY),
        (
            "cm.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  a: b\n",
        ),
        (
            "sa.yaml",
            "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: runner\n",
        ),
    ]);
    let d = find(&objs, "Deployment")[0];
    assert_eq!(d["metadata"]["name"], "p-web-s");
    assert_eq!(d["metadata"]["namespace"], "prod");
    let spec = &d["spec"]["template"]["spec"];
    assert_eq!(spec["serviceAccountName"], "p-runner-s");
    assert_eq!(
        spec["containers"][0]["envFrom"][0]["configMapRef"]["name"],
        "p-settings-s"
    );
}

#[test]
fn common_labels_reach_selectors_and_labels_entries_do_not() {
    let objs = run(&[
        (
            "kustomization.yaml",
            "resources:\n- deploy.yaml\ncommonLabels:\n  env: prod\nlabels:\n- pairs:\n    owner: me\n- pairs:\n    tmpl: yes-please\n  includeTemplates: true\n",
        ),
        ("deploy.yaml", DEPLOY),
    ]);
    let d = &objs[0];
    assert_eq!(d["spec"]["selector"]["matchLabels"]["env"], "prod");
    assert_eq!(d["metadata"]["labels"]["owner"], "me");
    assert!(d["spec"]["selector"]["matchLabels"].get("owner").is_none());
    assert!(
        d["spec"]["template"]["metadata"]["labels"]
            .get("owner")
            .is_none()
    );
    assert_eq!(
        d["spec"]["template"]["metadata"]["labels"]["tmpl"],
        "yes-please"
    );
}

#[test]
fn common_annotations() {
    let objs = run(&[
        (
            "kustomization.yaml",
            "resources:\n- deploy.yaml\ncommonAnnotations:\n  note: hi\n",
        ),
        ("deploy.yaml", DEPLOY),
    ]);
    assert_eq!(objs[0]["metadata"]["annotations"]["note"], "hi");
    assert_eq!(
        objs[0]["spec"]["template"]["metadata"]["annotations"]["note"],
        "hi"
    );
}

#[test]
fn images_and_replicas() {
    let objs = run(&[
        (
            "kustomization.yaml",
            "resources:\n- deploy.yaml\nimages:\n- name: nginx\n  newName: mirror/nginx\n  newTag: \"2.0\"\nreplicas:\n- name: web\n  count: 4\n",
        ),
        ("deploy.yaml", DEPLOY),
    ]);
    assert_eq!(
        objs[0]["spec"]["template"]["spec"]["containers"][0]["image"],
        "mirror/nginx:2.0"
    );
    assert_eq!(objs[0]["spec"]["replicas"], 4);
}

#[test]
fn image_digest_replaces_tag() {
    let objs = run(&[
        (
            "kustomization.yaml",
            "resources:\n- deploy.yaml\nimages:\n- name: nginx\n  digest: sha256:abc\n",
        ),
        ("deploy.yaml", DEPLOY),
    ]);
    assert_eq!(
        objs[0]["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx@sha256:abc"
    );
}

#[test]
fn strategic_merge_patch_with_label_selector_target() {
    let objs = run(&[
        (
            "kustomization.yaml",
            "resources:\n- deploy.yaml\npatches:\n- target:\n    kind: Deployment\n    labelSelector: tier=front\n  patch: |-\n    apiVersion: apps/v1\n    kind: Deployment\n    metadata:\n      name: ignored\n    spec:\n      template:\n        spec:\n          containers:\n          - name: app\n            image: patched\n          - name: sidecar\n            image: side\n",
        ),
        ("deploy.yaml", DEPLOY),
    ]);
    let c = &objs[0]["spec"]["template"]["spec"]["containers"];
    assert_eq!(objs[0]["metadata"]["name"], "web");
    assert_eq!(c[0]["image"], "patched");
    assert_eq!(c[0]["envFrom"][0]["configMapRef"]["name"], "settings");
    assert_eq!(c[1]["name"], "sidecar");
}

#[test]
fn json6902_patch_with_regex_target() {
    let objs = run(&[
        (
            "kustomization.yaml",
            "resources:\n- deploy.yaml\npatchesJson6902:\n- target:\n    group: apps\n    version: v1\n    kind: Deployment\n    name: w.*\n  path: p.yaml\n",
        ),
        ("deploy.yaml", DEPLOY),
        ("p.yaml", "- op: add\n  path: /spec/replicas\n  value: 2\n"),
    ]);
    assert_eq!(objs[0]["spec"]["replicas"], 2);
}

#[test]
fn patches_strategic_merge_delete_directive() {
    let objs = run(&[
        (
            "kustomization.yaml",
            "resources:\n- deploy.yaml\n- svc.yaml\npatchesStrategicMerge:\n- del.yaml\n",
        ),
        ("deploy.yaml", DEPLOY),
        ("svc.yaml", SVC),
        (
            "del.yaml",
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n$patch: delete\n",
        ),
    ]);
    assert!(find(&objs, "Service").is_empty());
}

#[test]
fn config_map_generator_hash_and_reference() {
    let objs = run(&[
        (
            "kustomization.yaml",
            "resources:\n- deploy.yaml\nconfigMapGenerator:\n- name: settings\n  literals:\n  - a=b\n",
        ),
        ("deploy.yaml", DEPLOY),
    ]);
    let cm = find(&objs, "ConfigMap")[0];
    // kustomize's hash of {"data":{"a":"b"},"kind":"ConfigMap","name":""}.
    assert_eq!(cm["metadata"]["name"], "settings-4h2mbtbbt6");
    let d = find(&objs, "Deployment")[0];
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["envFrom"][0]["configMapRef"]["name"],
        "settings-4h2mbtbbt6"
    );
}

#[test]
fn secret_generator_from_file_and_options() {
    let objs = run(&[
        (
            "kustomization.yaml",
            "secretGenerator:\n- name: creds\n  files:\n  - k=v.txt\ngeneratorOptions:\n  disableNameSuffixHash: true\n  labels:\n    gen: \"yes\"\n",
        ),
        ("v.txt", "v"),
    ]);
    assert_eq!(objs[0]["metadata"]["name"], "creds");
    assert_eq!(objs[0]["data"]["k"], "dg==");
    assert_eq!(objs[0]["type"], "Opaque");
    assert_eq!(objs[0]["metadata"]["labels"]["gen"], "yes");
}

#[test]
fn secret_generator_hash() {
    let objs = run(&[(
        "kustomization.yaml",
        "secretGenerator:\n- name: creds\n  literals:\n  - k=v\n",
    )]);
    assert_eq!(objs[0]["metadata"]["name"], "creds-ftgtgc4t9f");
}

#[test]
fn generator_merge_behavior_in_overlay() {
    let objs = run_in(
        &[
            ("base/kustomization.yaml", "configMapGenerator:\n- name: cfg\n  literals:\n  - a=1\n  - b=2\n"),
            (
                "overlay/kustomization.yaml",
                "resources:\n- ../base\nconfigMapGenerator:\n- name: cfg\n  behavior: merge\n  literals:\n  - b=3\n",
            ),
        ],
        "overlay",
    )
    .unwrap();
    assert_eq!(objs.len(), 1);
    assert_eq!(objs[0]["data"]["a"], "1");
    assert_eq!(objs[0]["data"]["b"], "3");
}

#[test]
fn components_apply_before_the_parent_transformers() {
    let objs = run(&[
        (
            "kustomization.yaml",
            "resources:\n- deploy.yaml\ncomponents:\n- comp\nnamePrefix: x-\n",
        ),
        ("deploy.yaml", DEPLOY),
        (
            "comp/kustomization.yaml",
            "apiVersion: kustomize.config.k8s.io/v1alpha1\nkind: Component\nresources:\n- svc.yaml\ncommonLabels:\n  comp: enabled\n",
        ),
        ("comp/svc.yaml", SVC),
    ]);
    for o in &objs {
        assert!(o["metadata"]["name"].as_str().unwrap().starts_with("x-"));
        assert_eq!(o["metadata"]["labels"]["comp"], "enabled");
    }
}

#[test]
fn replacements_copy_fields() {
    let objs = run(&[
        (
            "kustomization.yaml",
            "resources:\n- deploy.yaml\n- svc.yaml\nreplacements:\n- source:\n    kind: Service\n    name: web\n    fieldPath: spec.ports.0.port\n  targets:\n  - select:\n      kind: Deployment\n    fieldPaths:\n    - spec.template.metadata.annotations.port\n    options:\n      create: true\n",
        ),
        ("deploy.yaml", DEPLOY),
        ("svc.yaml", SVC),
    ]);
    let d = find(&objs, "Deployment")[0];
    assert_eq!(d["spec"]["template"]["metadata"]["annotations"]["port"], 80);
}

#[test]
fn vars_are_substituted() {
    let objs = run(&[
        (
            "kustomization.yaml",
            "namePrefix: p-\nresources:\n- pod.yaml\n- svc.yaml\nvars:\n- name: SVC\n  objref:\n    kind: Service\n    name: web\n    apiVersion: v1\n",
        ),
        (
            "pod.yaml",
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  containers:\n  - name: c\n    image: i\n    args: [\"--svc=$(SVC)\"]\n",
        ),
        ("svc.yaml", SVC),
    ]);
    let p = find(&objs, "Pod")[0];
    assert_eq!(p["spec"]["containers"][0]["args"][0], "--svc=p-web");
}

#[test]
fn configurations_add_custom_field_specs() {
    let objs = run(&[
        (
            "kustomization.yaml",
            "resources:\n- crd.yaml\nconfigurations:\n- conf.yaml\ncommonLabels:\n  x: why\n",
        ),
        (
            "crd.yaml",
            "apiVersion: example.com/v1\nkind: Thing\nmetadata:\n  name: t\nspec:\n  sel: {}\n",
        ),
        (
            "conf.yaml",
            "commonLabels:\n- path: spec/sel\n  kind: Thing\n  create: true\n",
        ),
    ]);
    assert_eq!(objs[0]["spec"]["sel"]["x"], "why", "{objs:?}");
}

#[test]
fn builtin_transformer_plugin_config() {
    let objs = run(&[
        (
            "kustomization.yaml",
            "resources:\n- svc.yaml\ntransformers:\n- labels.yaml\n",
        ),
        ("svc.yaml", SVC),
        (
            "labels.yaml",
            "apiVersion: builtin\nkind: LabelTransformer\nmetadata:\n  name: l\nlabels:\n  via: plugin\nfieldSpecs:\n- path: metadata/labels\n  create: true\n",
        ),
    ]);
    assert_eq!(objs[0]["metadata"]["labels"]["via"], "plugin");
    assert!(objs[0]["spec"]["selector"].get("via").is_none());
}

#[test]
fn build_metadata_origin_annotations() {
    let objs = run(&[
        (
            "kustomization.yaml",
            "resources:\n- svc.yaml\nbuildMetadata: [originAnnotations]\n",
        ),
        ("svc.yaml", SVC),
    ]);
    assert_eq!(
        objs[0]["metadata"]["annotations"]["config.kubernetes.io/origin"],
        "path: svc.yaml\n"
    );
}

#[test]
fn custom_openapi_schema_sets_merge_keys() {
    let schema = r##"{"definitions": {"com.example.v1.Thing": {
        "x-kubernetes-group-version-kind": [{"group": "example.com", "version": "v1", "kind": "Thing"}],
        "properties": {"spec": {"$ref": "#/definitions/com.example.v1.ThingSpec"}}},
      "com.example.v1.ThingSpec": {"properties": {"items": {"type": "array",
        "items": {"$ref": "#/definitions/com.example.v1.Item"},
        "x-kubernetes-patch-merge-key": "id", "x-kubernetes-patch-strategy": "merge"}}}}}"##;
    let objs = run(&[
        (
            "kustomization.yaml",
            "openapi:\n  path: schema.json\nresources:\n- t.yaml\npatches:\n- path: p.yaml\n",
        ),
        ("schema.json", schema),
        (
            "t.yaml",
            "apiVersion: example.com/v1\nkind: Thing\nmetadata:\n  name: t\nspec:\n  items:\n  - id: a\n    v: 1\n  - id: b\n    v: 2\n",
        ),
        (
            "p.yaml",
            "apiVersion: example.com/v1\nkind: Thing\nmetadata:\n  name: t\nspec:\n  items:\n  - id: b\n    v: 3\n",
        ),
    ]);
    let items = objs[0]["spec"]["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert!(items.iter().any(|i| i["id"] == "b" && i["v"] == 3));
}

#[test]
fn plain_directory_lists_all_yaml_with_flux_option() {
    let tmp = tempfile::tempdir().unwrap();
    write(
        tmp.path(),
        &[
            ("a/svc.yaml", SVC),
            ("b/deploy.yml", DEPLOY),
            ("notes.txt", "x"),
        ],
    );
    let strict = build(tmp.path(), tmp.path(), &BuildOptions::default());
    assert!(strict.is_err());
    let opts = BuildOptions {
        generate_missing_kustomization: true,
        ..Default::default()
    };
    let objs = build(tmp.path(), tmp.path(), &opts).unwrap();
    assert_eq!(objs.len(), 2);
}

#[test]
fn overlay_applies_flux_spec_transforms() {
    let tmp = tempfile::tempdir().unwrap();
    write(
        tmp.path(),
        &[("app/deploy.yaml", DEPLOY), ("app/svc.yaml", SVC)],
    );
    let mut overlay = Overlay {
        target_namespace: Some("apps".into()),
        name_prefix: Some("f-".into()),
        ..Default::default()
    };
    overlay.common_labels.insert("owner".into(), "flux".into());
    overlay.patches.push(OverlayPatch {
        patch: "- op: add\n  path: /spec/replicas\n  value: 5\n".into(),
        target: Some(plumb_kustomize::Selector {
            kind: Some("Deployment".into()),
            ..Default::default()
        }),
    });
    let objs = build_with_overlay(
        &tmp.path().join("app"),
        tmp.path(),
        &BuildOptions::default(),
        &overlay,
    )
    .unwrap();
    let d = find(&objs, "Deployment")[0];
    assert_eq!(d["metadata"]["namespace"], "apps");
    assert_eq!(d["metadata"]["name"], "f-web");
    assert_eq!(d["metadata"]["labels"]["owner"], "flux");
    assert!(d["spec"]["selector"]["matchLabels"].get("owner").is_none());
    assert_eq!(d["spec"]["replicas"], 5);
}

// ---- bad input ----

fn err(files: &[(&str, &str)]) -> String {
    run_in(files, ".").unwrap_err().to_string()
}

#[test]
fn malformed_yaml_reports_file_and_line() {
    let e = err(&[
        ("kustomization.yaml", "resources:\n- a.yaml\n"),
        ("a.yaml", "kind: X\nmetadata: [\n"),
    ]);
    assert!(e.contains("a.yaml:2:"), "{e}");
}

#[test]
fn missing_file_is_an_error() {
    let e = err(&[("kustomization.yaml", "resources:\n- nope.yaml\n")]);
    assert!(e.contains("nope.yaml"), "{e}");
}

#[test]
fn resource_cycle_is_detected() {
    let e = err(&[
        ("kustomization.yaml", "resources:\n- a\n"),
        ("a/kustomization.yaml", "resources:\n- ../b\n"),
        ("b/kustomization.yaml", "resources:\n- ../a\n"),
    ]);
    assert!(e.contains("cycle"), "{e}");
}

#[test]
fn duplicate_ids_are_rejected() {
    let e = err(&[
        ("kustomization.yaml", "resources:\n- a.yaml\n- b.yaml\n"),
        ("a.yaml", SVC),
        ("b.yaml", SVC),
    ]);
    assert!(e.contains("already registered id"), "{e}");
}

#[test]
fn alias_bomb_is_rejected() {
    let mut bomb = String::from(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: b\na0: &a0 [x, x, x, x, x, x, x, x, x, x]\n",
    );
    for i in 1..9 {
        let p = i - 1;
        bomb.push_str(&format!(
            "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
        ));
    }
    let e = err(&[
        ("kustomization.yaml", "resources:\n- bomb.yaml\n"),
        ("bomb.yaml", &bomb),
    ]);
    assert!(e.contains("bomb.yaml"), "{e}");
}

#[test]
fn oversized_file_is_rejected() {
    let tmp = tempfile::tempdir().unwrap();
    let big = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: big\ndata:\n  x: {}\n",
        "a".repeat(4096)
    );
    write(
        tmp.path(),
        &[
            ("kustomization.yaml", "resources:\n- big.yaml\n"),
            ("big.yaml", &big),
        ],
    );
    let opts = BuildOptions {
        max_file_bytes: 1024,
        ..Default::default()
    };
    let e = build(tmp.path(), tmp.path(), &opts).unwrap_err();
    assert!(matches!(e, Error::TooLarge { .. }), "{e}");
}

#[test]
fn path_escaping_the_root_is_rejected() {
    let tmp = tempfile::tempdir().unwrap();
    write(
        tmp.path(),
        &[
            ("outside.yaml", SVC),
            ("root/kustomization.yaml", "resources:\n- ../outside.yaml\n"),
        ],
    );
    let root = tmp.path().join("root");
    let e = build(&root, &root, &BuildOptions::default()).unwrap_err();
    assert!(matches!(e, Error::Escape { .. }), "{e}");
}

#[cfg(unix)]
#[test]
fn symlink_escaping_the_root_is_rejected() {
    let tmp = tempfile::tempdir().unwrap();
    write(
        tmp.path(),
        &[
            ("outside.yaml", SVC),
            ("root/kustomization.yaml", "resources:\n- link.yaml\n"),
        ],
    );
    std::os::unix::fs::symlink(
        tmp.path().join("outside.yaml"),
        tmp.path().join("root/link.yaml"),
    )
    .unwrap();
    let root = tmp.path().join("root");
    let e = build(&root, &root, &BuildOptions::default()).unwrap_err();
    assert!(matches!(e, Error::Escape { .. }), "{e}");
}

#[test]
fn unknown_kustomization_field_is_rejected() {
    let e = err(&[("kustomization.yaml", "resources: []\nnamePrefx: a-\n")]);
    assert!(e.contains("namePrefx"), "{e}");
}

#[test]
fn remote_resources_are_rejected() {
    let e = err(&[(
        "kustomization.yaml",
        "resources:\n- https://github.com/x/y//base?ref=v1\n",
    )]);
    assert!(e.contains("remote resource"), "{e}");
}
