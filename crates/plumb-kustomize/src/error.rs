//! The crate's single error type.

use std::path::PathBuf;

/// Everything that can go wrong while building a kustomization. Messages name the file (and
/// line, for YAML syntax errors) and the operation; they never include secret values.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A YAML document could not be parsed.
    #[error("{file}:{line}:{column}: invalid YAML: {message}")]
    Yaml {
        /// File that holds the document.
        file: String,
        /// 1-based line of the problem (0 when unknown).
        line: usize,
        /// 1-based column of the problem (0 when unknown).
        column: usize,
        /// What the parser reported.
        message: String,
    },
    /// The caller's file transform ([`crate::BuildOptions::file_transform`]) refused a file.
    #[error("{message}")]
    Transform {
        /// The file, relative to the root.
        file: String,
        /// The transform's message (it names the file).
        message: String,
    },
    /// A file or directory could not be read.
    #[error("reading {path}: {source}")]
    Io {
        /// The path being read.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A path resolves (possibly through a symlink) outside the confinement root.
    #[error("{path}: path escapes the confinement root {root}")]
    Escape {
        /// The offending path.
        path: PathBuf,
        /// The root reads are confined to.
        root: PathBuf,
    },
    /// A file is larger than the configured size cap.
    #[error("{path}: file of {size} bytes exceeds the size cap of {cap} bytes")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        size: u64,
        /// The cap.
        cap: u64,
    },
    /// A remote resource (URL or git reference) was requested.
    #[error("{file}: remote resource {reference:?} is not supported; vendor it into the source")]
    Remote {
        /// The kustomization that references it.
        file: String,
        /// The reference.
        reference: String,
    },
    /// kustomization.yaml (or a referenced config file) is invalid.
    #[error("{file}: {message}")]
    Invalid {
        /// The file at fault.
        file: String,
        /// What is wrong.
        message: String,
    },
    /// A kustomization includes itself, directly or indirectly.
    #[error("{path}: cycle in kustomization resources ({chain})")]
    Cycle {
        /// The directory visited twice.
        path: PathBuf,
        /// The chain of directories.
        chain: String,
    },
    /// Building failed in a transformer, generator or merge step.
    #[error("{context}: {message}")]
    Build {
        /// Where (kustomization file and operation).
        context: String,
        /// What went wrong.
        message: String,
    },
}

/// Shorthand for results in this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn build(context: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Build {
            context: context.into(),
            message: message.into(),
        }
    }
    pub(crate) fn invalid(file: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Invalid {
            file: file.into(),
            message: message.into(),
        }
    }
}
