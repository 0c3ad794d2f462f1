//! Step **source**: the current artifact of the Kustomization's source: a GitRepository
//! (read from the controller's watch store when it holds it), an OCIRepository or an
//! ExternalArtifact (e.g. an ArtifactGenerator's output).

use kube::ResourceExt;
use kube::api::Api;
use plumb_api::consts::reason;
use plumb_api::kustomization::SourceKind;
use plumb_api::{GitRepository, Kustomization, OCIRepository};

use crate::artifact::{git_artifact, source_namespace};
use crate::context::Context;
use crate::outcome::{Class, Failure};

/// The current artifact of `obj`'s source (its GitRepository).
pub async fn source_artifact(
    obj: &Kustomization,
    ctx: &Context,
) -> std::result::Result<plumb_api::meta::Artifact, Failure> {
    let src = &obj.spec.source_ref;
    let own = obj.namespace().unwrap_or_default();
    let ns = source_namespace(ctx, &own, src.namespace.as_deref(), &src.kind, &src.name)?;
    if src.kind == SourceKind::OCIRepository {
        return oci_artifact(ctx, &ns, &src.name).await;
    }
    if src.kind == SourceKind::ExternalArtifact {
        return crate::artifact::external_artifact(ctx, &ns, &src.name).await;
    }
    if src.kind != SourceKind::GitRepository {
        return Err(Failure::new(
            Class::Stalled,
            reason::ARTIFACT_FAILED,
            format!("source kind {} is not supported yet", src.kind),
        ));
    }
    let Some(repo) = git_repository(ctx, &ns, &src.name).await? else {
        return Err(Failure::new(
            Class::Waiting,
            reason::ARTIFACT_FAILED,
            format!("Source 'GitRepository/{ns}/{}' not found", src.name),
        ));
    };
    git_artifact(Some(repo), &ns, &src.name)
}

/// The artifact of OCIRepository `ns/name`; waiting while it has none (or is not there).
async fn oci_artifact(
    ctx: &Context,
    ns: &str,
    name: &str,
) -> std::result::Result<plumb_api::meta::Artifact, Failure> {
    let api: Api<OCIRepository> = Api::namespaced(ctx.client.clone(), ns);
    let repo = api.get_opt(name).await.map_err(|e| {
        Failure::new(
            Class::Transient,
            reason::ARTIFACT_FAILED,
            format!("getting OCIRepository '{ns}/{name}': {e}"),
        )
    })?;
    repo.and_then(|r| r.status)
        .and_then(|s| s.artifact)
        .ok_or_else(|| {
            Failure::new(
                Class::Waiting,
                reason::ARTIFACT_FAILED,
                format!("Source 'OCIRepository/{ns}/{name}' is not ready, artifact not found"),
            )
        })
}

/// The GitRepository `ns/name`: from the controller's watch store when it holds it,
/// else from the server (not listed yet, or outside the watched scope).
async fn git_repository(
    ctx: &Context,
    ns: &str,
    name: &str,
) -> std::result::Result<Option<GitRepository>, Failure> {
    let cached = ctx
        .sources
        .read()
        .ok()
        .and_then(|s| s.as_ref().map(|s| (s.is_empty(), s.clone())))
        .and_then(|(empty, store)| {
            let key = kube::runtime::reflector::ObjectRef::new(name).within(ns);
            (!empty).then(|| store.get(&key)).flatten()
        });
    if let Some(found) = cached {
        return Ok(Some((*found).clone()));
    }
    let api: Api<GitRepository> = Api::namespaced(ctx.client.clone(), ns);
    api.get_opt(name).await.map_err(|e| {
        Failure::new(
            Class::Transient,
            reason::ARTIFACT_FAILED,
            format!("getting GitRepository '{ns}/{name}': {e}"),
        )
    })
}
