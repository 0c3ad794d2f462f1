//! HelmRepository end to end: a chart repository on loopback (charts packaged by the
//! reference `helm`), the real API server, plumb's controllers in-process; and
//! `resolve_chart` as the HelmRelease controller calls it.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use plumb_api::HelmRepository;
use plumb_controller::helmrepository::resolve_chart;
use plumb_controller::outcome::Class;
use plumb_testing::chartrepo::{ChartRepoServer, index_repo, package_chart};
use plumb_testing::git::{HttpAuth, free_port};
use plumb_testing::{ControlPlane, TestNamespace, wait};
use serde_json::{Value, json};

use crate::common::{condition, install_crds, ready, start_plumb, wait_obj};

const PASSWORD: &str = "Hunter2-helm-secret";

fn chart_dir(dir: &Path) {
    for v in ["1.0.0", "1.1.0", "2.0.0-rc.1"] {
        package_chart(dir, "web", v);
    }
    index_repo(dir, None);
}

/// Starts the chart server off the async context (it owns a runtime).
fn serve(dir: &Path, auth: HttpAuth) -> ChartRepoServer {
    let dir = dir.to_path_buf();
    std::thread::spawn(move || ChartRepoServer::start(&dir, auth))
        .join()
        .unwrap()
}

async fn create_secret(client: &kube::Client, ns: &str, name: &str, password: &str) {
    let s: Secret = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name, "namespace": ns},
        "stringData": {"username": "helm", "password": password}
    }))
    .unwrap();
    Api::<Secret>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &s)
        .await
        .unwrap();
}

async fn create_repo(api: &Api<HelmRepository>, ns: &str, name: &str, spec: Value) {
    let r: HelmRepository = serde_json::from_value(json!({
        "apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "HelmRepository",
        "metadata": {"name": name, "namespace": ns},
        "spec": spec
    }))
    .unwrap();
    api.create(&PostParams::default(), &r).await.unwrap();
}

async fn events_text(client: &kube::Client, ns: &str) -> String {
    let api: Api<Event> = Api::namespaced(client.clone(), ns);
    let list = api.list(&Default::default()).await.unwrap();
    serde_json::to_string(&list.items).unwrap()
}

fn is_ready(v: &Value) -> bool {
    ready(v.get("status")).is_some_and(|(s, _, _)| s == "True")
}

#[tokio::test]
async fn ready_with_artifact_then_resolve_and_finalize() {
    let info = ControlPlane::shared().unwrap();
    let client = info.admin_client().await.unwrap();
    install_crds(&client).await;
    let ns = TestNamespace::create(info, "helmrepo-ok").await.unwrap();
    let n = ns.name().to_string();
    let tmp = tempfile::tempdir().unwrap();
    let charts = tmp.path().join("charts");
    chart_dir(&charts);
    let server = serve(
        &charts,
        HttpAuth::Basic {
            username: "helm".into(),
            password: PASSWORD.into(),
        },
    );
    let storage = tmp.path().join("storage");
    let ctx = start_plumb(info, &n, &storage).await;
    create_secret(&client, &n, "creds", PASSWORD).await;
    let api: Api<HelmRepository> = Api::namespaced(client.clone(), &n);
    create_repo(
        &api,
        &n,
        "charts",
        json!({"url": server.url("/"), "interval": "1h", "secretRef": {"name": "creds"}}),
    )
    .await;
    let v = wait_obj(&api, "charts", "HelmRepository Ready", is_ready).await;
    let st = &v["status"];
    let art = &st["artifact"];
    let rev = art["revision"].as_str().unwrap();
    let hex = rev.strip_prefix("sha256:").unwrap();
    assert_eq!(hex.len(), 64);
    assert_eq!(
        art["path"].as_str().unwrap(),
        format!("helmrepository/{n}/charts/index-{hex}.yaml")
    );
    assert_eq!(art["digest"].as_str().unwrap(), rev);
    let stored = std::fs::read(
        storage
            .join("artifacts")
            .join(art["path"].as_str().unwrap()),
    )
    .unwrap();
    assert_eq!(
        art["size"].as_i64().unwrap(),
        i64::try_from(stored.len()).unwrap()
    );
    assert_eq!(condition(Some(st), "ArtifactInStorage").unwrap().0, "True");
    assert!(condition(Some(st), "FetchFailed").is_none());
    assert_eq!(st["observedGeneration"], v["metadata"]["generation"]);
    assert!(st["url"].as_str().unwrap().ends_with(".yaml"));

    // resolve_chart reads the stored index, not the server's; the chart is downloaded
    // once and then served from the cache.
    let repo = api.get("charts").await.unwrap();
    // Hide the index from the server: resolving must not need it.
    std::fs::rename(charts.join("index.yaml"), tmp.path().join("index.yaml")).unwrap();
    let got = resolve_chart(&ctx, &repo, "web", "~1.0", None)
        .await
        .unwrap();
    assert_eq!((got.name.as_str(), got.version.as_str()), ("web", "1.0.0"));
    assert_eq!(plumb_helm::load_archive(&got.archive).unwrap().name, "web");
    let latest = resolve_chart(&ctx, &repo, "web", "", None).await.unwrap();
    assert_eq!(latest.version, "1.1.0");
    let pre = resolve_chart(&ctx, &repo, "web", ">=2.0.0-0", None)
        .await
        .unwrap();
    assert_eq!(pre.version, "2.0.0-rc.1");
    let again = resolve_chart(&ctx, &repo, "web", "1.1.0", None)
        .await
        .unwrap();
    assert_eq!(again, latest);
    assert_eq!(server.count("web-1.1.0.tgz"), 1, "second resolve is cached");
    let e = resolve_chart(&ctx, &repo, "web", ">=3", None)
        .await
        .unwrap_err();
    assert_eq!(
        (e.class, e.reason),
        (Class::Stalled, "InvalidChartReference")
    );
    assert!(e.message.contains(">=3"), "{e}");
    let e = resolve_chart(&ctx, &repo, "nope", "", None)
        .await
        .unwrap_err();
    assert_eq!(e.reason, "InvalidChartReference");
    // The archive is gone from the server, the cached copy still resolves.
    std::fs::remove_file(charts.join("web-1.0.0.tgz")).unwrap();
    assert!(
        resolve_chart(&ctx, &repo, "web", "1.0.0", None)
            .await
            .is_ok()
    );
    // Uncached and gone: a pull error.
    std::fs::remove_file(charts.join("web-2.0.0-rc.1.tgz")).unwrap();
    let cache = plumb_controller::helmrepository::chart_cache(&ctx);
    let _ = std::fs::remove_dir_all(cache.dir());
    let e = resolve_chart(&ctx, &repo, "web", "2.0.0-rc.1", None)
        .await
        .unwrap_err();
    assert_eq!(
        (e.class, e.reason),
        (Class::Stalled, "ChartPullError"),
        "{e}"
    );

    std::fs::rename(tmp.path().join("index.yaml"), charts.join("index.yaml")).unwrap();
    // A new chart version: a requested reconcile stores a new artifact, the old one is
    // garbage-collected later by retention.
    package_chart(&charts, "web", "1.2.0");
    index_repo(&charts, None);
    let stamp = "now-1";
    api.patch(
        "charts",
        &PatchParams::default(),
        &Patch::Merge(
            json!({"metadata": {"annotations": {"reconcile.fluxcd.io/requestedAt": stamp}}}),
        ),
    )
    .await
    .unwrap();
    let old_rev = rev.to_string();
    let v = wait_obj(&api, "charts", "new revision", |v| {
        v["status"]["lastHandledReconcileAt"] == stamp
            && v["status"]["artifact"]["revision"] != old_rev.as_str()
    })
    .await;
    assert!(is_ready(&v));
    let repo = api.get("charts").await.unwrap();
    assert_eq!(
        resolve_chart(&ctx, &repo, "web", "", None)
            .await
            .unwrap()
            .version,
        "1.2.0"
    );
    let events = events_text(&client, &n).await;
    assert!(events.contains("NewArtifact"), "{events}");

    // Deletion runs the finalizer: the artifacts go.
    let dir = storage
        .join("artifacts/helmrepository")
        .join(&n)
        .join("charts");
    assert!(dir.is_dir());
    api.delete("charts", &DeleteParams::default())
        .await
        .unwrap();
    wait::poll("HelmRepository gone", Duration::from_secs(30), || {
        let api = api.clone();
        async move {
            api.get_opt("charts")
                .await
                .ok()
                .flatten()
                .is_none()
                .then_some(())
        }
    })
    .await
    .unwrap();
    assert!(!dir.exists(), "artifacts removed by the finalizer");
    ns.delete().await.unwrap();
}

#[tokio::test]
async fn failures_are_classified_and_never_leak_secrets() {
    let info = ControlPlane::shared().unwrap();
    let client = info.admin_client().await.unwrap();
    install_crds(&client).await;
    let ns = TestNamespace::create(info, "helmrepo-bad").await.unwrap();
    let n = ns.name().to_string();
    let tmp = tempfile::tempdir().unwrap();
    let charts = tmp.path().join("charts");
    chart_dir(&charts);
    let server = serve(
        &charts,
        HttpAuth::Basic {
            username: "helm".into(),
            password: PASSWORD.into(),
        },
    );
    let _ctx = start_plumb(info, &n, &tmp.path().join("storage")).await;
    let wrong = "Wrong-Pa55-do-not-leak";
    create_secret(&client, &n, "wrong", wrong).await;
    let api: Api<HelmRepository> = Api::namespaced(client.clone(), &n);
    let userinfo_url = server
        .url("/")
        .replace("://", "://helm:Url-Pa55-do-not-leak@");
    create_repo(
        &api,
        &n,
        "wrong-password",
        json!({"url": userinfo_url, "interval": "1h", "secretRef": {"name": "wrong"}}),
    )
    .await;
    create_repo(
        &api,
        &n,
        "unreachable",
        json!({"url": format!("http://127.0.0.1:{}/", free_port()), "interval": "1h", "timeout": "5s"}),
    )
    .await;
    create_repo(
        &api,
        &n,
        "oci",
        json!({"url": "oci://ghcr.io/example/charts", "type": "oci", "interval": "1h"}),
    )
    .await;
    create_repo(
        &api,
        &n,
        "no-secret",
        json!({"url": server.url("/"), "interval": "1h", "secretRef": {"name": "missing"}}),
    )
    .await;

    let has_status = |v: &Value| ready(v.get("status")).is_some();
    let v = wait_obj(&api, "wrong-password", "wrong password status", has_status).await;
    let (s, r, m) = condition(v.get("status"), "FetchFailed").unwrap_or_else(|| panic!("{v:#}"));
    assert_eq!(
        (s.as_str(), r.as_str()),
        ("True", "IndexationFailed"),
        "{m}"
    );
    assert!(m.contains("401"), "{m}");
    assert_eq!(ready(v.get("status")).unwrap().0, "False");
    assert_eq!(condition(v.get("status"), "Stalled").unwrap().0, "True");
    assert!(v["status"].get("artifact").is_none());

    let v = wait_obj(&api, "unreachable", "unreachable status", has_status).await;
    let (s, r, _) = condition(v.get("status"), "FetchFailed").unwrap();
    assert_eq!((s.as_str(), r.as_str()), ("True", "IndexationFailed"));
    assert_eq!(ready(v.get("status")).unwrap().0, "False");
    let (s, r, _) = condition(v.get("status"), "Reconciling").unwrap();
    assert_eq!((s.as_str(), r.as_str()), ("True", "ProgressingWithRetry"));
    assert!(condition(v.get("status"), "Stalled").is_none(), "transient");

    // An OCI HelmRepository has no index: Ready, without an artifact (as Flux).
    let v = wait_obj(&api, "oci", "oci status", has_status).await;
    let (s, _, m) = ready(v.get("status")).unwrap();
    assert_eq!(
        (s.as_str(), m.as_str()),
        ("True", "Helm repository is Ready")
    );
    assert!(v["status"].get("artifact").is_none());

    let v = wait_obj(&api, "no-secret", "missing secret status", has_status).await;
    let (_, r, m) = condition(v.get("status"), "FetchFailed").unwrap();
    assert_eq!(r, "AuthenticationFailed");
    assert!(m.contains("missing"), "{m}");

    // Neither the Secret's password nor URL userinfo appear in any status or event.
    let statuses: Vec<_> = api
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|r| r.status)
        .collect();
    let statuses = serde_json::to_string(&statuses).unwrap();
    let events = wait::poll("warning events", Duration::from_secs(30), || {
        let client = client.clone();
        let n = n.clone();
        async move {
            let t = events_text(&client, &n).await;
            t.contains("IndexationFailed").then_some(t)
        }
    })
    .await
    .unwrap();
    for text in [&statuses, &events] {
        assert!(!text.contains(wrong), "password leaked");
        assert!(
            !text.contains("Url-Pa55-do-not-leak"),
            "userinfo leaked: {text}"
        );
        assert!(!text.contains(PASSWORD));
    }
    ns.delete().await.unwrap();
}

#[tokio::test]
async fn suspend_and_requested_reconcile() {
    let info = ControlPlane::shared().unwrap();
    let client = info.admin_client().await.unwrap();
    install_crds(&client).await;
    let ns = TestNamespace::create(info, "helmrepo-suspend")
        .await
        .unwrap();
    let n = ns.name().to_string();
    let tmp = tempfile::tempdir().unwrap();
    let charts = tmp.path().join("charts");
    chart_dir(&charts);
    let server = serve(&charts, HttpAuth::Anonymous);
    let other = serve(&charts, HttpAuth::Anonymous);
    let _ctx = start_plumb(info, &n, &tmp.path().join("storage")).await;
    let api: Api<HelmRepository> = Api::namespaced(client.clone(), &n);
    create_repo(
        &api,
        &n,
        "suspended",
        json!({"url": server.url("/"), "interval": "1h", "suspend": true}),
    )
    .await;
    // Created after the suspended one: once it is Ready, the suspended one was seen too.
    create_repo(
        &api,
        &n,
        "active",
        json!({"url": other.url("/"), "interval": "1h"}),
    )
    .await;
    wait_obj(&api, "active", "active Ready", is_ready).await;
    // The finalizer shows the controller saw the suspended object.
    wait_obj(&api, "suspended", "finalizer on suspended", |v| {
        v["metadata"]["finalizers"]
            .as_array()
            .is_some_and(|f| !f.is_empty())
    })
    .await;
    let s = api.get("suspended").await.unwrap();
    let st = s.status.unwrap_or_default();
    assert!(
        st.conditions.is_empty() && st.artifact.is_none(),
        "a suspended repository is not fetched: {st:?}"
    );
    assert_eq!(server.count("index.yaml"), 0, "{:?}", server.requests());

    api.patch(
        "suspended",
        &PatchParams::default(),
        &Patch::Merge(json!({
            "metadata": {"annotations": {"reconcile.fluxcd.io/requestedAt": "t1"}},
            "spec": {"suspend": false}
        })),
    )
    .await
    .unwrap();
    let v = wait_obj(&api, "suspended", "resumed Ready", |v| {
        is_ready(v) && v["status"]["lastHandledReconcileAt"] == "t1"
    })
    .await;
    assert!(v["status"]["artifact"]["revision"].is_string());
    ns.delete().await.unwrap();
}
