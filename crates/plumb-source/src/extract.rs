//! Safe extraction of artifact tarballs (`tar.gz`) from any source.
//!
//! Archives are walked in raw mode so that nothing is buffered before it is checked: GNU
//! long-name (`L`) and PAX (`x`, `g`) members are read only when their declared size is within
//! [`MAX_META_BYTES`], and their bytes count against `max_total_size` like file data, so a
//! stream of metadata members cannot inflate without bound either. Paths are at most
//! [`MAX_PATH_BYTES`] long, relative, without `..`; only directories and regular files are
//! written (links, devices, sparse files are refused); files are created with `O_EXCL`, so an
//! entry never writes through anything already on disk. The gzip stream itself is capped at
//! [`decompressed_cap`] bytes as a last line of defence.

use std::ffi::OsStr;
use std::io::{Read, Write as _};
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Component, Path, PathBuf};

use crate::artifact::Limits;
use crate::{Result, SourceError};

/// Longest entry path (after GNU long-name or PAX `path` is applied), as Linux's `PATH_MAX`.
pub const MAX_PATH_BYTES: usize = 4096;

/// Largest GNU long-name or PAX extension member.
pub const MAX_META_BYTES: u64 = 64 << 10;

const BLOCK: u64 = 512;

/// Most bytes the gzip stream may inflate to for `limits`: the data limit plus a header and
/// padding block per allowed entry and its metadata members.
pub fn decompressed_cap(limits: Limits) -> u64 {
    limits
        .max_total_size
        .saturating_add(limits.max_entries.saturating_mul(6 * BLOCK))
        .saturating_add(4 * BLOCK)
}

/// A reader failing with [`std::io::ErrorKind::FileTooLarge`] once more than `left` bytes
/// have been read.
struct Capped<R> {
    inner: R,
    left: u64,
    exceeded: bool,
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n as u64 > self.left {
            self.exceeded = true;
            return Err(std::io::ErrorKind::FileTooLarge.into());
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// Metadata collected from `L`/`x` members for the next real entry.
#[derive(Default)]
struct Pending {
    path: Option<Vec<u8>>,
    size: Option<u64>,
    members: u32,
}

/// Running totals checked against the limits.
struct Budget {
    limits: Limits,
    total: u64,
    entries: u64,
}

impl Budget {
    fn add_bytes(&mut self, size: u64) -> Result<()> {
        self.total = self.total.saturating_add(size);
        if self.total > self.limits.max_total_size {
            return Err(too_large(
                "artifact (sum of entries)",
                self.total,
                self.limits.max_total_size,
            ));
        }
        Ok(())
    }

    fn add_entry(&mut self) -> Result<()> {
        self.entries += 1;
        if self.entries > self.limits.max_entries {
            return Err(too_large("entries", self.entries, self.limits.max_entries));
        }
        Ok(())
    }
}

fn too_large(path: &str, size: u64, limit: u64) -> SourceError {
    SourceError::TooLarge {
        op: "extract artifact",
        path: path.to_string(),
        size,
        limit,
    }
}

fn unsafe_entry(path: &[u8], detail: &str) -> SourceError {
    let shown = String::from_utf8_lossy(&path[..path.len().min(256)]).into_owned();
    SourceError::UnsafeEntry {
        op: "extract artifact",
        path: shown,
        detail: detail.to_string(),
    }
}

/// The safe relative path of `raw`, or an error.
fn relative_path(raw: &[u8]) -> Result<PathBuf> {
    if raw.len() > MAX_PATH_BYTES {
        return Err(unsafe_entry(
            raw,
            &format!("path longer than {MAX_PATH_BYTES} bytes"),
        ));
    }
    if raw.contains(&0) {
        return Err(unsafe_entry(raw, "path contains NUL"));
    }
    let mut rel = PathBuf::new();
    for c in Path::new(OsStr::from_bytes(raw)).components() {
        match c {
            Component::Normal(p) => rel.push(p),
            Component::CurDir => {}
            _ => return Err(unsafe_entry(raw, "absolute or parent-relative path")),
        }
    }
    Ok(rel)
}

/// Reads a metadata member of `size` bytes after checking it against the limits.
fn read_meta(entry: &mut impl Read, size: u64, budget: &mut Budget, what: &str) -> Result<Vec<u8>> {
    if size > MAX_META_BYTES {
        return Err(too_large(what, size, MAX_META_BYTES));
    }
    budget.add_bytes(size)?;
    let mut buf = Vec::with_capacity(size as usize);
    entry
        .take(size)
        .read_to_end(&mut buf)
        .map_err(SourceError::io("read artifact", what))?;
    Ok(buf)
}

/// Applies a PAX extension member's `path` and `size` to `pending`.
fn apply_pax(data: &[u8], pending: &mut Pending) -> Result<()> {
    for ext in tar::PaxExtensions::new(data) {
        let ext = ext.map_err(|_| unsafe_entry(b"pax header", "malformed PAX record"))?;
        match ext.key() {
            Ok("path") => pending.path = Some(ext.value_bytes().to_vec()),
            Ok("size") => {
                let v = std::str::from_utf8(ext.value_bytes())
                    .ok()
                    .and_then(|s| s.parse::<u64>().ok())
                    .ok_or_else(|| unsafe_entry(b"pax header", "malformed PAX size"))?;
                pending.size = Some(v);
            }
            _ => {}
        }
    }
    Ok(())
}

/// Extract a tar.gz into `dest` safely: only regular files and directories, no absolute or
/// `..` paths, sizes, path lengths, metadata and entry count bounded (see the module docs).
pub fn extract_tar_gz(data: &[u8], dest: &Path, limits: Limits) -> Result<()> {
    std::fs::create_dir_all(dest).map_err(SourceError::io("extract artifact", dest))?;
    let cap = decompressed_cap(limits);
    let mut reader = Capped {
        inner: flate2::read::GzDecoder::new(data),
        left: cap,
        exceeded: false,
    };
    let r = extract_from(&mut reader, dest, limits);
    if reader.exceeded {
        return Err(too_large("artifact (decompressed stream)", cap + 1, cap));
    }
    r
}

fn extract_from<R: Read>(reader: R, dest: &Path, limits: Limits) -> Result<()> {
    let mut ar = tar::Archive::new(reader);
    let rerr = |e: std::io::Error| SourceError::Io {
        op: "read artifact",
        path: dest.to_path_buf(),
        source: e,
    };
    let mut budget = Budget {
        limits,
        total: 0,
        entries: 0,
    };
    let mut pending = Pending::default();
    for entry in ar.entries().map_err(rerr)?.raw(true) {
        let mut entry = entry.map_err(rerr)?;
        let kind = entry.header().entry_type();
        let size = entry.header().entry_size().map_err(rerr)?;
        if matches!(
            kind,
            tar::EntryType::GNULongName | tar::EntryType::XHeader | tar::EntryType::XGlobalHeader
        ) {
            pending.members += 1;
            if pending.members > 4 {
                return Err(unsafe_entry(
                    b"metadata",
                    "too many metadata members in a row",
                ));
            }
            let what = "archive metadata (long name or PAX header)";
            let meta = read_meta(&mut entry, size, &mut budget, what)?;
            match kind {
                tar::EntryType::GNULongName => {
                    let end = meta.iter().position(|b| *b == 0).unwrap_or(meta.len());
                    pending.path = Some(meta[..end].to_vec());
                }
                tar::EntryType::XHeader => apply_pax(&meta, &mut pending)?,
                _ => {} // Global headers (git archive's commit comment) carry nothing we use.
            }
            continue;
        }
        let meta = std::mem::take(&mut pending);
        let raw = match meta.path {
            Some(p) => p,
            None => entry.path_bytes().into_owned(),
        };
        let rel = relative_path(&raw)?;
        if meta.size.is_some_and(|s| s != size) {
            return Err(unsafe_entry(&raw, "PAX size disagrees with the header"));
        }
        budget.add_entry()?;
        // Extraction makes no symlinks, but `dest` may hold some: never write through them.
        let target = crate::fsjoin::join_inside(dest, &rel)?;
        match kind {
            tar::EntryType::Directory => {
                budget.add_bytes(size)?;
                std::fs::create_dir_all(&target)
                    .map_err(SourceError::io("extract artifact", &target))?;
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                if size > limits.max_file_size {
                    let shown = String::from_utf8_lossy(&raw).into_owned();
                    return Err(too_large(&shown, size, limits.max_file_size));
                }
                budget.add_bytes(size)?;
                let mode = entry.header().mode().unwrap_or(0o644);
                write_file(&mut entry, &raw, &target, size, mode)?;
            }
            _ => {
                return Err(unsafe_entry(
                    &raw,
                    "links and special files are not allowed",
                ));
            }
        }
    }
    if pending.members > 0 {
        return Err(unsafe_entry(
            b"metadata",
            "metadata member without an entry",
        ));
    }
    Ok(())
}

/// Writes one regular file, never through an existing path (`O_EXCL`).
fn write_file(
    entry: &mut impl Read,
    raw: &[u8],
    target: &Path,
    size: u64,
    mode: u32,
) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent).map_err(SourceError::io("extract artifact", parent))?;
    }
    let perm = if mode & 0o111 != 0 { 0o755 } else { 0o644 };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(perm)
        .open(target)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => unsafe_entry(raw, "duplicate entry"),
            _ => SourceError::io("extract artifact", target)(e),
        })?;
    let n = std::io::copy(&mut entry.take(size), &mut f)
        .map_err(SourceError::io("extract artifact", target))?;
    if n != size {
        return Err(unsafe_entry(raw, "truncated entry"));
    }
    f.flush()
        .map_err(SourceError::io("extract artifact", target))?;
    // The umask may have narrowed the mode given at creation.
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(target, std::fs::Permissions::from_mode(perm))
        .map_err(SourceError::io("extract artifact", target))
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::Compression;

    /// One raw tar member: a GNU header for `name`/`kind` declaring `size`, then `data`
    /// padded to a block (`data` may be shorter than `size`: a truncated or lying archive).
    fn member(name: &[u8], kind: tar::EntryType, size: u64, data: &[u8]) -> Vec<u8> {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(0o644);
        // Bypass tar's own path checks to produce hostile entries.
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        if kind == tar::EntryType::Symlink || kind == tar::EntryType::Link {
            h.set_link_name("/etc/passwd").unwrap();
        }
        h.set_cksum();
        let mut out = h.as_bytes().to_vec();
        out.extend_from_slice(data);
        out.resize(out.len().next_multiple_of(512), 0);
        out
    }

    fn pax(records: &[(&str, &[u8])]) -> Vec<u8> {
        let mut body = Vec::new();
        for (k, v) in records {
            // "<len> <key>=<value>\n", where len counts itself.
            let rest = k.len() + v.len() + 3;
            let mut len = rest + 1;
            while format!("{len}").len() + rest > len {
                len += 1;
            }
            body.extend_from_slice(format!("{len} {k}=").as_bytes());
            body.extend_from_slice(v);
            body.push(b'\n');
        }
        member(
            b"PaxHeader",
            tar::EntryType::XHeader,
            body.len() as u64,
            &body,
        )
    }

    fn gz(members: &[Vec<u8>]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), Compression::fast());
        for m in members {
            e.write_all(m).unwrap();
        }
        e.write_all(&[0u8; 1024]).unwrap();
        e.finish().unwrap()
    }

    fn extract(members: &[Vec<u8>], limits: Limits) -> (tempfile::TempDir, Result<()>) {
        let out = tempfile::tempdir().unwrap();
        let r = extract_tar_gz(&gz(members), &out.path().join("x"), limits);
        (out, r)
    }

    #[test]
    fn pax_and_long_names_are_honoured_within_bounds() {
        let long = format!("{}/file.yaml", "d".repeat(150));
        let mut gnu_name = long.clone().into_bytes();
        gnu_name.push(0);
        let (out, r) = extract(
            &[
                pax(&[("comment", b"0123abcd")]),
                member(
                    b"gnu-long",
                    tar::EntryType::GNULongName,
                    gnu_name.len() as u64,
                    &gnu_name,
                ),
                member(b"ignored", tar::EntryType::Regular, 2, b"a\n"),
                pax(&[("path", b"p/pax.yaml"), ("mtime", b"1")]),
                member(b"short", tar::EntryType::Regular, 2, b"b\n"),
                member(b"plain.yaml", tar::EntryType::Regular, 2, b"c\n"),
            ],
            Limits::default(),
        );
        r.unwrap();
        let x = out.path().join("x");
        assert_eq!(std::fs::read_to_string(x.join(&long)).unwrap(), "a\n");
        assert_eq!(
            std::fs::read_to_string(x.join("p/pax.yaml")).unwrap(),
            "b\n"
        );
        assert_eq!(
            std::fs::read_to_string(x.join("plain.yaml")).unwrap(),
            "c\n"
        );
        assert!(!x.join("ignored").exists() && !x.join("short").exists());
    }

    #[test]
    fn oversized_metadata_and_paths_are_refused() {
        // A PAX header declaring 1 GiB: refused from its header, nothing read or buffered.
        let (_o, r) = extract(
            &[member(b"PaxHeader", tar::EntryType::XHeader, 1 << 30, b"")],
            Limits::default(),
        );
        let e = r.unwrap_err();
        assert!(
            matches!(e, SourceError::TooLarge { size, .. } if size == 1 << 30),
            "{e}"
        );
        // The same as a real 2 MiB PAX record (a path of zeros).
        let huge = vec![b'a'; 2 << 20];
        let (_o, r) = extract(
            &[
                pax(&[("path", &huge)]),
                member(b"f", tar::EntryType::Regular, 0, b""),
            ],
            Limits::default(),
        );
        assert!(matches!(r, Err(SourceError::TooLarge { .. })), "{r:?}");
        // GNU long names: over PATH_MAX is refused, and so is a long name of 1 GiB.
        let name = vec![b'n'; MAX_PATH_BYTES + 1];
        let (_o, r) = extract(
            &[
                member(b"L", tar::EntryType::GNULongName, name.len() as u64, &name),
                member(b"f", tar::EntryType::Regular, 0, b""),
            ],
            Limits::default(),
        );
        let e = r.unwrap_err();
        assert!(e.to_string().contains("longer than 4096"), "{e}");
        let (_o, r) = extract(
            &[member(b"L", tar::EntryType::GNULongName, 1 << 30, b"")],
            Limits::default(),
        );
        assert!(matches!(r, Err(SourceError::TooLarge { .. })), "{r:?}");
        // Metadata that describes nothing, or too much of it in a row.
        let (_o, r) = extract(&[pax(&[("path", b"x")])], Limits::default());
        assert!(matches!(r, Err(SourceError::UnsafeEntry { .. })), "{r:?}");
        let (_o, r) = extract(&vec![pax(&[("comment", b"c")]); 6], Limits::default());
        assert!(matches!(r, Err(SourceError::UnsafeEntry { .. })), "{r:?}");
    }

    #[test]
    fn bombs_and_totals_are_bounded() {
        let small = Limits {
            max_file_size: 1 << 20,
            max_total_size: 2 << 20,
            max_entries: 8,
        };
        // A gzip bomb: 16 MiB of zeros (16 KiB compressed) as a directory's data, which a
        // reader would otherwise inflate just to skip.
        let zeros = vec![0u8; 16 << 20];
        let (_o, r) = extract(
            &[member(
                b"d/",
                tar::EntryType::Directory,
                zeros.len() as u64,
                &zeros,
            )],
            small,
        );
        let e = r.unwrap_err();
        assert!(matches!(e, SourceError::TooLarge { .. }), "{e}");
        // The same bytes as one file, and as several files under the per-file limit.
        let (_o, r) = extract(
            &[member(
                b"f",
                tar::EntryType::Regular,
                zeros.len() as u64,
                &zeros,
            )],
            small,
        );
        assert!(
            matches!(r, Err(SourceError::TooLarge { ref path, .. }) if path == "f"),
            "{r:?}"
        );
        let mb = vec![0u8; 1 << 20];
        let files: Vec<_> = (0..3)
            .map(|i| {
                member(
                    format!("f{i}").as_bytes(),
                    tar::EntryType::Regular,
                    mb.len() as u64,
                    &mb,
                )
            })
            .collect();
        let (_o, r) = extract(&files, small);
        assert!(
            matches!(r, Err(SourceError::TooLarge { ref path, .. }) if path.contains("sum")),
            "{r:?}"
        );
        let dirs: Vec<_> = (0..9)
            .map(|i| {
                member(
                    format!("d{i}/").as_bytes(),
                    tar::EntryType::Directory,
                    0,
                    b"",
                )
            })
            .collect();
        let (_o, r) = extract(&dirs, small);
        assert!(
            matches!(r, Err(SourceError::TooLarge { ref path, .. }) if path == "entries"),
            "{r:?}"
        );
        assert!(decompressed_cap(small) < 3 << 20);
    }

    #[test]
    fn traversal_links_and_lies_are_refused() {
        let victim = tempfile::tempdir().unwrap();
        for (name, kind) in [
            (&b"../evil"[..], tar::EntryType::Regular),
            (b"/abs", tar::EntryType::Regular),
            (b"a/../../evil", tar::EntryType::Regular),
            (b"link", tar::EntryType::Symlink),
            (b"hard", tar::EntryType::Link),
            (b"fifo", tar::EntryType::Fifo),
            (b"dev", tar::EntryType::Char),
            (b"sparse", tar::EntryType::GNUSparse),
        ] {
            let (_o, r) = extract(&[member(name, kind, 0, b"")], Limits::default());
            assert!(
                matches!(r, Err(SourceError::UnsafeEntry { .. })),
                "{name:?}: {r:?}"
            );
        }
        // A PAX path may not smuggle what the header name could not.
        let (_o, r) = extract(
            &[
                pax(&[("path", b"../../x")]),
                member(b"ok", tar::EntryType::Regular, 0, b""),
            ],
            Limits::default(),
        );
        assert!(matches!(r, Err(SourceError::UnsafeEntry { .. })), "{r:?}");
        // A PAX size that disagrees with the header (parsers would split the stream apart).
        let (_o, r) = extract(
            &[
                pax(&[("size", b"1024")]),
                member(b"ok", tar::EntryType::Regular, 1, b"x"),
            ],
            Limits::default(),
        );
        assert!(matches!(r, Err(SourceError::UnsafeEntry { .. })), "{r:?}");
        // A duplicate entry never writes through what the first one left.
        let (out, r) = extract(
            &[
                member(b"a", tar::EntryType::Regular, 1, b"1"),
                member(b"a", tar::EntryType::Regular, 1, b"2"),
            ],
            Limits::default(),
        );
        assert!(matches!(r, Err(SourceError::UnsafeEntry { .. })), "{r:?}");
        assert_eq!(
            std::fs::read_to_string(out.path().join("x/a")).unwrap(),
            "1"
        );
        // Extraction into a tree where a file's parent is a symlink out is refused.
        let pre = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(victim.path(), pre.path().join("out")).unwrap();
        let r = extract_tar_gz(
            &gz(&[member(b"out/f", tar::EntryType::Regular, 1, b"x")]),
            pre.path(),
            Limits::default(),
        );
        assert!(r.is_err());
        assert!(!victim.path().join("f").exists());
    }
}
