//! Perform an install or upgrade: namespace, CRDs, pre hooks, objects (server-side or
//! client-side, `apply_method.rs`), removed objects (the diff from plumb-ssa's inventory),
//! post hooks, wait for health.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use kube::ResourceExt;
use plumb_api::HelmRelease;
use plumb_api::consts::{annotation, reason};
use plumb_api::helm_release::CrdsPolicy;
use plumb_helm::storage::Release;
use plumb_ssa::kstatus::Status as Health;
use plumb_ssa::{Applier, ApplyItem, ApplyOptions, Inventory, ObjectRef, PruneOptions, SsaMode};
use serde_json::Value;

use super::actions::{absent, check_ownership, cleanup_created, takes_ownership};
use super::apply_method::{Method, apply_client_side, current_release};
use super::history::with_timeout;
use super::hooks::run_hooks;
use super::manifest::{manifest_refs, parse_manifest, yaml_object};
use super::target::Target;
use crate::context::Context;
use crate::outcome::{Class, Failure};

/// One install or upgrade attempt: who, where, with what.
pub(super) struct Attempt<'a> {
    pub(super) obj: &'a HelmRelease,
    pub(super) ctx: &'a Context,
    pub(super) applier: Applier,
    pub(super) t: Target,
    pub(super) install: bool,
}

impl Attempt<'_> {
    /// "install" or "upgrade".
    pub(super) fn verb(&self) -> &'static str {
        if self.install { "install" } else { "upgrade" }
    }

    /// The Released reason of a success or failure.
    pub(super) fn reason(&self, ok: bool) -> &'static str {
        match (self.install, ok) {
            (true, true) => reason::INSTALL_SUCCEEDED,
            (false, true) => reason::UPGRADE_SUCCEEDED,
            (true, false) => reason::INSTALL_FAILED,
            (false, false) => reason::UPGRADE_FAILED,
        }
    }
}

/// Install or upgrade: hooks, CRDs, objects, removed objects, hooks, wait.
pub(super) async fn perform(
    a: &Attempt<'_>,
    rel: &mut Release,
    rendered: &plumb_helm::Rendered,
    previous: &[Release],
) -> std::result::Result<(), String> {
    let (obj, applier, install) = (a.obj, &a.applier, a.install);
    let action_timeout = if install {
        obj.spec.install.as_ref().and_then(|i| i.timeout.as_deref())
    } else {
        obj.spec.upgrade.as_ref().and_then(|u| u.timeout.as_deref())
    };
    let t = &with_timeout(&a.t, action_timeout);
    let (hooks, crds, wait, create_ns) = action_settings(obj, install);
    if create_ns {
        let ns = serde_json::json!({
            "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": t.namespace}
        });
        applier
            .apply_all(
                vec![ApplyItem {
                    object: ns,
                    mode: SsaMode::IfNotPresent,
                    force: false,
                }],
                &ApplyOptions::default(),
            )
            .await
            .map_err(|e| format!("creating namespace {}: {e}", t.namespace))?;
    }
    let pre = if install {
        "pre-install"
    } else {
        "pre-upgrade"
    };
    let post = if install {
        "post-install"
    } else {
        "post-upgrade"
    };
    if crds != CrdsPolicy::Skip && !rendered.crds.is_empty() {
        apply_crds(applier, rendered, crds).await?;
    }
    let objects = parse_manifest(applier, &rel.manifest, t).await?;
    let old = if previous.is_empty() {
        Vec::new()
    } else {
        live_refs(applier, previous, &t.namespace).await?
    };
    if !takes_ownership(obj, install) {
        let verb = if install { "install" } else { "update" };
        check_ownership(applier, &objects, &old, t, verb)
            .await
            .map_err(|e| {
                format!("rendered manifests contain a resource that already exists. {e}")
            })?;
    }
    if hooks {
        run_hooks(applier, rel, pre, t).await?;
    }
    // cleanupOnFail: what this upgrade creates is deleted if it fails.
    let cleanup = !install && obj.spec.upgrade.as_ref().is_some_and(|u| u.cleanup_on_fail);
    let created = if cleanup {
        absent(applier, &objects).await?
    } else {
        Vec::new()
    };
    let result = async {
        match Method::of_release(rel) {
            Method::ServerSide => apply_objects(applier, objects.clone(), t).await?,
            Method::ClientSide => {
                apply_client_side(applier, current_release(previous), &objects, t).await?
            }
        }
        if !old.is_empty() {
            prune_removed(applier, &old, &objects, t).await?;
        }
        if hooks {
            run_hooks(applier, rel, post, t).await?;
        }
        wait.run(applier, &objects, t).await
    }
    .await;
    match result {
        Ok(()) => Ok(()),
        Err(e) => Err(format!(
            "{e}{}",
            cleanup_created(applier, &created, t).await
        )),
    }
}

/// (hooks, CRDs policy, wait, createNamespace) of the install or upgrade.
fn action_settings(obj: &HelmRelease, install: bool) -> (bool, CrdsPolicy, Wait, bool) {
    if install {
        let i = obj.spec.install.clone().unwrap_or_default();
        let crds = i.crds.unwrap_or(if i.skip_crds {
            CrdsPolicy::Skip
        } else {
            CrdsPolicy::Create
        });
        let wait = Wait::of(i.disable_wait, i.disable_wait_for_jobs);
        (!i.disable_hooks, crds, wait, i.create_namespace)
    } else {
        let u = obj.spec.upgrade.clone().unwrap_or_default();
        (
            !u.disable_hooks,
            u.crds.unwrap_or(CrdsPolicy::Skip),
            Wait::of(u.disable_wait, u.disable_wait_for_jobs),
            false,
        )
    }
}

/// Helm's wait after an action: off (`disableWait`), or every object healthy, Jobs
/// included unless `disableWaitForJobs` (then a Job counts as ready once applied).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Wait {
    /// No wait.
    Off,
    /// Wait for every object but Jobs.
    NoJobs,
    /// Wait for every object, Jobs to complete.
    All,
}

impl Wait {
    /// From an action's `disableWait` and `disableWaitForJobs`.
    pub(super) fn of(disable_wait: bool, disable_wait_for_jobs: bool) -> Self {
        match (disable_wait, disable_wait_for_jobs) {
            (true, _) => Wait::Off,
            (false, true) => Wait::NoJobs,
            (false, false) => Wait::All,
        }
    }

    /// Waits for `objects` (within `t.timeout`) as this policy says.
    pub(super) async fn run(
        self,
        applier: &Applier,
        objects: &[Value],
        t: &Target,
    ) -> std::result::Result<(), String> {
        if self == Wait::Off {
            return Ok(());
        }
        let refs: Vec<ObjectRef> = objects
            .iter()
            .filter_map(|o| ObjectRef::from_object(o).ok())
            .filter(|r| self == Wait::All || !(r.group == "batch" && r.kind == "Job"))
            .collect();
        wait_healthy(applier, &refs, t).await
    }
}

/// The chart's `crds/` (Create: only when missing; CreateReplace: applied).
async fn apply_crds(
    applier: &Applier,
    rendered: &plumb_helm::Rendered,
    crds: CrdsPolicy,
) -> std::result::Result<(), String> {
    let mut items = Vec::new();
    for (path, text) in &rendered.crds {
        for doc in plumb_helm::render::split_manifests(text) {
            let v = yaml_object(&doc).map_err(|e| format!("CRD {path}: {e}"))?;
            if v.is_null() {
                continue;
            }
            items.push(ApplyItem {
                object: v,
                mode: if crds == CrdsPolicy::Create {
                    SsaMode::IfNotPresent
                } else {
                    SsaMode::Override
                },
                force: false,
            });
        }
    }
    applier
        .apply_all(items, &ApplyOptions::default())
        .await
        .map_err(|e| format!("applying CRDs: {e}"))?;
    Ok(())
}

pub(super) async fn apply_objects(
    applier: &Applier,
    objects: Vec<Value>,
    t: &Target,
) -> std::result::Result<(), String> {
    let items = objects.into_iter().map(ApplyItem::new).collect();
    let opts = ApplyOptions {
        wait_timeout: t.timeout,
        ..ApplyOptions::default()
    };
    applier
        .apply_all(items, &opts)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Deletes the objects of the previous manifest that the new one no longer has, as Helm
/// does (see [`helm_prune_options`]).
pub(super) async fn prune_removed(
    applier: &Applier,
    old: &[ObjectRef],
    new: &[Value],
    t: &Target,
) -> std::result::Result<(), String> {
    let stale = inventory_of(new).stale(old);
    if stale.is_empty() {
        return Ok(());
    }
    applier
        .prune(&stale, &helm_prune_options(t))
        .await
        .map(|_| ())
        .map_err(|e| format!("deleting removed objects: {e}"))
}

/// Helm's rules for deleting a release's objects: only those carrying this release's
/// ownership annotations (an object someone else took over stays), never those marked
/// `helm.sh/resource-policy: keep`.
pub(super) fn helm_prune_options(t: &Target) -> PruneOptions {
    PruneOptions {
        owner_annotations: BTreeMap::from([
            (annotation::HELM_RELEASE_NAME.to_string(), t.name.clone()),
            (
                annotation::HELM_RELEASE_NAMESPACE.to_string(),
                t.namespace.clone(),
            ),
        ]),
        skip_annotations: vec![(
            annotation::HELM_RESOURCE_POLICY.to_string(),
            annotation::HELM_KEEP.to_string(),
        )],
        ..PruneOptions::default()
    }
}

/// The objects the `releases` may have left in the cluster: the union of their manifests
/// (the last deployed release and any later one an interrupted or failed attempt applied
/// part of), so an upgrade after a crash still deletes what neither release keeps.
pub(super) async fn live_refs(
    applier: &Applier,
    releases: &[Release],
    namespace: &str,
) -> std::result::Result<Vec<ObjectRef>, String> {
    let mut seen = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    for r in releases {
        for o in manifest_refs(applier, &r.manifest, namespace).await? {
            if seen.insert(o.key()) {
                out.push(o);
            }
        }
    }
    Ok(out)
}

/// Refuses an upgrade, before anything is applied, that would delete more of the previous
/// release's objects than the prune budget allows (see [`crate::prune_budget`]).
pub(super) async fn check_prune_budget(
    a: &Attempt<'_>,
    previous: &[Release],
    next_manifest: &str,
) -> std::result::Result<(), Failure> {
    let fail = |m: String| Failure::new(Class::Stalled, reason::UPGRADE_FAILED, m);
    let old = live_refs(&a.applier, previous, &a.t.namespace)
        .await
        .map_err(fail)?;
    let new = manifest_refs(&a.applier, next_manifest, &a.t.namespace)
        .await
        .map_err(fail)?;
    let stale = Inventory { objects: new }.stale(&old);
    crate::prune_budget::check(
        a.obj.annotations(),
        stale.len(),
        old.len(),
        a.ctx.config.prune_budget,
    )
    .map_err(|m| {
        fail(format!(
            "upgrade of release {}/{}: {m}",
            a.t.namespace, a.t.name
        ))
    })
}

/// The inventory of parsed manifest objects (objects without an identity are skipped).
pub(super) fn inventory_of(objects: &[Value]) -> Inventory {
    Inventory {
        objects: objects
            .iter()
            .filter_map(|o| ObjectRef::from_object(o).ok())
            .collect(),
    }
}

/// Waits until every object is healthy: by kstatus (with `spec.healthCheckExprs` for the
/// kinds they name), or by Helm 3's readiness rules under `waitStrategy: legacy`.
async fn wait_healthy(
    applier: &Applier,
    refs: &[ObjectRef],
    t: &Target,
) -> std::result::Result<(), String> {
    let (timeout, exprs) = (t.timeout, &t.health_exprs);
    let start = Instant::now();
    let mut delay = Duration::from_millis(200);
    // healthCheckExprs replace kstatus for the kinds they name.
    let judge = |r: &ObjectRef, v: &Value| {
        crate::cel::health::find(exprs, &r.group, &r.kind).map(|e| e.evaluate(v))
    };
    loop {
        let health = if t.legacy_wait {
            applier.health_legacy(refs).await
        } else {
            applier.health_with(refs, &judge).await
        }
        .map_err(|e| e.to_string())?;
        let pending: Vec<String> = health
            .iter()
            .filter(|(_, h)| h.status != Health::Current)
            .map(|(r, h)| format!("{r}: {} {}", h.status, h.message))
            .collect();
        if let Some((r, h)) = health.iter().find(|(_, h)| h.status == Health::Failed) {
            return Err(format!("{r} failed: {}", h.message));
        }
        if pending.is_empty() {
            return Ok(());
        }
        if start.elapsed() >= timeout {
            return Err(format!("timeout waiting for: [{}]", pending.join(", ")));
        }
        tokio::time::sleep(delay.min(timeout.saturating_sub(start.elapsed()))).await;
        delay = (delay * 2).min(Duration::from_secs(2));
    }
}
