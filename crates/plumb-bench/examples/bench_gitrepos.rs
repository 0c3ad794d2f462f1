//! Benchmark of the GitRepository controller at fleet scale: N GitRepositories (interval
//! 1m) against one local smart-HTTP git server, controllers in-process, a private local
//! control plane. Per round: time until all are Ready, time of one forced poll round
//! (`reconcile.fluxcd.io/requestedAt` on every object) and the process RSS after it; then
//! the process's peak RSS (VmHWM). Prints medians over the rounds.
//!
//! Run: `PLUMB_BENCH_N=500 PLUMB_BENCH_ROUNDS=3 cargo run --release -p plumb-bench --example bench_gitrepos`

#[path = "../../plumb-controller/tests/it/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use plumb_api::GitRepository;
use plumb_testing::git::{GitHttpServer, HttpAuth, TestRepo};
use plumb_testing::{ControlPlane, StartOptions, TestNamespace, wait};
use serde_json::json;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A field of /proc/self/status in KiB (`VmHWM`, `VmRSS`).
fn proc_kib(field: &str) -> u64 {
    let text = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Polls the list until `pred` holds for `n` objects; returns the elapsed time.
async fn until_all(
    api: &Api<GitRepository>,
    n: usize,
    what: &str,
    pred: impl Fn(&GitRepository) -> bool,
) -> Duration {
    let start = Instant::now();
    let pred = &pred;
    wait::poll(what, Duration::from_secs(1800), || async move {
        let list = api.list(&ListParams::default()).await.ok()?;
        (list.items.iter().filter(|g| pred(g)).count() >= n).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    start.elapsed()
}

fn is_ready(g: &GitRepository) -> bool {
    g.status
        .as_ref()
        .is_some_and(|s| plumb_api::conditions::is_ready(&s.conditions))
}

fn main() {
    let n = env_usize("PLUMB_BENCH_N", 500);
    let rounds = env_usize("PLUMB_BENCH_ROUNDS", 3).max(1);
    let cp = ControlPlane::start(StartOptions::default()).expect("local control plane");
    let info = cp.info().clone();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async move {
        let client = info.admin_client().await.expect("client");
        common::install_crds(&client).await;
        let ns = TestNamespace::create(&info, "bench").await.expect("namespace");
        let tmp = tempfile::tempdir().expect("tempdir");
        let repo = TestRepo::init(&tmp.path().join("repos"), "fleet");
        for i in 0..20 {
            repo.commit(
                &[(
                    &format!("apps/app{i}/cm.yaml"),
                    &format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: app{i}\n"),
                )],
                &format!("app {i}"),
            );
        }
        let server = GitHttpServer::start(&tmp.path().join("repos"), HttpAuth::Anonymous);
        let rss_before = proc_kib("VmRSS");
        common::start_plumb(&info, ns.name(), &tmp.path().join("storage")).await;
        let api: Api<GitRepository> = Api::namespaced(client.clone(), ns.name());
        let url = server.url("fleet");

        let (mut ready_s, mut poll_s, mut rss_mib) = (vec![], vec![], vec![]);
        for round in 0..rounds {
            let start = Instant::now();
            futures::stream::iter(0..n)
                .map(|i| {
                    let api = api.clone();
                    let obj: GitRepository = serde_json::from_value(json!({
                        "apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository",
                        "metadata": {"name": format!("r{round}-{i}")},
                        "spec": {"url": url, "interval": "1m", "ref": {"branch": "master"}},
                    }))
                    .expect("object");
                    async move { api.create(&PostParams::default(), &obj).await.map(|_| ()) }
                })
                .buffer_unordered(16)
                .try_collect::<()>()
                .await
                .expect("create");
            until_all(&api, n, "all Ready", is_ready).await;
            let ready = start.elapsed();

            let stamp = format!("round-{round}");
            let patch = json!({"metadata": {"annotations": {"reconcile.fluxcd.io/requestedAt": stamp}}});
            let start = Instant::now();
            futures::stream::iter(0..n)
                .map(|i| {
                    let api = api.clone();
                    let patch = patch.clone();
                    async move {
                        api.patch(&format!("r{round}-{i}"), &PatchParams::default(), &Patch::Merge(&patch))
                            .await
                            .map(|_| ())
                    }
                })
                .buffer_unordered(16)
                .try_collect::<()>()
                .await
                .expect("request reconcile");
            until_all(&api, n, "poll round handled", |g| {
                g.status.as_ref().is_some_and(|s| {
                    s.reconcile_request.last_handled_reconcile_at.as_deref() == Some(stamp.as_str())
                })
            })
            .await;
            let poll = start.elapsed();
            let rss = proc_kib("VmRSS") as f64 / 1024.0;
            println!(
                "round {round}: {n} Ready in {:.2}s, poll round {:.2}s, RSS {rss:.1} MiB",
                ready.as_secs_f64(),
                poll.as_secs_f64()
            );
            ready_s.push(ready.as_secs_f64());
            poll_s.push(poll.as_secs_f64());
            rss_mib.push(rss);

            api.delete_collection(&DeleteParams::default(), &ListParams::default())
                .await
                .expect("delete");
            wait::poll("all gone", Duration::from_secs(600), || async {
                api.list(&ListParams::default()).await.ok()?.items.is_empty().then_some(())
            })
            .await
            .expect("objects deleted");
        }
        let ready = median(&mut ready_s);
        println!(
            "median over {rounds} rounds, N={n}: all Ready {ready:.2}s ({:.1} objects/s), poll round {:.2}s, RSS after poll {:.1} MiB (before controllers {:.1} MiB), peak RSS (VmHWM) {:.1} MiB",
            n as f64 / ready,
            median(&mut poll_s),
            median(&mut rss_mib),
            rss_before as f64 / 1024.0,
            proc_kib("VmHWM") as f64 / 1024.0,
        );
        ns.delete().await.expect("namespace deleted");
        drop(server);
    });
    drop(cp);
}
