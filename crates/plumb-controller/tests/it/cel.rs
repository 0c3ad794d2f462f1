//! CEL against the real API server: Kustomization `healthCheckExprs` judging a custom
//! resource kstatus would call healthy at once, `dependsOn[].readyExpr` gating a dependant
//! whose dependency is Ready, and a Receiver `resourceFilter` choosing which objects a
//! webhook call reconciles. Bad expressions stall with `InvalidCELExpression`.

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::discovery::ApiResource;
use plumb_api::{GitRepository, HelmRelease, Kustomization, Receiver};
use plumb_controller::receiver;
use plumb_ssa::{Applier, ApplyItem, ApplyOptions};
use plumb_testing::{ControlPlane, TestNamespace};
use serde_json::{Value, json};

use crate::common::world::{World, within};
use crate::common::{condition, install_crds, ready, start_plumb, wait_obj};
use crate::helmrelease::{hr, setup};
use crate::receiver::{post, start_receiver};

/// A small custom resource with a status subresource and no conditions: kstatus calls it
/// Current as soon as it exists.
async fn install_widget_crd(client: &kube::Client) {
    let crd = json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.cel.plumb.dev"},
        "spec": {
            "group": "cel.plumb.dev", "scope": "Namespaced",
            "names": {"kind": "Widget", "plural": "widgets", "singular": "widget", "listKind": "WidgetList"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]
        }
    });
    Applier::new(client.clone(), "plumb-test", 2)
        .apply_all(vec![ApplyItem::new(crd)], &ApplyOptions::default())
        .await
        .unwrap();
}

fn widgets(client: &kube::Client, ns: &str) -> Api<DynamicObject> {
    let ar = ApiResource {
        group: "cel.plumb.dev".into(),
        version: "v1".into(),
        api_version: "cel.plumb.dev/v1".into(),
        kind: "Widget".into(),
        plural: "widgets".into(),
    };
    Api::namespaced_with(client.clone(), ns, &ar)
}

async fn set_phase(api: &Api<DynamicObject>, name: &str, phase: &str) {
    let patch = json!({"status": {"phase": phase}});
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn health_check_exprs_judge_a_custom_resource() {
    let widget =
        "apiVersion: cel.plumb.dev/v1\nkind: Widget\nmetadata:\n  name: w1\nspec:\n  size: 1\n";
    let w = World::new(
        "cel-health",
        &[
            ("deploy/kustomization.yaml", "resources:\n- widget.yaml\n"),
            ("deploy/widget.yaml", widget),
        ],
    )
    .await;
    install_widget_crd(&w.client).await;
    let exprs = json!([{"apiVersion": "cel.plumb.dev/v1", "kind": "Widget",
        "current": "status.phase == 'Ready'", "failed": "status.phase == 'Failed'"}]);
    w.create_ks(
        "app",
        json!({"path": "./deploy", "wait": true, "timeout": "5m", "healthCheckExprs": exprs}),
    )
    .await;
    // Applied, but the Widget has no status yet: the expressions cannot say Current, so the
    // Kustomization waits (kstatus alone would be Ready now).
    let v = wait_obj(&w.ks_api(), "app", "health in progress", |v| {
        condition(v.get("status"), "Healthy")
            .is_some_and(|h| h.0 == "Unknown" && h.2.contains("Widget"))
    })
    .await;
    assert_ne!(ready(v.get("status")).unwrap().0, "True", "{v:#}");
    let api = widgets(&w.client, &w.n);
    set_phase(&api, "w1", "Provisioning").await;
    tokio::time::sleep(Duration::from_secs(3)).await; // a few health re-reads (every 2 s)
    let v = serde_json::to_value(w.ks_api().get("app").await.unwrap()).unwrap();
    assert_ne!(ready(v.get("status")).unwrap().0, "True", "{v:#}");
    // The status field flips: Ready.
    set_phase(&api, "w1", "Ready").await;
    let v = w.wait_ready("app").await;
    let healthy = condition(v.get("status"), "Healthy").unwrap();
    assert_eq!(healthy.0, "True", "{v:#}");
    // The `failed` expression: a health check failure at once, not at the timeout.
    set_phase(&api, "w1", "Failed").await;
    crate::common::request_reconcile(&w.ks_api(), "app").await;
    let r = w
        .wait_condition("app", "health check failed", |r| {
            r.0 == "False" && r.1 == "HealthCheckFailed"
        })
        .await;
    assert!(r.2.contains("Widget") && r.2.contains("failed"), "{r:?}");
    // A bad expression stalls the Kustomization with Flux's reason.
    w.patch_ks(
        "app",
        json!({"spec": {"healthCheckExprs": [{"apiVersion": "cel.plumb.dev/v1", "kind": "Widget", "current": "status.phase =="}]}}),
    )
    .await;
    let v = wait_obj(&w.ks_api(), "app", "stalled on a bad expression", |v| {
        ready(v.get("status")).is_some_and(|r| r.1 == "InvalidCELExpression")
    })
    .await;
    let stalled = condition(v.get("status"), "Stalled").unwrap();
    assert_eq!(stalled.0, "True", "{v:#}");
    assert!(stalled.2.contains("status.phase =="), "{stalled:?}");
    w.finish().await;
}

/// Creates Kustomization `name` with annotations and a spec over World's defaults.
async fn create_ks(w: &World, name: &str, annotations: Value, spec: Value) {
    let mut s = json!({"interval": "1h", "prune": true, "targetNamespace": w.n,
                       "sourceRef": {"kind": "GitRepository", "name": "fleet"}});
    for (k, v) in spec.as_object().unwrap() {
        s[k] = v.clone();
    }
    let ks: Kustomization = serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": w.n, "annotations": annotations}, "spec": s
    }))
    .unwrap();
    w.ks_api()
        .create(&PostParams::default(), &ks)
        .await
        .unwrap();
}

fn cm(name: &str) -> String {
    format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  a: \"1\"\n")
}

#[tokio::test(flavor = "multi_thread")]
async fn ready_expr_gates_a_dependent() {
    let w = World::new(
        "cel-dep",
        &[
            ("base/kustomization.yaml", "resources:\n- cm.yaml\n"),
            ("base/cm.yaml", &cm("base")),
            ("app/kustomization.yaml", "resources:\n- cm.yaml\n"),
            ("app/cm.yaml", &cm("app")),
        ],
    )
    .await;
    create_ks(
        &w,
        "base",
        json!({"stage": "one"}),
        json!({"path": "./base"}),
    )
    .await;
    w.wait_ready("base").await;
    let expr = "dep.metadata.annotations['stage'] == self.metadata.annotations['stage']";
    create_ks(
        &w,
        "app",
        json!({"stage": "two"}),
        json!({"path": "./app", "dependsOn": [{"name": "base", "readyExpr": expr}]}),
    )
    .await;
    // base is Ready, but readyExpr replaces that check and is false.
    let r = w
        .wait_condition("app", "dependency not ready by readyExpr", |r| {
            r.1 == "DependencyNotReady" && r.2.contains("readyExpr")
        })
        .await;
    assert_eq!(r.0, "False", "{r:?}");
    assert!(w.cms().get_opt("app").await.unwrap().is_none(), "gated");
    // The dependency moves to the stage the dependant waits for: it reconciles.
    w.patch_ks(
        "base",
        json!({"metadata": {"annotations": {"stage": "two"}}}),
    )
    .await;
    w.wait_ready("app").await;
    assert!(w.cms().get_opt("app").await.unwrap().is_some());
    // A bad readyExpr stalls its dependant before anything is read.
    create_ks(
        &w,
        "bad",
        json!({}),
        json!({"path": "./app", "dependsOn": [{"name": "base", "readyExpr": "deps.x == 1"}]}),
    )
    .await;
    let v = wait_obj(&w.ks_api(), "bad", "stalled on a bad readyExpr", |v| {
        ready(v.get("status")).is_some_and(|r| r.1 == "InvalidCELExpression")
    })
    .await;
    let stalled = condition(v.get("status"), "Stalled").unwrap();
    assert_eq!(stalled.0, "True", "{v:#}");
    assert!(
        stalled.2.contains("undeclared reference to 'deps'"),
        "{stalled:?}"
    );
    w.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn receiver_resource_filter_triggers_only_matching() {
    let info = ControlPlane::shared().unwrap();
    let client = info.admin_client().await.unwrap();
    install_crds(&client).await;
    let ns = TestNamespace::create(info, "cel-rcv").await.unwrap();
    let n = ns.name().to_string();
    let pp = PostParams::default();
    let tmp = tempfile::tempdir().unwrap();
    let ctx = start_plumb(info, &n, &tmp.path().join("storage")).await;
    let hook = start_receiver(&ctx, receiver::ServerOptions::new(Some(n.clone()))).await;
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "token", "namespace": n}, "stringData": {"token": "t0k3n"}
    }))
    .unwrap();
    Api::<Secret>::namespaced(client.clone(), &n)
        .create(&pp, &secret)
        .await
        .unwrap();
    let git: Api<GitRepository> = Api::namespaced(client.clone(), &n);
    for name in ["app-1", "app-2", "other"] {
        let repo = serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": n, "labels": {"team": "a"}},
            "spec": {"url": "http://127.0.0.1:9/none.git", "interval": "1h", "suspend": true}
        }))
        .unwrap();
        git.create(&pp, &repo).await.unwrap();
    }
    let rcv_api: Api<Receiver> = Api::namespaced(client.clone(), &n);
    let rcv = |name: &str, filter: &str| {
        serde_json::from_value::<Receiver>(json!({
            "metadata": {"name": name, "namespace": n},
            "spec": {"type": "generic", "secretRef": {"name": "token"},
                "resources": [{"kind": "GitRepository", "name": "*", "matchLabels": {"team": "a"}}],
                "resourceFilter": filter}
        }))
        .unwrap()
    };
    rcv_api
        .create(
            &pp,
            &rcv("hook", "res.metadata.name.startsWith(req.prefix)"),
        )
        .await
        .unwrap();
    let v = wait_obj(&rcv_api, "hook", "receiver ready", |v| {
        ready(v.get("status")).is_some_and(|r| r.0 == "True")
    })
    .await;
    let path = v["status"]["webhookPath"].as_str().unwrap().to_string();
    let (code, body) = within("webhook served", 30, || async {
        let r = post(hook, &path, &[], r#"{"prefix": "app-"}"#).await;
        (r.0 != 404 && r.0 != 503).then_some(r)
    })
    .await;
    assert_eq!((code, body.trim()), (200, "2 reconcile(s) requested"));
    let requested = |name: &'static str| {
        let git = git.clone();
        async move {
            let g = git.get(name).await.unwrap();
            g.metadata
                .annotations
                .unwrap_or_default()
                .contains_key("reconcile.fluxcd.io/requestedAt")
        }
    };
    assert!(requested("app-1").await && requested("app-2").await);
    assert!(!requested("other").await, "filtered out by resourceFilter");
    // A filter that does not compile: the Receiver stalls and serves no path.
    rcv_api
        .create(&pp, &rcv("bad", "res.metadata.name =="))
        .await
        .unwrap();
    let v = wait_obj(&rcv_api, "bad", "receiver stalled", |v| {
        ready(v.get("status")).is_some_and(|r| r.1 == "InvalidCELExpression")
    })
    .await;
    assert_eq!(
        condition(v.get("status"), "Stalled").unwrap().0,
        "True",
        "{v:#}"
    );
    assert!(v["status"].get("webhookPath").is_none(), "{v:#}");
    ns.delete().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn helmrelease_health_check_exprs_gate_the_install() {
    let info = ControlPlane::shared().unwrap();
    let (env, ns) = setup(info, "cel-hr").await;
    install_widget_crd(&env.client).await;
    let api: Api<HelmRelease> = Api::namespaced(env.client.clone(), &env.ns);
    let mut rel = hr(
        &env.ns,
        "wid",
        json!({}),
        json!({"timeout": "90s", "healthCheckExprs": [{"apiVersion": "cel.plumb.dev/v1",
            "kind": "Widget", "current": "status.phase == 'Ready'"}]}),
    );
    rel.spec.chart.as_mut().unwrap().spec.chart = "./charts/widget".into();
    api.create(&PostParams::default(), &rel).await.unwrap();
    let widgets = widgets(&env.client, &env.ns);
    within("widget installed", 60, || async {
        widgets.get_opt("wid-w").await.ok().flatten()
    })
    .await;
    // kstatus alone calls the Widget Current at once; the expression keeps the install
    // waiting until its status says Ready.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let v = serde_json::to_value(api.get("wid").await.unwrap()).unwrap();
    assert_ne!(
        ready(v.get("status")).map(|r| r.0),
        Some("True".to_string()),
        "{v:#}"
    );
    set_phase(&widgets, "wid-w", "Ready").await;
    wait_obj(&api, "wid", "release ready", |v| {
        ready(v.get("status")).is_some_and(|r| r.0 == "True")
    })
    .await;
    ns.delete().await.unwrap();
}
