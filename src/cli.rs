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
    /// Print the version of this binary.
    Version,
    /// Helm chart rendering.
    #[command(subcommand)]
    Helm(crate::cmd_helm::HelmCommand),
}

/// Parses the command line and runs the chosen command.
pub fn run() -> Result<ExitCode> {
    let cli = Cli::parse();
    match cli.command {
        Command::Version => {
            println!("plumb {}", env!("CARGO_PKG_VERSION"));
            Ok(ExitCode::SUCCESS)
        }
        Command::Helm(cmd) => crate::cmd_helm::run(cmd).map(|()| ExitCode::SUCCESS),
    }
}
