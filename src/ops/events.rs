//! `plumb events`: Events about Flux objects, oldest first.

use std::process::ExitCode;

use anyhow::{Context as _, Result, anyhow};
use k8s_openapi::api::core::v1::Event;
use kube::api::{Api, ListParams};

use super::common::{client, print_table, runtime, short_duration};

// ---------------------------------------------------------------------------------------------
// events

const FLUX_GROUP_SUFFIX: &str = ".toolkit.fluxcd.io";

/// `plumb events`.
#[derive(Debug, clap::Args)]
pub struct EventsArgs {
    /// Namespace of the events.
    #[arg(short = 'n', long, default_value = "flux-system")]
    pub namespace: String,
    /// Events of all namespaces.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// Only events about this object, `Kind/name` (e.g. `Kustomization/apps`).
    #[arg(long = "for")]
    pub for_object: Option<String>,
}

/// Runs `plumb events`.
pub fn events(args: EventsArgs) -> Result<ExitCode> {
    runtime()?.block_on(async {
        let client = client().await?;
        let api: Api<Event> = if args.all_namespaces {
            Api::all(client)
        } else {
            Api::namespaced(client, &args.namespace)
        };
        let filter = match &args.for_object {
            Some(f) => {
                let (k, n) = f
                    .split_once('/')
                    .ok_or_else(|| anyhow!("--for {f:?}: expected Kind/name"))?;
                Some((k.to_string(), n.to_string()))
            }
            None => None,
        };
        let list = api
            .list(&ListParams::default())
            .await
            .context("listing events")?;
        let now = chrono::Utc::now();
        let mut evs: Vec<(chrono::DateTime<chrono::Utc>, Vec<String>)> = Vec::new();
        for e in list.items {
            let io = &e.involved_object;
            let ours = io.api_version.as_deref().is_some_and(|v| {
                v.split('/')
                    .next()
                    .unwrap_or("")
                    .ends_with(FLUX_GROUP_SUFFIX)
            });
            if !ours {
                continue;
            }
            let kind = io.kind.clone().unwrap_or_default();
            let name = io.name.clone().unwrap_or_default();
            if let Some((fk, fname)) = &filter
                && (!fk.eq_ignore_ascii_case(&kind) || fname != &name)
            {
                continue;
            }
            let when = e
                .last_timestamp
                .as_ref()
                .map(|t| t.0)
                .or_else(|| {
                    e.series
                        .as_ref()
                        .and_then(|s| s.last_observed_time.as_ref())
                        .map(|t| t.0)
                })
                .or_else(|| e.event_time.as_ref().map(|t| t.0))
                .or_else(|| e.metadata.creation_timestamp.as_ref().map(|t| t.0));
            let when = when.map(|t| {
                chrono::DateTime::<chrono::Utc>::from_timestamp(t.as_second(), 0).unwrap_or(now)
            });
            let when = when.unwrap_or(now);
            let mut row = Vec::new();
            if args.all_namespaces {
                row.push(e.metadata.namespace.clone().unwrap_or_default());
            }
            row.extend([
                short_duration(now.signed_duration_since(when)),
                e.type_.clone().unwrap_or_default(),
                e.reason.clone().unwrap_or_default(),
                format!("{kind}/{name}"),
                e.message.clone().unwrap_or_default().replace('\n', " "),
            ]);
            evs.push((when, row));
        }
        evs.sort_by_key(|(t, _)| *t);
        if evs.is_empty() {
            eprintln!("no events found");
            return Ok(ExitCode::SUCCESS);
        }
        let mut header = vec![];
        if args.all_namespaces {
            header.push("NAMESPACE");
        }
        header.extend(["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]);
        let rows: Vec<Vec<String>> = evs.into_iter().map(|(_, r)| r).collect();
        print_table(&header, &rows);
        Ok(ExitCode::SUCCESS)
    })
}
