//! Notification fan-out on the local control plane: 10 `generic` Providers, each behind an
//! Alert on every Kustomization, one of them a service answering after 2 s. `EVENTS`
//! events are published the way reconciles publish them (`Dispatcher::publish`, which must
//! never wait), and the benchmark prints:
//! - the publish cost per event (what a reconcile pays), with and without the slow
//!   Provider;
//! - the time until the 9 fast services received every event, and the delivery
//!   throughput;
//! - what the slow service got by then and what its bounded queue dropped;
//! - the peak RSS of this process (controllers, sinks and driver).
//!
//! `PLUMB_TEST_ENV=... cargo run -p plumb-bench --example bench_notifications [EVENTS]`
#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark driver fails loudly

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{Api, PostParams};
use plumb_api::{Alert, Provider};
use plumb_controller::notification::{Dispatcher, Options, Origin};
use plumb_testing::webhook_sink::{Behaviour, WebhookSink};
use plumb_testing::{ControlPlane, TestNamespace, wait};
use serde_json::json;

/// Publishes `n` distinct events about Kustomization `ks` in `ns`; the time it took.
fn publish(d: &Dispatcher, ns: &str, ks: &str, n: usize) -> Duration {
    let obj = ObjectReference {
        api_version: Some("kustomize.toolkit.fluxcd.io/v1".into()),
        kind: Some("Kustomization".into()),
        name: Some(ks.into()),
        namespace: Some(ns.into()),
        ..Default::default()
    };
    let t = Instant::now();
    for i in 0..n {
        let origin = Origin {
            metadata: [("revision".to_string(), format!("main@sha1:{i:040x}"))].into(),
            ..Default::default()
        };
        d.publish(
            &obj,
            false,
            "ReconciliationSucceeded",
            &format!("ConfigMap/{ns}/c{i} configured"),
            origin,
        );
    }
    t.elapsed()
}

#[tokio::main]
async fn main() {
    let events: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1000);
    let info = ControlPlane::shared().expect("control plane");
    let client = info.admin_client().await.unwrap();
    plumb_bench::install_crds(&client).await.unwrap();
    let ns = TestNamespace::create(info, "bench-notify").await.unwrap();
    let n = ns.name().to_string();
    let kc = kube::config::Kubeconfig::read_from(&info.kubeconfig).unwrap();
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    let storage = tempfile::tempdir().unwrap();
    let ctx = plumb_controller::Context::new(
        kube::Client::try_from(cfg.clone()).unwrap(),
        cfg,
        plumb_controller::Config {
            storage_path: storage.path().to_path_buf(),
            ..Default::default()
        },
    );
    let d = ctx.memo::<Dispatcher>();
    d.set_options(Options {
        queue: 2 * events,
        retries: 0,
        ..Options::default()
    });
    let scope = plumb_controller::Scope {
        namespace: Some(n.clone()),
        label_selector: None,
    };
    tokio::spawn(plumb_controller::run(ctx.clone(), scope, 4));

    let mut sinks = Vec::new();
    for i in 0..10 {
        let delay = if i == 0 {
            Duration::from_secs(2)
        } else {
            Duration::ZERO
        };
        let sink = WebhookSink::start(Behaviour { status: 200, delay });
        let p: Provider = serde_json::from_value(json!({
            "apiVersion": "notification.toolkit.fluxcd.io/v1beta3", "kind": "Provider",
            "metadata": {"name": format!("p{i}"), "namespace": n},
            "spec": {"type": "generic", "address": sink.url("/"), "timeout": "5s"}}))
        .unwrap();
        Api::<Provider>::namespaced(client.clone(), &n)
            .create(&PostParams::default(), &p)
            .await
            .unwrap();
        let a: Alert = serde_json::from_value(json!({
            "apiVersion": "notification.toolkit.fluxcd.io/v1beta3", "kind": "Alert",
            "metadata": {"name": format!("p{i}"), "namespace": n},
            "spec": {"providerRef": {"name": format!("p{i}")},
                     "eventSources": [{"kind": "Kustomization", "name": "*"}]}}))
        .unwrap();
        Api::<Alert>::namespaced(client.clone(), &n)
            .create(&PostParams::default(), &a)
            .await
            .unwrap();
        sinks.push(sink);
    }
    let alerts: Api<Alert> = Api::namespaced(client.clone(), &n);
    wait::poll("alerts ready", Duration::from_secs(60), || async {
        let list = alerts.list(&Default::default()).await.ok()?;
        let ready = list.items.iter().filter(|a| {
            a.status.as_ref().is_some_and(|s| {
                s.conditions
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.status == "True")
            })
        });
        (ready.count() == 10).then_some(())
    })
    .await
    .unwrap();
    // The watch store the dispatcher reads catches up with the Ready statuses.
    wait::poll(
        "dispatcher sees the alerts",
        Duration::from_secs(30),
        || async {
            publish(&d, &n, "warmup", 1);
            (sinks[1].received().len() == 1).then_some(())
        },
    )
    .await
    .unwrap();

    // Without the slow provider in play: a Kustomization no Alert... every Alert matches
    // every Kustomization, so the baseline publishes while notifications are off.
    let t_off = {
        let off = plumb_controller::Context::new(
            info.admin_client().await.unwrap(),
            kube::Config::new("http://127.0.0.1:9".parse().unwrap()),
            plumb_controller::Config {
                storage_path: storage.path().join("off"),
                ..Default::default()
            },
        );
        publish(&off.memo::<Dispatcher>(), &n, "apps", events)
    };
    let start = Instant::now();
    let t_on = publish(&d, &n, "apps", events);
    let fast_done = wait::poll(
        "fast providers received every event",
        Duration::from_secs(300),
        || async {
            sinks[1..]
                .iter()
                .all(|s| s.received().len() > events)
                .then_some(start.elapsed())
        },
    )
    .await
    .unwrap();
    let slow = sinks[0].received().len().saturating_sub(1);
    let key0 = format!("{n}/p0");
    println!("events: {events} to 10 providers (1 answering after 2 s)");
    println!(
        "publish per event (reconcile cost): {:.2} us with providers, {:.2} us with notifications off",
        t_on.as_secs_f64() * 1e6 / events as f64,
        t_off.as_secs_f64() * 1e6 / events as f64
    );
    println!(
        "9 fast providers received all {events} in {:.2} s: {:.0} deliveries/s",
        fast_done.as_secs_f64(),
        (9 * events) as f64 / fast_done.as_secs_f64()
    );
    println!(
        "slow provider by then: {slow} received, {} dropped by its queue",
        ctx.metrics.notification_count(&key0, "dropped")
    );
    println!("peak RSS: {} MiB", plumb_bench::vm_hwm_kib() / 1024);
    ns.delete().await.unwrap();
}
