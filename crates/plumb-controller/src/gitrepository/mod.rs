//! The GitRepository reconciler: fetch (incrementally, into a persistent cache), package
//! the tree as a deterministic artifact, serve it, and report Flux's status.
//!
//! Steps ([`Kind::steps`]), top to bottom:
//! 1. **fetch**: read the auth Secret, fetch the reference into the bare cache
//!    (`plumb_source::git::fetch`);
//! 2. **include**: resolve the artifacts of `spec.include` ([`include`]);
//! 3. **store**: unless revision, ignore rules and includes are unchanged (and the artifact
//!    is still on disk), check out, copy includes, archive, store and garbage-collect;
//! 4. **report**: `ArtifactInStorage`, the artifact in status, a `NewArtifact` event.
//!
//! A poll of an unchanged remote costs one ref listing and, when the status already says
//! so, no API write at all.

mod github_app;
mod include;
mod verify;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use plumb_api::conditions::{self};
use plumb_api::consts::{condition, reason};
use plumb_api::git_repository::GitProvider;
use plumb_api::meta::Artifact;
use plumb_api::{GitRepository, GitRepositoryStatus};
use plumb_source::ErrorKind;
use plumb_source::artifact::{Limits, ObjectKey};
use plumb_source::git::{self, FetchOptions, GitAuth, GitReference};

use crate::context::Context;
use crate::outcome::{Class, Failure};
use crate::reconciler::{Done, Kind, Policy};
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
    let controller = crate::reconciler::desired_state_controller(api.clone(), watch.clone());
    let store = controller.store();
    // A new artifact of an included repository re-archives the repositories including it.
    let controller = controller.watches(api, watch, move |changed: GitRepository| {
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
    });
    crate::reconciler::run(controller, ctx, concurrency).await;
}

impl Kind for GitRepository {
    const KIND: &'static str = "GitRepository";
    const POLICY: Policy = Policy::SOURCE;

    fn suspended(&self) -> bool {
        self.spec.suspend
    }

    fn every(&self) -> Duration {
        self.interval().unwrap_or(Duration::from_secs(60))
    }

    fn unsupported_note(&self) -> Option<String> {
        let unsupported = self.unsupported_fields();
        (!unsupported.is_empty()).then(|| plumb_api::unsupported::message(&unsupported))
    }

    fn revision(status: &GitRepositoryStatus) -> &str {
        status.artifact.as_ref().map_or("", |a| a.revision.as_str())
    }

    async fn steps(
        obj: &Self,
        ctx: &Context,
        status: &mut GitRepositoryStatus,
    ) -> std::result::Result<Done, Failure> {
        warn_unsupported(obj, ctx, status).await;
        let (artifact, included, changed) = fetch_and_store(obj, ctx, status).await?;
        let msg = format!("stored artifact for revision '{}'", artifact.revision);
        let generation = obj.meta().generation;
        conditions::remove(&mut status.conditions, condition::INCLUDE_UNAVAILABLE);
        crate::artifact::mark_stored(&mut status.conditions, &msg, generation);
        let event = changed.then(|| {
            let note = format!(
                "stored artifact with revision '{}' from '{}'",
                artifact.revision,
                git::redact_url(&obj.spec.url)
            );
            ("NewArtifact", note)
        });
        status.artifact = Some(artifact);
        status.included_artifacts = included;
        status.observed_include = obj.spec.include.clone();
        status.observed_ignore = obj.spec.ignore.clone();
        status.observed_recurse_submodules = obj.spec.recurse_submodules;
        status.observed_sparse_checkout = obj.spec.sparse_checkout.clone();
        Ok(Done {
            ready: Some((reason::SUCCEEDED, msg)),
            event,
            requeue: None,
        })
    }

    fn failure_condition(f: &Failure) -> Option<&'static str> {
        // An include without an artifact has its own condition, like Flux's. The last good
        // artifact stays in status and storage.
        Some(if f.reason == condition::INCLUDE_UNAVAILABLE {
            condition::INCLUDE_UNAVAILABLE
        } else {
            condition::FETCH_FAILED
        })
    }

    async fn cleanup(obj: Arc<Self>, ctx: &Context) -> Result<Action> {
        let ns = obj.namespace().unwrap_or_default();
        let name = obj.name_any();
        // Artifacts and the git cache are plumb's own; nothing in the cluster to undo.
        crate::artifact::remove_stored(ctx, KIND, &*obj)?;
        let cache = git::cache_path(&ctx.git_cache_root(), &ns, &name);
        match tokio::fs::remove_dir_all(&cache).await {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::Storage(format!("removing {}: {e}", cache.display()))),
        }
        Ok(Action::await_change())
    }
}

/// A Warning event the first time the status does not mention the unsupported fields yet.
async fn warn_unsupported(obj: &GitRepository, ctx: &Context, status: &GitRepositoryStatus) {
    if let Some(note) = obj.unsupported_note()
        && status
            .conditions
            .iter()
            .all(|c| !c.message.contains(note.as_str()))
    {
        ctx.event(&obj.object_ref(&()), true, reason::UNSUPPORTED_FIELD, &note)
            .await;
    }
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
    let ns = obj.namespace().unwrap_or_default();
    let invalid = |name: &str, e: plumb_source::SourceError| {
        Failure::new(
            Class::Stalled,
            reason::AUTHENTICATION_FAILED,
            format!("secret '{ns}/{name}': {e}"),
        )
    };
    let auth = match &obj.spec.secret_ref {
        None => GitAuth::none(),
        Some(r) => {
            let data = crate::secrets::secret_data(ctx, &ns, &r.name).await?;
            let auth = GitAuth::from_secret(&data).map_err(|e| invalid(&r.name, e))?;
            if obj.spec.provider == Some(GitProvider::Github) {
                github_app::auth(obj, ctx, &r.name, &data, auth).await?
            } else {
                auth
            }
        }
    };
    if obj.spec.provider == Some(GitProvider::Github) && obj.spec.secret_ref.is_none() {
        return Err(Failure::new(
            Class::Stalled,
            reason::AUTHENTICATION_FAILED,
            "the github provider needs spec.secretRef with the GitHub App (githubAppID, githubAppInstallationID, githubAppPrivateKey)",
        ));
    }
    let Some(r) = &obj.spec.proxy_secret_ref else {
        return Ok(auth);
    };
    let data = crate::secrets::secret_data(ctx, &ns, &r.name).await?;
    let proxy = git::GitProxy::from_secret(&data).map_err(|e| invalid(&r.name, e))?;
    Ok(auth.with_proxy(proxy))
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
        ErrorKind::Unverified => (Class::Stalled, reason::VERIFICATION_ERROR),
        ErrorKind::Internal => (Class::Transient, condition::STORAGE_OPERATION_FAILED),
    };
    Failure::new(class, why, e.to_string())
}

/// The result of one fetch: the artifact, the artifacts included in it, and whether it is new.
type Stored = (Artifact, Vec<Artifact>, bool);

/// Fetches the remote and stores an artifact when the revision (or what shapes the
/// artifact, includes among it) changed.
async fn fetch_and_store(
    obj: &GitRepository,
    ctx: &Context,
    status: &mut GitRepositoryStatus,
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
        sparse: git::sparse::normalize(&obj.spec.sparse_checkout).map_err(|e| classify(&e))?,
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
    verify::verify_step(obj, ctx, &opts, &fetched, status).await?;
    let includes = include::included_artifacts(obj, ctx).await?;
    let included: Vec<Artifact> = includes.iter().map(|(a, _)| a.clone()).collect();

    // Same revision, same ignore rules and includes, artifact still on disk: nothing to do.
    if let Some(current) = &status.artifact
        && current.revision == fetched.revision
        && status.observed_ignore == obj.spec.ignore
        && status.observed_recurse_submodules == obj.spec.recurse_submodules
        && status.observed_include == obj.spec.include
        && status.observed_sparse_checkout == obj.spec.sparse_checkout
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
