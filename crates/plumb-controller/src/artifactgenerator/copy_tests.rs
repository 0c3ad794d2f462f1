use super::*;

fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    for (p, c) in files {
        let path = d.path().join(p);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, c).unwrap();
    }
    d
}

fn op(from: &str, to: &str) -> CopyOperation {
    CopyOperation {
        from: from.into(),
        to: to.into(),
        ..Default::default()
    }
}

fn listing(root: &Path) -> Vec<String> {
    walk(root, "")
        .unwrap()
        .into_iter()
        .filter(|(_, d)| !d)
        .map(|(r, _)| r)
        .collect()
}

fn run(ops: &[CopyOperation], src: &Path) -> std::result::Result<Vec<String>, CopyError> {
    let staging = tempfile::tempdir().unwrap();
    let sources = BTreeMap::from([("repo".to_string(), src.to_path_buf())]);
    for o in ops {
        apply(o, &sources, staging.path())?;
    }
    Ok(listing(staging.path()))
}

#[test]
fn directories_files_and_globs_land_like_cp() {
    let src = tree(&[
        ("apps/a/k.yaml", "a"),
        ("apps/a/README.md", "r"),
        ("apps/b/k.yaml", "b"),
        ("base/x.yaml", "x"),
    ]);
    assert_eq!(
        run(&[op("@repo/apps/a", "@artifact/")], src.path()).unwrap(),
        vec!["a/README.md", "a/k.yaml"]
    );
    assert_eq!(
        run(&[op("@repo/apps/a/**", "@artifact/")], src.path()).unwrap(),
        vec!["README.md", "k.yaml"]
    );
    assert_eq!(
        run(&[op("@repo/apps/*/k.yaml", "@artifact/out")], src.path()).unwrap(),
        vec!["out/apps/a/k.yaml", "out/apps/b/k.yaml"]
    );
    assert_eq!(
        run(&[op("@repo/base/x.yaml", "@artifact/y.yaml")], src.path()).unwrap(),
        vec!["y.yaml"]
    );
    let mut ex = op("@repo/apps/**", "@artifact/");
    ex.exclude = vec!["*.md".into(), "b/**".into()];
    assert_eq!(run(&[ex], src.path()).unwrap(), vec!["a/k.yaml"]);
}

#[test]
fn later_operations_overwrite_or_merge() {
    let src = tree(&[
        ("a/values.yaml", "x: 1\nm:\n  p: 1\n"),
        ("b/values.yaml", "m:\n  q: 2\n"),
    ]);
    let staging = tempfile::tempdir().unwrap();
    let sources = BTreeMap::from([("repo".to_string(), src.path().to_path_buf())]);
    apply(
        &op("@repo/a/values.yaml", "@artifact/values.yaml"),
        &sources,
        staging.path(),
    )
    .unwrap();
    let mut merge = op("@repo/b/values.yaml", "@artifact/values.yaml");
    merge.strategy = Some(CopyStrategy::Merge);
    apply(&merge, &sources, staging.path()).unwrap();
    let text = std::fs::read_to_string(staging.path().join("values.yaml")).unwrap();
    assert!(
        text.contains("p: 1") && text.contains("q: 2") && text.contains("x: 1"),
        "{text}"
    );
    apply(
        &op("@repo/b/values.yaml", "@artifact/values.yaml"),
        &sources,
        staging.path(),
    )
    .unwrap();
    let text = std::fs::read_to_string(staging.path().join("values.yaml")).unwrap();
    assert_eq!(text, "m:\n  q: 2\n");
}

#[test]
fn extract_unpacks_tarballs() {
    let inner = tree(&[("chart/Chart.yaml", "name: c\n")]);
    let mut data = Vec::new();
    plumb_source::artifact::archive_dir(
        inner.path(),
        &plumb_source::artifact::IgnoreRules::from_files(inner.path(), &[], None).unwrap(),
        Default::default(),
        &mut data,
    )
    .unwrap();
    let src = tempfile::tempdir().unwrap();
    std::fs::write(src.path().join("c.tgz"), &data).unwrap();
    std::fs::write(src.path().join("notes.txt"), "n").unwrap();
    let mut x = op("@repo/*", "@artifact/charts");
    x.strategy = Some(CopyStrategy::Extract);
    assert_eq!(
        run(&[x], src.path()).unwrap(),
        vec!["charts/chart/Chart.yaml"]
    );
    let mut bad = op("@repo/notes.txt", "@artifact/");
    bad.strategy = Some(CopyStrategy::Extract);
    assert!(matches!(run(&[bad], src.path()), Err(CopyError::Input(_))));
}

#[test]
fn bad_input_is_a_clear_error() {
    let src = tree(&[("a/k.yaml", "a")]);
    let err = |o: CopyOperation| match run(&[o], src.path()) {
        Err(CopyError::Input(m)) => m,
        other => panic!("{other:?}"),
    };
    assert!(err(op("@repo/nothing/*.yaml", "@artifact/")).contains("no files match pattern"));
    assert!(err(op("@repo/a/k.yaml", "@artifact/../up")).contains("within the artifact root"));
    assert!(err(op("@repo/../etc", "@artifact/")).contains("within the source root"));
    assert!(err(op("@other/a", "@artifact/")).contains("source alias 'other' not found"));
    assert!(err(op("@repo/missing.yaml", "@artifact/")).contains("does not exist"));
    let mut all = op("@repo/a/*", "@artifact/");
    all.exclude = vec!["*.yaml".into()];
    assert!(err(all).contains("were excluded"));
}

#[test]
fn a_glob_walks_only_below_its_literal_prefix_and_never_through_a_link() {
    let src = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret.yaml"), "x").unwrap();
    for d in ["apps/a", "apps/b/deep"] {
        std::fs::create_dir_all(src.path().join(d)).unwrap();
    }
    std::fs::write(src.path().join("apps/a/cm.yaml"), "a").unwrap();
    std::fs::write(src.path().join("apps/b/deep/cm.yaml"), "b").unwrap();
    std::os::unix::fs::symlink(outside.path(), src.path().join("apps/link")).unwrap();
    let got = |base: &str| -> Vec<String> {
        walk_under(src.path(), base)
            .unwrap()
            .into_iter()
            .map(|(p, _)| p)
            .collect()
    };
    assert_eq!(got("apps/b"), ["apps/b/deep", "apps/b/deep/cm.yaml"]);
    assert_eq!(
        got(""),
        walk(src.path(), "")
            .unwrap()
            .into_iter()
            .map(|(p, _)| p)
            .collect::<Vec<_>>()
    );
    assert!(got("apps/link").is_empty());
    assert!(got("apps/missing").is_empty());
    assert!(got("apps/a/cm.yaml").is_empty());
}
