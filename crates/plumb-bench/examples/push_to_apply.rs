//! Measures the time from a git push to the applied object, through a Receiver webhook and
//! through polling (GitRepository interval 10s). Prints medians over several pushes.
//!
//! `PLUMB_TEST_ENV=/path/env.json cargo run -p plumb-bench --example push_to_apply [pushes]`
//! (without `PLUMB_TEST_ENV` a private control plane is started).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a measurement tool: fail loudly

#[path = "../../plumb-controller/tests/it/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams};
use plumb_api::{GitRepository, Kustomization, Receiver};
use plumb_bench::cm;
use plumb_controller::receiver;
use plumb_testing::git::{GitHttpServer, HttpAuth, TestRepo};
use plumb_testing::{ControlPlane, TestNamespace, wait};
use serde_json::json;

fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    xs[xs.len() / 2]
}

async fn wait_value(api: &Api<ConfigMap>, name: &str, v: usize, timeout: Duration) -> Duration {
    let t0 = Instant::now();
    wait::poll("push applied", timeout, || {
        let api = api.clone();
        let want = v.to_string();
        async move {
            let c = api.get(name).await.ok()?;
            (c.data?.get("v")? == &want).then_some(())
        }
    })
    .await
    .expect("push applied");
    t0.elapsed()
}

#[tokio::main]
async fn main() {
    let pushes: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(5);
    let info = ControlPlane::shared().unwrap();
    let client = info.admin_client().await.unwrap();
    common::install_crds(&client).await;
    let ns = TestNamespace::create(info, "push-bench").await.unwrap();
    let n = ns.name().to_string();
    let pp = PostParams::default();

    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("repos");
    let hook_repo = TestRepo::init(&root, "hook");
    let poll_repo = TestRepo::init(&root, "poll");
    for (repo, name) in [(&hook_repo, "hooked"), (&poll_repo, "polled")] {
        repo.commit(
            &[
                ("deploy/kustomization.yaml", "resources:\n- cm.yaml\n"),
                ("deploy/cm.yaml", &cm(name, 0)),
            ],
            "initial",
        );
    }
    let server = std::thread::spawn(move || GitHttpServer::start(&root, HttpAuth::Anonymous))
        .join()
        .unwrap();
    let ctx = common::start_plumb(info, &n, &tmp.path().join("storage")).await;
    let hook_addr = plumb_bench::serve_receiver(ctx, &client, &n).await;
    let token = plumb_bench::RECEIVER_TOKEN;
    let git: Api<GitRepository> = Api::namespaced(client.clone(), &n);
    let ks: Api<Kustomization> = Api::namespaced(client.clone(), &n);
    for (name, interval) in [("hook", "1h"), ("poll", "10s")] {
        git.create(
            &pp,
            &serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": n},
                "spec": {"url": server.url(name), "interval": interval, "ref": {"branch": "master"}}
            }))
            .unwrap(),
        )
        .await
        .unwrap();
        ks.create(
            &pp,
            &serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": n},
                "spec": {"interval": "1h", "path": "./deploy", "prune": true, "targetNamespace": n,
                         "sourceRef": {"kind": "GitRepository", "name": name}}
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    }
    let rcv: Api<Receiver> = Api::namespaced(client.clone(), &n);
    rcv.create(
        &pp,
        &serde_json::from_value(json!({
            "metadata": {"name": "github", "namespace": n},
            "spec": {"type": "github", "events": ["push"], "secretRef": {"name": "token"},
                     "resources": [{"kind": "GitRepository", "name": "hook"}]}
        }))
        .unwrap(),
    )
    .await
    .unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &n);
    wait_value(&cms, "hooked", 0, Duration::from_secs(60)).await;
    wait_value(&cms, "polled", 0, Duration::from_secs(60)).await;
    let path = rcv.get("github").await.unwrap().webhook_path(token);
    common::wait_obj(&rcv, "github", "receiver ready", |v| {
        v["status"]["webhookPath"] == path.as_str()
    })
    .await;

    let body = r#"{"ref":"refs/heads/master"}"#;
    let sig = receiver::sign("sha256", token, body.as_bytes()).unwrap();
    let mut hooked = Vec::new();
    for i in 1..=pushes {
        hook_repo.commit(&[("deploy/cm.yaml", &cm("hooked", i))], "push");
        let t0 = Instant::now();
        assert_eq!(
            plumb_bench::post_push(hook_addr, &path, &sig, body).await,
            200
        );
        wait_value(&cms, "hooked", i, Duration::from_secs(30)).await;
        hooked.push(t0.elapsed());
    }
    let mut polled = Vec::new();
    for i in 1..=pushes {
        // Pushes arrive at a random point of the polling cycle, not right after a poll.
        let arrival = Duration::from_millis(rand::random_range(0..10_000));
        tokio::time::sleep(arrival).await;
        poll_repo.commit(&[("deploy/cm.yaml", &cm("polled", i))], "push");
        polled.push(wait_value(&cms, "polled", i, Duration::from_secs(60)).await);
    }
    let (h, p) = (median(hooked.clone()), median(polled.clone()));
    println!("push → applied over {pushes} pushes each");
    println!("  receiver (interval 1h):  median {h:?}  all {hooked:?}");
    println!("  polling  (interval 10s): median {p:?}  all {polled:?}");
    println!(
        "  ratio polling/receiver: {:.1}x",
        p.as_secs_f64() / h.as_secs_f64()
    );
    ns.delete().await.unwrap();
}
