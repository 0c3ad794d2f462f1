//! `plumb version`: the client's version and that of the plumb controllers in the cluster.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, Result};
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, ListParams};

use super::common::{client, runtime};

// ---------------------------------------------------------------------------------------------
// version

/// Label on plumb's Deployment (set by its Helm chart) that names the component.
pub const NAME_LABEL_SELECTOR: &str = "app.kubernetes.io/name=plumb";

/// Runs `plumb version`: the client's version and, when a cluster is reachable within a few
/// seconds, that of every plumb Deployment (label `app.kubernetes.io/name=plumb`; version from
/// `app.kubernetes.io/version`, else the image tag).
pub fn version() -> Result<ExitCode> {
    println!("client: plumb {}", env!("CARGO_PKG_VERSION"));
    let rt = runtime()?;
    let found = rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(5), controller_versions()).await
    });
    match found {
        Ok(Ok(v)) if v.is_empty() => println!("controller: no plumb Deployment found"),
        Ok(Ok(v)) => {
            for line in v {
                println!("controller: {line}");
            }
        }
        Ok(Err(e)) => println!("controller: unknown ({e:#})"),
        Err(_) => println!("controller: unknown (cluster not reachable within 5s)"),
    }
    Ok(ExitCode::SUCCESS)
}

async fn controller_versions() -> Result<Vec<String>> {
    let client = client().await?;
    let api: Api<Deployment> = Api::all(client);
    let list = api
        .list(&ListParams::default().labels(NAME_LABEL_SELECTOR))
        .await
        .context("listing plumb Deployments")?;
    Ok(list.items.iter().map(deployment_version).collect())
}

fn deployment_version(d: &Deployment) -> String {
    let ns = d.metadata.namespace.as_deref().unwrap_or("");
    let name = d.metadata.name.as_deref().unwrap_or("");
    let image = d
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|p| p.containers.first())
        .and_then(|c| c.image.clone())
        .unwrap_or_default();
    let label = d
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get("app.kubernetes.io/version"))
        .cloned();
    let version = label.unwrap_or_else(|| image_tag(&image).to_string());
    format!("plumb {version} (deployment {ns}/{name}, image {image})")
}

/// The tag of an image reference (`repo:tag`, `repo:tag@sha256:...`), or `latest`.
fn image_tag(image: &str) -> &str {
    let no_digest = image.split('@').next().unwrap_or(image);
    let last = no_digest.rsplit('/').next().unwrap_or(no_digest);
    last.split_once(':').map(|(_, t)| t).unwrap_or("latest")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_tags() {
        assert_eq!(image_tag("ghcr.io/x/plumb:0.1.0"), "0.1.0");
        assert_eq!(image_tag("localhost:5000/plumb:v2@sha256:ab"), "v2");
        assert_eq!(image_tag("localhost:5000/plumb"), "latest");
    }
}
