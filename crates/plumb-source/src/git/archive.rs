//! The artifact of a commit written straight from the bare cache, without a checkout.

use std::path::{Path, PathBuf};
use std::time::Instant;

use git2::{ObjectType, Oid, Repository};

use super::{CacheLock, FetchOptions, Session, open_cache};
use crate::{Result, SourceError};

/// Write the deterministic tar.gz artifact of `commit` straight from the cache, without a
/// checkout: the same bytes [`checkout`] + [`crate::artifact::archive_dir`] produce (same
/// ignore rules, ordering, modes, symlink policy and limits), at a fraction of the I/O.
/// Submodules appear as empty directories; use the checkout path for `recurseSubmodules`.
pub fn archive_commit(
    opts: &FetchOptions,
    commit: &str,
    spec_ignore: Option<&str>,
    limits: crate::artifact::Limits,
    out: &mut dyn std::io::Write,
) -> Result<crate::artifact::ArchiveInfo> {
    if !opts.sparse.is_empty() {
        return Err(SourceError::Invalid {
            what: "sparseCheckout".to_string(),
            detail: "archive_commit archives whole trees; use checkout".to_string(),
        });
    }
    let _lock = CacheLock::acquire(&opts.cache_dir, "archive", &opts.url)?;
    let s = Session::new(opts, Instant::now() + opts.timeout, "archive");
    let repo = open_cache(&opts.cache_dir)?;
    let oid = Oid::from_str(commit).map_err(|_| SourceError::Invalid {
        what: format!("commit '{commit}'"),
        detail: "expected a full hexadecimal SHA-1".to_string(),
    })?;
    let tree = repo
        .find_commit(oid)
        .and_then(|c| c.tree())
        .map_err(|e| s.git_err(e))?;
    // Virtual root: ignore matching is purely lexical.
    let root = Path::new("/plumb-tree");
    let mut files = Vec::new();
    collect_tree_ignore_files(&repo, &s, &tree, root, &mut files)?;
    let rules = crate::artifact::IgnoreRules::from_files(root, &files, spec_ignore)?;
    let mut sink = crate::artifact::TarSink::new(out, limits);
    let odb = repo.odb().map_err(|e| s.git_err(e))?;
    archive_tree(&repo, &odb, &s, &tree, "", &rules, &mut sink)?;
    sink.finish()
}

/// Tree entries sorted by name bytes (the filesystem archiver's order, not git's).
fn sorted_tree<'a>(tree: &'a git2::Tree<'_>) -> Vec<git2::TreeEntry<'a>> {
    let mut v: Vec<_> = tree.iter().collect();
    v.sort_by(|a, b| a.name_bytes().cmp(b.name_bytes()));
    v
}

fn collect_tree_ignore_files(
    repo: &Repository,
    s: &Session,
    tree: &git2::Tree<'_>,
    dir: &Path,
    out: &mut Vec<(PathBuf, String)>,
) -> Result<()> {
    let entries = sorted_tree(tree);
    if let Some(e) = entries.iter().find(|e| {
        e.name_bytes() == crate::artifact::IGNORE_FILE.as_bytes()
            && e.kind() == Some(ObjectType::Blob)
            && e.filemode() != 0o120000
    }) {
        let blob = repo.find_blob(e.id()).map_err(|e| s.git_err(e))?;
        out.push((
            dir.to_path_buf(),
            String::from_utf8_lossy(blob.content()).into_owned(),
        ));
    }
    for e in entries {
        if e.kind() == Some(ObjectType::Tree) && e.name_bytes() != b".git" {
            let sub = repo.find_tree(e.id()).map_err(|e| s.git_err(e))?;
            let name = String::from_utf8_lossy(e.name_bytes()).into_owned();
            collect_tree_ignore_files(repo, s, &sub, &dir.join(name), out)?;
        }
    }
    Ok(())
}

fn archive_tree<W: std::io::Write>(
    repo: &Repository,
    odb: &git2::Odb<'_>,
    s: &Session,
    tree: &git2::Tree<'_>,
    prefix: &str,
    rules: &crate::artifact::IgnoreRules,
    sink: &mut crate::artifact::TarSink<W>,
) -> Result<()> {
    for entry in sorted_tree(tree) {
        let name = String::from_utf8_lossy(entry.name_bytes()).into_owned();
        if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\0']) {
            return Err(SourceError::UnsafeEntry {
                op: "archive",
                path: format!("{prefix}{name}"),
                detail: "invalid tree entry name".to_string(),
            });
        }
        if name.eq_ignore_ascii_case(".git") {
            continue;
        }
        let rel = format!("{prefix}{name}");
        match entry.kind() {
            Some(ObjectType::Blob) if entry.filemode() == 0o120000 => {
                let blob = repo.find_blob(entry.id()).map_err(|e| s.git_err(e))?;
                let target = String::from_utf8_lossy(blob.content()).into_owned();
                crate::artifact::check_symlink("archive", &rel, Path::new(&target))?;
            }
            Some(ObjectType::Blob) => {
                if rules.is_ignored(&rel, false) {
                    continue;
                }
                let (size, _) = odb.read_header(entry.id()).map_err(|e| s.git_err(e))?;
                sink.admit(&rel, size as u64)?;
                let blob = repo.find_blob(entry.id()).map_err(|e| s.git_err(e))?;
                let data = blob.content();
                sink.file(&rel, entry.filemode() == 0o100755, data.len() as u64, data)?;
            }
            Some(ObjectType::Tree) => {
                if rules.is_ignored(&rel, true) {
                    continue;
                }
                sink.dir(&rel)?;
                let sub = repo.find_tree(entry.id()).map_err(|e| s.git_err(e))?;
                archive_tree(repo, odb, s, &sub, &format!("{rel}/"), rules, sink)?;
            }
            Some(ObjectType::Commit) if !rules.is_ignored(&rel, true) => sink.dir(&rel)?,
            _ => {}
        }
    }
    Ok(())
}
