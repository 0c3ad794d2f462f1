//! The Flux kinds plumb serves as one table (group, version, kind, plural), for the clients
//! that read them dynamically: the CLI's operations verbs and the fleet UI.

use kube::api::{Api, ApiResource, DynamicObject};
use serde_json::Value;

/// A Flux kind plumb serves, with its group, version and plural.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FluxKind {
    /// `source.toolkit.fluxcd.io/v1` GitRepository.
    GitRepository,
    /// `source.toolkit.fluxcd.io/v1` HelmRepository.
    HelmRepository,
    /// `source.toolkit.fluxcd.io/v1` OCIRepository.
    OCIRepository,
    /// `source.toolkit.fluxcd.io/v1` HelmChart.
    HelmChart,
    /// `kustomize.toolkit.fluxcd.io/v1` Kustomization.
    Kustomization,
    /// `helm.toolkit.fluxcd.io/v2` HelmRelease.
    HelmRelease,
    /// `notification.toolkit.fluxcd.io/v1` Receiver.
    Receiver,
    /// `source.toolkit.fluxcd.io/v1` ExternalArtifact.
    ExternalArtifact,
    /// `source.extensions.fluxcd.io/v1beta1` ArtifactGenerator.
    ArtifactGenerator,
    /// `notification.toolkit.fluxcd.io/v1beta3` Provider.
    Provider,
    /// `notification.toolkit.fluxcd.io/v1beta3` Alert.
    Alert,
    /// `image.toolkit.fluxcd.io/v1` ImageRepository.
    ImageRepository,
    /// `image.toolkit.fluxcd.io/v1` ImagePolicy.
    ImagePolicy,
    /// `image.toolkit.fluxcd.io/v1` ImageUpdateAutomation.
    ImageUpdateAutomation,
}

impl FluxKind {
    /// Group, version, kind and plural.
    pub fn parts(self) -> (&'static str, &'static str, &'static str, &'static str) {
        match self {
            FluxKind::GitRepository => (
                "source.toolkit.fluxcd.io",
                "v1",
                "GitRepository",
                "gitrepositories",
            ),
            FluxKind::HelmRepository => (
                "source.toolkit.fluxcd.io",
                "v1",
                "HelmRepository",
                "helmrepositories",
            ),
            FluxKind::OCIRepository => (
                "source.toolkit.fluxcd.io",
                "v1",
                "OCIRepository",
                "ocirepositories",
            ),
            FluxKind::HelmChart => ("source.toolkit.fluxcd.io", "v1", "HelmChart", "helmcharts"),
            FluxKind::Kustomization => (
                "kustomize.toolkit.fluxcd.io",
                "v1",
                "Kustomization",
                "kustomizations",
            ),
            FluxKind::HelmRelease => (
                "helm.toolkit.fluxcd.io",
                "v2",
                "HelmRelease",
                "helmreleases",
            ),
            FluxKind::Receiver => (
                "notification.toolkit.fluxcd.io",
                "v1",
                "Receiver",
                "receivers",
            ),
            FluxKind::ExternalArtifact => (
                "source.toolkit.fluxcd.io",
                "v1",
                "ExternalArtifact",
                "externalartifacts",
            ),
            FluxKind::ArtifactGenerator => (
                "source.extensions.fluxcd.io",
                "v1beta1",
                "ArtifactGenerator",
                "artifactgenerators",
            ),
            FluxKind::Provider => (
                "notification.toolkit.fluxcd.io",
                "v1beta3",
                "Provider",
                "providers",
            ),
            FluxKind::Alert => (
                "notification.toolkit.fluxcd.io",
                "v1beta3",
                "Alert",
                "alerts",
            ),
            FluxKind::ImageRepository => (
                "image.toolkit.fluxcd.io",
                "v1",
                "ImageRepository",
                "imagerepositories",
            ),
            FluxKind::ImagePolicy => (
                "image.toolkit.fluxcd.io",
                "v1",
                "ImagePolicy",
                "imagepolicies",
            ),
            FluxKind::ImageUpdateAutomation => (
                "image.toolkit.fluxcd.io",
                "v1",
                "ImageUpdateAutomation",
                "imageupdateautomations",
            ),
        }
    }

    /// The kind name, e.g. `Kustomization`.
    pub fn kind(self) -> &'static str {
        self.parts().2
    }

    /// The dynamic API resource of this kind.
    pub fn resource(self) -> ApiResource {
        let (group, version, kind, plural) = self.parts();
        ApiResource {
            group: group.into(),
            version: version.into(),
            api_version: format!("{group}/{version}"),
            kind: kind.into(),
            plural: plural.into(),
        }
    }

    /// The kind named `kind` (case-insensitive).
    pub fn from_kind(kind: &str) -> Option<FluxKind> {
        FluxKind::ALL
            .into_iter()
            .find(|k| k.kind().eq_ignore_ascii_case(kind))
    }

    /// Every kind plumb serves.
    pub const ALL: [FluxKind; 14] = [
        FluxKind::GitRepository,
        FluxKind::HelmRepository,
        FluxKind::OCIRepository,
        FluxKind::HelmChart,
        FluxKind::Kustomization,
        FluxKind::HelmRelease,
        FluxKind::Receiver,
        FluxKind::ExternalArtifact,
        FluxKind::ArtifactGenerator,
        FluxKind::Provider,
        FluxKind::Alert,
        FluxKind::ImageRepository,
        FluxKind::ImagePolicy,
        FluxKind::ImageUpdateAutomation,
    ];

    /// A namespaced dynamic API of this kind.
    pub fn api(self, client: &kube::Client, ns: &str) -> Api<DynamicObject> {
        Api::namespaced_with(client.clone(), ns, &self.resource())
    }

    /// The revision to show for an object of this kind (`status` read as JSON): the
    /// applied or artifact revision, or what stands in for one on kinds without.
    pub fn revision_of(self, obj: &Value) -> String {
        let s = &obj["status"];
        let v = match self {
            FluxKind::Kustomization => s["lastAppliedRevision"].as_str(),
            FluxKind::GitRepository
            | FluxKind::HelmRepository
            | FluxKind::OCIRepository
            | FluxKind::HelmChart
            | FluxKind::ExternalArtifact => s["artifact"]["revision"].as_str(),
            // A generator has no revision of its own: the digest of its sources.
            FluxKind::ArtifactGenerator => s["observedSourcesDigest"].as_str(),
            FluxKind::HelmRelease => s["history"][0]["chartVersion"]
                .as_str()
                .or_else(|| s["lastAttemptedRevision"].as_str()),
            FluxKind::Receiver => s["webhookPath"].as_str(),
            // Notification objects have no revision: the type and the provider they use.
            FluxKind::Provider => obj["spec"]["type"].as_str(),
            FluxKind::Alert => obj["spec"]["providerRef"]["name"].as_str(),
            // An image repository's revision is its tag count; a policy's the chosen image.
            FluxKind::ImageRepository => {
                let n = &s["lastScanResult"]["tagCount"];
                return n.as_i64().map(|n| format!("{n} tags")).unwrap_or_default();
            }
            FluxKind::ImagePolicy => {
                let r = &s["latestRef"];
                return match (r["name"].as_str(), r["tag"].as_str()) {
                    (Some(n), Some(t)) => format!("{n}:{t}"),
                    _ => String::new(),
                };
            }
            FluxKind::ImageUpdateAutomation => s["lastPushCommit"].as_str(),
        };
        v.unwrap_or("").to_string()
    }
}
