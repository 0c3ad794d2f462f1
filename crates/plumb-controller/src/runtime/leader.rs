//! Leader election on a `coordination.k8s.io/v1` Lease, so several replicas can run and
//! only one reconciles. Built on the `kube-lease-manager` crate (kube 5); this module only
//! adds the controller-runtime shape: wait as a standby, run the work while leading, stop
//! when the lease is lost, release it on a graceful stop.

use std::future::Future;
use std::time::Duration;

use kube::Client;
use kube_lease_manager::LeaseManagerBuilder;

use crate::{Error, Result};

/// Lease settings (controller-runtime's defaults: 35 s lease, renewed every 5 s).
#[derive(Debug, Clone)]
pub struct LeaderConfig {
    /// Lease name, e.g. `plumb-leader-election`.
    pub lease_name: String,
    /// Namespace of the Lease.
    pub namespace: String,
    /// This replica's identity (the pod name plus a random suffix).
    pub identity: String,
    /// How long a lease is valid without renewal (whole seconds, at least 2).
    pub lease_duration: Duration,
    /// How often the leader renews and a standby retries (whole seconds, less than the
    /// lease duration).
    pub retry_period: Duration,
}

impl LeaderConfig {
    /// controller-runtime's defaults for `lease_name` in `namespace` as `identity`.
    pub fn new(lease_name: &str, namespace: &str, identity: &str) -> Self {
        LeaderConfig {
            lease_name: lease_name.to_string(),
            namespace: namespace.to_string(),
            identity: identity.to_string(),
            lease_duration: Duration::from_secs(35),
            retry_period: Duration::from_secs(5),
        }
    }
}

/// Where this replica stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Waiting for the lease.
    Standby,
    /// Holding the lease: the controllers run.
    Leader,
}

/// How an elected run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The work finished (graceful shutdown) and the lease was released.
    Finished,
    /// `shutdown` fired while standing by.
    Shutdown,
}

/// Waits for the lease, then runs `work` while holding it. `on_role` is told of every role
/// change (for `/readyz`). Returns when `work` finishes (releasing the lease) or `shutdown`
/// fires before leading; fails with [`Error::LeaseLost`] when another replica takes the
/// lease (the caller should exit, as controller-runtime does).
pub async fn run_elected<W, S>(
    client: Client,
    cfg: &LeaderConfig,
    on_role: impl Fn(Role),
    work: W,
    shutdown: S,
) -> Result<Ended>
where
    W: Future<Output = ()>,
    S: Future<Output = ()>,
{
    let duration = cfg.lease_duration.as_secs();
    let retry = cfg.retry_period.as_secs();
    if duration < 2 || retry == 0 || retry >= duration {
        return Err(Error::Leader(format!(
            "lease {}/{}: the lease duration ({duration}s) must be at least 2s and longer than the retry period ({retry}s)",
            cfg.namespace, cfg.lease_name
        )));
    }
    let manager = LeaseManagerBuilder::new(client, &cfg.lease_name)
        .with_namespace(&cfg.namespace)
        .with_identity(&cfg.identity)
        .with_field_manager("plumb-leader-election")
        .with_duration(duration)
        // The leader renews `grace` seconds before expiry, i.e. every retry period.
        .with_grace(duration - retry)
        .build()
        .await
        .map_err(|e| {
            Error::Leader(format!(
                "preparing lease {}/{}: {e}",
                cfg.namespace, cfg.lease_name
            ))
        })?;
    let (mut leading, handle) = manager.watch().await;
    on_role(Role::Standby);
    tracing::info!(lease = %cfg.lease_name, identity = %cfg.identity, "waiting for leadership");

    tokio::pin!(shutdown);
    loop {
        if *leading.borrow_and_update() {
            break;
        }
        tokio::select! {
            changed = leading.changed() => {
                if changed.is_err() {
                    return Err(watch_ended(cfg, handle).await);
                }
            }
            () = &mut shutdown => {
                drop(leading);
                let _ = handle.await;
                return Ok(Ended::Shutdown);
            }
        }
    }
    on_role(Role::Leader);
    tracing::info!(lease = %cfg.lease_name, identity = %cfg.identity, "acquired leadership");

    tokio::pin!(work);
    let lost = loop {
        tokio::select! {
            () = &mut work => break false,
            changed = leading.changed() => {
                if changed.is_err() || !*leading.borrow_and_update() {
                    break true;
                }
            }
        }
    };
    if lost {
        on_role(Role::Standby);
        tracing::error!(lease = %cfg.lease_name, identity = %cfg.identity, "lost leadership");
        return Err(Error::LeaseLost(format!(
            "{}/{}",
            cfg.namespace, cfg.lease_name
        )));
    }
    // Closing the channel makes the lease manager release the lease and stop.
    drop(leading);
    match handle.await {
        Ok(Ok(_)) => {
            tracing::info!(lease = %cfg.lease_name, "released leadership");
            Ok(Ended::Finished)
        }
        Ok(Err(e)) => Err(Error::Leader(format!(
            "releasing lease {}/{}: {e}",
            cfg.namespace, cfg.lease_name
        ))),
        Err(e) => Err(Error::Leader(format!(
            "releasing lease {}/{}: {e}",
            cfg.namespace, cfg.lease_name
        ))),
    }
}

async fn watch_ended(
    cfg: &LeaderConfig,
    handle: tokio::task::JoinHandle<kube_lease_manager::Result<kube_lease_manager::LeaseManager>>,
) -> Error {
    let why = match handle.await {
        Ok(Ok(_)) => "stopped".to_string(),
        Ok(Err(e)) => e.to_string(),
        Err(e) => e.to_string(),
    };
    Error::Leader(format!(
        "watching lease {}/{}: {why}",
        cfg.namespace, cfg.lease_name
    ))
}
