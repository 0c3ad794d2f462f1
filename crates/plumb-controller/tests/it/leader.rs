//! Leader election when the leader loses the API server or its lease (fault matrix, issue
//! #14 item 6): the leader's client goes through a TCP proxy the test cuts, the standby's
//! goes direct. Real API server; times are wall-clock, as the Lease's `renewTime` is.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, PostParams};
use plumb_controller::Error;
use plumb_controller::leader::{Ended, LeaderConfig, Role, run_elected};
use plumb_testing::proxy::TcpProxy;
use plumb_testing::{ControlPlane, ControlPlaneInfo, TestNamespace, wait};

use crate::common::admin_config;

const LEASE: &str = "plumb-leader-election";
const LEASE_DURATION: Duration = Duration::from_secs(6);
const RENEW_DEADLINE: Duration = Duration::from_secs(4);
/// Scheduling slack on top of the renew deadline.
const SLACK: Duration = Duration::from_millis(500);

fn cfg(ns: &str, id: &str) -> LeaderConfig {
    LeaderConfig {
        lease_duration: LEASE_DURATION,
        retry_period: Duration::from_secs(1),
        renew_deadline: Some(RENEW_DEADLINE),
        ..LeaderConfig::new(LEASE, ns, id)
    }
}

/// One replica's record: its roles, and when it started leading and its work was dropped.
#[derive(Clone, Default)]
struct Replica {
    roles: Arc<Mutex<Vec<Role>>>,
    led_at: Arc<Mutex<Option<SystemTime>>>,
    dropped_at: Arc<Mutex<Option<SystemTime>>>,
}

impl Replica {
    fn last(&self) -> Option<Role> {
        self.roles.lock().unwrap().last().copied()
    }
    fn led_at(&self) -> Option<SystemTime> {
        *self.led_at.lock().unwrap()
    }
    fn dropped_at(&self) -> Option<SystemTime> {
        *self.dropped_at.lock().unwrap()
    }

    /// Runs `run_elected` with work that runs until `stop` fires and notes when it is dropped.
    fn spawn(
        &self,
        client: kube::Client,
        cfg: LeaderConfig,
        stop: tokio::sync::oneshot::Receiver<()>,
    ) -> tokio::task::JoinHandle<plumb_controller::Result<Ended>> {
        let me = self.clone();
        tokio::spawn(async move {
            let roles = me.clone();
            let guard = DropClock(me.dropped_at.clone());
            run_elected(
                client,
                &cfg,
                move |r| {
                    if r == Role::Leader {
                        *roles.led_at.lock().unwrap() = Some(SystemTime::now());
                    }
                    roles.roles.lock().unwrap().push(r);
                },
                async move {
                    let _guard = guard;
                    let _ = stop.await;
                },
                std::future::pending(),
            )
            .await
        })
    }
}

/// Notes the time it is dropped.
struct DropClock(Arc<Mutex<Option<SystemTime>>>);

impl Drop for DropClock {
    fn drop(&mut self) {
        *self.0.lock().unwrap() = Some(SystemTime::now());
    }
}

/// A client of the admin user that reaches the API server through `proxy`.
async fn client_via(info: &ControlPlaneInfo, proxy: &TcpProxy) -> kube::Client {
    let mut config = admin_config(info).await;
    config.cluster_url = format!("https://{}", proxy.addr()).parse().unwrap();
    kube::Client::try_from(config).unwrap()
}

async fn lease(client: &kube::Client, ns: &str) -> (Option<String>, SystemTime) {
    let spec = Api::<Lease>::namespaced(client.clone(), ns)
        .get(LEASE)
        .await
        .unwrap()
        .spec
        .unwrap();
    (
        spec.holder_identity,
        SystemTime::from(spec.renew_time.unwrap().0),
    )
}

async fn wait_role(who: &str, r: &Replica, role: Role) {
    wait::poll(who, Duration::from_secs(30), || async {
        (r.last() == Some(role)).then_some(())
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn leader_cut_off_steps_down_before_the_lease_expires() {
    let info = ControlPlane::shared().unwrap();
    let direct = info.admin_client().await.unwrap();
    let ns = TestNamespace::create(info, "leader-cut").await.unwrap();
    let n = ns.name().to_string();
    let upstream = info.server.trim_start_matches("https://").parse().unwrap();
    let proxy = TcpProxy::start(upstream).await.unwrap();

    let a = Replica::default();
    let (_stop_a, stopped_a) = tokio::sync::oneshot::channel();
    let a_run = a.spawn(client_via(info, &proxy).await, cfg(&n, "a"), stopped_a);
    wait_role("a leads", &a, Role::Leader).await;
    let b = Replica::default();
    let (stop_b, stopped_b) = tokio::sync::oneshot::channel();
    let b_run = b.spawn(direct.clone(), cfg(&n, "b"), stopped_b);
    wait_role("b stands by", &b, Role::Standby).await;
    // a renews through the proxy for longer than a lease duration.
    tokio::time::sleep(LEASE_DURATION + Duration::from_secs(1)).await;
    assert_eq!(b.last(), Some(Role::Standby));
    let (holder, before_cut) = lease(&direct, &n).await;
    assert_eq!(holder.as_deref(), Some("a"));
    assert!(
        SystemTime::now().duration_since(before_cut).unwrap() < Duration::from_secs(2),
        "a does not renew every retry period"
    );

    proxy.cut();
    let cut_at = SystemTime::now();
    let ended = tokio::time::timeout(RENEW_DEADLINE + SLACK, a_run)
        .await
        .expect("a still leads after the renew deadline")
        .unwrap();
    assert!(matches!(ended, Err(Error::LeaseLost(_))), "{ended:?}");
    let dropped = a.dropped_at().expect("a's work was not dropped");
    assert_eq!(a.last(), Some(Role::Standby));
    // The last renew that reached the API server: a stepped down within the renew deadline
    // of it, while the lease still named a, so before anyone could take it.
    let (holder, renewed) = lease(&direct, &n).await;
    assert_eq!(
        holder.as_deref(),
        Some("a"),
        "the lease moved before a stepped down"
    );
    let since_renew = dropped.duration_since(renewed).unwrap();
    assert!(since_renew <= RENEW_DEADLINE + SLACK, "{since_renew:?}");
    assert!(since_renew < LEASE_DURATION, "{since_renew:?}");
    let since_cut = dropped.duration_since(cut_at).unwrap();
    assert!(since_cut <= RENEW_DEADLINE + SLACK, "{since_cut:?}");
    eprintln!("a stepped down {since_cut:?} after the cut, {since_renew:?} after its last renew");

    // b takes over once the lease expired, never while a led: no two writers.
    wait_role("b leads", &b, Role::Leader).await;
    let b_led = b.led_at().unwrap();
    assert!(b_led > dropped, "b led before a stepped down");
    assert!(
        b_led >= renewed + LEASE_DURATION,
        "b took an unexpired lease"
    );
    assert!(a.led_at().unwrap() < dropped);
    assert_eq!(lease(&direct, &n).await.0.as_deref(), Some("b"));
    eprintln!(
        "b led {:?} after a stepped down",
        b_led.duration_since(dropped).unwrap()
    );
    stop_b.send(()).unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(30), b_run)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(ended, Ended::Finished);
    ns.delete().await.unwrap();
}

/// A leader that finds another holder in the Lease steps down at its next renew.
#[tokio::test(flavor = "multi_thread")]
async fn leader_steps_down_when_another_holder_appears() {
    let info = ControlPlane::shared().unwrap();
    let client = info.admin_client().await.unwrap();
    let ns = TestNamespace::create(info, "leader-taken").await.unwrap();
    let n = ns.name().to_string();
    let a = Replica::default();
    let (_stop_a, stopped_a) = tokio::sync::oneshot::channel();
    let a_run = a.spawn(client.clone(), cfg(&n, "a"), stopped_a);
    wait_role("a leads", &a, Role::Leader).await;

    let leases: Api<Lease> = Api::namespaced(client.clone(), &n);
    let mut l = leases.get(LEASE).await.unwrap();
    l.spec.as_mut().unwrap().holder_identity = Some("intruder".into());
    leases
        .replace(LEASE, &PostParams::default(), &l)
        .await
        .unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(3), a_run)
        .await
        .expect("a kept leading with another holder")
        .unwrap();
    let err = ended.unwrap_err();
    assert!(
        matches!(&err, Error::LeaseLost(m) if m.contains("taken by intruder")),
        "{err}"
    );
    assert!(a.dropped_at().is_some());
    assert_eq!(a.last(), Some(Role::Standby));
    // It did not write itself back.
    assert_eq!(
        leases
            .get(LEASE)
            .await
            .unwrap()
            .spec
            .unwrap()
            .holder_identity
            .as_deref(),
        Some("intruder")
    );
    ns.delete().await.unwrap();
}
