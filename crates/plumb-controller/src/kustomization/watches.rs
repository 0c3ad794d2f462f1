//! The Kustomization controller's watches: its own objects (desired state only), drift of
//! inventory objects, and its sources (GitRepository, OCIRepository, ExternalArtifact).
//!
//! A source queues the Kustomizations using it only when its artifact changes (revision or
//! digest), as Flux's `SourceRevisionChangePredicate`: a Receiver's annotation, a condition
//! flip or any other status write of the source queues nothing. When a new artifact arrives,
//! the users whose last build read something that changed are queued first and the others
//! (which will most likely only record the revision) a moment later: kube-runtime's
//! scheduler takes queued objects in no particular order once every worker is busy, so in
//! a monorepo of 500 apps the one a commit touched would otherwise wait behind a random
//! share of 499 status patches.

use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use kube::api::Api;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};
use plumb_api::kustomization::SourceKind;
use plumb_api::meta::Artifact;
use plumb_api::{ExternalArtifact, GitRepository, Kustomization, OCIRepository};

use crate::context::Context;

/// How long the users a new artifact most likely leaves unchanged wait behind the changed
/// ones: long enough for the changed ones to be taken by free workers first.
const UNCHANGED_DELAY: Duration = Duration::from_millis(50);

/// Runs the Kustomization controller until shutdown.
pub async fn run(
    ctx: Arc<Context>,
    api: Api<Kustomization>,
    sources: Api<GitRepository>,
    watch: watcher::Config,
    concurrency: u16,
) {
    let mut controller = crate::reconciler::desired_state_controller(api, watch.clone());
    // Objects of an inventory that drift (changed by another writer, or deleted) queue
    // their Kustomization at once (see `drift`).
    if let Some(triggers) = ctx.drift.take_triggers() {
        // A drifted owner's next reconcile applies in full (never skipped as unchanged).
        let drift_ctx = ctx.clone();
        let triggers = triggers.inspect(move |r| {
            super::unchanged::mark_drift(
                &drift_ctx,
                r.namespace.as_deref().unwrap_or_default(),
                &r.name,
            );
        });
        controller = controller.reconcile_on(triggers);
    }
    let users = controller.store();
    // The GitRepository watch feeds a store the reconciler reads its source from (no
    // request per reconcile); the store is updated before the trigger fires, so a reconcile
    // never sees an older artifact.
    let (reader, writer) = kube::runtime::reflector::store::<GitRepository>();
    if let Ok(mut s) = ctx.sources.write() {
        *s = Some(reader);
    }
    let ns = sources.namespace().map(str::to_string);
    // Sources are watched without the label selector: as in Flux's sharding, a sharded
    // Kustomization may use a source of another shard (or of none), and its new artifacts
    // must still reconcile it.
    let source_watch = watcher::Config {
        label_selector: None,
        ..watch
    };
    let git = kube::runtime::reflector(writer, watcher(sources, source_watch.clone()));
    let oci: Api<OCIRepository> = match ns.as_deref() {
        Some(ns) => Api::namespaced(ctx.client.clone(), ns),
        None => Api::all(ctx.client.clone()),
    };
    let ea = crate::artifact::external_api(&ctx, ns.as_deref());
    let controller = controller
        .reconcile_on(queue_users(
            &ctx,
            &users,
            SourceKind::GitRepository,
            git,
            |s: &GitRepository| s.status.as_ref().and_then(|s| s.artifact.as_ref()),
        ))
        .reconcile_on(queue_users(
            &ctx,
            &users,
            SourceKind::OCIRepository,
            watcher(oci, source_watch.clone()),
            |s: &OCIRepository| s.status.as_ref().and_then(|s| s.artifact.as_ref()),
        ))
        .reconcile_on(queue_users(
            &ctx,
            &users,
            SourceKind::ExternalArtifact,
            watcher(ea, source_watch),
            |s: &ExternalArtifact| s.status.as_ref().and_then(|s| s.artifact.as_ref()),
        ));
    crate::reconciler::run(controller, ctx, concurrency).await;
}

/// The Kustomizations to queue for each new artifact of the `kind` sources in `events`:
/// those whose content changed first, the others [`UNCHANGED_DELAY`] later.
fn queue_users<S>(
    ctx: &Arc<Context>,
    users: &Store<Kustomization>,
    kind: SourceKind,
    events: impl Stream<Item = Result<watcher::Event<S>, watcher::Error>> + Send + 'static,
    artifact: fn(&S) -> Option<&Artifact>,
) -> impl Stream<Item = ObjectRef<Kustomization>> + Send + 'static
where
    S: Resource<DynamicType = ()> + Clone + std::fmt::Debug + Send + Sync + 'static,
{
    let (ctx, users) = (ctx.clone(), users.clone());
    events
        .default_backoff()
        .applied_objects()
        .predicate_filter(
            move |s: &S| Some(crate::artifact::artifact_key(artifact(s))),
            kube::runtime::PredicateConfig::default(),
        )
        .filter_map(|r| futures::future::ready(r.ok()))
        .then(move |src: S| {
            let (ctx, users) = (ctx.clone(), users.clone());
            async move {
                let using = users_of(&users, &kind, &src);
                match artifact(&src) {
                    Some(a) if !using.is_empty() => {
                        super::unchanged::split_by_change(&ctx, a, using).await
                    }
                    _ => (using, Vec::new()),
                }
            }
        })
        .flat_map(|(changed, unchanged)| {
            let refs = |v: Vec<Arc<Kustomization>>| {
                v.iter()
                    .map(|k| ObjectRef::from_obj(&**k))
                    .collect::<Vec<_>>()
            };
            let wait = !changed.is_empty() && !unchanged.is_empty();
            let (first, later) = (refs(changed), refs(unchanged));
            futures::stream::iter(first).chain(
                futures::stream::once(async move {
                    if wait {
                        tokio::time::sleep(UNCHANGED_DELAY).await;
                    }
                    futures::stream::iter(later)
                })
                .flatten(),
            )
        })
}

/// The Kustomizations in `store` whose `sourceRef` is the `kind` source `src`.
fn users_of<S: Resource<DynamicType = ()>>(
    store: &Store<Kustomization>,
    kind: &SourceKind,
    src: &S,
) -> Vec<Arc<Kustomization>> {
    let (ns, name) = (src.namespace(), src.name_any());
    store
        .state()
        .into_iter()
        .filter(|ks| {
            let r = &ks.spec.source_ref;
            r.kind == *kind
                && r.name == name
                && r.namespace.clone().or_else(|| ks.namespace()) == ns
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::artifact::artifact_key;

    fn artifact(revision: &str, digest: &str) -> Artifact {
        serde_json::from_value(serde_json::json!({
            "path": "p", "url": "u", "revision": revision, "digest": digest,
            "lastUpdateTime": "2026-01-01T00:00:00Z"
        }))
        .unwrap_or_else(|e| panic!("artifact: {e}"))
    }

    #[test]
    fn only_a_new_revision_or_digest_queues_users() {
        let a = artifact("main@sha1:1", "sha256:a");
        let mut moved = a.clone();
        moved.url = "elsewhere".into();
        assert_eq!(artifact_key(Some(&a)), artifact_key(Some(&moved)));
        assert_ne!(
            artifact_key(Some(&a)),
            artifact_key(Some(&artifact("main@sha1:2", "sha256:a")))
        );
        assert_ne!(
            artifact_key(Some(&a)),
            artifact_key(Some(&artifact("main@sha1:1", "sha256:b")))
        );
        assert_ne!(artifact_key(Some(&a)), artifact_key(None));
    }
}
