//! `plumb run`: every controller in one process, plus the artifact server and health
//! endpoints. Flags mirror Flux's controllers where they exist.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context as _, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Arguments of `plumb run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Reconciles of each kind that may run at once.
    #[arg(long, default_value_t = 4)]
    pub concurrent: u16,
    /// How often a Kustomization waiting on a dependency is retried.
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
    /// Service account impersonated when a Kustomization names none.
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
    /// Address of the /healthz and /readyz endpoints.
    #[arg(long, default_value = ":9440")]
    pub health_addr: String,
    /// Log level: trace, debug, info, warn, error.
    #[arg(long, default_value = "info")]
    pub log_level: String,
    /// Log encoding: json or console.
    #[arg(long, default_value = "json", value_parser = ["json", "console"])]
    pub log_encoding: String,
    /// A postBuild variable without a value fails the build instead of becoming empty.
    #[arg(long)]
    pub strict_substitution: bool,
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

fn init_logging(level: &str, encoding: &str) -> Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(format!("{level},kube=warn,hyper=warn"))
        .with_context(|| format!("invalid --log-level {level:?}"))?;
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
    let client =
        kube::Client::try_from(kube_config.clone()).context("creating the Kubernetes client")?;

    if args.install_crds {
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
        ..Default::default()
    };
    let ctx = plumb_controller::Context::new(client, kube_config, config);
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

    let ready = Arc::new(AtomicBool::new(false));
    let health_listener = tokio::net::TcpListener::bind(listen_addr(&args.health_addr)?)
        .await
        .with_context(|| format!("binding the health endpoints to {}", args.health_addr))?;
    tokio::spawn(serve_health(health_listener, ready.clone()));
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
    tracing::info!(artifacts = %bound, advertised = %adv, "plumb started");
    ready.store(true, Ordering::SeqCst);
    plumb_controller::run(ctx, scope, args.concurrent).await;
    tracing::info!("plumb stopped");
    Ok(ExitCode::SUCCESS)
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

/// `/healthz` answers while the process runs; `/readyz` once the controllers started.
async fn serve_health(listener: tokio::net::TcpListener, ready: Arc<AtomicBool>) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            continue;
        };
        let ready = ready.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 1024];
            let n = stream.read(&mut buf).await.unwrap_or(0);
            let req = String::from_utf8_lossy(&buf[..n]);
            let path = req.split_whitespace().nth(1).unwrap_or("/");
            let ok = match path {
                "/healthz" => true,
                "/readyz" => ready.load(Ordering::SeqCst),
                _ => false,
            };
            let (code, body) = if ok {
                ("200 OK", "ok")
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
