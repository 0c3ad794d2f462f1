//! `plumb run`: every controller in one process, plus the artifact server and health
//! endpoints. Flags mirror Flux's controllers where they exist.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use anyhow::{Context as _, Result};
use tokio::io::AsyncWriteExt;

/// Arguments of `plumb run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Reconciles of each kind that may run at once.
    #[arg(long, default_value_t = 4)]
    pub concurrent: u16,
    /// How often a Kustomization or HelmRelease waiting on a dependency is retried.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub requeue_dependency: Duration,
    /// Watch objects in every namespace (otherwise only --namespace).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub watch_all_namespaces: bool,
    /// Namespace watched when --watch-all-namespaces=false.
    #[arg(long, env = "RUNTIME_NAMESPACE", default_value = "flux-system")]
    pub namespace: String,
    /// Only reconcile objects matching this label selector (sharding by `sharding.fluxcd.io/key`).
    #[arg(long)]
    pub watch_label_selector: Option<String>,
    /// Deny references to sources in other namespaces.
    #[arg(long)]
    pub no_cross_namespace_refs: bool,
    /// Service account impersonated when a Kustomization or HelmRelease names none.
    #[arg(long)]
    pub default_service_account: Option<String>,
    /// Where artifacts and git caches are kept.
    #[arg(long, default_value = "/data")]
    pub storage_path: PathBuf,
    /// Address the artifact server listens on.
    #[arg(long, default_value = ":9090")]
    pub storage_addr: String,
    /// Host:port under which artifacts are advertised (defaults to --storage-addr on localhost).
    #[arg(long)]
    pub storage_adv_addr: Option<String>,
    /// Address of the webhook receiver (Receiver objects' `status.webhookPath`).
    #[arg(long, default_value = ":9292")]
    pub receiver_addr: String,
    /// Webhook calls per second each client (IP address) regains; over its burst a client
    /// is answered 429 (0: no limit).
    #[arg(long, default_value_t = 5.0)]
    pub receiver_rate_limit: f64,
    /// Webhook calls a client may make at once before --receiver-rate-limit applies.
    #[arg(long, default_value_t = 20)]
    pub receiver_rate_burst: u32,
    /// Address of the /healthz and /readyz endpoints.
    #[arg(long, default_value = ":9440")]
    pub health_addr: String,
    /// Address of the Prometheus /metrics endpoint.
    #[arg(long, default_value = ":8080")]
    pub metrics_addr: String,
    /// Client-side limit of Kubernetes API requests per second.
    #[arg(long, default_value_t = 50.0)]
    pub kube_api_qps: f32,
    /// Kubernetes API requests allowed in a burst above --kube-api-qps.
    #[arg(long, default_value_t = 300)]
    pub kube_api_burst: u32,
    /// Run the controllers only while holding the `plumb-leader-election` Lease, so
    /// several replicas can run.
    #[arg(long)]
    pub leader_elect: bool,
    /// Namespace of the leader election Lease (defaults to the pod's namespace).
    #[arg(long)]
    pub leader_election_namespace: Option<String>,
    /// How long a leader's lease lasts without renewal (whole seconds).
    #[arg(long, default_value = "35s", value_parser = parse_duration)]
    pub leader_election_lease_duration: Duration,
    /// How often the leader renews the lease and a standby retries.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub leader_election_retry_period: Duration,
    /// How long the leader keeps reconciling without a confirmed renew before it steps
    /// down (default: 2/3 of the lease duration; between the retry period and the lease
    /// duration).
    #[arg(long, value_parser = parse_duration)]
    pub leader_election_renew_deadline: Option<Duration>,
    /// Log level: trace, debug, info, warn, error.
    #[arg(long, default_value = "info")]
    pub log_level: String,
    /// Log encoding: json or console.
    #[arg(long, default_value = "json", value_parser = ["json", "console"])]
    pub log_encoding: String,
    /// A postBuild variable without a value fails the build instead of becoming empty.
    #[arg(long)]
    pub strict_substitution: bool,
    /// An age identity file every Kustomization with `spec.decryption` may decrypt with
    /// (Flux's global age key), e.g. a mounted Secret; repeatable.
    #[arg(long = "sops-age-key-file", value_name = "FILE")]
    pub sops_age_key_files: Vec<PathBuf>,
    /// ServiceAccount (in the Kustomization's namespace) whose credentials decrypt AWS KMS
    /// keys when `spec.decryption.serviceAccountName` is empty (Flux's multi-tenant
    /// workload identity lockdown: the controller's own identity is then never used).
    #[arg(long, value_name = "NAME")]
    pub default_decryption_service_account: Option<String>,
    /// Refuse to prune more than this share (0..1) of an inventory in one pass.
    #[arg(long, default_value_t = 0.5)]
    pub prune_budget: f64,
    /// Server-side apply plumb's CRDs before starting (for local clusters; on EKS the Helm
    /// chart installs them).
    #[arg(long)]
    pub install_crds: bool,
    /// EKS cluster whose facts (`eks_cluster_name`, `eks_region`, `eks_account_id`,
    /// `eks_cluster_version`, `eks_cluster_endpoint`, `eks_oidc_issuer`, `eks_vpc_id`) are
    /// offered to every Kustomization's postBuild substitution (read with DescribeCluster).
    #[arg(long)]
    pub eks_cluster_name: Option<String>,
    /// Region of --eks-cluster-name (default: the AWS region chain, e.g. AWS_REGION).
    #[arg(long, requires = "eks_cluster_name")]
    pub eks_region: Option<String>,
    /// Serve the fleet UI (read-only) on this address, e.g. `:9000`. Off by default: anyone
    /// who reaches the port sees every Flux object's status and messages, without
    /// authentication (use port-forward or an authenticating proxy).
    #[arg(long)]
    pub ui_addr: Option<String>,
    /// How often the EKS cluster facts are re-read.
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    pub eks_facts_interval: Duration,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    plumb_api::duration::parse(s).map_err(|e| e.to_string())
}

fn listen_addr(s: &str) -> Result<SocketAddr> {
    let full = if s.starts_with(':') {
        format!("0.0.0.0{s}")
    } else {
        s.to_string()
    };
    full.parse()
        .with_context(|| format!("invalid listen address {s:?}"))
}

pub(crate) fn init_logging(level: &str, encoding: &str) -> Result<()> {
    // RUST_LOG, when set, refines the filter (e.g. `kube=debug` to see API traffic).
    let mut directives = format!("{level},kube=warn,hyper=warn");
    if let Ok(extra) = std::env::var("RUST_LOG")
        && !extra.is_empty()
    {
        directives = format!("{directives},{extra}");
    }
    let filter = tracing_subscriber::EnvFilter::try_new(&directives)
        .with_context(|| format!("invalid --log-level {level:?} or RUST_LOG"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if encoding == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
    Ok(())
}

/// Runs the controllers until SIGINT/SIGTERM.
pub fn run(args: RunArgs) -> Result<ExitCode> {
    init_logging(&args.log_level, &args.log_encoding)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(run_async(args))
}

async fn run_async(args: RunArgs) -> Result<ExitCode> {
    let kube_config = kube::Config::infer()
        .await
        .context("loading Kubernetes configuration (KUBECONFIG or in-cluster)")?;
    let metrics = Arc::new(plumb_controller::metrics::Metrics::new());
    let api_limits = plumb_controller::client::ApiLimits {
        qps: args.kube_api_qps,
        burst: args.kube_api_burst,
    };
    let client = plumb_controller::client::build(kube_config.clone(), api_limits, metrics.clone())
        .context("creating the Kubernetes client")?;

    if args.install_crds {
        install_crds(&client).await?;
    }

    let storage_addr = listen_addr(&args.storage_addr)?;
    let storage_listener = tokio::net::TcpListener::bind(storage_addr)
        .await
        .with_context(|| format!("binding the artifact server to {storage_addr}"))?;
    let bound = storage_listener.local_addr()?;
    let adv = args
        .storage_adv_addr
        .clone()
        .unwrap_or_else(|| format!("localhost:{}", bound.port()));
    let artifacts = args.storage_path.join("artifacts");
    std::fs::create_dir_all(&artifacts)
        .with_context(|| format!("creating {}", artifacts.display()))?;

    let cluster_vars = plumb_controller::ClusterVars::default();
    let config = plumb_controller::Config {
        cluster_vars: cluster_vars.clone(),
        storage_path: args.storage_path.clone(),
        storage_adv_addr: adv.clone(),
        requeue_dependency: args.requeue_dependency,
        strict_substitution: args.strict_substitution,
        default_service_account: args.default_service_account.clone(),
        no_cross_namespace_refs: args.no_cross_namespace_refs,
        prune_budget: args.prune_budget,
        api_limits,
        global_decryption_keys: global_keys(&args.sops_age_key_files)?,
        // SOPS files encrypted with AWS KMS: the controller's identity (IRSA, Pod Identity).
        sops_kms: Some(plumb_eks::kms::KmsDecryptor::from_env().await),
        default_decryption_service_account: args.default_decryption_service_account.clone(),
        ..Default::default()
    };
    let ctx = plumb_controller::Context::with_metrics(
        client.clone(),
        kube_config,
        config,
        metrics.clone(),
    );
    if let Some(cluster) = &args.eks_cluster_name {
        let auth = Arc::new(plumb_eks::EksAuth::from_env(args.eks_region.as_deref()).await);
        ctx.remote.use_eks(auth.clone());
        serve_eks_facts(
            auth,
            cluster.clone(),
            args.eks_region.clone(),
            args.eks_facts_interval,
            cluster_vars,
        )
        .await;
    }
    let scope = plumb_controller::Scope {
        namespace: (!args.watch_all_namespaces).then(|| args.namespace.clone()),
        label_selector: args.watch_label_selector.clone(),
    };

    let ready = Arc::new(AtomicU8::new(STARTING));
    serve_endpoints(
        &args,
        &ctx,
        &scope,
        ready.clone(),
        metrics,
        storage_listener,
        artifacts,
    )
    .await?;
    tracing::info!(artifacts = %bound, advertised = %adv, "plumb started");
    if !args.leader_elect {
        ready.store(LEADER, Ordering::SeqCst);
        plumb_controller::run(ctx, scope, args.concurrent).await;
        tracing::info!("plumb stopped");
        return Ok(ExitCode::SUCCESS);
    }
    run_elected(&args, client, ctx, scope, ready).await
}

/// Runs the controllers while this replica holds the leader election Lease; `/readyz`
/// follows the role. A replica that lost the lease exits with a failure.
async fn run_elected(
    args: &RunArgs,
    client: kube::Client,
    ctx: Arc<plumb_controller::Context>,
    scope: plumb_controller::Scope,
    ready: Arc<AtomicU8>,
) -> Result<ExitCode> {
    let namespace = match &args.leader_election_namespace {
        Some(ns) => ns.clone(),
        None => pod_namespace(&args.namespace),
    };
    let host = std::env::var("POD_NAME")
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "plumb".into());
    let identity = format!("{host}_{:08x}", rand_suffix());
    let leader = plumb_controller::leader::LeaderConfig {
        lease_duration: args.leader_election_lease_duration,
        retry_period: args.leader_election_retry_period,
        renew_deadline: args.leader_election_renew_deadline,
        ..plumb_controller::leader::LeaderConfig::new(LEASE_NAME, &namespace, &identity)
    };
    let role = ready;
    let ended = plumb_controller::leader::run_elected(
        client,
        &leader,
        move |r| {
            let v = match r {
                plumb_controller::leader::Role::Standby => STANDBY,
                plumb_controller::leader::Role::Leader => LEADER,
            };
            role.store(v, Ordering::SeqCst);
        },
        plumb_controller::run(ctx, scope, args.concurrent),
        plumb_controller::runtime::signal::shutdown_signal(),
    )
    .await;
    match ended {
        Ok(_) => {
            tracing::info!("plumb stopped");
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            // Like controller-runtime: a replica that lost the lease exits and restarts
            // as a standby, so two leaders never reconcile at once.
            tracing::error!(error = %e, "leader election ended");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// Starts the servers beside the controllers: health, metrics, artifacts, webhook receiver.
async fn serve_endpoints(
    args: &RunArgs,
    ctx: &Arc<plumb_controller::Context>,
    scope: &plumb_controller::Scope,
    ready: Arc<AtomicU8>,
    metrics: Arc<plumb_controller::metrics::Metrics>,
    storage_listener: tokio::net::TcpListener,
    artifacts: PathBuf,
) -> Result<()> {
    let health_listener = tokio::net::TcpListener::bind(listen_addr(&args.health_addr)?)
        .await
        .with_context(|| format!("binding the health endpoints to {}", args.health_addr))?;
    tokio::spawn(serve_health(health_listener, ready));
    let metrics_listener = tokio::net::TcpListener::bind(listen_addr(&args.metrics_addr)?)
        .await
        .with_context(|| format!("binding the metrics endpoint to {}", args.metrics_addr))?;
    tokio::spawn(plumb_controller::metrics::serve(metrics_listener, metrics));
    tokio::spawn(async move {
        if let Err(e) = plumb_source::server::serve_artifacts(
            storage_listener,
            artifacts,
            std::future::pending(),
        )
        .await
        {
            tracing::error!(error = %e, "artifact server stopped");
        }
    });
    let receiver_listener = tokio::net::TcpListener::bind(listen_addr(&args.receiver_addr)?)
        .await
        .with_context(|| format!("binding the webhook receiver to {}", args.receiver_addr))?;
    let mut receiver_opts = plumb_controller::receiver::ServerOptions::new(scope.namespace.clone());
    receiver_opts.rate_limit.per_second = args.receiver_rate_limit;
    receiver_opts.rate_limit.burst = args.receiver_rate_burst;
    tokio::spawn(plumb_controller::receiver::serve_with(
        ctx.clone(),
        receiver_listener,
        receiver_opts,
        std::future::pending(),
    ));
    if let Some(addr) = &args.ui_addr {
        let listener = tokio::net::TcpListener::bind(listen_addr(addr)?)
            .await
            .with_context(|| format!("binding the UI to {addr}"))?;
        crate::cmd_ui::serve_shared(ctx.client.clone(), listener, vec![args.namespace.clone()]);
    }
    Ok(())
}

/// Applies plumb's CRDs (`--install-crds`).
async fn install_crds(client: &kube::Client) -> Result<()> {
    let items = plumb_api::crds()
        .into_iter()
        .map(|crd| serde_json::to_value(crd).map(plumb_ssa::ApplyItem::new))
        .collect::<Result<Vec<_>, _>>()
        .context("serializing CRDs")?;
    let set = plumb_ssa::Applier::new(client.clone(), "plumb", 4)
        .apply_all(items, &plumb_ssa::ApplyOptions::default())
        .await
        .context("installing CRDs")?;
    tracing::info!(
        created = set.count(plumb_ssa::Action::Created),
        "CRDs installed"
    );
    Ok(())
}

/// Name of the leader election Lease.
const LEASE_NAME: &str = "plumb-leader-election";
/// `/readyz` states.
const STARTING: u8 = 0;
const STANDBY: u8 = 1;
const LEADER: u8 = 2;

/// The pod's namespace from the service account mount, else `fallback` (local runs).
fn pod_namespace(fallback: &str) -> String {
    std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| fallback.to_string())
}

fn rand_suffix() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    h.finish() as u32
}

/// Keeps `vars` equal to the facts of EKS cluster `cluster`, re-read every `interval`. Waits
/// up to 30 s for the first facts so the first reconciles see them; a failed refresh keeps
/// the last facts (plumb-eks logs it without secrets).
async fn serve_eks_facts(
    auth: Arc<plumb_eks::EksAuth>,
    cluster: String,
    region: Option<String>,
    interval: Duration,
    vars: plumb_controller::ClusterVars,
) {
    let watcher = plumb_eks::watch_facts(auth, cluster.clone(), region, interval);
    match watcher.ready(Duration::from_secs(30)).await {
        Some(facts) => {
            vars.replace((*facts).clone());
            tracing::info!(cluster = %cluster, "EKS cluster facts loaded");
        }
        None => tracing::warn!(
            cluster = %cluster,
            "EKS cluster facts not known yet; starting without them"
        ),
    }
    let mut rx = watcher.subscribe();
    // What is there now was applied above (or is still nothing): wait for the next change.
    rx.borrow_and_update();
    tokio::spawn(async move {
        // The watcher's task stops when it is dropped: keep it for as long as this runs.
        let _watcher = watcher;
        while rx.changed().await.is_ok() {
            let current = rx.borrow_and_update().clone();
            if let Some(facts) = current {
                vars.replace((*facts).clone());
                tracing::info!(cluster = %cluster, "EKS cluster facts updated");
            }
        }
    });
}

/// `/healthz` answers while the process runs; `/readyz` once the controllers started or
/// while standing by for the leader lease (a standby is a ready replica).
async fn serve_health(listener: tokio::net::TcpListener, ready: Arc<AtomicU8>) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            continue;
        };
        let ready = ready.clone();
        tokio::spawn(async move {
            let path = plumb_controller::metrics::read_request_path(&mut stream)
                .await
                .unwrap_or_default();
            let state = ready.load(Ordering::SeqCst);
            let (ok, body) = match path.as_str() {
                "/healthz" => (true, "ok"),
                "/readyz" if state == LEADER => (true, "ok"),
                "/readyz" if state == STANDBY => (true, "ok: standby"),
                _ => (false, ""),
            };
            let (code, body) = if ok {
                ("200 OK", body)
            } else if path == "/readyz" {
                ("503 Service Unavailable", "not ready")
            } else {
                ("404 Not Found", "not found")
            };
            let resp = format!(
                "HTTP/1.1 {code}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(resp.as_bytes()).await;
        });
    }
}

/// The global age keys of `--sops-age-key-file`.
fn global_keys(files: &[PathBuf]) -> Result<plumb_sops::KeyRing> {
    let mut ring = plumb_sops::KeyRing::new();
    for f in files {
        let text = std::fs::read_to_string(f)
            .with_context(|| format!("reading age key file {}", f.display()))?;
        ring.add_age_identities(&f.display().to_string(), &text)?;
    }
    Ok(ring)
}
