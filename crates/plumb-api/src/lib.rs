//! Flux v2 GA compatible CRD types, kstatus conditions and frozen identifiers.
//!
//! plumb serves Flux's API unchanged, so this crate mirrors the Go types of
//! `source.toolkit.fluxcd.io/v1` ([`GitRepository`], [`HelmRepository`], [`OCIRepository`],
//! [`HelmChart`], Flux 2.7's [`ExternalArtifact`]),
//! `source.extensions.fluxcd.io/v1beta1` ([`ArtifactGenerator`]),
//! `kustomize.toolkit.fluxcd.io/v1` ([`Kustomization`]), `helm.toolkit.fluxcd.io/v2`
//! ([`HelmRelease`]) and `notification.toolkit.fluxcd.io/v1` ([`Receiver`]) field by field, with
//! the same JSON names, enums, defaults, validation, short names and printer columns. The
//! CustomResourceDefinitions in `deploy/crds` are generated from these types ([`crds`]).
//!
//! Hand-written parts, and why:
//! * [`consts`]: Flux's condition types, reasons, annotations, labels and field managers are
//!   frozen strings of its Go packages; no Rust crate provides them.
//! * [`inventory::ObjMetadata`] and [`revision::Revision`]: the exact id and revision encodings of
//!   cli-utils and Flux, which must match byte for byte to adopt objects Flux applied.
//! * [`conditions`]: the kstatus helpers of `apimachinery/pkg/api/meta` (set/find/remove with
//!   transition times); kube-rs has none.
//! * [`schema_check`]: a small structural walk of an openAPIV3Schema; a full JSON-schema
//!   validator would also judge values, which the API server does, while here we only need to
//!   know that no field is pruned.
//! * [`duration`]: Go `time.ParseDuration`, the format of every interval and timeout.

/// Implements `as_str` (the JSON value) and `Display` for a string enum, and a unit test that
/// they agree with serde for every variant.
macro_rules! string_enum {
    ($t:ty { $($v:ident => $s:literal),* $(,)? }) => {
        impl $t {
            /// The value as written in JSON.
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$v => $s),* }
            }

            #[cfg(test)]
            pub(crate) const ALL: &'static [$t] = &[$(Self::$v),*];
        }

        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

pub mod artifact_generator;
pub mod conditions;
pub mod consts;
pub mod crdgen;
pub mod duration;
mod error;
pub mod external_artifact;
pub mod git_repository;
pub mod helm_chart;
pub mod helm_release;
pub mod helm_repository;
pub mod image_automation;
pub mod image_reflector;
pub mod inventory;
pub mod kinds;
pub mod kustomization;
pub mod kustomize;
pub mod meta;
pub mod notification;
pub mod oci_repository;
pub mod receiver;
pub mod revision;
pub mod schema_check;
pub mod unsupported;

pub use artifact_generator::{ArtifactGenerator, ArtifactGeneratorSpec, ArtifactGeneratorStatus};
pub use crdgen::{crd_file_name, crd_files, crds, crds_yaml};
pub use error::Error;
pub use external_artifact::{ExternalArtifact, ExternalArtifactSpec, ExternalArtifactStatus};
pub use git_repository::{GitRepository, GitRepositorySpec, GitRepositoryStatus};
pub use helm_chart::{HelmChart, HelmChartSpec, HelmChartStatus};
pub use helm_release::{HelmRelease, HelmReleaseSpec, HelmReleaseStatus};
pub use helm_repository::{HelmRepository, HelmRepositorySpec, HelmRepositoryStatus};
pub use image_automation::{
    ImageUpdateAutomation, ImageUpdateAutomationSpec, ImageUpdateAutomationStatus,
};
pub use image_reflector::{
    ImagePolicy, ImagePolicySpec, ImagePolicyStatus, ImageRepository, ImageRepositorySpec,
    ImageRepositoryStatus,
};
pub use kustomization::{Kustomization, KustomizationSpec, KustomizationStatus};
pub use notification::{Alert, AlertSpec, NotificationStatus, Provider, ProviderSpec};
pub use oci_repository::{OCIRepository, OCIRepositorySpec, OCIRepositoryStatus};
pub use receiver::{Receiver, ReceiverSpec, ReceiverStatus};

#[cfg(test)]
mod string_enum_tests {
    use serde::Serialize;

    fn agrees<T: Serialize + Copy + std::fmt::Display>(all: &[T]) {
        for v in all {
            assert_eq!(serde_json::to_value(v).unwrap(), v.to_string());
        }
    }

    #[test]
    fn as_str_matches_serde() {
        use crate::{git_repository as g, helm_release as h, helm_repository as r};
        use crate::{kustomization as k, receiver as n};
        agrees(g::GitProvider::ALL);
        agrees(g::GitVerificationMode::ALL);
        agrees(r::HelmRepositoryType::ALL);
        agrees(r::HelmRepositoryProvider::ALL);
        agrees(k::SourceKind::ALL);
        agrees(k::ValuesKind::ALL);
        agrees(k::DeletionPolicy::ALL);
        agrees(h::ChartReferenceKind::ALL);
        agrees(h::ChartSourceKind::ALL);
        agrees(h::CrdsPolicy::ALL);
        agrees(h::RemediationStrategy::ALL);
        agrees(h::DriftDetectionMode::ALL);
        agrees(h::ReleaseAction::ALL);
        agrees(n::ReceiverType::ALL);
        agrees(n::ReceiverResourceKind::ALL);
        agrees(crate::oci_repository::OCILayerOperation::ALL);
        agrees(crate::oci_repository::OCIRepositoryProvider::ALL);
        agrees(crate::artifact_generator::GeneratorSourceKind::ALL);
        agrees(crate::artifact_generator::CopyStrategy::ALL);
        agrees(crate::notification::ProviderType::ALL);
        agrees(crate::notification::EventSeverity::ALL);
        agrees(crate::notification::EventSourceKind::ALL);
        agrees(crate::image_reflector::ImageProvider::ALL);
        agrees(crate::image_reflector::SortOrder::ALL);
        agrees(crate::image_reflector::ReflectionPolicy::ALL);
        agrees(crate::image_automation::AutomationSourceKind::ALL);
        agrees(crate::image_automation::SigningKeyType::ALL);
        agrees(crate::image_automation::UpdateStrategyName::ALL);
    }
}
