//! The crate's error type.

/// Errors of parsing and executing templates. Messages read as Go's
/// (`template: name:line:col: ...`); they quote template source and names,
/// never the data a template was executed with.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// The source does not parse.
    #[error("{msg}")]
    Parse {
        /// Go-style message.
        msg: String,
    },
    /// Execution failed (a function error, a missing template, a budget).
    #[error("{msg}")]
    Exec {
        /// Go-style message.
        msg: String,
    },
}
