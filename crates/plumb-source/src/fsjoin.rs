//! Filesystem operations confined to a root, for trees that hold untrusted content (checkouts,
//! extracted artifacts).
//!
//! [`join_inside`] has securejoin semantics: a relative path is resolved component by
//! component, symlinks already on disk are followed only while they stay inside the root, and
//! a symlink leading out (absolute, or `..` past the root) is refused with
//! [`SourceError::SymlinkEscapes`], the same error archiving gives for such a link, so a
//! committed symlink that points outside fails the artifact wherever it is met. [`remove_tree`]
//! and [`copy_tree`] never follow a symlink: removal unlinks links instead of descending, and
//! copies create every directory and file anew (`O_EXCL`), dropping symlinks in the source as
//! archives do.

use std::io::Write as _;
use std::path::{Component, Path, PathBuf};

use crate::artifact::Limits;
use crate::{Result, SourceError};

/// Most symlinks followed while resolving one path (Linux's `MAXSYMLINKS`).
const MAX_LINK_HOPS: u32 = 40;

fn invalid(rel: &str, detail: &str) -> SourceError {
    SourceError::Invalid {
        what: format!("path '{rel}'"),
        detail: detail.to_string(),
    }
}

/// Resolves `rel` under `root` without leaving it (see the module docs). Components that
/// do not exist yet are appended as they are; the result never has a symlink in the part
/// that exists. `rel` must be relative without `..`.
pub fn join_inside(root: &Path, rel: impl AsRef<Path>) -> Result<PathBuf> {
    let rel_path = rel.as_ref();
    let shown = rel_path.to_string_lossy();
    let rel: &str = &shown;
    let mut parts: Vec<std::ffi::OsString> = Vec::new();
    for c in rel_path.components() {
        match c {
            Component::Normal(p) => parts.push(p.to_os_string()),
            Component::CurDir => {}
            _ => return Err(invalid(rel, "must be a relative path inside its root")),
        }
    }
    // `resolved` holds the real components below root; `todo` the ones still to walk.
    let mut resolved: Vec<std::ffi::OsString> = Vec::new();
    let mut todo: std::collections::VecDeque<std::ffi::OsString> = parts.into();
    let mut hops = 0u32;
    let escapes = || SourceError::SymlinkEscapes {
        op: "join path",
        path: rel.to_string(),
    };
    while let Some(part) = todo.pop_front() {
        if part == ".." {
            // Only symlink targets bring `..` here; it may not climb above the root.
            if resolved.pop().is_none() {
                return Err(escapes());
            }
            continue;
        }
        let mut here: PathBuf = root.to_path_buf();
        here.extend(&resolved);
        here.push(&part);
        let meta = match std::fs::symlink_metadata(&here) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                resolved.push(part);
                resolved.extend(todo.drain(..));
                break;
            }
            Err(e) => return Err(SourceError::io("join path", &here)(e)),
        };
        if !meta.file_type().is_symlink() {
            resolved.push(part);
            continue;
        }
        hops += 1;
        if hops > MAX_LINK_HOPS {
            return Err(invalid(rel, "too many levels of symbolic links"));
        }
        let target = std::fs::read_link(&here).map_err(SourceError::io("read symlink", &here))?;
        if target.is_absolute() {
            return Err(escapes());
        }
        let mut next: std::collections::VecDeque<std::ffi::OsString> = target
            .components()
            .filter_map(|c| match c {
                Component::Normal(p) => Some(p.to_os_string()),
                Component::ParentDir => Some("..".into()),
                _ => None,
            })
            .collect();
        next.extend(todo.drain(..));
        todo = next;
    }
    let mut out = root.to_path_buf();
    out.extend(&resolved);
    Ok(out)
}

/// Removes `rel` under `root` (a file, a directory tree, or a symlink itself); a missing
/// path is not an error. Nothing outside `root` is touched.
pub fn remove_tree(root: &Path, rel: &str) -> Result<()> {
    let path = join_inside(root, rel)?;
    let meta = match std::fs::symlink_metadata(&path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(SourceError::io("remove", &path)(e)),
    };
    // std's remove_dir_all unlinks symlinks it meets rather than following them.
    let r = if meta.is_dir() {
        std::fs::remove_dir_all(&path)
    } else {
        std::fs::remove_file(&path)
    };
    r.map_err(SourceError::io("remove", &path))
}

/// Copies the directory tree `src` to `rel` under `dst_root`, creating it. Directories and
/// regular files only; symlinks in `src` are dropped when they stay inside it and refused
/// when they point out, as [`crate::artifact::archive_dir`] does. Never writes through an
/// existing path.
pub fn copy_tree(src: &Path, dst_root: &Path, rel: &str) -> Result<()> {
    let dst = join_inside(dst_root, rel)?;
    std::fs::create_dir_all(&dst).map_err(SourceError::io("copy tree", &dst))?;
    copy_dir(src, &dst, "")
}

fn copy_dir(src: &Path, dst: &Path, prefix: &str) -> Result<()> {
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    for entry in std::fs::read_dir(src).map_err(SourceError::io("copy tree", src))? {
        let entry = entry.map_err(SourceError::io("copy tree", src))?;
        let ft = entry
            .file_type()
            .map_err(SourceError::io("copy tree", entry.path()))?;
        let name = entry.file_name();
        let rel = format!("{prefix}{}", name.to_string_lossy());
        let (from, to) = (entry.path(), dst.join(&name));
        if ft.is_symlink() {
            let target =
                std::fs::read_link(&from).map_err(SourceError::io("read symlink", &from))?;
            crate::artifact::check_symlink("copy tree", &rel, &target)?;
        } else if ft.is_dir() {
            std::fs::create_dir(&to).map_err(SourceError::io("copy tree", &to))?;
            copy_dir(&from, &to, &format!("{rel}/"))?;
        } else if ft.is_file() {
            // A regular file per `file_type` (lstat): opening it follows no link.
            let mut input =
                std::fs::File::open(&from).map_err(SourceError::io("copy tree", &from))?;
            let mode = input
                .metadata()
                .map_err(SourceError::io("copy tree", &from))?
                .permissions()
                .mode();
            let perm = if mode & 0o111 != 0 { 0o755 } else { 0o644 };
            let mut out = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(perm)
                .open(&to)
                .map_err(SourceError::io("copy tree", &to))?;
            std::io::copy(&mut input, &mut out).map_err(SourceError::io("copy tree", &to))?;
            out.flush().map_err(SourceError::io("copy tree", &to))?;
        }
    }
    Ok(())
}

/// Puts the `from` subdirectory (or all) of the artifact archive `archive` at `to` under
/// `root`, replacing what was there, as Flux's GitRepository `include` does. `from` is
/// looked up inside the extracted artifact and `to` inside `root` with [`join_inside`].
pub fn copy_include(archive: &Path, from: Option<&str>, root: &Path, to: &str) -> Result<()> {
    let data =
        std::fs::read(archive).map_err(SourceError::io("read included artifact", archive))?;
    let tmp = tempfile::Builder::new()
        .prefix("plumb-include-")
        .tempdir()
        .map_err(SourceError::io("create include dir", std::env::temp_dir()))?;
    crate::extract::extract_tar_gz(&data, tmp.path(), Limits::default())?;
    let src = match from {
        Some(f) => join_inside(tmp.path(), f)?,
        None => tmp.path().to_path_buf(),
    };
    if !src.is_dir() {
        return Err(invalid(
            from.unwrap_or("."),
            "fromPath is not a directory of the included artifact",
        ));
    }
    remove_tree(root, to)?;
    copy_tree(&src, root, to)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn join_follows_inside_links_and_refuses_escapes() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("root");
        std::fs::create_dir_all(root.join("real/deep")).unwrap();
        symlink("real", root.join("in")).unwrap();
        symlink("../real/deep", root.join("real/up")).unwrap();
        symlink("/etc", root.join("abs")).unwrap();
        symlink("../..", root.join("real/out")).unwrap();
        symlink("loop", root.join("loop")).unwrap();
        assert_eq!(join_inside(&root, "in/x").unwrap(), root.join("real/x"));
        assert_eq!(
            join_inside(&root, "real/up/new/y").unwrap(),
            root.join("real/deep/new/y")
        );
        assert_eq!(join_inside(&root, ".").unwrap(), root);
        for bad in ["abs", "abs/x", "real/out/x", "in/out"] {
            let e = join_inside(&root, bad).unwrap_err();
            assert!(
                matches!(e, SourceError::SymlinkEscapes { .. }),
                "{bad}: {e}"
            );
        }
        for bad in ["../x", "/x", "loop/x"] {
            let e = join_inside(&root, bad).unwrap_err();
            assert!(matches!(e, SourceError::Invalid { .. }), "{bad}: {e}");
        }
    }

    #[test]
    fn remove_and_copy_never_leave_the_root() {
        let d = tempfile::tempdir().unwrap();
        let (root, victim, src) = (
            d.path().join("root"),
            d.path().join("victim"),
            d.path().join("src"),
        );
        std::fs::create_dir_all(root.join("dir")).unwrap();
        std::fs::create_dir_all(&victim).unwrap();
        std::fs::write(victim.join("keep"), "tenant data").unwrap();
        symlink(&victim, root.join("dir/link")).unwrap();
        std::fs::create_dir_all(src.join("sub")).unwrap();
        std::fs::write(src.join("sub/f"), "new").unwrap();
        symlink("sub/f", src.join("inner-link")).unwrap();

        assert!(remove_tree(&root, "dir/link/keep").is_err());
        assert!(copy_tree(&src, &root, "dir/link/x").is_err());
        // The link itself may be removed; what it points at stays.
        std::fs::remove_file(root.join("dir/link")).unwrap();
        symlink("../../victim", root.join("dir/rel")).unwrap();
        assert!(remove_tree(&root, "dir").is_ok());
        assert_eq!(
            std::fs::read_to_string(victim.join("keep")).unwrap(),
            "tenant data"
        );

        copy_tree(&src, &root, "to").unwrap();
        assert_eq!(
            std::fs::read_to_string(root.join("to/sub/f")).unwrap(),
            "new"
        );
        assert!(std::fs::symlink_metadata(root.join("to/inner-link")).is_err());
        symlink("/etc/passwd", src.join("escape")).unwrap();
        let e = copy_tree(&src, &root, "again").unwrap_err();
        assert!(matches!(e, SourceError::SymlinkEscapes { .. }), "{e}");
    }
}
