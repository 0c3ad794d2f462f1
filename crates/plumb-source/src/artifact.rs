//! Artifacts: ignore rules, deterministic tar.gz, storage layout, garbage collection, and
//! download + verify + safe extraction.
//!
//! Ignore rules follow Flux's source-controller: when neither a `.sourceignore` file (at any
//! depth; deeper files take precedence, their patterns are relative to their directory) nor
//! `spec.ignore` yields a pattern, [`DEFAULT_EXCLUSIONS`] apply; otherwise only the VCS
//! exclusions ([`VCS_EXCLUSIONS`]) plus those patterns, `spec.ignore` taking precedence over
//! the files. Matching has gitignore semantics (the `ignore` crate's matcher); an ignored
//! directory is not descended into.
//!
//! Archives hold directories and regular files only, as Flux's: symlinks are left out, and a
//! symlink whose target leaves the tree is an error ([`SourceError::SymlinkEscapes`]). Entries
//! are sorted by path; mtime, uid and gid are 0, owner names empty, modes 0755 for directories
//! and executables and 0644 otherwise; the gzip header carries no timestamp. The same tree
//! gives the same bytes and the same `sha256:` digest.

use std::io::Write;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, SystemTime};

use flate2::Compression;
use ignore::Match;
use ignore::gitignore::{Gitignore, GitignoreBuilder};
use sha2::{Digest as _, Sha256};

use crate::{Result, SourceError};

/// Name of the per-directory ignore file.
pub const IGNORE_FILE: &str = ".sourceignore";

/// Version-control exclusions, always applied.
pub const VCS_EXCLUSIONS: &[&str] = &[".git/", ".gitignore", ".gitmodules", ".gitattributes"];

/// Flux's default exclusions (VCS, media/archives, CI configs, tool files), applied when no
/// `.sourceignore` or `spec.ignore` pattern exists.
pub const DEFAULT_EXCLUSIONS: &[&str] = &[
    ".git/",
    ".gitignore",
    ".gitmodules",
    ".gitattributes",
    "*.jpg",
    "*.jpeg",
    "*.gif",
    "*.png",
    "*.wmv",
    "*.flv",
    "*.tar.gz",
    "*.zip",
    ".github/",
    ".circleci/",
    ".travis.yml",
    ".gitlab-ci.yml",
    "appveyor.yml",
    ".drone.yml",
    "cloudbuild.yaml",
    "codeship-services.yml",
    "codeship-steps.yml",
    "**/.goreleaser.yml",
    "**/.sops.yaml",
    "**/.flux.yaml",
];

/// Compiled ignore rules for one tree.
#[derive(Debug)]
pub struct IgnoreRules {
    root: PathBuf,
    /// Lowest priority first.
    layers: Vec<(PathBuf, Gitignore)>,
}

fn is_pattern(line: &str) -> bool {
    let t = line.trim();
    !t.is_empty() && !t.starts_with('#')
}

impl IgnoreRules {
    /// Load `.sourceignore` files under `root` and combine them with `spec_ignore`.
    pub fn load(root: &Path, spec_ignore: Option<&str>) -> Result<IgnoreRules> {
        let mut files = Vec::new();
        collect_ignore_files(root, &mut files)?;
        IgnoreRules::from_files(root, &files, spec_ignore)
    }

    /// Rules from already-read `.sourceignore` files: `(directory under root, content)`,
    /// root first, then deeper directories (later entries take precedence).
    pub fn from_files(
        root: &Path,
        files: &[(PathBuf, String)],
        spec_ignore: Option<&str>,
    ) -> Result<IgnoreRules> {
        let has_patterns = spec_ignore.is_some_and(|s| s.lines().any(is_pattern))
            || files.iter().any(|(_, text)| text.lines().any(is_pattern));
        let build = |dir: &Path, lines: &mut dyn Iterator<Item = &str>| -> Result<Gitignore> {
            let mut b = GitignoreBuilder::new(dir);
            for line in lines {
                b.add_line(None, line).map_err(|e| SourceError::Invalid {
                    what: format!("ignore pattern '{line}'"),
                    detail: e.to_string(),
                })?;
            }
            b.build().map_err(|e| SourceError::Invalid {
                what: "ignore patterns".to_string(),
                detail: e.to_string(),
            })
        };
        let mut layers = Vec::new();
        let base: &[&str] = if has_patterns {
            VCS_EXCLUSIONS
        } else {
            DEFAULT_EXCLUSIONS
        };
        layers.push((root.to_path_buf(), build(root, &mut base.iter().copied())?));
        for (dir, text) in files {
            layers.push((dir.clone(), build(dir, &mut text.lines())?));
        }
        if let Some(spec) = spec_ignore {
            layers.push((root.to_path_buf(), build(root, &mut spec.lines())?));
        }
        Ok(IgnoreRules {
            root: root.to_path_buf(),
            layers,
        })
    }

    /// Whether `rel` (relative to the root, `/`-separated) is excluded.
    pub fn is_ignored(&self, rel: &str, is_dir: bool) -> bool {
        let abs = self.root.join(rel);
        for (dir, gi) in self.layers.iter().rev() {
            if !abs.starts_with(dir) || abs == *dir {
                continue;
            }
            match gi.matched(&abs, is_dir) {
                Match::Ignore(_) => return true,
                Match::Whitelist(_) => return false,
                Match::None => {}
            }
        }
        false
    }
}

/// `.sourceignore` files, root first, then subdirectories in sorted order.
fn collect_ignore_files(dir: &Path, out: &mut Vec<(PathBuf, String)>) -> Result<()> {
    let f = dir.join(IGNORE_FILE);
    if f.is_file() {
        let text =
            std::fs::read_to_string(&f).map_err(SourceError::io("read .sourceignore", &f))?;
        out.push((dir.to_path_buf(), text));
    }
    for (name, ft) in sorted_entries(dir)? {
        if ft.is_dir() && name != ".git" {
            collect_ignore_files(&dir.join(&name), out)?;
        }
    }
    Ok(())
}

fn sorted_entries(dir: &Path) -> Result<Vec<(String, std::fs::FileType)>> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(dir).map_err(SourceError::io("read dir", dir))? {
        let e = e.map_err(SourceError::io("read dir", dir))?;
        let ft = e.file_type().map_err(SourceError::io("stat", e.path()))?;
        v.push((e.file_name().to_string_lossy().into_owned(), ft));
    }
    v.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    Ok(v)
}

/// Size limits for archiving and extraction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest single file.
    pub max_file_size: u64,
    /// Largest sum of file sizes (uncompressed).
    pub max_total_size: u64,
    /// Most entries (files and directories).
    pub max_entries: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_file_size: 64 << 20,
            max_total_size: 512 << 20,
            max_entries: 200_000,
        }
    }
}

/// Digest and size of an archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveInfo {
    /// `sha256:<hex>`.
    pub digest: String,
    /// Compressed size in bytes.
    pub size: u64,
}

struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    size: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Streaming writer of a deterministic tar.gz with size limits; entries must be added in
/// sorted order by the caller.
pub(crate) struct TarSink<W: Write> {
    tar: tar::Builder<flate2::write::GzEncoder<HashingWriter<W>>>,
    limits: Limits,
    total: u64,
    entries: u64,
}

impl<W: Write> TarSink<W> {
    pub(crate) fn new(out: W, limits: Limits) -> TarSink<W> {
        let hw = HashingWriter {
            inner: out,
            hasher: Sha256::new(),
            size: 0,
        };
        let gz = flate2::GzBuilder::new()
            .mtime(0)
            .write(hw, Compression::default());
        TarSink {
            tar: tar::Builder::new(gz),
            limits,
            total: 0,
            entries: 0,
        }
    }

    fn count(&mut self) -> Result<()> {
        self.entries += 1;
        if self.entries > self.limits.max_entries {
            return Err(SourceError::TooLarge {
                op: "archive",
                path: "entries".to_string(),
                size: self.entries,
                limit: self.limits.max_entries,
            });
        }
        Ok(())
    }

    /// Check a file's size against the limits before it is read.
    pub(crate) fn admit(&mut self, rel: &str, size: u64) -> Result<()> {
        if size > self.limits.max_file_size {
            return Err(SourceError::TooLarge {
                op: "archive",
                path: rel.to_string(),
                size,
                limit: self.limits.max_file_size,
            });
        }
        if self.total + size > self.limits.max_total_size {
            return Err(SourceError::TooLarge {
                op: "archive",
                path: "artifact".to_string(),
                size: self.total + size,
                limit: self.limits.max_total_size,
            });
        }
        Ok(())
    }

    pub(crate) fn dir(&mut self, rel: &str) -> Result<()> {
        self.count()?;
        let mut h = header(tar::EntryType::Directory, 0o755, 0);
        self.tar
            .append_data(&mut h, format!("{rel}/"), std::io::empty())
            .map_err(SourceError::io("write archive", rel))
    }

    /// Add a regular file (`executable` selects 0755 over 0644); call [`TarSink::admit`] first.
    pub(crate) fn file(
        &mut self,
        rel: &str,
        executable: bool,
        size: u64,
        data: impl std::io::Read,
    ) -> Result<()> {
        self.admit(rel, size)?;
        self.count()?;
        self.total += size;
        let mode = if executable { 0o755 } else { 0o644 };
        let mut h = header(tar::EntryType::Regular, mode, size);
        self.tar
            .append_data(&mut h, rel, data.take(size))
            .map_err(SourceError::io("write archive", rel))
    }

    pub(crate) fn finish(self) -> Result<ArchiveInfo> {
        let werr = SourceError::io("write archive", "artifact");
        let gz = self.tar.into_inner().map_err(werr)?;
        let mut hw = gz
            .finish()
            .map_err(SourceError::io("write archive", "artifact"))?;
        hw.flush()
            .map_err(SourceError::io("write archive", "artifact"))?;
        Ok(ArchiveInfo {
            digest: format!("sha256:{}", hex::encode(hw.hasher.finalize())),
            size: hw.size,
        })
    }
}

/// Write a deterministic tar.gz of `dir` filtered by `rules` to `out`.
pub fn archive_dir<W: Write>(
    dir: &Path,
    rules: &IgnoreRules,
    limits: Limits,
    out: W,
) -> Result<ArchiveInfo> {
    let mut sink = TarSink::new(out, limits);
    add_dir(&mut sink, dir, "", rules)?;
    sink.finish()
}

fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    h
}

fn add_dir<W: Write>(
    sink: &mut TarSink<W>,
    dir: &Path,
    prefix: &str,
    rules: &IgnoreRules,
) -> Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    for (name, ft) in sorted_entries(dir)? {
        let rel = format!("{prefix}{name}");
        let path = dir.join(&name);
        if ft.is_symlink() {
            let target =
                std::fs::read_link(&path).map_err(SourceError::io("read symlink", &path))?;
            check_symlink("archive", &rel, &target)?;
            continue;
        }
        if !(ft.is_dir() || ft.is_file()) || rules.is_ignored(&rel, ft.is_dir()) {
            continue;
        }
        if ft.is_dir() {
            sink.dir(&rel)?;
            add_dir(sink, &path, &format!("{rel}/"), rules)?;
        } else {
            let meta = std::fs::metadata(&path).map_err(SourceError::io("stat", &path))?;
            sink.admit(&rel, meta.len())?;
            let f = std::fs::File::open(&path).map_err(SourceError::io("read", &path))?;
            sink.file(&rel, meta.permissions().mode() & 0o111 != 0, meta.len(), f)?;
        }
    }
    Ok(())
}

/// Error when the symlink at `rel` (relative to the root) with `target` resolves, lexically,
/// outside the root.
pub(crate) fn check_symlink(op: &'static str, rel: &str, target: &Path) -> Result<()> {
    let escapes = || SourceError::SymlinkEscapes {
        op,
        path: rel.to_string(),
    };
    if target.is_absolute() {
        return Err(escapes());
    }
    // Depth of the link's directory below root, then walk the target lexically.
    let mut depth = rel.matches('/').count() as i64;
    for c in target.components() {
        match c {
            Component::ParentDir => depth -= 1,
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            _ => return Err(escapes()),
        }
        if depth < 0 {
            return Err(escapes());
        }
    }
    Ok(())
}

/// An artifact in storage (the fields of Flux's `status.artifact`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifact {
    /// Path relative to the storage root: `<kind>/<ns>/<name>/<file>`.
    pub path: String,
    /// `http://<advertised address>/<path>`.
    pub url: String,
    /// Source revision it was built from.
    pub revision: String,
    /// `sha256:<hex>`.
    pub digest: String,
    /// Size in bytes.
    pub size: u64,
    /// When it was written.
    pub last_update_time: SystemTime,
}

/// The object an artifact belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectKey<'a> {
    /// Kind (`GitRepository`); stored lower-cased as Flux does.
    pub kind: &'a str,
    /// Namespace.
    pub namespace: &'a str,
    /// Name.
    pub name: &'a str,
}

/// The artifact store under `--storage-path`.
#[derive(Debug, Clone)]
pub struct Storage {
    root: PathBuf,
    advertised_addr: String,
}

fn check_segment(what: &str, s: &str) -> Result<()> {
    if s.is_empty() || s == "." || s == ".." || s.contains(['/', '\\', '\0']) {
        return Err(SourceError::Invalid {
            what: format!("artifact {what} '{s}'"),
            detail: "must be a single path segment".to_string(),
        });
    }
    Ok(())
}

impl Storage {
    /// Storage rooted at `root`; URLs use `advertised_addr` (`host:port`).
    pub fn new(root: impl Into<PathBuf>, advertised_addr: impl Into<String>) -> Storage {
        Storage {
            root: root.into(),
            advertised_addr: advertised_addr.into(),
        }
    }

    /// The storage root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Directory holding an object's artifacts: `<root>/<kind lowercase>/<ns>/<name>`.
    pub fn object_dir(&self, key: ObjectKey<'_>) -> Result<PathBuf> {
        let ObjectKey {
            kind,
            namespace,
            name,
        } = key;
        check_segment("kind", kind)?;
        check_segment("namespace", namespace)?;
        check_segment("name", name)?;
        Ok(self
            .root
            .join(kind.to_ascii_lowercase())
            .join(namespace)
            .join(name))
    }

    /// Absolute path of a stored artifact.
    pub fn local_path(&self, artifact: &Artifact) -> PathBuf {
        self.root.join(&artifact.path)
    }

    /// Archive `dir` (filtered by its `.sourceignore` files and `spec_ignore`) into
    /// `<kind>/<ns>/<name>/<digest hex>.tar.gz`, atomically. Storing an identical tree again
    /// returns the same artifact with a fresh `last_update_time`.
    pub fn store_dir(
        &self,
        key: ObjectKey<'_>,
        revision: &str,
        dir: &Path,
        spec_ignore: Option<&str>,
        limits: Limits,
    ) -> Result<Artifact> {
        self.object_dir(key)?;
        let rules = IgnoreRules::load(dir, spec_ignore)?;
        self.store_with(key, revision, |w| archive_dir(dir, &rules, limits, w))
    }

    /// Store the archive `write` produces (see [`archive_dir`], `git::archive_commit`) as
    /// `<kind>/<ns>/<name>/<digest hex>.tar.gz`, atomically.
    pub fn store_with(
        &self,
        key: ObjectKey<'_>,
        revision: &str,
        write: impl FnOnce(&mut dyn Write) -> Result<ArchiveInfo>,
    ) -> Result<Artifact> {
        let obj = self.object_dir(key)?;
        let ObjectKey {
            kind,
            namespace,
            name,
        } = key;
        std::fs::create_dir_all(&obj).map_err(SourceError::io("create artifact dir", &obj))?;
        let mut tmp = tempfile::Builder::new()
            .prefix(".tmp-")
            .tempfile_in(&obj)
            .map_err(SourceError::io("create artifact", &obj))?;
        let info = {
            let mut w = std::io::BufWriter::new(tmp.as_file_mut());
            let info = write(&mut w)?;
            w.flush().map_err(SourceError::io("write artifact", &obj))?;
            info
        };
        let hexd = info.digest.trim_start_matches("sha256:");
        let file = format!("{hexd}.tar.gz");
        let dest = obj.join(&file);
        tmp.persist(&dest)
            .map_err(|e| SourceError::io("store artifact", &dest)(e.error))?;
        let f = std::fs::File::open(&dest).map_err(SourceError::io("store artifact", &dest))?;
        let now = SystemTime::now();
        f.set_modified(now)
            .map_err(SourceError::io("store artifact", &dest))?;
        let rel = format!("{}/{namespace}/{name}/{file}", kind.to_ascii_lowercase());
        Ok(Artifact {
            url: format!("http://{}/{rel}", self.advertised_addr),
            path: rel,
            revision: revision.to_string(),
            digest: info.digest,
            size: info.size,
            last_update_time: now,
        })
    }

    /// Store `data` as `<kind>/<ns>/<name>/<file>` atomically (e.g. a Helm repository
    /// index as `index-<digest>.yaml`); the digest is the sha256 of `data`. `file` must be
    /// a single path segment.
    pub fn store_bytes(
        &self,
        key: ObjectKey<'_>,
        revision: &str,
        file: &str,
        data: &[u8],
    ) -> Result<Artifact> {
        check_segment("file", file)?;
        let obj = self.object_dir(key)?;
        std::fs::create_dir_all(&obj).map_err(SourceError::io("create artifact dir", &obj))?;
        let mut tmp = tempfile::Builder::new()
            .prefix(".tmp-")
            .tempfile_in(&obj)
            .map_err(SourceError::io("create artifact", &obj))?;
        tmp.as_file_mut()
            .write_all(data)
            .map_err(SourceError::io("write artifact", &obj))?;
        let dest = obj.join(file);
        tmp.persist(&dest)
            .map_err(|e| SourceError::io("store artifact", &dest)(e.error))?;
        let now = SystemTime::now();
        std::fs::File::open(&dest)
            .and_then(|f| f.set_modified(now))
            .map_err(SourceError::io("store artifact", &dest))?;
        let rel = format!(
            "{}/{}/{}/{file}",
            key.kind.to_ascii_lowercase(),
            key.namespace,
            key.name
        );
        Ok(Artifact {
            url: format!("http://{}/{rel}", self.advertised_addr),
            path: rel,
            revision: revision.to_string(),
            digest: format!("sha256:{}", hex::encode(Sha256::digest(data))),
            size: data.len() as u64,
            last_update_time: now,
        })
    }

    /// Garbage-collect an object's artifacts other than `current` (a file name or relative
    /// path), as Flux: delete those older than `ttl`, then the oldest until at most
    /// `max_records` remain besides `current`. Returns the deleted paths.
    pub fn gc(
        &self,
        key: ObjectKey<'_>,
        current: &str,
        max_records: usize,
        ttl: Duration,
    ) -> Result<Vec<PathBuf>> {
        let obj = self.object_dir(key)?;
        let current = current.rsplit('/').next().unwrap_or(current);
        let mut files = Vec::new();
        let rd = match std::fs::read_dir(&obj) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(SourceError::io("gc artifacts", &obj)(e)),
        };
        for e in rd {
            let e = e.map_err(SourceError::io("gc artifacts", &obj))?;
            let n = e.file_name().to_string_lossy().into_owned();
            if n == current || !e.file_type().map(|t| t.is_file()).unwrap_or(false) {
                continue;
            }
            let mtime = e
                .metadata()
                .and_then(|m| m.modified())
                .unwrap_or(SystemTime::UNIX_EPOCH);
            files.push((mtime, e.path()));
        }
        files.sort();
        let now = SystemTime::now();
        let mut deleted = Vec::new();
        let mut keep = Vec::new();
        for (mtime, p) in files {
            let age = now.duration_since(mtime).unwrap_or_default();
            if age > ttl {
                deleted.push(p)
            } else {
                keep.push(p)
            }
        }
        let excess = keep.len().saturating_sub(max_records);
        deleted.extend(keep.into_iter().take(excess));
        for p in &deleted {
            std::fs::remove_file(p).map_err(SourceError::io("gc artifact", p))?;
        }
        Ok(deleted)
    }

    /// Remove every artifact of an object (finalizer).
    pub fn remove_all(&self, key: ObjectKey<'_>) -> Result<()> {
        let obj = self.object_dir(key)?;
        match std::fs::remove_dir_all(&obj) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(SourceError::io("remove artifacts", &obj)(e))
            }
            _ => Ok(()),
        }
    }
}

/// Verify `data` against `digest` (`sha256:<hex>`).
pub fn verify_digest(url: &str, data: &[u8], digest: &str) -> Result<()> {
    let actual = format!("sha256:{}", hex::encode(Sha256::digest(data)));
    if !actual.eq_ignore_ascii_case(digest) {
        return Err(SourceError::DigestMismatch {
            op: "verify artifact",
            url: url.to_string(),
            expected: digest.to_string(),
            actual,
        });
    }
    Ok(())
}

pub use crate::extract::extract_tar_gz;

/// Download `url` (plain HTTP, as Flux's artifact URLs), verify `digest`, and extract into
/// `dest`. The download is bounded by `limits.max_total_size` and `timeout`.
pub async fn fetch_and_extract(
    url: &str,
    digest: &str,
    dest: &Path,
    limits: Limits,
    timeout: Duration,
) -> Result<()> {
    let data = tokio::time::timeout(timeout, download(url, limits.max_total_size))
        .await
        .map_err(|_| SourceError::Timeout {
            op: "download artifact",
            url: url.to_string(),
            after: timeout,
        })??;
    verify_digest(url, &data, digest)?;
    let dest = dest.to_path_buf();
    tokio::task::spawn_blocking(move || extract_tar_gz(&data, &dest, limits))
        .await
        .map_err(|e| SourceError::Http {
            op: "extract artifact",
            url: String::new(),
            detail: e.to_string(),
        })?
}

async fn download(url: &str, max: u64) -> Result<Vec<u8>> {
    use http_body_util::BodyExt as _;
    let err = |detail: String| SourceError::Http {
        op: "download artifact",
        url: url.to_string(),
        detail,
    };
    let uri: hyper::Uri = url
        .parse()
        .map_err(|e: hyper::http::uri::InvalidUri| err(e.to_string()))?;
    if uri.scheme_str() != Some("http") {
        return Err(err("only http:// artifact URLs are supported".to_string()));
    }
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<bytes::Bytes>>();
    let resp = client.get(uri).await.map_err(|e| err(e.to_string()))?;
    if resp.status() != hyper::StatusCode::OK {
        return Err(err(format!("HTTP status {}", resp.status())));
    }
    let mut body = resp.into_body();
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| err(e.to_string()))?;
        if let Some(d) = frame.data_ref() {
            out.extend_from_slice(d);
            if out.len() as u64 > max {
                return Err(SourceError::TooLarge {
                    op: "download artifact",
                    path: url.to_string(),
                    size: out.len() as u64,
                    limit: max,
                });
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        for (p, c) in files {
            let p = d.path().join(p);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, c).unwrap();
        }
        d
    }

    fn listing(dir: &Path, spec: Option<&str>) -> Vec<String> {
        let mut buf = Vec::new();
        let rules = IgnoreRules::load(dir, spec).unwrap();
        archive_dir(dir, &rules, Limits::default(), &mut buf).unwrap();
        let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(&buf[..]));
        ar.entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect()
    }

    #[test]
    fn store_bytes_writes_a_named_file() {
        let d = tempfile::tempdir().unwrap();
        let st = Storage::new(d.path(), "h:1");
        let key = ObjectKey {
            kind: "HelmRepository",
            namespace: "ns",
            name: "r",
        };
        let a = st
            .store_bytes(key, "sha256:ab", "index-ab.yaml", b"{}")
            .unwrap();
        assert_eq!(a.path, "helmrepository/ns/r/index-ab.yaml");
        assert_eq!(a.url, "http://h:1/helmrepository/ns/r/index-ab.yaml");
        assert_eq!(a.size, 2);
        assert_eq!(std::fs::read(st.local_path(&a)).unwrap(), b"{}");
        assert!(st.store_bytes(key, "x", "../evil", b"").is_err());
    }

    #[test]
    fn default_exclusions_and_order() {
        let d = tree(&[
            ("b.yaml", "b"),
            ("a/x.yaml", "x"),
            ("logo.png", "p"),
            (".github/workflows/ci.yml", "c"),
            (".gitignore", "g"),
            ("sub/.sops.yaml", "s"),
            ("keep.jpgx", "k"),
        ]);
        assert_eq!(
            listing(d.path(), None),
            ["a/", "a/x.yaml", "b.yaml", "keep.jpgx", "sub/"]
        );
    }

    #[test]
    fn sourceignore_replaces_defaults_and_spec_overrides() {
        let d = tree(&[
            (".sourceignore", "*.txt\n"),
            ("a.txt", "a"),
            ("logo.png", "p"),
            ("deep/.sourceignore", "!keep.txt\n"),
            ("deep/keep.txt", "k"),
            ("deep/drop.txt", "d"),
            ("x.yaml", "x"),
        ]);
        let l = listing(d.path(), None);
        assert!(l.contains(&"logo.png".to_string()), "{l:?}");
        assert!(!l.contains(&"a.txt".to_string()));
        assert!(l.contains(&"deep/keep.txt".to_string()));
        assert!(!l.contains(&"deep/drop.txt".to_string()));
        let l = listing(d.path(), Some("/*\n!/x.yaml\n"));
        assert_eq!(l, ["x.yaml"]);
    }

    #[test]
    fn deterministic_bytes_and_modes() {
        use std::os::unix::fs::PermissionsExt as _;
        let a = tree(&[("run.sh", "#!/bin/sh\n"), ("z/y.yaml", "y")]);
        std::fs::set_permissions(
            a.path().join("run.sh"),
            std::fs::Permissions::from_mode(0o700),
        )
        .unwrap();
        let b = tree(&[("z/y.yaml", "y"), ("run.sh", "#!/bin/sh\n")]);
        std::fs::set_permissions(
            b.path().join("run.sh"),
            std::fs::Permissions::from_mode(0o751),
        )
        .unwrap();
        let arch = |d: &Path| {
            let mut v = Vec::new();
            let info = archive_dir(
                d,
                &IgnoreRules::load(d, None).unwrap(),
                Limits::default(),
                &mut v,
            )
            .unwrap();
            (v, info)
        };
        let (va, ia) = arch(a.path());
        let (vb, ib) = arch(b.path());
        assert_eq!(va, vb);
        assert_eq!(ia, ib);
        assert_eq!(ia.size, va.len() as u64);
        verify_digest("x", &va, &ia.digest).unwrap();
        assert!(verify_digest("x", b"other", &ia.digest).is_err());
    }

    #[test]
    fn symlinks_inside_dropped_outside_rejected() {
        let d = tree(&[("a/f.yaml", "f")]);
        std::os::unix::fs::symlink("f.yaml", d.path().join("a/inside")).unwrap();
        assert_eq!(listing(d.path(), None), ["a/", "a/f.yaml"]);
        std::os::unix::fs::symlink("../../etc/passwd", d.path().join("a/out")).unwrap();
        let rules = IgnoreRules::load(d.path(), None).unwrap();
        let e = archive_dir(d.path(), &rules, Limits::default(), Vec::new()).unwrap_err();
        assert!(
            matches!(e, SourceError::SymlinkEscapes { ref path, .. } if path == "a/out"),
            "{e}"
        );
    }

    #[test]
    fn huge_file_rejected() {
        let d = tree(&[("big.bin", &"x".repeat(2048))]);
        let limits = Limits {
            max_file_size: 1024,
            ..Limits::default()
        };
        let rules = IgnoreRules::load(d.path(), None).unwrap();
        let e = archive_dir(d.path(), &rules, limits, Vec::new()).unwrap_err();
        assert!(matches!(e, SourceError::TooLarge { size: 2048, .. }), "{e}");
    }

    #[test]
    fn storage_roundtrip_and_gc() {
        const KEY: ObjectKey<'static> = ObjectKey {
            kind: "GitRepository",
            namespace: "ns",
            name: "repo",
        };
        let src = tree(&[("k.yaml", "kind: X")]);
        let root = tempfile::tempdir().unwrap();
        let st = Storage::new(root.path(), "source.plumb:9090");
        let a = st
            .store_dir(KEY, "main@sha1:abc", src.path(), None, Limits::default())
            .unwrap();
        assert!(a.path.starts_with("gitrepository/ns/repo/"));
        assert_eq!(a.url, format!("http://source.plumb:9090/{}", a.path));
        let data = std::fs::read(st.local_path(&a)).unwrap();
        verify_digest(&a.url, &data, &a.digest).unwrap();
        let out = tempfile::tempdir().unwrap();
        extract_tar_gz(&data, out.path(), Limits::default()).unwrap();
        assert_eq!(
            std::fs::read_to_string(out.path().join("k.yaml")).unwrap(),
            "kind: X"
        );
        // Older artifacts: 3 extra files; keep 1 besides current.
        let obj = st.object_dir(KEY).unwrap();
        for (i, n) in ["old1.tar.gz", "old2.tar.gz", "old3.tar.gz"]
            .iter()
            .enumerate()
        {
            let p = obj.join(n);
            std::fs::write(&p, "x").unwrap();
            let t = SystemTime::now() - Duration::from_secs(30 - i as u64);
            std::fs::File::options()
                .write(true)
                .open(&p)
                .unwrap()
                .set_modified(t)
                .unwrap();
        }
        let del = st.gc(KEY, &a.path, 1, Duration::from_secs(3600)).unwrap();
        assert_eq!(del.len(), 2);
        assert!(obj.join("old3.tar.gz").exists() && st.local_path(&a).exists());
        let del = st.gc(KEY, &a.path, 5, Duration::from_secs(1)).unwrap();
        assert_eq!(del.len(), 1);
        st.remove_all(KEY).unwrap();
        assert!(!obj.exists());
        assert!(
            st.object_dir(ObjectKey {
                kind: "GitRepository",
                namespace: "..",
                name: "x"
            })
            .is_err()
        );
    }

    #[test]
    fn extraction_rejects_unsafe_entries() {
        let build = |path: &str, kind: tar::EntryType| {
            let mut raw = Vec::new();
            {
                let gz = flate2::write::GzEncoder::new(&mut raw, Compression::fast());
                let mut b = tar::Builder::new(gz);
                let mut h = tar::Header::new_gnu();
                h.set_entry_type(kind);
                h.set_size(if kind == tar::EntryType::Regular {
                    1
                } else {
                    0
                });
                h.set_mode(0o644);
                // Bypass tar's own path checks to produce hostile entries.
                let name = &mut h.as_old_mut().name;
                name[..path.len()].copy_from_slice(path.as_bytes());
                if kind == tar::EntryType::Symlink {
                    h.set_link_name("/etc").unwrap();
                }
                h.set_cksum();
                b.append(
                    &h,
                    &b"x"[..if kind == tar::EntryType::Regular {
                        1
                    } else {
                        0
                    }],
                )
                .unwrap();
                b.into_inner().unwrap().finish().unwrap();
            }
            raw
        };
        let out = tempfile::tempdir().unwrap();
        for (p, k) in [
            ("../evil", tar::EntryType::Regular),
            ("/abs", tar::EntryType::Regular),
            ("link", tar::EntryType::Symlink),
        ] {
            let e = extract_tar_gz(&build(p, k), out.path(), Limits::default()).unwrap_err();
            assert!(matches!(e, SourceError::UnsafeEntry { .. }), "{p}: {e}");
        }
        let small = Limits {
            max_file_size: 0,
            ..Limits::default()
        };
        let e =
            extract_tar_gz(&build("ok", tar::EntryType::Regular), out.path(), small).unwrap_err();
        assert!(matches!(e, SourceError::TooLarge { .. }));
    }
}
