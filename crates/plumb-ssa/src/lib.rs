//! plumb's apply engine: staged server-side apply, drift detection, prune and health.
//!
//! It knows no custom resource of plumb's: callers hand it rendered objects (JSON), how to
//! apply each ([`SsaMode`], force), ownership labels for prune, and get back a
//! [`ChangeSet`]; [`Inventory`] is what a revision applies and, against the previous one,
//! what to prune. Kinds are resolved through discovery and cached; CRDs, Namespaces and
//! ClusterRoles are applied first and waited for, so a CRD and its custom resources can
//! ship in one revision.
//!
//! Drift is detected with as few requests as possible: the applier remembers the
//! resource version each apply produced, so the next pass is one server-side apply per
//! object, and an apply that changes nothing leaves the resource version alone
//! ("unchanged"). Health follows kstatus ([`kstatus`]) and is read once per call: the
//! caller requeues instead of blocking a worker.
//!
//! Modules: `applier` (the handle, kind discovery, the record of applies), `apply` (staged
//! server-side apply), `prune`, `wait` (definitions, deletion, health), `changeset`
//! (change sets and inventories), `legacy_ready` (Helm 3's readiness rules),
//! `client_apply` and `three_way` (Helm's client-side apply: create, three-way patches).

mod applier;
mod apply;
mod changeset;
mod client_apply;
pub mod kstatus;
pub mod legacy_ready;
mod object;
mod prune;
pub mod three_way;
mod wait;

pub use applier::Applier;
pub use apply::{ApplyItem, ApplyOptions, SsaMode};
pub use changeset::{Action, Change, ChangeSet, Inventory};
pub use client_apply::{ClientSideAction, ClientSideItem};
pub use kube::api::PropagationPolicy;
pub use object::{ObjectRef, Stage, split_api_version};
pub use prune::PruneOptions;

use std::time::Duration;

/// Errors of the apply engine. Each names the object and the operation.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A rendered object lacks what an apply needs.
    #[error("invalid object: {0}")]
    InvalidObject(String),
    /// The API server serves no such kind.
    #[error("{object}: no matches for kind {kind:?} in version {api_version:?}")]
    UnknownKind {
        /// apiVersion of the object.
        api_version: String,
        /// kind of the object.
        kind: String,
        /// The object.
        object: String,
    },
    /// An API call failed.
    #[error("{op} {object}: {message}")]
    Api {
        /// The operation.
        op: String,
        /// The object.
        object: String,
        /// The API server's message.
        message: String,
        /// HTTP status code, 0 when the request did not get an answer.
        code: u16,
    },
    /// An immutable field changed and force is off.
    #[error(
        "{object}: immutable field changed (set spec.force or the force annotation to recreate): {message}"
    )]
    Immutable {
        /// The object.
        object: String,
        /// The API server's message.
        message: String,
    },
    /// A stage of an apply failed.
    #[error("apply failed: {}", failures.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Apply {
        /// What was applied before the failure.
        applied: ChangeSet,
        /// The objects that failed.
        failures: Vec<Error>,
    },
    /// A wait ran out of time.
    #[error("timed out after {after:?} waiting for {what}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// The timeout.
        after: Duration,
    },
}

impl Error {
    fn api(op: &str, object: &ObjectRef, e: kube::Error) -> Self {
        let (message, code) = match e {
            kube::Error::Api(ae) => (ae.message.clone(), ae.code),
            other => (other.to_string(), 0),
        };
        Error::Api {
            op: op.to_string(),
            object: object.to_string(),
            message,
            code,
        }
    }

    /// True for errors that another try may fix (server unreachable, throttled, 5xx,
    /// conflicts); false for ones that need a change in Git.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Api { code, .. } => matches!(code, 0 | 409 | 429 | 500..=599),
            Error::Timeout { .. } => true,
            Error::Apply { failures, .. } => failures.iter().all(Error::is_transient),
            _ => false,
        }
    }

    /// True when the API server denied the request (RBAC).
    pub fn is_forbidden(&self) -> bool {
        match self {
            Error::Api { code, .. } => *code == 403,
            Error::Apply { failures, .. } => failures.iter().any(Error::is_forbidden),
            _ => false,
        }
    }
}
