//! What every reconciler shares: the client, artifact storage, the apply engine, the
//! event recorder and the configuration.

use std::any::{Any, TypeId};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use plumb_source::artifact::Storage;

/// Controller settings (the `plumb run` flags that reconcilers read).
#[derive(Clone)]
pub struct Config {
    /// Where artifacts and the git cache live.
    pub storage_path: PathBuf,
    /// Host:port at which other controllers reach the artifact server.
    pub storage_adv_addr: String,
    /// Interval jitter in percent.
    pub jitter_percent: u32,
    /// How often a Kustomization waiting on a dependency is retried.
    pub requeue_dependency: Duration,
    /// Concurrent applies per Kustomization.
    pub apply_concurrency: usize,
    /// Artifacts kept per object besides the current one.
    pub artifact_retention_records: usize,
    /// Age after which old artifacts are removed.
    pub artifact_retention_ttl: Duration,
    /// Refuse to prune more than this share (0..=1) of an inventory in one pass, unless
    /// the Kustomization allows it with the prune-budget annotation.
    pub prune_budget: f64,
    /// A postBuild variable without a value is an error instead of an empty string.
    pub strict_substitution: bool,
    /// Service account impersonated when a Kustomization names none.
    pub default_service_account: Option<String>,
    /// Deny references to sources in other namespaces.
    pub no_cross_namespace_refs: bool,
    /// Client-side rate limits of the Kubernetes clients plumb builds (impersonation).
    pub api_limits: crate::client::ApiLimits,
    /// Variables offered to every postBuild substitution (e.g. EKS cluster facts); shared,
    /// so a refresh reaches every later reconcile.
    pub cluster_vars: ClusterVars,
    /// Registry host names the OCI clients connect to at a fixed address instead of through
    /// DNS (a hosts-file entry; the URL, TLS name and credentials keep the name). Not a
    /// `plumb run` flag: tests reach a loopback registry under an ECR host name with it.
    pub oci_resolve: Vec<(String, std::net::IpAddr)>,
    /// Keys every Kustomization with `spec.decryption` may use besides its own Secret
    /// (Flux's global age key: `plumb run --sops-age-key-file`).
    pub global_decryption_keys: plumb_sops::KeyRing,
    /// AWS KMS client for SOPS data keys (the controller's identity through aws-config);
    /// `None` leaves KMS-encrypted files undecryptable unless the decryption Secret has
    /// `sops.aws-kms` credentials.
    pub sops_kms: Option<plumb_eks::kms::KmsDecryptor>,
    /// ServiceAccount whose credentials decrypt AWS KMS keys of a Kustomization whose
    /// `spec.decryption.serviceAccountName` is empty (Flux's
    /// `--default-decryption-service-account`: multi-tenant lockdown, the controller's own
    /// identity is then never used for KMS).
    pub default_decryption_service_account: Option<String>,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("storage_path", &self.storage_path)
            .field("jitter_percent", &self.jitter_percent)
            .field("global_decryption_keys", &self.global_decryption_keys)
            .field("sops_kms", &self.sops_kms.is_some())
            .finish_non_exhaustive()
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            storage_path: PathBuf::from("/data"),
            storage_adv_addr: "localhost:9090".into(),
            jitter_percent: 5,
            requeue_dependency: Duration::from_secs(30),
            apply_concurrency: 8,
            artifact_retention_records: 2,
            artifact_retention_ttl: Duration::from_secs(60),
            prune_budget: 0.5,
            strict_substitution: false,
            default_service_account: None,
            no_cross_namespace_refs: false,
            api_limits: crate::client::ApiLimits::default(),
            cluster_vars: ClusterVars::default(),
            oci_resolve: Vec::new(),
            global_decryption_keys: plumb_sops::KeyRing::new(),
            sops_kms: None,
            default_decryption_service_account: None,
        }
    }
}

/// Variables offered to every postBuild substitution, replaceable while the controllers
/// run (`plumb run --eks-cluster-name` refreshes the EKS facts). Clones share the values.
#[derive(Debug, Clone, Default)]
pub struct ClusterVars(Arc<RwLock<Arc<BTreeMap<String, String>>>>);

impl ClusterVars {
    /// Cluster variables holding `vars`.
    pub fn new(vars: BTreeMap<String, String>) -> Self {
        Self(Arc::new(RwLock::new(Arc::new(vars))))
    }

    /// The current variables.
    pub fn snapshot(&self) -> Arc<BTreeMap<String, String>> {
        self.0.read().map(|v| v.clone()).unwrap_or_default()
    }

    /// Replaces the variables (every clone sees the new ones).
    pub fn replace(&self, vars: BTreeMap<String, String>) {
        let mut guard = self.0.write().unwrap_or_else(|p| p.into_inner());
        *guard = Arc::new(vars);
    }
}

impl From<BTreeMap<String, String>> for ClusterVars {
    fn from(vars: BTreeMap<String, String>) -> Self {
        Self::new(vars)
    }
}

/// Shared state of the controllers.
#[derive(Clone)]
pub struct Context {
    /// Kubernetes client (the controller's own identity).
    pub client: Client,
    /// Settings.
    pub config: Config,
    /// Artifact storage.
    pub storage: Storage,
    /// Apply engine for in-cluster applies, shared so its drift memory persists.
    pub applier: plumb_ssa::Applier,
    /// Apply engine of HelmReleases (field manager `helm-controller`).
    pub helm_applier: plumb_ssa::Applier,
    /// When each Kustomization's current revision was applied (health-check timeouts).
    pub health_clock: Arc<crate::health::HealthClock>,
    /// Prometheus metrics.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Clients and appliers of remote clusters (`spec.kubeConfig`).
    pub remote: Arc<crate::remote::RemoteClients>,
    /// ECR registry credentials (`provider: aws`), cached until shortly before expiry.
    pub ecr: Arc<crate::ecr::EcrProvider>,
    /// Watches inventory objects and queues their Kustomization when they drift.
    pub drift: Arc<crate::drift::DriftWatcher>,
    /// Watches the objects of HelmReleases with drift detection on.
    pub helm_drift: Arc<crate::drift::HelmDriftWatcher>,
    /// GitRepositories as the Kustomization controller's watch last saw them, so that a
    /// reconcile reads its source without a request (set while that controller runs).
    pub sources:
        Arc<std::sync::RwLock<Option<kube::runtime::reflector::Store<plumb_api::GitRepository>>>>,
    recorder: Recorder,
    memos: Memos,
    base_config: kube::Config,
    impersonated: Arc<Mutex<HashMap<String, plumb_ssa::Applier>>>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("config", &self.config)
            .finish()
    }
}

impl Context {
    /// Builds the shared context with metrics of its own.
    pub fn new(client: Client, base_config: kube::Config, config: Config) -> Arc<Self> {
        Self::with_metrics(client, base_config, config, Arc::default())
    }

    /// Builds the shared context recording into `metrics` (shared with the client built by
    /// [`crate::client::build`], which counts API requests).
    pub fn with_metrics(
        client: Client,
        base_config: kube::Config,
        config: Config,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Arc<Self> {
        let storage = Storage::new(
            config.storage_path.join("artifacts"),
            &config.storage_adv_addr,
        );
        let applier = plumb_ssa::Applier::new(
            client.clone(),
            plumb_api::consts::field_manager::KUSTOMIZE_CONTROLLER,
            config.apply_concurrency,
        );
        let helm_applier = plumb_ssa::Applier::new(
            client.clone(),
            plumb_api::consts::field_manager::HELM_CONTROLLER,
            config.apply_concurrency,
        );
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: "plumb".into(),
                instance: std::env::var("POD_NAME").ok(),
            },
        );
        Arc::new(Context {
            drift: Arc::new(crate::drift::DriftWatcher::new(
                client.clone(),
                crate::drift::KUSTOMIZATION,
            )),
            helm_drift: Arc::new(crate::drift::DriftWatcher::new(
                client.clone(),
                crate::drift::HELM_RELEASE,
            )),
            client,
            config,
            storage,
            applier,
            helm_applier,
            health_clock: Default::default(),
            metrics,
            remote: Default::default(),
            ecr: Default::default(),
            sources: Arc::default(),
            recorder,
            memos: Memos::default(),
            base_config,
            impersonated: Arc::default(),
        })
    }

    /// An applier acting as `system:serviceaccount:<ns>:<sa>` (cached per identity, so its
    /// drift memory persists like the shared one's).
    pub fn impersonating_applier(
        &self,
        ns: &str,
        sa: &str,
    ) -> Result<plumb_ssa::Applier, kube::Error> {
        self.impersonating_applier_as(
            ns,
            sa,
            plumb_api::consts::field_manager::KUSTOMIZE_CONTROLLER,
        )
    }

    /// [`Context::impersonating_applier`] with another field manager.
    pub fn impersonating_applier_as(
        &self,
        ns: &str,
        sa: &str,
        manager: &str,
    ) -> Result<plumb_ssa::Applier, kube::Error> {
        let user = format!("system:serviceaccount:{ns}:{sa}");
        let key = format!("{manager}/{user}");
        if let Some(a) = self
            .impersonated
            .lock()
            .ok()
            .and_then(|m| m.get(&key).cloned())
        {
            return Ok(a);
        }
        let mut cfg = self.base_config.clone();
        cfg.auth_info.impersonate = Some(user.clone());
        let client = crate::client::build(cfg, self.config.api_limits, self.metrics.clone())?;
        let applier = plumb_ssa::Applier::new(client, manager, self.config.apply_concurrency);
        if let Ok(mut m) = self.impersonated.lock() {
            m.insert(key, applier.clone());
        }
        Ok(applier)
    }

    /// The process-wide memo of type `T` (e.g. parsed Helm indexes, discovered kinds),
    /// made on first use. Memos live here, not in statics, so that each context (a test, a
    /// benchmark, a second controller set) has its own.
    pub fn memo<T: Default + Send + Sync + 'static>(&self) -> Arc<T> {
        self.memos.get()
    }

    /// The applier an object applies with: one for the remote cluster of `kube_config`
    /// (impersonating `sa` there; see [`crate::remote`]), one impersonating `sa`, or the
    /// shared one of `manager` (`kustomize-controller` or `helm-controller`). `sa` defaults to
    /// `--default-service-account`.
    pub(crate) async fn applier_for(
        &self,
        ns: &str,
        kube_config: Option<&plumb_api::meta::KubeConfigReference>,
        sa: Option<&str>,
        manager: &str,
    ) -> Result<plumb_ssa::Applier, crate::outcome::Failure> {
        let sa = sa.or(self.config.default_service_account.as_deref());
        if let Some(kc) = kube_config {
            let concurrency = self.config.apply_concurrency;
            return self
                .remote
                .applier(&self.client, ns, kc, sa, manager, concurrency)
                .await;
        }
        let Some(sa) = sa else {
            return Ok(
                if manager == plumb_api::consts::field_manager::HELM_CONTROLLER {
                    self.helm_applier.clone()
                } else {
                    self.applier.clone()
                },
            );
        };
        self.impersonating_applier_as(ns, sa, manager).map_err(|e| {
            crate::outcome::Failure::new(
                crate::outcome::Class::Stalled,
                plumb_api::consts::reason::RECONCILIATION_FAILED,
                format!("impersonating service account '{ns}/{sa}': {e}"),
            )
        })
    }

    /// Where the bare git caches live.
    pub fn git_cache_root(&self) -> PathBuf {
        self.config.storage_path.join("git")
    }

    /// Publishes a Kubernetes Event about `obj`. Failing to publish is logged, never fatal.
    pub async fn event(&self, obj: &ObjectReference, warning: bool, reason: &str, note: &str) {
        self.event_with(obj, warning, reason, note, Default::default())
            .await;
    }

    /// [`Context::event`] with what notifications need beyond the reference (labels,
    /// Flux's event metadata); the event also goes, without waiting, to the notification
    /// dispatcher.
    pub async fn event_with(
        &self,
        obj: &ObjectReference,
        warning: bool,
        reason: &str,
        note: &str,
        origin: crate::notification::Origin,
    ) {
        self.memo::<crate::notification::Dispatcher>()
            .publish(obj, warning, reason, note, origin);
        self.record_event(obj, warning, reason, note).await;
    }

    /// Publishes a Kubernetes Event only, without notifying Alerts: for what Flux logs
    /// without an event (a source or dependency not ready yet), so alert channels do not
    /// hear of every wait.
    pub async fn record_event(
        &self,
        obj: &ObjectReference,
        warning: bool,
        reason: &str,
        note: &str,
    ) {
        let ev = Event {
            type_: if warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: reason.to_string(),
            note: Some(truncate(note, 1024)),
            action: "Reconcile".into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&ev, obj).await {
            tracing::warn!(error = %e, reason, "publishing event failed");
        }
    }
}

/// Memos by type: one `T` per context, shared by every reconcile.
#[derive(Clone, Default)]
struct Memos(Arc<Mutex<HashMap<TypeId, Arc<dyn Any + Send + Sync>>>>);

impl Memos {
    fn get<T: Default + Send + Sync + 'static>(&self) -> Arc<T> {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let entry = map
            .entry(TypeId::of::<T>())
            .or_insert_with(|| Arc::new(T::default()));
        match entry.clone().downcast::<T>() {
            Ok(memo) => memo,
            // The entry of `TypeId::of::<T>()` is always a `T`; keep the type system happy.
            Err(_) => Arc::new(T::default()),
        }
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}
