//! In-process notifications: every event plumb publishes ([`Context::event`]) also goes,
//! without waiting, to the [`Dispatcher`], which sends it through the Providers of the
//! Alerts that match it, as Flux's notification-controller does with the events its
//! controllers post to it (no HTTP hop here).
//!
//! Flow: [`Dispatcher::publish`] (a non-blocking `try_send` into a bounded intake; a full
//! intake drops the event, counted and warned about in `dropped.rs`) -> [`run`]'s intake
//! task: Flux's rate limit of identical events (`limit.rs`), the object's labels read when
//! an Alert's `matchLabels` needs them and the publisher had none (`labels.rs`), the Ready
//! and matching Alerts of the watch store (`matching.rs`), the
//! Provider as its reconciler resolved it (`resolve.rs`), the Alert's metadata merged in and
//! the commit status key computed -> the Provider's worker (`worker.rs`: bounded queue,
//! retries with backoff, metrics, Warning event). A slow Provider fills its own queue only.
//!
//! Commit-status updates (`commit_status: update`, on Kustomization and HelmRelease
//! successes) go to commit-status Providers only, as Flux's notifiers skip them.

mod dropped;
pub mod github_app;
mod labels;
pub mod limit;
pub mod matching;
pub mod resolve;
pub mod worker;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;
use kube::ResourceExt;
use kube::runtime::reflector::{ObjectRef, Store};
use plumb_api::consts::condition;
use plumb_api::{Alert, Provider};
use plumb_notify::{Event, InvolvedObject, Severity};
use tokio::sync::mpsc;

use crate::context::Context;
pub use resolve::Resolved;
pub use worker::REASON_NOTIFICATION_FAILED;

/// Events waiting for the intake task at most (the intake only matches and enqueues).
const INTAKE: usize = 10_000;

/// Delivery settings (tests and benchmarks shorten them).
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// Events queued per Provider at most; more are dropped (`result="dropped"`).
    pub queue: usize,
    /// Retries of a retryable failure (429, 5xx, no answer).
    pub retries: u32,
    /// The first retry's delay; doubled each time.
    pub backoff: Duration,
    /// Failures in a row before the Warning event on the Provider.
    pub warn_after: u32,
    /// Flux's rate-limit interval for identical events (zero turns it off).
    pub rate_limit: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            queue: 100,
            retries: 3,
            backoff: Duration::from_secs(2),
            warn_after: 3,
            rate_limit: limit::DEFAULT_INTERVAL,
        }
    }
}

/// What plumb knows about an event's object beyond its reference.
#[derive(Clone, Debug, Default)]
pub struct Origin {
    /// The object's labels (for Alerts' `matchLabels`).
    pub labels: BTreeMap<String, String>,
    /// Flux's event metadata without the group prefix: `revision`, `token`,
    /// `commit_status`.
    pub metadata: BTreeMap<String, String>,
}

struct Published {
    event: Event,
    labels: BTreeMap<String, String>,
}

/// The in-process event router of one [`Context`] (its memo).
pub struct Dispatcher {
    tx: mpsc::Sender<Published>,
    rx: Mutex<Option<mpsc::Receiver<Published>>>,
    enabled: AtomicBool,
    alerts: RwLock<Option<Store<Alert>>>,
    provider_store: RwLock<Option<Store<Provider>>>,
    providers: RwLock<HashMap<String, Arc<Resolved>>>,
    options: RwLock<Options>,
    /// The metrics of the context [`run`] serves (for intake drops).
    metrics: RwLock<Option<Arc<crate::metrics::Metrics>>>,
    drops: Mutex<dropped::DropLog>,
}

impl Default for Dispatcher {
    fn default() -> Self {
        Self::with_intake(INTAKE)
    }
}

impl Dispatcher {
    /// A dispatcher whose intake holds `capacity` events.
    fn with_intake(capacity: usize) -> Self {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        Dispatcher {
            tx,
            rx: Mutex::new(Some(rx)),
            enabled: AtomicBool::new(false),
            alerts: RwLock::default(),
            provider_store: RwLock::default(),
            providers: RwLock::default(),
            options: RwLock::default(),
            metrics: RwLock::default(),
            drops: Mutex::default(),
        }
    }

    /// Counts an event the intake had no room for; warns now and then.
    fn dropped(&self) {
        if let Some(m) = self.metrics.read().ok().and_then(|m| m.clone()) {
            m.notification_event_dropped();
        }
        let due = self
            .drops
            .lock()
            .ok()
            .and_then(|mut l| l.note(Instant::now()));
        if let Some(n) = due {
            tracing::warn!(
                dropped = n,
                "notification intake full: {n} event(s) dropped since the last warning \
                 (plumb_notification_events_dropped_total)"
            );
        }
    }
}

/// A duration as Go prints it (`10m0s`, `1h0m0s`, `30s`), for Flux's event messages.
pub fn go_duration(d: Duration) -> String {
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let frac = d.subsec_millis();
    let s = if frac > 0 {
        format!("{s}.{frac:03}").trim_end_matches('0').to_string() + "s"
    } else {
        format!("{s}s")
    };
    match (h, m) {
        (0, 0) => s,
        (0, m) => format!("{m}m{s}"),
        (h, m) => format!("{h}h{m}m{s}"),
    }
}

fn reporting_instance() -> String {
    std::env::var("POD_NAME").unwrap_or_default()
}

impl Dispatcher {
    /// Replaces the delivery settings (workers started later use them).
    pub fn set_options(&self, o: Options) {
        if let Ok(mut w) = self.options.write() {
            *w = o;
        }
    }

    fn options(&self) -> Options {
        self.options.read().map(|o| *o).unwrap_or_default()
    }

    /// The Alerts' watch store, set by the Alert controller.
    pub(crate) fn set_alerts(&self, store: Store<Alert>) {
        if let Ok(mut w) = self.alerts.write() {
            *w = Some(store);
        }
    }

    /// The Providers' watch store, set by the Provider controller (a deleted Provider is
    /// gone from it at once; its resolved entry is then ignored).
    pub(crate) fn set_provider_store(&self, store: Store<Provider>) {
        if let Ok(mut w) = self.provider_store.write() {
            *w = Some(store);
        }
    }

    /// Whether the resolved Provider still exists with the same UID.
    fn exists(&self, r: &Resolved) -> bool {
        let Some(store) = self.provider_store.read().ok().and_then(|s| s.clone()) else {
            return true;
        };
        let ns = r.provider.namespace().unwrap_or_default();
        let oref = ObjectRef::new(&r.provider.name_any()).within(&ns);
        store
            .get(&oref)
            .is_some_and(|p| p.uid().unwrap_or_default() == r.uid)
    }

    /// Records a Provider as resolved by its reconcile (or forgets it with `None`).
    pub(crate) fn set_provider(&self, key: &str, resolved: Option<Arc<Resolved>>) {
        if let Ok(mut w) = self.providers.write() {
            match resolved {
                Some(r) => w.insert(key.to_string(), r),
                None => w.remove(key),
            };
        }
    }

    /// Whether Provider `key` is resolved.
    pub fn has_provider(&self, key: &str) -> bool {
        self.providers.read().is_ok_and(|m| m.contains_key(key))
    }

    /// Hands an event to the dispatcher without waiting; dropped when notifications are not
    /// running or the intake is full.
    pub fn publish(
        &self,
        obj: &ObjectReference,
        warning: bool,
        reason: &str,
        note: &str,
        origin: Origin,
    ) {
        if !self.enabled.load(Ordering::Relaxed) {
            return;
        }
        let kind = obj.kind.clone().unwrap_or_default();
        let event = Event {
            involved_object: InvolvedObject {
                kind: kind.clone(),
                namespace: obj.namespace.clone().unwrap_or_default(),
                name: obj.name.clone().unwrap_or_default(),
                uid: obj.uid.clone().unwrap_or_default(),
                api_version: obj.api_version.clone().unwrap_or_default(),
                resource_version: obj.resource_version.clone().unwrap_or_default(),
            },
            severity: if warning {
                Severity::Error
            } else {
                Severity::Info
            },
            timestamp: chrono::Utc::now(),
            message: note.to_string(),
            reason: reason.to_string(),
            metadata: origin.metadata,
            reporting_controller: matching::reporting_controller(&kind).to_string(),
            reporting_instance: reporting_instance(),
        };
        if self
            .tx
            .try_send(Published {
                event,
                labels: origin.labels,
            })
            .is_err()
        {
            self.dropped();
        }
    }
}

/// Whether an Alert's stored status says Ready.
fn is_ready(alert: &Alert) -> bool {
    alert.status.as_ref().is_some_and(|s| {
        plumb_api::conditions::find(&s.conditions, condition::READY)
            .is_some_and(|c| c.status == "True")
    })
}

/// The jobs one event makes: one per matching, Ready, unsuspended Alert whose Provider is
/// resolved and takes this event.
fn route(
    ctx: &Context,
    d: &Dispatcher,
    p: &Published,
    regexes: &mut matching::Regexes,
) -> Vec<worker::Job> {
    let Some(store) = d.alerts.read().ok().and_then(|s| s.clone()) else {
        return Vec::new();
    };
    let providers = match d.providers.read() {
        Ok(m) => m.clone(),
        Err(_) => return Vec::new(),
    };
    let mut jobs = Vec::new();
    for alert in store.state() {
        if !is_ready(&alert) || !matching::alert_matches(&alert, &p.event, &p.labels, regexes) {
            continue;
        }
        let ns = alert.namespace().unwrap_or_default();
        if ctx.config.no_cross_namespace_refs && p.event.involved_object.namespace != ns {
            continue;
        }
        let key = format!("{ns}/{}", alert.spec.provider_ref.name);
        let Some(provider) = providers.get(&key).filter(|r| d.exists(r)) else {
            continue;
        };
        let commit_status = provider.provider.is_commit_status();
        if provider.provider.spec.suspend || (p.event.is_commit_status_update() && !commit_status) {
            continue;
        }
        let event = matching::with_alert_metadata(&p.event, &alert);
        let commit_status_key = if commit_status {
            match matching::commit_status_key(&provider.provider, &alert, &event) {
                Ok(k) => Some(k),
                Err(e) => {
                    ctx.metrics.notification(&key, "failure");
                    tracing::warn!(provider = %key, error = %e, "commit status key");
                    continue;
                }
            }
        } else {
            None
        };
        jobs.push(worker::Job {
            provider: provider.clone(),
            event,
            commit_status_key,
        });
    }
    jobs
}

/// The intake receiver while [`run`] holds it.
struct Intake {
    d: Arc<Dispatcher>,
    rx: Option<mpsc::Receiver<Published>>,
}

impl Drop for Intake {
    fn drop(&mut self) {
        self.d.enabled.store(false, Ordering::Relaxed);
        if let (Ok(mut slot), Some(rx)) = (self.d.rx.lock(), self.rx.take()) {
            *slot = Some(rx);
        }
    }
}

/// Runs the dispatcher of `ctx` until the process ends: turns publishing on and routes
/// every published event to the workers of its Providers.
pub async fn run(ctx: Arc<Context>) {
    let d = ctx.memo::<Dispatcher>();
    let Some(rx) = d.rx.lock().ok().and_then(|mut r| r.take()) else {
        return;
    };
    // Hands the intake back when this future is dropped (leadership lost), so that the
    // next run of the controllers on this context dispatches again.
    let mut guard = Intake {
        d: d.clone(),
        rx: Some(rx),
    };
    let Some(rx) = guard.rx.as_mut() else {
        return;
    };
    if let Ok(mut m) = d.metrics.write() {
        *m = Some(ctx.metrics.clone());
    }
    d.enabled.store(true, Ordering::Relaxed);
    let mut limiter = limit::Limiter::new(d.options().rate_limit);
    let mut regexes = matching::Regexes::default();
    let mut workers: HashMap<String, mpsc::Sender<worker::Job>> = HashMap::new();
    // The channel's senders live as long as the context, so stop on the process's shutdown
    // signal as the controllers next to this loop do.
    let stop = crate::runtime::signal::shutdown_signal();
    tokio::pin!(stop);
    loop {
        let p = tokio::select! {
            p = rx.recv() => p,
            () = &mut stop => None,
        };
        let Some(mut p) = p else { break };
        limiter.set_interval(d.options().rate_limit);
        if !limiter.allow(&p.event, Instant::now()) {
            continue;
        }
        if p.labels.is_empty()
            && let Some(store) = d.alerts.read().ok().and_then(|s| s.clone())
            && labels::wanted(&store, &p.event)
            && let Some(l) = labels::lookup(&ctx.client, &p.event.involved_object).await
        {
            p.labels = l;
        }
        for job in route(&ctx, &d, &p, &mut regexes) {
            let key = job.provider.key.clone();
            let tx = workers
                .entry(key.clone())
                .or_insert_with(|| worker::spawn(ctx.clone(), d.options()));
            if let Err(mpsc::error::TrySendError::Full(_)) = tx.try_send(job) {
                ctx.metrics.notification(&key, "dropped");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_intake_comes_back_when_the_dispatcher_stops() {
        // A client of nothing: the dispatcher makes no request without Alerts.
        let cfg = kube::Config::new("http://127.0.0.1:9".parse().unwrap());
        let client = kube::Client::try_from(cfg.clone()).unwrap();
        let storage = std::env::temp_dir().join(format!("plumb-notify-{}", std::process::id()));
        let config = crate::context::Config {
            storage_path: storage,
            ..Default::default()
        };
        let ctx = Context::new(client, cfg, config);
        let d = ctx.memo::<Dispatcher>();
        for _ in 0..2 {
            let run = tokio::spawn(run(ctx.clone()));
            plumb_testing::wait::poll("dispatcher running", Duration::from_secs(5), || async {
                d.enabled.load(Ordering::Relaxed).then_some(())
            })
            .await
            .unwrap();
            run.abort();
            let _ = run.await;
            assert!(!d.enabled.load(Ordering::Relaxed));
            assert!(d.rx.lock().unwrap().is_some());
        }
    }

    #[test]
    fn a_full_intake_counts_what_it_drops() {
        let d = Dispatcher::with_intake(2);
        let metrics = Arc::new(crate::metrics::Metrics::new());
        *d.metrics.write().unwrap() = Some(metrics.clone());
        d.enabled.store(true, Ordering::Relaxed);
        let obj = ObjectReference {
            kind: Some("Kustomization".into()),
            name: Some("apps".into()),
            ..Default::default()
        };
        for i in 0..5 {
            d.publish(
                &obj,
                false,
                "Reason",
                &format!("event {i}"),
                Origin::default(),
            );
        }
        assert_eq!(metrics.notification_events_dropped(), 3);
        let mut rx = d.rx.lock().unwrap().take().unwrap();
        assert_eq!(rx.try_recv().unwrap().event.message, "event 0");
        assert_eq!(rx.try_recv().unwrap().event.message, "event 1");
        assert!(rx.try_recv().is_err());
        // Room again: nothing more is dropped.
        d.publish(&obj, false, "Reason", "event 5", Origin::default());
        assert_eq!(metrics.notification_events_dropped(), 3);
        let text = metrics.encode();
        assert!(
            text.contains("plumb_notification_events_dropped_total 3"),
            "{text}"
        );
    }

    #[test]
    fn go_duration_prints_like_go() {
        assert_eq!(go_duration(Duration::from_secs(600)), "10m0s");
        assert_eq!(go_duration(Duration::from_secs(3600)), "1h0m0s");
        assert_eq!(go_duration(Duration::from_secs(30)), "30s");
        assert_eq!(go_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(go_duration(Duration::from_secs(5400)), "1h30m0s");
    }
}
