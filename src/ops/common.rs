//! The kinds, targets and helpers the verb modules share.

use std::time::Duration;

use anyhow::{Context as _, Result};
use serde_json::Value;

pub use plumb_api::kinds::FluxKind;

/// The object a reconcile, suspend or resume acts on.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Target {
    /// A Kustomization.
    #[command(alias = "kustomization")]
    Ks {
        /// Name of the Kustomization.
        name: String,
    },
    /// A source.
    #[command(subcommand)]
    Source(SourceTarget),
    /// A HelmRelease.
    #[command(alias = "helmrelease")]
    Hr {
        /// Name of the HelmRelease.
        name: String,
    },
    /// A Receiver.
    Receiver {
        /// Name of the Receiver.
        name: String,
    },
}

/// A source kind and name.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum SourceTarget {
    /// A GitRepository.
    Git {
        /// Name of the GitRepository.
        name: String,
    },
    /// A HelmRepository.
    Helm {
        /// Name of the HelmRepository.
        name: String,
    },
    /// An OCIRepository.
    Oci {
        /// Name of the OCIRepository.
        name: String,
    },
    /// A HelmChart.
    Chart {
        /// Name of the HelmChart.
        name: String,
    },
    /// An ArtifactGenerator (its ExternalArtifacts follow).
    #[command(alias = "artifactgenerator")]
    Generator {
        /// Name of the ArtifactGenerator.
        name: String,
    },
}

impl Target {
    pub(crate) fn kind_name(&self) -> (FluxKind, &str) {
        match self {
            Target::Ks { name } => (FluxKind::Kustomization, name),
            Target::Source(SourceTarget::Git { name }) => (FluxKind::GitRepository, name),
            Target::Source(SourceTarget::Helm { name }) => (FluxKind::HelmRepository, name),
            Target::Source(SourceTarget::Oci { name }) => (FluxKind::OCIRepository, name),
            Target::Source(SourceTarget::Chart { name }) => (FluxKind::HelmChart, name),
            Target::Source(SourceTarget::Generator { name }) => (FluxKind::ArtifactGenerator, name),
            Target::Hr { name } => (FluxKind::HelmRelease, name),
            Target::Receiver { name } => (FluxKind::Receiver, name),
        }
    }
}

pub(crate) fn parse_timeout(s: &str) -> Result<Duration, String> {
    plumb_api::duration::parse(s).map_err(|e| e.to_string())
}

pub(crate) fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")
}

pub(crate) async fn client() -> Result<kube::Client> {
    let cfg = kube::Config::infer()
        .await
        .context("loading Kubernetes configuration (KUBECONFIG or in-cluster)")?;
    kube::Client::try_from(cfg).context("creating the Kubernetes client")
}

// ---------------------------------------------------------------------------------------------
// Reading status

pub(crate) fn condition<'a>(obj: &'a Value, type_: &str) -> Option<&'a Value> {
    obj["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}

pub(crate) fn ready_of(obj: &Value) -> (String, String) {
    match condition(obj, "Ready") {
        Some(c) => (
            c["status"].as_str().unwrap_or("Unknown").to_string(),
            c["message"].as_str().unwrap_or("").to_string(),
        ),
        None => ("Unknown".into(), "waiting to be reconciled".into()),
    }
}

pub(crate) fn revision_of(kind: FluxKind, obj: &Value) -> String {
    kind.revision_of(obj)
}

pub(crate) fn suspended_of(obj: &Value) -> bool {
    obj["spec"]["suspend"].as_bool().unwrap_or(false)
}

pub(crate) fn age_of(obj: &Value, now: chrono::DateTime<chrono::Utc>) -> String {
    obj["metadata"]["creationTimestamp"]
        .as_str()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| short_duration(now.signed_duration_since(t)))
        .unwrap_or_default()
}

/// `kubectl`-style short age: `45s`, `12m`, `3h`, `5d`.
pub(crate) fn short_duration(d: chrono::TimeDelta) -> String {
    let s = d.num_seconds().max(0);
    match s {
        0..=119 => format!("{s}s"),
        120..=7199 => format!("{}m", s / 60),
        7200..=172_799 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    }
}

/// Prints rows as aligned columns (the last column is not padded).
pub(crate) fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let n = cells.len();
        let mut out = String::new();
        for (i, c) in cells.into_iter().enumerate() {
            if i + 1 == n {
                out.push_str(c);
            } else {
                out.push_str(&format!("{c:<w$}   ", w = widths[i]));
            }
        }
        println!("{}", out.trim_end());
    };
    line(header.to_vec());
    for r in rows {
        line(r.iter().map(String::as_str).collect());
    }
}

/// The source an object reads from: (kind, namespace, name).
pub(crate) fn source_of(
    kind: FluxKind,
    obj: &Value,
    ns: &str,
) -> Option<(FluxKind, String, String)> {
    let r = match kind {
        FluxKind::Kustomization => &obj["spec"]["sourceRef"],
        FluxKind::HelmRelease => {
            let chart_src = &obj["spec"]["chart"]["spec"]["sourceRef"];
            if chart_src.is_object() {
                chart_src
            } else {
                &obj["spec"]["chartRef"]
            }
        }
        _ => return None,
    };
    let skind = FluxKind::from_kind(r["kind"].as_str()?)?;
    let sns = r["namespace"].as_str().unwrap_or(ns).to_string();
    Some((skind, sns, r["name"].as_str()?.to_string()))
}

pub(crate) async fn get_obj(
    client: &kube::Client,
    kind: FluxKind,
    ns: &str,
    name: &str,
) -> Result<Value> {
    let o = kind
        .api(client, ns)
        .get(name)
        .await
        .with_context(|| format!("getting {} {ns}/{name}", kind.kind()))?;
    Ok(serde_json::to_value(o)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ages() {
        assert_eq!(short_duration(chrono::TimeDelta::seconds(5)), "5s");
        assert_eq!(short_duration(chrono::TimeDelta::seconds(600)), "10m");
        assert_eq!(short_duration(chrono::TimeDelta::seconds(3 * 3600)), "3h");
        assert_eq!(short_duration(chrono::TimeDelta::seconds(3 * 86400)), "3d");
    }

    #[test]
    fn sources() {
        let ks = json!({"spec": {"sourceRef": {"kind": "GitRepository", "name": "fleet"}}});
        assert_eq!(
            source_of(FluxKind::Kustomization, &ks, "ns"),
            Some((FluxKind::GitRepository, "ns".into(), "fleet".into()))
        );
        let hr = json!({"spec": {"chart": {"spec": {"sourceRef": {"kind": "HelmRepository", "name": "r", "namespace": "o"}}}}});
        assert_eq!(
            source_of(FluxKind::HelmRelease, &hr, "ns"),
            Some((FluxKind::HelmRepository, "o".into(), "r".into()))
        );
        let hr = json!({"spec": {"chartRef": {"kind": "OCIRepository", "name": "podinfo"}}});
        assert_eq!(
            source_of(FluxKind::HelmRelease, &hr, "ns"),
            Some((FluxKind::OCIRepository, "ns".into(), "podinfo".into()))
        );
        // `plumb tree` and `plumb get` follow a Kustomization to its ExternalArtifact.
        let ks = json!({"spec": {"sourceRef": {"kind": "ExternalArtifact", "name": "app-a"}}});
        assert_eq!(
            source_of(FluxKind::Kustomization, &ks, "ns"),
            Some((FluxKind::ExternalArtifact, "ns".into(), "app-a".into()))
        );
        let ea = json!({"status": {"artifact": {"revision": "latest@sha256:ab"}}});
        assert_eq!(
            revision_of(FluxKind::ExternalArtifact, &ea),
            "latest@sha256:ab"
        );
        assert_eq!(
            FluxKind::ArtifactGenerator.resource().api_version,
            "source.extensions.fluxcd.io/v1beta1"
        );
        let repo = json!({"status": {"lastScanResult": {"tagCount": 12}}});
        assert_eq!(revision_of(FluxKind::ImageRepository, &repo), "12 tags");
        let pol = json!({"status": {"latestRef": {"name": "ghcr.io/a/b", "tag": "1.2.3"}}});
        assert_eq!(
            revision_of(FluxKind::ImagePolicy, &pol),
            "ghcr.io/a/b:1.2.3"
        );
    }
}
