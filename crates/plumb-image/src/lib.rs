//! Image automation without I/O (no kube, no tokio), as Flux's image-reflector-controller:
//! * [`tags`]: the tag database of an ImageRepository scan: the exclusion list applied, one
//!   sorted, deduplicated `Vec<String>`, its revision and its latest tags;
//! * [`policy`]: ImagePolicy evaluation: `filterTags` (pattern and `$name` extraction), then
//!   the semver, alphabetical or numerical policy picks the latest tag;
//! * [`setters`]: the ImageUpdateAutomation `Setters` strategy: YAML scalars marked with
//!   `# {"$imagepolicy": "ns:name"}` rewritten in place (the only module touching files).

pub mod policy;
pub mod setters;
pub mod tags;

pub use policy::{Order, Policy, PolicyKind, TagFilter};
pub use tags::{Exclusions, TagDb};

/// Errors of policy and exclusion evaluation; messages name the offending pattern or tag,
/// never credentials.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A regular expression of `exclusionList` or `filterTags.pattern` does not compile.
    #[error("invalid regular expression {pattern:?}: {message}")]
    Regex {
        /// The pattern.
        pattern: String,
        /// The parser's message.
        message: String,
    },
    /// `policy.semver.range` is not a valid range.
    #[error("invalid semver range {range:?}: {message}")]
    Range {
        /// The range.
        range: String,
        /// The parser's message.
        message: String,
    },
    /// The numerical policy met a tag (after extraction) that is not a number.
    #[error("failed to parse invalid numeric value {0:?}")]
    NotNumeric(String),
    /// No or more than one of semver, alphabetical, numerical is set.
    #[error("exactly one of policy.semver, policy.alphabetical, policy.numerical must be set")]
    NoPolicy,
    /// The setters' update path leaves the root or is not a directory in it.
    #[error("update path {path:?} {why}")]
    BadPath {
        /// The path as given.
        path: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// Reading or writing a file of the update path failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// `read`, `write`, `list`.
        op: &'static str,
        /// The file, relative to the update path.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A budget of [`setters::Limits`] was exceeded.
    #[error("update path holds too much YAML: {0}")]
    TooLarge(String),
}
