//! `plumb`: a pull-based GitOps agent serving the Flux v2 GA API.
//!
//! The binary only wires things together: argument parsing lives in [`cli`],
//! the work lives in the `plumb-*` library crates.

mod cli;
mod cmd_build;
mod cmd_crds;
mod cmd_eks;
mod cmd_helm;
mod cmd_ks;
mod cmd_ops;
mod cmd_run;

use std::process::ExitCode;

/// mimalloc instead of glibc malloc: rendering (Helm templates, YAML) allocates
/// many small short-lived values, and glibc's malloc/free took a third of the
/// instructions of `plumb helm template`.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
