//! `plumb get`: Flux objects with their Ready state, revision and message.

use std::process::ExitCode;

use anyhow::{Result, anyhow};
use kube::api::{Api, DynamicObject, ListParams};
use serde_json::Value;

use super::common::{
    FluxKind, age_of, client, print_table, ready_of, revision_of, runtime, suspended_of,
};

/// What `plumb get` lists.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum GetWhat {
    /// GitRepositories, HelmRepositories, OCIRepositories, HelmCharts and ExternalArtifacts.
    #[value(alias = "source")]
    Sources,
    /// Kustomizations.
    #[value(alias = "kustomization", alias = "kustomizations")]
    Ks,
    /// HelmReleases.
    #[value(alias = "helmrelease", alias = "helmreleases")]
    Hr,
    /// Receivers.
    #[value(alias = "receiver")]
    Receivers,
    /// ArtifactGenerators.
    #[value(alias = "generator", alias = "artifactgenerators")]
    Generators,
    /// Alerts (notification.toolkit.fluxcd.io/v1beta3); REVISION shows the provider.
    #[value(alias = "alert")]
    Alerts,
    /// Providers (notification.toolkit.fluxcd.io/v1beta3); REVISION shows the type.
    #[value(alias = "provider")]
    Providers,
    /// ImageRepositories and ImagePolicies.
    #[value(alias = "image", alias = "imagerepositories", alias = "imagepolicies")]
    Images,
}

/// `plumb get`.
#[derive(Debug, clap::Args)]
pub struct GetArgs {
    /// What to list.
    pub what: GetWhat,
    /// Namespace of the objects.
    #[arg(short = 'n', long, default_value = "flux-system")]
    pub namespace: String,
    /// List objects in all namespaces.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
}

// ---------------------------------------------------------------------------------------------
// get

/// Runs `plumb get`.
pub fn get(args: GetArgs) -> Result<ExitCode> {
    runtime()?.block_on(get_async(args))
}

async fn get_async(args: GetArgs) -> Result<ExitCode> {
    let client = client().await?;
    let kinds: &[FluxKind] = match args.what {
        GetWhat::Sources => &[
            FluxKind::GitRepository,
            FluxKind::HelmRepository,
            FluxKind::OCIRepository,
            FluxKind::HelmChart,
            FluxKind::ExternalArtifact,
        ],
        GetWhat::Generators => &[FluxKind::ArtifactGenerator],
        GetWhat::Images => &[FluxKind::ImageRepository, FluxKind::ImagePolicy],
        GetWhat::Ks => &[FluxKind::Kustomization],
        GetWhat::Hr => &[FluxKind::HelmRelease],
        GetWhat::Receivers => &[FluxKind::Receiver],
        GetWhat::Alerts => &[FluxKind::Alert],
        GetWhat::Providers => &[FluxKind::Provider],
    };
    let prefix_kind = kinds.len() > 1;
    let now = chrono::Utc::now();
    let mut rows = Vec::new();
    for &kind in kinds {
        let api: Api<DynamicObject> = if args.all_namespaces {
            Api::all_with(client.clone(), &kind.resource())
        } else {
            kind.api(&client, &args.namespace)
        };
        let list = match api.list(&ListParams::default()).await {
            Ok(l) => l,
            // A kind whose CRD is not installed lists as empty.
            Err(kube::Error::Api(e)) if e.code == 404 => continue,
            Err(e) => return Err(anyhow!(e).context(format!("listing {}s", kind.kind()))),
        };
        let mut objs: Vec<Value> = list
            .items
            .into_iter()
            .filter_map(|o| serde_json::to_value(o).ok())
            .collect();
        objs.sort_by(|a, b| {
            let key = |v: &Value| {
                (
                    v["metadata"]["namespace"]
                        .as_str()
                        .unwrap_or("")
                        .to_string(),
                    v["metadata"]["name"].as_str().unwrap_or("").to_string(),
                )
            };
            key(a).cmp(&key(b))
        });
        for o in objs {
            let name = o["metadata"]["name"].as_str().unwrap_or("").to_string();
            let name = if prefix_kind {
                format!("{}/{name}", kind.kind().to_lowercase())
            } else {
                name
            };
            let (ready, message) = ready_of(&o);
            let mut row = Vec::new();
            if args.all_namespaces {
                row.push(
                    o["metadata"]["namespace"]
                        .as_str()
                        .unwrap_or("")
                        .to_string(),
                );
            }
            row.extend([
                name,
                ready,
                revision_of(kind, &o),
                if suspended_of(&o) { "True" } else { "False" }.to_string(),
                age_of(&o, now),
                message.replace('\n', " "),
            ]);
            rows.push(row);
        }
    }
    if rows.is_empty() {
        let scope = if args.all_namespaces {
            "any namespace".to_string()
        } else {
            format!("namespace {}", args.namespace)
        };
        eprintln!("no objects found in {scope}");
        return Ok(ExitCode::SUCCESS);
    }
    let mut header = vec![];
    if args.all_namespaces {
        header.push("NAMESPACE");
    }
    header.extend(["NAME", "READY", "REVISION", "SUSPENDED", "AGE", "MESSAGE"]);
    print_table(&header, &rows);
    Ok(ExitCode::SUCCESS)
}
