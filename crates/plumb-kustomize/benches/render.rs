//! In-process render benchmark of a large synthetic overlay (about 2,000 objects with patches,
//! generators and a name prefix). Prints the median and spread of `plumb_kustomize::build`.
//!
//! `PLUMB_BENCH_FIXTURE_DIR=DIR cargo bench -p plumb-kustomize --bench render` only writes the
//! fixture to DIR (used by scripts/bench-kustomize.sh to time whole processes).

// The benchmark, like the plumb binary should, uses mimalloc: the renderer allocates many small
// maps and strings, and glibc malloc/free was a quarter of the render's instructions. The library
// itself never sets an allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

const WORKLOADS: usize = 600;
const CONFIGMAPS: usize = 500;
const GENERATED: usize = 200;

fn write(path: &Path, text: &str) {
    if let Some(p) = path.parent() {
        std::fs::create_dir_all(p).expect("create fixture dir");
    }
    std::fs::write(path, text).expect("write fixture file");
}

/// Writes `base/` and `overlay/`; the overlay is the directory to build.
fn write_fixture(dir: &Path) {
    let mut deploys = String::new();
    let mut services = String::new();
    let mut cms = String::new();
    for i in 0..WORKLOADS {
        let tier = if i % 2 == 0 { "web" } else { "worker" };
        writeln!(
            deploys,
            "---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: app-{i}\n  labels:\n    tier: {tier}\nspec:\n  replicas: 1\n  selector:\n    matchLabels:\n      app: app-{i}\n  template:\n    metadata:\n      labels:\n        app: app-{i}\n    spec:\n      serviceAccountName: sa\n      containers:\n      - name: main\n        image: registry.example.com/app:{i}\n        envFrom:\n        - configMapRef:\n            name: gen-{g}\n        volumeMounts:\n        - name: cfg\n          mountPath: /etc/cfg\n      volumes:\n      - name: cfg\n        configMap:\n          name: cm-{c}",
            g = i % GENERATED,
            c = i % CONFIGMAPS
        )
        .expect("format");
        writeln!(
            services,
            "---\napiVersion: v1\nkind: Service\nmetadata:\n  name: app-{i}\nspec:\n  selector:\n    app: app-{i}\n  ports:\n  - port: 80\n    targetPort: 8080"
        )
        .expect("format");
    }
    for i in 0..CONFIGMAPS {
        writeln!(cms, "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-{i}\ndata:\n  key: value-{i}\n  other: \"{i}\"").expect("format");
    }
    write(&dir.join("base/deployments.yaml"), &deploys);
    write(&dir.join("base/services.yaml"), &services);
    write(&dir.join("base/configmaps.yaml"), &cms);
    write(
        &dir.join("base/sa.yaml"),
        "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: sa\n",
    );
    write(
        &dir.join("base/kustomization.yaml"),
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n- sa.yaml\n- deployments.yaml\n- services.yaml\n- configmaps.yaml\ncommonLabels:\n  team: bench\n",
    );
    let mut k = String::from(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: bench\nnamePrefix: prod-\nresources:\n- ../base\ncommonAnnotations:\n  owner: bench\nimages:\n- name: registry.example.com/app\n  newName: mirror.example.com/app\npatches:\n- target:\n    kind: Deployment\n    labelSelector: tier=web\n  patch: |-\n    apiVersion: apps/v1\n    kind: Deployment\n    metadata:\n      name: any\n    spec:\n      template:\n        spec:\n          containers:\n          - name: main\n            resources:\n              limits:\n                memory: 256Mi\n- target:\n    kind: Deployment\n    name: app-1.*\n  patch: |-\n    - op: replace\n      path: /spec/replicas\n      value: 3\nconfigMapGenerator:\n",
    );
    for i in 0..GENERATED {
        writeln!(
            k,
            "- name: gen-{i}\n  literals:\n  - INDEX={i}\n  - MODE=prod"
        )
        .expect("format");
    }
    write(&dir.join("overlay/kustomization.yaml"), &k);
}

/// CPU time of this process so far (all threads), from /proc/self/stat (Linux; USER_HZ 100).
fn cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

fn main() {
    if let Ok(d) = std::env::var("PLUMB_BENCH_FIXTURE_DIR") {
        write_fixture(Path::new(&d));
        println!("fixture written to {d}");
        return;
    }
    // `cargo bench` passes `--bench`; `cargo test --benches` runs this once as a smoke test.
    let quick = !std::env::args().any(|a| a == "--bench");
    let tmp = tempfile::tempdir().expect("tempdir");
    write_fixture(tmp.path());
    let dir = tmp.path().join("overlay");
    let opts = plumb_kustomize::BuildOptions::default();
    let objects = plumb_kustomize::build(&dir, tmp.path(), &opts).expect("build fixture");
    println!("synthetic overlay: {} objects", objects.len());
    let runs = if quick { 1 } else { 30 };
    let cpu_start = cpu_time();
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            let out = plumb_kustomize::build(&dir, tmp.path(), &opts).expect("build fixture");
            std::hint::black_box(out);
            t.elapsed()
        })
        .collect();
    let cpu = cpu_start.zip(cpu_time()).map(|(a, b)| b.saturating_sub(a));
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "in-process build: median {:.2} ms, min {:.2} ms, max {:.2} ms over {runs} runs (target < 20 ms)",
        ms(times[times.len() / 2]),
        ms(times[0]),
        ms(times[times.len() - 1])
    );
    if let Some(c) = cpu {
        println!(
            "CPU time per build (all threads): {:.1} ms",
            ms(c) / runs as f64
        );
    }
}
