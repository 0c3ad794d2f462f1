//! kstatus condition helpers: set, find and remove conditions the way
//! `k8s.io/apimachinery/pkg/api/meta.SetStatusCondition` and Flux's `runtime/conditions` do.
//!
//! `lastTransitionTime` changes only when the status of a condition changes; reason, message
//! and observedGeneration are always updated. Messages are truncated to
//! [`MAX_CONDITION_MESSAGE_LENGTH`] bytes.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use crate::consts::{MAX_CONDITION_MESSAGE_LENGTH, condition};
use crate::meta::Condition;

/// Status of a condition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// `"True"`.
    True,
    /// `"False"`.
    False,
    /// `"Unknown"`.
    Unknown,
}

impl Status {
    /// The string stored in `status`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::True => "True",
            Self::False => "False",
            Self::Unknown => "Unknown",
        }
    }
}

impl From<bool> for Status {
    fn from(b: bool) -> Self {
        if b { Self::True } else { Self::False }
    }
}

/// Builds a condition with `lastTransitionTime` set to now.
pub fn new_condition(
    type_: &str,
    status: Status,
    reason: &str,
    message: &str,
    observed_generation: Option<i64>,
) -> Condition {
    Condition {
        type_: type_.to_owned(),
        status: status.as_str().to_owned(),
        reason: reason.to_owned(),
        message: truncate_message(message),
        observed_generation,
        last_transition_time: Time(Timestamp::now()),
    }
}

fn truncate_message(message: &str) -> String {
    if message.len() <= MAX_CONDITION_MESSAGE_LENGTH {
        return message.to_owned();
    }
    let mut end = MAX_CONDITION_MESSAGE_LENGTH;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    message[..end].to_owned()
}

/// Sets `new` in `conditions`, replacing the condition of the same type.
///
/// When the status is unchanged, the existing `lastTransitionTime` is kept. Returns true when
/// anything (status, reason, message or observedGeneration) changed.
pub fn set_condition(conditions: &mut Vec<Condition>, mut new: Condition) -> bool {
    new.message = truncate_message(&new.message);
    match conditions.iter_mut().find(|c| c.type_ == new.type_) {
        None => {
            conditions.push(new);
            true
        }
        Some(existing) => {
            let mut changed = false;
            if existing.status != new.status {
                existing.status = new.status;
                existing.last_transition_time = new.last_transition_time;
                changed = true;
            }
            if existing.reason != new.reason {
                existing.reason = new.reason;
                changed = true;
            }
            if existing.message != new.message {
                existing.message = new.message;
                changed = true;
            }
            if existing.observed_generation != new.observed_generation {
                existing.observed_generation = new.observed_generation;
                changed = true;
            }
            changed
        }
    }
}

/// Sets a condition built from its parts (see [`set_condition`]).
pub fn set(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: Status,
    reason: &str,
    message: &str,
    observed_generation: Option<i64>,
) -> bool {
    set_condition(
        conditions,
        new_condition(type_, status, reason, message, observed_generation),
    )
}

/// The condition of the given type.
pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Removes the condition of the given type; returns whether it was present.
pub fn remove(conditions: &mut Vec<Condition>, type_: &str) -> bool {
    let before = conditions.len();
    conditions.retain(|c| c.type_ != type_);
    conditions.len() != before
}

/// Whether the condition of the given type has the given status.
pub fn has_status(conditions: &[Condition], type_: &str, status: Status) -> bool {
    find(conditions, type_).is_some_and(|c| c.status == status.as_str())
}

/// Whether `Ready` is `True`.
pub fn is_ready(conditions: &[Condition]) -> bool {
    has_status(conditions, condition::READY, Status::True)
}

/// Whether `Ready` is `True` and was computed for `generation` (kstatus "Current").
pub fn is_ready_for_generation(conditions: &[Condition], generation: Option<i64>) -> bool {
    find(conditions, condition::READY)
        .is_some_and(|c| c.status == Status::True.as_str() && c.observed_generation == generation)
}

/// kstatus: a reconciliation started. Sets `Reconciling=True` (and `Ready=Unknown` unless
/// Ready already reflects this generation), and removes `Stalled`.
pub fn mark_reconciling(
    conditions: &mut Vec<Condition>,
    reason: &str,
    message: &str,
    generation: Option<i64>,
) -> bool {
    let mut changed = set(
        conditions,
        condition::RECONCILING,
        Status::True,
        reason,
        message,
        generation,
    );
    changed |= remove(conditions, condition::STALLED);
    let ready_current =
        find(conditions, condition::READY).is_some_and(|c| c.observed_generation == generation);
    if !ready_current {
        changed |= set(
            conditions,
            condition::READY,
            Status::Unknown,
            reason,
            message,
            generation,
        );
    }
    changed
}

/// kstatus: reconciliation succeeded. Sets `Ready=True`, removes `Reconciling` and `Stalled`.
pub fn mark_ready(
    conditions: &mut Vec<Condition>,
    reason: &str,
    message: &str,
    generation: Option<i64>,
) -> bool {
    let mut changed = set(
        conditions,
        condition::READY,
        Status::True,
        reason,
        message,
        generation,
    );
    changed |= remove(conditions, condition::RECONCILING);
    changed |= remove(conditions, condition::STALLED);
    changed
}

/// kstatus: a failure that will be retried. Sets `Ready=False` and removes `Reconciling` and
/// `Stalled`.
pub fn mark_failed(
    conditions: &mut Vec<Condition>,
    reason: &str,
    message: &str,
    generation: Option<i64>,
) -> bool {
    let mut changed = set(
        conditions,
        condition::READY,
        Status::False,
        reason,
        message,
        generation,
    );
    changed |= remove(conditions, condition::RECONCILING);
    changed |= remove(conditions, condition::STALLED);
    changed
}

/// kstatus: a failure that needs a change of the object. Sets `Stalled=True`, `Ready=False`
/// and removes `Reconciling`.
pub fn mark_stalled(
    conditions: &mut Vec<Condition>,
    reason: &str,
    message: &str,
    generation: Option<i64>,
) -> bool {
    let mut changed = set(
        conditions,
        condition::STALLED,
        Status::True,
        reason,
        message,
        generation,
    );
    changed |= set(
        conditions,
        condition::READY,
        Status::False,
        reason,
        message,
        generation,
    );
    changed |= remove(conditions, condition::RECONCILING);
    changed
}

/// Access to the conditions and observed generation of a Flux object's status.
pub trait HasConditions {
    /// The conditions; empty when there is no status.
    fn conditions(&self) -> &[Condition];
    /// The conditions, creating an empty status when there is none.
    fn conditions_mut(&mut self) -> &mut Vec<Condition>;
    /// `status.observedGeneration`.
    fn observed_generation(&self) -> Option<i64>;
    /// Sets `status.observedGeneration`, creating the status when there is none.
    fn set_observed_generation(&mut self, generation: Option<i64>);
    /// `status.lastHandledReconcileAt`.
    fn last_handled_reconcile_at(&self) -> Option<&str>;
    /// Sets `status.lastHandledReconcileAt`, creating the status when there is none.
    fn set_last_handled_reconcile_at(&mut self, value: Option<String>);
}

macro_rules! impl_has_conditions {
    ($($kind:ty),*) => {$(
        impl HasConditions for $kind {
            fn conditions(&self) -> &[Condition] {
                self.status.as_ref().map(|s| s.conditions.as_slice()).unwrap_or(&[])
            }
            fn conditions_mut(&mut self) -> &mut Vec<Condition> {
                &mut self.status.get_or_insert_with(Default::default).conditions
            }
            fn observed_generation(&self) -> Option<i64> {
                self.status.as_ref().and_then(|s| s.observed_generation)
            }
            fn set_observed_generation(&mut self, generation: Option<i64>) {
                self.status.get_or_insert_with(Default::default).observed_generation = generation;
            }
            fn last_handled_reconcile_at(&self) -> Option<&str> {
                self.status
                    .as_ref()
                    .and_then(|s| s.reconcile_request.last_handled_reconcile_at.as_deref())
            }
            fn set_last_handled_reconcile_at(&mut self, value: Option<String>) {
                self.status
                    .get_or_insert_with(Default::default)
                    .reconcile_request
                    .last_handled_reconcile_at = value;
            }
        }
    )*};
}

impl_has_conditions!(
    crate::GitRepository,
    crate::HelmRepository,
    crate::Kustomization,
    crate::HelmRelease,
    crate::Receiver
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consts::reason;

    fn at(second: i64) -> Time {
        Time(Timestamp::from_second(second).unwrap())
    }

    #[test]
    fn transition_time_changes_only_with_status() {
        let mut conds = Vec::new();
        let mut c = new_condition("Ready", Status::False, "A", "m1", Some(1));
        c.last_transition_time = at(100);
        assert!(set_condition(&mut conds, c));

        let mut c = new_condition("Ready", Status::False, "B", "m2", Some(2));
        c.last_transition_time = at(200);
        assert!(set_condition(&mut conds, c.clone()));
        assert_eq!(conds[0].last_transition_time, at(100));
        assert_eq!(conds[0].reason, "B");
        assert_eq!(conds[0].observed_generation, Some(2));
        assert!(!set_condition(&mut conds, c), "identical set is no change");

        let mut c = new_condition("Ready", Status::True, "B", "m2", Some(2));
        c.last_transition_time = at(300);
        assert!(set_condition(&mut conds, c));
        assert_eq!(conds[0].last_transition_time, at(300));
        assert_eq!(conds.len(), 1);
    }

    #[test]
    fn kstatus_marks() {
        let mut conds = Vec::new();
        mark_reconciling(&mut conds, reason::PROGRESSING, "working", Some(3));
        assert!(has_status(&conds, condition::RECONCILING, Status::True));
        assert!(has_status(&conds, condition::READY, Status::Unknown));
        mark_stalled(&mut conds, reason::INVALID_PATH, "no such path", Some(3));
        assert!(find(&conds, condition::RECONCILING).is_none());
        assert!(has_status(&conds, condition::STALLED, Status::True));
        assert!(!is_ready(&conds));
        mark_ready(&mut conds, reason::RECONCILIATION_SUCCEEDED, "ok", Some(3));
        assert!(is_ready(&conds));
        assert!(is_ready_for_generation(&conds, Some(3)));
        assert!(!is_ready_for_generation(&conds, Some(4)));
        assert_eq!(conds.len(), 1);
        mark_failed(&mut conds, reason::BUILD_FAILED, "bad", Some(4));
        assert!(has_status(&conds, condition::READY, Status::False));
        assert!(remove(&mut conds, condition::READY));
        assert!(!remove(&mut conds, condition::READY));
    }

    #[test]
    fn long_messages_are_truncated_on_char_boundary() {
        let msg = "é".repeat(MAX_CONDITION_MESSAGE_LENGTH);
        let c = new_condition("Ready", Status::False, "R", &msg, None);
        assert!(c.message.len() <= MAX_CONDITION_MESSAGE_LENGTH);
        assert!(c.message.len() >= MAX_CONDITION_MESSAGE_LENGTH - 1);
    }

    #[test]
    fn trait_creates_status() {
        let mut ks = crate::Kustomization::new(
            "x",
            serde_json::from_value(serde_json::json!({
                "interval": "1m", "prune": true,
                "sourceRef": {"kind": "GitRepository", "name": "repo"}
            }))
            .unwrap(),
        );
        assert!(ks.conditions().is_empty());
        mark_ready(
            ks.conditions_mut(),
            "ReconciliationSucceeded",
            "ok",
            Some(1),
        );
        ks.set_observed_generation(Some(1));
        ks.set_last_handled_reconcile_at(Some("now".into()));
        assert!(is_ready(ks.conditions()));
        assert_eq!(ks.observed_generation(), Some(1));
        assert_eq!(ks.last_handled_reconcile_at(), Some("now"));
    }
}
