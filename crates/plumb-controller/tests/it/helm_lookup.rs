//! Helm's `lookup` in a HelmRelease render against the real API server: a named object
//! renders its data, a list has typed items, a missing object is an empty map, a
//! cluster-scoped object is found without a namespace, and the lookup reads with the
//! release's identity (an impersonated service account without rights fails the render
//! with the API server's forbidden message naming the object, as Helm does).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams};
use plumb_api::{GitRepository, HelmRelease};
use plumb_testing::git::{GitHttpServer, HttpAuth, TestRepo};
use plumb_testing::{ControlPlane, TestNamespace};
use serde_json::{Value, json};

use crate::common::world::within;
use crate::common::{install_crds, ready, start_plumb, wait_obj};

const CHART: &[(&str, &str)] = &[
    (
        "charts/lookup/Chart.yaml",
        "apiVersion: v2\nname: lookup\nversion: 0.1.0\n",
    ),
    (
        "charts/lookup/templates/out.yaml",
        r#"{{- $cm := lookup "v1" "ConfigMap" .Release.Namespace "existing" }}
{{- $all := lookup "v1" "ConfigMap" .Release.Namespace "" }}
{{- $none := lookup "v1" "ConfigMap" .Release.Namespace "missing" }}
{{- $ns := lookup "v1" "Namespace" "" .Release.Namespace }}
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ .Release.Name }}-out
data:
  color: {{ dig "data" "color" "none" $cm | quote }}
  listKind: {{ $all.kind | quote }}
  listed: "{{ range $all.items }}{{ if eq .metadata.name "existing" }}{{ .kind }}/{{ .metadata.name }}{{ end }}{{ end }}"
  missing: {{ $none | toJson | quote }}
  namespace: {{ dig "metadata" "name" "none" $ns | quote }}
"#,
    ),
];

struct Env {
    _tmp: tempfile::TempDir,
    _server: GitHttpServer,
    client: kube::Client,
    ns: TestNamespace,
}

async fn setup() -> Env {
    let info = ControlPlane::shared().unwrap();
    let client = info.admin_client().await.unwrap();
    install_crds(&client).await;
    let ns = TestNamespace::create(info, "hr-lookup").await.unwrap();
    let n = ns.name().to_string();
    let tmp = tempfile::tempdir().unwrap();
    let repo = TestRepo::init(&tmp.path().join("repos"), "charts");
    repo.commit(CHART, "chart");
    let root = tmp.path().join("repos");
    let server = std::thread::spawn(move || GitHttpServer::start(&root, HttpAuth::Anonymous))
        .join()
        .unwrap();
    start_plumb(info, &n, &tmp.path().join("storage")).await;
    let git: GitRepository = serde_json::from_value(json!({
        "apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository",
        "metadata": {"name": "charts", "namespace": n},
        "spec": {"url": server.url("charts"), "interval": "1h", "ref": {"branch": "master"}}
    }))
    .unwrap();
    Api::<GitRepository>::namespaced(client.clone(), &n)
        .create(&PostParams::default(), &git)
        .await
        .unwrap();
    let existing: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "existing"}, "data": {"color": "blue"}
    }))
    .unwrap();
    Api::<ConfigMap>::namespaced(client.clone(), &n)
        .create(&PostParams::default(), &existing)
        .await
        .unwrap();
    Env {
        _tmp: tmp,
        _server: server,
        client,
        ns,
    }
}

fn hr(ns: &str, name: &str, extra: Value) -> HelmRelease {
    let mut spec = json!({
        "interval": "1h",
        "timeout": "30s",
        "chart": {"spec": {"chart": "./charts/lookup",
            "sourceRef": {"kind": "GitRepository", "name": "charts"}}},
    });
    if let (Some(s), Value::Object(e)) = (spec.as_object_mut(), extra) {
        s.extend(e);
    }
    serde_json::from_value(json!({
        "apiVersion": "helm.toolkit.fluxcd.io/v2", "kind": "HelmRelease",
        "metadata": {"name": name, "namespace": ns},
        "spec": spec,
    }))
    .unwrap()
}

#[tokio::test]
async fn lookup_reads_objects_lists_and_missing_ones_from_the_cluster() {
    let env = setup().await;
    let n = env.ns.name().to_string();
    Api::<HelmRelease>::namespaced(env.client.clone(), &n)
        .create(&PostParams::default(), &hr(&n, "web", json!({})))
        .await
        .unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(env.client.clone(), &n);
    let out = within("web-out rendered", 90, move || {
        let cms = cms.clone();
        async move { cms.get_opt("web-out").await.ok()?.and_then(|c| c.data) }
    })
    .await;
    assert_eq!(out["color"], "blue", "{out:?}");
    assert_eq!(out["listKind"], "ConfigMapList", "{out:?}");
    assert_eq!(out["listed"], "ConfigMap/existing", "{out:?}");
    assert_eq!(out["missing"], "{}", "{out:?}");
    assert_eq!(out["namespace"], n, "a cluster-scoped lookup: {out:?}");
    env.ns.delete().await.unwrap();
}

#[tokio::test]
async fn lookup_uses_the_release_identity() {
    let env = setup().await;
    let n = env.ns.name().to_string();
    let hrs: Api<HelmRelease> = Api::namespaced(env.client.clone(), &n);
    hrs.create(
        &PostParams::default(),
        &hr(&n, "denied", json!({"serviceAccountName": "no-rights"})),
    )
    .await
    .unwrap();
    let v = wait_obj(&hrs, "denied", "render failed", |v: &Value| {
        ready(v.get("status")).is_some_and(|r| r.0 == "False" && r.2.contains("lookup v1 "))
    })
    .await;
    let msg = ready(v.get("status")).unwrap().2;
    assert!(
        msg.contains(&format!("lookup v1 ConfigMap {n}/existing")),
        "names the object: {msg}"
    );
    assert!(msg.contains("forbidden"), "{msg}");
    assert!(
        msg.contains(&format!("system:serviceaccount:{n}:no-rights")),
        "names the identity: {msg}"
    );
    assert!(!msg.contains("blue"), "never the data: {msg}");
    let cms: Api<ConfigMap> = Api::namespaced(env.client.clone(), &n);
    assert!(cms.get_opt("denied-out").await.unwrap().is_none());
    env.ns.delete().await.unwrap();
}
