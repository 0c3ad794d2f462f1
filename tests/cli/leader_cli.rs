//! Two `plumb run --leader-elect` processes against the real API server: one leads, the
//! other reports ready as a standby; SIGTERM to the leader releases the lease and the
//! standby takes over.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests may unwrap (DEVELOPERS.md rule 6).

use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use kube::api::{Api, DynamicObject};
use kube::core::{ApiResource, GroupVersionKind};
use plumb_testing::{ControlPlane, TestNamespace, wait};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `GET path` on the health port: (status code, body), or None when nothing listens yet.
fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let code = out.split_whitespace().nth(1)?.parse().ok()?;
    let body = out.split_once("\r\n\r\n")?.1.to_string();
    Some((code, body))
}

struct Plumb {
    child: Child,
    health: u16,
    metrics: u16,
}

impl Drop for Plumb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(kubeconfig: &std::path::Path, ns: &str, storage: &std::path::Path) -> Plumb {
    let (health, metrics) = (free_port(), free_port());
    let child = Command::new(env!("CARGO_BIN_EXE_plumb"))
        .args(["run", "--leader-elect", "--watch-all-namespaces=false"])
        .args(["--namespace", ns, "--leader-election-namespace", ns])
        .args(["--leader-election-lease-duration", "3s"])
        .args(["--leader-election-retry-period", "1s"])
        .arg("--storage-path")
        .arg(storage)
        .args(["--storage-addr", "127.0.0.1:0"])
        .args(["--health-addr", &format!("127.0.0.1:{health}")])
        .args(["--metrics-addr", &format!("127.0.0.1:{metrics}")])
        .args(["--receiver-addr", "127.0.0.1:0"])
        .env("KUBECONFIG", kubeconfig)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Plumb {
        child,
        health,
        metrics,
    }
}

async fn holder(leases: &Api<DynamicObject>) -> Option<String> {
    let l = leases.get("plumb-leader-election").await.ok()?;
    l.data["spec"]["holderIdentity"]
        .as_str()
        .map(str::to_string)
}

#[tokio::test]
async fn second_replica_stands_by_and_takes_over() {
    let info = ControlPlane::shared().unwrap();
    let client = info.admin_client().await.unwrap();
    let ns = TestNamespace::create(info, "leader-cli").await.unwrap();
    let n = ns.name().to_string();
    let tmp = tempfile::tempdir().unwrap();
    let leases: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        &n,
        &ApiResource::from_gvk(&GroupVersionKind::gvk("coordination.k8s.io", "v1", "Lease")),
    );

    let mut a = start(&info.kubeconfig, &n, &tmp.path().join("a"));
    let first = wait::poll("a holds the lease", Duration::from_secs(60), || async {
        holder(&leases).await
    })
    .await
    .unwrap();
    wait::poll("a is ready", Duration::from_secs(30), || async {
        (get(a.health, "/readyz")? == (200, "ok".to_string())).then_some(())
    })
    .await
    .unwrap();
    let b = start(&info.kubeconfig, &n, &tmp.path().join("b"));
    wait::poll("b is a ready standby", Duration::from_secs(30), || async {
        (get(b.health, "/readyz")? == (200, "ok: standby".to_string())).then_some(())
    })
    .await
    .unwrap();
    assert_eq!(get(b.health, "/healthz").unwrap().0, 200);
    assert_eq!(
        get(b.metrics, "/metrics").unwrap().0,
        200,
        "a standby serves metrics"
    );
    assert_eq!(holder(&leases).await.as_deref(), Some(first.as_str()));

    // SIGTERM: the leader stops its controllers, releases the lease and exits 0.
    let status = Command::new("kill")
        .args(["-TERM", &a.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = wait::poll("a exits", Duration::from_secs(30), || {
        let r = a.child.try_wait().ok().flatten();
        async move { r }
    })
    .await
    .unwrap();
    assert!(exit.success(), "{exit:?}");
    let second = wait::poll("b takes the lease", Duration::from_secs(30), || async {
        holder(&leases).await.filter(|h| *h != first)
    })
    .await
    .unwrap();
    assert!(!second.is_empty());
    wait::poll("b is ready as leader", Duration::from_secs(30), || async {
        (get(b.health, "/readyz")? == (200, "ok".to_string())).then_some(())
    })
    .await
    .unwrap();
}
