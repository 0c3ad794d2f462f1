//! GitRepository `verify` against the real API server and a real git server, with commits
//! and tags signed by the real `gpg` and `ssh-keygen`: a verified revision is stored
//! (`SourceVerified`, `sourceVerificationMode`); an unsigned commit pushed on top stalls with
//! `InvalidCommitSignature`, stores nothing, and the Kustomization's objects stay as they were.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, PostParams};
use plumb_api::{GitRepository, Kustomization};
use plumb_testing::git::{GitHttpServer, HttpAuth, TestRepo};
use plumb_testing::signing::Signer;
use plumb_testing::{ControlPlane, TestNamespace};
use serde_json::{Value, json};

use crate::common::{condition, install_crds, ready, request_reconcile, start_plumb, wait_obj};

fn cm(v: &str) -> String {
    format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: app\ndata:\n  v: \"{v}\"\n")
}

fn verified(v: &Value) -> Option<(String, String, String)> {
    condition(v.get("status"), "SourceVerified")
}

#[tokio::test]
async fn signed_commits_and_tags_are_verified_before_anything_is_stored() {
    let info = ControlPlane::shared().unwrap();
    let client = info.admin_client().await.unwrap();
    install_crds(&client).await;
    let ns = TestNamespace::create(info, "git-verify").await.unwrap();
    let n = ns.name().to_string();
    let tmp = tempfile::tempdir().unwrap();
    let (gpg, ssh) = (
        Signer::gpg(&tmp.path().join("gpg"), "alice@plumb.invalid"),
        Signer::ssh(&tmp.path().join("ssh")),
    );
    let repos = tmp.path().join("repos");
    let repo = TestRepo::init(&repos, "fleet");
    let c1 = gpg.commit(&repo, &[("deploy/app.yaml", &cm("1"))], "signed");
    ssh.tag(&repo, "v1");
    let server = GitHttpServer::start(&repos, HttpAuth::Anonymous);
    start_plumb(info, &n, &tmp.path().join("storage")).await;

    let secrets: Api<Secret> = Api::namespaced(client.clone(), &n);
    let (k0, v0) = gpg.secret_entry("alice");
    let (k1, v1) = ssh.secret_entry("release");
    let s: Secret = serde_json::from_value(json!({
        "metadata": {"name": "keys"}, "stringData": {k0: v0, k1: v1}
    }))
    .unwrap();
    secrets.create(&PostParams::default(), &s).await.unwrap();
    let gits: Api<GitRepository> = Api::namespaced(client.clone(), &n);
    for (name, r, mode) in [
        ("fleet", json!({"branch": "master"}), "HEAD"),
        ("tagged", json!({"tag": "v1"}), "TagAndHEAD"),
    ] {
        let g: GitRepository = serde_json::from_value(json!({
            "apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository",
            "metadata": {"name": name},
            "spec": {"url": server.url("fleet"), "interval": "1h", "ref": r,
                     "verify": {"mode": mode, "secretRef": {"name": "keys"}}}
        }))
        .unwrap();
        gits.create(&PostParams::default(), &g).await.unwrap();
    }
    let rev = format!("master@sha1:{c1}");
    let v = wait_obj(&gits, "fleet", "verified HEAD", |v| {
        v["status"]["artifact"]["revision"].as_str() == Some(rev.as_str())
    })
    .await;
    let c = verified(&v).unwrap();
    assert_eq!((c.0.as_str(), c.1.as_str()), ("True", "Succeeded"));
    assert!(c.2.contains(&format!("commit '{c1}' with key")), "{}", c.2);
    assert_eq!(v["status"]["sourceVerificationMode"], "HEAD");
    let v = wait_obj(&gits, "tagged", "verified tag and HEAD", |v| {
        verified(v).is_some_and(|c| c.0 == "True")
    })
    .await;
    let msg = verified(&v).unwrap().2;
    assert!(
        msg.contains("tag 'v1' with key 'release.sshpub: SHA256:"),
        "{msg}"
    );
    assert!(msg.contains(&format!("commit '{c1}'")), "{msg}");

    let kss: Api<Kustomization> = Api::namespaced(client.clone(), &n);
    let ks: Kustomization = serde_json::from_value(json!({
        "apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
        "metadata": {"name": "app"},
        "spec": {"interval": "1h", "prune": true, "path": "./deploy", "targetNamespace": n,
                 "sourceRef": {"kind": "GitRepository", "name": "fleet"}}
    }))
    .unwrap();
    kss.create(&PostParams::default(), &ks).await.unwrap();
    wait_obj(&kss, "app", "applied the verified commit", |v| {
        v["status"]["lastAppliedRevision"].as_str() == Some(rev.as_str())
    })
    .await;

    // An unsigned commit on top: refused, nothing stored, nothing applied or pruned.
    let c2 = repo.commit(&[("deploy/app.yaml", &cm("2"))], "unsigned");
    request_reconcile(&gits, "fleet").await;
    let v = wait_obj(&gits, "fleet", "unsigned commit refused", |v| {
        verified(v).is_some_and(|c| c.0 == "False")
    })
    .await;
    let c = verified(&v).unwrap();
    assert_eq!(c.1, "InvalidCommitSignature", "{}", c.2);
    assert!(c.2.contains(&c2) && c.2.contains("not signed"), "{}", c.2);
    assert_eq!(ready(v.get("status")).unwrap().1, "InvalidCommitSignature");
    assert_eq!(v["status"]["artifact"]["revision"], json!(rev));
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &n);
    assert_eq!(cms.get("app").await.unwrap().data.unwrap()["v"], "1");
    drop(server);
    ns.delete().await.unwrap();
}
