//! HelmRelease strategies of Flux 2.9 (Helm 4) against the real API server:
//! `postRenderStrategy` (hooks post-rendered with the templates by default, not under
//! `nohooks`), `waitStrategy: legacy` (Helm 3's readiness rules: a Deployment is ready when
//! its new ReplicaSet has enough ready pods) and client-side apply (`serverSideApply: false`: create, then
//! three-way merge patches that keep other managers' fields and delete dropped ones).
//! The test control plane runs the workload controllers but no kubelet: the tests mark
//! pods Ready as a kubelet would.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use plumb_api::HelmRelease;
use plumb_helm::storage::{self, Release};
use plumb_testing::ControlPlane;
use serde_json::{Value, json};

use crate::common::world::within;
use crate::common::{ready, wait_obj};
use crate::helmrelease::{hr, setup_with};
use crate::helmrelease_actions::is_ready;

const STRAT: &[(&str, &str)] = &[
    (
        "charts/strat/Chart.yaml",
        "apiVersion: v2\nname: strat\nversion: 0.1.0\n",
    ),
    (
        "charts/strat/values.yaml",
        "msg: one\ndropped: false\ndeploy: false\nreplicas: 2\n",
    ),
    (
        "charts/strat/templates/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-cm\ndata:\n  msg: {{ .Values.msg | quote }}\n{{- if .Values.dropped }}\n  dropped: \"yes\"\n{{- end }}\n",
    ),
    (
        "charts/strat/templates/hook.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-hook\n  annotations:\n    helm.sh/hook: pre-install,pre-upgrade\ndata:\n  rev: {{ .Release.Revision | quote }}\n",
    ),
    (
        "charts/strat/templates/deploy.yaml",
        "{{- if .Values.deploy }}\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {{ .Release.Name }}-deploy\nspec:\n  replicas: {{ .Values.replicas }}\n  selector:\n    matchLabels:\n      app: {{ .Release.Name }}\n  template:\n    metadata:\n      labels:\n        app: {{ .Release.Name }}\n    spec:\n      containers:\n      - name: app\n        image: {{ .Values.image | default \"busybox:1\" }}\n        env:\n        - name: A\n          value: \"1\"\n{{- if .Values.dropped }}\n        - name: B\n          value: \"2\"\n{{- end }}\n{{- end }}\n",
    ),
];

/// A HelmRelease of `./charts/strat` with `extra` spec fields.
fn shr(ns: &str, name: &str, values: Value, mut extra: Value) -> HelmRelease {
    extra["chart"] = json!({"spec": {"chart": "./charts/strat",
        "sourceRef": {"kind": "GitRepository", "name": "charts"}}});
    hr(ns, name, values, extra)
}

/// The stored release `name` at `version`.
async fn release(client: &kube::Client, ns: &str, name: &str, version: i64) -> Release {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let s = secrets
        .get(&format!("sh.helm.release.v1.{name}.v{version}"))
        .await
        .unwrap();
    storage::decode(&s.data.unwrap()["release"].0).unwrap()
}

fn label(cm: &ConfigMap, key: &str) -> Option<String> {
    cm.metadata.labels.as_ref()?.get(key).cloned()
}

#[tokio::test]
async fn post_render_strategy_combined_reaches_hooks_nohooks_does_not() {
    let info = ControlPlane::shared().unwrap();
    let (env, _ns) = setup_with(info, "hr-postrender", STRAT).await;
    let n = env.ns.clone();
    let api: Api<HelmRelease> = Api::namespaced(env.client.clone(), &n);
    let cms: Api<ConfigMap> = Api::namespaced(env.client.clone(), &n);
    let renderers = json!([{"kustomize": {"patches": [{
        "patch": "- op: add\n  path: /metadata/labels\n  value: {patched: \"yes\"}\n",
        "target": {"kind": "ConfigMap"}}]}}]);
    // The default strategy (combined) and an explicit nohooks.
    let cases = [
        ("comb", json!({"postRenderers": renderers})),
        (
            "nohk",
            json!({"postRenderers": renderers, "postRenderStrategy": "nohooks"}),
        ),
    ];
    for (name, extra) in &cases {
        api.create(
            &PostParams::default(),
            &shr(&n, name, json!({}), extra.clone()),
        )
        .await
        .unwrap();
    }
    for (name, _) in &cases {
        wait_obj(&api, name, "installed", is_ready).await;
    }
    for (name, hook_patched) in [("comb", true), ("nohk", false)] {
        let cm = cms.get(&format!("{name}-cm")).await.unwrap();
        assert_eq!(label(&cm, "patched").as_deref(), Some("yes"), "{name}");
        // The hook ran at pre-install (it exists) and carries the patch only under combined.
        let hook = cms.get(&format!("{name}-hook")).await.unwrap();
        assert_eq!(label(&hook, "patched").is_some(), hook_patched, "{name}");
        // Still a hook after post-rendering: recorded with its event, not in the manifest.
        let rel = release(&env.client, &n, name, 1).await;
        assert_eq!(rel.hooks.len(), 1, "{name}");
        assert_eq!(rel.hooks[0].events, vec!["pre-install", "pre-upgrade"]);
        assert_eq!(rel.hooks[0].path, "strat/templates/hook.yaml", "{name}");
        assert_eq!(rel.hooks[0].last_run.phase, "Succeeded", "{name}");
        assert_eq!(rel.hooks[0].manifest.contains("patched"), hook_patched);
        assert!(!rel.manifest.contains(&format!("{name}-hook")), "{name}");
    }
}

#[tokio::test]
async fn legacy_wait_strategy_uses_helm3_deployment_readiness() {
    let info = ControlPlane::shared().unwrap();
    let (env, _ns) = setup_with(info, "hr-legacy", STRAT).await;
    let n = env.ns.clone();
    let api: Api<HelmRelease> = Api::namespaced(env.client.clone(), &n);
    let deps: Api<Deployment> = Api::namespaced(env.client.clone(), &n);
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), &n);
    // 4 replicas, maxUnavailable 25%: Helm 3 waits for 3 ready pods, kstatus for 4.
    let values = json!({"deploy": true, "replicas": 4});
    let legacy = json!({"timeout": "90s", "waitStrategy": {"name": "legacy"}});
    api.create(
        &PostParams::default(),
        &shr(&n, "leg", values.clone(), legacy),
    )
    .await
    .unwrap();
    // The same Deployment under the default poller (kstatus).
    let poller = json!({"timeout": "30s"});
    api.create(&PostParams::default(), &shr(&n, "pol", values, poller))
        .await
        .unwrap();

    // The ReplicaSet controllers made the pods; no kubelet runs them.
    for app in ["leg", "pol"] {
        let pending = within("pods created", 60, || {
            let pods = pods.clone();
            async move {
                let list = pods
                    .list(&ListParams::default().labels(&format!("app={app}")))
                    .await
                    .ok()?;
                (list.items.len() == 4).then_some(list.items)
            }
        })
        .await;
        if app == "leg" {
            let v = serde_json::to_value(api.get("leg").await.unwrap()).unwrap();
            assert!(!is_ready(&v), "ready without ready pods: {v:#}");
        }
        // Play the kubelet for three of the four pods.
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        for p in pending.iter().take(3) {
            let status = json!({"status": {"phase": "Running", "conditions": [
                {"type": "Ready", "status": "True", "lastTransitionTime": now}]}});
            pods.patch_status(
                p.metadata.name.as_deref().unwrap(),
                &PatchParams::default(),
                &Patch::Merge(&status),
            )
            .await
            .unwrap();
        }
    }
    let v = wait_obj(&api, "leg", "legacy wait satisfied", is_ready).await;
    assert_eq!(ready(v.get("status")).unwrap().1, "InstallSucceeded");
    let v = wait_obj(&api, "pol", "poller wait timed out", |v| {
        ready(v.get("status")).is_some_and(|r| r.1 == "InstallFailed")
    })
    .await;
    let r = ready(v.get("status")).unwrap();
    assert!(r.2.contains("pol-deploy"), "{r:?}");
    // It failed with the three ready pods that satisfied Helm 3's rules.
    let dep = deps.get_opt("pol-deploy").await.unwrap();
    if let Some(status) = dep.and_then(|d| d.status) {
        assert_eq!(status.ready_replicas, Some(3), "{status:?}");
    }
}

#[tokio::test]
async fn client_side_upgrade_keeps_foreign_fields_and_deletes_dropped_ones() {
    let info = ControlPlane::shared().unwrap();
    let (env, _ns) = setup_with(info, "hr-csa", STRAT).await;
    let n = env.ns.clone();
    let api: Api<HelmRelease> = Api::namespaced(env.client.clone(), &n);
    let cms: Api<ConfigMap> = Api::namespaced(env.client.clone(), &n);
    let deps: Api<Deployment> = Api::namespaced(env.client.clone(), &n);
    // Installed client-side; upgrades follow (`auto`). No wait: no kubelet runs here.
    let extra = json!({"install": {"serverSideApply": false, "disableWait": true},
        "upgrade": {"disableWait": true}});
    let values = json!({"msg": "one", "dropped": true, "deploy": true});
    api.create(&PostParams::default(), &shr(&n, "csa", values, extra))
        .await
        .unwrap();
    wait_obj(&api, "csa", "installed", is_ready).await;
    let managers =
        |mf: Option<Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry>>| {
            mf.unwrap_or_default()
                .into_iter()
                .map(|m| {
                    (
                        m.manager.unwrap_or_default(),
                        m.operation.unwrap_or_default(),
                    )
                })
                .collect::<Vec<_>>()
        };
    let cm = cms.get("csa-cm").await.unwrap();
    assert_eq!(
        managers(cm.metadata.managed_fields.clone()),
        vec![("helm-controller".to_string(), "Update".to_string())],
        "created client-side"
    );
    assert_eq!(release(&env.client, &n, "csa", 1).await.apply_method, "csa");

    // Another manager adds a key to the ConfigMap and a sidecar to the Deployment.
    let someone = PatchParams {
        field_manager: Some("someone".into()),
        ..PatchParams::default()
    };
    cms.patch(
        "csa-cm",
        &someone,
        &Patch::Merge(&json!({"data": {"foreign": "x"}})),
    )
    .await
    .unwrap();
    let sidecar = json!({"spec": {"template": {"spec": {"containers": [
        {"name": "sidecar", "image": "side:1"}]}}}});
    deps.patch("csa-deploy", &someone, &Patch::Strategic(&sidecar))
        .await
        .unwrap();

    // The chart drops `dropped` and env B and changes the image.
    api.patch(
        "csa",
        &PatchParams::default(),
        &Patch::Merge(&json!({"spec": {"values":
            {"msg": "two", "dropped": false, "image": "busybox:2"}}})),
    )
    .await
    .unwrap();
    wait_obj(&api, "csa", "upgraded", |v| {
        is_ready(v) && v["status"]["history"][0]["version"] == 2
    })
    .await;
    let data = cms.get("csa-cm").await.unwrap().data.unwrap();
    assert_eq!(data.get("msg").map(String::as_str), Some("two"));
    assert_eq!(data.get("foreign").map(String::as_str), Some("x"), "kept");
    assert!(!data.contains_key("dropped"), "deleted: {data:?}");
    let dep = serde_json::to_value(deps.get("csa-deploy").await.unwrap()).unwrap();
    let containers = dep["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap();
    let by_name = |n: &str| containers.iter().find(|c| c["name"] == n).cloned();
    let app = by_name("app").unwrap();
    assert_eq!(app["image"], "busybox:2");
    assert_eq!(
        app["env"],
        json!([{"name": "A", "value": "1"}]),
        "env B deleted"
    );
    assert_eq!(
        by_name("sidecar").unwrap()["image"],
        "side:1",
        "sidecar kept"
    );
    assert_eq!(release(&env.client, &n, "csa", 2).await.apply_method, "csa");
}
