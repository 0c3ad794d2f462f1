//! Building the output artifacts (blocking; run on the blocking pool): stage each
//! artifact's files by its copy operations, archive the staging directory (a deterministic
//! tar.gz: sorted entries, zero times) into the ExternalArtifact's storage directory and
//! take the archive's digest as the revision (`latest@sha256:<hex>`), so the revision
//! changes only when the artifact's own content does.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use plumb_api::artifact_generator::OutputArtifact;
use plumb_api::consts::{condition, reason};
use plumb_api::meta::Artifact;
use plumb_source::artifact::{IgnoreRules, Limits, ObjectKey, Storage, archive_dir};

use super::copy::{self, CopyError};
use crate::outcome::{Class, Failure};

/// Storage kind segment of generated artifacts, as Flux's (`externalartifact/<ns>/<name>`).
pub(super) const STORAGE_KIND: &str = "ExternalArtifact";

/// The annotation carrying an artifact's origin revision.
const ORIGIN_REVISION: &str = "org.opencontainers.image.revision";

/// An ignore rule matching nothing: with a pattern present only the VCS exclusions apply,
/// not the media/archive defaults (a generated artifact may carry chart tarballs).
const KEEP_ALL: &str = "/.plumb-generated-keep-all";

/// What one build pass needs.
pub(super) struct Inputs {
    /// Storage of this process.
    pub storage: Storage,
    /// Namespace of the generator (and of its ExternalArtifacts).
    pub namespace: String,
    /// Extracted source artifacts by alias.
    pub dirs: BTreeMap<String, PathBuf>,
    /// The sources' artifacts by alias.
    pub sources: BTreeMap<String, Artifact>,
    /// Artifacts to keep besides the current one, and for how long.
    pub retention: (usize, std::time::Duration),
}

/// Builds every output; the first failure stops the pass (nothing is published).
pub(super) fn build_all(
    inputs: &Inputs,
    outputs: &[OutputArtifact],
) -> Result<Vec<Artifact>, Failure> {
    outputs.iter().map(|o| build_one(inputs, o)).collect()
}

fn build_one(inputs: &Inputs, out: &OutputArtifact) -> Result<Artifact, Failure> {
    let staging = tempfile::Builder::new()
        .prefix("plumb-generate-")
        .tempdir()
        .map_err(|e| storage_failure(format!("creating staging dir: {e}")))?;
    for op in &out.copy {
        copy::apply(op, &inputs.dirs, staging.path()).map_err(|e| {
            let class = match e {
                CopyError::Input(_) => Class::Stalled,
                CopyError::Io(_) => Class::Transient,
            };
            Failure::new(
                class,
                reason::BUILD_FAILED,
                format!("artifact '{}': {e}", out.name),
            )
        })?;
    }
    let key = ObjectKey {
        kind: STORAGE_KIND,
        namespace: &inputs.namespace,
        name: &out.name,
    };
    let rules = IgnoreRules::from_files(staging.path(), &[], Some(KEEP_ALL))
        .map_err(|e| storage_failure(e.to_string()))?;
    let dir = staging.path().to_path_buf();
    let stored = inputs
        .storage
        .store_with(key, "", |w| archive_dir(&dir, &rules, Limits::default(), w))
        .map_err(|e| {
            let class = match e.kind() {
                plumb_source::ErrorKind::Internal => Class::Transient,
                _ => Class::Stalled,
            };
            Failure::new(
                class,
                reason::BUILD_FAILED,
                format!("artifact '{}': {e}", out.name),
            )
        })?;
    let (keep, ttl) = inputs.retention;
    inputs
        .storage
        .gc(key, &stored.path, keep, ttl)
        .map_err(|e| storage_failure(e.to_string()))?;
    let by_alias = |r: &Option<String>| {
        r.as_deref()
            .and_then(|a| inputs.sources.get(a.trim_start_matches('@')))
    };
    let revision = match by_alias(&out.revision) {
        Some(src) => src.revision.clone(),
        None => format!("latest@{}", stored.digest),
    };
    let mut metadata = BTreeMap::new();
    if let Some(src) = by_alias(&out.origin_revision) {
        let origin = src
            .metadata
            .get(ORIGIN_REVISION)
            .cloned()
            .unwrap_or_else(|| src.revision.clone());
        metadata.insert(ORIGIN_REVISION.to_string(), origin);
    }
    Ok(Artifact {
        path: stored.path,
        url: stored.url,
        revision,
        digest: Some(stored.digest),
        last_update_time: Time(k8s_openapi::jiff::Timestamp::now()),
        size: i64::try_from(stored.size).ok(),
        metadata,
    })
}

fn storage_failure(msg: String) -> Failure {
    Failure::new(Class::Transient, condition::STORAGE_OPERATION_FAILED, msg)
}

/// Names of `outputs`, for the stale-inventory diff.
pub(super) fn names(outputs: &[OutputArtifact]) -> BTreeSet<&str> {
    outputs.iter().map(|o| o.name.as_str()).collect()
}
