//! HelmRelease action options against the real API server, each with Flux's semantics:
//! `strategy: RetryOnFailure` (no remediation, retried after `retryInterval`),
//! `disableWaitForJobs`, `cleanupOnFail`, `disableTakeOwnership`, `preserveValues`,
//! `valuesFrom[].literal`, `uninstall.deletionPropagation` and `chartNameChangeStrategy`.
//! There is no kubelet and no workload controller: a Deployment never becomes ready and a
//! Job never completes, which is how these tests make an action fail or hang.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use plumb_api::HelmRelease;
use plumb_testing::ControlPlane;
use serde_json::{Value, json};

use crate::common::world::within;
use crate::common::{condition, ready, wait_obj};
use crate::helmrelease::{hr, release_secrets, setup_with};

const ACTIONS: &[(&str, &str)] = &[
    (
        "charts/actions/Chart.yaml",
        "apiVersion: v2\nname: actions\nversion: 0.1.0\n",
    ),
    (
        "charts/actions/values.yaml",
        "msg: one\njob: false\ndeploy: false\nextra: false\n",
    ),
    (
        "charts/actions/templates/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-cm\ndata:\n  msg: {{ .Values.msg | quote }}\n  keep: {{ .Values.keep | default \"none\" | quote }}\n",
    ),
    (
        "charts/actions/templates/extra.yaml",
        "{{- if .Values.extra }}\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-extra\n{{- end }}\n",
    ),
    (
        "charts/actions/templates/job.yaml",
        "{{- if .Values.job }}\napiVersion: batch/v1\nkind: Job\nmetadata:\n  name: {{ .Release.Name }}-job\nspec:\n  template:\n    spec:\n      restartPolicy: Never\n      containers:\n      - name: j\n        image: busybox\n{{- end }}\n",
    ),
    (
        "charts/actions/templates/deploy.yaml",
        "{{- if .Values.deploy }}\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {{ .Release.Name }}-deploy\nspec:\n  selector:\n    matchLabels:\n      app: x\n  template:\n    metadata:\n      labels:\n        app: x\n    spec:\n      containers:\n      - name: x\n        image: busybox\n{{- end }}\n",
    ),
    (
        "charts/renamed/Chart.yaml",
        "apiVersion: v2\nname: renamed\nversion: 0.2.0\n",
    ),
    (
        "charts/renamed/templates/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-cm\ndata:\n  msg: renamed\n",
    ),
];

/// A HelmRelease of `./charts/actions` with a short timeout and `extra` spec fields.
fn ahr(ns: &str, name: &str, values: Value, extra: Value) -> HelmRelease {
    let mut spec = json!({
        "timeout": "4s",
        "chart": {"spec": {"chart": "./charts/actions",
            "sourceRef": {"kind": "GitRepository", "name": "charts"}}},
    });
    if let (Some(s), Value::Object(e)) = (spec.as_object_mut(), extra) {
        s.extend(e);
    }
    hr(ns, name, values, spec)
}

pub(crate) fn is_ready(v: &Value) -> bool {
    ready(v.get("status")).is_some_and(|r| r.0 == "True")
}

async fn set_values(api: &Api<HelmRelease>, name: &str, values: Value) {
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(&json!({"spec": {"values": values}})),
    )
    .await
    .unwrap();
}

async fn cm_data(cms: &Api<ConfigMap>, name: &str) -> std::collections::BTreeMap<String, String> {
    cms.get(name).await.unwrap().data.unwrap_or_default()
}

#[tokio::test]
async fn retry_on_failure_retries_without_remediation() {
    let info = ControlPlane::shared().unwrap();
    let (env, _ns) = setup_with(info, "hr-retry", ACTIONS).await;
    let n = env.ns.clone();
    let api: Api<HelmRelease> = Api::namespaced(env.client.clone(), &n);
    // Remediation is configured but RetryOnFailure ignores it.
    let spec = json!({"upgrade": {"strategy": {"name": "RetryOnFailure", "retryInterval": "1s"},
        "remediation": {"retries": 1}}});
    api.create(&PostParams::default(), &ahr(&n, "app", json!({}), spec))
        .await
        .unwrap();
    wait_obj(&api, "app", "installed", is_ready).await;

    // A Deployment that never becomes ready fails the upgrade at the timeout.
    set_values(&api, "app", json!({"deploy": true, "msg": "two"})).await;
    let v = wait_obj(&api, "app", "upgrade retried past the retries", |v| {
        v["status"]["upgradeFailures"].as_i64().unwrap_or(0) >= 3
    })
    .await;
    let r = ready(v.get("status")).unwrap();
    assert_eq!(r.1, "UpgradeFailed", "{v:#}");
    assert!(r.2.contains("retrying in 1s"), "{r:?}");
    assert!(condition(v.get("status"), "Remediated").is_none(), "{v:#}");
    assert!(
        condition(v.get("status"), "Stalled").is_none_or(|s| s.0 != "True"),
        "RetryOnFailure never stalls: {v:#}"
    );
    // No rollback: the objects of the failed upgrade stay, every revision is an upgrade.
    let cms: Api<ConfigMap> = Api::namespaced(env.client.clone(), &n);
    assert_eq!(cm_data(&cms, "app-cm").await["msg"], "two");

    // An install with RetryOnFailure: retried (as an upgrade of the failed release) every
    // retryInterval, never remediated (uninstalled), never stalled.
    let spec = json!({"install": {"strategy": {"name": "RetryOnFailure", "retryInterval": "1s"},
        "remediation": {"retries": 1}}});
    api.create(
        &PostParams::default(),
        &ahr(&n, "inst", json!({"deploy": true}), spec),
    )
    .await
    .unwrap();
    let v = wait_obj(&api, "inst", "install retried", |v| {
        v["status"]["failures"].as_i64().unwrap_or(0) >= 3
    })
    .await;
    assert!(condition(v.get("status"), "Remediated").is_none(), "{v:#}");
    assert!(
        condition(v.get("status"), "Stalled").is_none_or(|s| s.0 != "True"),
        "{v:#}"
    );
    assert!(
        cms.get_opt("inst-cm").await.unwrap().is_some(),
        "not uninstalled"
    );

    // Fixed: the next retry succeeds.
    set_values(&api, "app", json!({"deploy": false, "msg": "three"})).await;
    wait_obj(&api, "app", "upgrade succeeds again", |v| {
        is_ready(v) && v["status"]["history"][0]["status"] == "deployed"
    })
    .await;
    assert_eq!(cm_data(&cms, "app-cm").await["msg"], "three");
}

#[tokio::test]
async fn wait_for_jobs_and_cleanup_on_fail() {
    let info = ControlPlane::shared().unwrap();
    let (env, _ns) = setup_with(info, "hr-jobs", ACTIONS).await;
    let n = env.ns.clone();
    let api: Api<HelmRelease> = Api::namespaced(env.client.clone(), &n);
    let cms: Api<ConfigMap> = Api::namespaced(env.client.clone(), &n);
    let deps: Api<Deployment> = Api::namespaced(env.client.clone(), &n);

    // A Job that never completes: waited for by default, not with disableWaitForJobs.
    let spec = json!({"install": {"disableWaitForJobs": true}});
    api.create(
        &PostParams::default(),
        &ahr(&n, "nowait", json!({"job": true}), spec),
    )
    .await
    .unwrap();
    api.create(
        &PostParams::default(),
        &ahr(&n, "waits", json!({"job": true}), json!({})),
    )
    .await
    .unwrap();
    wait_obj(
        &api,
        "nowait",
        "installed without waiting for the Job",
        is_ready,
    )
    .await;
    let v = wait_obj(&api, "waits", "install timed out on the Job", |v| {
        ready(v.get("status")).is_some_and(|r| r.1 == "InstallFailed")
    })
    .await;
    let r = ready(v.get("status")).unwrap();
    assert!(r.2.contains("waits-job"), "{r:?}");

    // cleanupOnFail: the objects a failed upgrade created are deleted, the rest stay.
    let spec = json!({"upgrade": {"cleanupOnFail": true}});
    api.create(
        &PostParams::default(),
        &ahr(&n, "clean", json!({"msg": "one"}), spec),
    )
    .await
    .unwrap();
    wait_obj(&api, "clean", "installed", is_ready).await;
    set_values(
        &api,
        "clean",
        json!({"msg": "two", "extra": true, "deploy": true}),
    )
    .await;
    let v = wait_obj(&api, "clean", "upgrade failed and cleaned up", |v| {
        ready(v.get("status")).is_some_and(|r| r.1 == "UpgradeFailed")
    })
    .await;
    let r = ready(v.get("status")).unwrap();
    assert!(
        r.2.contains("cleanup on fail deleted 2 new object(s)"),
        "{r:?}"
    );
    within("created objects deleted", 30, || {
        let (cms, deps) = (cms.clone(), deps.clone());
        async move {
            let gone = cms.get_opt("clean-extra").await.ok()?.is_none()
                && deps.get_opt("clean-deploy").await.ok()?.is_none();
            gone.then_some(())
        }
    })
    .await;
    // The object that existed before the upgrade is not deleted.
    assert_eq!(cm_data(&cms, "clean-cm").await["msg"], "two");
}

#[tokio::test]
async fn ownership_preserved_values_and_literal_values() {
    let info = ControlPlane::shared().unwrap();
    let (env, _ns) = setup_with(info, "hr-own", ACTIONS).await;
    let n = env.ns.clone();
    let api: Api<HelmRelease> = Api::namespaced(env.client.clone(), &n);
    let cms: Api<ConfigMap> = Api::namespaced(env.client.clone(), &n);

    // Objects that exist and are not the release's: refused with disableTakeOwnership,
    // adopted by default.
    for name in ["own-cm", "adopt-cm"] {
        let cm: ConfigMap =
            serde_json::from_value(json!({"metadata": {"name": name}, "data": {"msg": "x"}}))
                .unwrap();
        cms.create(&PostParams::default(), &cm).await.unwrap();
    }
    let spec = json!({"install": {"disableTakeOwnership": true}});
    api.create(&PostParams::default(), &ahr(&n, "own", json!({}), spec))
        .await
        .unwrap();
    api.create(
        &PostParams::default(),
        &ahr(&n, "adopt", json!({}), json!({})),
    )
    .await
    .unwrap();
    let v = wait_obj(&api, "own", "install refused", |v| {
        ready(v.get("status")).is_some_and(|r| r.1 == "InstallFailed")
    })
    .await;
    let r = ready(v.get("status")).unwrap();
    assert!(
        r.2.contains("Unable to continue with install: ConfigMap \"own-cm\" in namespace")
            && r.2
                .contains("exists and cannot be imported into the current release"),
        "{r:?}"
    );
    assert_eq!(cm_data(&cms, "own-cm").await["msg"], "x", "left untouched");
    wait_obj(&api, "adopt", "adopted", is_ready).await;
    let adopted = cms.get("adopt-cm").await.unwrap();
    assert_eq!(
        adopted.metadata.annotations.unwrap()["meta.helm.sh/release-name"],
        "adopt"
    );

    // preserveValues: a value dropped from the spec keeps its last released value.
    let spec = json!({"upgrade": {"preserveValues": true}});
    api.create(
        &PostParams::default(),
        &ahr(&n, "keep", json!({"msg": "one", "keep": "k1"}), spec),
    )
    .await
    .unwrap();
    wait_obj(&api, "keep", "installed", is_ready).await;
    set_values(&api, "keep", json!({"msg": "two", "keep": null})).await;
    within("upgraded with preserved values", 60, || {
        let cms = cms.clone();
        async move {
            let d = cms.get_opt("keep-cm").await.ok()??.data?;
            (d.get("msg")? == "two").then_some(d)
        }
    })
    .await;
    assert_eq!(cm_data(&cms, "keep-cm").await["keep"], "k1");

    // valuesFrom literal: the value verbatim, commas, braces, backslashes and newlines
    // included (without `literal` it would be `--set` syntax).
    let text = "a,b={c}\\d\nline2";
    let src: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "lit-src"}, "data": {"v": text}}))
            .unwrap();
    cms.create(&PostParams::default(), &src).await.unwrap();
    let from = json!({"valuesFrom": [{"kind": "ConfigMap", "name": "lit-src",
        "valuesKey": "v", "targetPath": "msg", "literal": true}]});
    api.create(&PostParams::default(), &ahr(&n, "lit", json!(null), from))
        .await
        .unwrap();
    wait_obj(&api, "lit", "installed", is_ready).await;
    assert_eq!(cm_data(&cms, "lit-cm").await["msg"], text);
    let stored = api.get("lit").await.unwrap();
    assert!(stored.spec.values_from[0].literal, "the field round-trips");
}

#[tokio::test]
async fn deletion_propagation_and_chart_name_change() {
    let info = ControlPlane::shared().unwrap();
    let (env, _ns) = setup_with(info, "hr-prop", ACTIONS).await;
    let n = env.ns.clone();
    let api: Api<HelmRelease> = Api::namespaced(env.client.clone(), &n);
    let cms: Api<ConfigMap> = Api::namespaced(env.client.clone(), &n);

    // deletionPropagation orphan: the dependents of the release's objects stay, their
    // owner references removed by the garbage collector.
    let spec = json!({"uninstall": {"deletionPropagation": "orphan"}});
    api.create(&PostParams::default(), &ahr(&n, "orph", json!({}), spec))
        .await
        .unwrap();
    wait_obj(&api, "orph", "installed", is_ready).await;
    let owner = cms.get("orph-cm").await.unwrap();
    let dependent: ConfigMap = serde_json::from_value(json!({"metadata": {
        "name": "dependent",
        "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "orph-cm",
            "uid": owner.metadata.uid.unwrap()}]}}))
    .unwrap();
    cms.create(&PostParams::default(), &dependent)
        .await
        .unwrap();
    api.delete("orph", &DeleteParams::default()).await.unwrap();
    within("owner gone, dependent orphaned", 60, || {
        let cms = cms.clone();
        async move {
            if cms.get_opt("orph-cm").await.ok()?.is_some() {
                return None;
            }
            let d = cms.get_opt("dependent").await.ok()??;
            d.metadata
                .owner_references
                .unwrap_or_default()
                .is_empty()
                .then_some(())
        }
    })
    .await;

    // chartNameChangeStrategy: Reinstall (default) starts a new history at v1;
    // InPlaceUpdate upgrades to v2.
    for (name, strategy) in [("re", None), ("inplace", Some("InPlaceUpdate"))] {
        let spec = match strategy {
            Some(s) => json!({"upgrade": {"chartNameChangeStrategy": s}}),
            None => json!({}),
        };
        api.create(&PostParams::default(), &ahr(&n, name, json!({}), spec))
            .await
            .unwrap();
        wait_obj(&api, name, "installed", is_ready).await;
        api.patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"chart": {"spec": {"chart": "./charts/renamed"}}}})),
        )
        .await
        .unwrap();
    }
    for (name, version) in [("re", 1), ("inplace", 2)] {
        let v = wait_obj(&api, name, "released the renamed chart", |v| {
            is_ready(v) && v["status"]["history"][0]["chartName"] == "renamed"
        })
        .await;
        assert_eq!(v["status"]["history"][0]["version"], version, "{v:#}");
        assert_eq!(cm_data(&cms, &format!("{name}-cm")).await["msg"], "renamed");
    }
    assert_eq!(
        release_secrets(&env.client, &n, "re").await,
        ["sh.helm.release.v1.re.v1"]
    );
}

#[tokio::test]
async fn rollback_waits_for_jobs_and_cleans_up_on_fail() {
    let info = ControlPlane::shared().unwrap();
    let (env, _ns) = setup_with(info, "hr-rollback", ACTIONS).await;
    let n = env.ns.clone();
    let api: Api<HelmRelease> = Api::namespaced(env.client.clone(), &n);
    let cms: Api<ConfigMap> = Api::namespaced(env.client.clone(), &n);
    // v1 has a Job that never completes (installed without waiting for it) and an extra
    // object; the upgrade drops the extra object and adds a Deployment that never becomes
    // ready, so it fails and is rolled back to v1.
    let v1 = json!({"job": true, "extra": true});
    for (name, rollback) in [
        ("rbjobs", json!({"disableWaitForJobs": true})),
        ("rbwait", json!({"cleanupOnFail": true})),
    ] {
        let spec = json!({"install": {"disableWaitForJobs": true},
            "upgrade": {"remediation": {"retries": 1}}, "rollback": rollback});
        api.create(&PostParams::default(), &ahr(&n, name, v1.clone(), spec))
            .await
            .unwrap();
    }
    for name in ["rbjobs", "rbwait"] {
        wait_obj(&api, name, "installed", is_ready).await;
        set_values(&api, name, json!({"extra": false, "deploy": true})).await;
    }
    // disableWaitForJobs: the rollback does not wait for the Job.
    let v = wait_obj(&api, "rbjobs", "rolled back", |v| {
        condition(v.get("status"), "Remediated").is_some_and(|r| r.1 == "RollbackSucceeded")
    })
    .await;
    assert!(
        cms.get_opt("rbjobs-extra").await.unwrap().is_some(),
        "{v:#}"
    );
    // By default the rollback waits for the Job and fails at the timeout; cleanupOnFail
    // deletes what it created (the extra object the upgrade had removed).
    let v = wait_obj(&api, "rbwait", "rollback failed", |v| {
        condition(v.get("status"), "Remediated").is_some_and(|r| r.1 == "RollbackFailed")
    })
    .await;
    let r = condition(v.get("status"), "Remediated").unwrap();
    assert!(r.2.contains("rbwait-job"), "{r:?}");
    assert!(
        r.2.contains("cleanup on fail deleted 1 new object(s)"),
        "{r:?}"
    );
    assert!(cms.get_opt("rbwait-extra").await.unwrap().is_none());
}
