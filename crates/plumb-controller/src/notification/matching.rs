//! Which Alerts an event goes to, as Flux's notification-controller decides it, and what the
//! event carries to a Provider: the Alert's `summary` and `eventMetadata` merged in, and the
//! commit status key of commit-status types.

use std::collections::{BTreeMap, HashMap};

use kube::ResourceExt;
use plumb_api::notification::EventSeverity;
use plumb_api::{Alert, Provider};
use plumb_notify::{Event, Severity};
use regex::Regex;

/// Whether `name` matches `pattern`, where `*` matches any run of characters.
pub fn glob(pattern: &str, name: &str) -> bool {
    let Some((first, rest)) = pattern.split_once('*') else {
        return pattern == name;
    };
    let Some(mut tail) = name.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = rest.split('*').collect();
    let (last, middle) = match parts.split_last() {
        Some(x) => x,
        None => return true,
    };
    for part in middle {
        match tail.find(part) {
            Some(i) => tail = &tail[i + part.len()..],
            None => return false,
        }
    }
    tail.len() >= last.len() && tail.ends_with(last)
}

/// Compiled Go regexes of Alerts' inclusion and exclusion lists, by source (an invalid one
/// is `None`: the Alert reconciler reports it and the Alert is not Ready).
#[derive(Default)]
pub struct Regexes(HashMap<String, Option<Regex>>);

impl Regexes {
    fn matches(&mut self, pattern: &str, message: &str) -> bool {
        if self.0.len() > 4096 {
            self.0.clear();
        }
        self.0
            .entry(pattern.to_string())
            .or_insert_with(|| Regex::new(pattern).ok())
            .as_ref()
            .is_some_and(|r| r.is_match(message))
    }
}

/// Whether `alert` (not suspended, Ready checked by the caller) sends `event` about an
/// object carrying `labels`: one event source matches kind, namespace (the Alert's when
/// unset), name (`*` wildcards) and `matchLabels`; the severity passes (`info` = all); the
/// message matches an inclusion regex (when any) and no exclusion regex.
pub fn alert_matches(
    alert: &Alert,
    event: &Event,
    labels: &BTreeMap<String, String>,
    regexes: &mut Regexes,
) -> bool {
    let spec = &alert.spec;
    if spec.suspend {
        return false;
    }
    if spec.event_severity == EventSeverity::Error && event.severity != Severity::Error {
        return false;
    }
    let alert_ns = alert.namespace().unwrap_or_default();
    let o = &event.involved_object;
    let source = spec.event_sources.iter().any(|s| {
        s.kind.as_str() == o.kind
            && s.namespace.as_deref().unwrap_or(&alert_ns) == o.namespace
            && glob(&s.name, &o.name)
            && s.match_labels.iter().all(|(k, v)| labels.get(k) == Some(v))
    });
    if !source {
        return false;
    }
    if !spec.inclusion_list.is_empty()
        && !spec
            .inclusion_list
            .iter()
            .any(|p| regexes.matches(p, &event.message))
    {
        return false;
    }
    !spec
        .exclusion_list
        .iter()
        .any(|p| regexes.matches(p, &event.message))
}

/// The event as `alert` sends it: `summary` and `eventMetadata` added, never overriding
/// metadata the event carries.
pub fn with_alert_metadata(event: &Event, alert: &Alert) -> Event {
    let mut e = event.clone();
    if let Some(s) = alert.spec.summary.as_deref().filter(|s| !s.is_empty()) {
        e.metadata
            .entry("summary".into())
            .or_insert_with(|| s.to_string());
    }
    for (k, v) in &alert.spec.event_metadata {
        e.metadata.entry(k.clone()).or_insert_with(|| v.clone());
    }
    e
}

/// Flux's default commit status key: `<kind>/<name>/<first group of the Provider's UID>`,
/// lower case, so GitHub and GitLab show one status per object and cluster.
pub fn default_commit_status_key(provider_uid: &str, event: &Event) -> String {
    let uid = provider_uid.split('-').next().unwrap_or_default();
    let o = &event.involved_object;
    format!("{}/{}/{}", o.kind, o.name, uid).to_lowercase()
}

/// The commit status key: `spec.commitStatusExpr` evaluated over `event`, `provider` and
/// `alert` (as JSON objects), which must give a non-empty string; else Flux's default.
pub fn commit_status_key(
    provider: &Provider,
    alert: &Alert,
    event: &Event,
) -> Result<String, String> {
    let uid = provider.uid().unwrap_or_default();
    let Some(expr) = provider.spec.commit_status_expr.as_deref() else {
        return Ok(default_commit_status_key(&uid, event));
    };
    let compiled = crate::cel::Expression::cached(expr, Some(&["event", "provider", "alert"]))
        .map_err(|e| format!("spec.commitStatusExpr: {e}"))?;
    let to_json = |v: serde_json::Result<serde_json::Value>| v.map_err(|e| e.to_string());
    let ev = to_json(serde_json::to_value(event))?;
    let pv = to_json(serde_json::to_value(provider))?;
    let av = to_json(serde_json::to_value(alert))?;
    let out = compiled
        .eval_value(&[("event", &ev), ("provider", &pv), ("alert", &av)])
        .map_err(|e| format!("spec.commitStatusExpr: {e}"))?;
    match out {
        serde_json::Value::String(s) if !s.is_empty() => Ok(s),
        _ => Err("spec.commitStatusExpr must evaluate to a non-empty string".into()),
    }
}

/// The Flux controller that reports events about `kind`.
pub fn reporting_controller(kind: &str) -> &'static str {
    match kind {
        "Kustomization" => "kustomize-controller",
        "HelmRelease" => "helm-controller",
        "Receiver" | "Provider" | "Alert" => "notification-controller",
        "ArtifactGenerator" => "source-watcher",
        _ => "source-controller",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn alert(spec: serde_json::Value) -> Alert {
        let mut a = Alert::new("a", serde_json::from_value(spec).unwrap());
        a.metadata.namespace = Some("team".into());
        a
    }

    fn event(kind: &str, ns: &str, name: &str, severity: Severity, msg: &str) -> Event {
        let mut e = Event {
            severity,
            message: msg.into(),
            ..Default::default()
        };
        e.involved_object.kind = kind.into();
        e.involved_object.namespace = ns.into();
        e.involved_object.name = name.into();
        e
    }

    #[test]
    fn glob_matches_like_fluxs_wildcards() {
        assert!(glob("*", "anything"));
        assert!(glob("app-*", "app-frontend"));
        assert!(!glob("app-*", "web-frontend"));
        assert!(glob("*-prod", "api-prod"));
        assert!(glob("a*b*c", "axxbyyc"));
        assert!(!glob("a*b*c", "axxbyy"));
        assert!(glob("exact", "exact"));
        assert!(!glob("exact", "exactly"));
        assert!(!glob("ab*ba", "aba"));
    }

    #[test]
    fn sources_severity_labels_and_regexes() {
        let mut rx = Regexes::default();
        let none = BTreeMap::new();
        let a = alert(json!({
            "providerRef": {"name": "p"},
            "eventSeverity": "error",
            "eventSources": [
                {"kind": "Kustomization", "name": "app-*"},
                {"kind": "HelmRelease", "name": "*", "namespace": "other",
                 "matchLabels": {"team": "a"}},
            ],
            "inclusionList": ["failed"],
            "exclusionList": ["timeout"],
        }));
        let ok = event(
            "Kustomization",
            "team",
            "app-1",
            Severity::Error,
            "apply failed",
        );
        assert!(alert_matches(&a, &ok, &none, &mut rx));
        // Info events do not pass an error Alert.
        let info = event(
            "Kustomization",
            "team",
            "app-1",
            Severity::Info,
            "apply failed",
        );
        assert!(!alert_matches(&a, &info, &none, &mut rx));
        // Namespace defaults to the Alert's.
        let elsewhere = event(
            "Kustomization",
            "x",
            "app-1",
            Severity::Error,
            "apply failed",
        );
        assert!(!alert_matches(&a, &elsewhere, &none, &mut rx));
        // Inclusion and exclusion.
        let excluded = event(
            "Kustomization",
            "team",
            "app-1",
            Severity::Error,
            "failed: timeout",
        );
        assert!(!alert_matches(&a, &excluded, &none, &mut rx));
        let not_included = event("Kustomization", "team", "app-1", Severity::Error, "oops");
        assert!(!alert_matches(&a, &not_included, &none, &mut rx));
        // matchLabels.
        let hr = event(
            "HelmRelease",
            "other",
            "db",
            Severity::Error,
            "install failed",
        );
        assert!(!alert_matches(&a, &hr, &none, &mut rx));
        let labels = BTreeMap::from([("team".to_string(), "a".to_string())]);
        assert!(alert_matches(&a, &hr, &labels, &mut rx));
        let mut suspended = a.clone();
        suspended.spec.suspend = true;
        assert!(!alert_matches(&suspended, &ok, &none, &mut rx));
    }

    #[test]
    fn metadata_merge_keeps_the_events_values() {
        let a = alert(json!({
            "providerRef": {"name": "p"},
            "eventSources": [{"kind": "Kustomization", "name": "*"}],
            "summary": "prod cluster",
            "eventMetadata": {"env": "prod", "revision": "not-this"},
        }));
        let mut e = event("Kustomization", "team", "x", Severity::Info, "m");
        e.metadata.insert("revision".into(), "main@sha1:1".into());
        let out = with_alert_metadata(&e, &a);
        assert_eq!(out.metadata["summary"], "prod cluster");
        assert_eq!(out.metadata["env"], "prod");
        assert_eq!(out.metadata["revision"], "main@sha1:1");
    }

    #[test]
    fn commit_status_keys() {
        let e = event("Kustomization", "team", "Apps", Severity::Info, "m");
        assert_eq!(
            default_commit_status_key("0c9c2e41-1c2d-4a8e-9b2a-2f3c4d5e6f70", &e),
            "kustomization/apps/0c9c2e41"
        );
        let a = alert(json!({"providerRef": {"name": "p"}, "eventSources": []}));
        let mut p = Provider::new(
            "gh",
            serde_json::from_value(json!({
                "type": "github",
                "commitStatusExpr": "event.involvedObject.kind + '/' + event.involvedObject.name + '/' + provider.metadata.name + '/' + alert.metadata.name"
            }))
            .unwrap(),
        );
        p.metadata.uid = Some("abc-def".into());
        assert_eq!(
            commit_status_key(&p, &a, &e).unwrap(),
            "Kustomization/Apps/gh/a"
        );
        p.spec.commit_status_expr = Some("1 + 1".into());
        assert!(commit_status_key(&p, &a, &e).is_err());
        p.spec.commit_status_expr = None;
        assert_eq!(
            commit_status_key(&p, &a, &e).unwrap(),
            "kustomization/apps/abc"
        );
    }
}
