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
    /// A `lookup` failed (forbidden, unreachable, over budget). `object` is
    /// `apiVersion kind namespace/name`; the message never holds object data.
    #[error("lookup {object}: {msg}")]
    Lookup {
        /// The object (or `namespace/*` for a list) looked up.
        object: String,
        /// What went wrong.
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
    /// A Helm repository operation failed (index fetch, chart resolution or download).
    /// `url` never holds credentials (userinfo and query are removed).
    #[error("{op} {url}: {msg}")]
    Repo {
        /// What was being done (`fetch index`, `resolve chart`, `download chart`...).
        op: &'static str,
        /// Redacted URL (or chart reference) it was done on.
        url: String,
        /// Class of the failure, for retry decisions and condition reasons.
        kind: RepoErrorKind,
        /// What went wrong.
        msg: String,
    },
}

/// Class of a [`HelmError::Repo`] failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RepoErrorKind {
    /// The server refused the credentials (401/403) or the TLS material is unusable.
    Auth,
    /// The index or chart URL answered 404.
    NotFound,
    /// Connection refused, DNS, TLS handshake or a 5xx answer.
    Unreachable,
    /// The operation ran out of time.
    Timeout,
    /// The response exceeds the size cap.
    TooLarge,
    /// The index or chart is not what it should be (bad YAML, digest mismatch).
    BadContent,
    /// The index has no chart of that name.
    ChartNotFound,
    /// The chart has no version matching the requested range.
    NoMatchingVersion,
    /// The spec is unusable (bad URL, bad version range).
    InvalidInput,
    /// A local file operation failed (chart cache).
    Io,
}

impl HelmError {
    /// The class of a repository failure (`None` for chart and render errors).
    pub fn repo_kind(&self) -> Option<RepoErrorKind> {
        match self {
            HelmError::Repo { kind, .. } => Some(*kind),
            _ => None,
        }
    }
}
