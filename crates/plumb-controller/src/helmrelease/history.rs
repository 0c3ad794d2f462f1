//! Release history: the Helm release Secrets (read, written, pruned beyond `maxHistory`)
//! and their snapshots in `status.history`.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use plumb_api::consts::{field_manager, reason};
use plumb_api::helm_release::Snapshot;
use plumb_helm::storage::{self, Release, status as rstatus};

use super::target::Target;
use crate::outcome::{Class, Failure};

pub(super) fn is_install_only(history: &[Release]) -> bool {
    history.len() <= 1
}

/// All stored revisions of the release, oldest first.
pub(super) async fn load_history(t: &Target) -> std::result::Result<Vec<Release>, Failure> {
    let api: Api<Secret> = Api::namespaced(t.store.clone(), &t.storage_ns);
    let lp = ListParams::default().labels(&format!("owner=helm,name={}", t.name));
    let list = api.list(&lp).await.map_err(|e| {
        Failure::new(
            Class::Transient,
            reason::GET_LAST_RELEASE_FAILED,
            format!(
                "listing release Secrets of {} in {}: {e}",
                t.name, t.storage_ns
            ),
        )
    })?;
    let mut out = Vec::new();
    for s in list.items {
        let Some(data) = s.data.as_ref().and_then(|d| d.get("release")) else {
            continue;
        };
        let rel = storage::decode(&data.0).map_err(|e| {
            Failure::new(
                Class::Stalled,
                reason::GET_LAST_RELEASE_FAILED,
                format!("reading Secret {}/{}: {e}", t.storage_ns, s.name_any()),
            )
        })?;
        out.push(rel);
    }
    out.sort_by_key(|r| r.version);
    Ok(out)
}

pub(super) async fn write_release(t: &Target, rel: &Release) -> std::result::Result<(), Failure> {
    let fail = |m: String| Failure::new(Class::Transient, reason::RECONCILIATION_FAILED, m);
    let storage_ns = t.storage_ns.as_str();
    let obj = storage::secret_object(rel, storage_ns).map_err(|e| fail(e.to_string()))?;
    let api: Api<Secret> = Api::namespaced(t.store.clone(), storage_ns);
    let name = storage::secret_name(&rel.name, rel.version);
    api.patch(
        &name,
        &PatchParams::apply(field_manager::HELM_CONTROLLER).force(),
        &Patch::Apply(&obj),
    )
    .await
    .map_err(|e| fail(format!("writing release Secret {storage_ns}/{name}: {e}")))?;
    Ok(())
}

/// Deletes the oldest revisions beyond `max` (0 keeps everything); returns how many.
pub(super) async fn prune_history(
    t: &Target,
    history: &[Release],
    max: i64,
) -> std::result::Result<usize, Failure> {
    if max <= 0 || history.len() as i64 <= max {
        return Ok(0);
    }
    let api: Api<Secret> = Api::namespaced(t.store.clone(), &t.storage_ns);
    let excess = history.len() - max as usize;
    for r in history.iter().take(excess) {
        let name = storage::secret_name(&r.name, r.version);
        match api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(ae)) if ae.code == 404 => {}
            Err(e) => {
                return Err(Failure::new(
                    Class::Transient,
                    reason::RECONCILIATION_FAILED,
                    format!("deleting old release Secret {}/{name}: {e}", t.storage_ns),
                ));
            }
        }
    }
    Ok(excess)
}

/// Status history: newest first, down to the newest successful release.
pub(super) fn snapshots(history: &[Release]) -> Vec<Snapshot> {
    let mut out = Vec::new();
    for r in history.iter().rev() {
        out.push(snapshot(r));
        if r.info.status == rstatus::DEPLOYED || r.info.status == rstatus::SUPERSEDED {
            break;
        }
    }
    out
}

fn time_of(s: &str) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Time {
    let t = s
        .parse::<k8s_openapi::jiff::Timestamp>()
        .unwrap_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH);
    k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(t)
}

fn snapshot(r: &Release) -> Snapshot {
    Snapshot {
        api_version: None,
        digest: storage::release_digest(r),
        name: r.name.clone(),
        namespace: r.namespace.clone(),
        version: r.version,
        status: r.info.status.clone(),
        chart_name: r.chart.name().to_string(),
        chart_version: r.chart.version().to_string(),
        app_version: r.chart.app_version().map(str::to_string),
        config_digest: storage::values_digest(&r.config),
        first_deployed: time_of(&r.info.first_deployed),
        last_deployed: time_of(&r.info.last_deployed),
        deleted: (!r.info.deleted.is_empty()).then(|| time_of(&r.info.deleted)),
        test_hooks: test_hooks(r),
        oci_digest: None,
    }
}

/// The test hooks of `r` that ran, by name, as Flux records them in `status.history`.
fn test_hooks(r: &Release) -> Option<BTreeMap<String, plumb_api::helm_release::TestHookStatus>> {
    let time = |s: &str| (!s.is_empty()).then(|| time_of(s));
    let hooks: BTreeMap<_, _> = r
        .hooks
        .iter()
        .filter(|h| h.events.iter().any(|e| e == "test" || e == "test-success"))
        .filter(|h| !h.last_run.started_at.is_empty())
        .map(|h| {
            (
                h.name.clone(),
                plumb_api::helm_release::TestHookStatus {
                    last_started: time(&h.last_run.started_at),
                    last_completed: time(&h.last_run.completed_at),
                    phase: (!h.last_run.phase.is_empty()).then(|| h.last_run.phase.clone()),
                },
            )
        })
        .collect();
    (!hooks.is_empty()).then_some(hooks)
}

/// `t` with an action's own timeout (`install.timeout`, ...) when it sets a valid one;
/// `spec.timeout` otherwise.
pub(super) fn with_timeout(t: &Target, action: Option<&str>) -> Target {
    let mut t = t.clone();
    if let Some(d) = action.and_then(|a| plumb_api::duration::parse(a).ok()) {
        t.timeout = d;
    }
    t
}
