//! Confined file access: every read is resolved (symlinks included) and must stay inside the
//! confinement root; files over the size cap are refused.

use std::path::{Component, Path, PathBuf};

use crate::error::{Error, Result};
use crate::reads::Seen;

/// Reads files on behalf of a build, confined to one root directory.
#[derive(Debug, Clone)]
pub(crate) struct Loader {
    root: PathBuf,
    max_file_bytes: u64,
    transform: Option<crate::FileTransform>,
    log: Option<crate::ReadLog>,
}

impl Loader {
    pub(crate) fn new(
        root: &Path,
        max_file_bytes: u64,
        transform: Option<crate::FileTransform>,
        log: Option<crate::ReadLog>,
    ) -> Result<Self> {
        let root = std::fs::canonicalize(root).map_err(|source| Error::Io {
            path: root.to_path_buf(),
            source,
        })?;
        Ok(Loader {
            root,
            max_file_bytes,
            transform,
            log,
        })
    }

    fn note(&self, path: &Path, how: Seen) {
        if let Some(log) = &self.log {
            log.record(&self.root, path, how);
        }
    }

    /// Whether `path` is a file (following symlinks), recorded as a probe.
    pub(crate) fn is_file(&self, path: &Path) -> bool {
        self.note(path, Seen::Probed);
        path.is_file()
    }

    /// Whether `path` is a directory (following symlinks), recorded as a probe.
    pub(crate) fn is_dir(&self, path: &Path) -> bool {
        self.note(path, Seen::Probed);
        path.is_dir()
    }

    /// The entries of directory `dir`, sorted, recorded as a listing.
    pub(crate) fn list_dir(&self, dir: &Path) -> Result<Vec<PathBuf>> {
        self.note(dir, Seen::Listed);
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|source| Error::Io {
                path: dir.to_path_buf(),
                source,
            })?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        entries.sort();
        Ok(entries)
    }

    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    /// Resolves `rel` against `base`, follows symlinks and checks confinement.
    pub(crate) fn resolve(&self, base: &Path, rel: &str) -> Result<PathBuf> {
        let joined = base.join(rel);
        let lexical = normalize(&joined);
        // The path as written: a symlink there may later point elsewhere.
        self.note(&lexical, Seen::Probed);
        if !lexical.starts_with(&self.root) {
            return Err(Error::Escape {
                path: lexical,
                root: self.root.clone(),
            });
        }
        let real = std::fs::canonicalize(&lexical).map_err(|source| Error::Io {
            path: lexical.clone(),
            source,
        })?;
        if !real.starts_with(&self.root) {
            return Err(Error::Escape {
                path: lexical,
                root: self.root.clone(),
            });
        }
        Ok(real)
    }

    /// Reads a confined, already resolved file as UTF-8 text.
    pub(crate) fn read(&self, path: &Path) -> Result<String> {
        let bytes = self.read_bytes(path)?;
        String::from_utf8(bytes)
            .map_err(|_| Error::invalid(path.display().to_string(), "file is not valid UTF-8"))
    }

    pub(crate) fn read_bytes(&self, path: &Path) -> Result<Vec<u8>> {
        let io = |source| Error::Io {
            path: path.to_path_buf(),
            source,
        };
        self.note(path, Seen::File);
        let meta = std::fs::metadata(path).map_err(io)?;
        if meta.len() > self.max_file_bytes {
            return Err(Error::TooLarge {
                path: path.to_path_buf(),
                size: meta.len(),
                cap: self.max_file_bytes,
            });
        }
        let bytes = std::fs::read(path).map_err(io)?;
        match &self.transform {
            Some(t) => {
                let name = self.display(path);
                (t.0)(&name, bytes).map_err(|message| Error::Transform {
                    file: name,
                    message,
                })
            }
            None => Ok(bytes),
        }
    }

    /// A path relative to `base` for messages and origin annotations.
    pub(crate) fn display(&self, path: &Path) -> String {
        path.strip_prefix(&self.root)
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| path.display().to_string())
    }
}

/// Lexical normalisation (`.` and `..` removed) without touching the file system.
pub(crate) fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// A path from `from` (a directory) to `to`, using `..` where needed.
pub(crate) fn relative(from: &Path, to: &Path) -> String {
    let f: Vec<_> = from.components().collect();
    let t: Vec<_> = to.components().collect();
    let common = f.iter().zip(&t).take_while(|(a, b)| a == b).count();
    let mut parts: Vec<String> = Vec::new();
    for _ in common..f.len() {
        parts.push("..".into());
    }
    for c in &t[common..] {
        parts.push(c.as_os_str().to_string_lossy().into_owned());
    }
    parts.join("/")
}

/// Whether a resource reference is remote (URL or git reference) rather than a local path.
pub(crate) fn is_remote(s: &str) -> bool {
    s.contains("://")
        || s.starts_with("git@")
        || s.starts_with("github.com/")
        || s.starts_with("gitlab.com/")
        || s.starts_with("bitbucket.org/")
        || s.contains("?ref=")
        || s.contains(".git//")
        || s.ends_with(".git")
}
