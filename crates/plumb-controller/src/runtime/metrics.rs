//! Prometheus metrics: Flux's `gotk_reconcile_duration_seconds` and `gotk_reconcile_condition`
//! (so Flux dashboards keep working) and plumb's own state metrics, served in the
//! Prometheus text format by [`serve`].
//!
//! Metrics are kept with the `prometheus-client` crate; the HTTP endpoint is a few lines on
//! tokio's TCP listener, like the health endpoints, since it answers one fixed path.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use plumb_api::meta::Condition;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Labels naming one object.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ObjectLabels {
    /// Kind, e.g. `Kustomization`.
    pub kind: String,
    /// Object name.
    pub name: String,
    /// Object namespace.
    pub namespace: String,
}

/// Labels of `gotk_reconcile_condition`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConditionLabels {
    kind: String,
    name: String,
    namespace: String,
    r#type: String,
    status: String,
}

/// Labels of `plumb_resource_info`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InfoLabels {
    kind: String,
    name: String,
    namespace: String,
    ready: String,
    suspended: String,
    revision: String,
}

/// Labels of `plumb_reconcile_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    kind: String,
    result: String,
    reason: String,
}

/// Labels of `plumb_applied_objects_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ChangeLabels {
    kind: String,
    action: String,
}

/// Labels of `plumb_git_fetch_duration_seconds`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: String,
}

/// Labels of `plumb_kube_api_requests_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    verb: String,
    code: String,
}

/// Labels of `plumb_notifications_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NotificationLabels {
    provider: String,
    result: String,
}

type Key = (String, String, String);

/// Every metric plumb exports, with their registry.
pub struct Metrics {
    registry: Registry,
    reconcile_duration: Family<ObjectLabels, Histogram>,
    condition: Family<ConditionLabels, Gauge<f64, AtomicU64>>,
    info: Family<InfoLabels, Gauge>,
    reconciles: Family<OutcomeLabels, Counter>,
    changes: Family<ChangeLabels, Counter>,
    git_fetch: Family<ResultLabels, Histogram>,
    api_requests: Family<RequestLabels, Counter>,
    notifications: Family<NotificationLabels, Counter>,
    notification_events_dropped: Counter,
    last_info: Mutex<HashMap<Key, InfoLabels>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// One reconcile's outcome, as read from the status the reconciler wrote.
#[derive(Debug, Clone, Copy)]
pub struct Observed<'a> {
    /// The object's conditions after the reconcile.
    pub conditions: &'a [Condition],
    /// Whether `spec.suspend` is set.
    pub suspended: bool,
    /// The revision applied or stored (empty when none).
    pub revision: &'a str,
}

impl Metrics {
    /// Creates the metrics and registers them.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let reconcile_duration = Family::<ObjectLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.01, 2.0, 14))
        });
        registry.register(
            "gotk_reconcile_duration_seconds",
            "The duration in seconds of a reconciliation (Flux-compatible)",
            reconcile_duration.clone(),
        );
        let condition = Family::<ConditionLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "gotk_reconcile_condition",
            "The current condition status of a reconciled object (Flux-compatible)",
            condition.clone(),
        );
        let info = Family::<InfoLabels, Gauge>::default();
        registry.register(
            "plumb_resource_info",
            "The state of a reconciled object (always 1)",
            info.clone(),
        );
        let reconciles = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "plumb_reconcile",
            "Reconciles by kind, result (success, failure, suspended) and reason",
            reconciles.clone(),
        );
        let changes = Family::<ChangeLabels, Counter>::default();
        registry.register(
            "plumb_applied_objects",
            "Objects created, configured or deleted by applies and prunes",
            changes.clone(),
        );
        let git_fetch = Family::<ResultLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.01, 2.0, 14))
        });
        registry.register(
            "plumb_git_fetch_duration_seconds",
            "The duration in seconds of git fetches, by result",
            git_fetch.clone(),
        );
        let api_requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "plumb_kube_api_requests",
            "Kubernetes API requests by verb and HTTP status code",
            api_requests.clone(),
        );
        let notifications = Family::<NotificationLabels, Counter>::default();
        registry.register(
            "plumb_notifications",
            "Notification deliveries by Provider (namespace/name) and result (success, \
             failure, retry, dropped)",
            notifications.clone(),
        );
        let notification_events_dropped = Counter::default();
        registry.register(
            "plumb_notification_events_dropped",
            "Events dropped before Alert matching because the notification intake was full",
            notification_events_dropped.clone(),
        );
        Metrics {
            notifications,
            notification_events_dropped,
            registry,
            reconcile_duration,
            condition,
            info,
            reconciles,
            changes,
            git_fetch,
            api_requests,
            last_info: Mutex::default(),
        }
    }

    /// Starts timing one reconcile; the duration is recorded when the guard drops, so a
    /// cancelled reconcile is timed too.
    pub fn reconcile_timer(&self, kind: &str, namespace: &str, name: &str) -> ReconcileTimer<'_> {
        ReconcileTimer {
            metrics: self,
            labels: ObjectLabels {
                kind: kind.to_string(),
                name: name.to_string(),
                namespace: namespace.to_string(),
            },
            start: Instant::now(),
        }
    }

    /// Records the outcome of one reconcile: the result counter by the Ready reason, the
    /// Flux condition gauge and `plumb_resource_info`.
    pub fn observe(&self, kind: &str, namespace: &str, name: &str, seen: Observed<'_>) {
        let ready =
            plumb_api::conditions::find(seen.conditions, plumb_api::consts::condition::READY);
        let ready_status = ready.map_or("Unknown", |c| c.status.as_str());
        let (result, reason) = if seen.suspended {
            ("suspended", "Suspended")
        } else {
            match ready {
                Some(c) if c.status == "True" => ("success", c.reason.as_str()),
                Some(c) => ("failure", c.reason.as_str()),
                None => ("failure", "Unknown"),
            }
        };
        self.reconciles
            .get_or_create(&OutcomeLabels {
                kind: kind.to_string(),
                result: result.to_string(),
                reason: reason.to_string(),
            })
            .inc();
        for status in ["True", "False", "Unknown", "Deleted"] {
            self.condition
                .get_or_create(&ConditionLabels {
                    kind: kind.to_string(),
                    name: name.to_string(),
                    namespace: namespace.to_string(),
                    r#type: "Ready".into(),
                    status: status.into(),
                })
                .set(if status == ready_status { 1.0 } else { 0.0 });
        }
        let labels = InfoLabels {
            kind: kind.to_string(),
            name: name.to_string(),
            namespace: namespace.to_string(),
            ready: ready_status.to_string(),
            suspended: seen.suspended.to_string(),
            revision: seen.revision.to_string(),
        };
        self.info.get_or_create(&labels).set(1);
        let key = (kind.to_string(), namespace.to_string(), name.to_string());
        if let Ok(mut last) = self.last_info.lock()
            && let Some(old) = last.insert(key, labels.clone())
            && old != labels
        {
            self.info.remove(&old);
        }
    }

    /// Forgets a deleted object: its info series goes, its Ready condition becomes `Deleted`.
    pub fn forget(&self, kind: &str, namespace: &str, name: &str) {
        let key = (kind.to_string(), namespace.to_string(), name.to_string());
        if let Ok(mut last) = self.last_info.lock()
            && let Some(old) = last.remove(&key)
        {
            self.info.remove(&old);
        }
        for status in ["True", "False", "Unknown", "Deleted"] {
            self.condition
                .get_or_create(&ConditionLabels {
                    kind: kind.to_string(),
                    name: name.to_string(),
                    namespace: namespace.to_string(),
                    r#type: "Ready".into(),
                    status: status.into(),
                })
                .set(if status == "Deleted" { 1.0 } else { 0.0 });
        }
    }

    /// Counts objects changed by an apply or prune (`action`: created, configured, deleted).
    pub fn applied(&self, kind: &str, action: &str, count: usize) {
        if count > 0 {
            self.changes
                .get_or_create(&ChangeLabels {
                    kind: kind.to_string(),
                    action: action.to_string(),
                })
                .inc_by(count as u64);
        }
    }

    /// Records one git fetch's duration.
    pub fn git_fetch(&self, seconds: f64, ok: bool) {
        self.git_fetch
            .get_or_create(&ResultLabels {
                result: if ok { "success" } else { "failure" }.into(),
            })
            .observe(seconds);
    }

    /// Counts one notification outcome of a Provider (`namespace/name`): `success`,
    /// `failure` (given up), `retry` (a retryable failure, tried again) or `dropped` (queue
    /// full).
    pub fn notification(&self, provider: &str, result: &str) {
        self.notifications
            .get_or_create(&NotificationLabels {
                provider: provider.to_string(),
                result: result.to_string(),
            })
            .inc();
    }

    /// The count of one notification outcome so far (tests and benchmarks).
    pub fn notification_count(&self, provider: &str, result: &str) -> u64 {
        self.notifications
            .get_or_create(&NotificationLabels {
                provider: provider.to_string(),
                result: result.to_string(),
            })
            .get()
    }

    /// Counts one event dropped because the notification intake was full.
    pub fn notification_event_dropped(&self) {
        self.notification_events_dropped.inc();
    }

    /// Events dropped because the notification intake was full, so far.
    pub fn notification_events_dropped(&self) -> u64 {
        self.notification_events_dropped.get()
    }

    /// Counts one Kubernetes API request (`code`: the HTTP status, or `error`).
    pub fn api_request(&self, verb: &str, code: &str) {
        self.api_requests
            .get_or_create(&RequestLabels {
                verb: verb.to_string(),
                code: code.to_string(),
            })
            .inc();
    }

    /// The metrics in the Prometheus text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// Times one reconcile (see [`Metrics::reconcile_timer`]).
#[derive(Debug)]
pub struct ReconcileTimer<'a> {
    metrics: &'a Metrics,
    labels: ObjectLabels,
    start: Instant,
}

impl Drop for ReconcileTimer<'_> {
    fn drop(&mut self) {
        self.metrics
            .reconcile_duration
            .get_or_create(&self.labels)
            .observe(self.start.elapsed().as_secs_f64());
    }
}

/// Serves `GET /metrics` on `listener` until the task is dropped.
pub async fn serve(listener: tokio::net::TcpListener, metrics: Arc<Metrics>) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            continue;
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let Some(path) = read_request_path(&mut stream).await else {
                return;
            };
            let (code, ctype, body) = if path == "/metrics" {
                (
                    "200 OK",
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    metrics.encode(),
                )
            } else {
                ("404 Not Found", "text/plain", "not found".to_string())
            };
            let head = format!(
                "HTTP/1.1 {code}\r\ncontent-type: {ctype}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes()).await;
            let _ = stream.write_all(body.as_bytes()).await;
        });
    }
}

/// How long a client of the metrics and health endpoints has to send its request head.
pub const HEAD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Reads an HTTP/1 request head (up to 8 KiB, within [`HEAD_TIMEOUT`] in all: a client
/// sending a byte at a time is cut off too) and returns its path without the query.
pub async fn read_request_path(stream: &mut tokio::net::TcpStream) -> Option<String> {
    read_request_path_within(stream, HEAD_TIMEOUT).await
}

/// [`read_request_path`] with a deadline of `limit` for the whole head.
pub async fn read_request_path_within(
    stream: &mut tokio::net::TcpStream,
    limit: std::time::Duration,
) -> Option<String> {
    let mut buf = Vec::with_capacity(1024);
    let read_head = async {
        let mut chunk = [0u8; 1024];
        loop {
            let n = stream.read(&mut chunk).await.ok()?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
            if buf.windows(4).any(|w| w == b"\r\n\r\n") || buf.len() > 8192 {
                break;
            }
        }
        Some(())
    };
    tokio::time::timeout(limit, read_head).await.ok()??;
    let head = String::from_utf8_lossy(&buf);
    let target = head.split_whitespace().nth(1)?;
    Some(target.split('?').next().unwrap_or(target).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hand-rolled endpoints give a client one deadline for its whole head, so a byte
    /// every 200 ms does not keep the connection open.
    #[tokio::test]
    async fn a_slow_request_head_is_cut_off() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let limit = std::time::Duration::from_secs(1);
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            assert_eq!(read_request_path_within(&mut s, limit).await, None);
        });
        let open = plumb_testing::slow::slowloris(addr, "/metrics", limit * 10)
            .await
            .expect("the slow client was never disconnected");
        assert!(open >= limit && open < limit * 3, "{open:?}");
    }
}
