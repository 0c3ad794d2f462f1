//! The crate's error type.

/// Errors of chart loading and rendering.
#[derive(Debug, thiserror::Error)]
pub enum HelmError {
    /// A chart could not be loaded (bad archive, missing Chart.yaml...).
    #[error("loading chart {chart}: {msg}")]
    Load {
        /// Chart (path or name).
        chart: String,
        /// What went wrong.
        msg: String,
    },
    /// Values could not be read or coalesced.
    #[error("values of chart {chart}: {msg}")]
    Values {
        /// Chart name.
        chart: String,
        /// What went wrong.
        msg: String,
    },
    /// Values failed `values.schema.json`.
    #[error("validating values of chart {chart}: {msg}")]
    Schema {
        /// Chart name.
        chart: String,
        /// The schema violations.
        msg: String,
    },
    /// Template parse or execution failure (`template: name:line:col: ...`).
    #[error("{msg}")]
    Template {
        /// Go-style message.
        msg: String,
    },
    /// A rendered document is not valid YAML.
    #[error("YAML parse error on {path}: {msg}")]
    Yaml {
        /// Template path.
        path: String,
        /// Parser message.
        msg: String,
    },
    /// Other render failures (kubeVersion mismatch, library chart...).
    #[error("rendering chart {chart}: {msg}")]
    Render {
        /// Chart name.
        chart: String,
        /// What went wrong.
        msg: String,
    },
    /// A release record could not be encoded or decoded.
    #[error("release storage {release}: {msg}")]
    Storage {
        /// Release (`name.vN`) or what was being read.
        release: String,
        /// What went wrong.
        msg: String,
    },
}
