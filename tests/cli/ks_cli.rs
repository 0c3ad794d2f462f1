//! `plumb build ks` and `plumb diff ks` against the real API server, with plumb's
//! controllers running in this process to produce the Kustomization and its artifact.

#![allow(clippy::unwrap_used)] // Tests may unwrap (DEVELOPERS.md rule 6).

use std::process::{Command, Output};
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, Patch, PatchParams, PostParams};
use plumb_api::{GitRepository, Kustomization};
use plumb_ssa::{Applier, ApplyItem, ApplyOptions};
use plumb_testing::git::{GitHttpServer, HttpAuth, TestRepo};
use plumb_testing::{ControlPlane, TestNamespace, wait};
use serde_json::json;

pub(crate) async fn plumb(kubeconfig: &std::path::Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_plumb"));
    cmd.args(args).env("KUBECONFIG", kubeconfig);
    tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap()
}

pub(crate) fn text(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Commits `files` to a new repository `name` under `dir/repos`, serves it over smart
/// HTTP and creates a GitRepository `name` for it in `ns`. Keep the server alive.
pub(crate) async fn git_source(
    client: &kube::Client,
    ns: &str,
    dir: &std::path::Path,
    name: &str,
    files: &[(&str, &str)],
) -> GitHttpServer {
    let root = dir.join("repos");
    TestRepo::init(&root, name).commit(files, "initial");
    let server = std::thread::spawn(move || GitHttpServer::start(&root, HttpAuth::Anonymous))
        .join()
        .unwrap();
    let git: GitRepository = serde_json::from_value(json!({
        "apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"url": server.url(name), "interval": "1h", "ref": {"branch": "master"}}
    }))
    .unwrap();
    Api::<GitRepository>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &git)
        .await
        .unwrap();
    server
}

/// Applies plumb's CRDs.
pub(crate) async fn install_crds(client: &kube::Client) {
    let crds = plumb_api::crds()
        .into_iter()
        .map(|c| ApplyItem::new(serde_json::to_value(c).unwrap()))
        .collect();
    Applier::new(client.clone(), "plumb-test", 4)
        .apply_all(crds, &ApplyOptions::default())
        .await
        .unwrap();
}

/// plumb's controllers and artifact server, scoped to namespace `n`, storing under `dir`.
pub(crate) async fn start_controllers(
    info: &plumb_testing::ControlPlaneInfo,
    n: &str,
    dir: &std::path::Path,
) -> (
    std::sync::Arc<plumb_controller::Context>,
    tokio::task::JoinHandle<()>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let storage = dir.join("storage");
    std::fs::create_dir_all(storage.join("artifacts")).unwrap();
    tokio::spawn(plumb_source::server::serve_artifacts(
        listener,
        storage.join("artifacts"),
        std::future::pending(),
    ));
    let kc = kube::config::Kubeconfig::read_from(&info.kubeconfig).unwrap();
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    let ctx = plumb_controller::Context::new(
        kube::Client::try_from(cfg.clone()).unwrap(),
        cfg,
        plumb_controller::Config {
            storage_path: storage.clone(),
            storage_adv_addr: addr.to_string(),
            ..Default::default()
        },
    );
    let scope = plumb_controller::Scope {
        namespace: Some(n.to_string()),
        label_selector: None,
    };
    let controllers = tokio::spawn(plumb_controller::run(ctx.clone(), scope, 2));
    (ctx, controllers)
}

/// Waits (60 s at most) until object `name` of `api` has condition Ready=True.
pub(crate) async fn wait_ready<K>(api: &Api<K>, name: &str)
where
    K: kube::Resource
        + Clone
        + k8s_openapi::serde::de::DeserializeOwned
        + k8s_openapi::serde::Serialize
        + std::fmt::Debug,
{
    wait::poll(
        &format!("{name} ready"),
        Duration::from_secs(60),
        || async {
            let v = serde_json::to_value(api.get(name).await.ok()?).ok()?;
            let ready = v["status"]["conditions"]
                .as_array()?
                .iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True");
            ready.then_some(())
        },
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn build_and_diff_a_kustomization() {
    let info = ControlPlane::shared().unwrap();
    let client = info.admin_client().await.unwrap();
    install_crds(&client).await;
    let ns = TestNamespace::create(info, "ks-cli").await.unwrap();
    let n = ns.name().to_string();

    let tmp = tempfile::tempdir().unwrap();
    let (ctx, controllers) = start_controllers(info, &n, tmp.path()).await;
    let _server = git_source(
        &client,
        &n,
        tmp.path(),
        "fleet",
        &[
            ("deploy/kustomization.yaml", "resources:\n- cm.yaml\n- secret.yaml\n"),
            ("deploy/cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  v: ${v:=unset}\n"),
            ("deploy/secret.yaml", "apiVersion: v1\nkind: Secret\nmetadata:\n  name: creds\ndata:\n  password: aHVudGVyMg==\n"),
        ],
    )
    .await;
    let ks: Kustomization = serde_json::from_value(json!({
        "apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
        "metadata": {"name": "app", "namespace": n},
        "spec": {"interval": "1h", "path": "./deploy", "prune": true, "targetNamespace": n,
                 "sourceRef": {"kind": "GitRepository", "name": "fleet"},
                 "postBuild": {"substitute": {"v": "one"}}}
    }))
    .unwrap();
    let ks_api: Api<Kustomization> = Api::namespaced(client.clone(), &n);
    ks_api.create(&PostParams::default(), &ks).await.unwrap();
    wait_ready(&ks_api, "app").await;
    // Stop the controllers so the edits below stay (drift would be reverted at once).
    controllers.abort();
    drop(ctx);

    let kcfg = info.kubeconfig.clone();
    // build: what the controller applies (overlay, substitution, ownership labels).
    let out = plumb(&kcfg, &["build", "ks", "app", "-n", &n]).await;
    assert!(out.status.success(), "{}", text(&out));
    let yaml = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(yaml.contains("v: one"), "{yaml}");
    assert!(yaml.contains(&format!("namespace: {n}")), "{yaml}");
    assert!(
        yaml.contains("kustomize.toolkit.fluxcd.io/name: app"),
        "{yaml}"
    );

    // diff with nothing changed: exit 0, no output.
    let out = plumb(&kcfg, &["diff", "ks", "app", "-n", &n]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(out.stdout.is_empty(), "{}", text(&out));

    // Someone edits the ConfigMap and the Secret, and deletes nothing: diff shows both,
    // masks the Secret, exits 1.
    let pp = PatchParams::default();
    Api::<ConfigMap>::namespaced(client.clone(), &n)
        .patch(
            "settings",
            &pp,
            &Patch::Merge(&json!({"data": {"v": "two"}})),
        )
        .await
        .unwrap();
    Api::<Secret>::namespaced(client.clone(), &n)
        .patch(
            "creds",
            &pp,
            &Patch::Merge(&json!({"data": {"password": "c3dvcmRmaXNo"}})),
        )
        .await
        .unwrap();
    let out = plumb(&kcfg, &["diff", "ks", "app", "-n", &n]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let d = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        d.contains(&format!("► ConfigMap/{n}/settings drifted")),
        "{d}"
    );
    assert!(d.contains("-  v: two") && d.contains("+  v: one"), "{d}");
    assert!(d.contains(&format!("► Secret/{n}/creds drifted")), "{d}");
    assert!(
        !d.contains("aHVudGVyMg") && !d.contains("c3dvcmRmaXNo"),
        "secret values masked: {d}"
    );
    // `plumb ui`'s diff view shows the same text.
    let ui = crate::ui_cli::ui_diff(&kcfg, &n, "app").await;
    assert_eq!(ui["changed"], true, "{ui}");
    assert_eq!(ui["text"].as_str(), Some(d.as_str()), "{ui}");

    // --path builds a local directory with the same overlay and substitution, and diff
    // reports what prune would delete and what would be created.
    let local = tmp.path().join("local");
    std::fs::create_dir_all(&local).unwrap();
    std::fs::write(
        local.join("other.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: other\ndata:\n  v: ${v}\n",
    )
    .unwrap();
    let path = local.to_string_lossy().to_string();
    let out = plumb(&kcfg, &["build", "ks", "app", "-n", &n, "--path", &path]).await;
    assert!(out.status.success(), "{}", text(&out));
    let yaml = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        yaml.contains("name: other") && yaml.contains("v: one"),
        "{yaml}"
    );
    let out = plumb(&kcfg, &["diff", "ks", "app", "-n", &n, "--path", &path]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let d = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(d.contains(&format!("► ConfigMap/{n}/other created")), "{d}");
    assert!(
        d.contains(&format!("► ConfigMap/{n}/settings deleted")),
        "{d}"
    );

    // A Kustomization that does not exist is an error naming it.
    let out = plumb(&kcfg, &["diff", "ks", "nope", "-n", &n]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("nope"), "{}", text(&out));

    // The controllers are gone: drop their finalizers so the namespace can go.
    let unfinalize = json!({"metadata": {"finalizers": null}});
    ks_api
        .patch("app", &pp, &Patch::Merge(&unfinalize))
        .await
        .unwrap();
    Api::<GitRepository>::namespaced(client.clone(), &n)
        .patch("fleet", &pp, &Patch::Merge(&unfinalize))
        .await
        .unwrap();
    ns.delete().await.unwrap();
}

/// `plumb build ks` / `plumb diff ks` decrypt SOPS files with `--decryption-key` and the
/// `spec.decryption` Secret, and print no decrypted Secret value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn build_and_diff_decrypt_sops_and_mask_secrets() {
    let data =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("crates/plumb-sops/tests/data");
    let info = ControlPlane::shared().unwrap();
    let client = info.admin_client().await.unwrap();
    install_crds(&client).await;
    let ns = TestNamespace::create(info, "ks-cli-sops").await.unwrap();
    let n = ns.name().to_string();
    let tmp = tempfile::tempdir().unwrap();
    let local = tmp.path().join("local");
    std::fs::create_dir_all(&local).unwrap();
    for f in ["age.yaml", "pgp.yaml"] {
        std::fs::copy(data.join("algorithms").join(f), local.join(f)).unwrap();
    }
    // The PGP key comes from spec.decryption's Secret, the age key from the flag.
    let pgp = std::fs::read_to_string(data.join("keys/pgp.asc")).unwrap();
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "sops-keys", "namespace": n}, "stringData": {"pgp.asc": pgp}
    }))
    .unwrap();
    Api::<Secret>::namespaced(client.clone(), &n)
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    let ks: Kustomization = serde_json::from_value(json!({
        "apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
        "metadata": {"name": "app", "namespace": n},
        "spec": {"interval": "1h", "prune": true, "targetNamespace": n,
                 "sourceRef": {"kind": "GitRepository", "name": "fleet"},
                 "decryption": {"provider": "sops", "secretRef": {"name": "sops-keys"}}}
    }))
    .unwrap();
    Api::<Kustomization>::namespaced(client.clone(), &n)
        .create(&PostParams::default(), &ks)
        .await
        .unwrap();
    let kcfg = info.kubeconfig.clone();
    let path = local.to_string_lossy().to_string();
    let age = data.join("keys/age.txt").to_string_lossy().to_string();

    // Without the age key, age.yaml cannot be opened: a clear error naming the file.
    let out = plumb(&kcfg, &["build", "ks", "app", "-n", &n, "--path", &path]).await;
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("age.yaml"), "{}", text(&out));

    let args = [
        "ks",
        "app",
        "-n",
        &n,
        "--path",
        &path,
        "--decryption-key",
        &age,
    ];
    let out = plumb(&kcfg, &[&["build"][..], &args[..]].concat()).await;
    assert!(out.status.success(), "{}", text(&out));
    let yaml = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        yaml.contains("name: age") && yaml.contains("name: pgp"),
        "{yaml}"
    );
    assert!(!yaml.contains("ENC[") && !yaml.contains("sops:"), "{yaml}");
    assert!(
        yaml.contains("key: '***'") || yaml.contains("key: \"***\""),
        "{yaml}"
    );
    assert!(
        !yaml.contains("key: value"),
        "decrypted value printed: {yaml}"
    );

    let out = plumb(&kcfg, &[&["diff"][..], &args[..]].concat()).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let d = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(d.contains(&format!("► Secret/{n}/age created")), "{d}");
    assert!(
        !d.contains("key: value") && !d.contains("dmFsdWU"),
        "decrypted value printed: {d}"
    );
    ns.delete().await.unwrap();
}
