use super::*;

fn policies() -> Vec<Policy> {
    vec![
        Policy {
            namespace: "flux-system".into(),
            name: "podinfo".into(),
            latest: LatestRef {
                name: "ghcr.io/stefanprodan/podinfo".into(),
                tag: "5.1.4".into(),
                digest: String::new(),
            },
        },
        Policy {
            namespace: "apps".into(),
            name: "pinned".into(),
            latest: LatestRef {
                name: "registry.local/app".into(),
                tag: "v2".into(),
                digest: "sha256:abcd".into(),
            },
        },
    ]
}

fn run(files: &[(&str, &str)]) -> (tempfile::TempDir, Outcome) {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        let p = dir.path().join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    let out = apply(dir.path(), ".", &policies(), &Limits::default()).unwrap();
    (dir, out)
}

fn read(dir: &tempfile::TempDir, name: &str) -> String {
    std::fs::read_to_string(dir.path().join(name)).unwrap()
}

const DEPLOYMENT: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: podinfo
  namespace: default
spec:
  template:
    spec:
      containers:
      - name: podinfod
        # the main container
        image: ghcr.io/stefanprodan/podinfo:5.0.0 # {"$imagepolicy": "flux-system:podinfo"}
        ports: [9898]
"#;

#[test]
fn flux_documented_example_rewrites_the_image_only() {
    let (dir, out) = run(&[("deploy.yaml", DEPLOYMENT)]);
    assert_eq!(
        read(&dir, "deploy.yaml"),
        DEPLOYMENT.replace("podinfo:5.0.0", "podinfo:5.1.4")
    );
    let id = ObjectId {
        api_version: "apps/v1".into(),
        kind: "Deployment".into(),
        namespace: "default".into(),
        name: "podinfo".into(),
    };
    let change = Change {
        old_value: "ghcr.io/stefanprodan/podinfo:5.0.0".into(),
        new_value: "ghcr.io/stefanprodan/podinfo:5.1.4".into(),
        setter: "flux-system:podinfo".into(),
    };
    assert_eq!(out.changes.files["deploy.yaml"][&id], vec![change.clone()]);
    assert_eq!(out.changes.objects()[&id], vec![change.clone()]);
    assert_eq!(out.changes.changes(), vec![change]);
    assert!(out.unresolved.is_empty() && out.skipped.is_empty());
}

#[test]
fn tag_name_and_digest_forms_keep_quoting_style() {
    let src = r#"image:
  repository: "ghcr.io/old/podinfo" # {"$imagepolicy": "flux-system:podinfo:name"}
  tag: '5.0.0'  # {"$imagepolicy": "flux-system:podinfo:tag"}
  plain: 5.0.0 #{"$imagepolicy":"flux-system:podinfo:tag"}
  full: registry.local/app:v1 # {"$imagepolicy": "apps:pinned"}
  digest: sha256:0000 # {"$imagepolicy": "apps:pinned:digest"}
  other: 5.0.0 # not a marker
"#;
    let (dir, out) = run(&[("values.yml", src)]);
    assert_eq!(
        read(&dir, "values.yml"),
        r#"image:
  repository: "ghcr.io/stefanprodan/podinfo" # {"$imagepolicy": "flux-system:podinfo:name"}
  tag: '5.1.4'  # {"$imagepolicy": "flux-system:podinfo:tag"}
  plain: 5.1.4 #{"$imagepolicy":"flux-system:podinfo:tag"}
  full: registry.local/app:v2@sha256:abcd # {"$imagepolicy": "apps:pinned"}
  digest: sha256:abcd # {"$imagepolicy": "apps:pinned:digest"}
  other: 5.0.0 # not a marker
"#
    );
    assert_eq!(out.changes.changes().len(), 5);
}

#[test]
fn flow_scalars_and_multi_document_files() {
    let src = r#"---
apiVersion: v1
kind: ConfigMap
metadata: {name: one}
data:
  images: [a, "ghcr.io/x:1" # {"$imagepolicy": "flux-system:podinfo"}
    ]
---
# second document
apiVersion: v1
kind: ConfigMap
metadata:
  name: two
data: {tag: 1.0.0 # {"$imagepolicy": "flux-system:podinfo:tag"}
  }
"#;
    let (dir, out) = run(&[("multi.yaml", src)]);
    let text = read(&dir, "multi.yaml");
    assert!(text.contains(r#"[a, "ghcr.io/stefanprodan/podinfo:5.1.4" # {"#));
    assert!(text.contains(r#"{tag: 5.1.4 # {"#));
    assert!(text.contains("# second document\n"));
    let objects = out.changes.objects();
    let names: Vec<&str> = objects.keys().map(|id| id.name.as_str()).collect();
    assert_eq!(names, ["one", "two"]);
}

#[test]
fn a_marker_for_a_missing_policy_is_left_alone_and_reported() {
    let src = "image: foo:1 # {\"$imagepolicy\": \"flux-system:absent\"}\n";
    let (dir, out) = run(&[("a.yaml", src)]);
    assert_eq!(read(&dir, "a.yaml"), src);
    assert!(out.changes.is_empty());
    assert_eq!(out.unresolved.len(), 1);
    assert_eq!(out.unresolved[0].file, "a.yaml");
    assert_eq!(out.unresolved[0].line, 1);
    assert!(out.unresolved[0].reason.contains("flux-system/absent"));
}

#[test]
fn non_yaml_and_unparsable_files_are_skipped() {
    let marker = "image: foo:1 # {\"$imagepolicy\": \"flux-system:podinfo\"}\n";
    let broken = format!("{marker}  - : [unclosed\n");
    let (dir, out) = run(&[
        ("notes.txt", marker),
        ("Dockerfile", marker),
        ("broken.yaml", &broken),
        ("ok.yaml", marker),
    ]);
    assert_eq!(read(&dir, "notes.txt"), marker);
    assert_eq!(read(&dir, "broken.yaml"), broken);
    assert!(read(&dir, "ok.yaml").contains("podinfo:5.1.4"));
    assert_eq!(out.skipped.len(), 1);
    assert_eq!(out.skipped[0].file, "broken.yaml");
    assert!(out.skipped[0].reason.contains("line"));
}

#[cfg(unix)]
#[test]
fn symlinks_are_not_followed_out_of_the_root() {
    let outside = tempfile::tempdir().unwrap();
    let marker = "image: foo:1 # {\"$imagepolicy\": \"flux-system:podinfo\"}\n";
    std::fs::write(outside.path().join("x.yaml"), marker).unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(outside.path().join("x.yaml"), dir.path().join("x.yaml")).unwrap();
    std::os::unix::fs::symlink(outside.path(), dir.path().join("sub")).unwrap();
    let out = apply(dir.path(), ".", &policies(), &Limits::default()).unwrap();
    assert_eq!(
        std::fs::read_to_string(outside.path().join("x.yaml")).unwrap(),
        marker
    );
    assert!(out.changes.is_empty());
    assert_eq!(out.skipped[0].file, "x.yaml");
    let err = apply(dir.path(), "sub", &policies(), &Limits::default()).unwrap_err();
    assert!(err.to_string().contains("symbolic link"), "{err}");
    let err = apply(dir.path(), "../..", &policies(), &Limits::default()).unwrap_err();
    assert!(err.to_string().contains("leaves the repository"), "{err}");
}

#[test]
fn a_second_run_changes_nothing() {
    let (dir, first) = run(&[("deploy.yaml", DEPLOYMENT)]);
    assert!(!first.changes.is_empty());
    let after_first = read(&dir, "deploy.yaml");
    let second = apply(dir.path(), "", &policies(), &Limits::default()).unwrap();
    assert!(second.changes.is_empty());
    assert_eq!(read(&dir, "deploy.yaml"), after_first);
}

#[test]
fn budgets_give_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..3 {
        std::fs::write(dir.path().join(format!("{i}.yaml")), "a: b\n").unwrap();
    }
    let limits = Limits {
        max_files: 2,
        ..Limits::default()
    };
    let err = apply(dir.path(), ".", &policies(), &limits).unwrap_err();
    assert!(err.to_string().contains("more than 2 YAML files"), "{err}");
    let limits = Limits {
        max_file_bytes: 3,
        ..Limits::default()
    };
    let err = apply(dir.path(), ".", &policies(), &limits).unwrap_err();
    assert!(err.to_string().contains("0.yaml is 5 bytes"), "{err}");
}

#[test]
fn keys_and_block_scalars_are_not_rewritten() {
    let src = "? foo:1 # {\"$imagepolicy\": \"flux-system:podinfo\"}\n: v\nb: |\n  text\n";
    let (dir, out) = run(&[("k.yaml", src)]);
    assert_eq!(read(&dir, "k.yaml"), src);
    assert!(out.changes.is_empty());
}
