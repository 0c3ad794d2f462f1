//! What a kind plugs into the skeleton: the [`Kind`] trait, its status ([`KindStatus`]),
//! the outcome of its steps ([`Done`]) and how it reports failures ([`Policy`]).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use kube::Resource;
use kube::runtime::controller::Action;
use plumb_api::meta::Condition;

use crate::Result;
use crate::context::Context;
use crate::outcome::Failure;

/// What one kind plugs into the skeleton.
pub trait Kind:
    Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
    + Clone
    + std::fmt::Debug
    + serde::de::DeserializeOwned
    + serde::Serialize
    + Send
    + Sync
    + StoredStatus
    + 'static
{
    /// The kind's name, for metrics, logs and errors (`GitRepository`).
    const KIND: &'static str;
    /// How failures become conditions, events and requeues.
    const POLICY: Policy;
    /// Whether the finalizer guards deletion ([`Kind::cleanup`] runs before it is removed).
    const FINALIZER: bool = true;

    /// `spec.suspend`.
    fn suspended(&self) -> bool {
        false
    }
    /// How often a Ready object is reconciled again (`spec.interval`).
    fn every(&self) -> Duration;
    /// How soon a retried failure is tried again.
    fn retry(&self) -> Duration {
        Duration::from_secs(10)
    }
    /// A note on spec fields plumb does not implement, appended to the Ready message.
    fn unsupported_note(&self) -> Option<String> {
        None
    }
    /// The revision reported in the metrics.
    fn revision(status: &Self::Status) -> &str;

    /// Whether a successful reconcile also notifies commit-status Providers (Flux's
    /// `commit_status: update` event: Kustomization and HelmRelease).
    const COMMIT_STATUS: bool = false;

    /// Flux's metadata of this kind's events (notifications): `revision` when there is one;
    /// HelmReleases add `token`.
    fn event_metadata(status: &Self::Status) -> std::collections::BTreeMap<String, String> {
        let rev = Self::revision(status);
        let mut m = std::collections::BTreeMap::new();
        if !rev.is_empty() {
            m.insert("revision".to_string(), rev.to_string());
        }
        m
    }

    /// The pipeline: runs the kind's steps in order, recording progress into `status`.
    fn steps(
        obj: &Self,
        ctx: &Context,
        status: &mut Self::Status,
    ) -> impl Future<Output = std::result::Result<Done, Failure>> + Send;

    /// A condition of the kind's own set `True` with a failure's reason and message (e.g.
    /// `FetchFailed`), before the common Ready/Stalled/Reconciling mapping.
    fn failure_condition(_f: &Failure) -> Option<&'static str> {
        None
    }

    /// What a suspended object stops (e.g. drift watches).
    fn on_suspend(_obj: &Self, _ctx: &Context) {}

    /// Deletion: undo what the object made (runs with the finalizer).
    fn cleanup(_obj: Arc<Self>, _ctx: &Context) -> impl Future<Output = Result<Action>> + Send {
        async { Ok(Action::await_change()) }
    }
}

/// The parts of a kind's status the skeleton writes.
pub trait KindStatus:
    Clone + Default + PartialEq + serde::Serialize + Send + Sync + 'static
{
    /// `status.conditions`.
    fn conditions(&self) -> &[Condition];
    /// `status.conditions`, to change.
    fn conditions_mut(&mut self) -> &mut Vec<Condition>;
    /// Sets `status.observedGeneration`.
    fn set_observed_generation(&mut self, generation: Option<i64>);
    /// Sets `status.lastHandledReconcileAt`.
    fn set_last_handled_reconcile_at(&mut self, at: String);
}

/// The status of an object as stored (`None` before the first reconcile), and its type.
pub trait StoredStatus {
    /// The status type.
    type Status: KindStatus;
    /// `status`.
    fn stored_status(&self) -> Option<&Self::Status>;
}

macro_rules! impl_kind_status {
    ($($kind:ty => $status:ty),*) => {$(
        impl StoredStatus for $kind {
            type Status = $status;
            fn stored_status(&self) -> Option<&$status> {
                self.status.as_ref()
            }
        }

        impl KindStatus for $status {
            fn conditions(&self) -> &[Condition] {
                &self.conditions
            }
            fn conditions_mut(&mut self) -> &mut Vec<Condition> {
                &mut self.conditions
            }
            fn set_observed_generation(&mut self, generation: Option<i64>) {
                self.observed_generation = generation;
            }
            fn set_last_handled_reconcile_at(&mut self, at: String) {
                self.reconcile_request.last_handled_reconcile_at = Some(at);
            }
        }
    )*};
}

impl_kind_status!(
    plumb_api::GitRepository => plumb_api::GitRepositoryStatus,
    plumb_api::HelmRepository => plumb_api::HelmRepositoryStatus,
    plumb_api::Kustomization => plumb_api::KustomizationStatus,
    plumb_api::HelmRelease => plumb_api::HelmReleaseStatus,
    plumb_api::OCIRepository => plumb_api::OCIRepositoryStatus,
    plumb_api::HelmChart => plumb_api::HelmChartStatus,
    plumb_api::Receiver => plumb_api::ReceiverStatus,
    plumb_api::ArtifactGenerator => plumb_api::ArtifactGeneratorStatus,
    plumb_api::Provider => plumb_api::NotificationStatus,
    plumb_api::ImageRepository => plumb_api::ImageRepositoryStatus,
    plumb_api::ImagePolicy => plumb_api::ImagePolicyStatus,
    plumb_api::ImageUpdateAutomation => plumb_api::ImageUpdateAutomationStatus
);

// Alerts share the Provider's status type (its `KindStatus` comes from the line above).
impl StoredStatus for plumb_api::Alert {
    type Status = plumb_api::NotificationStatus;
    fn stored_status(&self) -> Option<&plumb_api::NotificationStatus> {
        self.status.as_ref()
    }
}

/// A successful pass of a kind's steps.
#[derive(Debug, Default)]
pub struct Done {
    /// `Ready=True` with this reason and message; `None` when not ready yet (a step set the
    /// progress conditions, e.g. health checks pending).
    pub ready: Option<(&'static str, String)>,
    /// A Normal event (reason, message).
    pub event: Option<(&'static str, String)>,
    /// Reconcile again after this instead of the jittered interval.
    pub requeue: Option<Duration>,
}

/// When a failure publishes a Warning event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Warn {
    /// On every failed reconcile (source-controller).
    Always,
    /// When the Ready message changed (kustomize- and helm-controller, receivers).
    OnChange,
}

/// How a kind reports failures.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// Waiting failures (and `DependencyNotReady`) keep `Reconciling=True` with
    /// `Ready=False` and retry at `--requeue-dependency` (appliers); otherwise they are
    /// reported as any retried failure.
    pub waiting_progresses: bool,
    /// Retried failures keep `Reconciling=True` (`ProgressingWithRetry`), as Flux's
    /// HelmRepository reconciler does.
    pub retry_progresses: bool,
    /// When a Warning event is published.
    pub warn: Warn,
}

impl Policy {
    /// Sources (source-controller): every failure is a retried or stalled failure, and
    /// warns every time.
    pub const SOURCE: Policy = Policy {
        waiting_progresses: false,
        retry_progresses: false,
        warn: Warn::Always,
    };
    /// Appliers (kustomize- and helm-controller): waiting is progress; warn on change.
    pub const APPLIER: Policy = Policy {
        waiting_progresses: true,
        retry_progresses: false,
        warn: Warn::OnChange,
    };
}
