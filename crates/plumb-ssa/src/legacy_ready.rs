//! Helm 3's readiness rules (`waitStrategy: legacy` of a HelmRelease), as Helm's
//! `kube/ready.go` has them: Pods Ready; Jobs complete (failed past their backoff limit is
//! a failure); Deployments whose new ReplicaSet has at least `replicas - maxUnavailable`
//! ready replicas (paused ones count as ready); DaemonSets and StatefulSets by their
//! rolling-update counters; PVCs Bound; Services with a cluster IP (and, for load
//! balancers, an ingress or an external IP); CRDs Established; ReplicaSets and
//! ReplicationControllers observed and their pods Ready. Every other kind is ready.
//!
//! Pure functions over JSON: [`related`] says which other objects a rule reads (a
//! Deployment's ReplicaSets, a ReplicaSet's pods), [`ready`] judges an object with them.

use serde_json::Value;

use crate::kstatus::{Health, Status};

/// Other objects a rule needs, listed in the object's namespace by a label selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Related {
    /// `ReplicaSet` or `Pod`.
    pub kind: &'static str,
    /// A label selector in the API's string form (`a=b,c in (d),!e`).
    pub selector: String,
}

/// What [`ready`] needs besides `obj` itself: a Deployment's ReplicaSets, the pods of a
/// ReplicaSet or ReplicationController. `None` when the rule reads the object alone (or
/// when the object has no usable selector).
pub fn related(obj: &Value) -> Option<Related> {
    match (group(obj), kind(obj)) {
        ("apps", "Deployment") if !bool_at(obj, "/spec/paused") => Some(Related {
            kind: "ReplicaSet",
            selector: selector_string(obj.pointer("/spec/selector")?)?,
        }),
        ("apps", "ReplicaSet") => Some(Related {
            kind: "Pod",
            selector: selector_string(obj.pointer("/spec/selector")?)?,
        }),
        ("", "ReplicationController") => Some(Related {
            kind: "Pod",
            selector: map_selector(obj.pointer("/spec/selector")?)?,
        }),
        _ => None,
    }
}

/// Whether `obj` is ready by Helm 3's rules; `related` holds the objects [`related`] asked
/// for (empty otherwise).
pub fn ready(obj: &Value, related: &[Value]) -> Health {
    let verdict = match (group(obj), kind(obj)) {
        ("", "Pod") => pod_ready(obj),
        ("batch", "Job") => return job_ready(obj),
        ("apps", "Deployment") => deployment_ready(obj, related),
        ("", "PersistentVolumeClaim") => {
            check(str_at(obj, "/status/phase") == "Bound", "not Bound")
        }
        ("", "Service") => service_ready(obj),
        ("apps", "DaemonSet") => daemon_set_ready(obj),
        ("apiextensions.k8s.io", "CustomResourceDefinition") => crd_ready(obj),
        ("apps", "StatefulSet") => stateful_set_ready(obj),
        ("", "ReplicationController") | ("apps", "ReplicaSet") => {
            observed(obj).and_then(|()| pods_ready(related))
        }
        _ => Ok(()),
    };
    match verdict {
        Ok(()) => Health {
            status: Status::Current,
            message: String::new(),
        },
        Err(m) => Health {
            status: Status::InProgress,
            message: m,
        },
    }
}

type Verdict = Result<(), String>;

fn check(ok: bool, why: &str) -> Verdict {
    if ok { Ok(()) } else { Err(why.to_string()) }
}

fn group(obj: &Value) -> &str {
    let av = str_at(obj, "/apiVersion");
    av.rsplit_once('/').map_or("", |(g, _)| g)
}

fn kind(obj: &Value) -> &str {
    str_at(obj, "/kind")
}

fn str_at<'a>(obj: &'a Value, p: &str) -> &'a str {
    obj.pointer(p).and_then(Value::as_str).unwrap_or("")
}

fn int_at(obj: &Value, p: &str) -> Option<i64> {
    obj.pointer(p).and_then(Value::as_i64)
}

fn bool_at(obj: &Value, p: &str) -> bool {
    obj.pointer(p).and_then(Value::as_bool).unwrap_or(false)
}

/// `status.observedGeneration` equals `metadata.generation` (both default to 0, as Go's
/// zero values).
fn observed(obj: &Value) -> Verdict {
    let want = int_at(obj, "/metadata/generation").unwrap_or(0);
    let seen = int_at(obj, "/status/observedGeneration").unwrap_or(0);
    check(
        seen == want,
        &format!("observed generation {seen}, expected {want}"),
    )
}

fn has_condition(obj: &Value, ty: &str, status: &str) -> bool {
    obj.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| str_at(c, "/type") == ty && str_at(c, "/status") == status)
        })
}

fn pod_ready(pod: &Value) -> Verdict {
    check(has_condition(pod, "Ready", "True"), "pod is not Ready")
}

fn pods_ready(pods: &[Value]) -> Verdict {
    match pods.iter().find(|p| pod_ready(p).is_err()) {
        Some(p) => Err(format!("pod {} is not Ready", str_at(p, "/metadata/name"))),
        None => Ok(()),
    }
}

fn job_ready(job: &Value) -> Health {
    let failed = int_at(job, "/status/failed").unwrap_or(0);
    let backoff = int_at(job, "/spec/backoffLimit").unwrap_or(6);
    if failed > backoff {
        return Health {
            status: Status::Failed,
            message: "job is failed".into(),
        };
    }
    let succeeded = int_at(job, "/status/succeeded").unwrap_or(0);
    match int_at(job, "/spec/completions") {
        Some(c) if succeeded < c => Health {
            status: Status::InProgress,
            message: format!("job has {succeeded} of {c} completions"),
        },
        _ => Health {
            status: Status::Current,
            message: String::new(),
        },
    }
}

fn service_ready(svc: &Value) -> Verdict {
    let ty = str_at(svc, "/spec/type");
    if ty == "ExternalName" {
        return Ok(());
    }
    check(
        !str_at(svc, "/spec/clusterIP").is_empty(),
        "service has no cluster IP",
    )?;
    if ty == "LoadBalancer" {
        let external = svc
            .pointer("/spec/externalIPs")
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty());
        let ingress = svc
            .pointer("/status/loadBalancer/ingress")
            .is_some_and(|i| !i.is_null());
        return check(external || ingress, "load balancer has no ingress");
    }
    Ok(())
}

fn crd_ready(crd: &Value) -> Verdict {
    // A naming conflict (NamesAccepted=False) is not the wait's to fail.
    check(
        has_condition(crd, "Established", "True") || has_condition(crd, "NamesAccepted", "False"),
        "not Established",
    )
}

/// An int-or-percent scaled against `total` (Kubernetes' `GetScaledValueFromIntOrPercent`);
/// `None` when malformed.
fn scaled(v: Option<&Value>, total: i64, round_up: bool) -> Option<i64> {
    match v {
        None | Some(Value::Null) => Some(0),
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(s)) => {
            let pct: i64 = s.strip_suffix('%')?.parse().ok()?;
            let x = pct * total;
            Some(if round_up {
                (x + 99).div_euclid(100)
            } else {
                x.div_euclid(100)
            })
        }
        Some(_) => None,
    }
}

/// Kubernetes' `MaxUnavailable` of a Deployment: 0 unless it rolls; surge and
/// unavailability both 0 mean 1; never more than the replicas.
fn max_unavailable(dep: &Value, replicas: i64) -> i64 {
    if str_at(dep, "/spec/strategy/type") != "RollingUpdate" || replicas == 0 {
        return 0;
    }
    let ru = dep.pointer("/spec/strategy/rollingUpdate");
    let at = |k: &str| ru.and_then(|r| r.get(k));
    // Defaults (25%) are set by the API server; a malformed value counts as 0 as
    // validation would have refused it.
    let surge = scaled(at("maxSurge"), replicas, true).unwrap_or(0);
    let mut unavailable = scaled(at("maxUnavailable"), replicas, false).unwrap_or(0);
    if surge == 0 && unavailable == 0 {
        unavailable = 1;
    }
    unavailable.min(replicas)
}

/// A pod template without the `pod-template-hash` label (Kubernetes' `EqualIgnoreHash`).
fn template_sans_hash(obj: &Value) -> Value {
    let mut t = obj.pointer("/spec/template").cloned().unwrap_or_default();
    if let Some(labels) = t
        .pointer_mut("/metadata/labels")
        .and_then(Value::as_object_mut)
    {
        labels.remove("pod-template-hash");
        if labels.is_empty()
            && let Some(m) = t.pointer_mut("/metadata").and_then(Value::as_object_mut)
        {
            m.remove("labels");
        }
    }
    t
}

/// The Deployment's new ReplicaSet: one it controls whose template equals its own (the
/// oldest when several do), as Kubernetes' `FindNewReplicaSet`.
fn new_replica_set<'a>(dep: &Value, sets: &'a [Value]) -> Option<&'a Value> {
    let uid = str_at(dep, "/metadata/uid");
    let template = template_sans_hash(dep);
    let mut owned: Vec<&Value> = sets
        .iter()
        .filter(|rs| {
            rs.pointer("/metadata/ownerReferences")
                .and_then(Value::as_array)
                .is_some_and(|os| {
                    os.iter()
                        .any(|o| str_at(o, "/uid") == uid && bool_at(o, "/controller"))
                })
        })
        .filter(|rs| template_sans_hash(rs) == template)
        .collect();
    owned.sort_by(|a, b| {
        str_at(a, "/metadata/creationTimestamp")
            .cmp(str_at(b, "/metadata/creationTimestamp"))
            .then_with(|| str_at(a, "/metadata/name").cmp(str_at(b, "/metadata/name")))
    });
    owned.first().copied()
}

fn deployment_ready(dep: &Value, sets: &[Value]) -> Verdict {
    // Helm's wait counts a paused Deployment as ready.
    if bool_at(dep, "/spec/paused") {
        return Ok(());
    }
    let rs = new_replica_set(dep, sets).ok_or("new ReplicaSet not found")?;
    observed(rs).map_err(|m| format!("new ReplicaSet: {m}"))?;
    observed(dep)?;
    let replicas = int_at(dep, "/spec/replicas").unwrap_or(1);
    let expected = replicas - max_unavailable(dep, replicas);
    let ready = int_at(rs, "/status/readyReplicas").unwrap_or(0);
    check(
        ready >= expected,
        &format!("{ready} of {expected} expected pods ready"),
    )
}

fn daemon_set_ready(ds: &Value) -> Verdict {
    observed(ds)?;
    if str_at(ds, "/spec/updateStrategy/type") != "RollingUpdate" {
        return Ok(());
    }
    let desired = int_at(ds, "/status/desiredNumberScheduled").unwrap_or(0);
    let updated = int_at(ds, "/status/updatedNumberScheduled").unwrap_or(0);
    check(
        updated == desired,
        &format!("{updated} of {desired} updated pods scheduled"),
    )?;
    let max = scaled(
        ds.pointer("/spec/updateStrategy/rollingUpdate/maxUnavailable"),
        desired,
        true,
    )
    .unwrap_or(desired);
    let expected = desired - max;
    let ready = int_at(ds, "/status/numberReady").unwrap_or(0);
    check(
        ready >= expected,
        &format!("{ready} of {expected} expected pods ready"),
    )
}

fn stateful_set_ready(sts: &Value) -> Verdict {
    observed(sts)?;
    if str_at(sts, "/spec/updateStrategy/type") != "RollingUpdate" {
        return Ok(());
    }
    let partition = int_at(sts, "/spec/updateStrategy/rollingUpdate/partition").unwrap_or(0);
    let replicas = int_at(sts, "/spec/replicas").unwrap_or(1);
    let expected = replicas - partition;
    let updated = int_at(sts, "/status/updatedReplicas").unwrap_or(0);
    check(
        updated >= expected,
        &format!("{updated} of {expected} pods updated"),
    )?;
    let ready = int_at(sts, "/status/readyReplicas").unwrap_or(0);
    check(
        ready == replicas,
        &format!("{ready} of {replicas} pods ready"),
    )?;
    // Only a full rollout ends with the current revision being the update revision.
    check(
        partition != 0
            || str_at(sts, "/status/currentRevision") == str_at(sts, "/status/updateRevision"),
        "current revision is not the update revision",
    )
}

/// A `metav1.LabelSelector` as a selector string; `None` when it selects nothing usable.
fn selector_string(sel: &Value) -> Option<String> {
    let mut parts = Vec::new();
    if let Some(m) = sel.get("matchLabels").and_then(Value::as_object) {
        parts.extend(
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or(""))),
        );
    }
    for e in sel
        .get("matchExpressions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let key = str_at(e, "/key");
        let values: Vec<&str> = e
            .get("values")
            .and_then(Value::as_array)
            .map(|vs| vs.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        parts.push(match str_at(e, "/operator") {
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "Exists" => key.to_string(),
            "DoesNotExist" => format!("!{key}"),
            _ => return None,
        });
    }
    (!parts.is_empty()).then(|| parts.join(","))
}

/// A ReplicationController's map selector as a selector string.
fn map_selector(sel: &Value) -> Option<String> {
    selector_string(&serde_json::json!({ "matchLabels": sel }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment(replicas: i64, strategy: Value) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "d", "uid": "u1", "generation": 2},
            "spec": {"replicas": replicas, "strategy": strategy,
                "selector": {"matchLabels": {"app": "d"}},
                "template": {"metadata": {"labels": {"app": "d"}}, "spec": {"containers": []}}},
            "status": {"observedGeneration": 2}})
    }

    fn replica_set(ready: i64, owner: &str) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": "d-1", "generation": 1,
                "ownerReferences": [{"uid": owner, "controller": true}]},
            "spec": {"template": {"metadata": {"labels": {"app": "d", "pod-template-hash": "x"}},
                "spec": {"containers": []}}},
            "status": {"observedGeneration": 1, "readyReplicas": ready}})
    }

    fn is_ready(obj: &Value, related: &[Value]) -> bool {
        ready(obj, related).status == Status::Current
    }

    #[test]
    fn deployment_needs_its_new_replica_set_ready_up_to_max_unavailable() {
        let rolling = json!({"type": "RollingUpdate",
            "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}});
        let d = deployment(4, rolling.clone());
        assert_eq!(related(&d).unwrap().selector, "app=d");
        assert!(!is_ready(&d, &[]), "no ReplicaSet yet");
        assert!(!is_ready(&d, &[replica_set(2, "u1")]), "3 of 4 expected");
        assert!(is_ready(&d, &[replica_set(3, "u1")]));
        assert!(
            !is_ready(&d, &[replica_set(4, "other")]),
            "not its ReplicaSet"
        );
        let recreate = deployment(4, json!({"type": "Recreate"}));
        assert!(!is_ready(&recreate, &[replica_set(3, "u1")]));
        assert!(is_ready(&recreate, &[replica_set(4, "u1")]));
        // maxSurge and maxUnavailable both 0 still allow one unavailable pod.
        let zero = deployment(
            2,
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 0}}),
        );
        assert!(is_ready(&zero, &[replica_set(1, "u1")]));
        let mut stale = d.clone();
        stale["status"]["observedGeneration"] = json!(1);
        assert!(!is_ready(&stale, &[replica_set(4, "u1")]));
        let mut paused = d;
        paused["spec"]["paused"] = json!(true);
        assert!(is_ready(&paused, &[]));
        assert_eq!(related(&paused), None);
    }

    #[test]
    fn stateful_sets_and_daemon_sets_follow_their_rollouts() {
        let sts = |updated, ready, partition| {
            json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"generation": 1},
                "spec": {"replicas": 3, "updateStrategy": {"type": "RollingUpdate",
                    "rollingUpdate": {"partition": partition}}},
                "status": {"observedGeneration": 1, "updatedReplicas": updated,
                    "readyReplicas": ready, "currentRevision": "a", "updateRevision": "b"}})
        };
        assert!(!is_ready(&sts(1, 3, 1), &[]), "2 updated expected");
        assert!(
            is_ready(&sts(2, 3, 1), &[]),
            "partitioned: revisions may differ"
        );
        assert!(!is_ready(&sts(3, 3, 0), &[]), "full rollout not finished");
        let ds = |updated, ready| {
            json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"generation": 1},
                "spec": {"updateStrategy": {"type": "RollingUpdate",
                    "rollingUpdate": {"maxUnavailable": 1}}},
                "status": {"observedGeneration": 1, "desiredNumberScheduled": 3,
                    "updatedNumberScheduled": updated, "numberReady": ready}})
        };
        assert!(!is_ready(&ds(2, 3), &[]));
        assert!(!is_ready(&ds(3, 1), &[]));
        assert!(is_ready(&ds(3, 2), &[]));
    }

    #[test]
    fn simple_kinds() {
        let pvc = |phase| json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "status": {"phase": phase}});
        assert!(!is_ready(&pvc("Pending"), &[]));
        assert!(is_ready(&pvc("Bound"), &[]));
        let svc = |spec: Value, status: Value| json!({"apiVersion": "v1", "kind": "Service", "spec": spec, "status": status});
        assert!(!is_ready(&svc(json!({}), json!({})), &[]));
        assert!(is_ready(
            &svc(json!({"clusterIP": "10.0.0.1"}), json!({})),
            &[]
        ));
        let lb = json!({"clusterIP": "10.0.0.1", "type": "LoadBalancer"});
        assert!(!is_ready(
            &svc(lb.clone(), json!({"loadBalancer": {}})),
            &[]
        ));
        assert!(is_ready(
            &svc(
                lb,
                json!({"loadBalancer": {"ingress": [{"ip": "1.2.3.4"}]}})
            ),
            &[]
        ));
        assert!(is_ready(
            &svc(json!({"type": "ExternalName"}), json!({})),
            &[]
        ));
        let pod = |s| json!({"apiVersion": "v1", "kind": "Pod", "status": {"conditions": [{"type": "Ready", "status": s}]}});
        assert!(!is_ready(&pod("False"), &[]));
        assert!(is_ready(&pod("True"), &[]));
        let job = |succeeded, failed| {
            json!({"apiVersion": "batch/v1", "kind": "Job",
            "spec": {"completions": 1, "backoffLimit": 2}, "status": {"succeeded": succeeded, "failed": failed}})
        };
        assert_eq!(ready(&job(0, 0), &[]).status, Status::InProgress);
        assert_eq!(ready(&job(1, 0), &[]).status, Status::Current);
        assert_eq!(ready(&job(0, 3), &[]).status, Status::Failed);
        let crd = |t, s| {
            json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "status": {"conditions": [{"type": t, "status": s}]}})
        };
        assert!(!is_ready(&crd("Established", "False"), &[]));
        assert!(is_ready(&crd("Established", "True"), &[]));
        assert!(is_ready(&crd("NamesAccepted", "False"), &[]));
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap"});
        assert!(is_ready(&cm, &[]));
        let rs = json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"generation": 1},
            "spec": {"selector": {"matchLabels": {"a": "b"},
                "matchExpressions": [{"key": "t", "operator": "In", "values": ["x", "y"]},
                    {"key": "u", "operator": "DoesNotExist"}]}},
            "status": {"observedGeneration": 1}});
        assert_eq!(related(&rs).unwrap().selector, "a=b,t in (x,y),!u");
        assert!(!is_ready(&rs, &[pod("False")]));
        assert!(is_ready(&rs, &[pod("True")]));
    }
}
