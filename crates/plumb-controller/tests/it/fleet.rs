//! examples/fleet end to end, as `scripts/quickstart` runs it: the fleet and the apps
//! repository served over smart HTTP, the bootstrap objects of examples/bootstrap/local.yaml
//! applied, and every Kustomization (sources, common add-ons with per-cluster patches and
//! substitutions, apps after infrastructure) becomes Ready; then the same with the OCI
//! variant (`clusters/local-oci`: the apps pushed as an OCI artifact to a real registry, as
//! `scripts/quickstart --oci` does). The example's `flux-system` namespace is replaced by the
//! test's own so the test stays isolated; the two variants run one after the other, as they
//! share cluster-scoped namespaces.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use crate::common;

use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use kube::api::{Api, DeleteParams, ListParams};
use plumb_api::Kustomization;
use plumb_ssa::{Applier, ApplyItem, ApplyOptions};
use plumb_testing::git::{GitHttpServer, HttpAuth, git};
use plumb_testing::registry::{Registry, RegistryOptions};
use plumb_testing::{ControlPlane, TestNamespace, wait};
use serde_json::Value;

use crate::common::{install_crds, ready, start_plumb};

/// Copies `from` into `to`, replacing `flux-system` with `ns` in every file.
fn copy_tree(from: &Path, to: &Path, ns: &str) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target, ns);
        } else {
            let text = std::fs::read_to_string(entry.path()).unwrap();
            std::fs::write(target, text.replace("flux-system", ns)).unwrap();
        }
    }
}

/// `git init` + commit of `dir` on branch `main`.
fn commit_main(dir: &Path) {
    git(dir, &["init", "-q", "-b", "main"]);
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "-m", "fleet"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn example_fleet_reconciles_ready() {
    reconcile_fleet(false).await;
    reconcile_fleet(true).await;
}

/// Pushes `dir` to the registry as the OCI artifact `apps:1.0.0`, as the quickstart does.
async fn push_apps(reg: &Registry, dir: &Path) {
    let (url, dir) = (reg.oci_url("apps:1.0.0"), dir.to_path_buf());
    tokio::task::spawn_blocking(move || {
        let opts = plumb_source::oci::ClientOptions {
            insecure: true,
            ..Default::default()
        };
        let client =
            plumb_source::oci::Client::new(&plumb_source::oci::parse_url(&url).unwrap(), &opts)
                .unwrap();
        let meta = plumb_source::oci::PushMeta {
            source: Some("https://example.com/apps".into()),
            revision: Some("1.0.0@sha1:0123456789abcdef".into()),
            ..Default::default()
        };
        client.push_artifact(&dir, &meta).unwrap();
    })
    .await
    .unwrap();
}

async fn reconcile_fleet(oci: bool) {
    let info = ControlPlane::shared().unwrap();
    let client = info.admin_client().await.unwrap();
    install_crds(&client).await;
    let ns = TestNamespace::create(info, if oci { "fleet-oci" } else { "fleet" })
        .await
        .unwrap();
    let n = ns.name().to_string();

    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let tmp = tempfile::tempdir().unwrap();
    let repos = tmp.path().join("repos");
    copy_tree(&examples.join("fleet"), &repos.join("fleet"), &n);
    commit_main(&repos.join("fleet"));
    copy_tree(&examples.join("fleet/apps"), &repos.join("apps"), &n);
    commit_main(&repos.join("apps"));
    let root = repos.clone();
    let server = std::thread::spawn(move || GitHttpServer::start(&root, HttpAuth::Anonymous))
        .join()
        .unwrap();
    let registry = if oci {
        let reg = tokio::task::spawn_blocking(|| Registry::start(RegistryOptions::default()))
            .await
            .unwrap()
            .unwrap();
        push_apps(&reg, &repos.join("apps")).await;
        Some(reg)
    } else {
        None
    };
    let oci_base_url = registry
        .as_ref()
        .map(|r| format!("oci://{}", r.host()))
        // serde-saphyr reads an empty quoted scalar as null; the git variant does not use it.
        .unwrap_or_else(|| "oci://unused".to_string());
    let _ctx = start_plumb(info, &n, &tmp.path().join("storage")).await;

    // The bootstrap objects, filled in as the quickstart does.
    let fleet_url = server.url("fleet");
    let base_url = fleet_url.trim_end_matches("/fleet").to_string();
    let bootstrap = std::fs::read_to_string(examples.join("bootstrap/local.yaml"))
        .unwrap()
        .replace("${FLEET_URL}", &fleet_url)
        .replace("${GIT_BASE_URL}", &base_url)
        .replace("${OCI_BASE_URL}", &oci_base_url)
        .replace(
            "./clusters/local-dev",
            if oci {
                "./clusters/local-oci"
            } else {
                "./clusters/local-dev"
            },
        )
        .replace("flux-system", &n);
    let token: Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "webhook-token", "namespace": n}, "stringData": {"token": "t0ken"}
    }))
    .unwrap();
    Api::<Secret>::namespaced(client.clone(), &n)
        .create(&Default::default(), &token)
        .await
        .unwrap();
    let docs: Vec<Value> = serde_saphyr::from_multiple(&bootstrap).unwrap();
    let items = docs
        .into_iter()
        .filter(|d| d["kind"] != "Namespace")
        .map(ApplyItem::new)
        .collect();
    Applier::new(client.clone(), "plumb-test", 4)
        .apply_all(items, &ApplyOptions::default())
        .await
        .unwrap();

    let ks_api: Api<Kustomization> = Api::namespaced(client.clone(), &n);
    let names = ["flux-system", "monitoring", "ingress", "apps"];
    let all_ready = wait::poll("the whole fleet Ready", Duration::from_secs(120), || {
        let ks_api = ks_api.clone();
        let n = n.clone();
        async move {
            for name in names {
                let name = if name == "flux-system" {
                    n.as_str()
                } else {
                    name
                };
                let ks = ks_api.get(name).await.ok()?;
                let v = serde_json::to_value(ks).ok()?;
                if ready(v.get("status")).is_none_or(|r| r.0 != "True") {
                    return None;
                }
            }
            Some(())
        }
    })
    .await;
    if let Err(e) = all_ready {
        let list = ks_api.list(&ListParams::default()).await.unwrap();
        let states: Vec<_> = list
            .items
            .iter()
            .map(|k| {
                (
                    k.metadata.name.clone(),
                    ready(serde_json::to_value(k).unwrap().get("status")),
                )
            })
            .collect();
        panic!("{e}: {states:#?}");
    }

    // The bootstrap Receiver is ready with Flux's webhook path.
    let receivers: Api<plumb_api::Receiver> = Api::namespaced(client.clone(), &n);
    let rcv = common::wait_obj(&receivers, "fleet", "receiver ready", |v| {
        ready(v.get("status")).is_some_and(|r| r.0 == "True")
    })
    .await;
    let path = receivers.get("fleet").await.unwrap().webhook_path("t0ken");
    assert_eq!(rcv["status"]["webhookPath"], path.as_str());

    // Per-cluster patches and substitutions of the common add-ons.
    let cm = |ns: &str, name: &str| {
        let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
        let name = name.to_string();
        async move { api.get(&name).await.unwrap().data.unwrap() }
    };
    let info_cm = cm("monitoring", "cluster-info").await;
    assert_eq!(info_cm["cluster"], "local");
    assert_eq!(info_cm["region"], "local");
    assert_eq!(cm("monitoring", "scrape-config").await["retention"], "3d");
    assert_eq!(
        cm("ingress-system", "ingress-controller").await["use-proxy-protocol"],
        "true"
    );
    // The app from the second source, with its dev overlay and generators.
    assert_eq!(cm("podinfo", "dev-podinfo-env").await["environment"], "dev");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "podinfo");
    let names: Vec<String> = secrets
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|s| s.metadata.name)
        .collect();
    assert!(
        names
            .iter()
            .any(|s| s.starts_with("dev-podinfo-credentials-")),
        "{names:?}"
    );
    let apps = ks_api.get("apps").await.unwrap();
    let applied = apps.status.unwrap().last_applied_revision.unwrap();
    let from = if oci { "1.0.0@sha256:" } else { "main@sha1:" };
    assert!(applied.starts_with(from), "{applied}");

    // The fleet UI shows it, in a real browser (the git variant; the fleet's namespaces are
    // cluster-wide, so this runs here rather than beside this test).
    if !oci {
        crate::ui_browser::check_fleet_in_browser(info, &client, &n, &repos.join("apps")).await;
    }

    // Deleting the root prunes the fleet, namespaces included.
    ks_api.delete(&n, &DeleteParams::default()).await.unwrap();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    wait::poll("fleet pruned", Duration::from_secs(120), || {
        let ks_api = ks_api.clone();
        let namespaces = namespaces.clone();
        async move {
            let ks_left = ks_api.list(&ListParams::default()).await.ok()?.items.len();
            let cm_gone = namespaces
                .get_opt("monitoring")
                .await
                .ok()?
                .is_none_or(|n| n.metadata.deletion_timestamp.is_some());
            (ks_left == 0 && cm_gone).then_some(())
        }
    })
    .await
    .unwrap();
    ns.delete().await.unwrap();
    drop(registry);
}
