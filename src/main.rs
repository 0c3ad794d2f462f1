//! `plumb`: a pull-based GitOps agent serving the Flux v2 GA API.
//!
//! The binary only wires things together: argument parsing lives in [`cli`],
//! the work lives in the `plumb-*` library crates.

mod cli;
mod cmd_build;
mod cmd_crds;
mod cmd_eks;
mod cmd_helm;
mod cmd_run;

use std::process::ExitCode;

fn main() -> ExitCode {
    match cli::run() {
        Ok(code) => code,
        Err(err) => {
            // `{:#}` prints the whole anyhow context chain on one line.
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
