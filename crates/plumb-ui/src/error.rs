//! The crate's one error type.

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
}
