//! The Kustomization reconciler: fetch the source artifact, render it in-process, apply
//! it with server-side apply in stages, prune what Git no longer holds, check health
//! without blocking a worker, and write Flux's status (inventory, revisions, conditions).
//!
//! Safety: nothing is pruned unless the fetch, render, substitution and apply of the new
//! revision all succeeded, and a prune that would delete more than the configured share
//! of the inventory is refused unless the Kustomization allows it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use plumb_api::conditions::{self, Status as CondStatus};
use plumb_api::consts::{FINALIZER, annotation, condition, label, reason};
use plumb_api::inventory::{ObjMetadata, ResourceInventory, ResourceRef};
use plumb_api::kustomization::{DeletionPolicy, SourceKind, ValuesKind};
use plumb_api::{GitRepository, Kustomization, KustomizationStatus};
use plumb_ssa::kstatus::Status as Health;
use plumb_ssa::{Applier, ApplyItem, ApplyOptions, ObjectRef, PruneOptions, SsaMode};
use serde_json::Value;

use crate::context::Context;
use crate::outcome::{Class, Failure, jitter};
use crate::substitute::substitute;
use crate::{Error, Result};

/// Annotation that lets one pass prune more than the prune budget allows.
pub const PRUNE_BUDGET_ANNOTATION: &str = "plumb.dev/prune-budget";

/// Runs the Kustomization controller until shutdown.
pub async fn run(
    ctx: Arc<Context>,
    api: Api<Kustomization>,
    sources: Api<GitRepository>,
    watch: watcher::Config,
    concurrency: u16,
) {
    let mut controller = crate::shared::desired_state_controller(api, watch.clone());
    // Objects of an inventory that drift (changed by another writer, or deleted) queue
    // their Kustomization at once (see `drift`).
    if let Some(triggers) = ctx.drift.take_triggers() {
        controller = controller.reconcile_on(triggers);
    }
    let store = controller.store();
    // A GitRepository change (a new artifact) reconciles the Kustomizations using it,
    // as Flux's source watch does, instead of waiting for their interval. The watch feeds
    // a store the reconciler reads its source from (no request per reconcile); the store
    // is updated before the trigger fires, so a reconcile never sees an older artifact.
    let (reader, writer) = kube::runtime::reflector::store::<GitRepository>();
    if let Ok(mut s) = ctx.sources.write() {
        *s = Some(reader);
    }
    let source_triggers = kube::runtime::reflector(writer, watcher(sources, watch))
        .default_backoff()
        .applied_objects()
        .filter_map(|r| futures::future::ready(r.ok()))
        .flat_map(move |src: GitRepository| {
            let src_ns = src.namespace();
            let src_name = src.name_any();
            futures::stream::iter(
                store
                    .state()
                    .into_iter()
                    .filter(|ks| {
                        let r = &ks.spec.source_ref;
                        r.kind == SourceKind::GitRepository
                            && r.name == src_name
                            && r.namespace.clone().or_else(|| ks.namespace()) == src_ns
                    })
                    .map(|ks| kube::runtime::reflector::ObjectRef::from_obj(&*ks))
                    .collect::<Vec<_>>(),
            )
        });
    controller
        .reconcile_on(source_triggers)
        .with_config(kube::runtime::controller::Config::default().concurrency(concurrency))
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx)
        .for_each(|res| async move {
            if let Err(e) = res {
                tracing::debug!(error = %e, "kustomization reconcile error");
            }
        })
        .await;
}

fn error_policy(_obj: Arc<Kustomization>, err: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(error = %err, "kustomization reconcile failed");
    Action::requeue(Duration::from_secs(10))
}

/// One reconcile of one Kustomization (finalizer-aware).
pub async fn reconcile(obj: Arc<Kustomization>, ctx: Arc<Context>) -> Result<Action> {
    let ns = obj.namespace().unwrap_or_default();
    let _timer = ctx
        .metrics
        .reconcile_timer("Kustomization", &ns, &obj.name_any());
    let api: Api<Kustomization> = Api::namespaced(ctx.client.clone(), &ns);
    finalizer(&api, FINALIZER, obj, |ev| async {
        match ev {
            Finalizer::Apply(o) => apply(o, &ctx, &api).await,
            Finalizer::Cleanup(o) => cleanup(o, &ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(e.to_string()))
}

/// On deletion with `prune: true`, delete what the inventory holds (per deletionPolicy).
async fn cleanup(obj: Arc<Kustomization>, ctx: &Context) -> Result<Action> {
    ctx.metrics.forget(
        "Kustomization",
        &obj.namespace().unwrap_or_default(),
        &obj.name_any(),
    );
    let policy = obj.deletion_policy();
    let prune = match policy {
        DeletionPolicy::MirrorPrune => obj.spec.prune,
        DeletionPolicy::Delete | DeletionPolicy::WaitForTermination => true,
        DeletionPolicy::Orphan => false,
    };
    ctx.drift.untrack(owner_key(&obj));
    if !prune || obj.spec.suspend {
        return Ok(Action::await_change());
    }
    let refs = inventory_refs(obj.status.as_ref().and_then(|s| s.inventory.as_ref()));
    let applier = applier_for(&obj, ctx)
        .await
        .map_err(|f| Error::Kube(f.message))?;
    let opts = prune_options(&obj, policy == DeletionPolicy::WaitForTermination);
    let pruned = applier
        .prune(&refs, &opts)
        .await
        .map_err(|e| Error::Kube(e.to_string()))?;
    ctx.metrics.applied(
        "Kustomization",
        "deleted",
        pruned.count(plumb_ssa::Action::Deleted),
    );
    Ok(Action::await_change())
}

fn owner_key(obj: &Kustomization) -> (&str, &str) {
    (
        obj.meta().namespace.as_deref().unwrap_or_default(),
        obj.meta().name.as_deref().unwrap_or_default(),
    )
}

fn owner_labels(obj: &Kustomization) -> BTreeMap<String, String> {
    BTreeMap::from([
        (label::KUSTOMIZE_NAME.to_string(), obj.name_any()),
        (
            label::KUSTOMIZE_NAMESPACE.to_string(),
            obj.namespace().unwrap_or_default(),
        ),
    ])
}

fn prune_options(obj: &Kustomization, wait: bool) -> PruneOptions {
    PruneOptions {
        owner_labels: owner_labels(obj),
        skip_annotations: vec![(
            annotation::KUSTOMIZE_PRUNE.to_string(),
            annotation::DISABLED.to_string(),
        )],
        propagation: None,
        wait: wait.then(|| obj.timeout().unwrap_or(Duration::from_secs(300))),
    }
}

fn inventory_refs(inv: Option<&ResourceInventory>) -> Vec<ObjectRef> {
    inv.map(|i| i.entries.as_slice())
        .unwrap_or_default()
        .iter()
        .filter_map(|e| {
            let m = e.obj_metadata().ok()?;
            Some(ObjectRef {
                group: m.group,
                kind: m.kind,
                namespace: m.namespace,
                name: m.name,
                version: e.v.clone(),
            })
        })
        .collect()
}

/// Health-check bookkeeping: when the current revision was applied, so a health check
/// can time out without a worker ever sleeping on it.
#[derive(Default)]
pub struct HealthClock {
    started: Mutex<HashMap<(String, String), (String, Instant)>>,
}

impl HealthClock {
    fn since(&self, key: &(String, String), revision: &str) -> Duration {
        let Ok(mut m) = self.started.lock() else {
            return Duration::ZERO;
        };
        let entry = m
            .entry(key.clone())
            .or_insert_with(|| (revision.to_string(), Instant::now()));
        if entry.0 != revision {
            *entry = (revision.to_string(), Instant::now());
        }
        entry.1.elapsed()
    }
}

async fn apply(obj: Arc<Kustomization>, ctx: &Context, api: &Api<Kustomization>) -> Result<Action> {
    if obj.spec.suspend {
        observe(ctx, &obj, &obj.status.clone().unwrap_or_default());
        ctx.drift.untrack(owner_key(&obj));
        return Ok(Action::await_change());
    }
    let interval = obj.interval().unwrap_or(Duration::from_secs(600));
    let retry = obj.retry_interval().unwrap_or(interval);
    let generation = obj.meta().generation;
    let mut status = obj.status.clone().unwrap_or_default();
    let before = status.clone();
    let obj_ref = obj.object_ref(&());
    let requested = obj
        .annotations()
        .get(annotation::RECONCILE_REQUESTED_AT)
        .cloned();

    let action = match run_once(&obj, ctx, &mut status).await {
        Ok(Outcome::Applied {
            revision,
            changes,
            healthy,
        }) => {
            let mut msg = format!("Applied revision: {revision}");
            let unsupported = obj.unsupported_fields();
            if !unsupported.is_empty() {
                msg.push_str("; ");
                msg.push_str(&plumb_api::unsupported::message(&unsupported));
            }
            if healthy {
                if obj.spec.wait || !obj.spec.health_checks.is_empty() {
                    conditions::set(
                        &mut status.conditions,
                        condition::HEALTHY,
                        CondStatus::True,
                        reason::SUCCEEDED,
                        "Health check passed",
                        generation,
                    );
                }
                conditions::mark_ready(
                    &mut status.conditions,
                    reason::RECONCILIATION_SUCCEEDED,
                    &msg,
                    generation,
                );
                status.last_applied_revision = Some(revision.clone());
            }
            if !changes.is_empty() {
                ctx.event(&obj_ref, false, reason::RECONCILIATION_SUCCEEDED, &changes)
                    .await;
            }
            if healthy {
                Action::requeue(jitter(interval, ctx.config.jitter_percent))
            } else {
                // Health checks are re-read soon instead of blocking this worker.
                Action::requeue(Duration::from_secs(2))
            }
        }
        Err(f) => {
            if f.reason == reason::DEPENDENCY_NOT_READY || f.class == Class::Waiting {
                conditions::mark_reconciling(
                    &mut status.conditions,
                    f.reason,
                    &f.message,
                    generation,
                );
                conditions::set(
                    &mut status.conditions,
                    condition::READY,
                    CondStatus::False,
                    f.reason,
                    &f.message,
                    generation,
                );
            } else if f.class == Class::Stalled {
                conditions::mark_stalled(&mut status.conditions, f.reason, &f.message, generation);
            } else {
                conditions::mark_failed(&mut status.conditions, f.reason, &f.message, generation);
            }
            let previous = before
                .conditions
                .iter()
                .find(|c| c.type_ == condition::READY);
            if previous.is_none_or(|c| c.message != f.message) {
                ctx.event(&obj_ref, true, f.reason, &f.message).await;
            }
            let wait = if f.reason == reason::DEPENDENCY_NOT_READY || f.class == Class::Waiting {
                ctx.config.requeue_dependency
            } else {
                f.requeue_after(retry, interval)
            };
            Action::requeue(wait)
        }
    };
    status.observed_generation = generation;
    if requested.is_some() {
        status.reconcile_request.last_handled_reconcile_at = requested;
    }
    if status != before {
        let patch = crate::status_patch(&before, &status);
        api.patch_status(
            &obj.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .map_err(|e| {
            Error::Kube(format!(
                "writing status of Kustomization {}: {e}",
                obj.name_any()
            ))
        })?;
    }
    observe(ctx, &obj, &status);
    Ok(action)
}

/// Records the outcome in the metrics.
fn observe(ctx: &Context, obj: &Kustomization, status: &KustomizationStatus) {
    ctx.metrics.observe(
        "Kustomization",
        &obj.namespace().unwrap_or_default(),
        &obj.name_any(),
        crate::metrics::Observed {
            conditions: &status.conditions,
            suspended: obj.spec.suspend,
            revision: status.last_applied_revision.as_deref().unwrap_or_default(),
        },
    );
}

enum Outcome {
    Applied {
        revision: String,
        changes: String,
        healthy: bool,
    },
}

/// Where [`render_objects`] reads the manifests from.
#[derive(Debug, Clone, Copy)]
pub enum RenderSource<'a> {
    /// The source's artifact (fetched, digest-checked, extracted); `spec.path` is applied.
    Artifact(&'a plumb_api::meta::Artifact),
    /// A local directory holding the manifests to build (`spec.path` is not applied), as
    /// `flux build ks --path` does.
    Local(&'a Path),
}

/// Renders what `obj` applies: build with the spec-level overlay, postBuild substitution,
/// ownership labels. The reconciler and `plumb build/diff ks` share this path.
pub async fn render_objects(
    obj: &Kustomization,
    ctx: &Context,
    source: RenderSource<'_>,
) -> std::result::Result<Vec<Value>, Failure> {
    let mut objects = match source {
        RenderSource::Artifact(artifact) => {
            let work = fetch_artifact(
                ctx,
                artifact,
                "plumb-ks-",
                obj.timeout().unwrap_or(Duration::from_secs(300)),
            )
            .await?;
            let dir = spec_dir(obj, work.path())?;
            render(obj, dir, work.path().to_path_buf()).await?
        }
        RenderSource::Local(dir) => {
            if !dir.is_dir() {
                return Err(Failure::new(
                    Class::Stalled,
                    reason::ARTIFACT_FAILED,
                    format!("kustomization path not found: {}", dir.display()),
                ));
            }
            render(obj, dir.to_path_buf(), PathBuf::from("/")).await?
        }
    };
    if let Some(vars) = substitution_vars(obj, ctx).await? {
        objects = substitute_objects(objects, &vars, ctx.config.strict_substitution)?;
    }
    let labels = owner_labels(obj);
    for o in &mut objects {
        stamp_labels(o, &labels);
    }
    Ok(objects)
}

async fn run_once(
    obj: &Kustomization,
    ctx: &Context,
    status: &mut KustomizationStatus,
) -> std::result::Result<Outcome, Failure> {
    let ns = obj.namespace().unwrap_or_default();
    check_dependencies(obj, ctx).await?;
    let artifact = source_artifact(obj, ctx).await?;
    let revision = artifact.revision.clone();
    status.last_attempted_revision = Some(revision.clone());

    // Fetch and render. Failures here return before anything is applied or pruned.
    let objects = render_objects(obj, ctx, RenderSource::Artifact(&artifact)).await?;
    let mut items = Vec::with_capacity(objects.len());
    let mut new_inventory = Vec::with_capacity(objects.len());
    let mut applied_refs = Vec::with_capacity(objects.len());
    for o in objects {
        let r = ObjectRef::from_object(&o)
            .map_err(|e| Failure::new(Class::Stalled, reason::BUILD_FAILED, e.to_string()))?;
        new_inventory.push(ResourceRef::new(
            &ObjMetadata::new(&r.namespace, &r.name, &r.group, &r.kind),
            r.version.clone(),
        ));
        applied_refs.push(r);
        items.push(apply_item(o, obj.spec.force));
    }

    let applier = applier_for(obj, ctx).await?;
    let opts = ApplyOptions {
        force: obj.spec.force,
        cleanup_managers: plumb_api::consts::field_manager::REMOVED_ON_APPLY
            .iter()
            .map(|(m, op)| ((*m).to_string(), op.as_str().to_string()))
            .collect(),
        wait_timeout: obj.timeout().unwrap_or(Duration::from_secs(300)),
    };
    let applied = applier.apply_all(items, &opts).await.map_err(|e| {
        let class = if e.is_transient() {
            Class::Transient
        } else {
            Class::Stalled
        };
        Failure::new(class, reason::RECONCILIATION_FAILED, format!("{e}"))
    })?;
    let mut changes = applied.summary();
    for (action, name) in [
        (plumb_ssa::Action::Created, "created"),
        (plumb_ssa::Action::Configured, "configured"),
    ] {
        ctx.metrics
            .applied("Kustomization", name, applied.count(action));
    }
    ctx.drift
        .track(owner_key(obj), &applied_refs, &applier)
        .await;

    // Prune what the previous inventory had and this revision does not.
    let old = inventory_refs(status.inventory.as_ref());
    let keep: BTreeSet<_> = new_inventory.iter().map(|e| e.id.clone()).collect();
    let stale: Vec<ObjectRef> = old
        .into_iter()
        .filter(|r| {
            !keep.contains(&ObjMetadata::new(&r.namespace, &r.name, &r.group, &r.kind).to_string())
        })
        .collect();
    let old_len = status.inventory.as_ref().map_or(0, |i| i.entries.len());
    if obj.spec.prune && !stale.is_empty() {
        let allowed = obj
            .annotations()
            .get(PRUNE_BUDGET_ANNOTATION)
            .map(String::as_str)
            == Some("disabled");
        let share = stale.len() as f64 / old_len.max(1) as f64;
        if !allowed && old_len >= 4 && share > ctx.config.prune_budget {
            // Keep the old inventory: the objects stay tracked until a human decides.
            return Err(Failure::new(
                Class::Stalled,
                reason::PRUNE_FAILED,
                format!(
                    "refusing to prune {} of {old_len} objects ({:.0}% > budget {:.0}%); set annotation {PRUNE_BUDGET_ANNOTATION}: disabled to allow it",
                    stale.len(),
                    share * 100.0,
                    ctx.config.prune_budget * 100.0
                ),
            ));
        }
        let pruned = applier
            .prune(&stale, &prune_options(obj, false))
            .await
            .map_err(|e| Failure::new(Class::Transient, reason::PRUNE_FAILED, e.to_string()))?;
        ctx.metrics.applied(
            "Kustomization",
            "deleted",
            pruned.count(plumb_ssa::Action::Deleted),
        );
        let summary = pruned.summary();
        if !summary.is_empty() {
            if !changes.is_empty() {
                changes.push('\n');
            }
            changes.push_str(&summary);
        }
    }
    status.inventory = Some(ResourceInventory {
        entries: new_inventory.clone(),
    });

    // Health: read once; if not yet healthy, come back soon (until the timeout).
    let mut healthy = true;
    let checks: Vec<ObjectRef> = if obj.spec.wait {
        inventory_refs(status.inventory.as_ref())
    } else {
        obj.spec
            .health_checks
            .iter()
            .map(|h| {
                let (group, version) = h
                    .api_version
                    .as_deref()
                    .map(plumb_ssa::split_api_version)
                    .unwrap_or(("", "v1"));
                ObjectRef {
                    group: group.to_string(),
                    kind: h.kind.clone(),
                    namespace: h.namespace.clone().unwrap_or_else(|| ns.clone()),
                    name: h.name.clone(),
                    version: version.to_string(),
                }
            })
            .collect()
    };
    if !checks.is_empty() {
        let report = applier.health(&checks).await.map_err(|e| {
            Failure::new(Class::Transient, reason::HEALTH_CHECK_FAILED, e.to_string())
        })?;
        let failed: Vec<String> = report
            .iter()
            .filter(|(_, h)| h.status == Health::Failed)
            .map(|(r, h)| format!("{r}: {}", h.message))
            .collect();
        let pending: Vec<String> = report
            .iter()
            .filter(|(_, h)| h.status != Health::Current && h.status != Health::Failed)
            .map(|(r, h)| format!("{r} ({})", h.status))
            .collect();
        let key = (ns.clone(), obj.name_any());
        let elapsed = ctx.health_clock.since(&key, &revision);
        let timeout = obj.timeout().unwrap_or(interval_of(obj));
        let generation = obj.meta().generation;
        if !failed.is_empty() || (!pending.is_empty() && elapsed > timeout) {
            let what = if failed.is_empty() { pending } else { failed };
            let msg = format!("health check failed after {elapsed:?}: {}", what.join(", "));
            conditions::set(
                &mut status.conditions,
                condition::HEALTHY,
                CondStatus::False,
                reason::HEALTH_CHECK_FAILED,
                &msg,
                generation,
            );
            return Err(Failure::new(
                Class::Transient,
                reason::HEALTH_CHECK_FAILED,
                msg,
            ));
        }
        if !pending.is_empty() {
            healthy = false;
            let msg = format!("Health check in progress: {}", pending.join(", "));
            conditions::set(
                &mut status.conditions,
                condition::HEALTHY,
                CondStatus::Unknown,
                reason::PROGRESSING,
                &msg,
                generation,
            );
            conditions::mark_reconciling(
                &mut status.conditions,
                reason::PROGRESSING,
                &msg,
                generation,
            );
        }
    }
    Ok(Outcome::Applied {
        revision,
        changes,
        healthy,
    })
}

fn interval_of(obj: &Kustomization) -> Duration {
    obj.interval().unwrap_or(Duration::from_secs(600))
}

/// How `object` is applied: Flux's ssa, reconcile and force annotations, `spec.force`.
pub fn apply_item(object: Value, force_all: bool) -> ApplyItem {
    let ann = |k: &str| {
        object
            .get("metadata")
            .and_then(|m| m.get("annotations"))
            .and_then(|a| a.get(k))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let mode = if ann(annotation::KUSTOMIZE_RECONCILE).as_deref() == Some(annotation::DISABLED) {
        SsaMode::Ignore
    } else {
        match ann(annotation::KUSTOMIZE_SSA) {
            Some(v) if v.eq_ignore_ascii_case(annotation::SSA_MERGE) => SsaMode::Merge,
            Some(v) if v.eq_ignore_ascii_case(annotation::SSA_IF_NOT_PRESENT) => {
                SsaMode::IfNotPresent
            }
            Some(v) if v.eq_ignore_ascii_case(annotation::SSA_IGNORE) => SsaMode::Ignore,
            _ => SsaMode::Override,
        }
    };
    let force =
        force_all || ann(annotation::KUSTOMIZE_FORCE).as_deref() == Some(annotation::ENABLED);
    ApplyItem {
        object,
        mode,
        force,
    }
}

fn stamp_labels(o: &mut Value, labels: &BTreeMap<String, String>) {
    let Some(meta) = o.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    let l = meta
        .entry("labels")
        .or_insert_with(|| Value::Object(Default::default()));
    if let Some(l) = l.as_object_mut() {
        for (k, v) in labels {
            l.insert(k.clone(), Value::String(v.clone()));
        }
    }
}

/// The applier to use: the shared one, one impersonating `spec.serviceAccountName`, or one
/// for the remote cluster of `spec.kubeConfig` (impersonating there; see [`crate::remote`]).
async fn applier_for(obj: &Kustomization, ctx: &Context) -> std::result::Result<Applier, Failure> {
    let sa = obj
        .spec
        .service_account_name
        .clone()
        .or_else(|| ctx.config.default_service_account.clone());
    let ns = obj.namespace().unwrap_or_default();
    if let Some(kc) = &obj.spec.kube_config {
        return ctx
            .remote
            .applier(
                &ctx.client,
                &ns,
                kc,
                sa.as_deref(),
                plumb_api::consts::field_manager::KUSTOMIZE_CONTROLLER,
                ctx.config.apply_concurrency,
            )
            .await;
    }
    let Some(sa) = sa else {
        return Ok(ctx.applier.clone());
    };
    ctx.impersonating_applier(&ns, &sa).map_err(|e| {
        Failure::new(
            Class::Stalled,
            reason::RECONCILIATION_FAILED,
            format!("impersonating service account '{ns}/{sa}': {e}"),
        )
    })
}

async fn check_dependencies(
    obj: &Kustomization,
    ctx: &Context,
) -> std::result::Result<(), Failure> {
    let ns = obj.namespace().unwrap_or_default();
    for dep in &obj.spec.depends_on {
        let dns = dep.namespace.clone().unwrap_or_else(|| ns.clone());
        if let Some(other) = dep.other_kind() {
            check_other_kind(ctx, other, &dns, &dep.name).await?;
            continue;
        }
        let api: Api<Kustomization> = Api::namespaced(ctx.client.clone(), &dns);
        let d = api.get_opt(&dep.name).await.map_err(|e| {
            Failure::new(
                Class::Transient,
                reason::DEPENDENCY_NOT_READY,
                format!("getting dependency '{dns}/{}': {e}", dep.name),
            )
        })?;
        let ready = d.as_ref().is_some_and(|d| {
            let st = d.status.as_ref();
            conditions::is_ready_for_generation(
                st.map(|s| s.conditions.as_slice()).unwrap_or_default(),
                d.meta().generation,
            ) && st.and_then(|s| s.observed_generation) == d.meta().generation
        });
        if !ready {
            return Err(Failure::new(
                Class::Waiting,
                reason::DEPENDENCY_NOT_READY,
                format!("dependency '{dns}/{}' is not ready", dep.name),
            ));
        }
    }
    Ok(())
}

/// A dependency on another kind (plumb's extension of `dependsOn`): read generically,
/// ready when its `Ready` condition is `True` for its current generation.
pub(crate) async fn check_other_kind(
    ctx: &Context,
    other: std::result::Result<(String, String), String>,
    ns: &str,
    name: &str,
) -> std::result::Result<(), Failure> {
    let (api_version, kind) = other.map_err(|kind| {
        Failure::new(
            Class::Stalled,
            reason::DEPENDENCY_NOT_READY,
            format!("dependency '{kind}/{ns}/{name}': apiVersion is required for kind {kind}"),
        )
    })?;
    let what = format!("{kind}/{ns}/{name}");
    let (group, version) = plumb_ssa::split_api_version(&api_version);
    let gvk = kube::api::GroupVersionKind::gvk(group, version, &kind);
    let (ar, caps) = kube::discovery::pinned_kind(&ctx.client, &gvk)
        .await
        .map_err(|e| {
            Failure::new(
                Class::Waiting,
                reason::DEPENDENCY_NOT_READY,
                format!("dependency '{what}': kind {api_version} {kind} is not served: {e}"),
            )
        })?;
    let api: Api<kube::api::DynamicObject> = if caps.scope == kube::discovery::Scope::Namespaced {
        Api::namespaced_with(ctx.client.clone(), ns, &ar)
    } else {
        Api::all_with(ctx.client.clone(), &ar)
    };
    let d = api.get_opt(name).await.map_err(|e| {
        Failure::new(
            Class::Transient,
            reason::DEPENDENCY_NOT_READY,
            format!("getting dependency '{what}': {e}"),
        )
    })?;
    if d.as_ref().is_some_and(dynamic_ready) {
        Ok(())
    } else {
        Err(Failure::new(
            Class::Waiting,
            reason::DEPENDENCY_NOT_READY,
            format!("dependency '{what}' is not ready"),
        ))
    }
}

/// `Ready=True`, and computed for the current generation where the object says which
/// generation it observed (status.observedGeneration, or the condition's own).
fn dynamic_ready(o: &kube::api::DynamicObject) -> bool {
    let generation = o.metadata.generation;
    let status = o.data.get("status");
    let Some(ready) = status
        .and_then(|s| s.get("conditions"))
        .and_then(Value::as_array)
        .and_then(|c| c.iter().find(|c| c["type"] == condition::READY))
    else {
        return false;
    };
    let observed = status
        .and_then(|s| s.get("observedGeneration"))
        .or_else(|| ready.get("observedGeneration"))
        .and_then(Value::as_i64);
    ready["status"] == "True"
        && (observed.is_none() || generation.is_none() || observed == generation)
}

/// The current artifact of `obj`'s source (its GitRepository).
pub async fn source_artifact(
    obj: &Kustomization,
    ctx: &Context,
) -> std::result::Result<plumb_api::meta::Artifact, Failure> {
    let src = &obj.spec.source_ref;
    let ns = src
        .namespace
        .clone()
        .unwrap_or_else(|| obj.namespace().unwrap_or_default());
    if ctx.config.no_cross_namespace_refs && Some(&ns) != obj.namespace().as_ref() {
        return Err(Failure::new(
            Class::Stalled,
            reason::ACCESS_DENIED,
            format!(
                "cannot access {}/{ns}/{}: cross-namespace references are disabled",
                src.kind, src.name
            ),
        ));
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
    repo.status.and_then(|s| s.artifact).ok_or_else(|| {
        Failure::new(
            Class::Waiting,
            reason::ARTIFACT_FAILED,
            format!(
                "Source 'GitRepository/{ns}/{}' is not ready, artifact not found",
                src.name
            ),
        )
    })
}

/// The GitRepository `ns/name`: from the controller's watch store when it holds it,
/// else from the server (not listed yet, or outside the watched scope).
pub(crate) async fn git_repository(
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

/// Fetches and extracts `artifact` into a new temporary directory named
/// `prefix...`, removed when the returned handle drops.
pub(crate) async fn fetch_artifact(
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

/// `spec.path` inside the extracted source `root`, refused when it leaves the source.
fn spec_dir(obj: &Kustomization, root: &Path) -> std::result::Result<PathBuf, Failure> {
    let path = obj.spec.path.clone().unwrap_or_else(|| "./".into());
    let rel = PathBuf::from(path.trim_start_matches('/'));
    if !rel
        .components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(Failure::new(
            Class::Stalled,
            reason::ARTIFACT_FAILED,
            format!("invalid path '{path}': must stay inside the source"),
        ));
    }
    let dir = root.join(&rel);
    if !dir.is_dir() {
        return Err(Failure::new(
            Class::Stalled,
            reason::ARTIFACT_FAILED,
            format!("kustomization path not found: {path}"),
        ));
    }
    Ok(dir)
}

async fn render(
    obj: &Kustomization,
    dir: PathBuf,
    root: PathBuf,
) -> std::result::Result<Vec<Value>, Failure> {
    let overlay = overlay_of(obj);
    tokio::task::spawn_blocking(move || {
        let opts = plumb_kustomize::BuildOptions {
            generate_missing_kustomization: true,
            ..Default::default()
        };
        plumb_kustomize::build_with_overlay(&dir, &root, &opts, &overlay)
    })
    .await
    .map_err(|e| Failure::new(Class::Transient, reason::BUILD_FAILED, e.to_string()))?
    .map_err(|e| Failure::new(Class::Stalled, reason::BUILD_FAILED, e.to_string()))
}

fn overlay_of(obj: &Kustomization) -> plumb_kustomize::Overlay {
    let s = &obj.spec;
    let to_map = |m: &BTreeMap<String, String>| {
        m.iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect::<serde_json::Map<_, _>>()
    };
    plumb_kustomize::Overlay {
        target_namespace: s.target_namespace.clone(),
        name_prefix: s.name_prefix.clone(),
        name_suffix: s.name_suffix.clone(),
        common_labels: s
            .common_metadata
            .as_ref()
            .map(|c| to_map(&c.labels))
            .unwrap_or_default(),
        common_annotations: s
            .common_metadata
            .as_ref()
            .map(|c| to_map(&c.annotations))
            .unwrap_or_default(),
        patches: overlay_patches(&s.patches),
        images: overlay_images(&s.images),
        components: s.components.clone(),
    }
}

/// Flux patches as overlay patches (Kustomization `patches`, HelmRelease post-renderers).
pub(crate) fn overlay_patches(
    patches: &[plumb_api::kustomize::Patch],
) -> Vec<plumb_kustomize::OverlayPatch> {
    patches
        .iter()
        .map(|p| plumb_kustomize::OverlayPatch {
            patch: p.patch.clone(),
            target: p.target.as_ref().map(|t| plumb_kustomize::Selector {
                group: t.group.clone(),
                version: t.version.clone(),
                kind: t.kind.clone(),
                namespace: t.namespace.clone(),
                name: t.name.clone(),
                annotation_selector: t.annotation_selector.clone(),
                label_selector: t.label_selector.clone(),
            }),
        })
        .collect()
}

/// Flux image overrides as overlay images.
pub(crate) fn overlay_images(
    images: &[plumb_api::kustomize::Image],
) -> Vec<plumb_kustomize::ImageEntry> {
    images
        .iter()
        .map(|i| plumb_kustomize::ImageEntry {
            name: i.name.clone(),
            new_name: i.new_name.clone(),
            new_tag: i.new_tag.clone().map(Value::String),
            digest: i.digest.clone(),
            ..Default::default()
        })
        .collect()
}

/// The postBuild variables (inline, then ConfigMaps/Secrets in order; later wins), plus
/// the controller's cluster facts. `None` when the Kustomization has no postBuild.
async fn substitution_vars(
    obj: &Kustomization,
    ctx: &Context,
) -> std::result::Result<Option<BTreeMap<String, String>>, Failure> {
    let Some(pb) = &obj.spec.post_build else {
        return Ok(None);
    };
    let ns = obj.namespace().unwrap_or_default();
    let mut vars = (*ctx.config.cluster_vars.snapshot()).clone();
    vars.extend(pb.substitute.iter().map(|(k, v)| (k.clone(), v.clone())));
    for from in &pb.substitute_from {
        let found: Option<BTreeMap<String, String>> = match from.kind {
            ValuesKind::ConfigMap => {
                let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &ns);
                api.get_opt(&from.name)
                    .await
                    .map_err(|e| {
                        Failure::new(
                            Class::Transient,
                            reason::BUILD_FAILED,
                            format!("getting ConfigMap '{ns}/{}': {e}", from.name),
                        )
                    })?
                    .map(|c| c.data.unwrap_or_default())
            }
            ValuesKind::Secret => {
                let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
                api.get_opt(&from.name)
                    .await
                    .map_err(|e| {
                        Failure::new(
                            Class::Transient,
                            reason::BUILD_FAILED,
                            format!("getting Secret '{ns}/{}': {e}", from.name),
                        )
                    })?
                    .map(|s| {
                        s.data
                            .unwrap_or_default()
                            .into_iter()
                            .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
                            .collect()
                    })
            }
        };
        match found {
            Some(m) => vars.extend(m),
            None if from.optional => {}
            None => {
                return Err(Failure::new(
                    Class::Waiting,
                    reason::BUILD_FAILED,
                    format!(
                        "substitute from '{}/{ns}/{}' failed: not found",
                        from.kind, from.name
                    ),
                ));
            }
        }
    }
    Ok(Some(vars))
}

fn substitute_objects(
    objects: Vec<Value>,
    vars: &BTreeMap<String, String>,
    strict: bool,
) -> std::result::Result<Vec<Value>, Failure> {
    let mut out = Vec::with_capacity(objects.len());
    for o in objects {
        let disabled = o
            .get("metadata")
            .and_then(|m| m.get("annotations"))
            .and_then(|a| a.get(annotation::KUSTOMIZE_SUBSTITUTE))
            .and_then(Value::as_str)
            == Some(annotation::DISABLED);
        if disabled {
            out.push(o);
            continue;
        }
        let id = ObjectRef::from_object(&o)
            .map(|r| r.to_string())
            .unwrap_or_default();
        let text = plumb_kustomize::to_yaml(&o);
        let replaced = substitute(&text, vars, strict).map_err(|m| {
            Failure::new(
                Class::Stalled,
                reason::BUILD_FAILED,
                format!("{id}: variable '{}' is not set (strict substitution)", m.0),
            )
        })?;
        if replaced == text {
            out.push(o);
            continue;
        }
        let mut parsed = plumb_kustomize::parse_objects(&replaced, &id).map_err(|e| {
            Failure::new(
                Class::Stalled,
                reason::BUILD_FAILED,
                format!("post-build substitution of {id}: {e}"),
            )
        })?;
        if parsed.len() != 1 {
            return Err(Failure::new(
                Class::Stalled,
                reason::BUILD_FAILED,
                format!("post-build substitution of {id} did not yield one object"),
            ));
        }
        out.append(&mut parsed);
    }
    Ok(out)
}
