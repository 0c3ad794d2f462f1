//! Flux's `Setters` update strategy: find the YAML scalars marked with a line comment
//! `# {"$imagepolicy": "<namespace>:<name>"}` (or the `:tag`, `:name`, `:digest` forms) under a
//! directory and rewrite them to the image the named policy selected.
//!
//! Only the bytes of a marked scalar change: comments, quoting style, indentation and every
//! other byte stay as they were (the scalar is located by the event parser's byte spans and
//! spliced in place, never re-serialised). As Flux does, files that are not `.yaml`/`.yml` and
//! files that fail to parse are skipped, and a marker naming a policy outside the given set is
//! left alone; both are reported in [`Outcome`]. Symbolic links are never followed (a link
//! inside the tree names a file that is visited under its own path anyway; one pointing out of
//! it must not be written through), `.git` is not entered, and [`Limits`] caps the number and
//! size of files read.
//!
//! The changes come back as Flux's `update.Result`: files, then objects (apiVersion, kind,
//! namespace, name of the document), then the setters that changed, which is what the commit
//! message template of an ImageUpdateAutomation reads.

mod scan;
mod walk;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use crate::Error;

/// The image a policy selected: ImagePolicy `status.latestRef`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LatestRef {
    /// Image name without tag, e.g. `ghcr.io/org/app`.
    pub name: String,
    /// The selected tag.
    pub tag: String,
    /// The digest when the policy reflects digests (`sha256:...`), else empty.
    pub digest: String,
}

impl LatestRef {
    /// `name:tag`, or `name:tag@digest` when the digest is known (as Flux writes it).
    pub fn full(&self) -> String {
        if self.digest.is_empty() {
            format!("{}:{}", self.name, self.tag)
        } else {
            format!("{}:{}@{}", self.name, self.tag, self.digest)
        }
    }
}

/// One ImagePolicy the markers may name.
#[derive(Debug, Clone)]
pub struct Policy {
    /// The policy's namespace.
    pub namespace: String,
    /// The policy's name.
    pub name: String,
    /// What it selected.
    pub latest: LatestRef,
}

/// A YAML document's identity, as Flux's `ObjectIdentifier` (kyaml `ResourceIdentifier`).
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectId {
    /// `apiVersion` of the document, empty when absent.
    pub api_version: String,
    /// `kind`, empty when absent.
    pub kind: String,
    /// `metadata.namespace`, empty when absent.
    pub namespace: String,
    /// `metadata.name`, empty when absent.
    pub name: String,
}

/// One rewritten scalar (Flux's `update.Change`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The scalar's value before.
    pub old_value: String,
    /// The value written.
    pub new_value: String,
    /// The marker's setter, e.g. `flux-system:podinfo:tag`.
    pub setter: String,
}

/// What changed, per file (relative to the update path, `/`-separated) and object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// Flux's `FileChanges`.
    pub files: BTreeMap<String, BTreeMap<ObjectId, Vec<Change>>>,
}

impl Changes {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// Flux's `Objects()`: the changes of every file, per object.
    pub fn objects(&self) -> BTreeMap<ObjectId, Vec<Change>> {
        let mut out: BTreeMap<ObjectId, Vec<Change>> = BTreeMap::new();
        for objects in self.files.values() {
            for (id, changes) in objects {
                out.entry(id.clone())
                    .or_default()
                    .extend(changes.iter().cloned());
            }
        }
        out
    }

    /// Flux's `Changes()`: every change, in file then object order.
    pub fn changes(&self) -> Vec<Change> {
        self.files
            .values()
            .flat_map(|o| o.values().flatten().cloned())
            .collect()
    }
}

/// A marker that was left alone and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unresolved {
    /// The file, relative to the update path.
    pub file: String,
    /// 1-based line of the marked scalar.
    pub line: usize,
    /// The marker's setter text.
    pub setter: String,
    /// Why nothing was written.
    pub reason: String,
}

/// A file that was not read as YAML and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// The file, relative to the update path.
    pub file: String,
    /// Why (a parse error with its line, a symlink, not UTF-8).
    pub reason: String,
}

/// The result of one run of the setters.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// What was rewritten (already written to disk).
    pub changes: Changes,
    /// Markers left alone (missing policy, bad setter, no digest).
    pub unresolved: Vec<Unresolved>,
    /// YAML-named files that could not be read as YAML, and links not followed.
    pub skipped: Vec<Skipped>,
}

/// Caps on what one run reads.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most `.yaml`/`.yml` files under the update path.
    pub max_files: usize,
    /// Largest single file.
    pub max_file_bytes: u64,
    /// Most bytes over all files.
    pub max_total_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_files: 20_000,
            max_file_bytes: 8 << 20,
            max_total_bytes: 512 << 20,
        }
    }
}

/// Runs the setters over `update_path` (relative to `root`; empty or `.` is the root itself),
/// writing changed files in place.
pub fn apply(
    root: &Path,
    update_path: &str,
    policies: &[Policy],
    limits: &Limits,
) -> Result<Outcome, Error> {
    let dir = walk::resolve(root, update_path)?;
    let by_name: HashMap<(&str, &str), &LatestRef> = policies
        .iter()
        .map(|p| ((p.namespace.as_str(), p.name.as_str()), &p.latest))
        .collect();
    let mut out = Outcome::default();
    let files = walk::yaml_files(&dir, limits, &mut out.skipped)?;
    let mut total = 0u64;
    for rel in files {
        let path: PathBuf = dir.join(&rel);
        let io = |op, source| Error::Io {
            op,
            path: rel.clone(),
            source,
        };
        let len = std::fs::symlink_metadata(&path)
            .map_err(|e| io("read", e))?
            .len();
        if len > limits.max_file_bytes {
            return Err(Error::TooLarge(format!(
                "{rel} is {len} bytes (limit {})",
                limits.max_file_bytes
            )));
        }
        total += len;
        if total > limits.max_total_bytes {
            return Err(Error::TooLarge(format!(
                "more than {} bytes of YAML files",
                limits.max_total_bytes
            )));
        }
        let bytes = std::fs::read(&path).map_err(|e| io("read", e))?;
        let Ok(text) = String::from_utf8(bytes) else {
            out.skipped.push(Skipped {
                file: rel,
                reason: "not UTF-8".into(),
            });
            continue;
        };
        match scan::rewrite(&text, &by_name) {
            Err(reason) => out.skipped.push(Skipped { file: rel, reason }),
            Ok(file) => {
                for u in file.unresolved {
                    out.unresolved.push(Unresolved {
                        file: rel.clone(),
                        line: u.line,
                        setter: u.setter,
                        reason: u.reason,
                    });
                }
                if let Some(new_text) = file.text {
                    std::fs::write(&path, new_text).map_err(|e| io("write", e))?;
                    out.changes.files.insert(rel, file.objects);
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
