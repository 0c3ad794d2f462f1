//! HelmChart against the real API server: packaged from a GitRepository chart directory
//! (valuesFiles merged into the artifact, `reconcileStrategy: Revision`) and pulled from a
//! HelmRepository index (charts packaged by the reference `helm`); a HelmRelease installs
//! it through `chartRef: {kind: HelmChart}`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, PostParams};
use plumb_api::{GitRepository, HelmChart, HelmRelease, HelmRepository};
use plumb_testing::ControlPlane;
use plumb_testing::chartrepo::{ChartRepoServer, index_repo, package_chart};
use plumb_testing::git::HttpAuth;
use serde_json::{Value, json};

use crate::common::world::within;
use crate::common::{ready, wait_obj};
use crate::helmrelease::setup;

fn chart(ns: &str, name: &str, spec: Value) -> HelmChart {
    serde_json::from_value(json!({
        "apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "HelmChart",
        "metadata": {"name": name, "namespace": ns}, "spec": spec
    }))
    .unwrap()
}

fn is_ready(v: &Value) -> bool {
    ready(v.get("status")).is_some_and(|r| r.0 == "True")
}

#[tokio::test]
async fn helmchart_from_git_and_helm_repository_and_chart_ref() {
    let info = ControlPlane::shared().unwrap();
    let (env, _ns) = setup(info, "helmchart").await;
    let n = env.ns.clone();
    let charts: Api<HelmChart> = Api::namespaced(env.client.clone(), &n);

    // From Git: valuesFiles merged into the packaged values.yaml, the commit in the version.
    charts
        .create(
            &PostParams::default(),
            &chart(
                &n,
                "tested",
                json!({"chart": "./charts/tested", "interval": "1h",
                       "sourceRef": {"kind": "GitRepository", "name": "charts"},
                       "reconcileStrategy": "Revision",
                       "valuesFiles": ["charts/tested/values.yaml", "charts/tested/values-prod.yaml"]}),
            ),
        )
        .await
        .unwrap();
    let v = wait_obj(&charts, "tested", "packaged from git", is_ready).await;
    let st = &v["status"];
    let git: Api<GitRepository> = Api::namespaced(env.client.clone(), &n);
    let git_rev = git
        .get("charts")
        .await
        .unwrap()
        .status
        .unwrap()
        .artifact
        .unwrap()
        .revision;
    let commit = git_rev.rsplit(':').next().unwrap();
    let version = format!("0.1.0+{}", &commit[..12]);
    assert_eq!(st["artifact"]["revision"], version.as_str());
    assert_eq!(st["observedChartName"], "tested");
    assert_eq!(st["observedSourceArtifactRevision"], git_rev.as_str());
    assert_eq!(
        st["observedValuesFiles"][1],
        "charts/tested/values-prod.yaml"
    );
    let r = ready(v.get("status")).unwrap();
    assert_eq!(r.1, "ChartPackageSucceeded", "{r:?}");

    // A HelmRelease through chartRef: the packaged values and version are the chart's.
    let hrs: Api<HelmRelease> = Api::namespaced(env.client.clone(), &n);
    let hr: HelmRelease = serde_json::from_value(json!({
        "apiVersion": "helm.toolkit.fluxcd.io/v2", "kind": "HelmRelease",
        "metadata": {"name": "web", "namespace": n},
        "spec": {"interval": "1h", "chartRef": {"kind": "HelmChart", "name": "tested"}}
    }))
    .unwrap();
    hrs.create(&PostParams::default(), &hr).await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(env.client.clone(), &n);
    let want = version.clone();
    within("installed from the HelmChart", 90, || {
        let (cms, want) = (cms.clone(), want.clone());
        async move {
            let data = cms.get_opt("web-cm").await.ok()??.data?;
            (data.get("level")? == "prod" && *data.get("version")? == want).then_some(())
        }
    })
    .await;

    // From a HelmRepository index: the highest version in range, pulled as is.
    let repo_dir = env.tmp.path().join("chartrepo");
    for v in ["1.0.0", "1.4.0", "2.0.0"] {
        package_chart(&repo_dir, "podinfo", v);
    }
    index_repo(&repo_dir, None);
    let dir = repo_dir.clone();
    let server = std::thread::spawn(move || ChartRepoServer::start(&dir, HttpAuth::Anonymous))
        .join()
        .unwrap();
    let repos: Api<HelmRepository> = Api::namespaced(env.client.clone(), &n);
    let repo: HelmRepository = serde_json::from_value(json!({
        "apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "HelmRepository",
        "metadata": {"name": "repo", "namespace": n},
        "spec": {"url": server.url("/"), "interval": "1h"}
    }))
    .unwrap();
    repos.create(&PostParams::default(), &repo).await.unwrap();
    charts
        .create(
            &PostParams::default(),
            &chart(
                &n,
                "podinfo",
                json!({"chart": "podinfo", "version": "1.x", "interval": "1h",
                       "sourceRef": {"kind": "HelmRepository", "name": "repo"}}),
            ),
        )
        .await
        .unwrap();
    let v = wait_obj(&charts, "podinfo", "pulled from the repository", is_ready).await;
    assert_eq!(v["status"]["artifact"]["revision"], "1.4.0");
    let r = ready(v.get("status")).unwrap();
    assert_eq!(r.1, "ChartPullSucceeded", "{r:?}");
    assert!(
        r.2.contains("pulled 'podinfo' chart with version '1.4.0'"),
        "{r:?}"
    );

    // A chart that is not in the repository: a clear condition, the artifact stays absent.
    charts
        .create(
            &PostParams::default(),
            &chart(
                &n,
                "missing",
                json!({"chart": "nope", "interval": "1h",
                       "sourceRef": {"kind": "HelmRepository", "name": "repo"}}),
            ),
        )
        .await
        .unwrap();
    let v = wait_obj(&charts, "missing", "missing chart", |v| {
        ready(v.get("status")).is_some_and(|r| r.0 == "False")
    })
    .await;
    let r = ready(v.get("status")).unwrap();
    assert_eq!(r.1, "InvalidChartReference", "{r:?}");

    hrs.delete("web", &DeleteParams::default()).await.unwrap();
    for name in ["tested", "podinfo", "missing"] {
        charts.delete(name, &DeleteParams::default()).await.unwrap();
    }
    within("finalized", 60, || {
        let (hrs, charts) = (hrs.clone(), charts.clone());
        async move {
            let gone = hrs.get_opt("web").await.ok()?.is_none()
                && charts
                    .list(&Default::default())
                    .await
                    .ok()?
                    .items
                    .is_empty();
            gone.then_some(())
        }
    })
    .await;
    drop(server);
}
