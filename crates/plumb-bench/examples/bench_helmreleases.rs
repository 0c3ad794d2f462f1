//! Benchmark of the HelmRelease controller at Flux's published scale: N HelmReleases
//! (default 1,000) of one small chart (a ConfigMap and a ClusterIP Service) from a
//! GitRepository, controllers in-process against the local control plane
//! (`PLUMB_TEST_ENV`, else a private one). Prints the time until all are Ready and the
//! process's peak RSS (VmHWM); then the upgrade of one release in a namespace holding 100
//! others: its time and the API requests the server counted meanwhile
//! (`apiserver_request_total`, minus the benchmark's own polling).
//!
//! With `PLUMB_BENCH_SOURCE=oci` the chart is `helm push`ed to a local registry (Debian's
//! `docker-registry`) and every release reads it through `chartRef: {kind: OCIRepository}`
//! (issue #15's scenario; Flux 2.9 publishes 4m39s and 361 MiB for 1,000, the target is 60 s).
//!
//! Run: `PLUMB_BENCH_N=1000 cargo run --release -p plumb-bench --example bench_helmreleases`

#[path = "../../plumb-controller/tests/it/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use plumb_api::{GitRepository, HelmRelease, OCIRepository};
use plumb_controller::{Config, Context, Scope};
use plumb_testing::git::{GitHttpServer, HttpAuth, TestRepo};
use plumb_testing::registry::{Registry, RegistryOptions};
use plumb_testing::{ControlPlane, TestNamespace, wait};
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

const CHART: &[(&str, &str)] = &[
    (
        "chart/Chart.yaml",
        "apiVersion: v2\nname: small\nversion: 1.0.0\nappVersion: \"1.0\"\n",
    ),
    ("chart/values.yaml", "msg: hello\nport: 80\n"),
    (
        "chart/templates/_helpers.tpl",
        "{{- define \"small.labels\" -}}\napp.kubernetes.io/name: {{ .Chart.Name }}\napp.kubernetes.io/instance: {{ .Release.Name }}\n{{- end }}\n",
    ),
    (
        "chart/templates/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}\n  labels:\n    {{- include \"small.labels\" . | nindent 4 }}\ndata:\n  msg: {{ .Values.msg | quote }}\n",
    ),
    (
        "chart/templates/svc.yaml",
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: {{ .Release.Name }}\n  labels:\n    {{- include \"small.labels\" . | nindent 4 }}\nspec:\n  ports:\n  - port: {{ .Values.port }}\n    protocol: TCP\n  selector:\n    {{- include \"small.labels\" . | nindent 4 }}\n",
    ),
];

fn is_ready(h: &HelmRelease) -> bool {
    h.status
        .as_ref()
        .is_some_and(|s| plumb_api::conditions::is_ready(&s.conditions))
}

/// Sum of `apiserver_request_total` over all series.
async fn request_total(client: &kube::Client) -> f64 {
    let req = http::Request::get("/metrics")
        .body(Vec::new())
        .expect("request");
    let text = client.request_text(req).await.unwrap_or_default();
    text.lines()
        .filter(|l| l.starts_with("apiserver_request_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Whether the chart comes from an OCI registry (`PLUMB_BENCH_SOURCE=oci`).
fn oci() -> bool {
    std::env::var("PLUMB_BENCH_SOURCE").is_ok_and(|v| v == "oci")
}

async fn create_all(api: &Api<HelmRelease>, ns: &str, names: &[String]) {
    let pp = PostParams::default();
    futures::future::join_all(names.iter().map(|name| {
        let mut spec = json!({"interval": "1h", "values": {"msg": name}});
        if oci() {
            spec["chartRef"] = json!({"kind": "OCIRepository", "name": "charts"});
        } else {
            spec["chart"] = json!({"spec": {"chart": "./chart",
                "sourceRef": {"kind": "GitRepository", "name": "charts"}}});
        }
        let hr: HelmRelease = serde_json::from_value(json!({
            "apiVersion": "helm.toolkit.fluxcd.io/v2", "kind": "HelmRelease",
            "metadata": {"name": name, "namespace": ns}, "spec": spec
        }))
        .expect("HelmRelease");
        let pp = &pp;
        async move { api.create(pp, &hr).await.expect("create HelmRelease") }
    }))
    .await;
}

async fn until_ready(api: &Api<HelmRelease>, n: usize) -> Duration {
    let start = Instant::now();
    wait::poll(
        "all HelmReleases Ready",
        Duration::from_secs(1800),
        || async move {
            let list = api.list(&ListParams::default()).await.ok()?;
            (list.items.iter().filter(|h| is_ready(h)).count() >= n).then_some(())
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    start.elapsed()
}

/// Starts a local registry and `helm push`es the benchmark chart (`<repo>/chart`) to
/// `oci://<registry>/charts/small`.
fn push_chart(repo: &std::path::Path) -> Registry {
    let reg = Registry::start(RegistryOptions::default()).expect("registry");
    let out = tempfile::tempdir().expect("tmp");
    let run = |args: &[&str]| {
        let o = std::process::Command::new("helm")
            .args(args)
            .env("HELM_REGISTRY_CONFIG", out.path().join("registry.json"))
            .output()
            .expect("helm (scripts/install-deps.sh)");
        assert!(
            o.status.success(),
            "helm {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    let dest = out.path().to_str().expect("utf-8");
    run(&[
        "package",
        repo.join("chart").to_str().expect("utf-8"),
        "-d",
        dest,
    ]);
    let tgz = out.path().join("small-1.0.0.tgz");
    let target = format!("oci://{}/charts", reg.host());
    run(&[
        "push",
        tgz.to_str().expect("utf-8"),
        &target,
        "--plain-http",
    ]);
    reg
}

fn main() {
    let n = env_usize("PLUMB_BENCH_N", 1000);
    let concurrency = env_usize("PLUMB_BENCH_CONCURRENCY", 16) as u16;
    let info = ControlPlane::shared().expect("local control plane").clone();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async move {
        let client = info.admin_client().await.expect("client");
        common::install_crds(&client).await;
        let ns_big = TestNamespace::create(&info, "bench-hr").await.expect("ns");
        let ns_small = TestNamespace::create(&info, "bench-hr-up").await.expect("ns");
        let tmp = tempfile::tempdir().expect("tmp");
        let repo = TestRepo::init(&tmp.path().join("repos"), "charts");
        repo.commit(CHART, "chart");
        let root = tmp.path().join("repos");
        let server = std::thread::spawn(move || GitHttpServer::start(&root, HttpAuth::Anonymous))
            .join()
            .expect("git server");

        // Controllers for all namespaces, as `plumb run` starts them.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let storage = tmp.path().join("storage");
        std::fs::create_dir_all(storage.join("artifacts")).expect("storage");
        tokio::spawn(plumb_source::server::serve_artifacts(
            listener,
            storage.join("artifacts"),
            std::future::pending(),
        ));
        let kc = kube::config::Kubeconfig::read_from(&info.kubeconfig).expect("kubeconfig");
        let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .expect("config");
        let ctx: Arc<Context> = Context::new(
            kube::Client::try_from(cfg.clone()).expect("client"),
            cfg,
            Config {
                storage_path: storage,
                storage_adv_addr: addr.to_string(),
                requeue_dependency: Duration::from_secs(1),
                ..Default::default()
            },
        );
        let before = proc_kib("VmRSS");
        tokio::spawn(plumb_controller::run(ctx, Scope::default(), concurrency));

        let registry = oci().then(|| push_chart(&repo.path));
        for ns in [ns_big.name(), ns_small.name()] {
            if let Some(reg) = &registry {
                let src: OCIRepository = serde_json::from_value(json!({
                    "apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "OCIRepository",
                    "metadata": {"name": "charts", "namespace": ns},
                    "spec": {"url": format!("oci://{}/charts/small", reg.host()), "interval": "1h",
                             "insecure": true, "ref": {"semver": ">=1.0.0"},
                             "layerSelector": {"mediaType": "application/vnd.cncf.helm.chart.content.v1.tar+gzip",
                                               "operation": "copy"}}
                }))
                .expect("OCIRepository");
                Api::<OCIRepository>::namespaced(client.clone(), ns)
                    .create(&PostParams::default(), &src)
                    .await
                    .expect("create OCIRepository");
                continue;
            }
            let git: GitRepository = serde_json::from_value(json!({
                "apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository",
                "metadata": {"name": "charts", "namespace": ns},
                "spec": {"url": server.url("charts"), "interval": "1h", "ref": {"branch": "master"}}
            }))
            .expect("GitRepository");
            Api::<GitRepository>::namespaced(client.clone(), ns)
                .create(&PostParams::default(), &git)
                .await
                .expect("create GitRepository");
        }

        // 1. N HelmReleases until all Ready.
        let api: Api<HelmRelease> = Api::namespaced(client.clone(), ns_big.name());
        let names: Vec<String> = (0..n).map(|i| format!("app-{i:04}")).collect();
        let start = Instant::now();
        create_all(&api, ns_big.name(), &names).await;
        let created = start.elapsed();
        let ready = until_ready(&api, n).await + created;
        println!(
            "N={n} HelmReleases, chart from {} (concurrency {concurrency}): all Ready in {:.1}s ({:.1} releases/s); RSS before controllers {:.1} MiB, now {:.1} MiB, peak (VmHWM) {:.1} MiB",
            if oci() { "an OCIRepository (chartRef)" } else { "a GitRepository" },
            ready.as_secs_f64(),
            n as f64 / ready.as_secs_f64(),
            before as f64 / 1024.0,
            proc_kib("VmRSS") as f64 / 1024.0,
            proc_kib("VmHWM") as f64 / 1024.0,
        );

        // 2. Upgrade of one release in a namespace with 100 others.
        let small: Api<HelmRelease> = Api::namespaced(client.clone(), ns_small.name());
        let names: Vec<String> = (0..101).map(|i| format!("svc-{i:03}")).collect();
        create_all(&small, ns_small.name(), &names).await;
        until_ready(&small, 101).await;
        // Let the post-install reconciles settle before counting.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let req_before = request_total(&client).await;
        let start = Instant::now();
        small
            .patch(
                "svc-000",
                &PatchParams::default(),
                &Patch::Merge(&json!({"spec": {"values": {"msg": "upgraded"}}})),
            )
            .await
            .expect("patch");
        let mut polls = 0u32;
        loop {
            polls += 1;
            let h = small.get("svc-000").await.expect("get");
            let upgraded = h.status.as_ref().is_some_and(|s| {
                s.history.first().is_some_and(|x| x.version == 2)
                    && plumb_api::conditions::is_ready(&s.conditions)
            });
            if upgraded {
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(120), "upgrade timed out");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let took = start.elapsed();
        // The server counts the metrics scrape itself, the patch and our polls too.
        let req_after = request_total(&client).await;
        let requests = req_after - req_before - f64::from(polls) - 2.0;
        println!(
            "upgrade of 1 release among 101 in a namespace: {:.0} ms, {requests:.0} API requests (apiserver_request_total delta minus the benchmark's {polls} polls)",
            took.as_secs_f64() * 1000.0
        );
        println!("peak RSS (VmHWM) {:.1} MiB", proc_kib("VmHWM") as f64 / 1024.0);
    });
}
