//! The tree of a changed work directory, built on the tree it was checked out from: regular
//! files whose content differs get new blobs (keeping their mode), new files are added as
//! `100644`; symbolic links, submodules and deletions are left as the base tree has them
//! (the change step only rewrites or adds files).

use std::path::Path;

use git2::{Index, IndexEntry, IndexTime, ObjectType, Oid, Repository, Tree};

use super::Session;
use crate::{Result, SourceError};

/// Writes the tree of `dir` (checked out from `base`) into `repo`.
pub(super) fn tree_from_dir(
    repo: &Repository,
    base: &Tree<'_>,
    dir: &Path,
    s: &Session,
) -> Result<Oid> {
    let mut index = Index::new().map_err(|e| s.git_err(e))?;
    index.read_tree(base).map_err(|e| s.git_err(e))?;
    // Every file, hidden ones included; links are not followed (they keep the base's entry).
    let walk = ignore::WalkBuilder::new(dir)
        .standard_filters(false)
        .follow_links(false)
        .build();
    for entry in walk {
        let entry = entry.map_err(|e| SourceError::Io {
            op: "read work tree",
            path: dir.to_path_buf(),
            source: std::io::Error::other(e.to_string()),
        })?;
        if !entry.file_type().is_some_and(|t| t.is_file()) {
            continue;
        }
        let Ok(rel) = entry.path().strip_prefix(dir) else {
            continue;
        };
        let rel = rel
            .to_string_lossy()
            .replace(std::path::MAIN_SEPARATOR, "/");
        update(repo, &mut index, &rel, entry.path(), s)?;
    }
    index.write_tree_to(repo).map_err(|e| s.git_err(e))
}

fn update(repo: &Repository, index: &mut Index, rel: &str, path: &Path, s: &Session) -> Result<()> {
    let existing = index.get_path(Path::new(rel), 0);
    // Links and submodules are not regular files in the checkout; keep what the base had.
    if existing
        .as_ref()
        .is_some_and(|e| e.mode & 0o170000 != 0o100000)
    {
        return Ok(());
    }
    let content = std::fs::read(path).map_err(SourceError::io("read work tree", path))?;
    let id = Oid::hash_object(ObjectType::Blob, &content).map_err(|e| s.git_err(e))?;
    if existing.as_ref().is_some_and(|e| e.id == id) {
        return Ok(());
    }
    let id = repo.blob(&content).map_err(|e| s.git_err(e))?;
    let zero = IndexTime::new(0, 0);
    index
        .add(&IndexEntry {
            ctime: zero,
            mtime: zero,
            dev: 0,
            ino: 0,
            mode: existing.map_or(0o100644, |e| e.mode),
            uid: 0,
            gid: 0,
            file_size: u32::try_from(content.len()).unwrap_or(u32::MAX),
            id,
            flags: u16::try_from(rel.len()).unwrap_or(0xfff).min(0xfff),
            flags_extended: 0,
            path: rel.as_bytes().to_vec(),
        })
        .map_err(|e| s.git_err(e))
}
