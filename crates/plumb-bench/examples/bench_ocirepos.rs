//! Benchmark of the OCIRepository controller at fleet scale (issue #15's scenario): N
//! OCIRepositories of one artifact in a local registry (Debian's `docker-registry`),
//! controllers in-process, the shared or a private control plane. Prints the time until
//! all are Ready, the time of one forced poll round (`requestedAt` on every object), the
//! registry requests that round cost (manifest requests and blob downloads, from the
//! registry's access log) and the peak RSS of this process. Flux 2.8 publishes 1m25s and
//! 67 MiB for 1,000 OCIRepositories (flux-benchmark); the targets are 30 s and 100 MiB, and
//! an unchanged poll costs one manifest request and no blob download.
//!
//! Run: `PLUMB_BENCH_N=1000 PLUMB_CONCURRENT=16 cargo run --release -p plumb-bench --example bench_ocirepos`
//! (`PLUMB_CONCURRENT`: workers per kind, as `plumb run --concurrent`; 4 by default).

#[path = "../../plumb-controller/tests/it/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use plumb_api::OCIRepository;
use plumb_source::oci::{self, Client, ClientOptions, PushMeta};
use plumb_testing::registry::{Registry, RegistryOptions};
use plumb_testing::{ControlPlane, TestNamespace, wait};
use serde_json::json;

fn peak_rss_mib() -> f64 {
    let text = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

/// (manifest requests, blob downloads) in the registry's access log so far (its
/// Apache-style lines: `"METHOD /path HTTP/1.1"`; the request log repeats each URI).
fn registry_requests(reg: &Registry) -> (usize, usize) {
    let log = reg.log();
    let manifests = ["\"HEAD", "\"GET"]
        .iter()
        .map(|m| log.matches(&format!("{m} /v2/fleet/manifests/")).count())
        .sum();
    let blobs = log.matches("\"GET /v2/fleet/blobs/").count();
    (manifests, blobs)
}

/// Polls the list until `pred` holds for `n` objects; returns the elapsed time.
async fn until_all(
    api: &Api<OCIRepository>,
    n: usize,
    what: &str,
    pred: impl Fn(&OCIRepository) -> bool,
) -> Duration {
    let start = Instant::now();
    let pred = &pred;
    wait::poll(what, Duration::from_secs(1800), || async move {
        let list = api.list(&ListParams::default()).await.ok()?;
        (list.items.iter().filter(|o| pred(o)).count() >= n).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    start.elapsed()
}

fn push_fleet(reg: &Registry) {
    let dir = tempfile::tempdir().expect("tempdir");
    for i in 0..20 {
        let p = dir.path().join(format!("apps/app{i}/cm.yaml"));
        std::fs::create_dir_all(p.parent().expect("parent")).expect("dir");
        std::fs::write(
            p,
            format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: app{i}\n"),
        )
        .expect("write");
    }
    let opts = ClientOptions {
        insecure: true,
        ..Default::default()
    };
    let url = reg.oci_url("fleet:v1");
    let client = Client::new(&oci::parse_url(&url).expect("url"), &opts).expect("client");
    let meta = PushMeta {
        source: Some("https://github.com/example/fleet".into()),
        revision: Some("main@sha1:0123".into()),
        ..Default::default()
    };
    client.push_artifact(dir.path(), &meta).expect("push");
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::var("PLUMB_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let info = ControlPlane::shared().expect("control plane");
    let client = info.admin_client().await.expect("client");
    common::install_crds(&client).await;
    let ns = TestNamespace::create(info, "bench-oci")
        .await
        .expect("namespace");
    let reg = tokio::task::spawn_blocking(|| {
        let reg = Registry::start(RegistryOptions::default()).expect("registry");
        push_fleet(&reg);
        reg
    })
    .await
    .expect("registry");
    let tmp = tempfile::tempdir().expect("tempdir");
    common::start_plumb(info, ns.name(), &tmp.path().join("storage")).await;
    let api: Api<OCIRepository> = Api::namespaced(client.clone(), ns.name());
    let url = reg.oci_url("fleet");

    let start = Instant::now();
    futures::stream::iter(0..n)
        .map(|i| {
            let api = api.clone();
            let obj: OCIRepository = serde_json::from_value(json!({
                "apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "OCIRepository",
                "metadata": {"name": format!("app-{i}")},
                "spec": {"url": url, "ref": {"tag": "v1"}, "insecure": true, "interval": "1h"},
            }))
            .expect("object");
            async move { api.create(&PostParams::default(), &obj).await.map(|_| ()) }
        })
        .buffer_unordered(16)
        .try_collect::<()>()
        .await
        .expect("create");
    until_all(&api, n, "all Ready", |o| {
        o.status
            .as_ref()
            .is_some_and(|s| plumb_api::conditions::is_ready(&s.conditions))
    })
    .await;
    let ready = start.elapsed();

    let (m0, b0) = registry_requests(&reg);
    let patch = json!({"metadata": {"annotations": {"reconcile.fluxcd.io/requestedAt": "poll"}}});
    let start = Instant::now();
    futures::stream::iter(0..n)
        .map(|i| {
            let (api, patch) = (api.clone(), patch.clone());
            async move {
                let p = Patch::Merge(&patch);
                api.patch(&format!("app-{i}"), &PatchParams::default(), &p)
                    .await
                    .map(|_| ())
            }
        })
        .buffer_unordered(16)
        .try_collect::<()>()
        .await
        .expect("request reconcile");
    until_all(&api, n, "poll round handled", |o| {
        o.status.as_ref().is_some_and(|s| {
            s.reconcile_request.last_handled_reconcile_at.as_deref() == Some("poll")
        })
    })
    .await;
    let poll = start.elapsed();
    let (m1, b1) = registry_requests(&reg);

    let workers = std::env::var("PLUMB_CONCURRENT").unwrap_or_else(|_| "4".into());
    println!("ocirepositories           {n} (one artifact, 20 files), {workers} workers");
    println!(
        "all Ready after           {:.1} s   (Flux 2.8: 85 s; target 30 s)",
        ready.as_secs_f64()
    );
    println!("poll round                {:.1} s", poll.as_secs_f64());
    println!(
        "poll round registry cost  {} manifest requests, {} blob downloads (target {n}, 0)",
        m1 - m0,
        b1 - b0
    );
    println!(
        "peak RSS                  {:.1} MiB   (Flux 2.8: 67 MiB; target 100 MiB)",
        peak_rss_mib()
    );
    ns.delete().await.expect("namespace deleted");
    drop(reg);
}
