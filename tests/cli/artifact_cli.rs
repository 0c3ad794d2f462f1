//! `plumb push|pull|tag artifact` against a real registry (distribution 2.8), read back with an
//! independent client (`skopeo`), so the manifest, media types, config and annotations are
//! proved to be Flux's.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use std::path::Path;
use std::process::{Command, Output};

use plumb_testing::git::TlsMaterial;
use plumb_testing::registry::{Registry, RegistryOptions};

fn plumb(home: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_plumb"));
    // A clean HOME: no Docker config credentials leak in.
    cmd.env("HOME", home).env_remove("DOCKER_CONFIG");
    cmd
}

fn ok(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn skopeo(args: &[&str]) -> String {
    let out = Command::new("skopeo")
        .args(args)
        .output()
        .expect("skopeo is missing: run scripts/install-deps.sh");
    ok(out, &format!("skopeo {args:?}"))
}

fn fleet() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(d.path().join("apps/podinfo")).unwrap();
    std::fs::write(
        d.path().join("apps/podinfo/kustomization.yaml"),
        "resources: [cm.yaml]\n",
    )
    .unwrap();
    std::fs::write(d.path().join("apps/podinfo/cm.yaml"), "kind: ConfigMap\n").unwrap();
    d
}

#[test]
fn push_is_fluxs_format_and_pull_and_tag_round_trip() {
    let reg = Registry::start(RegistryOptions::default()).unwrap();
    let home = tempfile::tempdir().unwrap();
    let src = fleet();
    let url = reg.oci_url("fleet/manifests:v1.0.0");
    let out = plumb(home.path())
        .args(["push", "artifact", &url, "--insecure-registry", "--path"])
        .arg(src.path())
        .args(["--source", "https://github.com/example/fleet.git"])
        .args(["--revision", "main@sha1:0123456789abcdef"])
        .args(["-a", "team=platform"])
        .output()
        .unwrap();
    let pushed = ok(out, "plumb push artifact");
    assert!(
        pushed.trim().contains("/fleet/manifests@sha256:"),
        "{pushed}"
    );

    let docker = format!("docker://{}/fleet/manifests:v1.0.0", reg.host());
    let raw = skopeo(&["inspect", "--tls-verify=false", "--raw", &docker]);
    let m: serde_json::Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(m["schemaVersion"], 2);
    assert_eq!(m["mediaType"], "application/vnd.oci.image.manifest.v1+json");
    assert_eq!(
        m["config"]["mediaType"],
        "application/vnd.cncf.flux.config.v1+json"
    );
    assert_eq!(m["layers"].as_array().unwrap().len(), 1);
    assert_eq!(
        m["layers"][0]["mediaType"],
        "application/vnd.cncf.flux.content.v1.tar+gzip"
    );
    let ann = &m["annotations"];
    assert_eq!(
        ann["org.opencontainers.image.source"],
        "https://github.com/example/fleet.git"
    );
    assert_eq!(
        ann["org.opencontainers.image.revision"],
        "main@sha1:0123456789abcdef"
    );
    assert_eq!(ann["team"], "platform");
    let created = ann["org.opencontainers.image.created"].as_str().unwrap();
    assert!(
        chrono::DateTime::parse_from_rfc3339(created).is_ok(),
        "{created}"
    );
    // The config is go-containerregistry's empty-image config, as `flux push` writes it.
    let config = skopeo(&[
        "inspect",
        "--tls-verify=false",
        "--config",
        "--raw",
        &docker,
    ]);
    assert_eq!(config.len(), 233, "{config}");
    let c: serde_json::Value = serde_json::from_str(&config).unwrap();
    assert_eq!(c["rootfs"]["type"], "layers");
    assert_eq!(c["config"], serde_json::json!({}));

    // Pull round trip.
    let dest = tempfile::tempdir().unwrap();
    let out = plumb(home.path())
        .args(["pull", "artifact", &url, "--insecure-registry", "--output"])
        .arg(dest.path())
        .output()
        .unwrap();
    let revision = ok(out, "plumb pull artifact");
    assert!(revision.trim().starts_with("v1.0.0@sha256:"), "{revision}");
    assert_eq!(
        std::fs::read_to_string(dest.path().join("apps/podinfo/cm.yaml")).unwrap(),
        "kind: ConfigMap\n"
    );

    // Tag: the new tag names the same manifest bytes.
    let out = plumb(home.path())
        .args([
            "tag",
            "artifact",
            &url,
            "--insecure-registry",
            "--tag",
            "latest",
        ])
        .output()
        .unwrap();
    ok(out, "plumb tag artifact");
    let latest = format!("docker://{}/fleet/manifests:latest", reg.host());
    assert_eq!(
        skopeo(&["inspect", "--tls-verify=false", "--raw", &latest]),
        raw
    );
}

#[test]
fn tls_htpasswd_and_clear_errors() {
    let tls = TlsMaterial::generate();
    let reg = Registry::start(RegistryOptions {
        tls: Some(&tls),
        htpasswd: Some(("alice", "s3cret-pw")),
        ..Default::default()
    })
    .unwrap();
    let home = tempfile::tempdir().unwrap();
    let src = fleet();
    let ca = tls.ca_path();
    let url = reg.oci_url("fleet:v1");
    let out = plumb(home.path())
        .args([
            "push",
            "artifact",
            &url,
            "--creds",
            "alice:s3cret-pw",
            "--ca-file",
        ])
        .arg(&ca)
        .arg("--path")
        .arg(src.path())
        .args([
            "--source",
            "https://example.com/fleet.git",
            "--revision",
            "v1@sha1:abc",
        ])
        .output()
        .unwrap();
    ok(out, "plumb push artifact (tls, htpasswd)");
    // skopeo reads it back through TLS with the test CA and the same credentials.
    let certs = tempfile::tempdir().unwrap();
    std::fs::copy(&ca, certs.path().join("ca.crt")).unwrap();
    let raw = skopeo(&[
        "inspect",
        "--raw",
        "--creds",
        "alice:s3cret-pw",
        "--cert-dir",
        certs.path().to_str().unwrap(),
        &format!("docker://{}/fleet:v1", reg.host()),
    ]);
    assert!(
        raw.contains("application/vnd.cncf.flux.content.v1.tar+gzip"),
        "{raw}"
    );

    let pull = |extra: &[&str]| {
        let dest = tempfile::tempdir().unwrap();
        plumb(home.path())
            .args(["pull", "artifact", "--ca-file"])
            .arg(&ca)
            .args(extra)
            .arg("--output")
            .arg(dest.path())
            .output()
            .unwrap()
    };
    // Without credentials: a clear 401.
    let out = pull(&[&url]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("requires credentials"), "{err}");
    // Wrong password: rejected, never printed.
    let out = pull(&[&url, "--creds", "alice:hunter2-wrong"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("rejected the credentials"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");
    // Unknown tag.
    let out = pull(&[&reg.oci_url("fleet:nope"), "--creds", "alice:s3cret-pw"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("tag 'nope' not found"), "{err}");
    // Wrong media type.
    let out = pull(&[
        &url,
        "--creds",
        "alice:s3cret-pw",
        "--media-type",
        "application/x-helm",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no layer matching media type 'application/x-helm'"),
        "{err}"
    );
    // A stored blob that no longer matches its digest.
    let manifest: serde_json::Value = serde_json::from_str(&raw).unwrap();
    let layer = manifest["layers"][0]["digest"].as_str().unwrap();
    let path = reg.blob_path(layer);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[0] ^= 0xff;
    std::fs::write(&path, bytes).unwrap();
    let out = pull(&[&url, "--creds", "alice:s3cret-pw"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("digest mismatch"), "{err}");
    // Without the CA: the registry is untrusted.
    let dest = tempfile::tempdir().unwrap();
    let out = plumb(home.path())
        .args([
            "pull",
            "artifact",
            &url,
            "--creds",
            "alice:s3cret-pw",
            "--output",
        ])
        .arg(dest.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("host not trusted"), "{err}");
}
