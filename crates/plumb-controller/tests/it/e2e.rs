//! GitRepository + Kustomization end to end: a real git smart-HTTP server, the real API
//! server (with the controller-manager), plumb's controllers in-process.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use plumb_api::{GitRepository, Kustomization};
use plumb_testing::git::{GitHttpServer, HttpAuth, TestRepo};
use plumb_testing::{ControlPlane, TestNamespace, wait};
use serde_json::{Value, json};

use crate::common::{install_crds, ready, start_plumb, wait_obj};

async fn wait_ks<F>(api: &Api<Kustomization>, name: &str, what: &str, pred: F) -> Value
where
    F: Fn(&Value) -> bool,
{
    wait_obj(api, name, what, pred).await
}

async fn request_reconcile(client: &kube::Client, ns: &str, kind: &str, name: &str) {
    let stamp = format!("{:?}", std::time::SystemTime::now());
    let patch = json!({"metadata": {"annotations": {"reconcile.fluxcd.io/requestedAt": stamp}}});
    let pp = PatchParams::default();
    match kind {
        "GitRepository" => {
            Api::<GitRepository>::namespaced(client.clone(), ns)
                .patch(name, &pp, &Patch::Merge(&patch))
                .await
                .unwrap();
        }
        _ => {
            Api::<Kustomization>::namespaced(client.clone(), ns)
                .patch(name, &pp, &Patch::Merge(&patch))
                .await
                .unwrap();
        }
    }
}

#[tokio::test]
async fn git_push_apply_update_prune_and_safe_failure() {
    let info = ControlPlane::shared().unwrap();
    let client = info.admin_client().await.unwrap();
    install_crds(&client).await;
    let ns = TestNamespace::create(info, "e2e-ks").await.unwrap();
    let n = ns.name().to_string();

    let tmp = tempfile::tempdir().unwrap();
    let repo = TestRepo::init(&tmp.path().join("repos"), "fleet");
    repo.commit(
        &[
            ("deploy/kustomization.yaml", "resources:\n- a.yaml\n- b.yaml\n"),
            ("deploy/a.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\ndata:\n  v: \"1\"\n  cluster: ${cluster_name:=dev}\n"),
            ("deploy/b.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: b\n"),
        ],
        "initial",
    );
    // The server runs its own runtime; start it off this async context.
    let root = tmp.path().join("repos");
    let server = std::thread::spawn(move || GitHttpServer::start(&root, HttpAuth::Anonymous))
        .join()
        .unwrap();
    let _ctx = start_plumb(info, &n, &tmp.path().join("storage")).await;

    let git_api: Api<GitRepository> = Api::namespaced(client.clone(), &n);
    let gitrepo: GitRepository = serde_json::from_value(json!({
        "apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository",
        "metadata": {"name": "fleet", "namespace": n},
        "spec": {"url": server.url("fleet"), "interval": "1h", "ref": {"branch": "master"}}
    }))
    .unwrap();
    git_api
        .create(&PostParams::default(), &gitrepo)
        .await
        .unwrap();
    let ks_api: Api<Kustomization> = Api::namespaced(client.clone(), &n);
    let ks: Kustomization = serde_json::from_value(json!({
        "apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
        "metadata": {"name": "app", "namespace": n},
        "spec": {"interval": "1h", "path": "./deploy", "prune": true, "targetNamespace": n,
                 "sourceRef": {"kind": "GitRepository", "name": "fleet"},
                 "postBuild": {"substitute": {"cluster_name": "prod"}}}
    }))
    .unwrap();
    ks_api.create(&PostParams::default(), &ks).await.unwrap();

    let v = wait_ks(&ks_api, "app", "first apply", |v| {
        ready(v.get("status")).is_some_and(|r| r.0 == "True")
    })
    .await;
    let rev = v["status"]["lastAppliedRevision"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(rev.starts_with("master@sha1:"), "{rev}");
    let entries = v["status"]["inventory"]["entries"].as_array().unwrap();
    let ids: Vec<&str> = entries.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert!(
        ids.contains(&format!("{n}_a__ConfigMap").as_str()),
        "{ids:?}"
    );
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &n);
    let a = cms.get("a").await.unwrap();
    assert_eq!(
        a.data.as_ref().unwrap()["cluster"],
        "prod",
        "postBuild substitution"
    );
    assert_eq!(
        a.metadata.labels.as_ref().unwrap()["kustomize.toolkit.fluxcd.io/name"],
        "app"
    );
    let gr = serde_json::to_value(git_api.get("fleet").await.unwrap()).unwrap();
    assert_eq!(ready(gr.get("status")).unwrap().0, "True");
    assert!(
        gr["status"]["artifact"]["digest"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );

    // A new commit changes a and drops b: applied and pruned.
    std::fs::remove_file(repo.path.join("deploy/b.yaml")).unwrap();
    let sha = repo.commit(
        &[
            ("deploy/kustomization.yaml", "resources:\n- a.yaml\n"),
            (
                "deploy/a.yaml",
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\ndata:\n  v: \"2\"\n",
            ),
        ],
        "update",
    );
    request_reconcile(&client, &n, "GitRepository", "fleet").await;
    let want = format!("master@sha1:{sha}");
    wait_ks(&ks_api, "app", "second revision applied", |v| {
        if v["status"]["lastAppliedRevision"].as_str() != Some(want.as_str()) {
            // The Kustomization polls hourly: nudge it like `plumb reconcile` would.
            return false;
        }
        true
    })
    .await
    .to_string();
    assert_eq!(cms.get("a").await.unwrap().data.unwrap()["v"], "2");
    assert!(cms.get_opt("b").await.unwrap().is_none(), "b pruned");

    // A broken render fails clearly and prunes nothing.
    let bad = repo.commit(
        &[(
            "deploy/a.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: [oops\n",
        )],
        "broken",
    );
    request_reconcile(&client, &n, "GitRepository", "fleet").await;
    let v = wait_ks(&ks_api, "app", "broken revision reported", |v| {
        v["status"]["lastAttemptedRevision"].as_str() == Some(format!("master@sha1:{bad}").as_str())
            && ready(v.get("status")).is_some_and(|r| r.0 == "False")
    })
    .await;
    let r = ready(v.get("status")).unwrap();
    assert_eq!(r.1, "BuildFailed", "{r:?}");
    assert!(r.2.contains("a.yaml"), "error names the file: {r:?}");
    assert_eq!(
        v["status"]["lastAppliedRevision"].as_str(),
        Some(want.as_str())
    );
    assert!(
        cms.get_opt("a").await.unwrap().is_some(),
        "nothing pruned on a broken render"
    );

    // Deleting the Kustomization (prune: true) deletes what it applied.
    ks_api
        .delete("app", &DeleteParams::default())
        .await
        .unwrap();
    wait::poll(
        "kustomization gone and objects pruned",
        Duration::from_secs(60),
        || {
            let cms = cms.clone();
            let ks_api = ks_api.clone();
            async move {
                let gone = ks_api.get_opt("app").await.ok()?.is_none()
                    && cms.get_opt("a").await.ok()?.is_none();
                gone.then_some(())
            }
        },
    )
    .await
    .unwrap();
    git_api
        .delete("fleet", &DeleteParams::default())
        .await
        .unwrap();
    ns.delete().await.unwrap();
}
