//! The crate's one error type, and how each answers an HTTP request (`{"error": ...}`).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};

/// What can go wrong serving the UI.
#[derive(Debug, thiserror::Error)]
pub enum UiError {
    /// Binding or serving the HTTP listener failed.
    #[error("serving the UI on {addr}: {source}")]
    Serve {
        /// The address.
        addr: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The path names no Flux kind plumb serves.
    #[error("unknown kind {0:?}")]
    UnknownKind(String),
    /// The object does not exist (or the kind has no CRD).
    #[error("{0} not found")]
    NotFound(String),
    /// The API server refused the user (RBAC): its message is passed on.
    #[error("{op}: {message}")]
    Forbidden {
        /// What was attempted, e.g. `patching Kustomization ns/a`.
        op: String,
        /// The API server's message.
        message: String,
    },
    /// Another API error.
    #[error("{op}: {source}")]
    Kube {
        /// What was attempted.
        op: String,
        /// The cause.
        source: kube::Error,
    },
    /// Actions are off on this server (the shared in-cluster view).
    #[error("this view is read-only: actions are off")]
    ReadOnly,
    /// A request that failed the same-origin checks (CSRF, DNS rebinding).
    #[error("refused: {0}")]
    Refused(&'static str),
    /// The server has no cluster behind it (a synthetic fleet).
    #[error("no cluster behind this server")]
    NoCluster,
    /// Reconcile of a suspended object.
    #[error("{0} is suspended; resume it first")]
    Suspended(String),
    /// An action name that is not `reconcile`, `suspend` or `resume`.
    #[error("unknown action {0:?}")]
    UnknownAction(String),
    /// The diff is not offered for this kind or failed.
    #[error("diff: {0}")]
    Diff(String),
}

impl UiError {
    /// An API error of operation `op`: a 403 keeps the server's message, a 404 is
    /// [`UiError::NotFound`].
    pub fn from_kube(op: impl Into<String>, what: &str, source: kube::Error) -> UiError {
        match source {
            kube::Error::Api(s) if s.code == 403 => UiError::Forbidden {
                op: op.into(),
                message: s.message,
            },
            kube::Error::Api(s) if s.code == 404 => UiError::NotFound(what.to_string()),
            source => UiError::Kube {
                op: op.into(),
                source,
            },
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            UiError::Serve { .. } | UiError::Diff(_) => StatusCode::INTERNAL_SERVER_ERROR,
            UiError::UnknownKind(_) | UiError::NotFound(_) | UiError::UnknownAction(_) => {
                StatusCode::NOT_FOUND
            }
            UiError::Forbidden { .. } | UiError::Refused(_) => StatusCode::FORBIDDEN,
            UiError::Kube { .. } => StatusCode::BAD_GATEWAY,
            UiError::ReadOnly => StatusCode::METHOD_NOT_ALLOWED,
            UiError::NoCluster => StatusCode::SERVICE_UNAVAILABLE,
            UiError::Suspended(_) => StatusCode::CONFLICT,
        }
    }
}

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.to_string() });
        (self.status(), Json(body)).into_response()
    }
}
