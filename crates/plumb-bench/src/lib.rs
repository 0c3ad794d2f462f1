//! Benchmarks and measurements of plumb's controllers at fleet scale, kept next to the test
//! harness (`plumb-testing`) so that no production crate depends on it. Each is an example:
//!
//! - `bench_kustomizations [N]`: Flux's 1,000 Kustomizations x 4 objects scenario;
//! - `bench_helmreleases` (`PLUMB_BENCH_N`): N HelmReleases of one small chart;
//! - `bench_gitrepos` (`PLUMB_BENCH_N`, `PLUMB_BENCH_ROUNDS`): N GitRepositories polled;
//! - `push_to_apply [pushes]`: git push to applied object, through a Receiver and by polling.
//! - `bench_monorepo [N]`: a commit touching one of N apps of a monorepo, with and without
//!   the skip of unchanged Kustomizations, on one GitRepository and through an ArtifactGenerator;
//! - `bench_ocirepos` (`PLUMB_BENCH_N`): N OCIRepositories of one artifact, polled once;
//! - `bench_notifications [events]`: events fanned out to 10 Providers, one slow;
//! - `bench_cel [evaluations]`: a CEL health check per object next to kstatus (no cluster);
//! - `bench_oci_push [runs]`: `plumb push artifact` vs `oras push` for a 1,000-file directory
//!   on a local registry (needs the release `plumb` binary).
//!
//! Run with `cargo run --release -p plumb-bench --example <name>`; with `PLUMB_TEST_ENV` set
//! they use a running control plane, else they start a private one. They share the controller
//! tests' helpers (`crates/plumb-controller/tests/it/common`).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use plumb_ssa::{Applier, ApplyItem, ApplyOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// POSTs a GitHub `push` webhook call signed `sig` to `addr` + `path`; returns the status.
///
/// # Panics
/// When the connection fails (a measurement tool fails loudly).
#[allow(clippy::unwrap_used)]
pub async fn post_push(addr: SocketAddr, path: &str, sig: &str, body: &str) -> u16 {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "POST {path} HTTP/1.1\r\nhost: x\r\nx-github-event: push\r\nx-hub-signature-256: {sig}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).await.unwrap();
    resp.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// A ConfigMap `name` with `data.v` = `v`, as YAML.
pub fn cm(name: &str, v: usize) -> String {
    format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  v: \"{v}\"\n")
}

/// A controller context on `client`, storing artifacts under `storage` and serving them on
/// a local port (the controllers are not started).
///
/// # Panics
/// When the storage directory or the port cannot be made.
#[allow(clippy::unwrap_used)]
pub async fn context(
    client: kube::Client,
    cfg: kube::Config,
    storage: &Path,
) -> Arc<plumb_controller::Context> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    std::fs::create_dir_all(storage.join("artifacts")).unwrap();
    tokio::spawn(plumb_source::server::serve_artifacts(
        listener,
        storage.join("artifacts"),
        std::future::pending(),
    ));
    plumb_controller::Context::new(
        client,
        cfg,
        plumb_controller::Config {
            storage_path: storage.to_path_buf(),
            storage_adv_addr: addr.to_string(),
            ..Default::default()
        },
    )
}

/// The token of the Receiver Secret [`serve_receiver`] creates (Secret `token`).
pub const RECEIVER_TOKEN: &str = "bench-token";

/// Serves Receiver webhooks of namespace `ns` on a local port and creates the Secret `token`
/// holding [`RECEIVER_TOKEN`]; returns the address.
///
/// # Panics
/// When the port or the Secret cannot be made.
#[allow(clippy::unwrap_used)]
pub async fn serve_receiver(
    ctx: Arc<plumb_controller::Context>,
    admin: &kube::Client,
    ns: &str,
) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(plumb_controller::receiver::serve(
        ctx,
        listener,
        Some(ns.to_string()),
        std::future::pending(),
    ));
    let secret: k8s_openapi::api::core::v1::Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "token", "namespace": ns},
        "stringData": {"token": RECEIVER_TOKEN}
    }))
    .unwrap();
    kube::Api::namespaced(admin.clone(), ns)
        .create(&kube::api::PostParams::default(), &secret)
        .await
        .unwrap();
    addr
}

/// Creates Kustomizations `(name, spec)` in `api`'s namespace, 16 at a time.
///
/// # Panics
/// When a create fails.
#[allow(clippy::unwrap_used)]
pub async fn create_kustomizations(
    api: &kube::Api<plumb_api::Kustomization>,
    items: impl Iterator<Item = (String, serde_json::Value)>,
) {
    let creates = items.map(|(name, spec)| async move {
        let ks: plumb_api::Kustomization = serde_json::from_value(serde_json::json!({
            "apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
            "metadata": {"name": name}, "spec": spec
        }))
        .unwrap();
        api.create(&kube::api::PostParams::default(), &ks)
            .await
            .unwrap();
    });
    futures::StreamExt::collect::<Vec<()>>(futures::StreamExt::buffer_unordered(
        futures::stream::iter(creates),
        16,
    ))
    .await;
}

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
