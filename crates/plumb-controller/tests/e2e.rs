//! GitRepository + Kustomization end to end: a real git smart-HTTP server, the real API
//! server (with the controller-manager), plumb's controllers in-process.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use plumb_api::{GitRepository, Kustomization};
use plumb_controller::{Config, Context, Scope};
use plumb_ssa::{Applier, ApplyItem, ApplyOptions};
use plumb_testing::git::{GitHttpServer, HttpAuth, TestRepo};
use plumb_testing::{ControlPlane, ControlPlaneInfo, TestNamespace, wait};
use serde_json::{Value, json};

async fn install_crds(client: &kube::Client) {
    let items = plumb_api::crds()
        .into_iter()
        .map(|c| ApplyItem::new(serde_json::to_value(c).unwrap()))
        .collect();
    Applier::new(client.clone(), "plumb-test", 4)
        .apply_all(items, &ApplyOptions::default())
        .await
        .unwrap();
}

/// Starts plumb's controllers for one namespace; they stop with the test's runtime.
async fn start_plumb(info: &ControlPlaneInfo, ns: &str, storage: &std::path::Path) -> Arc<Context> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let artifacts = storage.join("artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    tokio::spawn(plumb_source::server::serve_artifacts(
        listener,
        artifacts,
        std::future::pending(),
    ));
    let kc = kube::config::Kubeconfig::read_from(&info.kubeconfig).unwrap();
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    let client = kube::Client::try_from(cfg.clone()).unwrap();
    let ctx = Context::new(
        client,
        cfg,
        Config {
            storage_path: storage.to_path_buf(),
            storage_adv_addr: addr.to_string(),
            requeue_dependency: Duration::from_secs(1),
            ..Default::default()
        },
    );
    let scope = Scope {
        namespace: Some(ns.to_string()),
        label_selector: None,
    };
    tokio::spawn(plumb_controller::run(ctx.clone(), scope, 4));
    ctx
}

fn ready(status: Option<&Value>) -> Option<(String, String, String)> {
    let conds = status?.get("conditions")?.as_array()?;
    let r = conds.iter().find(|c| c["type"] == "Ready")?;
    Some((
        r["status"].as_str()?.to_string(),
        r["reason"].as_str()?.to_string(),
        r["message"].as_str()?.to_string(),
    ))
}

async fn wait_ks<F>(api: &Api<Kustomization>, name: &str, what: &str, pred: F) -> Value
where
    F: Fn(&Value) -> bool,
{
    let r = wait::poll(what, Duration::from_secs(60), || {
        let api = api.clone();
        let pred = &pred;
        async move {
            let ks = api.get(name).await.ok()?;
            let v = serde_json::to_value(ks).ok()?;
            pred(&v).then_some(v)
        }
    })
    .await;
    match r {
        Ok(v) => v,
        Err(e) => {
            let now = api
                .get(name)
                .await
                .map(|k| serde_json::to_value(k).unwrap());
            panic!("{e}; kustomization now: {now:#?}");
        }
    }
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
