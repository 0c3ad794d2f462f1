//! The error of this crate.

/// Errors of the controllers that escape a reconcile (status writes, finalizers,
/// storage). Failures of the reconciled work itself end up in status instead.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Kubernetes API call failed.
    #[error("kubernetes: {0}")]
    Kube(String),
    /// Artifact storage failed.
    #[error("storage: {0}")]
    Storage(String),
    /// Adding or removing the finalizer failed.
    #[error("finalizer: {0}")]
    Finalizer(String),
    /// Leader election failed (the lease could not be read, written or released).
    #[error("leader election: {0}")]
    Leader(String),
    /// Leading ended without a release: another replica took the lease, or no renew was
    /// confirmed within the renew deadline.
    #[error("leader election: lost lease {0}")]
    LeaseLost(String),
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
