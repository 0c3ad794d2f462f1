//! `plumb tree`: a Kustomization's inventory as a tree, nested Kustomizations expanded.

use std::collections::BTreeSet;
use std::process::ExitCode;

use anyhow::Result;

use super::common::{FluxKind, client, get_obj, runtime};

/// `plumb tree`.
#[derive(Debug, clap::Args)]
pub struct TreeArgs {
    /// What to show (only `ks`).
    #[arg(value_parser = ["ks", "kustomization"])]
    pub what: String,
    /// Name of the Kustomization.
    pub name: String,
    /// Namespace of the Kustomization.
    #[arg(short = 'n', long, default_value = "flux-system")]
    pub namespace: String,
}

// ---------------------------------------------------------------------------------------------
// tree

/// Runs `plumb tree ks NAME`.
pub fn tree(args: TreeArgs) -> Result<ExitCode> {
    runtime()?.block_on(async {
        let client = client().await?;
        let mut out = format!("Kustomization/{}/{}\n", args.namespace, args.name);
        let mut seen = BTreeSet::new();
        tree_children(
            &client,
            &args.namespace,
            &args.name,
            "",
            &mut seen,
            &mut out,
        )
        .await?;
        print!("{out}");
        Ok(ExitCode::SUCCESS)
    })
}

/// Appends the inventory of Kustomization `ns/name` under `prefix`, expanding nested
/// Kustomizations (each at most once, so a cycle cannot loop).
fn tree_children<'a>(
    client: &'a kube::Client,
    ns: &'a str,
    name: &'a str,
    prefix: &'a str,
    seen: &'a mut BTreeSet<(String, String)>,
    out: &'a mut String,
) -> futures::future::BoxFuture<'a, Result<()>> {
    Box::pin(async move {
        seen.insert((ns.to_string(), name.to_string()));
        let obj = get_obj(client, FluxKind::Kustomization, ns, name).await?;
        let entries = obj["status"]["inventory"]["entries"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let mut ids = Vec::new();
        for e in &entries {
            let id = e["id"].as_str().unwrap_or("");
            match id.parse::<plumb_api::inventory::ObjMetadata>() {
                Ok(m) => ids.push(m),
                Err(err) => {
                    eprintln!("skipping inventory entry of Kustomization {ns}/{name}: {err}")
                }
            }
        }
        let n = ids.len();
        for (i, m) in ids.into_iter().enumerate() {
            let last = i + 1 == n;
            let label = if m.namespace.is_empty() {
                format!("{}/{}", m.kind, m.name)
            } else {
                format!("{}/{}/{}", m.kind, m.namespace, m.name)
            };
            out.push_str(&format!(
                "{prefix}{}{label}\n",
                if last { "└── " } else { "├── " }
            ));
            let nested = m.kind == "Kustomization" && m.group == "kustomize.toolkit.fluxcd.io";
            if nested && !seen.contains(&(m.namespace.clone(), m.name.clone())) {
                let child_prefix = format!("{prefix}{}", if last { "    " } else { "│   " });
                tree_children(client, &m.namespace, &m.name, &child_prefix, seen, out).await?;
            }
        }
        Ok(())
    })
}
