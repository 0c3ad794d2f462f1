//! `spec.include`: the artifacts of other GitRepositories copied into this one's artifact.

use std::path::{Component, Path, PathBuf};

use kube::ResourceExt;
use kube::api::Api;
use plumb_api::GitRepository;
use plumb_api::consts::{condition, reason};
use plumb_api::meta::Artifact;
use plumb_source::artifact::Limits;

use crate::context::Context;
use crate::outcome::{Class, Failure};

/// The current artifacts of the GitRepositories `spec.include` names (same namespace),
/// in spec order, with the path of each archive in storage.
pub(super) async fn included_artifacts(
    obj: &GitRepository,
    ctx: &Context,
) -> std::result::Result<Vec<(Artifact, PathBuf)>, Failure> {
    let ns = obj.namespace().unwrap_or_default();
    let api: Api<GitRepository> = Api::namespaced(ctx.client.clone(), &ns);
    let mut out = Vec::with_capacity(obj.spec.include.len());
    for inc in &obj.spec.include {
        let name = &inc.repository.name;
        for (what, p) in [
            ("toPath", Some(inc.to_path())),
            ("fromPath", inc.from_path.as_deref()),
        ] {
            if let Some(p) = p
                && !is_relative_inside(p)
            {
                return Err(Failure::new(
                    Class::Stalled,
                    reason::INVALID_PATH,
                    format!(
                        "include of GitRepository '{ns}/{name}': {what} '{p}' must be a relative path inside the artifact"
                    ),
                ));
            }
        }
        let unavailable = |why: String| {
            Failure::new(
                Class::Waiting,
                condition::INCLUDE_UNAVAILABLE,
                format!("included GitRepository '{ns}/{name}': {why}"),
            )
        };
        let included = api
            .get_opt(name)
            .await
            .map_err(|e| unavailable(format!("get failed: {e}")))?
            .ok_or_else(|| unavailable("not found".into()))?;
        let artifact = included
            .status
            .and_then(|s| s.artifact)
            .ok_or_else(|| unavailable("no artifact yet".into()))?;
        let file = ctx.storage.root().join(&artifact.path);
        if !file.is_file() {
            return Err(unavailable(format!(
                "artifact '{}' not in storage",
                artifact.revision
            )));
        }
        out.push((artifact, file));
    }
    Ok(out)
}

/// Whether `p` is a relative path that stays inside its root (no `..`, not absolute).
fn is_relative_inside(p: &str) -> bool {
    Path::new(p)
        .components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
}

/// Extracts the artifact archive at `archive` and puts its `from` subdirectory (or all of
/// it) at `root/to`, replacing what was there, as Flux's include does.
pub(super) fn copy_include(
    archive: &Path,
    from: Option<&str>,
    root: &Path,
    to: &str,
) -> std::result::Result<(), plumb_source::SourceError> {
    let io = |op: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |e: std::io::Error| plumb_source::SourceError::Io {
            op,
            path,
            source: e,
        }
    };
    let data = std::fs::read(archive).map_err(io("read included artifact", archive))?;
    let tmp = tempfile::Builder::new()
        .prefix("plumb-include-")
        .tempdir()
        .map_err(io("create include dir", &std::env::temp_dir()))?;
    plumb_source::artifact::extract_tar_gz(&data, tmp.path(), Limits::default())?;
    let src = match from {
        Some(f) => tmp.path().join(f),
        None => tmp.path().to_path_buf(),
    };
    let dst = root.join(to);
    match std::fs::remove_dir_all(&dst) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io("replace include target", &dst)(e)),
    }
    copy_tree(&src, &dst).map_err(io("copy included artifact", &dst))
}

/// Recursive copy of regular files and directories (extracted artifacts hold nothing else).
fn copy_tree(src: &Path, dst: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dst)?;
    for entry in std::fs::read_dir(src)? {
        let entry = entry?;
        let target = dst.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}
