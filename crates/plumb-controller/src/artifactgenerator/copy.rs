//! The copy operations of an output artifact, applied to a staging directory: `@alias/path`
//! (a file or a directory, copied as `cp -r` would) or `@alias/<glob>` (every match), to
//! `@artifact/<path>`, with excludes and the `Overwrite`, `Merge` (YAML deep merge, later
//! wins) and `Extract` (unpack `.tar.gz`/`.tgz`) strategies, as Flux's source-watcher.
//!
//! Every destination is resolved with `plumb_source::fsjoin::join_inside`, so nothing is
//! written outside the staging root; sources are extracted artifacts (plumb's extractor
//! writes regular files and directories only).

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use plumb_api::artifact_generator::{CopyOperation, CopyStrategy};
use plumb_source::fsjoin::join_inside;

use super::glob::{Glob, is_glob};

/// Why a copy operation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum CopyError {
    /// The spec or the sources' content: a pattern matching nothing, a destination
    /// escaping the root, an unknown alias (stalled until the spec or a source changes).
    Input(String),
    /// Reading or writing files.
    Io(String),
}

impl std::fmt::Display for CopyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CopyError::Input(m) | CopyError::Io(m) => f.write_str(m),
        }
    }
}

type Result<T> = std::result::Result<T, CopyError>;

fn io(what: &str, p: &Path) -> impl FnOnce(std::io::Error) -> CopyError {
    let msg = format!("{what} '{}'", p.display());
    move |e| CopyError::Io(format!("{msg}: {e}"))
}

fn fsjoin(e: plumb_source::SourceError) -> CopyError {
    CopyError::Input(e.to_string())
}

/// An exclude pattern; one without `/` matches a name at any depth.
struct Exclude {
    glob: Glob,
    anywhere: bool,
}

fn excluded(rel: &str, excludes: &[Exclude]) -> bool {
    excludes.iter().any(|x| {
        if x.anywhere {
            rel.split('/').any(|part| x.glob.matches(part))
        } else {
            x.glob.matches(rel)
        }
    })
}

/// How one operation writes.
struct Target<'a> {
    staging: &'a Path,
    strategy: CopyStrategy,
    excludes: &'a [Exclude],
}

/// Applies `op` with `sources` (alias -> extracted artifact) into `staging`.
pub(super) fn apply(
    op: &CopyOperation,
    sources: &BTreeMap<String, PathBuf>,
    staging: &Path,
) -> Result<()> {
    apply_inner(op, sources, staging).map_err(|e| match e {
        CopyError::Input(m) => {
            CopyError::Input(format!("copy from '{}' to '{}': {m}", op.from, op.to))
        }
        CopyError::Io(m) => CopyError::Io(format!("copy from '{}' to '{}': {m}", op.from, op.to)),
    })
}

fn apply_inner(
    op: &CopyOperation,
    sources: &BTreeMap<String, PathBuf>,
    staging: &Path,
) -> Result<()> {
    let (alias, pattern) = op
        .from
        .strip_prefix('@')
        .and_then(|r| r.split_once('/'))
        .ok_or_else(|| CopyError::Input("source must be '@<alias>/<path>'".into()))?;
    let pattern = pattern.trim_start_matches("./").trim_end_matches('/');
    if !relative_inside(pattern) {
        return Err(CopyError::Input(
            "source path must stay within the source root".into(),
        ));
    }
    let dest = op
        .to
        .strip_prefix("@artifact/")
        .or_else(|| (op.to == "@artifact").then_some(""))
        .ok_or_else(|| CopyError::Input("destination must start with '@artifact/'".into()))?;
    let dest_dir_hint = op.to.ends_with('/');
    let dest = dest.trim_end_matches('/');
    if !relative_inside(dest) {
        return Err(CopyError::Input(
            "destination path must stay within the artifact root".into(),
        ));
    }
    let root = sources
        .get(alias)
        .ok_or_else(|| CopyError::Input(format!("source alias '{alias}' not found")))?;
    let excludes = op
        .exclude
        .iter()
        .map(|p| {
            Glob::new(p)
                .map(|glob| Exclude {
                    glob,
                    anywhere: !p.contains('/'),
                })
                .map_err(|e| CopyError::Input(format!("invalid exclude pattern '{p}': {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    let t = Target {
        staging,
        strategy: op.strategy.unwrap_or_default(),
        excludes: &excludes,
    };
    if is_glob(pattern) {
        copy_glob(&t, root, alias, pattern, dest)
    } else {
        copy_single(&t, root, pattern, dest, dest_dir_hint)
    }
}

/// Relative, without `..` (empty is the root).
fn relative_inside(p: &str) -> bool {
    Path::new(p)
        .components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
}

fn join(a: &str, b: &str) -> String {
    match (a.is_empty(), b.is_empty()) {
        (true, _) => b.to_string(),
        (_, true) => a.to_string(),
        _ => format!("{a}/{b}"),
    }
}

fn base_name(p: &str) -> &str {
    p.rsplit('/').next().unwrap_or(p)
}

fn is_tarball(p: &str) -> bool {
    p.ends_with(".tar.gz") || p.ends_with(".tgz")
}

/// A literal file or directory (`cp -r` semantics).
fn copy_single(t: &Target<'_>, root: &Path, path: &str, dest: &str, dir_hint: bool) -> Result<()> {
    let src = join_inside(root, if path.is_empty() { "." } else { path }).map_err(fsjoin)?;
    let meta = match std::fs::metadata(&src) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(CopyError::Input(format!("source '{path}' does not exist")));
        }
        Err(e) => return Err(io("stat", &src)(e)),
    };
    if meta.is_dir() {
        if t.strategy == CopyStrategy::Extract {
            return Err(CopyError::Input(format!(
                "extract strategy is not supported for directories, got '{path}'"
            )));
        }
        return put_tree(t, &src, &join(dest, base_name(path)));
    }
    if excluded(base_name(path), t.excludes) {
        return Ok(());
    }
    if t.strategy == CopyStrategy::Extract {
        if !is_tarball(path) {
            return Err(CopyError::Input(format!(
                "extract strategy requires a tarball (.tar.gz or .tgz), got '{path}'"
            )));
        }
        return extract(t, &src, dest);
    }
    let into_dir =
        dir_hint || dest.is_empty() || join_inside(t.staging, dest).map_err(fsjoin)?.is_dir();
    let to = if into_dir {
        join(dest, base_name(path))
    } else {
        dest.to_string()
    };
    put_file(t, &src, &to)
}

/// Every match of a glob: `dir/**` copies the contents of `dir`; other patterns keep the
/// matched path under the destination.
fn copy_glob(t: &Target<'_>, root: &Path, alias: &str, pattern: &str, dest: &str) -> Result<()> {
    let glob = Glob::new(pattern)
        .map_err(|e| CopyError::Input(format!("invalid glob pattern '{pattern}': {e}")))?;
    // With `**` the files match one by one; without, a matched directory is copied whole.
    let recursive = pattern.contains("**");
    let base = literal_prefix(pattern);
    let mut matches: Vec<(String, bool)> = walk_under(root, &base)?
        .into_iter()
        .filter(|(rel, dir)| {
            glob.matches(rel) && !(*dir && (recursive || t.strategy == CopyStrategy::Extract))
        })
        .collect();
    if matches.is_empty() {
        return Err(CopyError::Input(format!(
            "no files match pattern '{pattern}' in source '{alias}'"
        )));
    }
    matches.retain(|(rel, _)| {
        let below = rel.strip_prefix(&format!("{base}/")).unwrap_or(rel);
        !excluded(below, t.excludes)
    });
    if matches.is_empty() {
        return Err(CopyError::Input(format!(
            "all files matching pattern '{pattern}' in source '{alias}' were excluded"
        )));
    }
    let keep_under = pattern.strip_suffix("/**");
    for (rel, dir) in matches {
        let src = root.join(&rel);
        if t.strategy == CopyStrategy::Extract {
            if is_tarball(&rel) {
                extract(t, &src, dest)?;
            }
            continue;
        }
        let to = match keep_under.and_then(|p| rel.strip_prefix(&format!("{p}/"))) {
            Some(below) => join(dest, below),
            None => join(dest, &rel),
        };
        if dir {
            put_tree(t, &src, &to)?;
        } else {
            put_file(t, &src, &to)?;
        }
    }
    Ok(())
}

/// The segments of `pattern` before its first glob segment.
fn literal_prefix(pattern: &str) -> String {
    pattern
        .split('/')
        .take_while(|s| !is_glob(s))
        .collect::<Vec<_>>()
        .join("/")
}

/// Every entry below the directory `base` of `root` (a glob's literal prefix: nothing outside
/// it can match, and a monorepo split has one operation per app, so walking the whole source
/// each time would cost apps x files), as paths relative to `root`. A `base` that is missing,
/// not a directory or reached through a symlink has no entries (the full walk would not
/// descend there either).
fn walk_under(root: &Path, base: &str) -> Result<Vec<(String, bool)>> {
    let mut dir = root.to_path_buf();
    for seg in base.split('/').filter(|s| !s.is_empty()) {
        dir.push(seg);
        match std::fs::symlink_metadata(&dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Ok(Vec::new()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io("stat", &dir)(e)),
        }
    }
    walk(&dir, base)
}

/// Every entry under `root` as (slash-separated path after `prefix`, is directory), sorted.
fn walk(root: &Path, prefix: &str) -> Result<Vec<(String, bool)>> {
    let mut out = Vec::new();
    let mut todo = vec![(root.to_path_buf(), prefix.to_string())];
    while let Some((dir, prefix)) = todo.pop() {
        for e in std::fs::read_dir(&dir).map_err(io("read dir", &dir))? {
            let e = e.map_err(io("read dir", &dir))?;
            let ft = e.file_type().map_err(io("stat", &e.path()))?;
            let rel = join(&prefix, &e.file_name().to_string_lossy());
            if ft.is_dir() {
                todo.push((e.path(), rel.clone()));
                out.push((rel, true));
            } else if ft.is_file() {
                out.push((rel, false));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Copies the tree `src` to `dest`, skipping excluded entries (relative to `src`).
fn put_tree(t: &Target<'_>, src: &Path, dest: &str) -> Result<()> {
    let to = join_inside(t.staging, dest).map_err(fsjoin)?;
    std::fs::create_dir_all(&to).map_err(io("create dir", &to))?;
    let entries = walk(src, "")?;
    let skipped: Vec<&str> = entries
        .iter()
        .filter(|(rel, dir)| *dir && excluded(rel, t.excludes))
        .map(|(rel, _)| rel.as_str())
        .collect();
    for (rel, dir) in &entries {
        let under_skipped = skipped
            .iter()
            .any(|s| rel == s || rel.starts_with(&format!("{s}/")));
        if under_skipped || excluded(rel, t.excludes) {
            continue;
        }
        let target = join(dest, rel);
        if *dir {
            let d = join_inside(t.staging, &target).map_err(fsjoin)?;
            std::fs::create_dir_all(&d).map_err(io("create dir", &d))?;
        } else {
            put_file(t, &src.join(rel), &target)?;
        }
    }
    Ok(())
}

/// Writes the file `src` at `dest` by the strategy (Merge deep-merges two YAML maps).
fn put_file(t: &Target<'_>, src: &Path, dest: &str) -> Result<()> {
    let to = join_inside(t.staging, dest).map_err(fsjoin)?;
    if to.is_dir() {
        return Err(CopyError::Input(format!(
            "cannot overwrite directory '{dest}' with a file"
        )));
    }
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent).map_err(io("create dir", parent))?;
    }
    let yaml = dest.ends_with(".yaml") || dest.ends_with(".yml");
    if t.strategy == CopyStrategy::Merge && yaml && to.is_file() {
        return merge_yaml(src, &to, dest);
    }
    if to.exists() {
        std::fs::remove_file(&to).map_err(io("remove", &to))?;
    }
    std::fs::copy(src, &to).map_err(io("copy", src))?;
    Ok(())
}

/// `dst := merge(dst, src)` for two YAML maps, as Helm merges values files.
fn merge_yaml(src: &Path, dst: &Path, shown: &str) -> Result<()> {
    let read = |p: &Path| -> Result<plumb_helm::Value> {
        let text = std::fs::read_to_string(p).map_err(io("read", p))?;
        plumb_helm::parse_values(&text)
            .map_err(|e| CopyError::Input(format!("merging '{shown}': {e}")))
    };
    let merged = plumb_helm::merge_user_values(&[read(dst)?, read(src)?], &[])
        .map_err(|e| CopyError::Input(format!("merging '{shown}': {e}")))?;
    std::fs::write(dst, plumb_helm::encode::to_yaml(&merged)).map_err(io("write", dst))
}

/// Extracts the tarball `src` into `dest`, overwriting.
fn extract(t: &Target<'_>, src: &Path, dest: &str) -> Result<()> {
    let data = std::fs::read(src).map_err(io("read", src))?;
    let tmp = tempfile::Builder::new()
        .prefix("plumb-extract-")
        .tempdir()
        .map_err(io("create dir", &std::env::temp_dir()))?;
    plumb_source::artifact::extract_tar_gz(&data, tmp.path(), Default::default())
        .map_err(|e| CopyError::Input(format!("extracting '{}': {e}", src.display())))?;
    let plain = Target {
        staging: t.staging,
        strategy: CopyStrategy::Overwrite,
        excludes: &[],
    };
    put_tree(&plain, tmp.path(), dest)
}

#[cfg(test)]
#[path = "copy_tests.rs"]
mod tests;
