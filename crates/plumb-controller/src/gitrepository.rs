//! The GitRepository reconciler: fetch (incrementally, into a persistent cache), package
//! the tree as a deterministic artifact, serve it, and report Flux's status.
//!
//! A poll of an unchanged remote costs one ref listing and, when the status already says
//! so, no API write at all.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use plumb_api::conditions::{self, Status as CondStatus};
use plumb_api::consts::{FINALIZER, annotation, condition, reason};
use plumb_api::meta::Artifact;
use plumb_api::{GitRepository, GitRepositoryStatus};
use plumb_source::ErrorKind;
use plumb_source::artifact::{Limits, ObjectKey};
use plumb_source::git::{self, FetchOptions, GitAuth, GitReference};

use crate::context::Context;
use crate::outcome::{Class, Failure, jitter};
use crate::{Error, Result};

/// Artifact storage kind segment, as in Flux's URLs.
const KIND: &str = "gitrepository";

/// Runs the GitRepository controller until shutdown.
pub async fn run(
    ctx: Arc<Context>,
    api: Api<GitRepository>,
    watch: watcher::Config,
    concurrency: u16,
) {
    Controller::new(api, watch)
        .with_config(kube::runtime::controller::Config::default().concurrency(concurrency))
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx)
        .for_each(|res| async move {
            if let Err(e) = res {
                tracing::debug!(error = %e, "gitrepository reconcile error");
            }
        })
        .await;
}

fn error_policy(_obj: Arc<GitRepository>, err: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(error = %err, "gitrepository reconcile failed");
    Action::requeue(Duration::from_secs(10))
}

/// One reconcile of one GitRepository (finalizer-aware).
pub async fn reconcile(obj: Arc<GitRepository>, ctx: Arc<Context>) -> Result<Action> {
    let ns = obj.namespace().unwrap_or_default();
    let api: Api<GitRepository> = Api::namespaced(ctx.client.clone(), &ns);
    finalizer(&api, FINALIZER, obj, |ev| async {
        match ev {
            Finalizer::Apply(o) => apply(o, &ctx, &api).await,
            Finalizer::Cleanup(o) => cleanup(o, &ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(e.to_string()))
}

async fn cleanup(obj: Arc<GitRepository>, ctx: &Context) -> Result<Action> {
    let ns = obj.namespace().unwrap_or_default();
    let name = obj.name_any();
    let key = ObjectKey {
        kind: KIND,
        namespace: &ns,
        name: &name,
    };
    // Artifacts and the git cache are plumb's own; nothing in the cluster to undo.
    ctx.storage
        .remove_all(key)
        .map_err(|e| Error::Storage(e.to_string()))?;
    let cache = git::cache_path(&ctx.git_cache_root(), &ns, &name);
    match tokio::fs::remove_dir_all(&cache).await {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::Storage(format!("removing {}: {e}", cache.display()))),
    }
    Ok(Action::await_change())
}

async fn apply(obj: Arc<GitRepository>, ctx: &Context, api: &Api<GitRepository>) -> Result<Action> {
    let interval = obj.interval().unwrap_or(Duration::from_secs(60));
    if obj.spec.suspend {
        return Ok(Action::await_change());
    }
    let generation = obj.meta().generation;
    let mut status = obj.status.clone().unwrap_or_default();
    let before = status.clone();
    let requested = obj
        .annotations()
        .get(annotation::RECONCILE_REQUESTED_AT)
        .cloned();

    let outcome = fetch_and_store(&obj, ctx, &status).await;
    let unsupported = obj.unsupported_fields();
    let unsupported_note =
        (!unsupported.is_empty()).then(|| plumb_api::unsupported::message(&unsupported));
    let obj_ref = obj.object_ref(&());
    let action = match outcome {
        Ok((artifact, changed)) => {
            let msg = format!("stored artifact for revision '{}'", artifact.revision);
            conditions::remove(&mut status.conditions, condition::FETCH_FAILED);
            conditions::set(
                &mut status.conditions,
                condition::ARTIFACT_IN_STORAGE,
                CondStatus::True,
                reason::SUCCEEDED,
                &msg,
                generation,
            );
            let ready_msg = match &unsupported_note {
                Some(note) => format!("{msg}; {note}"),
                None => msg.clone(),
            };
            conditions::mark_ready(
                &mut status.conditions,
                reason::SUCCEEDED,
                &ready_msg,
                generation,
            );
            if changed {
                ctx.event(
                    &obj_ref,
                    false,
                    "NewArtifact",
                    &format!(
                        "stored artifact with revision '{}' from '{}'",
                        artifact.revision,
                        git::redact_url(&obj.spec.url)
                    ),
                )
                .await;
            }
            status.artifact = Some(artifact);
            status.observed_ignore = obj.spec.ignore.clone();
            status.observed_recurse_submodules = obj.spec.recurse_submodules;
            Action::requeue(jitter(interval, ctx.config.jitter_percent))
        }
        Err(f) => {
            conditions::set(
                &mut status.conditions,
                condition::FETCH_FAILED,
                CondStatus::True,
                f.reason,
                &f.message,
                generation,
            );
            if f.class == Class::Stalled {
                conditions::mark_stalled(&mut status.conditions, f.reason, &f.message, generation);
            } else {
                conditions::mark_failed(&mut status.conditions, f.reason, &f.message, generation);
            }
            // The last good artifact stays in status and storage.
            ctx.event(&obj_ref, true, f.reason, &f.message).await;
            Action::requeue(f.requeue_after(Duration::from_secs(10), interval))
        }
    };
    if let Some(note) = &unsupported_note
        && before
            .conditions
            .iter()
            .all(|c| !c.message.contains(note.as_str()))
    {
        ctx.event(&obj_ref, true, reason::UNSUPPORTED_FIELD, note)
            .await;
    }
    status.observed_generation = generation;
    if requested.is_some() {
        status.reconcile_request.last_handled_reconcile_at = requested;
    }
    if status != before {
        write_status(api, &obj.name_any(), &status).await?;
    }
    Ok(action)
}

async fn write_status(
    api: &Api<GitRepository>,
    name: &str,
    status: &GitRepositoryStatus,
) -> Result<()> {
    let patch = serde_json::json!({"status": status});
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|e| Error::Kube(format!("writing status of GitRepository {name}: {e}")))?;
    Ok(())
}

fn reference(obj: &GitRepository) -> GitReference {
    let r = obj.spec.reference.clone().unwrap_or_default();
    GitReference {
        branch: r.branch,
        tag: r.tag,
        semver: r.semver,
        name: r.name,
        commit: r.commit,
    }
}

async fn read_auth(obj: &GitRepository, ctx: &Context) -> std::result::Result<GitAuth, Failure> {
    let Some(secret_ref) = &obj.spec.secret_ref else {
        return Ok(GitAuth::none());
    };
    let ns = obj.namespace().unwrap_or_default();
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    let secret = secrets.get_opt(&secret_ref.name).await.map_err(|e| {
        Failure::new(
            Class::Transient,
            reason::AUTHENTICATION_FAILED,
            format!("failed to get secret '{ns}/{}': {e}", secret_ref.name),
        )
    })?;
    let Some(secret) = secret else {
        return Err(Failure::new(
            Class::Waiting,
            reason::AUTHENTICATION_FAILED,
            format!("secret '{ns}/{}' not found", secret_ref.name),
        ));
    };
    let data: BTreeMap<String, Vec<u8>> = secret
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect();
    GitAuth::from_secret(&data).map_err(|e| {
        Failure::new(
            Class::Stalled,
            reason::AUTHENTICATION_FAILED,
            format!("secret '{ns}/{}': {e}", secret_ref.name),
        )
    })
}

fn classify(e: &plumb_source::SourceError) -> Failure {
    let (class, why) = match e.kind() {
        ErrorKind::AuthFailed => (Class::Stalled, reason::AUTHENTICATION_FAILED),
        ErrorKind::HostUntrusted => (Class::Stalled, reason::AUTHENTICATION_FAILED),
        ErrorKind::Unreachable | ErrorKind::Timeout => {
            (Class::Transient, reason::GIT_OPERATION_FAILED)
        }
        ErrorKind::RefNotFound => (Class::Stalled, reason::GIT_OPERATION_FAILED),
        ErrorKind::InvalidInput => (Class::Stalled, reason::URL_INVALID),
        ErrorKind::BadContent => (Class::Stalled, reason::ARCHIVE_OPERATION_FAILED),
        ErrorKind::Internal => (Class::Transient, condition::STORAGE_OPERATION_FAILED),
    };
    Failure::new(class, why, e.to_string())
}

/// Fetches the remote and stores an artifact when the revision (or what shapes the
/// artifact) changed. Returns the artifact and whether it is new.
async fn fetch_and_store(
    obj: &GitRepository,
    ctx: &Context,
    status: &GitRepositoryStatus,
) -> std::result::Result<(Artifact, bool), Failure> {
    let ns = obj.namespace().unwrap_or_default();
    let name = obj.name_any();
    let timeout = obj.timeout().unwrap_or(Duration::from_secs(60));
    let opts = FetchOptions {
        url: obj.spec.url.clone(),
        reference: reference(obj),
        auth: read_auth(obj, ctx).await?,
        timeout,
        cache_dir: git::cache_path(&ctx.git_cache_root(), &ns, &name),
    };
    let fetch_opts = opts.clone();
    let fetched = tokio::task::spawn_blocking(move || git::fetch(&fetch_opts))
        .await
        .map_err(|e| {
            Failure::new(
                Class::Transient,
                reason::GIT_OPERATION_FAILED,
                e.to_string(),
            )
        })?
        .map_err(|e| classify(&e))?;

    // Same revision, same ignore rules, artifact still on disk: nothing to do.
    if let Some(current) = &status.artifact
        && current.revision == fetched.revision
        && status.observed_ignore == obj.spec.ignore
        && status.observed_recurse_submodules == obj.spec.recurse_submodules
        && ctx.storage.root().join(&current.path).is_file()
    {
        return Ok((current.clone(), false));
    }

    let storage = ctx.storage.clone();
    let revision = fetched.revision.clone();
    let commit = fetched.commit.id.clone();
    let ignore = obj.spec.ignore.clone();
    let submodules = obj.spec.recurse_submodules;
    let retention = (
        ctx.config.artifact_retention_records,
        ctx.config.artifact_retention_ttl,
    );
    let stored = tokio::task::spawn_blocking(move || -> std::result::Result<plumb_source::artifact::Artifact, plumb_source::SourceError> {
        let work = tempfile::Builder::new()
            .prefix("plumb-checkout-")
            .tempdir()
            .map_err(|e| plumb_source::SourceError::Io { op: "create checkout dir", path: std::env::temp_dir(), source: e })?;
        git::checkout(&opts, &commit, work.path(), submodules)?;
        let key = ObjectKey { kind: KIND, namespace: &ns, name: &name };
        let artifact = storage.store_dir(key, &revision, work.path(), ignore.as_deref(), Limits::default())?;
        storage.gc(key, &artifact.path, retention.0, retention.1)?;
        Ok(artifact)
    })
    .await
    .map_err(|e| Failure::new(Class::Transient, condition::STORAGE_OPERATION_FAILED, e.to_string()))?
    .map_err(|e| classify(&e))?;

    Ok((
        Artifact {
            path: stored.path,
            url: stored.url,
            revision: stored.revision,
            digest: Some(stored.digest),
            last_update_time: Time(now()),
            size: i64::try_from(stored.size).ok(),
            metadata: BTreeMap::new(),
        },
        true,
    ))
}

fn now() -> k8s_openapi::jiff::Timestamp {
    k8s_openapi::jiff::Timestamp::now()
}
