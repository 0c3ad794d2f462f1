//! Operations against the real API server: metrics scraped after a real reconcile, and
//! leader election between two in-process replicas.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, PostParams};
use plumb_api::{GitRepository, Kustomization};
use plumb_controller::leader::{Ended, LeaderConfig, Role, run_elected};
use plumb_controller::metrics::Metrics;
use plumb_controller::{Config, Context, Scope};
use plumb_testing::git::{GitHttpServer, HttpAuth, TestRepo};
use plumb_testing::{ControlPlane, TestNamespace, wait};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::{install_crds, ready, wait_obj};

/// Parses the Prometheus text format into series (`name{labels}`) and values.
fn parse(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').expect("a sample line");
            (series.to_string(), value.parse::<f64>().expect("a number"))
        })
        .collect()
}

async fn scrape(addr: std::net::SocketAddr) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    body.to_string()
}

#[tokio::test]
async fn metrics_after_a_real_reconcile() {
    let info = ControlPlane::shared().unwrap();
    let client = info.admin_client().await.unwrap();
    install_crds(&client).await;
    let ns = TestNamespace::create(info, "metrics").await.unwrap();
    let n = ns.name().to_string();

    let tmp = tempfile::tempdir().unwrap();
    let repo = TestRepo::init(&tmp.path().join("repos"), "fleet");
    repo.commit(
        &[
            ("deploy/kustomization.yaml", "resources:\n- a.yaml\n"),
            (
                "deploy/a.yaml",
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n",
            ),
        ],
        "initial",
    );
    let root = tmp.path().join("repos");
    let server = std::thread::spawn(move || GitHttpServer::start(&root, HttpAuth::Anonymous))
        .join()
        .unwrap();

    // plumb as `plumb run` wires it: the counting, rate-limited client and shared metrics.
    let storage = tmp.path().join("storage");
    let artifacts = storage.join("artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let art = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let art_addr = art.local_addr().unwrap();
    tokio::spawn(plumb_source::server::serve_artifacts(
        art,
        artifacts,
        std::future::pending(),
    ));
    let kc = kube::config::Kubeconfig::read_from(&info.kubeconfig).unwrap();
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    let metrics = Arc::new(Metrics::new());
    let plumb_client =
        plumb_controller::client::build(cfg.clone(), Default::default(), metrics.clone()).unwrap();
    let ctx = Context::with_metrics(
        plumb_client,
        cfg,
        Config {
            storage_path: storage.clone(),
            storage_adv_addr: art_addr.to_string(),
            ..Default::default()
        },
        metrics.clone(),
    );
    let scope = Scope {
        namespace: Some(n.clone()),
        label_selector: None,
    };
    tokio::spawn(plumb_controller::run(ctx, scope, 2));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(plumb_controller::metrics::serve(listener, metrics));

    let git_api: Api<GitRepository> = Api::namespaced(client.clone(), &n);
    let gitrepo: GitRepository = serde_json::from_value(json!({
        "apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository",
        "metadata": {"name": "fleet", "namespace": n},
        "spec": {"url": server.url("fleet"), "interval": "1h", "ref": {"branch": "master"}}
    }))
    .unwrap();
    git_api
        .create(&PostParams::default(), &gitrepo)
        .await
        .unwrap();
    let ks_api: Api<Kustomization> = Api::namespaced(client.clone(), &n);
    let ks: Kustomization = serde_json::from_value(json!({
        "apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
        "metadata": {"name": "app", "namespace": n},
        "spec": {"interval": "1h", "path": "./deploy", "prune": true, "targetNamespace": n,
                 "sourceRef": {"kind": "GitRepository", "name": "fleet"}}
    }))
    .unwrap();
    ks_api.create(&PostParams::default(), &ks).await.unwrap();
    let v = wait_obj(&ks_api, "app", "applied", |v| {
        ready(v.get("status")).is_some_and(|r| r.0 == "True")
    })
    .await;
    let rev = v["status"]["lastAppliedRevision"].as_str().unwrap();

    let ks_labels = format!(r#"kind="Kustomization",name="app",namespace="{n}""#);
    let info_series = format!(
        r#"plumb_resource_info{{{ks_labels},ready="True",suspended="false",revision="{rev}"}}"#
    );
    // The status is written before the outcome is recorded: poll the scrape.
    let samples = wait::poll(
        "metrics of the reconcile",
        Duration::from_secs(30),
        || async {
            let s = parse(&scrape(addr).await);
            s.contains_key(&info_series).then_some(s)
        },
    )
    .await
    .unwrap();
    let get = |k: &str| {
        *samples
            .get(k)
            .unwrap_or_else(|| panic!("no {k} in {samples:#?}"))
    };
    assert_eq!(get(&info_series), 1.0);
    assert!(
        get(&format!(
            "gotk_reconcile_duration_seconds_count{{{ks_labels}}}"
        )) >= 1.0
    );
    assert_eq!(
        get(&format!(
            r#"gotk_reconcile_condition{{{ks_labels},type="Ready",status="True"}}"#
        )),
        1.0
    );
    assert_eq!(
        get(&format!(
            r#"gotk_reconcile_condition{{{ks_labels},type="Ready",status="False"}}"#
        )),
        0.0
    );
    assert!(
        get(
            r#"plumb_reconcile_total{kind="Kustomization",result="success",reason="ReconciliationSucceeded"}"#
        ) >= 1.0
    );
    assert!(
        get(r#"plumb_reconcile_total{kind="GitRepository",result="success",reason="Succeeded"}"#)
            >= 1.0
    );
    assert!(get(r#"plumb_applied_objects_total{kind="Kustomization",action="created"}"#) >= 1.0);
    assert!(get(r#"plumb_git_fetch_duration_seconds_count{result="success"}"#) >= 1.0);
    assert!(get(r#"plumb_kube_api_requests_total{verb="PATCH",code="200"}"#) >= 1.0);
    assert!(get(r#"plumb_kube_api_requests_total{verb="WATCH",code="200"}"#) >= 1.0);
}

/// Roles seen by one elector.
#[derive(Default, Clone)]
struct Seen(Arc<Mutex<Vec<Role>>>);

impl Seen {
    fn last(&self) -> Option<Role> {
        self.0.lock().unwrap().last().copied()
    }
}

#[tokio::test]
async fn standby_takes_over_when_the_leader_stops() {
    let info = ControlPlane::shared().unwrap();
    let client = info.admin_client().await.unwrap();
    let ns = TestNamespace::create(info, "leader").await.unwrap();
    let n = ns.name().to_string();
    let cfg = |id: &str| LeaderConfig {
        lease_duration: Duration::from_secs(3),
        retry_period: Duration::from_secs(1),
        ..LeaderConfig::new("plumb-leader-election", &n, id)
    };

    let (stop_a, stopped_a) = tokio::sync::oneshot::channel::<()>();
    let seen_a = Seen::default();
    let a = {
        let (client, cfg, seen) = (client.clone(), cfg("a"), seen_a.clone());
        tokio::spawn(async move {
            run_elected(
                client,
                &cfg,
                move |r| seen.0.lock().unwrap().push(r),
                async move {
                    let _ = stopped_a.await;
                },
                std::future::pending(),
            )
            .await
        })
    };
    wait::poll("a leads", Duration::from_secs(30), || async {
        (seen_a.last() == Some(Role::Leader)).then_some(())
    })
    .await
    .unwrap();

    let seen_b = Seen::default();
    let (stop_b, stopped_b) = tokio::sync::oneshot::channel::<()>();
    let b = {
        let (client, cfg, seen) = (client.clone(), cfg("b"), seen_b.clone());
        tokio::spawn(async move {
            run_elected(
                client,
                &cfg,
                move |r| seen.0.lock().unwrap().push(r),
                async move {
                    let _ = stopped_b.await;
                },
                std::future::pending(),
            )
            .await
        })
    };
    wait::poll("b stands by", Duration::from_secs(30), || async {
        (seen_b.last() == Some(Role::Standby)).then_some(())
    })
    .await
    .unwrap();
    // b stays standby while a renews, over more than one lease duration.
    let held = wait::poll(
        "b never leads while a renews",
        Duration::from_secs(5),
        || async { (seen_b.last() == Some(Role::Leader)).then_some(()) },
    )
    .await;
    assert!(held.is_err(), "b took the lease while a held it");
    let leases: Api<Lease> = Api::namespaced(client.clone(), &n);
    let holder = |l: Lease| l.spec.and_then(|s| s.holder_identity);
    assert_eq!(
        holder(leases.get("plumb-leader-election").await.unwrap()).as_deref(),
        Some("a")
    );

    // a stops gracefully: it releases the lease and b takes over.
    stop_a.send(()).unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(30), a)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(ended, Ended::Finished);
    wait::poll("b leads", Duration::from_secs(30), || async {
        (seen_b.last() == Some(Role::Leader)).then_some(())
    })
    .await
    .unwrap();
    assert_eq!(
        holder(leases.get("plumb-leader-election").await.unwrap()).as_deref(),
        Some("b")
    );
    stop_b.send(()).unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(30), b)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(ended, Ended::Finished);
}

#[tokio::test]
async fn invalid_lease_timing_is_an_error() {
    let info = ControlPlane::shared().unwrap();
    let client = info.admin_client().await.unwrap();
    let cfg = LeaderConfig {
        lease_duration: Duration::from_secs(5),
        retry_period: Duration::from_secs(5),
        ..LeaderConfig::new("x", "default", "a")
    };
    let err = run_elected(client, &cfg, |_| {}, async {}, async {})
        .await
        .unwrap_err();
    assert!(err.to_string().contains("retry period"), "{err}");
}

/// A repeated outcome is published as one events.k8s.io/v1 Event with a series (a merge
/// patch), which the 1.20 API server accepts.
#[tokio::test]
async fn repeated_events_become_a_series() {
    use k8s_openapi::api::core::v1::ConfigMap;
    use k8s_openapi::api::events::v1::Event as K8sEvent;
    use kube::Resource;
    use kube::runtime::events::{Event, EventType, Recorder, Reporter};
    let info = ControlPlane::shared().unwrap();
    let client = info.admin_client().await.unwrap();
    let ns = TestNamespace::create(info, "events").await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns.name());
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "x"}})).unwrap();
    let cm = cms.create(&PostParams::default(), &cm).await.unwrap();
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "plumb".into(),
            instance: None,
        },
    );
    let ev = Event {
        type_: EventType::Warning,
        reason: "ReconciliationFailed".into(),
        note: Some("the same failure".into()),
        action: "Reconcile".into(),
        secondary: None,
    };
    for _ in 0..3 {
        recorder.publish(&ev, &cm.object_ref(&())).await.unwrap();
    }
    let events: Api<K8sEvent> = Api::namespaced(client.clone(), ns.name());
    let list = events.list(&Default::default()).await.unwrap();
    let ours: Vec<_> = list
        .items
        .iter()
        .filter(|e| e.reason.as_deref() == Some("ReconciliationFailed"))
        .collect();
    assert_eq!(ours.len(), 1, "{ours:#?}");
    assert_eq!(ours[0].series.as_ref().map(|s| s.count), Some(3));
}
