//! The ArtifactGenerator reconciler (Flux 2.7's source-watcher): compose or split the
//! artifacts of GitRepositories, OCIRepositories and ExternalArtifacts into
//! ExternalArtifacts that plumb stores and serves like its other artifacts.
//!
//! Steps ([`Kind::steps`]), top to bottom:
//! 1. **validate**: unique aliases and names, known aliases, served kinds ([`sources`]);
//! 2. **sources**: every source's current artifact, the cycle check, their digest; when
//!    the digest and generation are those of the last success and every output is intact,
//!    nothing else is done;
//! 3. **fetch**: each source's artifact extracted (digest-verified) into a temporary dir;
//! 4. **build**: the outputs (the `artifacts`, or with `spec.pathPattern` the templates
//!    filled in for every matched directory, [`pattern`]); per output, the copy operations ([`copy`], globs in [`glob`]) into a
//!    staging dir, archived into storage; revision `latest@<content digest>` ([`build`]);
//! 5. **publish**: the ExternalArtifacts and their status, only where they changed, then
//!    the removal of outputs no longer in the spec ([`output`]).
//!
//! Safety: a failure in any step publishes nothing and removes nothing, so consumers keep
//! the last good artifacts.

mod build;
mod copy;
mod glob;
mod output;
mod pattern;
mod sources;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use plumb_api::artifact_generator::GeneratorSourceKind;
use plumb_api::consts::reason;
use plumb_api::{
    ArtifactGenerator, ArtifactGeneratorStatus, ExternalArtifact, GitRepository, OCIRepository,
};

use crate::context::Context;
use crate::outcome::{Class, Failure};
use crate::reconciler::{Done, Kind, Policy};

/// Runs the ArtifactGenerator controller until shutdown.
pub async fn run(
    ctx: Arc<Context>,
    api: Api<ArtifactGenerator>,
    watch: watcher::Config,
    concurrency: u16,
) {
    let ns = api.namespace().map(str::to_string);
    let controller = crate::reconciler::desired_state_controller(api, watch.clone());
    let store = controller.store();
    let git: Api<GitRepository> = scoped(&ctx, ns.as_deref());
    let oci: Api<OCIRepository> = scoped(&ctx, ns.as_deref());
    let eas: Api<ExternalArtifact> = scoped(&ctx, ns.as_deref());
    // Only a new artifact of a source queues its generators (Flux's source predicate): a
    // Receiver's annotation or a condition flip of the source does not.
    let s = store.clone();
    let git = new_artifacts(git, watch.clone(), |o: &GitRepository| {
        o.status.as_ref().and_then(|s| s.artifact.as_ref())
    });
    let controller = controller.watches_stream(git, move |o: GitRepository| {
        users(&s, GeneratorSourceKind::GitRepository, &o)
    });
    let s = store.clone();
    let oci = new_artifacts(oci, watch.clone(), |o: &OCIRepository| {
        o.status.as_ref().and_then(|s| s.artifact.as_ref())
    });
    let controller = controller.watches_stream(oci, move |o: OCIRepository| {
        users(&s, GeneratorSourceKind::OCIRepository, &o)
    });
    // An ExternalArtifact changed: the generators reading it, and the one owning it (a
    // deleted or edited output is generated again).
    let controller = controller.watches(eas, watch, move |o: ExternalArtifact| {
        let mut refs = users(&store, GeneratorSourceKind::ExternalArtifact, &o);
        let ns = o.namespace().unwrap_or_default();
        refs.extend(
            o.owner_references()
                .iter()
                .filter(|r| r.kind == "ArtifactGenerator")
                .map(|r| ObjectRef::new(&r.name).within(&ns)),
        );
        refs
    });
    crate::reconciler::run(controller, ctx, concurrency).await;
}

/// The objects of `api` whose artifact (revision, digest) changed.
fn new_artifacts<S>(
    api: Api<S>,
    watch: watcher::Config,
    artifact: fn(&S) -> Option<&plumb_api::meta::Artifact>,
) -> impl futures::Stream<Item = Result<S, watcher::Error>> + Send + 'static
where
    S: Resource<DynamicType = ()> + Clone + std::fmt::Debug + serde::de::DeserializeOwned,
    S: Send + Sync + 'static,
{
    use kube::runtime::WatchStreamExt;
    watcher(api, watch)
        .default_backoff()
        .applied_objects()
        .predicate_filter(
            move |s: &S| Some(crate::artifact::artifact_key(artifact(s))),
            kube::runtime::PredicateConfig::default(),
        )
}

fn scoped<K>(ctx: &Context, ns: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match ns {
        Some(ns) => Api::namespaced(ctx.client.clone(), ns),
        None => Api::all(ctx.client.clone()),
    }
}

/// The generators with a source of `kind` naming `src`.
fn users<K: Resource>(
    store: &Store<ArtifactGenerator>,
    kind: GeneratorSourceKind,
    src: &K,
) -> Vec<ObjectRef<ArtifactGenerator>> {
    let (ns, name) = (src.meta().namespace.clone(), src.meta().name.clone());
    store
        .state()
        .into_iter()
        .filter(|g| {
            g.spec.sources.iter().any(|s| {
                s.kind == kind
                    && Some(&s.name) == name.as_ref()
                    && s.namespace.clone().or_else(|| g.namespace()) == ns
            })
        })
        .map(|g| ObjectRef::from_obj(&*g))
        .collect()
}

impl Kind for ArtifactGenerator {
    const KIND: &'static str = "ArtifactGenerator";
    const POLICY: Policy = Policy::SOURCE;

    fn every(&self) -> Duration {
        // As Flux's generator: sources' changes trigger it; this is the resync.
        Duration::from_secs(3600)
    }

    fn unsupported_note(&self) -> Option<String> {
        let unsupported = self.unsupported_fields();
        (!unsupported.is_empty()).then(|| plumb_api::unsupported::message(&unsupported))
    }

    fn revision(status: &ArtifactGeneratorStatus) -> &str {
        status.observed_sources_digest.as_deref().unwrap_or("")
    }

    async fn steps(
        obj: &Self,
        ctx: &Context,
        status: &mut ArtifactGeneratorStatus,
    ) -> std::result::Result<Done, Failure> {
        sources::validate(obj)?;
        let artifacts = sources::artifacts(obj, ctx).await?;
        let digest = sources::digest(obj, &artifacts);
        let msg = |n: usize| format!("reconciliation succeeded, generated {n} artifact(s)");
        // With a pathPattern the outputs follow the sources' directories, which the
        // unchanged digest keeps as they were.
        let unchanged = status.observed_sources_digest.as_deref() == Some(digest.as_str())
            && status.observed_generation == obj.meta().generation
            && (obj.spec.path_pattern.is_some()
                || status.inventory.len() == obj.spec.artifacts.len());
        if unchanged && output::intact(obj, ctx, &status.inventory).await? {
            return Ok(Done {
                ready: Some((reason::SUCCEEDED, msg(status.inventory.len()))),
                ..Done::default()
            });
        }
        let changed = generate(obj, ctx, status, artifacts).await?;
        status.observed_sources_digest = Some(digest);
        let event = (!changed.is_empty()).then(|| {
            let note = format!("generated new artifact(s): {}", changed.join(", "));
            ("NewArtifact", note)
        });
        Ok(Done {
            ready: Some((reason::SUCCEEDED, msg(status.inventory.len()))),
            event,
            requeue: None,
        })
    }

    async fn cleanup(obj: Arc<Self>, ctx: &Context) -> crate::Result<Action> {
        let inventory = obj
            .status
            .as_ref()
            .map(|s| s.inventory.clone())
            .unwrap_or_default();
        for item in &inventory {
            output::remove(&obj, ctx, &item.namespace, &item.name)
                .await
                .map_err(|f| crate::Error::Storage(f.message))?;
        }
        Ok(Action::await_change())
    }
}

/// Fetches the sources, builds every output, publishes them and removes stale ones;
/// returns the names of the outputs whose artifact changed.
async fn generate(
    obj: &ArtifactGenerator,
    ctx: &Context,
    status: &mut ArtifactGeneratorStatus,
    artifacts: BTreeMap<String, plumb_api::meta::Artifact>,
) -> Result<Vec<String>, Failure> {
    let ns = obj.namespace().unwrap_or_default();
    let mut dirs: BTreeMap<String, PathBuf> = BTreeMap::new();
    let mut held = Vec::new();
    for (alias, a) in &artifacts {
        let dir =
            crate::artifact::fetch_artifact(ctx, a, "plumb-generator-", Duration::from_secs(60))
                .await
                .map_err(|f| {
                    Failure::new(
                        f.class,
                        reason::SOURCE_FETCH_FAILED,
                        format!("source '{alias}': {}", f.message),
                    )
                })?;
        dirs.insert(alias.clone(), dir.path().to_path_buf());
        held.push(dir);
    }
    let inputs = build::Inputs {
        storage: ctx.storage.clone(),
        namespace: ns.clone(),
        dirs,
        sources: artifacts,
        retention: (
            ctx.config.artifact_retention_records,
            ctx.config.artifact_retention_ttl,
        ),
        built: ctx.memo::<build::BuiltOutputs>(),
    };
    let outputs = pattern::expand(
        obj.spec.path_pattern.as_deref(),
        &obj.spec.artifacts,
        &inputs.dirs,
    )?;
    let (built, outputs) = tokio::task::spawn_blocking(move || {
        build::build_all(&inputs, &outputs).map(|built| (built, outputs))
    })
    .await
    .map_err(|e| Failure::new(Class::Transient, reason::BUILD_FAILED, e.to_string()))??;
    drop(held);
    let mut changed = Vec::new();
    let mut inventory = Vec::new();
    let mut existing = output::existing(obj, ctx).await?;
    for (out, artifact) in outputs.iter().zip(&built) {
        let found = existing.remove(&out.name);
        if output::publish(obj, ctx, &out.name, artifact, found).await? {
            changed.push(out.name.clone());
        }
        inventory.push(output::entry(&ns, &out.name, artifact));
    }
    output::remove_stale(obj, ctx, &status.inventory, &build::names(&outputs)).await?;
    status.inventory = inventory;
    Ok(changed)
}
