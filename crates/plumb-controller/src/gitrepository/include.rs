//! `spec.include`: the artifacts of other GitRepositories copied into this one's artifact.

use std::path::{Component, Path, PathBuf};

use kube::ResourceExt;
use kube::api::Api;
use plumb_api::GitRepository;
use plumb_api::consts::{condition, reason};
use plumb_api::meta::Artifact;

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
