//! The operations CLI (`plumb get|reconcile|suspend|resume|tree|events|version`) against the
//! real API server. A small responder task plays the controller: it handles reconcile requests
//! by writing `lastHandledReconcileAt` and Ready through the status subresource.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Event;
use kube::api::{Api, Patch, PatchParams, PostParams};
use plumb_api::{GitRepository, Kustomization};
use plumb_ssa::{Applier, ApplyItem, ApplyOptions};
use plumb_testing::{ControlPlane, ControlPlaneInfo, TestNamespace};
use serde_json::{Value, json};

pub(crate) async fn install_crds(client: &kube::Client) {
    let items = plumb_api::crds()
        .into_iter()
        .map(|c| ApplyItem::new(serde_json::to_value(c).unwrap()))
        .collect();
    Applier::new(client.clone(), "plumb-test", 4)
        .apply_all(items, &ApplyOptions::default())
        .await
        .unwrap();
}

struct Out {
    ok: bool,
    stdout: String,
    stderr: String,
}

async fn plumb(info: &ControlPlaneInfo, args: &[&str]) -> Out {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_plumb"))
        .args(args)
        .env("KUBECONFIG", &info.kubeconfig)
        .output()
        .await
        .unwrap();
    Out {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn ready(status: &str, message: &str) -> Value {
    json!({"type": "Ready", "status": status, "reason": if status == "True" {"Succeeded"} else {"Failed"},
           "message": message, "lastTransitionTime": "2024-01-01T00:00:00Z"})
}

/// Plays the controller for Kustomization `app` and GitRepository `src`: each new
/// `requestedAt` is handled; Ready is False while `app` carries the `test/fail` annotation.
async fn respond(client: kube::Client, ns: String) {
    let ks: Api<Kustomization> = Api::namespaced(client.clone(), &ns);
    let git: Api<GitRepository> = Api::namespaced(client, &ns);
    loop {
        for (v, is_ks) in [
            (
                ks.get("app")
                    .await
                    .ok()
                    .map(|o| serde_json::to_value(o).unwrap()),
                true,
            ),
            (
                git.get("src")
                    .await
                    .ok()
                    .map(|o| serde_json::to_value(o).unwrap()),
                false,
            ),
        ] {
            let Some(v) = v else { continue };
            let Some(req) =
                v["metadata"]["annotations"]["reconcile.fluxcd.io/requestedAt"].as_str()
            else {
                continue;
            };
            if v["status"]["lastHandledReconcileAt"].as_str() == Some(req) {
                continue;
            }
            let fail = v["metadata"]["annotations"]["test/fail"].is_string();
            let cond = if fail {
                ready("False", "kustomize build failed: boom")
            } else {
                ready("True", "Applied revision: main@sha1:abc")
            };
            let patch = json!({"status": {"lastHandledReconcileAt": req,
                "observedGeneration": v["metadata"]["generation"], "conditions": [cond]}});
            let pp = PatchParams::default();
            if is_ks {
                ks.patch_status("app", &pp, &Patch::Merge(&patch))
                    .await
                    .unwrap();
            } else {
                git.patch_status("src", &pp, &Patch::Merge(&patch))
                    .await
                    .unwrap();
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn operations_cli_against_the_api_server() {
    let info = ControlPlane::shared().unwrap();
    let client = info.admin_client().await.unwrap();
    install_crds(&client).await;
    let ns = TestNamespace::create(info, "ops").await.unwrap();
    let n = ns.name().to_string();
    let pp = PostParams::default();

    let git: Api<GitRepository> = Api::namespaced(client.clone(), &n);
    git.create(
        &pp,
        &serde_json::from_value(json!({
            "metadata": {"name": "src", "namespace": n},
            "spec": {"url": "http://127.0.0.1:1/fleet", "interval": "1h"}
        }))
        .unwrap(),
    )
    .await
    .unwrap();
    git.patch_status(
        "src",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {
            "artifact": {"path": "p", "url": "http://x/p", "revision": "main@sha1:abc",
                         "digest": "sha256:00", "lastUpdateTime": "2024-01-01T00:00:00Z"},
            "conditions": [ready("True", "stored artifact for revision 'main@sha1:abc'")]}})),
    )
    .await
    .unwrap();
    let ks: Api<Kustomization> = Api::namespaced(client.clone(), &n);
    for (name, entries) in [
        (
            "app",
            json!([{"id": format!("{n}_child_kustomize.toolkit.fluxcd.io_Kustomization"), "v": "v1"},
                   {"id": format!("{n}_cfg__ConfigMap"), "v": "v1"},
                   {"id": "_team_rbac.authorization.k8s.io_ClusterRole", "v": "v1"}]),
        ),
        (
            "child",
            json!([{"id": format!("{n}_web_apps_Deployment"), "v": "v1"}]),
        ),
        ("idle", json!([])),
    ] {
        ks.create(
            &pp,
            &serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": n},
                "spec": {"interval": "1h", "prune": true, "path": "./",
                         "sourceRef": {"kind": "GitRepository", "name": "src"}}
            }))
            .unwrap(),
        )
        .await
        .unwrap();
        ks.patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {
                "lastAppliedRevision": "main@sha1:abc",
                "inventory": {"entries": entries},
                "conditions": [ready("True", "Applied revision: main@sha1:abc")]}})),
        )
        .await
        .unwrap();
    }
    let responder = tokio::spawn(respond(client.clone(), n.clone()));

    // get
    let o = plumb(info, &["get", "ks", "-n", &n]).await;
    assert!(o.ok, "{}", o.stderr);
    let lines: Vec<&str> = o.stdout.lines().collect();
    assert!(lines[0].starts_with("NAME"), "{}", o.stdout);
    assert!(lines[0].contains("READY") && lines[0].contains("SUSPENDED"));
    let app = lines.iter().find(|l| l.starts_with("app")).unwrap();
    assert!(
        app.contains("True") && app.contains("main@sha1:abc"),
        "{app}"
    );
    assert!(app.contains("Applied revision"), "{app}");
    let o = plumb(info, &["get", "sources", "-A"]).await;
    assert!(o.ok, "{}", o.stderr);
    let src = o
        .stdout
        .lines()
        .find(|l| l.starts_with(&n) && l.contains("gitrepository/src"))
        .unwrap_or_else(|| panic!("{}", o.stdout));
    assert!(src.contains("main@sha1:abc"), "{src}");
    let o = plumb(info, &["get", "hr", "-n", &n]).await;
    assert!(o.ok, "{}", o.stderr);

    // tree: nested Kustomizations expanded.
    let o = plumb(info, &["tree", "ks", "app", "-n", &n]).await;
    assert!(o.ok, "{}", o.stderr);
    assert_eq!(
        o.stdout,
        format!(
            "Kustomization/{n}/app\n\
             ├── Kustomization/{n}/child\n\
             │   └── Deployment/{n}/web\n\
             ├── ConfigMap/{n}/cfg\n\
             └── ClusterRole/team\n"
        )
    );

    // reconcile with the source, success.
    let o = plumb(info, &["reconcile", "ks", "app", "-n", &n, "--with-source"]).await;
    assert!(o.ok, "stdout: {}\nstderr: {}", o.stdout, o.stderr);
    assert!(
        o.stderr.contains("annotating GitRepository"),
        "{}",
        o.stderr
    );
    assert!(o.stdout.contains("ready at main@sha1:abc"), "{}", o.stdout);
    assert!(!o.stderr.contains('\r'), "no spinner without a TTY");
    let src = git.get("src").await.unwrap();
    assert!(
        src.status
            .unwrap()
            .reconcile_request
            .last_handled_reconcile_at
            .is_some(),
        "the source was reconciled too"
    );

    // reconcile, failure: non-zero exit and the message.
    ks.patch(
        "app",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"annotations": {"test/fail": "1"}}})),
    )
    .await
    .unwrap();
    let o = plumb(info, &["reconcile", "ks", "app", "-n", &n]).await;
    assert!(!o.ok);
    assert!(
        o.stdout.contains("failed: kustomize build failed: boom"),
        "{}",
        o.stdout
    );

    // timeout: nobody handles `idle`.
    let o = plumb(
        info,
        &["reconcile", "ks", "idle", "-n", &n, "--timeout", "2s"],
    )
    .await;
    assert!(!o.ok);
    assert!(o.stdout.contains("timed out"), "{}", o.stdout);

    // suspend / resume
    let o = plumb(info, &["suspend", "ks", "app", "-n", &n]).await;
    assert!(o.ok, "{}", o.stderr);
    assert!(ks.get("app").await.unwrap().spec.suspend);
    let o = plumb(info, &["reconcile", "ks", "app", "-n", &n]).await;
    assert!(!o.ok);
    assert!(o.stderr.contains("is suspended"), "{}", o.stderr);
    let o = plumb(info, &["get", "ks", "-n", &n]).await;
    let app = o.stdout.lines().find(|l| l.starts_with("app")).unwrap();
    assert_eq!(app.split_whitespace().nth(3), Some("True"), "{app}");
    ks.patch(
        "app",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"annotations": {"test/fail": null}}})),
    )
    .await
    .unwrap();
    let o = plumb(info, &["resume", "ks", "app", "-n", &n]).await;
    assert!(o.ok, "stdout: {}\nstderr: {}", o.stdout, o.stderr);
    assert!(!ks.get("app").await.unwrap().spec.suspend);
    let o = plumb(info, &["suspend", "source", "git", "src", "-n", &n]).await;
    assert!(o.ok, "{}", o.stderr);
    assert!(git.get("src").await.unwrap().spec.suspend);
    let o = plumb(info, &["suspend", "ks", "missing", "-n", &n]).await;
    assert!(!o.ok);
    assert!(
        o.stderr.contains("Kustomization") && o.stderr.contains("missing"),
        "{}",
        o.stderr
    );

    // events: only those about Flux objects, filtered with --for.
    let events: Api<Event> = Api::namespaced(client.clone(), &n);
    for (i, (api_version, kind, name, reason)) in [
        (
            "kustomize.toolkit.fluxcd.io/v1",
            "Kustomization",
            "app",
            "ReconciliationSucceeded",
        ),
        (
            "source.toolkit.fluxcd.io/v1",
            "GitRepository",
            "src",
            "NewArtifact",
        ),
        ("v1", "Pod", "p", "Scheduled"),
    ]
    .into_iter()
    .enumerate()
    {
        let ev: Event = serde_json::from_value(json!({
            "metadata": {"name": format!("ev{i}"), "namespace": n},
            "involvedObject": {"apiVersion": api_version, "kind": kind, "name": name, "namespace": n},
            "reason": reason, "message": format!("{reason} happened"), "type": "Normal",
            "lastTimestamp": format!("2024-01-01T00:00:0{i}Z"),
        }))
        .unwrap();
        events.create(&pp, &ev).await.unwrap();
    }
    let o = plumb(info, &["events", "-n", &n]).await;
    assert!(o.ok, "{}", o.stderr);
    let lines: Vec<&str> = o.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{}", o.stdout);
    assert!(lines[1].contains("Kustomization/app") && lines[2].contains("GitRepository/src"));
    let o = plumb(info, &["events", "-n", &n, "--for", "GitRepository/src"]).await;
    assert_eq!(o.stdout.lines().count(), 2, "{}", o.stdout);
    assert!(o.stdout.contains("NewArtifact happened"));

    // version: client always; controller from the Deployment's label or image tag.
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), &n);
    let d: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "plumb", "namespace": n, "labels": {"app.kubernetes.io/name": "plumb"}},
        "spec": {"selector": {"matchLabels": {"app": "plumb"}},
                 "template": {"metadata": {"labels": {"app": "plumb"}},
                              "spec": {"containers": [{"name": "m", "image": "ghcr.io/x/plumb:9.8.7"}]}}}
    }))
    .unwrap();
    deploys.create(&pp, &d).await.unwrap();
    let o = plumb(info, &["version"]).await;
    assert!(o.ok, "{}", o.stderr);
    assert!(
        o.stdout
            .starts_with(&format!("client: plumb {}", env!("CARGO_PKG_VERSION")))
    );
    assert!(
        o.stdout
            .contains(&format!("controller: plumb 9.8.7 (deployment {n}/plumb")),
        "{}",
        o.stdout
    );

    responder.abort();
    ns.delete().await.unwrap();
}

#[tokio::test]
async fn version_without_a_cluster() {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_plumb"))
        .arg("version")
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .output()
        .await
        .unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with("client: plumb "), "{stdout}");
    assert!(stdout.contains("controller: unknown"), "{stdout}");
}
