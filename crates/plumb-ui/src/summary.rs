//! A watched object (JSON) -> the [`ObjectSummary`] the page draws: state from kstatus
//! conditions and `spec.suspend`, the revision per kind, and the references (see [`refs`]).
//!
//! [`refs`]: crate::refs

use std::collections::BTreeMap;

use plumb_api::kinds::FluxKind;
use serde_json::Value;

use crate::model::{ObjectSummary, State};

/// The condition of type `type_` in `status.conditions`.
pub(crate) fn condition<'a>(obj: &'a Value, type_: &str) -> Option<&'a Value> {
    obj["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}

fn is(obj: &Value, type_: &str, status: &str) -> bool {
    condition(obj, type_).is_some_and(|c| c["status"] == status)
}

/// The state an object is drawn in. `spec.suspend` wins; then Stalled, Reconciling (or a
/// Ready=Unknown while progressing), Ready=False, Ready=True; no conditions is `unknown`.
pub fn state_of(obj: &Value) -> State {
    let has_conditions = obj["status"]["conditions"]
        .as_array()
        .is_some_and(|c| !c.is_empty());
    if obj["spec"]["suspend"].as_bool() == Some(true) {
        State::Suspended
    } else if !has_conditions {
        State::Unknown
    } else if is(obj, "Stalled", "True") {
        State::Stalled
    } else if is(obj, "Reconciling", "True") || is(obj, "Ready", "Unknown") {
        State::Reconciling
    } else if is(obj, "Ready", "False") {
        State::Failed
    } else if is(obj, "Ready", "True") {
        State::Ready
    } else {
        State::Unknown
    }
}

/// A JSON object of strings (labels, `matchLabels`) as a map; anything else is empty.
pub(crate) fn string_map(v: &Value) -> BTreeMap<String, String> {
    v.as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

fn text(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

/// The summary of `obj` (a Flux object of `kind` as JSON).
pub fn summarize(kind: FluxKind, obj: &Value) -> ObjectSummary {
    let meta = &obj["metadata"];
    let namespace = text(&meta["namespace"]);
    let name = text(&meta["name"]);
    let state = state_of(obj);
    // The message that explains the state: a stalled object's Stalled condition, else Ready.
    let shown = match state {
        State::Stalled => condition(obj, "Stalled"),
        _ => condition(obj, "Ready"),
    };
    let labels = string_map(&meta["labels"]);
    ObjectSummary {
        id: ObjectSummary::id_of(kind.kind(), &namespace, &name),
        kind: kind.kind().to_string(),
        api_version: kind.resource().api_version,
        refs: crate::refs::refs_of(kind, obj, &namespace),
        namespace,
        name,
        state,
        reason: shown.map(|c| text(&c["reason"])).unwrap_or_default(),
        message: shown.map(|c| text(&c["message"])).unwrap_or_default(),
        revision: kind.revision_of(obj),
        labels,
        last_transition: condition(obj, "Ready")
            .and_then(|c| c["lastTransitionTime"].as_str())
            .map(str::to_string),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn with(conditions: Value, suspend: bool) -> Value {
        json!({"metadata": {"name": "a", "namespace": "ns"},
               "spec": {"suspend": suspend}, "status": {"conditions": conditions}})
    }

    fn c(t: &str, s: &str) -> Value {
        json!({"type": t, "status": s, "reason": format!("{t}{s}"), "message": "m",
               "lastTransitionTime": "2026-12-01T10:00:00Z"})
    }

    #[test]
    fn states_follow_kstatus_and_suspend_wins() {
        assert_eq!(state_of(&with(json!([]), false)), State::Unknown);
        assert_eq!(
            state_of(&with(json!([c("Ready", "True")]), true)),
            State::Suspended
        );
        assert_eq!(
            state_of(&with(
                json!([c("Ready", "False"), c("Stalled", "True")]),
                false
            )),
            State::Stalled
        );
        assert_eq!(
            state_of(&with(
                json!([c("Ready", "True"), c("Reconciling", "True")]),
                false
            )),
            State::Reconciling
        );
        assert_eq!(
            state_of(&with(json!([c("Ready", "Unknown")]), false)),
            State::Reconciling
        );
        assert_eq!(
            state_of(&with(json!([c("Ready", "False")]), false)),
            State::Failed
        );
        assert_eq!(
            state_of(&with(json!([c("Ready", "True")]), false)),
            State::Ready
        );
        assert_eq!(
            state_of(&with(json!([c("Healthy", "True")]), false)),
            State::Unknown
        );
    }

    #[test]
    fn summary_reads_identity_message_revision_and_labels() {
        let mut o = with(json!([c("Ready", "False"), c("Stalled", "True")]), false);
        o["metadata"]["labels"] = json!({"team": "a"});
        o["status"]["lastAppliedRevision"] = json!("main@sha1:abc");
        let s = summarize(FluxKind::Kustomization, &o);
        assert_eq!(s.id, "Kustomization/ns/a");
        assert_eq!(s.api_version, "kustomize.toolkit.fluxcd.io/v1");
        assert_eq!(
            (s.reason.as_str(), s.message.as_str()),
            ("StalledTrue", "m")
        );
        assert_eq!(s.revision, "main@sha1:abc");
        assert_eq!(s.labels["team"], "a");
        assert_eq!(s.last_transition.as_deref(), Some("2026-12-01T10:00:00Z"));
    }
}
