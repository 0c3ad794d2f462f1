//! `spec.pathPattern`: directories matched, placeholders filled, bad input refused.
#![allow(clippy::unwrap_used)]

use super::*;
use plumb_api::artifact_generator::CopyOperation;

fn tree(dirs: &[&str]) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    for p in dirs {
        std::fs::create_dir_all(d.path().join(p)).unwrap();
        std::fs::write(d.path().join(p).join("app.yaml"), "x").unwrap();
    }
    d
}

fn template(name: &str, from: &str, to: &str) -> OutputArtifact {
    OutputArtifact {
        name: name.into(),
        copy: vec![CopyOperation {
            from: from.into(),
            to: to.into(),
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn expand_in(
    root: &Path,
    pattern: &str,
    t: &[OutputArtifact],
) -> Result<Vec<OutputArtifact>, Failure> {
    let dirs = BTreeMap::from([("mono".to_string(), root.to_path_buf())]);
    expand(Some(pattern), t, &dirs)
}

#[test]
fn each_matched_directory_makes_an_output_per_template() {
    let t = tree(&[
        "apps/auth/envs/dev",
        "apps/auth/envs/prod",
        "apps/pay/envs/dev",
        "apps/pay/other",
        "apps/.hidden/envs/dev",
    ]);
    let templates = [template(
        "{app}-{env}",
        "@mono/apps/{app}/envs/{env}/**",
        "@artifact/{env}/",
    )];
    let out = expand_in(t.path(), "@mono/apps/{app}/envs/{env}", &templates).unwrap();
    let names: Vec<_> = out.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["auth-dev", "auth-prod", "pay-dev"]);
    assert_eq!(out[1].copy[0].from, "@mono/apps/auth/envs/prod/**");
    assert_eq!(out[1].copy[0].to, "@artifact/prod/");
    // `*` matches without capturing; glob alternatives are left alone.
    let templates = [template(
        "{env}-x",
        "@mono/apps/*/envs/{env}/*.{yaml,yml}",
        "@artifact/",
    )];
    let err = expand_in(t.path(), "@mono/apps/*/envs/{env}", &templates).unwrap_err();
    assert!(err.message.contains("'dev-x' twice"), "{}", err.message);
    let out = expand_in(t.path(), "@mono/apps/auth/envs/{env}", &templates).unwrap();
    assert_eq!(out[0].copy[0].from, "@mono/apps/*/envs/dev/*.{yaml,yml}");
    // Without a pattern the templates are the outputs.
    let same = expand(None, &templates, &BTreeMap::new()).unwrap();
    assert_eq!(same, templates.to_vec());
}

#[test]
fn bad_patterns_and_templates_are_refused_with_the_cause() {
    let t = tree(&["apps/a", "apps/Upper"]);
    let ok = [template("{app}", "@mono/apps/{app}/**", "@artifact/")];
    let cases = [
        ("@other/apps/{app}", &ok[..], "unknown source alias 'other'"),
        ("@mono/apps/app-{app}", &ok[..], "segment 'app-{app}'"),
        ("@mono/apps/../{app}", &ok[..], "segment '..'"),
        ("@mono/apps", &ok[..], "no '{name}' placeholder"),
        ("@mono/none/{app}", &ok[..], "matches no directory"),
        ("@mono/apps/{app}", &ok[..], "'Upper'"),
    ];
    for (pattern, templates, want) in cases {
        let err = expand_in(t.path(), pattern, templates).unwrap_err();
        assert_eq!(err.class, Class::Stalled);
        assert!(err.message.contains(want), "{pattern}: {}", err.message);
    }
    let t = tree(&["apps/a"]);
    let unknown = [template("{app}", "@mono/apps/{ap}/**", "@artifact/")];
    let err = expand_in(t.path(), "@mono/apps/{app}", &unknown).unwrap_err();
    assert!(err.message.contains("'{ap}'"), "{}", err.message);
}

#[test]
fn links_are_not_followed_and_matches_are_capped() {
    let t = tree(&["apps/a"]);
    let outside = tree(&["secret"]);
    std::os::unix::fs::symlink(outside.path(), t.path().join("apps/link")).unwrap();
    let ok = [template("{app}", "@mono/apps/{app}/**", "@artifact/")];
    let out = expand_in(t.path(), "@mono/apps/{app}", &ok).unwrap();
    assert_eq!(out.len(), 1, "the link is no match");
    let many: Vec<String> = (0..=MAX_OUTPUTS).map(|i| format!("apps/a{i}")).collect();
    let refs: Vec<&str> = many.iter().map(String::as_str).collect();
    let t = tree(&refs);
    let err = expand_in(t.path(), "@mono/apps/{app}", &ok).unwrap_err();
    assert!(err.message.contains("more than"), "{}", err.message);
}
