//! Flux's published scenario on the local control plane: 1,000 Kustomizations, each
//! applying 4 objects from one GitRepository. Prints the time until all are Ready, the
//! peak RSS of this process (plumb's controllers, the git and artifact servers and this
//! driver), and the API requests of a second, no-op pass (counted by a tower layer on the
//! controllers' client). Flux publishes 4m13s and 223 MiB; plumb's targets are 30 s,
//! 100 MiB and at most 1 request per object.
//!
//! `PLUMB_TEST_ENV=... cargo run --release -p plumb-bench --example bench_kustomizations [N]`
#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark driver fails loudly

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kube::api::{Api, ListParams, PostParams};
use plumb_api::{GitRepository, Kustomization};
use plumb_testing::git::{GitHttpServer, HttpAuth, TestRepo};
use plumb_testing::{ControlPlane, TestNamespace};
use serde_json::json;

const OBJECTS: &str = "apiVersion: v1
kind: ConfigMap
metadata:
  name: config
data:
  level: info
---
apiVersion: v1
kind: Secret
metadata:
  name: token
stringData:
  token: not-a-secret
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: reader
rules:
- apiGroups: [\"\"]
  resources: [configmaps]
  verbs: [get, list]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: reader
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: Role
  name: reader
subjects:
- kind: User
  name: nobody
";

#[derive(Default)]
struct Counter {
    total: AtomicU64,
    by_method: Mutex<BTreeMap<String, u64>>,
}

async fn ready_count(api: &Api<Kustomization>) -> usize {
    let Ok(list) = api.list(&ListParams::default()).await else {
        return 0;
    };
    list.items
        .iter()
        .filter(|k| {
            k.status.as_ref().is_some_and(|s| {
                s.conditions
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.status == "True")
            })
        })
        .count()
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1000);
    let info = ControlPlane::shared().expect("control plane");
    let admin = info.admin_client().await.unwrap();
    plumb_bench::install_crds(&admin).await.unwrap();
    let ns = TestNamespace::create(info, "bench-ks").await.unwrap();
    let name = ns.name().to_string();

    let tmp = tempfile::tempdir().unwrap();
    let repo = TestRepo::init(&tmp.path().join("repos"), "fleet");
    repo.commit(
        &[
            ("app/kustomization.yaml", "resources:\n- objects.yaml\n"),
            ("app/objects.yaml", OBJECTS),
        ],
        "app",
    );
    let root = tmp.path().join("repos");
    let server = std::thread::spawn(move || GitHttpServer::start(&root, HttpAuth::Anonymous))
        .join()
        .unwrap();

    // plumb, with a client that counts every request it sends.
    let counter = Arc::new(Counter::default());
    let kc = kube::config::Kubeconfig::read_from(&info.kubeconfig).unwrap();
    let mut cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    // Enough client-side rate for 1,000 objects a second.
    cfg.read_timeout = Some(Duration::from_secs(60));
    let c = counter.clone();
    let layer = tower::util::MapRequestLayer::new(move |req: http::Request<kube::client::Body>| {
        c.total.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut m) = c.by_method.lock() {
            let watch = req.uri().query().is_some_and(|q| q.contains("watch=true"));
            let key = format!("{}{}", req.method(), if watch { " (watch)" } else { "" });
            *m.entry(key).or_default() += 1;
        }
        req
    });
    let client = kube::client::ClientBuilder::try_from(cfg.clone())
        .unwrap()
        .with_layer(&layer)
        .build();
    let ctx = plumb_bench::context(client, cfg, &tmp.path().join("storage")).await;
    let scope = plumb_controller::Scope {
        namespace: Some(name.clone()),
        label_selector: None,
    };
    let workers = 20;
    let controllers = tokio::spawn(plumb_controller::run(ctx.clone(), scope.clone(), workers));

    let git: GitRepository = serde_json::from_value(json!({
        "apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository",
        "metadata": {"name": "fleet", "namespace": name},
        "spec": {"url": server.url("fleet"), "interval": "1h", "ref": {"branch": "master"}}
    }))
    .unwrap();
    Api::<GitRepository>::namespaced(admin.clone(), &name)
        .create(&PostParams::default(), &git)
        .await
        .unwrap();

    let ks_api: Api<Kustomization> = Api::namespaced(admin.clone(), &name);
    let start = Instant::now();
    let items = (0..n).map(|i| {
        let spec = json!({"interval": "1h", "path": "./app", "prune": true,
                          "targetNamespace": name, "namePrefix": format!("app-{i}-"),
                          "sourceRef": {"kind": "GitRepository", "name": "fleet"}});
        (format!("app-{i}"), spec)
    });
    plumb_bench::create_kustomizations(&ks_api, items).await;
    let created = start.elapsed();
    let mut last = 0;
    loop {
        let ready = ready_count(&ks_api).await;
        if ready != last {
            eprintln!("{:>6.1}s  {ready}/{n} ready", start.elapsed().as_secs_f64());
            last = ready;
        }
        if ready == n {
            break;
        }
        if start.elapsed() > Duration::from_secs(900) {
            panic!("only {ready}/{n} Ready after 15 minutes");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let all_ready = start.elapsed();
    let first_pass = counter.total.load(Ordering::Relaxed);

    // The no-op pass: restart the controllers on the same context (the applier keeps its
    // memory, as a running plumb does between intervals); every Kustomization is
    // reconciled once more with nothing to change.
    controllers.abort();
    let _ = controllers.await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    counter.total.store(0, Ordering::Relaxed);
    counter.by_method.lock().unwrap().clear();
    let pass_start = Instant::now();
    let controllers = tokio::spawn(plumb_controller::run(ctx.clone(), scope, workers));
    let mut prev = u64::MAX;
    let mut quiet = 0;
    while quiet < 6 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = counter.total.load(Ordering::Relaxed);
        if now == prev {
            quiet += 1;
        } else {
            quiet = 0;
            prev = now;
        }
    }
    let pass = pass_start.elapsed() - Duration::from_secs(3);
    let noop = counter.total.load(Ordering::Relaxed);
    let by_method = counter.by_method.lock().unwrap().clone();
    controllers.abort();

    let objects = n * 4;
    println!("kustomizations            {n} ({objects} objects), {workers} workers");
    println!("created in                {:.1} s", created.as_secs_f64());
    println!(
        "all Ready after           {:.1} s   (Flux: 253 s; target 30 s)",
        all_ready.as_secs_f64()
    );
    println!("requests, first pass      {first_pass}");
    println!(
        "peak RSS (VmHWM)          {:.1} MiB (Flux: 223 MiB; target 100 MiB; whole process)",
        plumb_bench::vm_hwm_kib() as f64 / 1024.0
    );
    println!(
        "no-op pass                {noop} requests in {:.1} s = {:.3} per object (target <= 1)",
        pass.as_secs_f64(),
        noop as f64 / objects as f64
    );
    println!("no-op pass by method      {by_method:?}");
    drop(ctx);
    // Let the namespace go: the controllers are stopped, so drop the finalizers.
    let unfinalize = json!({"metadata": {"finalizers": null}});
    let pp = kube::api::PatchParams::default();
    for k in ks_api.list(&ListParams::default()).await.unwrap() {
        let k_name = k.metadata.name.unwrap();
        let _ = ks_api
            .patch(&k_name, &pp, &kube::api::Patch::Merge(&unfinalize))
            .await;
    }
    let _ = Api::<GitRepository>::namespaced(admin.clone(), &name)
        .patch("fleet", &pp, &kube::api::Patch::Merge(&unfinalize))
        .await;
    let _ = ns.delete().await;
}
