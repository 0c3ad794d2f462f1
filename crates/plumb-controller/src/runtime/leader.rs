//! Leader election on a `coordination.k8s.io/v1` Lease, so several replicas can run and
//! only one reconciles, with client-go's semantics:
//!
//! - every retry period a replica reads the Lease and, when it is free, expired or its own,
//!   writes itself as holder with `replace` on the resourceVersion it read, so of two
//!   replicas racing for it exactly one wins (the other gets 409);
//! - a standby judges expiry by its own clock: a record it has seen unchanged for the
//!   record's lease duration is expired (clocks of different replicas never compare);
//! - the leader steps down when no renew was confirmed within the renew deadline (shorter
//!   than the lease duration): it drops the work and fails with [`Error::LeaseLost`] at
//!   `renewTime + renewDeadline` of its last confirmed renew, which is strictly before any
//!   standby can see the lease expire (`renewTime + leaseDuration`, measured from when the
//!   standby observed that renew, which is later).
//!
//! This replaces the `kube-lease-manager` crate, which only logged failed renews (the work
//! ran on past the lease), renewed and released with unconditional patches (a late release
//! could clear the next holder's lease) and could not express a renew deadline. One
//! read-then-replace loop gives all three guarantees in a few lines.

use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, ObjectMeta, PostParams};
use tokio::time::Instant;

use crate::{Error, Result};

/// Field manager of the Lease writes.
const FIELD_MANAGER: &str = "plumb-leader-election";

/// Lease settings (Flux's defaults: 35 s lease, retried every 5 s).
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
    /// How often the leader renews and a standby retries (shorter than the renew deadline).
    pub retry_period: Duration,
    /// How long the leader keeps leading without a confirmed renew; `None` is 2/3 of the
    /// lease duration. Longer than the retry period, shorter than the lease duration.
    pub renew_deadline: Option<Duration>,
}

impl LeaderConfig {
    /// The defaults for `lease_name` in `namespace` as `identity`.
    pub fn new(lease_name: &str, namespace: &str, identity: &str) -> Self {
        LeaderConfig {
            lease_name: lease_name.to_string(),
            namespace: namespace.to_string(),
            identity: identity.to_string(),
            lease_duration: Duration::from_secs(35),
            retry_period: Duration::from_secs(5),
            renew_deadline: None,
        }
    }

    /// The renew deadline in effect.
    pub fn renew_deadline(&self) -> Duration {
        self.renew_deadline.unwrap_or(self.lease_duration * 2 / 3)
    }

    /// Checks `retry period < renew deadline < lease duration` (controller-runtime's rule).
    pub fn validate(&self) -> Result<()> {
        let (lease, renew, retry) = (
            self.lease_duration,
            self.renew_deadline(),
            self.retry_period,
        );
        let fail = |why: String| {
            Err(Error::Leader(format!(
                "lease {}/{}: {why}",
                self.namespace, self.lease_name
            )))
        };
        if lease.as_secs() < 2 || lease.subsec_nanos() != 0 {
            return fail(format!(
                "the lease duration ({lease:?}) must be whole seconds, at least 2s"
            ));
        }
        if retry.is_zero() || renew <= retry || renew >= lease {
            return fail(format!(
                "the renew deadline ({renew:?}) must be longer than the retry period \
                 ({retry:?}) and shorter than the lease duration ({lease:?})"
            ));
        }
        Ok(())
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
/// fires before leading. Fails with [`Error::LeaseLost`] when another replica took the
/// lease or no renew was confirmed within the renew deadline: `work` is dropped first, so
/// it stops at its next await (tasks it spawned are the caller's to stop; `plumb run`
/// exits). The caller should exit, as controller-runtime does.
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
    cfg.validate()?;
    let mut elector = Elector {
        api: Api::namespaced(client, &cfg.namespace),
        cfg,
        observed: None,
    };
    on_role(Role::Standby);
    tracing::info!(lease = %cfg.lease_name, identity = %cfg.identity, "waiting for leadership");
    tokio::pin!(shutdown);
    let mut renewed = loop {
        tokio::select! {
            () = &mut shutdown => return Ok(Ended::Shutdown),
            held = elector.round() => if let Some(at) = held {
                break at;
            },
        }
        tokio::select! {
            () = &mut shutdown => return Ok(Ended::Shutdown),
            () = tokio::time::sleep(cfg.retry_period) => {}
        }
    };
    on_role(Role::Leader);
    tracing::info!(lease = %cfg.lease_name, identity = %cfg.identity, "acquired leadership");

    let mut work = Box::pin(work);
    let lost = loop {
        let deadline = renewed + cfg.renew_deadline();
        let next = async {
            tokio::time::sleep(cfg.retry_period).await;
            elector.try_acquire_or_renew().await
        };
        tokio::select! {
            () = &mut work => break None,
            () = tokio::time::sleep_until(deadline) => break Some(format!(
                "no renew confirmed within the renew deadline ({:?})", cfg.renew_deadline()
            )),
            r = next => match r {
                Ok(Attempt::Held(at)) => renewed = at,
                Ok(Attempt::Taken(Some(h))) => break Some(format!("taken by {h}")),
                // Someone wrote the Lease between our read and write: the next read tells.
                Ok(Attempt::Taken(None)) => tracing::warn!(
                    lease = %cfg.lease_name, "the lease changed while renewing; retrying"
                ),
                Err(e) => tracing::warn!(
                    lease = %cfg.lease_name, error = %e, "renewing the lease failed; retrying"
                ),
            },
        }
    };
    if let Some(why) = lost {
        // Stop reconciling before anyone can see the lease expire.
        drop(work);
        on_role(Role::Standby);
        tracing::error!(lease = %cfg.lease_name, identity = %cfg.identity, %why, "lost leadership");
        return Err(Error::LeaseLost(format!(
            "{}/{}: {why}",
            cfg.namespace, cfg.lease_name
        )));
    }
    // Releasing lets a standby take over at once instead of after the lease duration.
    let release = tokio::time::timeout(cfg.renew_deadline(), elector.release()).await;
    match release {
        Ok(Ok(())) => {
            tracing::info!(lease = %cfg.lease_name, "released leadership");
            Ok(Ended::Finished)
        }
        Ok(Err(e)) => Err(Error::Leader(format!(
            "releasing lease {}/{}: {e}",
            cfg.namespace, cfg.lease_name
        ))),
        Err(_) => Err(Error::Leader(format!(
            "releasing lease {}/{}: timed out",
            cfg.namespace, cfg.lease_name
        ))),
    }
}

/// Outcome of one read-then-write round.
enum Attempt {
    /// This replica holds the lease; the `renewTime` it wrote was taken at this instant.
    Held(Instant),
    /// Another replica holds it (named), or wrote it between our read and write (`None`).
    Taken(Option<String>),
}

/// One replica's view of the Lease.
struct Elector<'a> {
    api: Api<Lease>,
    cfg: &'a LeaderConfig,
    /// The last record seen and when it was first seen (client-go's `observedTime`).
    observed: Option<(LeaseSpec, Instant)>,
}

impl Elector<'_> {
    /// A standby's round: `Some` when the lease was acquired; failures are logged.
    async fn round(&mut self) -> Option<Instant> {
        match self.try_acquire_or_renew().await {
            Ok(Attempt::Held(at)) => Some(at),
            Ok(Attempt::Taken(_)) => None,
            Err(e) => {
                tracing::warn!(lease = %self.cfg.lease_name, error = %e, "reading or acquiring the lease failed");
                None
            }
        }
    }

    /// Reads the Lease and takes it when it is missing, free, expired or already ours.
    async fn try_acquire_or_renew(&mut self) -> Result<Attempt, kube::Error> {
        let name = &self.cfg.lease_name;
        let Some(mut lease) = self.api.get_opt(name).await? else {
            let (at, spec) = self.our_record(&LeaseSpec::default(), false);
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    ..Default::default()
                },
                spec: Some(spec),
            };
            return match self.api.create(&post_params(), &lease).await {
                Ok(l) => Ok(self.confirmed(l, at)),
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(Attempt::Taken(None)),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let now = Instant::now();
        if self.observed.as_ref().is_none_or(|(seen, _)| *seen != spec) {
            self.observed = Some((spec.clone(), now));
        }
        let holder = spec.holder_identity.as_deref().filter(|h| !h.is_empty());
        let ours = holder == Some(self.cfg.identity.as_str());
        if let Some(other) = holder.filter(|_| !ours) {
            let valid = spec
                .lease_duration_seconds
                .and_then(|d| u64::try_from(d).ok())
                .filter(|d| *d > 0)
                .map_or(self.cfg.lease_duration, Duration::from_secs);
            let seen = self.observed.as_ref().map_or(now, |(_, at)| *at);
            if seen + valid > now {
                return Ok(Attempt::Taken(Some(other.to_string())));
            }
        }
        let (at, record) = self.our_record(&spec, ours);
        lease.spec = Some(record);
        // `replace` carries the resourceVersion read above: a concurrent writer wins, we 409.
        match self.api.replace(name, &post_params(), &lease).await {
            Ok(l) => Ok(self.confirmed(l, at)),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(Attempt::Taken(None)),
            Err(e) => Err(e),
        }
    }

    /// The record naming this replica, renewed now, and the instant of that `renewTime`.
    fn our_record(&self, old: &LeaseSpec, ours: bool) -> (Instant, LeaseSpec) {
        let at = Instant::now();
        let now = Some(MicroTime(Timestamp::now()));
        let spec = LeaseSpec {
            holder_identity: Some(self.cfg.identity.clone()),
            lease_duration_seconds: i32::try_from(self.cfg.lease_duration.as_secs()).ok(),
            renew_time: now.clone(),
            acquire_time: if ours { old.acquire_time.clone() } else { now },
            lease_transitions: Some(
                old.lease_transitions.unwrap_or(0)
                    + i32::from(!ours && old.holder_identity.is_some()),
            ),
            ..Default::default()
        };
        (at, spec)
    }

    fn confirmed(&mut self, lease: Lease, at: Instant) -> Attempt {
        self.observed = lease.spec.map(|s| (s, at));
        Attempt::Held(at)
    }

    /// Clears the holder when it is still this replica, so a standby acquires at once.
    async fn release(&mut self) -> Result<(), kube::Error> {
        let Some(mut lease) = self.api.get_opt(&self.cfg.lease_name).await? else {
            return Ok(());
        };
        let Some(spec) = lease.spec.as_mut() else {
            return Ok(());
        };
        if spec.holder_identity.as_deref() != Some(self.cfg.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(MicroTime(Timestamp::now()));
        self.api
            .replace(&self.cfg.lease_name, &post_params(), &lease)
            .await
            .map(|_| ())
    }
}

fn post_params() -> PostParams {
    PostParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(lease: u64, renew: Option<u64>, retry: u64) -> LeaderConfig {
        LeaderConfig {
            lease_duration: Duration::from_secs(lease),
            retry_period: Duration::from_secs(retry),
            renew_deadline: renew.map(Duration::from_secs),
            ..LeaderConfig::new("l", "ns", "me")
        }
    }

    #[test]
    fn renew_deadline_defaults_to_two_thirds_of_the_lease() {
        assert_eq!(cfg(6, None, 1).renew_deadline(), Duration::from_secs(4));
        assert!(cfg(35, None, 5).validate().is_ok());
        assert!(cfg(6, Some(4), 1).validate().is_ok());
    }

    #[test]
    fn timing_must_be_ordered() {
        for (lease, renew, retry) in [
            (6, Some(6), 1), // renew deadline not shorter than the lease
            (6, Some(1), 1), // not longer than the retry period
            (6, Some(4), 0), // no retry period
            (1, None, 0),    // lease too short
            (5, None, 5),    // default renew deadline (3.3s) below the retry period
        ] {
            let err = cfg(lease, renew, retry).validate().unwrap_err().to_string();
            assert!(err.contains("lease ns/l"), "{err}");
        }
        let half = LeaderConfig {
            lease_duration: Duration::from_millis(2500),
            ..cfg(3, None, 1)
        };
        assert!(
            half.validate()
                .unwrap_err()
                .to_string()
                .contains("whole seconds")
        );
    }
}
