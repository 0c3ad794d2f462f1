//! The fingerprint of what a build read: what changes it and what does not.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use super::fingerprint;
use plumb_kustomize::{BuildOptions, ReadLog, Reads};

const CM: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n";

fn write(root: &Path, files: &[(&str, &str)]) {
    for (p, c) in files {
        let p = root.join(p);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, c).unwrap();
    }
}

/// A monorepo: app `a` (kustomization over a shared base), app `b` (a plain directory).
fn tree() -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    write(
        t.path(),
        &[
            ("apps/a/kustomization.yaml", "resources:\n- ../../base\n"),
            ("base/kustomization.yaml", "resources:\n- cm.yaml\n"),
            ("base/cm.yaml", CM),
            ("apps/b/cm.yaml", &CM.replace("name: a", "name: b")),
            ("README.md", "monorepo"),
        ],
    );
    t
}

fn reads(root: &Path, dir: &str) -> Reads {
    let log = ReadLog::new();
    let opts = BuildOptions {
        read_log: Some(log.clone()),
        generate_missing_kustomization: true,
        ..Default::default()
    };
    plumb_kustomize::build(&root.join(dir), root, &opts).unwrap();
    log.take()
}

fn changed(dir: &str, edit: impl FnOnce(&Path)) -> bool {
    let t = tree();
    let r = reads(t.path(), dir);
    let before = fingerprint(t.path(), &r).unwrap();
    edit(t.path());
    fingerprint(t.path(), &r) != Some(before)
}

#[test]
fn the_same_content_in_another_tree_has_the_same_fingerprint() {
    let (t1, t2) = (tree(), tree());
    let r = reads(t1.path(), "apps/a");
    assert_eq!(fingerprint(t1.path(), &r), fingerprint(t2.path(), &r));
    assert!(fingerprint(t1.path(), &r).is_some());
}

#[test]
fn files_the_build_did_not_read_do_not_count() {
    assert!(!changed("apps/a", |r| write(r, &[("README.md", "x")])));
    assert!(!changed("apps/a", |r| write(r, &[("apps/b/cm.yaml", "x")])));
    assert!(!changed("apps/b", |r| write(r, &[("base/cm.yaml", "x")])));
}

#[test]
fn a_file_reached_outside_the_path_counts() {
    assert!(changed("apps/a", |r| write(
        r,
        &[("base/cm.yaml", &CM.replace("a\n", "c\n"))]
    )));
    assert!(changed("apps/a", |r| std::fs::remove_file(
        r.join("base/cm.yaml")
    )
    .unwrap()));
}

#[test]
fn a_new_file_in_a_listed_directory_counts() {
    assert!(changed("apps/b", |r| write(r, &[("apps/b/new.yaml", CM)])));
    // A kustomization.yaml appearing in a plain directory changes how it builds.
    assert!(changed("apps/b", |r| write(
        r,
        &[("apps/b/kustomization.yaml", "resources: []\n")]
    )));
    // A directory with a kustomization.yaml is not listed: a new file there is not read.
    assert!(!changed("apps/a", |r| write(
        r,
        &[("apps/a/notes.txt", "x")]
    )));
}

#[cfg(unix)]
#[test]
fn symlinks_are_followed_and_confined() {
    let t = tree();
    let root = t.path();
    write(root, &[("base/other.yaml", CM)]);
    std::os::unix::fs::symlink("cm.yaml", root.join("base/link.yaml")).unwrap();
    write(
        root,
        &[("base/kustomization.yaml", "resources:\n- link.yaml\n")],
    );
    let r = reads(root, "apps/a");
    let before = fingerprint(root, &r).unwrap();
    // Retargeting the link changes what the build reads.
    std::fs::remove_file(root.join("base/link.yaml")).unwrap();
    std::os::unix::fs::symlink("other.yaml", root.join("base/link.yaml")).unwrap();
    assert_ne!(fingerprint(root, &r), Some(before));
    // A link leaving the root: no fingerprint, never a skip.
    let outside = tempfile::tempdir().unwrap();
    write(outside.path(), &[("cm.yaml", CM)]);
    std::fs::remove_file(root.join("base/link.yaml")).unwrap();
    std::os::unix::fs::symlink(outside.path().join("cm.yaml"), root.join("base/link.yaml"))
        .unwrap();
    assert_eq!(fingerprint(root, &r), None);
    let mut r = r;
    r.outside = true;
    assert_eq!(fingerprint(tree().path(), &r), None);
}
