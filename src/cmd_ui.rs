//! `plumb ui`: the fleet UI on a local port, reading the cluster with the user's own
//! kubeconfig and RBAC (the page shows what kubectl would show them; actions are made with
//! their credentials). `plumb run --ui-addr` serves the same page read-only in-cluster
//! ([`serve_shared`]).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context as _, Result};
use futures::future::BoxFuture;
use plumb_api::kinds::FluxKind;
use plumb_ui::detail::{DiffOutput, Differ};
use plumb_ui::{AppState, Cluster, Store, UiOptions};

use crate::cmd_ks::{HrArgs, KsArgs, Target};

/// Arguments of `plumb ui`.
#[derive(Debug, clap::Args)]
pub struct UiArgs {
    /// Address to listen on (keep it on loopback: the page acts with your credentials).
    #[arg(long, default_value = "127.0.0.1:9000")]
    pub addr: SocketAddr,
    /// The kubeconfig context to use (default: the current context).
    #[arg(long)]
    pub context: Option<String>,
    /// Namespaces to watch when you may not list a kind cluster-wide (default: the
    /// context's namespace); repeatable.
    #[arg(short = 'n', long)]
    pub namespace: Vec<String>,
}

/// `plumb diff` for the page: the same text, computed on request.
struct CliDiffer {
    cfg: kube::Config,
}

impl Differ for CliDiffer {
    fn diff(
        &self,
        kind: FluxKind,
        namespace: String,
        name: String,
    ) -> BoxFuture<'static, Result<DiffOutput, String>> {
        let cfg = self.cfg.clone();
        let target = match kind {
            FluxKind::HelmRelease => Target::HelmRelease(HrArgs { name, namespace }),
            _ => Target::Kustomization(KsArgs {
                name,
                namespace,
                path: None,
                strict_substitution: false,
                decryption_keys: vec![],
            }),
        };
        Box::pin(async move {
            // The render path is not `Send` throughout: run it on a blocking thread.
            let handle = tokio::runtime::Handle::current();
            let run = tokio::task::spawn_blocking(move || {
                handle.block_on(crate::cmd_ks::diff_text(cfg, &target))
            });
            match run.await {
                Ok(Ok((text, _))) => Ok(DiffOutput {
                    changed: !text.is_empty(),
                    text,
                }),
                Ok(Err(e)) => Err(format!("{e:#}")),
                Err(e) => Err(format!("the diff stopped: {e}")),
            }
        })
    }
}

/// Runs `plumb ui` until Ctrl-C.
pub fn run(args: UiArgs) -> Result<ExitCode> {
    crate::cmd_run::init_logging("warn", "console")?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async {
        let options = kube::config::KubeConfigOptions {
            context: args.context.clone(),
            ..Default::default()
        };
        let cfg = match &args.context {
            Some(_) => kube::Config::from_kubeconfig(&options)
                .await
                .context("loading the kubeconfig")?,
            None => kube::Config::infer()
                .await
                .context("loading Kubernetes configuration (KUBECONFIG or in-cluster)")?,
        };
        let context = args.context.clone().unwrap_or_else(current_context);
        let namespaces = if args.namespace.is_empty() {
            vec![cfg.default_namespace.clone()]
        } else {
            args.namespace.clone()
        };
        let client = kube::Client::try_from(cfg.clone()).context("creating the client")?;
        let store = Store::new();
        plumb_ui::watch::spawn_watches(client.clone(), store.clone(), namespaces);
        let listener = tokio::net::TcpListener::bind(args.addr)
            .await
            .with_context(|| format!("binding {}", args.addr))?;
        let bound = listener.local_addr()?;
        let state = AppState::new(
            store,
            UiOptions {
                context: context.clone(),
                read_only: false,
                bound: Some(bound),
            },
        )
        .with_cluster(Cluster {
            client,
            differ: Some(Arc::new(CliDiffer { cfg })),
        });
        let shown = if bound.ip().is_unspecified() {
            format!("localhost:{}", bound.port())
        } else {
            bound.to_string()
        };
        println!("plumb ui: http://{shown}/ (context {context}; Ctrl-C to stop)");
        plumb_ui::serve(
            listener,
            plumb_ui::router(state),
            plumb_controller::runtime::signal::shutdown_signal(),
        )
        .await?;
        Ok(ExitCode::SUCCESS)
    })
}

/// The kubeconfig's current context, for the page's header.
fn current_context() -> String {
    kube::config::Kubeconfig::read()
        .ok()
        .and_then(|k| k.current_context)
        .unwrap_or_else(|| "in-cluster".into())
}

/// `plumb run --ui-addr`: the page over `listener`, read-only, with plumb's own client
/// (watching every namespace, or `namespaces` when plumb may not list cluster-wide).
pub(crate) fn serve_shared(
    client: kube::Client,
    listener: tokio::net::TcpListener,
    namespaces: Vec<String>,
) {
    let store = Store::new();
    plumb_ui::watch::spawn_watches(client.clone(), store.clone(), namespaces);
    let state = AppState::new(
        store,
        UiOptions {
            context: "in-cluster".into(),
            read_only: true,
            bound: None,
        },
    )
    .with_cluster(Cluster {
        client,
        differ: None,
    });
    tokio::spawn(async move {
        if let Err(e) =
            plumb_ui::serve(listener, plumb_ui::router(state), std::future::pending()).await
        {
            tracing::error!(error = %e, "UI server stopped");
        }
    });
}
