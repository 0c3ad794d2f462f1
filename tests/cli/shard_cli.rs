//! Sharding as in Flux: two `plumb run` processes with `--watch-label-selector
//! sharding.fluxcd.io/key=shard1` and `=shard2`; each reconciles only the objects of its
//! shard, an unlabelled object is reconciled by neither, and a Kustomization may use a
//! source of another shard (its new artifacts still reach it).

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use kube::api::{Api, Patch, PatchParams, PostParams};
use plumb_api::{GitRepository, Kustomization};
use plumb_testing::git::{GitHttpServer, HttpAuth, TestRepo};
use plumb_testing::{ControlPlane, TestNamespace, wait};
use serde_json::{Value, json};

use crate::ks_cli::install_crds;

struct Shard {
    child: Child,
    storage_port: u16,
}

impl Drop for Shard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start(kubeconfig: &std::path::Path, ns: &str, shard: &str, dir: &std::path::Path) -> Shard {
    let storage_port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_plumb"))
        .args(["run", "--watch-all-namespaces=false", "--namespace", ns])
        .args([
            "--watch-label-selector",
            &format!("sharding.fluxcd.io/key={shard}"),
        ])
        .arg("--storage-path")
        .arg(dir.join(shard))
        .args(["--storage-addr", &format!("127.0.0.1:{storage_port}")])
        .args(["--health-addr", "127.0.0.1:0"])
        .args(["--metrics-addr", "127.0.0.1:0"])
        .args(["--receiver-addr", "127.0.0.1:0"])
        .env("KUBECONFIG", kubeconfig)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join(format!("{shard}.log"))).unwrap())
        .spawn()
        .unwrap();
    Shard {
        child,
        storage_port,
    }
}

fn labelled(shard: Option<&str>) -> Value {
    match shard {
        Some(s) => json!({"sharding.fluxcd.io/key": s}),
        None => json!({}),
    }
}

async fn create_ks(kss: &Api<Kustomization>, ns: &str, name: &str, shard: Option<&str>) {
    let ks: Kustomization = serde_json::from_value(json!({
        "apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
        "metadata": {"name": name, "namespace": ns, "labels": labelled(shard)},
        "spec": {"interval": "1h", "prune": true, "path": format!("./{name}"),
                 "targetNamespace": ns, "sourceRef": {"kind": "GitRepository", "name": "fleet"}}
    }))
    .unwrap();
    kss.create(&PostParams::default(), &ks).await.unwrap();
}

async fn status_of(kss: &Api<Kustomization>, name: &str) -> Value {
    serde_json::to_value(kss.get(name).await.unwrap()).unwrap()["status"].clone()
}

async fn wait_applied(kss: &Api<Kustomization>, name: &str, rev: &str) {
    let r = wait::poll(
        &format!("{name} applied {rev}"),
        Duration::from_secs(90),
        || async {
            let s = status_of(kss, name).await;
            (s["lastAppliedRevision"] == rev).then_some(())
        },
    )
    .await;
    if let Err(e) = r {
        panic!("{e}; status: {:#}", status_of(kss, name).await);
    }
}

fn files(rev: &str) -> Vec<(String, String)> {
    ["ks1", "ks2", "ks0"]
        .iter()
        .flat_map(|k| {
            [
                (format!("{k}/kustomization.yaml"), "resources:\n- cm.yaml\n".to_string()),
                (
                    format!("{k}/cm.yaml"),
                    format!(
                        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {k}\ndata:\n  rev: {rev}\n"
                    ),
                ),
            ]
        })
        .collect()
}

fn commit(repo: &TestRepo, rev: &str) -> String {
    let f = files(rev);
    let refs: Vec<(&str, &str)> = f.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    format!("master@sha1:{}", repo.commit(&refs, rev))
}

#[tokio::test]
async fn each_shard_reconciles_only_its_own_objects() {
    let info = ControlPlane::shared().unwrap();
    let client = info.admin_client().await.unwrap();
    install_crds(&client).await;
    let ns = TestNamespace::create(info, "shard").await.unwrap();
    let n = ns.name().to_string();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("repos");
    let repo = TestRepo::init(&root, "fleet");
    let first = commit(&repo, "one");
    let server = std::thread::spawn(move || GitHttpServer::start(&root, HttpAuth::Anonymous))
        .join()
        .unwrap();
    // The source belongs to shard1; ks2 (shard2) uses it too.
    let repos: Api<GitRepository> = Api::namespaced(client.clone(), &n);
    let git: GitRepository = serde_json::from_value(json!({
        "apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository",
        "metadata": {"name": "fleet", "namespace": n, "labels": labelled(Some("shard1"))},
        "spec": {"url": server.url("fleet"), "interval": "1h", "ref": {"branch": "master"}}
    }))
    .unwrap();
    repos.create(&PostParams::default(), &git).await.unwrap();
    let kss: Api<Kustomization> = Api::namespaced(client.clone(), &n);
    create_ks(&kss, &n, "ks1", Some("shard1")).await;
    create_ks(&kss, &n, "ks2", Some("shard2")).await;
    create_ks(&kss, &n, "ks0", None).await;

    let a = start(&info.kubeconfig, &n, "shard1", tmp.path());
    let mut b = start(&info.kubeconfig, &n, "shard2", tmp.path());
    wait_applied(&kss, "ks1", &first).await;
    wait_applied(&kss, "ks2", &first).await;
    // Only shard1's process reconciled the source: its artifact is served by that process.
    let src = serde_json::to_value(repos.get("fleet").await.unwrap()).unwrap();
    let url = src["status"]["artifact"]["url"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        url.contains(&format!(":{}/", a.storage_port)),
        "artifact of shard1's process: {url} (ports {} / {})",
        a.storage_port,
        b.storage_port
    );

    // A new artifact of shard1's source reaches the Kustomization of shard2 at once.
    let second = commit(&repo, "two");
    let stamp =
        |s: &str| json!({"metadata": {"annotations": {"reconcile.fluxcd.io/requestedAt": s}}});
    repos
        .patch(
            "fleet",
            &PatchParams::default(),
            &Patch::Merge(&stamp("r1")),
        )
        .await
        .unwrap();
    wait_applied(&kss, "ks1", &second).await;
    wait_applied(&kss, "ks2", &second).await;

    // With shard2's process stopped, a reconcile request is handled for ks1 only.
    b.child.kill().unwrap();
    b.child.wait().unwrap();
    for k in ["ks1", "ks2", "ks0"] {
        kss.patch(k, &PatchParams::default(), &Patch::Merge(&stamp("r2")))
            .await
            .unwrap();
    }
    wait::poll("ks1 handled r2", Duration::from_secs(60), || async {
        (status_of(&kss, "ks1").await["lastHandledReconcileAt"] == "r2").then_some(())
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await; // proving an absence
    assert_ne!(
        status_of(&kss, "ks2").await["lastHandledReconcileAt"],
        "r2",
        "shard1's process never reconciles shard2's objects"
    );
    let ks0 = status_of(&kss, "ks0").await;
    assert!(
        ks0.get("conditions").is_none() && ks0.get("lastHandledReconcileAt").is_none(),
        "an unlabelled Kustomization belongs to neither shard: {ks0:#}"
    );
    drop(a);
    // No process runs any more: drop plumb's finalizers so the namespace can go.
    let unhold = json!({"metadata": {"finalizers": null}});
    for k in ["ks1", "ks2", "ks0"] {
        kss.patch(k, &PatchParams::default(), &Patch::Merge(&unhold))
            .await
            .unwrap();
    }
    repos
        .patch("fleet", &PatchParams::default(), &Patch::Merge(&unhold))
        .await
        .unwrap();
    ns.delete().await.unwrap();
}
