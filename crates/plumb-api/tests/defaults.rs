//! Defaults: serde fills the same values Flux's CRDs default, and the schema carries them.

#![allow(clippy::unwrap_used)] // Tests may unwrap (DEVELOPERS.md rule 6).

use plumb_api::git_repository::GitVerificationMode;
use plumb_api::helm_release::{DeletionPropagation, ReconcileStrategy, VerificationProvider};
use plumb_api::helm_repository::HelmRepositoryProvider;
use plumb_api::{GitRepositorySpec, HelmReleaseSpec, HelmRepositorySpec, ReceiverSpec};
use serde_json::{Value, json};

fn schema_of(kind: &str) -> Value {
    let crd = plumb_api::crds()
        .into_iter()
        .find(|c| c.spec.names.kind == kind)
        .unwrap();
    serde_json::to_value(
        crd.spec.versions[0]
            .schema
            .as_ref()
            .unwrap()
            .open_api_v3_schema
            .as_ref()
            .unwrap(),
    )
    .unwrap()
}

fn at<'a>(v: &'a Value, path: &[&str]) -> &'a Value {
    path.iter().fold(v, |v, p| {
        if *p == "[]" {
            &v["items"]
        } else {
            &v["properties"][*p]
        }
    })
}

#[test]
fn serde_defaults_match_flux() {
    let git: GitRepositorySpec = serde_json::from_value(json!({
        "url": "https://example.com/repo.git", "interval": "1m",
        "verify": {"secretRef": {"name": "keys"}}
    }))
    .unwrap();
    assert_eq!(git.timeout, "60s");
    assert_eq!(git.verification.unwrap().mode, GitVerificationMode::Head);
    assert!(!git.suspend);

    let helm_repo: HelmRepositorySpec =
        serde_json::from_value(json!({"url": "https://charts.example.com"})).unwrap();
    assert_eq!(helm_repo.provider, HelmRepositoryProvider::Generic);

    let hr: HelmReleaseSpec = serde_json::from_value(json!({
        "interval": "5m",
        "chart": {"spec": {"chart": "podinfo", "sourceRef": {"kind": "HelmRepository", "name": "p"},
                  "verify": {}}},
        "uninstall": {}
    }))
    .unwrap();
    let chart = hr.chart.unwrap().spec;
    assert_eq!(chart.version, "*");
    assert_eq!(chart.reconcile_strategy, ReconcileStrategy::ChartVersion);
    assert_eq!(chart.verify.unwrap().provider, VerificationProvider::Cosign);
    assert_eq!(
        hr.uninstall.unwrap().deletion_propagation,
        DeletionPropagation::Background
    );

    let rcv: ReceiverSpec = serde_json::from_value(json!({
        "type": "generic", "resources": [], "secretRef": {"name": "t"}
    }))
    .unwrap();
    assert_eq!(rcv.interval, "10m");
}

#[test]
fn schema_defaults_match_flux() {
    let git = schema_of("GitRepository");
    assert_eq!(at(&git, &["spec", "timeout"])["default"], "60s");
    assert_eq!(at(&git, &["spec", "verify", "mode"])["default"], "HEAD");
    assert_eq!(
        at(&git, &["status"])["default"],
        json!({"observedGeneration": -1})
    );
    let repo = schema_of("HelmRepository");
    assert_eq!(at(&repo, &["spec", "provider"])["default"], "generic");
    let ks = schema_of("Kustomization");
    assert_eq!(at(&ks, &["spec", "force"])["default"], false);
    assert_eq!(
        at(
            &ks,
            &["spec", "postBuild", "substituteFrom", "[]", "optional"]
        )["default"],
        false
    );
    assert!(at(&ks, &["spec", "prune"]).get("default").is_none());
    assert!(at(&ks, &["spec", "components"]).get("default").is_none());
    let hr = schema_of("HelmRelease");
    let chart = at(&hr, &["spec", "chart", "spec"]);
    assert_eq!(at(chart, &["version"])["default"], "*");
    assert_eq!(at(chart, &["reconcileStrategy"])["default"], "ChartVersion");
    assert_eq!(at(chart, &["verify", "provider"])["default"], "cosign");
    assert_eq!(
        at(&hr, &["spec", "uninstall", "deletionPropagation"])["default"],
        "background"
    );
    assert_eq!(
        at(&hr, &["spec", "values"])["x-kubernetes-preserve-unknown-fields"],
        true
    );
    let rcv = schema_of("Receiver");
    assert_eq!(at(&rcv, &["spec", "interval"])["default"], "10m");
    let oci = schema_of("OCIRepository");
    assert_eq!(at(&oci, &["spec", "timeout"])["default"], "60s");
    assert_eq!(at(&oci, &["spec", "provider"])["default"], "generic");
    assert_eq!(
        at(&oci, &["spec", "verify", "provider"])["default"],
        "cosign"
    );
    assert_eq!(
        at(&oci, &["spec", "layerSelector", "operation"])["enum"],
        json!(["extract", "copy"])
    );
    assert_eq!(
        at(&oci, &["spec", "provider"])["enum"],
        json!(["generic", "aws", "azure", "gcp"])
    );
    assert_eq!(at(&oci, &["spec", "url"])["pattern"], "^oci://.*$");
    assert_eq!(at(&oci, &["spec"])["required"], json!(["interval", "url"]));
}

#[test]
fn enums_and_patterns_match_flux() {
    let git = schema_of("GitRepository");
    assert_eq!(
        at(&git, &["spec", "verify", "mode"])["enum"],
        json!(["head", "HEAD", "Tag", "TagAndHEAD"])
    );
    assert_eq!(
        at(&git, &["spec", "url"])["pattern"],
        "^(http|https|ssh)://.*$"
    );
    let ks = schema_of("Kustomization");
    assert_eq!(
        at(&ks, &["spec", "sourceRef", "kind"])["enum"],
        json!([
            "OCIRepository",
            "GitRepository",
            "Bucket",
            "ExternalArtifact"
        ])
    );
    assert_eq!(
        at(&ks, &["spec", "deletionPolicy"])["enum"],
        json!(["MirrorPrune", "Delete", "WaitForTermination", "Orphan"])
    );
    assert_eq!(at(&ks, &["spec", "targetNamespace"])["maxLength"], 63);
    let hr = schema_of("HelmRelease");
    assert_eq!(
        at(&hr, &["spec", "upgrade", "remediation", "strategy"])["enum"],
        json!(["rollback", "uninstall"])
    );
    assert_eq!(at(&hr, &["spec", "releaseName"])["maxLength"], 53);
    let rcv = schema_of("Receiver");
    assert_eq!(at(&rcv, &["spec", "type"])["enum"][1], "generic-hmac");
}
