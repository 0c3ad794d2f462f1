//! `plumb run` killed with SIGKILL in the middle of an apply, then restarted: the
//! Kustomization converges with no object leaked and none wrongly pruned (plumb records
//! the objects it may create before it applies them).

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use plumb_api::{GitRepository, Kustomization};
use plumb_testing::git::{GitHttpServer, HttpAuth, TestRepo};
use plumb_testing::{ControlPlane, TestNamespace, wait};
use serde_json::{Value, json};

use crate::ks_cli::install_crds;

/// Revision files: ConfigMaps `{prefix}-0..n` and a kustomization.yaml naming them.
fn revision(prefix: &str, n: usize) -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = (0..n)
        .map(|i| {
            (
                format!("deploy/{prefix}-{i}.yaml"),
                format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {prefix}-{i}\n"),
            )
        })
        .collect();
    let list: String = (0..n).map(|i| format!("- {prefix}-{i}.yaml\n")).collect();
    files.push((
        "deploy/kustomization.yaml".into(),
        format!("resources:\n{list}"),
    ));
    files
}

fn commit(repo: &TestRepo, files: &[(String, String)]) -> String {
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    repo.commit(&refs, "revision")
}

fn start(kubeconfig: &std::path::Path, ns: &str, storage: &std::path::Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_plumb"))
        .args(["run", "--watch-all-namespaces=false", "--namespace", ns])
        .arg("--storage-path")
        .arg(storage)
        .args(["--storage-addr", "127.0.0.1:0"])
        .args(["--health-addr", "127.0.0.1:0"])
        .args(["--metrics-addr", "127.0.0.1:0"])
        .args(["--receiver-addr", "127.0.0.1:0"])
        .env("KUBECONFIG", kubeconfig)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(storage.with_extension("log")).unwrap())
        .spawn()
        .unwrap()
}

async fn count(cms: &Api<ConfigMap>, prefix: &str) -> usize {
    let list = cms.list_metadata(&ListParams::default()).await.unwrap();
    list.items
        .iter()
        .filter(|m| {
            m.metadata
                .name
                .as_deref()
                .is_some_and(|n| n.starts_with(&format!("{prefix}-")))
        })
        .count()
}

async fn request(repos: &Api<GitRepository>) {
    let stamp = format!("{:?}", std::time::SystemTime::now());
    let patch = json!({"metadata": {"annotations": {"reconcile.fluxcd.io/requestedAt": stamp}}});
    repos
        .patch("fleet", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
}

/// Waits until the Kustomization applied `sha`; on timeout shows its status and plumb's log.
async fn applied(kss: &Api<Kustomization>, sha: &str, log: &std::path::Path) -> Value {
    let want = format!("master@sha1:{sha}");
    let got = wait::poll(
        &format!("applied {want}"),
        Duration::from_secs(120),
        || async {
            let ks = kss.get("app").await.ok()?;
            let v = serde_json::to_value(&ks).ok()?;
            (v["status"]["lastAppliedRevision"].as_str() == Some(want.as_str())).then_some(v)
        },
    )
    .await;
    match got {
        Ok(v) => v,
        Err(e) => {
            let status = kss.get("app").await.map(|k| k.status);
            let log = std::fs::read_to_string(log).unwrap_or_default();
            let tail: String = log.lines().rev().take(40).collect::<Vec<_>>().join("\n");
            panic!("{e}\nstatus: {status:?}\nplumb log (last lines first):\n{tail}")
        }
    }
}

#[tokio::test]
async fn sigkill_mid_apply_then_restart_leaks_and_loses_nothing() {
    let info = ControlPlane::shared().unwrap();
    let client = info.admin_client().await.unwrap();
    install_crds(&client).await;
    let ns = TestNamespace::create(info, "crash").await.unwrap();
    let n = ns.name().to_string();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("repos");
    let repo = TestRepo::init(&root, "fleet");
    let first = commit(&repo, &revision("a", 5));
    let server = std::thread::spawn(move || GitHttpServer::start(&root, HttpAuth::Anonymous))
        .join()
        .unwrap();
    let repos: Api<GitRepository> = Api::namespaced(client.clone(), &n);
    let git: GitRepository = serde_json::from_value(json!({
        "apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository",
        "metadata": {"name": "fleet", "namespace": n},
        "spec": {"url": server.url("fleet"), "interval": "1h", "ref": {"branch": "master"}}
    }))
    .unwrap();
    repos.create(&PostParams::default(), &git).await.unwrap();
    let kss: Api<Kustomization> = Api::namespaced(client.clone(), &n);
    let ks: Kustomization = serde_json::from_value(json!({
        "apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
        // Each revision replaces all objects: more than the prune budget allows.
        "metadata": {"name": "app", "namespace": n,
                     "annotations": {"plumb.dev/prune-budget": "disabled"}},
        "spec": {"interval": "1h", "retryInterval": "2s", "prune": true, "path": "./deploy",
                 "targetNamespace": n, "sourceRef": {"kind": "GitRepository", "name": "fleet"}}
    }))
    .unwrap();
    kss.create(&PostParams::default(), &ks).await.unwrap();
    // Not ours: must survive everything below.
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &n);
    let unrelated: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "b-unrelated"}})).unwrap();
    cms.create(&PostParams::default(), &unrelated)
        .await
        .unwrap();

    let mut plumb = start(&info.kubeconfig, &n, &tmp.path().join("s1"));
    applied(&kss, &first, &tmp.path().join("s1.log")).await;
    assert_eq!(count(&cms, "a").await, 5);

    // Revision b: 600 new objects, a dropped. Kill plumb as soon as the first b exists.
    let big = commit(&repo, &revision("b", 600));
    request(&repos).await;
    wait::poll("the apply of b began", Duration::from_secs(120), || async {
        // b-unrelated counts as one already.
        (count(&cms, "b").await > 1).then_some(())
    })
    .await
    .unwrap();
    plumb.kill().unwrap(); // SIGKILL
    plumb.wait().unwrap();
    let at_kill = count(&cms, "b").await - 1;
    let v = serde_json::to_value(kss.get("app").await.unwrap()).unwrap();
    assert_ne!(
        v["status"]["lastAppliedRevision"].as_str(),
        Some(format!("master@sha1:{big}").as_str()),
        "killed mid-apply ({at_kill} of 600 applied)"
    );

    // Revision c replaces b before plumb comes back.
    let last = commit(&repo, &revision("c", 5));
    let mut plumb = start(&info.kubeconfig, &n, &tmp.path().join("s2"));
    request(&repos).await;
    let v = applied(&kss, &last, &tmp.path().join("s2.log")).await;
    assert_eq!(
        v["status"]["inventory"]["entries"].as_array().map(Vec::len),
        Some(5)
    );
    // Prune runs with the apply; give deletions a moment to be visible.
    wait::poll("no b leaked", Duration::from_secs(60), || async {
        (count(&cms, "b").await == 1).then_some(())
    })
    .await
    .unwrap();
    assert_eq!(count(&cms, "a").await, 0, "a pruned");
    assert_eq!(count(&cms, "c").await, 5, "c applied");
    assert!(
        cms.get_opt("b-unrelated").await.unwrap().is_some(),
        "an object plumb never owned is not pruned"
    );
    // Clean up while plumb runs (it removes its finalizers).
    kss.delete("app", &Default::default()).await.unwrap();
    repos.delete("fleet", &Default::default()).await.unwrap();
    wait::poll("finalized", Duration::from_secs(60), || async {
        let gone = kss.get_opt("app").await.ok()?.is_none()
            && repos.get_opt("fleet").await.ok()?.is_none();
        gone.then_some(())
    })
    .await
    .unwrap();
    plumb.kill().unwrap();
    plumb.wait().unwrap();
    ns.delete().await.unwrap();
}
