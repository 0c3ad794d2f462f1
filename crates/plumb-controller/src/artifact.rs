//! Fetching a source artifact for a consumer (Kustomization, HelmRelease chart from Git):
//! from this process's storage when it stored it, else over HTTP; digest-checked and
//! extracted with plumb-source's limits into a temporary directory.

use std::path::{Component, Path};
use std::time::Duration;

use plumb_api::consts::reason;

use crate::context::Context;
use crate::outcome::{Class, Failure};

/// The namespace of a source reference of an object in `own` (`ns`, else `own`); refused
/// (stalled, `AccessDenied`) when it is another namespace and `--no-cross-namespace-refs`
/// is set.
pub(crate) fn source_namespace(
    ctx: &Context,
    own: &str,
    ns: Option<&str>,
    kind: &dyn std::fmt::Display,
    name: &str,
) -> Result<String, Failure> {
    let ns = ns.unwrap_or(own).to_string();
    if ctx.config.no_cross_namespace_refs && ns != own {
        return Err(Failure::new(
            Class::Stalled,
            reason::ACCESS_DENIED,
            format!("cannot access {kind}/{ns}/{name}: cross-namespace references are disabled"),
        ));
    }
    Ok(ns)
}

/// The artifact in a GitRepository's status; waiting while it has none.
pub(crate) fn git_artifact(
    repo: Option<plumb_api::GitRepository>,
    ns: &str,
    name: &str,
) -> Result<plumb_api::meta::Artifact, Failure> {
    repo.and_then(|r| r.status)
        .and_then(|s| s.artifact)
        .ok_or_else(|| {
            Failure::new(
                Class::Waiting,
                reason::ARTIFACT_FAILED,
                format!("Source 'GitRepository/{ns}/{name}' is not ready, artifact not found"),
            )
        })
}

/// The artifact of ExternalArtifact `ns/name` (its producer writes it into the status);
/// waiting while it has none (or is not there).
pub(crate) async fn external_artifact(
    ctx: &Context,
    ns: &str,
    name: &str,
) -> Result<plumb_api::meta::Artifact, Failure> {
    let api: kube::Api<plumb_api::ExternalArtifact> = kube::Api::namespaced(ctx.client.clone(), ns);
    let found = api.get_opt(name).await.map_err(|e| {
        Failure::new(
            Class::Transient,
            reason::ARTIFACT_FAILED,
            format!("getting ExternalArtifact '{ns}/{name}': {e}"),
        )
    })?;
    let Some(found) = found else {
        return Err(Failure::new(
            Class::Waiting,
            reason::ARTIFACT_FAILED,
            format!("Source 'ExternalArtifact/{ns}/{name}' not found"),
        ));
    };
    found.status.and_then(|s| s.artifact).ok_or_else(|| {
        Failure::new(
            Class::Waiting,
            reason::ARTIFACT_FAILED,
            format!("Source 'ExternalArtifact/{ns}/{name}' is not ready, artifact not found"),
        )
    })
}

/// ExternalArtifacts in `ns` (all namespaces when `None`), for the consumers' watches.
pub(crate) fn external_api(
    ctx: &Context,
    ns: Option<&str>,
) -> kube::Api<plumb_api::ExternalArtifact> {
    match ns {
        Some(ns) => kube::Api::namespaced(ctx.client.clone(), ns),
        None => kube::Api::all(ctx.client.clone()),
    }
}

/// What of a source's artifact queues its consumers, as Flux's
/// `SourceRevisionChangePredicate`: the revision and digest (a source without an artifact
/// yet hashes alike every time). Status writes that keep the artifact (conditions, a
/// Receiver's annotation) queue nobody.
pub(crate) fn artifact_key(a: Option<&plumb_api::meta::Artifact>) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    a.map(|a| (&a.revision, &a.digest)).hash(&mut h);
    h.finish()
}

/// Fetches and extracts `artifact` into a new temporary directory named
/// `prefix...`, removed when the returned handle drops.
pub async fn fetch_artifact(
    ctx: &Context,
    artifact: &plumb_api::meta::Artifact,
    prefix: &str,
    timeout: Duration,
) -> std::result::Result<tempfile::TempDir, Failure> {
    let work = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .map_err(|e| {
            Failure::new(
                Class::Transient,
                reason::ARTIFACT_FAILED,
                format!("creating work dir: {e}"),
            )
        })?;
    let dest = work.path();
    let digest = artifact.digest.clone().unwrap_or_default();
    let limits = plumb_source::artifact::Limits::default();
    // Artifacts this process stored are read from disk; others come over HTTP.
    let local = ctx.storage.root().join(&artifact.path);
    let res = if !artifact.path.is_empty() && safe_relative(&artifact.path) && local.is_file() {
        let dest = dest.to_path_buf();
        let url = artifact.url.clone();
        tokio::task::spawn_blocking(move || {
            let data = std::fs::read(&local).map_err(|e| plumb_source::SourceError::Io {
                op: "read artifact",
                path: local.clone(),
                source: e,
            })?;
            plumb_source::artifact::verify_digest(&url, &data, &digest)?;
            plumb_source::artifact::extract_tar_gz(&data, &dest, limits)
        })
        .await
        .map_err(|e| Failure::new(Class::Transient, reason::ARTIFACT_FAILED, e.to_string()))?
    } else {
        plumb_source::artifact::fetch_and_extract(&artifact.url, &digest, dest, limits, timeout)
            .await
    };
    res.map_err(|e| {
        Failure::new(
            Class::Transient,
            reason::ARTIFACT_FAILED,
            format!("failed to fetch artifact: {e}"),
        )
    })?;
    Ok(work)
}

fn safe_relative(p: &str) -> bool {
    Path::new(p)
        .components()
        .all(|c| matches!(c, Component::Normal(_)))
}

/// Removes every stored artifact of the source `kind` (storage segment) `obj` (finalizer of
/// the source kinds: their artifacts are plumb's own, nothing in the cluster to undo).
pub(crate) fn remove_stored<K: kube::ResourceExt>(
    ctx: &Context,
    kind: &str,
    obj: &K,
) -> crate::Result<()> {
    let (ns, name) = (obj.namespace().unwrap_or_default(), obj.name_any());
    ctx.storage
        .remove_all(plumb_source::artifact::ObjectKey {
            kind,
            namespace: &ns,
            name: &name,
        })
        .map_err(|e| crate::Error::Storage(e.to_string()))
}

/// The conditions of a source whose artifact is stored: `ArtifactInStorage` with `msg`,
/// the fetch failure of an earlier pass cleared.
pub(crate) fn mark_stored(
    conds: &mut Vec<plumb_api::meta::Condition>,
    msg: &str,
    generation: Option<i64>,
) {
    use plumb_api::conditions::{self, Status};
    use plumb_api::consts::condition;
    conditions::remove(conds, condition::FETCH_FAILED);
    conditions::set(
        conds,
        condition::ARTIFACT_IN_STORAGE,
        Status::True,
        reason::SUCCEEDED,
        msg,
        generation,
    );
}
