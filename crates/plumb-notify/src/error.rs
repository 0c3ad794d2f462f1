//! The one error type of this crate.

/// Why a notification was not delivered. Messages never hold a token, a password or a
/// webhook URL's path or query (they are secrets for most services).
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// The Provider's type is not one plumb serves.
    #[error("provider type '{0}' is not supported")]
    Unsupported(String),
    /// The Provider or its Secret lacks something the type needs, or holds a bad value.
    #[error("invalid provider settings: {0}")]
    InvalidSettings(String),
    /// The event lacks something the type needs (e.g. a commit revision for a commit status).
    #[error("event not deliverable by this provider: {0}")]
    Undeliverable(String),
    /// The request could not be sent or no response came (connect, TLS, timeout).
    #[error("sending to {host}: {message}")]
    Transport {
        /// Scheme, host and port only.
        host: String,
        /// What failed.
        message: String,
    },
    /// The service answered with a non-success status.
    #[error("{host} answered HTTP {status}: {body}")]
    Status {
        /// Scheme, host and port only.
        host: String,
        /// The HTTP status code.
        status: u16,
        /// The start of the response body, for the user to read.
        body: String,
    },
}

impl NotifyError {
    /// Whether sending again later may succeed (network trouble, 429 and 5xx answers).
    pub fn is_retryable(&self) -> bool {
        match self {
            NotifyError::Transport { .. } => true,
            NotifyError::Status { status, .. } => *status == 429 || *status >= 500,
            _ => false,
        }
    }
}
