//! The one status writer: the outcome of a reconcile (success or a classified failure)
//! becomes conditions, an event, a requeue and metrics here, and the status is patched once,
//! only when it changed.

use std::sync::Arc;

use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use plumb_api::conditions::{self, Status as CondStatus};
use plumb_api::consts::{annotation, condition, reason};
use plumb_api::meta::Condition;

use super::kind::{Kind, KindStatus, Policy, Warn};
use crate::context::Context;
use crate::outcome::{Class, Failure, jitter};
use crate::{Error, Result};

/// One pass: steps, outcome mapped to status, one status patch, metrics.
pub(super) async fn reconcile_once<K: Kind>(
    obj: Arc<K>,
    ctx: &Context,
    api: &Api<K>,
) -> Result<Action> {
    let before = obj.stored_status().cloned().unwrap_or_default();
    if obj.suspended() {
        K::on_suspend(&obj, ctx);
        observe(ctx, &*obj, &before);
        return Ok(Action::await_change());
    }
    let generation = obj.meta().generation;
    let requested = obj
        .annotations()
        .get(annotation::RECONCILE_REQUESTED_AT)
        .cloned();
    let mut status = before.clone();
    let started = std::time::Instant::now();
    let outcome = K::steps(&obj, ctx, &mut status).await;
    let obj_ref = obj.object_ref(&());
    let action = match outcome {
        Ok(done) => {
            let ready = done.ready.is_some();
            if let Some((why, mut msg)) = done.ready {
                if let Some(note) = obj.unsupported_note() {
                    msg.push_str("; ");
                    msg.push_str(&note);
                }
                conditions::mark_ready(status.conditions_mut(), why, &msg, generation);
            }
            if let Some((why, msg)) = &done.event {
                let origin = origin::<K>(&obj, &status);
                ctx.event_with(&obj_ref, false, why, msg, origin).await;
            }
            if K::COMMIT_STATUS && ready {
                notify_commit_status::<K>(ctx, &obj, &obj_ref, &status, started);
            }
            Action::requeue(
                done.requeue
                    .unwrap_or_else(|| jitter(obj.every(), ctx.config.jitter_percent)),
            )
        }
        Err(f) => {
            if let Some(type_) = K::failure_condition(&f) {
                let conds = status.conditions_mut();
                conditions::set(
                    conds,
                    type_,
                    CondStatus::True,
                    f.reason,
                    &f.message,
                    generation,
                );
            }
            let waiting = K::POLICY.waiting_progresses && waits(&f);
            mark_failure(status.conditions_mut(), &f, generation, waiting, K::POLICY);
            let previous = conditions::find(before.conditions(), condition::READY);
            if K::POLICY.warn == Warn::Always || previous.is_none_or(|c| c.message != f.message) {
                if waits(&f) {
                    ctx.record_event(&obj_ref, true, f.reason, &f.message).await;
                } else {
                    let origin = origin::<K>(&obj, &status);
                    ctx.event_with(&obj_ref, true, f.reason, &f.message, origin)
                        .await;
                }
            }
            Action::requeue(if waiting {
                ctx.config.requeue_dependency
            } else {
                f.requeue_after(obj.retry(), obj.every())
            })
        }
    };
    status.set_observed_generation(generation);
    if let Some(at) = requested {
        status.set_last_handled_reconcile_at(at);
    }
    if status != before {
        write(api, &obj.name_any(), &before, &status).await?;
    }
    observe(ctx, &*obj, &status);
    Ok(action)
}

/// What notifications need about `obj` beyond its reference: labels and Flux's metadata.
fn origin<K: Kind>(obj: &K, status: &K::Status) -> crate::notification::Origin {
    crate::notification::Origin {
        labels: obj.labels().clone(),
        metadata: K::event_metadata(status),
    }
}

/// Flux's "Reconciliation finished" event with `commit_status: update`: a notification
/// only (commit-status Providers post the revision's status from it), not a Kubernetes
/// Event, as plumb reports the change set as its event.
fn notify_commit_status<K: Kind>(
    ctx: &Context,
    obj: &K,
    obj_ref: &k8s_openapi::api::core::v1::ObjectReference,
    status: &K::Status,
    started: std::time::Instant,
) {
    let mut origin = origin::<K>(obj, status);
    origin
        .metadata
        .insert("commit_status".to_string(), "update".to_string());
    let msg = format!(
        "Reconciliation finished in {:.3}s, next run in {}",
        started.elapsed().as_secs_f64(),
        crate::notification::go_duration(obj.every())
    );
    ctx.memo::<crate::notification::Dispatcher>().publish(
        obj_ref,
        false,
        reason::RECONCILIATION_SUCCEEDED,
        &msg,
        origin,
    );
}

/// Whether `f` waits on something else (a dependency, a source).
fn waits(f: &Failure) -> bool {
    f.class == Class::Waiting || f.reason == reason::DEPENDENCY_NOT_READY
}

/// The kstatus conditions of a failure: waiting (Reconciling, Ready=False), stalled
/// (Stalled, Ready=False) or retried (Ready=False, and Reconciling when the policy says so).
fn mark_failure(
    conds: &mut Vec<Condition>,
    f: &Failure,
    generation: Option<i64>,
    waiting: bool,
    policy: Policy,
) {
    if waiting {
        conditions::mark_reconciling(conds, f.reason, &f.message, generation);
        conditions::set(
            conds,
            condition::READY,
            CondStatus::False,
            f.reason,
            &f.message,
            generation,
        );
    } else if f.class == Class::Stalled {
        conditions::mark_stalled(conds, f.reason, &f.message, generation);
    } else {
        conditions::mark_failed(conds, f.reason, &f.message, generation);
        if policy.retry_progresses {
            conditions::set(
                conds,
                condition::RECONCILING,
                CondStatus::True,
                reason::PROGRESSING_WITH_RETRY,
                &f.message,
                generation,
            );
        }
    }
}

/// Writes `status` of `name` as a merge patch from `before` (see [`status_patch`]).
pub(crate) async fn write<K, S>(api: &Api<K>, name: &str, before: &S, status: &S) -> Result<()>
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    S: serde::Serialize,
{
    let patch = status_patch(before, status);
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|e| Error::Kube(format!("writing status of {} {name}: {e}", K::kind(&()))))?;
    Ok(())
}

/// A JSON merge patch that turns status `before` into `after`: `{"status": after}` plus an
/// explicit `null` for every top-level field `before` had and `after` lacks, since a merge
/// patch leaves fields it does not mention untouched (a field skipped when empty would
/// otherwise stick forever, e.g. `observedIgnore` after `spec.ignore` is removed).
pub(crate) fn status_patch<S: serde::Serialize>(before: &S, after: &S) -> serde_json::Value {
    let mut new = serde_json::to_value(after).unwrap_or_default();
    if let (Ok(serde_json::Value::Object(old)), serde_json::Value::Object(map)) =
        (serde_json::to_value(before), &mut new)
    {
        for key in old.keys() {
            map.entry(key.clone()).or_insert(serde_json::Value::Null);
        }
    }
    serde_json::json!({ "status": new })
}

/// Records the object's state in the metrics.
fn observe<K: Kind>(ctx: &Context, obj: &K, status: &K::Status) {
    ctx.metrics.observe(
        K::KIND,
        &obj.namespace().unwrap_or_default(),
        &obj.name_any(),
        crate::metrics::Observed {
            conditions: status.conditions(),
            suspended: obj.suspended(),
            revision: K::revision(status),
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_patch_nulls_removed_fields() {
        let before = serde_json::json!({"a": 1, "b": [1], "c": "x"});
        let after = serde_json::json!({"a": 2, "c": "x"});
        assert_eq!(
            status_patch(&before, &after),
            serde_json::json!({"status": {"a": 2, "b": null, "c": "x"}})
        );
    }

    #[test]
    fn failures_map_to_kstatus_conditions() {
        let policy = Policy {
            waiting_progresses: true,
            retry_progresses: false,
            warn: Warn::OnChange,
        };
        let find = |c: &[Condition], t: &str| conditions::find(c, t).map(|c| c.status.clone());
        let mut c = Vec::new();
        let f = Failure::new(Class::Waiting, reason::DEPENDENCY_NOT_READY, "dep");
        mark_failure(&mut c, &f, Some(1), waits(&f), policy);
        assert_eq!(find(&c, condition::RECONCILING).as_deref(), Some("True"));
        assert_eq!(find(&c, condition::READY).as_deref(), Some("False"));
        let f = Failure::new(Class::Stalled, reason::BUILD_FAILED, "bad");
        mark_failure(&mut c, &f, Some(1), false, policy);
        assert_eq!(find(&c, condition::STALLED).as_deref(), Some("True"));
        assert_eq!(find(&c, condition::RECONCILING), None);
        let f = Failure::new(Class::Transient, reason::ARTIFACT_FAILED, "net");
        let retrying = Policy {
            retry_progresses: true,
            ..policy
        };
        mark_failure(&mut c, &f, Some(1), false, retrying);
        assert_eq!(find(&c, condition::STALLED), None);
        assert_eq!(find(&c, condition::RECONCILING).as_deref(), Some("True"));
        assert_eq!(find(&c, condition::READY).as_deref(), Some("False"));
    }
}
