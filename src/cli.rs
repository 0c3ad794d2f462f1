//! Command-line interface: clap definitions and dispatch to the library crates.

use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

/// plumb keeps a Kubernetes cluster plumb with Git.
#[derive(Debug, Parser)]
#[command(name = "plumb", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the version of this binary and of the plumb controller in the cluster.
    Version,
    /// Print the CRDs as YAML, or write/check them in a directory.
    Crds(crate::cmd_crds::CrdsArgs),
    /// Render a kustomization directory to multi-document YAML (like `kubectl kustomize`).
    Build(crate::cmd_build::BuildArgs),
    /// Run the controllers (GitRepository, HelmRepository, Kustomization, HelmRelease,
    /// Receiver) against the current cluster.
    Run(Box<crate::cmd_run::RunArgs>),
    /// EKS helpers: bearer tokens and kubeconfigs.
    Eks(crate::cmd_eks::EksArgs),
    /// Show what a Kustomization or HelmRelease would change (server-side dry-run; exit 1 on
    /// changes).
    Diff(crate::cmd_ks::DiffArgs),
    /// Helm chart rendering.
    #[command(subcommand)]
    Helm(crate::cmd_helm::HelmCommand),
    /// List Flux objects with their Ready state, revision and message (like `flux get`).
    Get(crate::ops::GetArgs),
    /// Request a reconcile and wait for its outcome.
    Reconcile(crate::ops::ReconcileArgs),
    /// Suspend reconciliation of an object.
    Suspend(crate::ops::SuspendArgs),
    /// Resume reconciliation of an object and wait for the outcome.
    Resume(crate::ops::SuspendArgs),
    /// Show a Kustomization's inventory as a tree, nested Kustomizations expanded.
    Tree(crate::ops::TreeArgs),
    /// Show Events about Flux objects, oldest first.
    Events(crate::ops::EventsArgs),
    /// Push a directory to an OCI registry as a Flux artifact.
    Push(crate::cmd_artifact::PushArgs),
    /// Pull a Flux artifact from an OCI registry.
    Pull(crate::cmd_artifact::PullArgs),
    /// Tag a Flux artifact in an OCI registry.
    Tag(crate::cmd_artifact::TagArgs),
    /// Serve the fleet UI on a local port with your kubeconfig (prints the URL).
    Ui(crate::cmd_ui::UiArgs),
}

/// Parses the command line and runs the chosen command.
pub fn run() -> Result<ExitCode> {
    let cli = Cli::parse();
    match cli.command {
        Command::Version => crate::ops::version(),
        Command::Crds(args) => crate::cmd_crds::run(args),
        Command::Build(args) => crate::cmd_build::run(args),
        Command::Run(args) => crate::cmd_run::run(*args),
        Command::Eks(args) => crate::cmd_eks::run(args),
        Command::Diff(args) => crate::cmd_ks::diff(args),
        Command::Helm(cmd) => crate::cmd_helm::run(cmd).map(|()| ExitCode::SUCCESS),
        Command::Get(args) => crate::ops::get(args),
        Command::Reconcile(args) => crate::ops::reconcile(args),
        Command::Suspend(args) => crate::ops::suspend(args),
        Command::Resume(args) => crate::ops::resume(args),
        Command::Tree(args) => crate::ops::tree(args),
        Command::Events(args) => crate::ops::events(args),
        Command::Push(args) => crate::cmd_artifact::push(args),
        Command::Pull(args) => crate::cmd_artifact::pull(args),
        Command::Tag(args) => crate::cmd_artifact::tag(args),
        Command::Ui(args) => crate::cmd_ui::run(args),
    }
}
