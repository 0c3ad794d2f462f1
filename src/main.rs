//! `plumb`: a pull-based GitOps agent serving the Flux v2 GA API.
//!
//! The binary only wires things together: argument parsing lives in [`cli`],
//! the work lives in the `plumb-*` library crates.

mod cli;
mod cmd_artifact;
mod cmd_build;
mod cmd_crds;
mod cmd_eks;
mod cmd_helm;
mod cmd_ks;
mod cmd_run;
mod cmd_ui;
mod ops;

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
            eprintln!("error: {}", chain_text(err.chain()));
            ExitCode::FAILURE
        }
    }
}

/// An error and its causes on one line, `: `-separated, each cause once. Many library
/// errors embed their source's text in their own message and also return it as
/// `source()`; `{:#}` would print that text twice (`reading x: No such file or directory
/// (os error 2): No such file or directory (os error 2)`), so a cause whose text the line
/// already ends with is skipped.
fn chain_text<'a>(chain: impl Iterator<Item = &'a (dyn std::error::Error + 'static)>) -> String {
    let mut line = String::new();
    for cause in chain {
        let text = cause.to_string();
        if text.is_empty() || line.ends_with(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

#[cfg(test)]
mod tests {
    use super::chain_text;

    /// An error that embeds its source's text and also returns it as `source()`.
    #[derive(Debug)]
    struct Reading(std::io::Error);

    impl std::fmt::Display for Reading {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "reading /nonexistent: {}", self.0)
        }
    }

    impl std::error::Error for Reading {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn causes_already_in_the_message_are_printed_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let err = anyhow::Error::new(Reading(io)).context("building");
        assert_eq!(
            chain_text(err.chain()),
            "building: reading /nonexistent: no such file"
        );
        let plain = anyhow::anyhow!("inner").context("outer");
        assert_eq!(chain_text(plain.chain()), "outer: inner");
    }
}
