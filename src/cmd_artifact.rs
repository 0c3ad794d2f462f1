//! `plumb push|pull|tag artifact`: OCI artifacts in Flux's format, like `flux push artifact`,
//! `flux pull artifact` and `flux tag artifact`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use plumb_source::oci::{self, Client, ClientOptions, Credentials, PushMeta, RefSpec};

/// `plumb push …`.
#[derive(Debug, Args)]
pub struct PushArgs {
    #[command(subcommand)]
    command: PushCommand,
}

#[derive(Debug, Subcommand)]
enum PushCommand {
    /// Push a directory as an OCI artifact in Flux's format.
    Artifact(PushArtifactArgs),
}

/// `plumb pull …`.
#[derive(Debug, Args)]
pub struct PullArgs {
    #[command(subcommand)]
    command: PullCommand,
}

#[derive(Debug, Subcommand)]
enum PullCommand {
    /// Pull an OCI artifact and extract its content layer into a directory.
    Artifact(PullArtifactArgs),
}

/// `plumb tag …`.
#[derive(Debug, Args)]
pub struct TagArgs {
    #[command(subcommand)]
    command: TagCommand,
}

#[derive(Debug, Subcommand)]
enum TagCommand {
    /// Give an OCI artifact more tags.
    Artifact(TagArtifactArgs),
}

/// Registry connection flags shared by the verbs.
#[derive(Debug, Args)]
struct RegistryFlags {
    /// Credentials as `user:password` (else `$DOCKER_CONFIG/config.json` or
    /// `~/.docker/config.json`, else anonymous).
    #[arg(long)]
    creds: Option<String>,
    /// Use plain HTTP.
    #[arg(long)]
    insecure_registry: bool,
    /// PEM CA bundle to trust instead of the system roots (plumb extension).
    #[arg(long)]
    ca_file: Option<PathBuf>,
    /// Timeout of each registry request.
    #[arg(long, default_value = "60s")]
    timeout: String,
}

#[derive(Debug, Args)]
struct PushArtifactArgs {
    /// `oci://host/repo:tag`.
    url: String,
    /// Directory to push.
    #[arg(long)]
    path: PathBuf,
    /// Where the content comes from (`org.opencontainers.image.source`), e.g. a Git URL.
    #[arg(long)]
    source: String,
    /// Its revision (`org.opencontainers.image.revision`), e.g. `main@sha1:<commit>`.
    #[arg(long)]
    revision: String,
    /// Extra manifest annotations, `key=value` (repeatable).
    #[arg(short = 'a', long = "annotations")]
    annotations: Vec<String>,
    /// Exclusion patterns in `.sourceignore` format, comma-separated.
    #[arg(long)]
    ignore_paths: Option<String>,
    #[command(flatten)]
    registry: RegistryFlags,
}

#[derive(Debug, Args)]
struct PullArtifactArgs {
    /// `oci://host/repo:tag` or `oci://host/repo@sha256:…`.
    url: String,
    /// Directory to extract into.
    #[arg(short, long)]
    output: PathBuf,
    /// Media type of the layer to extract (default: the first layer).
    #[arg(long)]
    media_type: Option<String>,
    #[command(flatten)]
    registry: RegistryFlags,
}

#[derive(Debug, Args)]
struct TagArtifactArgs {
    /// `oci://host/repo:tag` (or `@sha256:…`) of the existing artifact.
    url: String,
    /// The new tag (repeatable).
    #[arg(long = "tag", required = true)]
    tags: Vec<String>,
    #[command(flatten)]
    registry: RegistryFlags,
}

fn docker_config_credentials(registry: &str) -> Result<Option<Credentials>> {
    let dir = match std::env::var_os("DOCKER_CONFIG") {
        Some(d) => PathBuf::from(d),
        None => match std::env::var_os("HOME") {
            Some(h) => PathBuf::from(h).join(".docker"),
            None => return Ok(None),
        },
    };
    let path = dir.join("config.json");
    let Ok(bytes) = std::fs::read(&path) else {
        return Ok(None);
    };
    Credentials::from_docker_config(&bytes, registry)
        .with_context(|| format!("reading {}", path.display()))
}

fn connect(url: &str, flags: &RegistryFlags) -> Result<Client> {
    let reference = oci::parse_url(url)?;
    let credentials = match &flags.creds {
        Some(c) => {
            let Some((u, p)) = c.split_once(':') else {
                bail!("--creds must be user:password");
            };
            Some(Credentials {
                username: u.to_string(),
                password: p.to_string(),
            })
        }
        None => docker_config_credentials(&reference.registry)?,
    };
    let ca_pem = match &flags.ca_file {
        Some(p) => Some(std::fs::read(p).with_context(|| format!("reading {}", p.display()))?),
        None => None,
    };
    let timeout: Duration = plumb_api::duration::parse(&flags.timeout)
        .with_context(|| format!("--timeout {}", flags.timeout))?;
    let opts = ClientOptions {
        insecure: flags.insecure_registry,
        ca_pem,
        credentials,
        timeout,
        ..ClientOptions::default()
    };
    Ok(Client::new(&reference, &opts)?)
}

/// Runs `plumb push artifact`.
pub fn push(args: PushArgs) -> Result<ExitCode> {
    let PushCommand::Artifact(a) = args.command;
    let client = connect(&a.url, &a.registry)?;
    if client.reference().digest.is_some() {
        bail!("{}: push to a tag, not a digest", a.url);
    }
    let mut annotations = BTreeMap::new();
    for kv in &a.annotations {
        let Some((k, v)) = kv.split_once('=') else {
            bail!("annotation '{kv}' is not key=value");
        };
        annotations.insert(k.to_string(), v.to_string());
    }
    let meta = PushMeta {
        source: Some(a.source),
        revision: Some(a.revision),
        created: None,
        annotations,
        ignore: a.ignore_paths.map(|p| p.replace(',', "\n")),
    };
    let pushed = client
        .push_artifact(&a.path, &meta)
        .with_context(|| format!("pushing {} to {}", a.path.display(), a.url))?;
    eprintln!("artifact pushed: {}", pushed.reference);
    println!("{}", pushed.reference);
    Ok(ExitCode::SUCCESS)
}

/// Runs `plumb pull artifact`.
pub fn pull(args: PullArgs) -> Result<ExitCode> {
    let PullCommand::Artifact(a) = args.command;
    let client = connect(&a.url, &a.registry)?;
    let r = client.reference();
    let spec = RefSpec::from_flux(r.tag.as_deref(), None, None, r.digest.as_deref());
    let resolved = client
        .resolve(&spec)
        .with_context(|| format!("resolving {}", a.url))?;
    let pulled = client
        .pull(
            &resolved,
            a.media_type.as_deref(),
            oci::LayerOperation::Extract,
            &a.output,
            plumb_source::artifact::Limits::default(),
        )
        .with_context(|| format!("pulling {} into {}", a.url, a.output.display()))?;
    let manifest = pulled.manifest;
    let ann = |k: &str| {
        manifest
            .annotations
            .get(k)
            .map(String::as_str)
            .unwrap_or("")
    };
    eprintln!("source: {}", ann("org.opencontainers.image.source"));
    eprintln!("revision: {}", ann("org.opencontainers.image.revision"));
    eprintln!("digest: {}", resolved.digest);
    eprintln!("extracted to {}", a.output.display());
    println!("{}", resolved.revision());
    Ok(ExitCode::SUCCESS)
}

/// Runs `plumb tag artifact`.
pub fn tag(args: TagArgs) -> Result<ExitCode> {
    let TagCommand::Artifact(a) = args.command;
    let client = connect(&a.url, &a.registry)?;
    let r = client.reference();
    let from = r
        .digest
        .clone()
        .or_else(|| r.tag.clone())
        .unwrap_or_else(|| "latest".to_string());
    for t in &a.tags {
        let digest = client
            .tag(&from, t)
            .with_context(|| format!("tagging {} as '{t}'", a.url))?;
        println!("{}:{t}@{digest}", r.name());
    }
    Ok(ExitCode::SUCCESS)
}
