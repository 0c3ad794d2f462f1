//! Building the output artifacts (blocking; run on the blocking pool): stage each
//! artifact's files by its copy operations, archive the staging directory (a deterministic
//! tar.gz: sorted entries, zero times) into the ExternalArtifact's storage directory and
//! take the archive's digest as the revision (`latest@sha256:<hex>`), so the revision
//! changes only when the artifact's own content does.
//!
//! A monorepo commit touches few outputs, so each staged directory is hashed first (paths,
//! modes, contents: a fraction of gzip's cost) and an output whose content hash equals the
//! last build's reuses that archive instead of writing and collecting a new one
//! ([`BuiltOutputs`], in memory: after a restart every output is archived once).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use sha2::{Digest as _, Sha256};

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
    /// The last build of every output (a `Context::memo`).
    pub built: Arc<BuiltOutputs>,
}

/// The content hash and stored artifact of each output's last build, by namespace and name.
#[derive(Debug, Default)]
pub struct BuiltOutputs(Mutex<HashMap<(String, String), (String, Artifact)>>);

impl BuiltOutputs {
    fn reusable(&self, storage: &Storage, ns: &str, name: &str, hash: &str) -> Option<Artifact> {
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let (h, a) = map.get(&(ns.to_string(), name.to_string()))?;
        (h == hash && storage.root().join(&a.path).is_file()).then(|| a.clone())
    }

    fn record(&self, ns: &str, name: &str, hash: String, artifact: &Artifact) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.insert((ns.to_string(), name.to_string()), (hash, artifact.clone()));
    }
}

/// SHA-256 over a staged tree: every entry's relative path, type, executable bit and content
/// (or link target), in sorted order.
fn tree_hash(root: &Path) -> std::io::Result<String> {
    fn walk(root: &Path, dir: &Path, h: &mut Sha256) -> std::io::Result<()> {
        let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let path = e.path();
            let rel = path.strip_prefix(root).unwrap_or(&path);
            h.update(rel.to_string_lossy().as_bytes());
            h.update([0]);
            let meta = std::fs::symlink_metadata(&path)?;
            if meta.is_dir() {
                h.update(b"d");
                walk(root, &path, h)?;
            } else if meta.file_type().is_symlink() {
                h.update(b"l");
                h.update(std::fs::read_link(&path)?.to_string_lossy().as_bytes());
            } else {
                use std::os::unix::fs::PermissionsExt as _;
                h.update(if meta.permissions().mode() & 0o111 != 0 {
                    b"x"
                } else {
                    b"f"
                });
                h.update(meta.len().to_le_bytes());
                h.update(std::fs::read(&path)?);
            }
            h.update([0]);
        }
        Ok(())
    }
    let mut h = Sha256::new();
    walk(root, root, &mut h)?;
    Ok(hex::encode(h.finalize()))
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
    let hash = tree_hash(staging.path())
        .map_err(|e| storage_failure(format!("hashing staged '{}': {e}", out.name)))?;
    let reused = inputs
        .built
        .reusable(&inputs.storage, &inputs.namespace, &out.name, &hash);
    let stored = match reused {
        Some(a) => a,
        None => {
            let a = store(inputs, out, staging.path())?;
            inputs.built.record(&inputs.namespace, &out.name, hash, &a);
            a
        }
    };
    let by_alias = |r: &Option<String>| {
        r.as_deref()
            .and_then(|a| inputs.sources.get(a.trim_start_matches('@')))
    };
    let digest = stored.digest.clone().unwrap_or_default();
    let revision = match by_alias(&out.revision) {
        Some(src) => src.revision.clone(),
        None => format!("latest@{digest}"),
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
        revision,
        metadata,
        ..stored
    })
}

/// Archives a staged output into storage and collects its older archives.
fn store(inputs: &Inputs, out: &OutputArtifact, staged: &Path) -> Result<Artifact, Failure> {
    let key = ObjectKey {
        kind: STORAGE_KIND,
        namespace: &inputs.namespace,
        name: &out.name,
    };
    let rules = IgnoreRules::from_files(staged, &[], Some(KEEP_ALL))
        .map_err(|e| storage_failure(e.to_string()))?;
    let dir = staged.to_path_buf();
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
    Ok(Artifact {
        path: stored.path,
        url: stored.url,
        revision: String::new(),
        digest: Some(stored.digest),
        last_update_time: Time(k8s_openapi::jiff::Timestamp::now()),
        size: i64::try_from(stored.size).ok(),
        metadata: BTreeMap::new(),
    })
}

fn storage_failure(msg: String) -> Failure {
    Failure::new(Class::Transient, condition::STORAGE_OPERATION_FAILED, msg)
}

/// Names of `outputs`, for the stale-inventory diff.
pub(super) fn names(outputs: &[OutputArtifact]) -> BTreeSet<&str> {
    outputs.iter().map(|o| o.name.as_str()).collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use plumb_api::artifact_generator::CopyOperation;

    fn output(name: &str, from: &str) -> OutputArtifact {
        OutputArtifact {
            name: name.into(),
            copy: vec![CopyOperation {
                from: from.into(),
                to: "@artifact/".into(),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn an_unchanged_output_reuses_its_archive_and_a_changed_one_is_rebuilt() {
        let src = tempfile::tempdir().unwrap();
        let store = tempfile::tempdir().unwrap();
        for app in ["a", "b"] {
            std::fs::create_dir_all(src.path().join(app)).unwrap();
            std::fs::write(src.path().join(app).join("cm.yaml"), "v: 1\n").unwrap();
        }
        let inputs = Inputs {
            storage: Storage::new(store.path(), "localhost:0"),
            namespace: "ns".into(),
            dirs: [("mono".to_string(), src.path().to_path_buf())].into(),
            sources: BTreeMap::new(),
            retention: (2, std::time::Duration::from_secs(3600)),
            built: Arc::default(),
        };
        let outs = [output("a", "@mono/a/**"), output("b", "@mono/b/**")];
        let first = build_all(&inputs, &outs).unwrap();
        std::fs::write(src.path().join("a").join("cm.yaml"), "v: 2\n").unwrap();
        let second = build_all(&inputs, &outs).unwrap();
        // `a` changed: a new archive and revision; `b` is the very same artifact.
        assert_ne!(first[0].digest, second[0].digest);
        assert_ne!(first[0].revision, second[0].revision);
        assert_eq!(first[1], second[1]);
        // A reused archive that was removed from storage is written again.
        std::fs::remove_file(store.path().join(&second[1].path)).unwrap();
        let third = build_all(&inputs, &outs).unwrap();
        assert!(store.path().join(&third[1].path).is_file());
        assert_eq!(third[1].digest, second[1].digest);
    }

    #[test]
    fn tree_hash_sees_paths_contents_and_modes() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("x")).unwrap();
        std::fs::write(d.path().join("x/f"), "1").unwrap();
        let h0 = tree_hash(d.path()).unwrap();
        assert_eq!(h0, tree_hash(d.path()).unwrap());
        std::fs::write(d.path().join("x/f"), "2").unwrap();
        let h1 = tree_hash(d.path()).unwrap();
        assert_ne!(h0, h1);
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(d.path().join("x/f"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
        let h2 = tree_hash(d.path()).unwrap();
        assert_ne!(h1, h2);
        std::fs::rename(d.path().join("x/f"), d.path().join("x/g")).unwrap();
        assert_ne!(h2, tree_hash(d.path()).unwrap());
    }
}
