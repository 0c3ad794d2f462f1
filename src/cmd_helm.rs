//! `plumb helm template`: renders a chart like `helm template`.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};

/// `plumb helm ...` subcommands.
#[derive(Debug, Subcommand)]
pub enum HelmCommand {
    /// Render chart templates locally and print them, as `helm template`.
    Template(TemplateArgs),
}

/// Arguments of `plumb helm template`.
#[derive(Debug, Args)]
pub struct TemplateArgs {
    /// Release name.
    pub release: String,
    /// Chart directory or .tgz file.
    pub chart: PathBuf,
    /// Values files (repeatable; later files win).
    #[arg(short = 'f', long = "values")]
    pub values: Vec<PathBuf>,
    /// `key=value` assignments (repeatable).
    #[arg(long = "set")]
    pub set: Vec<String>,
    /// Release namespace.
    #[arg(short = 'n', long = "namespace", default_value = "default")]
    pub namespace: String,
    /// Kubernetes version for `.Capabilities`.
    #[arg(long = "kube-version", default_value = "v1.20.0")]
    pub kube_version: String,
    /// Extra API versions for `.Capabilities.APIVersions`.
    #[arg(short = 'a', long = "api-versions")]
    pub api_versions: Vec<String>,
    /// Also print the CRDs of `crds/` directories.
    #[arg(long = "include-crds")]
    pub include_crds: bool,
}

/// Runs a helm subcommand.
pub fn run(cmd: HelmCommand) -> Result<()> {
    match cmd {
        HelmCommand::Template(a) => template(a),
    }
}

fn template(a: TemplateArgs) -> Result<()> {
    let chart = plumb_helm::load_path(&a.chart)
        .with_context(|| format!("loading chart {}", a.chart.display()))?;
    let mut files = Vec::new();
    for f in &a.values {
        let text = std::fs::read_to_string(f)
            .with_context(|| format!("reading values file {}", f.display()))?;
        files.push(
            plumb_helm::parse_values(&text).with_context(|| format!("parsing {}", f.display()))?,
        );
    }
    let user = plumb_helm::merge_user_values(&files, &a.set)?;
    let mut caps = plumb_helm::Capabilities {
        kube_version: if a.kube_version.starts_with('v') {
            a.kube_version.clone()
        } else {
            format!("v{}", a.kube_version)
        },
        ..Default::default()
    };
    caps.api_versions.extend(a.api_versions.iter().cloned());
    let opts = plumb_helm::RenderOptions {
        release: plumb_helm::ReleaseInfo {
            name: a.release.clone(),
            namespace: a.namespace.clone(),
            revision: 1,
            is_install: true,
        },
        capabilities: caps,
        lookup: None,
        skip_schema_validation: false,
    };
    let out = plumb_helm::render(&chart, &user, &opts)?;
    let text = out.to_helm_template_output(a.include_crds);
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(text.as_bytes())?;
    // The process ends right after this: skip freeing the chart and output trees.
    std::mem::forget(chart);
    std::mem::forget(user);
    std::mem::forget(out);
    Ok(())
}
