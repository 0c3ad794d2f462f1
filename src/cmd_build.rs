//! `plumb build DIR [--root R]`: render a kustomization like `kubectl kustomize`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};

/// Arguments of `plumb build`.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct BuildArgs {
    /// Render what a cluster object would apply instead of a directory.
    #[command(subcommand)]
    pub target: Option<crate::cmd_ks::Target>,
    /// Directory holding kustomization.yaml.
    #[arg(required = true)]
    pub dir: Option<PathBuf>,
    /// Confinement root: no file outside it is read. Defaults to the enclosing Git work tree,
    /// or the file-system root when there is none.
    #[arg(long)]
    pub root: Option<PathBuf>,
    /// Treat a directory without kustomization.yaml as one listing all its YAML files (Flux).
    #[arg(long)]
    pub generate: bool,
}

fn default_root(dir: &Path) -> PathBuf {
    let abs = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let mut cur = Some(abs.as_path());
    while let Some(p) = cur {
        if p.join(".git").exists() {
            return p.to_path_buf();
        }
        cur = p.parent();
    }
    PathBuf::from("/")
}

/// Runs the build and prints the whole stream at once (nothing is printed on error).
pub fn run(args: BuildArgs) -> Result<ExitCode> {
    if let Some(target) = args.target {
        return crate::cmd_ks::build(target);
    }
    let Some(dir) = args.dir.as_deref() else {
        anyhow::bail!("plumb build: a directory is required");
    };
    let root = args.root.clone().unwrap_or_else(|| default_root(dir));
    let opts = plumb_kustomize::BuildOptions {
        generate_missing_kustomization: args.generate,
        ..Default::default()
    };
    let objects = plumb_kustomize::build(dir, &root, &opts)
        .with_context(|| format!("building {}", dir.display()))?;
    let text = plumb_kustomize::to_yaml_stream(&objects);
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes()).context("writing output")?;
    out.flush().context("writing output")?;
    Ok(ExitCode::SUCCESS)
}
