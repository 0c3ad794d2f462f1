//! Bad OCI input against the real API server and a real registry, as a table: an
//! OCIRepository that feeds a pruning Kustomization is pointed at each bad input in turn
//! (no semver match, a corrupted blob, no matching layer, an image index, a gzip bomb, a
//! layer over the cap, a registry that is down, one that never answers). Each is a clear
//! condition with its reason, the last good artifact stays, and nothing is pruned.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use std::io::Read as _;
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams, PostParams};
use plumb_api::{Kustomization, OCIRepository};
use plumb_source::oci::{self, Client, ClientOptions, Descriptor, Manifest, PushMeta};
use plumb_testing::registry::{Registry, RegistryOptions};
use plumb_testing::{ControlPlane, TestNamespace};
use serde_json::{Value, json};

use crate::common::{install_crds, ready, start_plumb, wait_obj};

const CONTENT: &str = "application/vnd.cncf.flux.content.v1.tar+gzip";
const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

fn client(url: &str) -> Client {
    let opts = ClientOptions {
        insecure: true,
        timeout: Duration::from_secs(30),
        ..Default::default()
    };
    Client::new(&oci::parse_url(url).unwrap(), &opts).unwrap()
}

/// A tar+gzip of one file of `len` zeros: a few KiB that inflate to `len`.
fn gzip_bomb(len: u64) -> Vec<u8> {
    let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::fast(),
    ));
    let mut h = tar::Header::new_gnu();
    h.set_size(len);
    h.set_mode(0o644);
    h.set_cksum();
    tar.append_data(&mut h, "deploy/zeros.yaml", std::io::repeat(0).take(len))
        .unwrap();
    tar.into_inner().unwrap().finish().unwrap()
}

/// Pushes a manifest of `layers` under `tag`.
fn put(c: &Client, tag: &str, layers: Vec<Descriptor>) {
    let config = c
        .push_blob(b"{}", "application/vnd.cncf.flux.config.v1+json")
        .unwrap();
    let m = Manifest {
        schema_version: 2,
        media_type: Some(MANIFEST.into()),
        config,
        layers,
        annotations: Default::default(),
    };
    c.put_manifest(tag, &serde_json::to_vec(&m).unwrap(), MANIFEST)
        .unwrap();
}

/// The bad inputs pushed to `reg` (repository `fleet`, next to the good `v1`).
fn push_bad_inputs(reg: &Registry) {
    let c = client(&reg.oci_url("fleet"));
    // A blob whose stored bytes were changed after the push.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("deploy")).unwrap();
    std::fs::write(
        dir.path().join("deploy/kustomization.yaml"),
        "resources: []\n",
    )
    .unwrap();
    let pushed = client(&reg.oci_url("fleet:corrupt"))
        .push_artifact(dir.path(), &PushMeta::default())
        .unwrap();
    let m = c.fetch_manifest(&pushed.digest).unwrap();
    let path = reg.blob_path(&m.layers[0].digest);
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&path, bytes).unwrap();
    // A 100 MiB file in a ~100 KiB layer (the per-file budget is 64 MiB).
    let bomb = c.push_blob(&gzip_bomb(100 << 20), CONTENT).unwrap();
    put(&c, "bomb", vec![bomb]);
    // A layer whose descriptor claims more than the 256 MiB download cap.
    let mut huge = c.push_blob(b"small", CONTENT).unwrap();
    huge.size = 300 << 20;
    put(&c, "huge", vec![huge]);
    // An image index, not an artifact.
    let index = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#;
    c.put_manifest("index", index, "application/vnd.oci.image.index.v1+json")
        .unwrap();
}

/// One bad input: the spec fields to set and what the condition must say.
struct Case {
    what: &'static str,
    spec: Value,
    reason: &'static str,
    says: &'static str,
}

fn cases(reg: &Registry, down: &str, stalled: &str) -> Vec<Case> {
    let url = reg.oci_url("fleet");
    let spec = |url: &str, r: Value, layer: Value, timeout: &str| json!({"url": url, "ref": r, "layerSelector": layer, "timeout": timeout});
    let tag = |t: &str| json!({"tag": t, "semver": null});
    let (pull, layer) = ("OCIArtifactPullFailed", "OCIArtifactLayerOperationFailed");
    vec![
        Case {
            what: "semver with no match",
            spec: spec(
                &url,
                json!({"tag": null, "semver": ">=9.0.0"}),
                Value::Null,
                "20s",
            ),
            reason: pull,
            says: ">=9.0.0",
        },
        Case {
            what: "digest mismatch",
            spec: spec(&url, tag("corrupt"), Value::Null, "20s"),
            reason: layer,
            says: "digest mismatch",
        },
        Case {
            what: "no matching layer",
            spec: spec(
                &url,
                tag("v1"),
                json!({"mediaType": "application/x-none"}),
                "20s",
            ),
            reason: layer,
            says: "no layer matching media type 'application/x-none'",
        },
        Case {
            what: "an image index",
            spec: spec(&url, tag("index"), Value::Null, "20s"),
            reason: layer,
            says: "image index",
        },
        Case {
            what: "gzip bomb",
            spec: spec(&url, tag("bomb"), Value::Null, "20s"),
            reason: layer,
            says: "zeros.yaml",
        },
        Case {
            what: "layer over the cap",
            spec: spec(&url, tag("huge"), Value::Null, "20s"),
            reason: layer,
            says: "over the limit",
        },
        Case {
            what: "registry down",
            spec: spec(down, tag("v1"), Value::Null, "20s"),
            reason: pull,
            says: "unreachable",
        },
        Case {
            what: "registry that never answers",
            spec: spec(stalled, tag("v1"), Value::Null, "2s"),
            reason: pull,
            says: "timed out",
        },
    ]
}

#[tokio::test]
async fn bad_oci_input_is_a_clear_condition_and_prunes_nothing() {
    let info = ControlPlane::shared().unwrap();
    let client_k = info.admin_client().await.unwrap();
    install_crds(&client_k).await;
    let ns = TestNamespace::create(info, "oci-bad").await.unwrap();
    let n = ns.name().to_string();
    let (reg, good) = tokio::task::spawn_blocking(|| {
        let reg = Registry::start(RegistryOptions::default()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("deploy")).unwrap();
        std::fs::write(
            dir.path().join("deploy/kustomization.yaml"),
            "resources:\n- a.yaml\n",
        )
        .unwrap();
        let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\ndata:\n  v: \"1\"\n";
        std::fs::write(dir.path().join("deploy/a.yaml"), cm).unwrap();
        let good = client(&reg.oci_url("fleet:v1"))
            .push_artifact(dir.path(), &PushMeta::default())
            .unwrap()
            .digest;
        push_bad_inputs(&reg);
        (reg, good)
    })
    .await
    .unwrap();
    // Down: a port nothing listens on. Never answers: a listener that never accepts.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let down = format!("oci://{}/fleet", closed.local_addr().unwrap());
    drop(closed);
    let stall = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let stalled = format!("oci://{}/fleet", stall.local_addr().unwrap());

    let tmp = tempfile::tempdir().unwrap();
    start_plumb(info, &n, tmp.path()).await;
    let repos: Api<OCIRepository> = Api::namespaced(client_k.clone(), &n);
    let repo: OCIRepository = serde_json::from_value(json!({
        "apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "OCIRepository",
        "metadata": {"name": "fleet"},
        "spec": {"url": reg.oci_url("fleet"), "ref": {"tag": "v1"}, "insecure": true,
                 "interval": "1h"}
    }))
    .unwrap();
    repos.create(&PostParams::default(), &repo).await.unwrap();
    let kss: Api<Kustomization> = Api::namespaced(client_k.clone(), &n);
    let ks: Kustomization = serde_json::from_value(json!({
        "apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
        "metadata": {"name": "app"},
        "spec": {"interval": "1h", "prune": true, "path": "./deploy", "targetNamespace": n,
                 "sourceRef": {"kind": "OCIRepository", "name": "fleet"}}
    }))
    .unwrap();
    kss.create(&PostParams::default(), &ks).await.unwrap();
    let good_rev = format!("v1@{good}");
    wait_obj(&kss, "app", "applied v1", |v| {
        v["status"]["lastAppliedRevision"].as_str() == Some(good_rev.as_str())
    })
    .await;
    let cms: Api<ConfigMap> = Api::namespaced(client_k.clone(), &n);

    for case in cases(&reg, &down, &stalled) {
        let patch = json!({"spec": case.spec});
        repos
            .patch("fleet", &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap();
        let v = wait_obj(&repos, "fleet", case.what, |v| {
            v["status"]["observedGeneration"] == v["metadata"]["generation"]
                && ready(v.get("status")).is_some_and(|r| r.0 == "False")
        })
        .await;
        let (_, reason, msg) = ready(v.get("status")).unwrap();
        assert_eq!(reason, case.reason, "{}: {msg}", case.what);
        assert!(msg.contains(case.says), "{}: {msg}", case.what);
        assert_eq!(
            v["status"]["artifact"]["revision"].as_str(),
            Some(good_rev.as_str()),
            "{}: the last good artifact stays",
            case.what
        );
        assert!(
            cms.get_opt("a").await.unwrap().is_some(),
            "{}: nothing pruned",
            case.what
        );
    }
    let ks = kss.get("app").await.unwrap();
    assert_eq!(
        ks.status.unwrap().last_applied_revision.as_deref(),
        Some(good_rev.as_str())
    );
    drop((reg, stall));
    ns.delete().await.unwrap();
}
