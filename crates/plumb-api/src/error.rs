//! The error type of plumb-api.

/// Errors of parsing identifiers and generating or checking CRDs.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An inventory entry id is not `<namespace>_<name>_<group>_<kind>`.
    #[error("invalid inventory id {id:?}: {reason}")]
    InvalidInventoryId {
        /// The id.
        id: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A revision string is not `[<ref>@]<algo>:<hex>`.
    #[error("invalid revision {revision:?}: {reason}")]
    InvalidRevision {
        /// The revision.
        revision: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A Go duration string cannot be parsed.
    #[error("invalid duration {value:?}: {reason}")]
    InvalidDuration {
        /// The duration text.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A CRD could not be rendered as YAML.
    #[error("rendering CRD {name} as YAML: {source}")]
    Render {
        /// The CRD name.
        name: String,
        /// The serializer error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}
