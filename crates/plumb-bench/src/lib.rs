//! Benchmarks and measurements of plumb's controllers at fleet scale, kept next to the test
//! harness (`plumb-testing`) so that no production crate depends on it. Each is an example:
//!
//! - `bench_kustomizations [N]`: Flux's 1,000 Kustomizations x 4 objects scenario;
//! - `bench_helmreleases` (`PLUMB_BENCH_N`): N HelmReleases of one small chart;
//! - `bench_gitrepos` (`PLUMB_BENCH_N`, `PLUMB_BENCH_ROUNDS`): N GitRepositories polled;
//! - `push_to_apply [pushes]`: git push to applied object, through a Receiver and by polling.
//! - `bench_ocirepos` (`PLUMB_BENCH_N`): N OCIRepositories of one artifact, polled once;
//! - `bench_notifications [events]`: events fanned out to 10 Providers, one slow;
//! - `bench_cel [evaluations]`: a CEL health check per object next to kstatus (no cluster);
//! - `bench_oci_push [runs]`: `plumb push artifact` vs `oras push` for a 1,000-file directory
//!   on a local registry (needs the release `plumb` binary).
//!
//! Run with `cargo run --release -p plumb-bench --example <name>`; with `PLUMB_TEST_ENV` set
//! they use a running control plane, else they start a private one. They share the controller
//! tests' helpers (`crates/plumb-controller/tests/it/common`).

use plumb_ssa::{Applier, ApplyItem, ApplyOptions};

/// Peak resident memory of this process (`VmHWM`), in KiB (0 when unknown).
pub fn vm_hwm_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_string))
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Applies plumb's CRDs with `client` (idempotent).
pub async fn install_crds(client: &kube::Client) -> Result<(), plumb_ssa::Error> {
    let crds = plumb_api::crds()
        .into_iter()
        .filter_map(|c| serde_json::to_value(c).ok())
        .map(ApplyItem::new)
        .collect();
    Applier::new(client.clone(), "plumb-bench", 4)
        .apply_all(crds, &ApplyOptions::default())
        .await
        .map(|_| ())
}
