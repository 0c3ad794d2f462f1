//! The GitRepository reconciler: fetch (incrementally, into a persistent cache), package
//! the tree as a deterministic artifact, serve it, and report Flux's status.
//!
//! A poll of an unchanged remote costs one ref listing and, when the status already says
//! so, no API write at all.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::reflector::ObjectRef;
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
    let controller = crate::shared::desired_state_controller(api.clone(), watch.clone());
    let store = controller.store();
    controller
        // A new artifact of an included repository re-archives the repositories including it.
        .watches(api, watch, move |changed: GitRepository| {
            let ns = changed.namespace();
            let name = changed.name_any();
            store
                .state()
                .into_iter()
                .filter(|o| {
                    o.namespace() == ns && o.spec.include.iter().any(|i| i.repository.name == name)
                })
                .map(|o| ObjectRef::from_obj(&*o))
                .collect::<Vec<_>>()
        })
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
    let _timer = ctx
        .metrics
        .reconcile_timer("GitRepository", &ns, &obj.name_any());
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
    ctx.metrics.forget("GitRepository", &ns, &name);
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
        observe(ctx, &obj, obj.status.clone().unwrap_or_default());
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
        Ok((artifact, included, changed)) => {
            let msg = format!("stored artifact for revision '{}'", artifact.revision);
            conditions::remove(&mut status.conditions, condition::FETCH_FAILED);
            conditions::remove(&mut status.conditions, condition::INCLUDE_UNAVAILABLE);
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
            status.included_artifacts = included;
            status.observed_include = obj.spec.include.clone();
            status.observed_ignore = obj.spec.ignore.clone();
            status.observed_recurse_submodules = obj.spec.recurse_submodules;
            Action::requeue(jitter(interval, ctx.config.jitter_percent))
        }
        Err(f) => {
            // An include without an artifact has its own condition, like Flux's.
            let failed = if f.reason == condition::INCLUDE_UNAVAILABLE {
                condition::INCLUDE_UNAVAILABLE
            } else {
                condition::FETCH_FAILED
            };
            conditions::set(
                &mut status.conditions,
                failed,
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
        crate::shared::write_status(api, &obj.name_any(), &before, &status).await?;
    }
    observe(ctx, &obj, status);
    Ok(action)
}

/// Records the outcome in the metrics.
fn observe(ctx: &Context, obj: &GitRepository, status: GitRepositoryStatus) {
    let revision = status.artifact.as_ref().map_or("", |a| a.revision.as_str());
    ctx.metrics.observe(
        "GitRepository",
        &obj.namespace().unwrap_or_default(),
        &obj.name_any(),
        crate::metrics::Observed {
            conditions: &status.conditions,
            suspended: obj.spec.suspend,
            revision,
        },
    );
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
    let data = crate::shared::secret_data(ctx, &ns, &secret_ref.name).await?;
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

/// The current artifacts of the GitRepositories `spec.include` names (same namespace),
/// in spec order, with the path of each archive in storage.
async fn included_artifacts(
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

/// The result of one fetch: the artifact, the artifacts included in it, and whether it is new.
type Stored = (Artifact, Vec<Artifact>, bool);

/// Fetches the remote and stores an artifact when the revision (or what shapes the
/// artifact, includes among it) changed.
async fn fetch_and_store(
    obj: &GitRepository,
    ctx: &Context,
    status: &GitRepositoryStatus,
) -> std::result::Result<Stored, Failure> {
    let ns = obj.namespace().unwrap_or_default();
    let name = obj.name_any();
    let timeout = obj.timeout().unwrap_or(Duration::from_secs(60));
    let opts = FetchOptions {
        url: obj.spec.url.clone(),
        reference: reference(obj),
        auth: read_auth(obj, ctx).await?,
        timeout,
        cache_dir: git::cache_path(&ctx.git_cache_root(), &ns, &name),
        limits: git::FetchLimits::default(),
    };
    let fetch_opts = opts.clone();
    let started = std::time::Instant::now();
    let fetched = tokio::task::spawn_blocking(move || git::fetch(&fetch_opts))
        .await
        .map_err(|e| {
            Failure::new(
                Class::Transient,
                reason::GIT_OPERATION_FAILED,
                e.to_string(),
            )
        })?;
    ctx.metrics
        .git_fetch(started.elapsed().as_secs_f64(), fetched.is_ok());
    let fetched = fetched.map_err(|e| classify(&e))?;
    let includes = included_artifacts(obj, ctx).await?;
    let included: Vec<Artifact> = includes.iter().map(|(a, _)| a.clone()).collect();

    // Same revision, same ignore rules and includes, artifact still on disk: nothing to do.
    if let Some(current) = &status.artifact
        && current.revision == fetched.revision
        && status.observed_ignore == obj.spec.ignore
        && status.observed_recurse_submodules == obj.spec.recurse_submodules
        && status.observed_include == obj.spec.include
        && same_artifacts(&status.included_artifacts, &included)
        && ctx.storage.root().join(&current.path).is_file()
    {
        return Ok((current.clone(), included, false));
    }
    let copies: Vec<(PathBuf, Option<String>, String)> = includes
        .into_iter()
        .zip(&obj.spec.include)
        .map(|((_, file), inc)| (file, inc.from_path.clone(), inc.to_path().to_string()))
        .collect();

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
        for (file, from, to) in &copies {
            // Never through a symlink out of the checkout (securejoin semantics).
            plumb_source::fsjoin::copy_include(file, from.as_deref(), work.path(), to)?;
        }
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
        included,
        true,
    ))
}

/// Whether two lists name the same artifacts (revision and digest; times may differ).
fn same_artifacts(a: &[Artifact], b: &[Artifact]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x.revision == y.revision && x.digest == y.digest)
}

fn now() -> k8s_openapi::jiff::Timestamp {
    k8s_openapi::jiff::Timestamp::now()
}
