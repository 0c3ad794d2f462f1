//! Publishing the built artifacts: one ExternalArtifact per output, owned by the generator
//! (`spec.sourceRef` names it too), its status carrying the artifact. An object or status
//! that is already right is not written, so consumers see a change only for an artifact
//! whose content changed. Stale outputs (in the inventory, no longer in the spec) are
//! deleted with their stored files, only after every output was published.

use std::collections::BTreeSet;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Resource, ResourceExt};
use plumb_api::artifact_generator::ExternalArtifactReference;
use plumb_api::conditions::{self, Status};
use plumb_api::consts::{condition, reason};
use plumb_api::meta::{Artifact, NamespacedObjectKindReference};
use plumb_api::{ArtifactGenerator, ExternalArtifact, ExternalArtifactStatus};
use serde_json::json;

use super::build::STORAGE_KIND;
use crate::context::Context;
use crate::outcome::{Class, Failure};

fn api_failure(what: String, e: kube::Error) -> Failure {
    Failure::new(
        Class::Transient,
        reason::PATCH_OPERATION_FAILED,
        format!("{what}: {e}"),
    )
}

fn owner(obj: &ArtifactGenerator) -> OwnerReference {
    OwnerReference {
        api_version: ArtifactGenerator::api_version(&()).into_owned(),
        kind: ArtifactGenerator::kind(&()).into_owned(),
        name: obj.name_any(),
        uid: obj.uid().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

fn owned_by(ea: &ExternalArtifact, obj: &ArtifactGenerator) -> bool {
    let uid = obj.uid().unwrap_or_default();
    ea.owner_references().iter().any(|r| r.uid == uid)
}

/// The ExternalArtifacts in `obj`'s namespace by name (one list request, so that publishing
/// 500 outputs does not cost 500 reads).
pub(super) async fn existing(
    obj: &ArtifactGenerator,
    ctx: &Context,
) -> Result<std::collections::HashMap<String, ExternalArtifact>, Failure> {
    let ns = obj.namespace().unwrap_or_default();
    let api: Api<ExternalArtifact> = Api::namespaced(ctx.client.clone(), &ns);
    let list = api
        .list(&ListParams::default())
        .await
        .map_err(|e| api_failure(format!("listing ExternalArtifacts in '{ns}'"), e))?;
    Ok(list
        .items
        .into_iter()
        .map(|ea| (ea.name_any(), ea))
        .collect())
}

/// Creates or updates the ExternalArtifact `name` (`existing`: as listed by [`existing`])
/// and its status; returns whether its artifact changed.
pub(super) async fn publish(
    obj: &ArtifactGenerator,
    ctx: &Context,
    name: &str,
    artifact: &Artifact,
    existing: Option<ExternalArtifact>,
) -> Result<bool, Failure> {
    let ns = obj.namespace().unwrap_or_default();
    let api: Api<ExternalArtifact> = Api::namespaced(ctx.client.clone(), &ns);
    let meta = obj.spec.common_metadata.clone().unwrap_or_default();
    let source_ref = NamespacedObjectKindReference {
        api_version: Some(ArtifactGenerator::api_version(&()).into_owned()),
        kind: ArtifactGenerator::kind(&()).into_owned(),
        name: obj.name_any(),
        namespace: Some(ns.clone()),
    };
    let current = match existing {
        Some(ea) if !owned_by(&ea, obj) => {
            return Err(Failure::new(
                Class::Stalled,
                reason::VALIDATION_FAILED,
                format!(
                    "ExternalArtifact '{ns}/{name}' exists and is not managed by ArtifactGenerator '{ns}/{}'",
                    obj.name_any()
                ),
            ));
        }
        Some(ea) => {
            let labels_ok = meta
                .labels
                .iter()
                .all(|(k, v)| ea.labels().get(k) == Some(v));
            let ann_ok = meta
                .annotations
                .iter()
                .all(|(k, v)| ea.annotations().get(k) == Some(v));
            if labels_ok && ann_ok && ea.spec.source_ref.as_ref() == Some(&source_ref) {
                ea
            } else {
                let patch = json!({"metadata": {"labels": meta.labels, "annotations": meta.annotations},
                                   "spec": {"sourceRef": source_ref}});
                api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .map_err(|e| {
                        api_failure(format!("updating ExternalArtifact '{ns}/{name}'"), e)
                    })?
            }
        }
        None => {
            let mut ea = ExternalArtifact::new(
                name,
                plumb_api::ExternalArtifactSpec {
                    source_ref: Some(source_ref),
                },
            );
            ea.metadata.namespace = Some(ns.clone());
            ea.metadata.labels = Some(meta.labels.clone());
            ea.metadata.annotations = Some(meta.annotations.clone());
            ea.metadata.owner_references = Some(vec![owner(obj)]);
            api.create(&PostParams::default(), &ea)
                .await
                .map_err(|e| api_failure(format!("creating ExternalArtifact '{ns}/{name}'"), e))?
        }
    };
    write_status(&api, &current, artifact).await
}

/// Writes the artifact into the status unless it is already there (same file, revision
/// and metadata: the update time of the stored one is kept).
async fn write_status(
    api: &Api<ExternalArtifact>,
    ea: &ExternalArtifact,
    artifact: &Artifact,
) -> Result<bool, Failure> {
    let name = ea.name_any();
    let old = ea.status.clone().unwrap_or_default();
    let same = |a: &Artifact| {
        a.digest == artifact.digest
            && a.revision == artifact.revision
            && a.path == artifact.path
            && a.url == artifact.url
            && a.metadata == artifact.metadata
    };
    let ready =
        conditions::find(&old.conditions, condition::READY).is_some_and(|c| c.status == "True");
    if old.artifact.as_ref().is_some_and(same) && ready {
        return Ok(false);
    }
    let mut status = ExternalArtifactStatus {
        observed_generation: ea.metadata.generation,
        artifact: Some(artifact.clone()),
        conditions: old.conditions,
    };
    let msg = format!("stored artifact for revision '{}'", artifact.revision);
    conditions::set(
        &mut status.conditions,
        condition::READY,
        Status::True,
        reason::SUCCEEDED,
        &msg,
        ea.metadata.generation,
    );
    api.patch_status(
        &name,
        &PatchParams::default(),
        &Patch::Merge(&json!({"status": status})),
    )
    .await
    .map_err(|e| api_failure(format!("updating ExternalArtifact '{name}' status"), e))?;
    Ok(!old.artifact.as_ref().is_some_and(same))
}

/// Whether every inventory entry still exists, is owned by `obj`, carries the recorded
/// digest and has its file in storage (one list request).
pub(super) async fn intact(
    obj: &ArtifactGenerator,
    ctx: &Context,
    inventory: &[ExternalArtifactReference],
) -> Result<bool, Failure> {
    let found = existing(obj, ctx).await?;
    Ok(inventory.iter().all(|item| {
        found.get(&item.name).is_some_and(|ea| {
            let art = ea.status.as_ref().and_then(|s| s.artifact.as_ref());
            owned_by(ea, obj)
                && art.is_some_and(|a| {
                    a.digest.as_deref() == Some(item.digest.as_str())
                        && ctx.storage.root().join(&a.path).is_file()
                })
        })
    }))
}

/// The inventory entry of a published artifact.
pub(super) fn entry(ns: &str, name: &str, a: &Artifact) -> ExternalArtifactReference {
    ExternalArtifactReference {
        digest: a.digest.clone().unwrap_or_default(),
        filename: a.path.rsplit('/').next().unwrap_or_default().to_string(),
        name: name.to_string(),
        namespace: ns.to_string(),
    }
}

/// Deletes the ExternalArtifacts of `old` not in `keep` (and their stored files).
pub(super) async fn remove_stale(
    obj: &ArtifactGenerator,
    ctx: &Context,
    old: &[ExternalArtifactReference],
    keep: &BTreeSet<&str>,
) -> Result<(), Failure> {
    for item in old.iter().filter(|i| !keep.contains(i.name.as_str())) {
        remove(obj, ctx, &item.namespace, &item.name).await?;
    }
    Ok(())
}

/// Deletes ExternalArtifact `ns/name` when `obj` owns it, and its stored files.
pub(super) async fn remove(
    obj: &ArtifactGenerator,
    ctx: &Context,
    ns: &str,
    name: &str,
) -> Result<(), Failure> {
    let api: Api<ExternalArtifact> = Api::namespaced(ctx.client.clone(), ns);
    let found = api
        .get_opt(name)
        .await
        .map_err(|e| api_failure(format!("getting ExternalArtifact '{ns}/{name}'"), e))?;
    if found.as_ref().is_some_and(|ea| owned_by(ea, obj)) {
        match api.delete(name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => {
                return Err(api_failure(
                    format!("deleting ExternalArtifact '{ns}/{name}'"),
                    e,
                ));
            }
        }
    }
    ctx.storage
        .remove_all(plumb_source::artifact::ObjectKey {
            kind: STORAGE_KIND,
            namespace: ns,
            name,
        })
        .map_err(|e| {
            Failure::new(
                Class::Transient,
                condition::STORAGE_OPERATION_FAILED,
                e.to_string(),
            )
        })
}
