//! kstatus: the health of a Kubernetes object computed from the object alone, following
//! the rules of `sigs.k8s.io/cli-utils/pkg/kstatus` that Flux uses for `wait` and
//! `healthChecks`.
//!
//! Pure functions over JSON: no client, no waiting. Callers decide when to look again,
//! so a health check never blocks a worker.

use serde_json::Value;

/// Health of one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// Reconciled and healthy.
    Current,
    /// Still converging.
    InProgress,
    /// Converging failed; waiting longer will not help.
    Failed,
    /// Being deleted.
    Terminating,
    /// The object does not exist.
    NotFound,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Current => "Current",
            Status::InProgress => "InProgress",
            Status::Failed => "Failed",
            Status::Terminating => "Terminating",
            Status::NotFound => "NotFound",
        })
    }
}

/// A status and the reason for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// The status.
    pub status: Status,
    /// Why, in a few words (empty when Current without remark).
    pub message: String,
}

impl Health {
    fn new(status: Status, message: impl Into<String>) -> Self {
        Health {
            status,
            message: message.into(),
        }
    }
    fn current() -> Self {
        Health::new(Status::Current, "")
    }
}

fn int(v: &Value, path: &[&str]) -> Option<i64> {
    let mut cur = v;
    for p in path {
        cur = cur.get(p)?;
    }
    cur.as_i64()
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut cur = v;
    for p in path {
        cur = cur.get(p)?;
    }
    cur.as_str()
}

/// The condition of `type_` in `status.conditions`: (status, reason, message).
fn condition<'a>(obj: &'a Value, type_: &str) -> Option<(&'a str, &'a str, &'a str)> {
    obj.get("status")?
        .get("conditions")?
        .as_array()?
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some(type_))
        .map(|c| {
            (
                c.get("status").and_then(Value::as_str).unwrap_or(""),
                c.get("reason").and_then(Value::as_str).unwrap_or(""),
                c.get("message").and_then(Value::as_str).unwrap_or(""),
            )
        })
}

/// Computes the health of `obj` (a full object as the API server returns it).
pub fn compute(obj: &Value) -> Health {
    if obj
        .get("metadata")
        .and_then(|m| m.get("deletionTimestamp"))
        .is_some_and(|t| !t.is_null())
    {
        return Health::new(Status::Terminating, "resource scheduled for deletion");
    }
    // A controller that has not seen the latest spec has nothing to say yet.
    if let (Some(generation), Some(observed)) = (
        int(obj, &["metadata", "generation"]),
        int(obj, &["status", "observedGeneration"]),
    ) && observed < generation
    {
        return Health::new(
            Status::InProgress,
            format!("observed generation {observed} is behind generation {generation}"),
        );
    }
    let group = str_at(obj, &["apiVersion"])
        .map(|av| av.rsplit_once('/').map_or("", |(g, _)| g))
        .unwrap_or("");
    let kind = str_at(obj, &["kind"]).unwrap_or("");
    let specific = match (group, kind) {
        ("apps", "Deployment") => Some(deployment(obj)),
        ("apps", "StatefulSet") => Some(statefulset(obj)),
        ("apps", "DaemonSet") => Some(daemonset(obj)),
        ("apps", "ReplicaSet") => Some(replicaset(obj)),
        ("batch", "Job") => Some(job(obj)),
        ("", "Pod") => Some(pod(obj)),
        ("", "PersistentVolumeClaim") => Some(pvc(obj)),
        ("", "Service") => Some(service(obj)),
        ("", "Namespace") => Some(namespace(obj)),
        ("apiextensions.k8s.io", "CustomResourceDefinition") => Some(crd(obj)),
        ("policy", "PodDisruptionBudget") => Some(pdb(obj)),
        _ => None,
    };
    specific.unwrap_or_else(|| generic(obj))
}

/// kstatus' rules for any object: Reconciling/Stalled/Ready conditions.
fn generic(obj: &Value) -> Health {
    if let Some(("True", reason, msg)) = condition(obj, "Stalled") {
        return Health::new(Status::Failed, join(reason, msg));
    }
    if let Some(("True", reason, msg)) = condition(obj, "Reconciling") {
        return Health::new(Status::InProgress, join(reason, msg));
    }
    match condition(obj, "Ready") {
        Some(("False", reason, msg)) => Health::new(Status::InProgress, join(reason, msg)),
        Some(("Unknown", reason, msg)) => Health::new(Status::InProgress, join(reason, msg)),
        _ => Health::current(),
    }
}

fn join(reason: &str, msg: &str) -> String {
    match (reason.is_empty(), msg.is_empty()) {
        (true, _) => msg.to_string(),
        (false, true) => reason.to_string(),
        (false, false) => format!("{reason}: {msg}"),
    }
}

fn replicas_spec(obj: &Value) -> i64 {
    int(obj, &["spec", "replicas"]).unwrap_or(1)
}

fn status_int(obj: &Value, field: &str) -> i64 {
    int(obj, &["status", field]).unwrap_or(0)
}

fn deployment(obj: &Value) -> Health {
    if let Some(("False", "ProgressDeadlineExceeded", msg)) = condition(obj, "Progressing") {
        return Health::new(Status::Failed, format!("progress deadline exceeded: {msg}"));
    }
    let want = replicas_spec(obj);
    let updated = status_int(obj, "updatedReplicas");
    let replicas = status_int(obj, "replicas");
    let available = status_int(obj, "availableReplicas");
    let ready = status_int(obj, "readyReplicas");
    if updated < want {
        return Health::new(
            Status::InProgress,
            format!("updated replicas: {updated}/{want}"),
        );
    }
    if replicas > updated {
        return Health::new(
            Status::InProgress,
            format!("pending termination: {}", replicas - updated),
        );
    }
    if available < updated {
        return Health::new(
            Status::InProgress,
            format!("available replicas: {available}/{updated}"),
        );
    }
    if ready < want {
        return Health::new(
            Status::InProgress,
            format!("ready replicas: {ready}/{want}"),
        );
    }
    Health::current()
}

fn statefulset(obj: &Value) -> Health {
    if str_at(obj, &["spec", "updateStrategy", "type"]) == Some("OnDelete") {
        return Health::current();
    }
    let want = replicas_spec(obj);
    let ready = status_int(obj, "readyReplicas");
    let current = status_int(obj, "currentReplicas");
    let updated = status_int(obj, "updatedReplicas");
    let replicas = status_int(obj, "replicas");
    if replicas < want {
        return Health::new(Status::InProgress, format!("replicas: {replicas}/{want}"));
    }
    if ready < want {
        return Health::new(
            Status::InProgress,
            format!("ready replicas: {ready}/{want}"),
        );
    }
    let partition = int(
        obj,
        &["spec", "updateStrategy", "rollingUpdate", "partition"],
    )
    .unwrap_or(0);
    if partition > 0 {
        let expected = want - partition;
        if updated < expected {
            return Health::new(
                Status::InProgress,
                format!("updated replicas: {updated}/{expected} (partitioned rollout)"),
            );
        }
        return Health::current();
    }
    let cur_rev = str_at(obj, &["status", "currentRevision"]);
    let upd_rev = str_at(obj, &["status", "updateRevision"]);
    if cur_rev != upd_rev {
        return Health::new(
            Status::InProgress,
            format!("rolling update: {current}/{want} at the new revision"),
        );
    }
    Health::current()
}

fn daemonset(obj: &Value) -> Health {
    let desired = status_int(obj, "desiredNumberScheduled");
    if obj.get("status").is_none() || int(obj, &["status", "desiredNumberScheduled"]).is_none() {
        return Health::new(Status::InProgress, "missing status");
    }
    for (field, what) in [
        ("currentNumberScheduled", "scheduled"),
        ("updatedNumberScheduled", "updated"),
        ("numberAvailable", "available"),
        ("numberReady", "ready"),
    ] {
        let got = status_int(obj, field);
        if got < desired {
            return Health::new(Status::InProgress, format!("{what}: {got}/{desired}"));
        }
    }
    Health::current()
}

fn replicaset(obj: &Value) -> Health {
    if let Some(("True", reason, msg)) = condition(obj, "ReplicaFailure") {
        return Health::new(Status::Failed, join(reason, msg));
    }
    let want = replicas_spec(obj);
    for (field, what) in [
        ("fullyLabeledReplicas", "labelled"),
        ("availableReplicas", "available"),
        ("readyReplicas", "ready"),
    ] {
        let got = status_int(obj, field);
        if got < want {
            return Health::new(Status::InProgress, format!("{what}: {got}/{want}"));
        }
    }
    Health::current()
}

fn job(obj: &Value) -> Health {
    if let Some(("True", reason, msg)) = condition(obj, "Failed") {
        return Health::new(Status::Failed, join(reason, msg));
    }
    if let Some(("True", _, _)) = condition(obj, "Complete") {
        return Health::new(Status::Current, "job completed");
    }
    Health::new(Status::InProgress, "job in progress")
}

fn pod(obj: &Value) -> Health {
    match str_at(obj, &["status", "phase"]) {
        Some("Succeeded") => return Health::new(Status::Current, "pod completed"),
        Some("Failed") => return Health::new(Status::Failed, "pod failed"),
        _ => {}
    }
    let waiting_crash = obj
        .get("status")
        .and_then(|s| s.get("containerStatuses"))
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| str_at(c, &["state", "waiting", "reason"]) == Some("CrashLoopBackOff"))
        });
    if waiting_crash {
        return Health::new(Status::Failed, "container in CrashLoopBackOff");
    }
    match condition(obj, "Ready") {
        Some(("True", _, _)) => Health::current(),
        _ => Health::new(Status::InProgress, "pod is not ready"),
    }
}

fn pvc(obj: &Value) -> Health {
    match str_at(obj, &["status", "phase"]) {
        Some("Bound") => Health::current(),
        other => Health::new(
            Status::InProgress,
            format!("phase {}", other.unwrap_or("unknown")),
        ),
    }
}

fn service(obj: &Value) -> Health {
    if str_at(obj, &["spec", "type"]) != Some("LoadBalancer") {
        return Health::current();
    }
    let has_ingress = obj
        .get("status")
        .and_then(|s| s.get("loadBalancer"))
        .and_then(|l| l.get("ingress"))
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty());
    if has_ingress {
        Health::current()
    } else {
        Health::new(Status::InProgress, "load balancer has no ingress yet")
    }
}

fn namespace(obj: &Value) -> Health {
    match str_at(obj, &["status", "phase"]) {
        Some("Terminating") => Health::new(Status::Terminating, "namespace terminating"),
        Some("Active") | None => Health::current(),
        Some(other) => Health::new(Status::InProgress, format!("phase {other}")),
    }
}

fn crd(obj: &Value) -> Health {
    if let Some(("False", reason, msg)) = condition(obj, "NamesAccepted") {
        return Health::new(Status::Failed, join(reason, msg));
    }
    match condition(obj, "Established") {
        Some(("True", _, _)) => Health::current(),
        _ => Health::new(Status::InProgress, "CRD is not established yet"),
    }
}

fn pdb(obj: &Value) -> Health {
    let healthy = status_int(obj, "currentHealthy");
    let desired = status_int(obj, "desiredHealthy");
    if healthy < desired {
        return Health::new(
            Status::InProgress,
            format!("healthy pods: {healthy}/{desired}"),
        );
    }
    Health::current()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn deployment_rollout_states() {
        let mut d = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"generation": 2},
            "spec": {"replicas": 2},
            "status": {"observedGeneration": 1}
        });
        assert_eq!(compute(&d).status, Status::InProgress);
        d["status"] = json!({"observedGeneration": 2, "replicas": 2, "updatedReplicas": 2,
                             "availableReplicas": 1, "readyReplicas": 1});
        assert_eq!(compute(&d).status, Status::InProgress);
        d["status"]["availableReplicas"] = json!(2);
        d["status"]["readyReplicas"] = json!(2);
        assert_eq!(compute(&d), Health::current());
        d["status"]["conditions"] = json!([{"type": "Progressing", "status": "False",
                                            "reason": "ProgressDeadlineExceeded", "message": "x"}]);
        assert_eq!(compute(&d).status, Status::Failed);
    }

    #[test]
    fn job_pod_pvc_service_namespace_crd() {
        let job = json!({"apiVersion": "batch/v1", "kind": "Job",
            "status": {"conditions": [{"type": "Complete", "status": "True"}]}});
        assert_eq!(compute(&job).status, Status::Current);
        let failed = json!({"apiVersion": "batch/v1", "kind": "Job",
            "status": {"conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]}});
        assert_eq!(compute(&failed).status, Status::Failed);
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "status": {"phase": "Pending"}});
        assert_eq!(compute(&pod).status, Status::InProgress);
        let pvc = json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "status": {"phase": "Bound"}});
        assert_eq!(compute(&pvc).status, Status::Current);
        let lb = json!({"apiVersion": "v1", "kind": "Service", "spec": {"type": "LoadBalancer"}, "status": {}});
        assert_eq!(compute(&lb).status, Status::InProgress);
        let svc = json!({"apiVersion": "v1", "kind": "Service", "spec": {"type": "ClusterIP"}});
        assert_eq!(compute(&svc).status, Status::Current);
        let ns =
            json!({"apiVersion": "v1", "kind": "Namespace", "status": {"phase": "Terminating"}});
        assert_eq!(compute(&ns).status, Status::Terminating);
        let crd = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "status": {"conditions": [{"type": "Established", "status": "True"}]}});
        assert_eq!(compute(&crd).status, Status::Current);
    }

    #[test]
    fn generic_conditions() {
        let stalled = json!({"apiVersion": "x.io/v1", "kind": "Thing",
            "status": {"conditions": [{"type": "Stalled", "status": "True", "reason": "Broken"}]}});
        assert_eq!(compute(&stalled).status, Status::Failed);
        let not_ready = json!({"apiVersion": "x.io/v1", "kind": "Thing",
            "status": {"conditions": [{"type": "Ready", "status": "False", "reason": "Waiting"}]}});
        assert_eq!(compute(&not_ready).status, Status::InProgress);
        let plain = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}});
        assert_eq!(compute(&plain).status, Status::Current);
        let deleting = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "x", "deletionTimestamp": "2024-01-01T00:00:00Z"}});
        assert_eq!(compute(&deleting).status, Status::Terminating);
    }

    #[test]
    fn statefulset_and_daemonset() {
        let sts = json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "spec": {"replicas": 3},
            "status": {"replicas": 3, "readyReplicas": 3, "currentReplicas": 3, "updatedReplicas": 3,
                       "currentRevision": "a", "updateRevision": "a"}});
        assert_eq!(compute(&sts).status, Status::Current);
        let mut rolling = sts.clone();
        rolling["status"]["updateRevision"] = json!("b");
        assert_eq!(compute(&rolling).status, Status::InProgress);
        let ds = json!({"apiVersion": "apps/v1", "kind": "DaemonSet",
            "status": {"desiredNumberScheduled": 2, "currentNumberScheduled": 2,
                       "updatedNumberScheduled": 2, "numberAvailable": 1, "numberReady": 2}});
        assert_eq!(compute(&ds).status, Status::InProgress);
    }
}
