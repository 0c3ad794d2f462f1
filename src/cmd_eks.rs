//! `plumb eks token|kubeconfig`: a drop-in for `aws eks get-token` and a kubeconfig using it.

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};

/// EKS helpers.
#[derive(Debug, Args)]
pub struct EksArgs {
    #[command(subcommand)]
    command: EksCommand,
}

#[derive(Debug, Subcommand)]
enum EksCommand {
    /// Print an ExecCredential with an EKS bearer token (like `aws eks get-token`).
    Token(TokenArgs),
    /// Print a kubeconfig for an EKS cluster whose user runs `plumb eks token`.
    Kubeconfig(KubeconfigArgs),
}

#[derive(Debug, Args)]
struct TokenArgs {
    /// The EKS cluster name.
    #[arg(long)]
    cluster_name: String,
    /// The cluster's region (default: the AWS default region chain).
    #[arg(long)]
    region: Option<String>,
    /// A role to assume before signing.
    #[arg(long)]
    role_arn: Option<String>,
}

#[derive(Debug, Args)]
struct KubeconfigArgs {
    /// The EKS cluster name.
    #[arg(long)]
    cluster_name: String,
    /// The cluster's region (default: the AWS default region chain).
    #[arg(long)]
    region: Option<String>,
    /// A role the kubeconfig's user assumes before signing.
    #[arg(long)]
    role_arn: Option<String>,
}

/// Runs `plumb eks …`.
pub fn run(args: EksArgs) -> Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        match args.command {
            EksCommand::Token(a) => {
                let auth = plumb_eks::EksAuth::from_env(a.region.as_deref()).await;
                let token = auth
                    .token(&a.cluster_name, a.region.as_deref(), a.role_arn.as_deref())
                    .await?;
                println!("{}", serde_json::to_string(&token.exec_credential())?);
            }
            EksCommand::Kubeconfig(a) => {
                let auth = plumb_eks::EksAuth::from_env(a.region.as_deref()).await;
                let info = auth
                    .describe_cluster(&a.cluster_name, a.region.as_deref())
                    .await?;
                let command = std::env::current_exe()
                    .ok()
                    .filter(|p| p.is_absolute())
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|| "plumb".into());
                print!(
                    "{}",
                    plumb_eks::render_kubeconfig(&info, &command, a.role_arn.as_deref())?
                );
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}
