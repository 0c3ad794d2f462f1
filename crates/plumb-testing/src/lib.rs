//! Test harness for plumb (dev only): a real local Kubernetes control plane,
//! per-test namespaces, polling helpers, git fixtures and builders.
//!
//! Nothing here mocks the API server: tests talk to a real kube-apiserver 1.20 backed by
//! etcd, with token authentication, RBAC and the controller-manager's namespace and
//! garbage-collector controllers, so that namespace deletion and owner references behave
//! as in a cluster.

pub mod browser;
pub mod chartrepo;
pub mod controlplane;
pub mod eks_webhook;
pub mod git;
pub mod github_app;
pub mod httpproxy;
pub mod jwt;
pub mod moto;
pub mod namespace;
pub mod proxy;
pub mod registry;
pub mod registry_token;
pub mod signing;
pub mod slow;
pub mod ssh;
pub mod tls;
pub mod wait;
pub mod webhook_sink;

pub use controlplane::{ControlPlane, ControlPlaneInfo, StartOptions};
pub use namespace::TestNamespace;

use std::path::{Path, PathBuf};

/// Errors of the test harness.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A control-plane binary is not where the provisioning script puts it.
    #[error(
        "control-plane binary {0} not found: run scripts/provision-control-plane.sh \
         (or set PLUMB_K8S_BIN / PLUMB_ETCD)"
    )]
    MissingBinary(PathBuf),
    /// A file operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: String,
        /// On what.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Certificate generation failed.
    #[error("generating test certificates: {0}")]
    Pki(String),
    /// The apiserver did not answer `/readyz` in time.
    #[error("kube-apiserver not ready after {after:?}; last log lines:\n{log_tail}")]
    NotReady {
        /// The timeout.
        after: std::time::Duration,
        /// The end of the apiserver log.
        log_tail: String,
    },
    /// A control-plane process exited early.
    #[error("{what} exited early ({status}); last apiserver log lines:\n{log_tail}")]
    Exited {
        /// Which process.
        what: String,
        /// Its exit status.
        status: String,
        /// The end of the apiserver log.
        log_tail: String,
    },
    /// The shared control plane could not be had.
    #[error("shared control plane: {0}")]
    Shared(String),
    /// A Kubernetes client call failed.
    #[error("kubernetes client: {0}")]
    Kube(String),
    /// The headless browser failed (missing, exited, or a DevTools call failed).
    #[error("browser: {0}")]
    Browser(String),
    /// A poll ran out of time.
    #[error("timed out after {after:?} waiting for {what}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// The timeout.
        after: std::time::Duration,
    },
}

impl Error {
    pub(crate) fn io(op: &str, path: &Path, source: std::io::Error) -> Self {
        Error::Io {
            op: op.to_string(),
            path: path.to_path_buf(),
            source,
        }
    }
}
