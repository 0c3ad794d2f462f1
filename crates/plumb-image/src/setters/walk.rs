//! Finding the YAML files under the update path without leaving the root: `..` that climbs out
//! is refused, symbolic links are never followed, `.git` is not entered.

use std::path::{Component, Path, PathBuf};

use super::{Limits, Skipped};
use crate::Error;

/// The update path as a directory inside `root`.
pub(super) fn resolve(root: &Path, update_path: &str) -> Result<PathBuf, Error> {
    let bad = |why| Error::BadPath {
        path: update_path.to_string(),
        why,
    };
    let mut dir = root.to_path_buf();
    let mut depth = 0usize;
    for c in Path::new(update_path).components() {
        match c {
            Component::CurDir => {}
            // Flux joins the path under the work tree, so a leading `/` means the root.
            Component::RootDir | Component::Prefix(_) => {}
            Component::ParentDir => {
                if depth == 0 {
                    return Err(bad("leaves the repository"));
                }
                dir.pop();
                depth -= 1;
            }
            Component::Normal(part) => {
                dir.push(part);
                depth += 1;
                let meta = std::fs::symlink_metadata(&dir)
                    .map_err(|_| bad("does not exist in the repository"))?;
                if meta.file_type().is_symlink() {
                    return Err(bad("goes through a symbolic link"));
                }
            }
        }
    }
    if !dir.is_dir() {
        return Err(bad("is not a directory in the repository"));
    }
    Ok(dir)
}

/// Every `.yaml`/`.yml` regular file under `dir`, relative and `/`-separated, sorted.
pub(super) fn yaml_files(
    dir: &Path,
    limits: &Limits,
    skipped: &mut Vec<Skipped>,
) -> Result<Vec<String>, Error> {
    let mut out = Vec::new();
    let mut pending = vec![String::new()];
    while let Some(rel) = pending.pop() {
        let here = if rel.is_empty() {
            dir.to_path_buf()
        } else {
            dir.join(&rel)
        };
        let entries = std::fs::read_dir(&here).map_err(|source| Error::Io {
            op: "list",
            path: rel.clone(),
            source,
        })?;
        for entry in entries {
            let entry = entry.map_err(|source| Error::Io {
                op: "list",
                path: rel.clone(),
                source,
            })?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let child = if rel.is_empty() {
                name.clone()
            } else {
                format!("{rel}/{name}")
            };
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            let yaml = name.ends_with(".yaml") || name.ends_with(".yml");
            if kind.is_symlink() {
                if yaml {
                    skipped.push(Skipped {
                        file: child,
                        reason: "symbolic link, not followed".into(),
                    });
                }
            } else if kind.is_dir() {
                if name != ".git" {
                    pending.push(child);
                }
            } else if kind.is_file() && yaml {
                out.push(child);
                if out.len() > limits.max_files {
                    return Err(Error::TooLarge(format!(
                        "more than {} YAML files",
                        limits.max_files
                    )));
                }
            }
        }
    }
    out.sort();
    Ok(out)
}
