//! `plumb crds`: printing, writing and drift checking of the generated CRDs.

#![allow(clippy::unwrap_used)] // Tests may unwrap (DEVELOPERS.md rule 6).

use std::path::Path;
use std::process::Command;

fn plumb() -> Command {
    Command::new(env!("CARGO_BIN_EXE_plumb"))
}

/// Runs `plumb crds --check <dir>`.
fn check(dir: &Path) -> std::process::Output {
    plumb()
        .arg("crds")
        .arg("--check")
        .arg(dir)
        .output()
        .unwrap()
}

#[test]
fn committed_crds_are_up_to_date() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/crds");
    let out = check(&dir);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn prints_all_crds_as_multi_document_yaml() {
    let out = plumb().arg("crds").output().unwrap();
    assert!(out.status.success());
    let yaml = String::from_utf8(out.stdout).unwrap();
    assert_eq!(yaml.matches("\n---\n").count() + 1, 14);
    for name in [
        "gitrepositories.source.toolkit.fluxcd.io",
        "helmrepositories.source.toolkit.fluxcd.io",
        "ocirepositories.source.toolkit.fluxcd.io",
        "helmcharts.source.toolkit.fluxcd.io",
        "kustomizations.kustomize.toolkit.fluxcd.io",
        "helmreleases.helm.toolkit.fluxcd.io",
        "receivers.notification.toolkit.fluxcd.io",
        "externalartifacts.source.toolkit.fluxcd.io",
        "artifactgenerators.source.extensions.fluxcd.io",
        "providers.notification.toolkit.fluxcd.io",
        "alerts.notification.toolkit.fluxcd.io",
        "imagerepositories.image.toolkit.fluxcd.io",
        "imagepolicies.image.toolkit.fluxcd.io",
        "imageupdateautomations.image.toolkit.fluxcd.io",
    ] {
        assert!(yaml.contains(&format!("name: {name}\n")), "{name}");
    }
}

#[test]
fn write_then_check_detects_drift_by_file_name() {
    let dir = std::env::temp_dir().join(format!("plumb-crds-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let status = plumb()
        .arg("crds")
        .arg("--write")
        .arg(&dir)
        .status()
        .unwrap();
    assert!(status.success());
    assert!(dir.join("kustomization.yaml").is_file());
    let status = check(&dir);
    assert!(status.status.success());

    let drifting = dir.join("kustomize.toolkit.fluxcd.io_kustomizations.yaml");
    std::fs::write(&drifting, "---\n").unwrap();
    let out = check(&dir);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("kustomize.toolkit.fluxcd.io_kustomizations.yaml differs"),
        "{stderr}"
    );

    std::fs::remove_file(&drifting).unwrap();
    let out = check(&dir);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is missing"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn check_of_a_missing_directory_fails_clearly() {
    let out = plumb()
        .args(["crds", "--check", "/nonexistent/plumb-crds"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("/nonexistent/plumb-crds"), "{stderr}");
}
