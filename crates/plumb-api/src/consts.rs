//! Frozen identifiers shared with Flux: condition types and reasons, annotations, labels,
//! the finalizer and field managers. Changing any value breaks compatibility with objects
//! Flux (or an earlier plumb) wrote, so these are constants, not configuration.

/// Condition types (kstatus and Flux-specific).
pub mod condition {
    /// The object is reconciled and its desired state is in effect.
    pub const READY: &str = "Ready";
    /// A reconciliation is in progress (abnormal-true, kstatus).
    pub const RECONCILING: &str = "Reconciling";
    /// Reconciliation cannot proceed without a change to the object (abnormal-true, kstatus).
    pub const STALLED: &str = "Stalled";
    /// Kustomization: the applied objects passed their health checks.
    pub const HEALTHY: &str = "Healthy";
    /// Source: the artifact in `status.artifact` exists in storage.
    pub const ARTIFACT_IN_STORAGE: &str = "ArtifactInStorage";
    /// Source: the artifact is outdated and a new one is being produced.
    pub const ARTIFACT_OUTDATED: &str = "ArtifactOutdated";
    /// Source: fetching the source failed (abnormal-true).
    pub const FETCH_FAILED: &str = "FetchFailed";
    /// Source: building the artifact failed (abnormal-true).
    pub const BUILD_FAILED: &str = "BuildFailed";
    /// Source: a storage operation failed (abnormal-true).
    pub const STORAGE_OPERATION_FAILED: &str = "StorageOperationFailed";
    /// Source: the signature of the source was verified.
    pub const SOURCE_VERIFIED: &str = "SourceVerified";
    /// GitRepository: an included repository has no artifact (abnormal-true).
    pub const INCLUDE_UNAVAILABLE: &str = "IncludeUnavailable";
    /// HelmRelease: the release was installed or upgraded.
    pub const RELEASED: &str = "Released";
    /// HelmRelease: the Helm tests succeeded.
    pub const TEST_SUCCESS: &str = "TestSuccess";
    /// HelmRelease: a failed release was remediated.
    pub const REMEDIATED: &str = "Remediated";
}

/// Condition reasons.
pub mod reason {
    /// A cross-namespace reference was denied (`--no-cross-namespace-refs`).
    pub const ACCESS_DENIED: &str = "AccessDenied";
    /// The reconciliation succeeded (meta).
    pub const RECONCILIATION_SUCCEEDED: &str = "ReconciliationSucceeded";
    /// The reconciliation failed (meta).
    pub const RECONCILIATION_FAILED: &str = "ReconciliationFailed";
    /// The reconciliation is in progress (meta).
    pub const PROGRESSING: &str = "Progressing";
    /// The reconciliation is in progress after a failure (meta).
    pub const PROGRESSING_WITH_RETRY: &str = "ProgressingWithRetry";
    /// A dependency is not ready (meta).
    pub const DEPENDENCY_NOT_READY: &str = "DependencyNotReady";
    /// The reconciliation is suspended (meta).
    pub const SUSPENDED: &str = "Suspended";
    /// Generic success (meta).
    pub const SUCCEEDED: &str = "Succeeded";
    /// Generic failure (meta).
    pub const FAILED: &str = "Failed";
    /// A CEL expression does not compile (meta).
    pub const INVALID_CEL_EXPRESSION: &str = "InvalidCELExpression";
    /// A feature gate needed by the spec is off (meta).
    pub const FEATURE_GATE_DISABLED: &str = "FeatureGateDisabled";
    /// Health checks failed (kustomize).
    pub const HEALTH_CHECK_FAILED: &str = "HealthCheckFailed";
    /// Pruning failed (kustomize).
    pub const PRUNE_FAILED: &str = "PruneFailed";
    /// The source artifact could not be fetched (kustomize, helm).
    pub const ARTIFACT_FAILED: &str = "ArtifactFailed";
    /// Building the manifests failed (kustomize, source).
    pub const BUILD_FAILED: &str = "BuildFailed";
    /// A path in the spec does not exist or escapes the root (source, kustomize).
    pub const INVALID_PATH: &str = "InvalidPath";
    /// Kustomization: a SOPS document could not be decrypted (key, MAC, format); nothing is
    /// applied or pruned.
    pub const DECRYPTION_FAILED: &str = "DecryptionFailed";
    /// A Git operation succeeded (source).
    pub const GIT_OPERATION_SUCCEEDED: &str = "GitOperationSucceeded";
    /// A Git operation failed (source).
    pub const GIT_OPERATION_FAILED: &str = "GitOperationFailed";
    /// Authentication with the source failed (source).
    pub const AUTHENTICATION_FAILED: &str = "AuthenticationFailed";
    /// The source URL is invalid (source).
    pub const URL_INVALID: &str = "URLInvalid";
    /// Signature verification failed (source).
    pub const VERIFICATION_ERROR: &str = "VerificationError";
    /// A Git commit signature is missing or not by a trusted key (source).
    pub const INVALID_COMMIT_SIGNATURE: &str = "InvalidCommitSignature";
    /// A Git tag signature is missing or not by a trusted key (source).
    pub const INVALID_TAG_SIGNATURE: &str = "InvalidTagSignature";
    /// `verify.mode` asks for a tag signature but the reference is not a tag (source).
    pub const INVALID_VERIFICATION_MODE: &str = "InvalidVerificationMode";
    /// The artifact is up to date (source).
    pub const ARTIFACT_UP_TO_DATE: &str = "ArtifactUpToDate";
    /// Creating a directory in storage failed (source).
    pub const DIRECTORY_CREATION_FAILED: &str = "DirectoryCreationFailed";
    /// Stat of a storage path failed (source).
    pub const STAT_OPERATION_FAILED: &str = "StatOperationFailed";
    /// Reading from storage failed (source).
    pub const READ_OPERATION_FAILED: &str = "ReadOperationFailed";
    /// Taking the storage lock failed (source).
    pub const ACQUIRE_LOCK_FAILED: &str = "AcquireLockFailed";
    /// Writing the archive failed (source).
    pub const ARCHIVE_OPERATION_FAILED: &str = "ArchiveOperationFailed";
    /// Updating the `latest` symlink failed (source).
    pub const SYMLINK_UPDATE_FAILED: &str = "SymlinkUpdateFailed";
    /// Patching the object failed (source).
    pub const PATCH_OPERATION_FAILED: &str = "PatchOperationFailed";
    /// Fetching the Helm repository index failed (source).
    pub const INDEXATION_FAILED: &str = "IndexationFailed";
    /// Fetching the Helm repository index succeeded (source).
    pub const INDEXATION_SUCCEEDED: &str = "IndexationSucceeded";
    /// A chart name or version range matches nothing in the repository (source, Flux's
    /// HelmChart `InvalidChartReference`).
    pub const INVALID_CHART_REFERENCE: &str = "InvalidChartReference";
    /// Downloading or verifying a chart failed (source, Flux's HelmChart `ChartPullError`).
    pub const CHART_PULL_ERROR: &str = "ChartPullError";
    /// plumb: the HelmRepository type is `oci`, which plumb does not implement yet.
    pub const OCI_NOT_SUPPORTED: &str = "OCINotSupported";
    /// OCIRepository: resolving the reference or pulling the artifact failed.
    pub const OCI_ARTIFACT_PULL_FAILED: &str = "OCIArtifactPullFailed";
    /// OCIRepository: no layer matched, or extracting/copying the layer failed.
    pub const OCI_ARTIFACT_LAYER_OPERATION_FAILED: &str = "OCIArtifactLayerOperationFailed";
    /// Helm install succeeded.
    pub const INSTALL_SUCCEEDED: &str = "InstallSucceeded";
    /// Helm install failed.
    pub const INSTALL_FAILED: &str = "InstallFailed";
    /// Helm upgrade succeeded.
    pub const UPGRADE_SUCCEEDED: &str = "UpgradeSucceeded";
    /// Helm upgrade failed.
    pub const UPGRADE_FAILED: &str = "UpgradeFailed";
    /// Helm test succeeded.
    pub const TEST_SUCCEEDED: &str = "TestSucceeded";
    /// Helm test failed.
    pub const TEST_FAILED: &str = "TestFailed";
    /// Helm rollback succeeded.
    pub const ROLLBACK_SUCCEEDED: &str = "RollbackSucceeded";
    /// Helm rollback failed.
    pub const ROLLBACK_FAILED: &str = "RollbackFailed";
    /// Helm uninstall succeeded.
    pub const UNINSTALL_SUCCEEDED: &str = "UninstallSucceeded";
    /// Helm uninstall failed.
    pub const UNINSTALL_FAILED: &str = "UninstallFailed";
    /// Helm action configuration could not be initialised.
    pub const INIT_FAILED: &str = "InitFailed";
    /// The last release could not be read from Helm storage.
    pub const GET_LAST_RELEASE_FAILED: &str = "GetLastReleaseFailed";
    /// Drift between the release manifest and the cluster was detected.
    pub const DRIFT_DETECTED: &str = "DriftDetected";
    /// Drift between the release manifest and the cluster was corrected.
    pub const DRIFT_CORRECTED: &str = "DriftCorrected";
    /// plumb: the spec uses a field plumb does not implement yet.
    pub const UNSUPPORTED_FIELD: &str = "UnsupportedField";
    /// ArtifactGenerator: a source is missing or has no artifact (source-watcher).
    pub const SOURCE_FETCH_FAILED: &str = "SourceFetchFailed";
    /// ArtifactGenerator: the spec is invalid (duplicate alias, unknown alias) (source-watcher).
    pub const VALIDATION_FAILED: &str = "ValidationFailed";
}

/// Annotations and their values.
pub mod annotation {
    /// Requests a reconciliation; any change of value triggers one.
    pub const RECONCILE_REQUESTED_AT: &str = "reconcile.fluxcd.io/requestedAt";
    /// HelmRelease: forces a one-off install/upgrade when it equals `requestedAt`.
    pub const RECONCILE_FORCE_AT: &str = "reconcile.fluxcd.io/forceAt";
    /// HelmRelease: resets failure counters when it equals `requestedAt`.
    pub const RECONCILE_RESET_AT: &str = "reconcile.fluxcd.io/resetAt";
    /// Per-object prune setting; value [`DISABLED`] keeps the object.
    pub const KUSTOMIZE_PRUNE: &str = "kustomize.toolkit.fluxcd.io/prune";
    /// Per-object apply policy; values [`SSA_MERGE`], [`SSA_IF_NOT_PRESENT`], [`SSA_IGNORE`].
    pub const KUSTOMIZE_SSA: &str = "kustomize.toolkit.fluxcd.io/ssa";
    /// Per-object recreate-on-immutable-change; value [`ENABLED`].
    pub const KUSTOMIZE_FORCE: &str = "kustomize.toolkit.fluxcd.io/force";
    /// Per-object or per-Kustomization reconcile switch; value [`DISABLED`].
    pub const KUSTOMIZE_RECONCILE: &str = "kustomize.toolkit.fluxcd.io/reconcile";
    /// Per-object variable substitution switch; value [`DISABLED`].
    pub const KUSTOMIZE_SUBSTITUTE: &str = "kustomize.toolkit.fluxcd.io/substitute";
    /// plumb (beyond Flux): per-Kustomization switch of the skip of unchanged builds (a new
    /// source revision that changes nothing the build reads is recorded without rendering or
    /// applying); value [`DISABLED`] restores Flux's full reconcile on every revision.
    pub const SKIP_UNCHANGED: &str = "plumb.dev/skip-unchanged";
    /// Legacy checksum annotation removed on apply.
    pub const KUSTOMIZE_CHECKSUM: &str = "kustomize.toolkit.fluxcd.io/checksum";
    /// Flux v1 checksum annotation removed on apply.
    pub const FLUX_V1_SYNC_CHECKSUM: &str = "fluxcd.io/sync-checksum";
    /// kubectl's client-side-apply record, removed on apply.
    pub const KUBECTL_LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";
    /// HelmRelease: per-object drift detection switch; value [`DISABLED`].
    pub const HELM_DRIFT_DETECTION: &str = "helm.toolkit.fluxcd.io/driftDetection";
    /// Helm: resource policy; value [`HELM_KEEP`] keeps the object on upgrade and uninstall.
    pub const HELM_RESOURCE_POLICY: &str = "helm.sh/resource-policy";
    /// Helm: resource policy value "keep".
    pub const HELM_KEEP: &str = "keep";
    /// Helm ownership: the release an object belongs to.
    pub const HELM_RELEASE_NAME: &str = "meta.helm.sh/release-name";
    /// Helm ownership: the namespace of the release an object belongs to.
    pub const HELM_RELEASE_NAMESPACE: &str = "meta.helm.sh/release-namespace";
    /// Value "enabled".
    pub const ENABLED: &str = "enabled";
    /// Value "disabled".
    pub const DISABLED: &str = "disabled";
    /// `ssa` value: apply and merge (the default).
    pub const SSA_MERGE: &str = "Merge";
    /// `ssa` value: create only when absent.
    pub const SSA_IF_NOT_PRESENT: &str = "IfNotPresent";
    /// `ssa` value: never apply.
    pub const SSA_IGNORE: &str = "Ignore";
    /// Annotations removed from applied objects.
    pub const REMOVED_ON_APPLY: &[&str] = &[
        KUBECTL_LAST_APPLIED,
        KUSTOMIZE_CHECKSUM,
        FLUX_V1_SYNC_CHECKSUM,
    ];
}

/// Labels.
pub mod label {
    /// Name of the Kustomization that applied an object.
    pub const KUSTOMIZE_NAME: &str = "kustomize.toolkit.fluxcd.io/name";
    /// Namespace of the Kustomization that applied an object.
    pub const KUSTOMIZE_NAMESPACE: &str = "kustomize.toolkit.fluxcd.io/namespace";
    /// Name of the HelmRelease that owns an object (e.g. its HelmChart).
    pub const HELM_NAME: &str = "helm.toolkit.fluxcd.io/name";
    /// Namespace of the HelmRelease that owns an object.
    pub const HELM_NAMESPACE: &str = "helm.toolkit.fluxcd.io/namespace";
    /// Shard key; a controller started with a shard selector only reconciles matching objects.
    pub const SHARDING_KEY: &str = "sharding.fluxcd.io/key";
    /// ConfigMaps and Secrets with this label set to [`WATCH_ENABLED`] trigger reconciles of
    /// the objects that reference them.
    pub const RECONCILE_WATCH: &str = "reconcile.fluxcd.io/watch";
    /// Value of [`RECONCILE_WATCH`].
    pub const WATCH_ENABLED: &str = "Enabled";
    /// Flux v1 garbage-collection mark, removed on apply.
    pub const FLUX_V1_SYNC_GC_MARK: &str = "fluxcd.io/sync-gc-mark";
    /// Labels removed from applied objects.
    pub const REMOVED_ON_APPLY: &[&str] = &[FLUX_V1_SYNC_GC_MARK];
}

/// The finalizer every Flux controller puts on its objects.
pub const FINALIZER: &str = "finalizers.fluxcd.io";

/// Path prefix of Receiver webhooks: `/hook/<sha256>`.
pub const RECEIVER_WEBHOOK_PATH_PREFIX: &str = "/hook/";

/// Field managers.
pub mod field_manager {
    /// Manager of objects applied for Kustomizations.
    pub const KUSTOMIZE_CONTROLLER: &str = "kustomize-controller";
    /// Manager of objects released for HelmReleases.
    pub const HELM_CONTROLLER: &str = "helm-controller";
    /// Manager of source objects' status.
    pub const SOURCE_CONTROLLER: &str = "source-controller";
    /// Manager of ExternalArtifacts generated by ArtifactGenerators, and of their status.
    pub const SOURCE_WATCHER: &str = "source-watcher";
    /// Manager of Receiver status and reconcile-request annotations.
    pub const NOTIFICATION_CONTROLLER: &str = "notification-controller";
    /// `kubectl apply` (client-side, older kubectl) and `kubectl apply --server-side`.
    pub const KUBECTL: &str = "kubectl";
    /// `kubectl apply` (client-side, newer kubectl).
    pub const KUBECTL_CLIENT_SIDE_APPLY: &str = "kubectl-client-side-apply";
    /// The manager the API server records for client-side-applied fields upgraded to SSA.
    pub const BEFORE_FIRST_APPLY: &str = "before-first-apply";

    /// Operation of a managedFields entry.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum Operation {
        /// `operation: Apply`.
        Apply,
        /// `operation: Update`.
        Update,
    }

    impl Operation {
        /// The value in `metadata.managedFields[].operation`.
        pub fn as_str(self) -> &'static str {
            match self {
                Self::Apply => "Apply",
                Self::Update => "Update",
            }
        }
    }

    /// Managers whose fields are taken over on every apply so that imperative edits are undone.
    /// Flux's kustomize-controller list is kubectl (Apply and Update), `before-first-apply`
    /// (Update) and its own name (Update, from before it used SSA). plumb adds
    /// `kubectl-client-side-apply` (Update): the manager newer kubectl versions record for a
    /// client-side `kubectl apply`, which Flux's "undo kubectl apply" entry means to cover.
    pub const REMOVED_ON_APPLY: &[(&str, Operation)] = &[
        (KUBECTL, Operation::Apply),
        (KUBECTL, Operation::Update),
        (KUBECTL_CLIENT_SIDE_APPLY, Operation::Update),
        (BEFORE_FIRST_APPLY, Operation::Update),
        (KUSTOMIZE_CONTROLLER, Operation::Update),
    ];
}

/// OCI artifacts as Flux writes and reads them (`fluxcd/pkg/oci`, Helm's OCI support).
pub mod oci {
    /// Scheme prefix of OCIRepository and OCI HelmRepository URLs.
    pub const URL_PREFIX: &str = "oci://";
    /// Tag pulled when `spec.ref` names nothing.
    pub const DEFAULT_TAG: &str = "latest";
    /// Media type of an OCI image manifest (what `flux push artifact` writes).
    pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
    /// Media type of an OCI image index (multi-platform images).
    pub const INDEX_MEDIA_TYPE: &str = "application/vnd.oci.image.index.v1+json";
    /// Media type of a Docker schema 2 manifest (older pushers).
    pub const DOCKER_MANIFEST_MEDIA_TYPE: &str =
        "application/vnd.docker.distribution.manifest.v2+json";
    /// Media type of a Docker manifest list.
    pub const DOCKER_MANIFEST_LIST_MEDIA_TYPE: &str =
        "application/vnd.docker.distribution.manifest.list.v2+json";
    /// Config media type of Flux artifacts.
    pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.cncf.flux.config.v1+json";
    /// Prefix of Flux's content media types (static layers add `.<ext>`).
    pub const CONTENT_MEDIA_TYPE_PREFIX: &str = "application/vnd.cncf.flux.content.v1";
    /// Content layer media type of Flux artifacts: the directory as tar+gzip.
    pub const CONTENT_MEDIA_TYPE: &str = "application/vnd.cncf.flux.content.v1.tar+gzip";
    /// Helm chart config media type.
    pub const HELM_CONFIG_MEDIA_TYPE: &str = "application/vnd.cncf.helm.config.v1+json";
    /// Helm chart content layer media type (the chart `.tgz`).
    pub const HELM_CHART_CONTENT_MEDIA_TYPE: &str =
        "application/vnd.cncf.helm.chart.content.v1.tar+gzip";
    /// Helm chart provenance layer media type.
    pub const HELM_CHART_PROVENANCE_MEDIA_TYPE: &str =
        "application/vnd.cncf.helm.chart.provenance.v1.prov";
    /// Annotation: the source the artifact was built from (e.g. a Git URL).
    pub const SOURCE_ANNOTATION: &str = "org.opencontainers.image.source";
    /// Annotation: the source revision (e.g. `main@sha1:<commit>`).
    pub const REVISION_ANNOTATION: &str = "org.opencontainers.image.revision";
    /// Annotation: when the artifact was built (RFC 3339, UTC).
    pub const CREATED_ANNOTATION: &str = "org.opencontainers.image.created";
    /// User agent of OCI requests (Flux sends `flux/v2`).
    pub const USER_AGENT: &str = "flux/v2";
}

/// Revision algorithm prefix of Git SHA-1 commits.
pub const REVISION_SHA1: &str = "sha1";
/// Revision algorithm prefix of SHA-256 digests (Git SHA-256 commits and OCI).
pub const REVISION_SHA256: &str = "sha256";

/// Maximum length of a condition message; longer messages are truncated (as Flux does).
pub const MAX_CONDITION_MESSAGE_LENGTH: usize = 20000;
