//! HelmRelease operations end to end: the test action and its filters, drift detection,
//! dependsOn across kinds and remote kubeconfigs, values files and revision strategies,
//! force and reset requests (the real API server, plumb's controllers in-process).

use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Event, Pod, Secret};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use plumb_api::HelmRelease;
use plumb_testing::{ControlPlane, wait};
use serde_json::{Value, json};

use crate::common::{self, ready, wait_obj};
use crate::helmrelease::{history_version, hr, release_secrets, setup};

/// Plays the kubelet (the test control plane runs none): every Pending Pod of `ns`
/// gets `Succeeded`, or `Failed` while `fail` is set.
fn fake_kubelet(
    client: kube::Client,
    ns: &str,
    fail: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    let pods: Api<Pod> = Api::namespaced(client, ns);
    tokio::spawn(async move {
        loop {
            if let Ok(list) = pods.list(&ListParams::default()).await {
                for p in list.items {
                    let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
                    if phase.is_some_and(|ph| ph != "Pending") {
                        continue;
                    }
                    let phase = if fail.load(std::sync::atomic::Ordering::SeqCst) {
                        "Failed"
                    } else {
                        "Succeeded"
                    };
                    let patch = json!({"status": {"phase": phase}});
                    let _ = pods
                        .patch_status(
                            &p.metadata.name.unwrap_or_default(),
                            &PatchParams::default(),
                            &Patch::Merge(&patch),
                        )
                        .await;
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
}

fn test_hooks(v: &Value) -> Vec<(String, String)> {
    v["status"]["history"][0]["testHooks"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, h)| (k.clone(), h["phase"].as_str().unwrap_or("").to_string()))
                .collect()
        })
        .unwrap_or_default()
}

fn tested_hr(ns: &str, values: Value, test: Value) -> HelmRelease {
    let mut obj = hr(ns, "tested", values, json!({"test": test}));
    obj.spec.chart.as_mut().unwrap().spec.chart = "./charts/tested".into();
    obj
}

#[tokio::test]
async fn test_action_filters_and_ignored_failures() {
    let info = ControlPlane::shared().unwrap();
    let (env, _ns) = setup(info, "hr-test").await;
    let n = env.ns.clone();
    let fail = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let kubelet = fake_kubelet(env.client.clone(), &n, fail.clone());
    let api: Api<HelmRelease> = Api::namespaced(env.client.clone(), &n);
    let test_ok = |v: &Value, want: &str| {
        common::condition(v.get("status"), "TestSuccess").is_some_and(|c| c.0 == want)
    };

    // Install, then both test hooks run (the ConfigMap first, by weight) and pass.
    api.create(
        &PostParams::default(),
        &tested_hr(&n, json!({"msg": "one"}), json!({"enable": true})),
    )
    .await
    .unwrap();
    let v = wait_obj(&api, "tested", "tests pass", |v| {
        ready(v.get("status")).is_some_and(|r| r.0 == "True") && test_ok(v, "True")
    })
    .await;
    let (_, reason, message) = common::condition(v.get("status"), "TestSuccess").unwrap();
    assert_eq!(reason, "TestSucceeded");
    assert!(message.contains("2 test hooks"), "{message}");
    assert_eq!(
        test_hooks(&v),
        vec![
            ("tested-test".to_string(), "Succeeded".to_string()),
            ("tested-test-cm".to_string(), "Succeeded".to_string())
        ],
        "{v:#}"
    );

    // A failing test with ignoreFailures: the upgrade stands, TestSuccess is False.
    fail.store(true, std::sync::atomic::Ordering::SeqCst);
    let patch = json!({"spec": {"values": {"msg": "two"}, "test": {"enable": true, "ignoreFailures": true}}});
    api.patch("tested", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let v = wait_obj(&api, "tested", "failed test ignored", |v| {
        history_version(v) == 2 && test_ok(v, "False")
    })
    .await;
    let r = ready(v.get("status")).unwrap();
    assert_eq!(r.0, "True", "{v:#}");
    assert_eq!(
        common::condition(v.get("status"), "TestSuccess").unwrap().1,
        "TestFailed"
    );
    assert!(
        test_hooks(&v).contains(&("tested-test".to_string(), "Failed".to_string())),
        "{v:#}"
    );

    // Excluding the Pod test leaves the ConfigMap test, which passes.
    let patch = json!({"spec": {"values": {"msg": "three"}, "test": {"enable": true,
        "filters": [{"name": "tested-test", "exclude": true}]}}});
    api.patch("tested", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let v = wait_obj(&api, "tested", "filtered tests", |v| {
        history_version(v) == 3 && test_ok(v, "True")
    })
    .await;
    assert_eq!(
        test_hooks(&v),
        vec![("tested-test-cm".to_string(), "Succeeded".to_string())],
        "{v:#}"
    );

    // A failing test that is not ignored fails the upgrade and is remediated by rollback.
    let patch = json!({"spec": {"values": {"msg": "four"}, "test": {"enable": true, "filters": null, "ignoreFailures": null},
        "upgrade": {"remediation": {"retries": 1}}}});
    api.patch("tested", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    // Upgrade (fails its test), roll back, retry once, fail, roll back again: stalled.
    let v = wait_obj(&api, "tested", "failed test remediated", |v| {
        common::condition(v.get("status"), "Remediated").is_some_and(|c| c.0 == "True")
            && common::condition(v.get("status"), "Stalled").is_some_and(|c| c.0 == "True")
    })
    .await;
    let cms: Api<ConfigMap> = Api::namespaced(env.client.clone(), &n);
    let msg = cms.get("tested-cm").await.unwrap().data.unwrap()["msg"].clone();
    assert_eq!(msg, "three", "rolled back to v3's values: {v:#}");
    kubelet.abort();
}

#[tokio::test]
async fn drift_detection_corrects_warns_and_ignores() {
    let info = ControlPlane::shared().unwrap();
    let (env, _ns) = setup(info, "hr-drift").await;
    let n = env.ns.clone();
    let api: Api<HelmRelease> = Api::namespaced(env.client.clone(), &n);
    let cms: Api<ConfigMap> = Api::namespaced(env.client.clone(), &n);
    let obj = hr(
        &n,
        "demo",
        json!({"msg": "desired"}),
        json!({"driftDetection": {"mode": "enabled", "ignore": [
            {"paths": ["/data/from"], "target": {"kind": "ConfigMap", "name": "demo-.*"}}
        ]}}),
    );
    api.create(&PostParams::default(), &obj).await.unwrap();
    wait_obj(&api, "demo", "install", |v| {
        ready(v.get("status")).is_some_and(|r| r.0 == "True")
    })
    .await;
    let data = |cm: &ConfigMap| cm.data.clone().unwrap_or_default();

    // An edit by another manager is reverted through the watch (the interval is 1h);
    // the ignored field keeps the edited value.
    let edit = |msg: &str, from: &str| json!({"data": {"msg": msg, "from": from}});
    cms.patch(
        "demo-cm",
        &PatchParams::apply("kubectl-edit").force(),
        &Patch::Apply(&json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "demo-cm"}, "data": edit("hand", "hand")["data"]})),
    )
    .await
    .unwrap();
    let cm = wait::poll("drift corrected", Duration::from_secs(20), || async {
        let cm = cms.get("demo-cm").await.ok()?;
        (data(&cm).get("msg").map(String::as_str) == Some("desired")).then_some(cm)
    })
    .await
    .unwrap();
    assert_eq!(data(&cm)["from"], "hand", "ignored path kept");
    let events: Api<Event> = Api::namespaced(env.client.clone(), &n);
    wait::poll("DriftCorrected event", Duration::from_secs(10), || async {
        let list = events.list(&ListParams::default()).await.ok()?;
        list.items
            .iter()
            .any(|e| {
                e.reason.as_deref() == Some("DriftCorrected")
                    && e.message
                        .as_deref()
                        .is_some_and(|m| m.contains("ConfigMap/") && m.contains("demo-cm changed"))
            })
            .then_some(())
    })
    .await
    .unwrap();

    // A deleted object is recreated.
    cms.delete("demo-cm", &DeleteParams::default())
        .await
        .unwrap();
    wait::poll(
        "deleted object recreated",
        Duration::from_secs(20),
        || async { cms.get_opt("demo-cm").await.ok().flatten().map(|_| ()) },
    )
    .await
    .unwrap();

    // warn: drift is reported, not corrected.
    let patch = json!({"spec": {"driftDetection": {"mode": "warn"}}});
    api.patch("demo", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    wait_obj(&api, "demo", "warn mode observed", |v| {
        v["status"]["observedGeneration"] == v["metadata"]["generation"]
    })
    .await;
    cms.patch(
        "demo-cm",
        &PatchParams::apply("kubectl-edit").force(),
        &Patch::Apply(&json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "demo-cm"}, "data": {"msg": "warned"}})),
    )
    .await
    .unwrap();
    wait::poll("DriftDetected event", Duration::from_secs(20), || async {
        let list = events.list(&ListParams::default()).await.ok()?;
        list.items
            .iter()
            .any(|e| {
                e.reason.as_deref() == Some("DriftDetected")
                    && e.type_.as_deref() == Some("Warning")
            })
            .then_some(())
    })
    .await
    .unwrap();
    assert_eq!(data(&cms.get("demo-cm").await.unwrap())["msg"], "warned");
    let v = serde_json::to_value(api.get("demo").await.unwrap()).unwrap();
    assert_eq!(
        history_version(&v),
        1,
        "no new Helm revision for drift: {v:#}"
    );
}

#[tokio::test]
async fn depends_on_other_kinds_and_remote_kubeconfig() {
    let info = ControlPlane::shared().unwrap();
    let (env, _ns) = setup(info, "hr-remote").await;
    let n = env.ns.clone();
    let api: Api<HelmRelease> = Api::namespaced(env.client.clone(), &n);
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), &n);
    secrets
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": "spoke"},
                "stringData": {"value": info.admin_kubeconfig_inline().unwrap()}
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    // Waits on a Kustomization that does not exist yet (plumb's cross-kind dependsOn).
    let obj = hr(
        &n,
        "spoke",
        json!({"msg": "remote"}),
        json!({
            "kubeConfig": {"secretRef": {"name": "spoke"}},
            "dependsOn": [{"kind": "GitRepository", "name": "charts"},
                          {"kind": "Kustomization", "name": "infra"}],
        }),
    );
    api.create(&PostParams::default(), &obj).await.unwrap();
    let v = wait_obj(&api, "spoke", "dependency not ready", |v| {
        ready(v.get("status")).is_some_and(|r| r.1 == "DependencyNotReady" && r.2.contains("infra"))
    })
    .await;
    let msg = ready(v.get("status")).unwrap().2;
    assert!(
        msg.contains("Kustomization") && msg.contains("infra"),
        "{msg}"
    );

    // Drop the missing dependency: installed through the kubeconfig, release stored
    // in the target cluster (here the same one).
    let patch = json!({"spec": {"dependsOn": [{"kind": "GitRepository", "name": "charts"}]}});
    api.patch("spoke", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    wait_obj(&api, "spoke", "remote install", |v| {
        ready(v.get("status")).is_some_and(|r| r.0 == "True")
    })
    .await;
    let cms: Api<ConfigMap> = Api::namespaced(env.client.clone(), &n);
    assert_eq!(
        cms.get("spoke-cm").await.unwrap().data.unwrap()["msg"],
        "remote"
    );
    assert_eq!(
        release_secrets(&env.client, &n, "spoke").await,
        vec!["sh.helm.release.v1.spoke.v1".to_string()]
    );

    // A kubeconfig whose token the cluster rejects: a clear condition, nothing changed.
    let bad = info
        .admin_kubeconfig_inline()
        .unwrap()
        .replace(&info.admin_token, "not-a-valid-token");
    secrets
        .patch(
            "spoke",
            &PatchParams::default(),
            &Patch::Merge(&json!({"stringData": {"value": bad}})),
        )
        .await
        .unwrap();
    let patch = json!({"spec": {"values": {"msg": "changed"}}});
    api.patch("spoke", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let v = wait_obj(&api, "spoke", "unauthorized remote", |v| {
        ready(v.get("status")).is_some_and(|r| r.0 == "False")
    })
    .await;
    let msg = ready(v.get("status")).unwrap().2;
    assert!(
        msg.to_lowercase().contains("unauthorized") || msg.contains("401"),
        "{msg}"
    );
    assert!(
        !msg.contains("not-a-valid-token"),
        "no secret in status: {msg}"
    );
    assert_eq!(
        cms.get("spoke-cm").await.unwrap().data.unwrap()["msg"],
        "remote"
    );
}

#[tokio::test]
async fn values_files_revision_strategy_and_cluster_capabilities() {
    let info = ControlPlane::shared().unwrap();
    let (env, _ns) = setup(info, "hr-vf").await;
    let n = env.ns.clone();
    let api: Api<HelmRelease> = Api::namespaced(env.client.clone(), &n);
    let cms: Api<ConfigMap> = Api::namespaced(env.client.clone(), &n);
    let mut obj = tested_hr(&n, json!({}), json!({"enable": false}));
    let spec = &mut obj.spec.chart.as_mut().unwrap().spec;
    spec.values_files = vec![
        "charts/tested/values.yaml".into(),
        "./charts/tested/values-prod.yaml".into(),
        "charts/tested/missing.yaml".into(),
    ];
    api.create(&PostParams::default(), &obj).await.unwrap();
    // A missing values file stalls the release, naming the file.
    let v = wait_obj(&api, "tested", "missing values file", |v| {
        ready(v.get("status")).is_some_and(|r| r.0 == "False" && r.2.contains("missing.yaml"))
    })
    .await;
    assert!(
        common::condition(v.get("status"), "Stalled").is_some_and(|c| c.0 == "True"),
        "{v:#}"
    );
    let patch = json!({"spec": {"chart": {"spec": {"ignoreMissingValuesFiles": true,
        "reconcileStrategy": "Revision"}}}});
    api.patch("tested", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let v = wait_obj(&api, "tested", "installed", |v| {
        ready(v.get("status")).is_some_and(|r| r.0 == "True")
    })
    .await;
    let data = cms.get("tested-cm").await.unwrap().data.unwrap();
    assert_eq!(data["msg"], "one", "values.yaml listed first");
    assert_eq!(data["level"], "prod", "later files win");
    // The cluster's version and API set, not Helm's offline defaults.
    let version = env.client.apiserver_version().await.unwrap().git_version;
    assert_eq!(data["kube"], version);
    assert_eq!(data["deployments"], "true");
    // Revision strategy: the chart version carries the commit.
    let chart_version = v["status"]["history"][0]["chartVersion"].as_str().unwrap();
    assert!(chart_version.starts_with("0.1.0+"), "{chart_version}");
    assert_eq!(chart_version.len(), "0.1.0+".len() + 12, "{chart_version}");
    assert_eq!(data["version"], chart_version);
    assert_eq!(v["status"]["lastAttemptedRevision"], chart_version);
}

async fn annotate(api: &Api<HelmRelease>, name: &str, keys: &[&str], stamp: &str) {
    let mut ann = serde_json::Map::new();
    for k in keys {
        ann.insert((*k).to_string(), json!(stamp));
    }
    let patch = json!({"metadata": {"annotations": ann}});
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
}

#[tokio::test]
async fn force_and_reset_requests() {
    let info = ControlPlane::shared().unwrap();
    let (env, _ns) = setup(info, "hr-force").await;
    let n = env.ns.clone();
    let api: Api<HelmRelease> = Api::namespaced(env.client.clone(), &n);
    api.create(
        &PostParams::default(),
        &hr(&n, "demo", json!({}), json!({})),
    )
    .await
    .unwrap();
    wait_obj(&api, "demo", "install", |v| history_version(v) == 1).await;

    // forceAt == requestedAt: a one-off upgrade with nothing changed.
    annotate(
        &api,
        "demo",
        &[
            "reconcile.fluxcd.io/requestedAt",
            "reconcile.fluxcd.io/forceAt",
        ],
        "force-1",
    )
    .await;
    let v = wait_obj(&api, "demo", "forced upgrade", |v| {
        v["status"]["lastHandledForceAt"] == "force-1"
            && v["status"]["lastHandledReconcileAt"] == "force-1"
    })
    .await;
    assert_eq!(history_version(&v), 2, "{v:#}");
    // A plain request afterwards changes nothing.
    annotate(
        &api,
        "demo",
        &["reconcile.fluxcd.io/requestedAt"],
        "plain-1",
    )
    .await;
    let v = wait_obj(&api, "demo", "plain request", |v| {
        v["status"]["lastHandledReconcileAt"] == "plain-1"
    })
    .await;
    assert_eq!(history_version(&v), 2, "{v:#}");

    // A failing upgrade without retries stalls; a request does not retry it...
    let patch =
        json!({"spec": {"values": {"bad": true}, "upgrade": {"remediation": {"retries": 0}}}});
    api.patch("demo", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    wait_obj(&api, "demo", "upgrade failed", |v| {
        v["status"]["upgradeFailures"] == 1
            && common::condition(v.get("status"), "Stalled").is_some_and(|c| c.0 == "True")
    })
    .await;
    let before = release_secrets(&env.client, &n, "demo").await.len();
    annotate(
        &api,
        "demo",
        &["reconcile.fluxcd.io/requestedAt"],
        "plain-2",
    )
    .await;
    wait_obj(&api, "demo", "request handled", |v| {
        v["status"]["lastHandledReconcileAt"] == "plain-2"
    })
    .await;
    assert_eq!(
        release_secrets(&env.client, &n, "demo").await.len(),
        before,
        "retries exhausted: no new attempt"
    );
    // ...but resetAt == requestedAt resets the counters and it is attempted again.
    annotate(
        &api,
        "demo",
        &[
            "reconcile.fluxcd.io/requestedAt",
            "reconcile.fluxcd.io/resetAt",
        ],
        "reset-1",
    )
    .await;
    let v = wait_obj(&api, "demo", "reset handled", |v| {
        v["status"]["lastHandledResetAt"] == "reset-1"
            && v["status"]["lastHandledReconcileAt"] == "reset-1"
    })
    .await;
    assert_eq!(v["status"]["upgradeFailures"], 1, "{v:#}");
    assert_eq!(
        release_secrets(&env.client, &n, "demo").await.len(),
        before + 1,
        "a new attempt after the reset"
    );
}
