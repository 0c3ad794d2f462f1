//! The OCIRepository reconciler: resolve the reference in the registry, pull the selected
//! layer when the digest changed, store it as an artifact served like the git ones, and
//! report Flux's status (`artifact`, `observedIgnore`, `observedLayerSelector`).
//!
//! Steps ([`Kind::steps`]), top to bottom:
//! 1. **client**: registry options from `insecure`, `timeout`, `secretRef`
//!    (`kubernetes.io/dockerconfigjson`), `serviceAccountName` (its image pull secrets),
//!    `certSecretRef`, `proxySecretRef` and `provider: aws` (ECR `GetAuthorizationToken`,
//!    cached; a refused cached token is refreshed once) ([`client_options`]);
//! 2. **resolve**: Flux's precedence digest > semver (+ semverFilter) > tag (`latest`), one
//!    manifest request for a tag or digest (`plumb_source::oci`); then **verify** (`verify`:
//!    cosign with trusted keys, [`crate::verify`]) when the revision or spec changed;
//! 3. **pull and store**: unless the revision, ignore rules and layer selector are unchanged
//!    and the artifact is still on disk: download the layer (digest-checked, capped), extract
//!    it and archive the tree (`ignore`, `.sourceignore`), or copy it verbatim;
//! 4. **report**: `ArtifactInStorage`, the artifact (with the manifest's annotations as
//!    metadata), a `NewArtifact` event.
//!
//! So an unchanged poll costs one manifest request and no blob download.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use plumb_api::consts::{condition, reason};
use plumb_api::meta::Artifact;
use plumb_api::oci_repository::OCILayerOperation;
use plumb_api::{OCIRepository, OCIRepositoryStatus};
use plumb_source::ErrorKind;
use plumb_source::artifact::{Limits, ObjectKey};
use plumb_source::oci::{self, ClientOptions, LayerOperation, RefSpec};

use crate::Result;
use crate::context::Context;
use crate::ecr::{ProviderCredentials, with_ecr_retry};
use crate::outcome::{Class, Failure};
use crate::reconciler::{Done, Kind, Policy};

/// Artifact storage kind segment, as in Flux's URLs.
const KIND: &str = "ocirepository";

/// Runs the OCIRepository controller until shutdown.
pub async fn run(
    ctx: Arc<Context>,
    api: Api<OCIRepository>,
    watch: watcher::Config,
    concurrency: u16,
) {
    let controller = crate::reconciler::desired_state_controller(api, watch);
    crate::reconciler::run(controller, ctx, concurrency).await;
}

impl Kind for OCIRepository {
    const KIND: &'static str = "OCIRepository";
    const POLICY: Policy = Policy::SOURCE;

    fn suspended(&self) -> bool {
        self.spec.suspend
    }

    fn every(&self) -> Duration {
        self.interval().unwrap_or(Duration::from_secs(600))
    }

    fn unsupported_note(&self) -> Option<String> {
        let unsupported = self.unsupported_fields();
        (!unsupported.is_empty()).then(|| plumb_api::unsupported::message(&unsupported))
    }

    fn revision(status: &OCIRepositoryStatus) -> &str {
        status.artifact.as_ref().map_or("", |a| a.revision.as_str())
    }

    async fn steps(
        obj: &Self,
        ctx: &Context,
        status: &mut OCIRepositoryStatus,
    ) -> std::result::Result<Done, Failure> {
        let (artifact, changed) = pull_and_store(obj, ctx, status).await?;
        let msg = format!("stored artifact for digest '{}'", artifact.revision);
        crate::artifact::mark_stored(&mut status.conditions, &msg, obj.meta().generation);
        let event = changed.then(|| {
            let note = format!(
                "stored artifact with revision '{}' from '{}'",
                artifact.revision, obj.spec.url
            );
            ("NewArtifact", note)
        });
        status.url = Some(artifact.url.clone());
        status.artifact = Some(artifact);
        status.observed_ignore = obj.spec.ignore.clone();
        status.observed_layer_selector = obj.spec.layer_selector.clone();
        Ok(Done {
            ready: Some((reason::SUCCEEDED, msg)),
            event,
            requeue: None,
        })
    }

    fn failure_condition(f: &Failure) -> Option<&'static str> {
        // The last good artifact stays in status and storage. A verification failure is
        // reported in `SourceVerified` instead, as Flux.
        (f.reason != reason::VERIFICATION_ERROR).then_some(condition::FETCH_FAILED)
    }

    async fn cleanup(obj: Arc<Self>, ctx: &Context) -> Result<Action> {
        crate::artifact::remove_stored(ctx, KIND, &*obj)?;
        Ok(Action::await_change())
    }
}

/// Registry options of `obj` ([`crate::registry::client_options`]).
pub(crate) async fn client_options(
    obj: &OCIRepository,
    ctx: &Context,
    reference: &oci::Reference,
) -> std::result::Result<(ClientOptions, Option<ProviderCredentials>), Failure> {
    let ns = obj.namespace().unwrap_or_default();
    let access = crate::registry::RegistryAccess {
        namespace: &ns,
        insecure: obj.spec.insecure,
        timeout: obj.timeout().unwrap_or(Duration::from_secs(60)),
        secret_ref: obj.spec.secret_ref.as_ref(),
        service_account_name: obj.spec.service_account_name.as_deref(),
        cert_secret_ref: obj.spec.cert_secret_ref.as_ref(),
        proxy_secret_ref: obj.spec.proxy_secret_ref.as_ref(),
        provider: obj.spec.provider.as_str(),
    };
    crate::registry::client_options(ctx, &access, reference).await
}

/// `spec.verify`: checks the cosign signature of `digest` unless this revision was verified
/// before for this generation (Flux's rule), and records `SourceVerified`; without `verify`
/// the condition is removed.
async fn verify_step(
    obj: &OCIRepository,
    ctx: &Context,
    status: &mut OCIRepositoryStatus,
    client: &Arc<oci::Client>,
    digest: &str,
    revision: &str,
) -> std::result::Result<(), Failure> {
    let generation = obj.meta().generation;
    let Some(verify) = &obj.spec.verify else {
        crate::verify::clear(&mut status.conditions);
        return Ok(());
    };
    let stored = status.artifact.as_ref().map(|a| a.revision.as_str());
    if !crate::verify::needs_verification(&status.conditions, stored, revision, generation) {
        return Ok(());
    }
    let ns = obj.namespace().unwrap_or_default();
    let outcome = match crate::verify::trusted_keys(ctx, &ns, verify).await {
        Ok(keys) => {
            let (c, d) = (client.clone(), digest.to_string());
            tokio::task::spawn_blocking(move || c.verify_cosign(&d, &keys))
                .await
                .map_err(joined)
                .and_then(|r| r.map(drop).map_err(|e| classify(&e)))
        }
        Err(f) => Err(f),
    };
    crate::verify::mark(
        &mut status.conditions,
        outcome.as_ref().map(|()| revision),
        generation,
    );
    outcome
}

/// Flux's reasons for a failed OCI operation.
fn classify(e: &plumb_source::SourceError) -> Failure {
    let (class, why) = match e.kind() {
        ErrorKind::AuthFailed | ErrorKind::HostUntrusted => {
            (Class::Stalled, reason::AUTHENTICATION_FAILED)
        }
        ErrorKind::Unreachable | ErrorKind::Timeout => {
            (Class::Transient, reason::OCI_ARTIFACT_PULL_FAILED)
        }
        ErrorKind::RefNotFound => (Class::Stalled, reason::OCI_ARTIFACT_PULL_FAILED),
        ErrorKind::InvalidInput => (Class::Stalled, reason::URL_INVALID),
        ErrorKind::BadContent => (Class::Stalled, reason::OCI_ARTIFACT_LAYER_OPERATION_FAILED),
        ErrorKind::Unverified => (Class::Stalled, reason::VERIFICATION_ERROR),
        ErrorKind::Internal => (Class::Transient, condition::STORAGE_OPERATION_FAILED),
    };
    Failure::new(class, why, e.to_string())
}

fn joined(e: tokio::task::JoinError) -> Failure {
    Failure::new(
        Class::Transient,
        reason::OCI_ARTIFACT_PULL_FAILED,
        e.to_string(),
    )
}

/// Resolves the reference and, when it changed (or what shapes the artifact did), pulls and
/// stores a new artifact; returns it and whether it is new.
async fn pull_and_store(
    obj: &OCIRepository,
    ctx: &Context,
    status: &mut OCIRepositoryStatus,
) -> std::result::Result<(Artifact, bool), Failure> {
    let reference = oci::parse_url(&obj.spec.url).map_err(|e| classify(&e))?;
    let (opts, ecr) = client_options(obj, ctx, &reference).await?;
    let r = obj.spec.reference.clone().unwrap_or_default();
    let spec = RefSpec::from_flux(
        r.tag.as_deref(),
        r.semver.as_deref(),
        r.semver_filter.as_deref(),
        r.digest.as_deref(),
    );
    // Resolving is the first registry request: a refused cached ECR token shows here.
    let resolve = |opts: ClientOptions| {
        let (reference, spec) = (reference.clone(), spec.clone());
        async move {
            let client = Arc::new(oci::Client::new(&reference, &opts).map_err(|e| classify(&e))?);
            let c = client.clone();
            let resolved = tokio::task::spawn_blocking(move || c.resolve(&spec))
                .await
                .map_err(joined)?;
            Ok(resolved.map(|r| (client, r)))
        }
    };
    let (client, resolved) = with_ecr_retry(ctx, ecr, opts, resolve)
        .await?
        .map_err(|e| classify(&e))?;
    let revision = resolved.revision();
    verify_step(obj, ctx, status, &client, &resolved.digest, &revision).await?;

    // Same digest, same ignore rules and layer selector, artifact still on disk: no download.
    if let Some(current) = &status.artifact
        && current.revision == revision
        && status.observed_ignore == obj.spec.ignore
        && status.observed_layer_selector == obj.spec.layer_selector
        && ctx.storage.root().join(&current.path).is_file()
    {
        return Ok((current.clone(), false));
    }

    let selector = obj.spec.layer_selector.clone().unwrap_or_default();
    let operation = match selector.operation.unwrap_or_default() {
        OCILayerOperation::Extract => LayerOperation::Extract,
        OCILayerOperation::Copy => LayerOperation::Copy,
    };
    let (ns, name) = (obj.namespace().unwrap_or_default(), obj.name_any());
    let storage = ctx.storage.clone();
    let ignore = obj.spec.ignore.clone();
    let retention = (
        ctx.config.artifact_retention_records,
        ctx.config.artifact_retention_ttl,
    );
    let (stored, annotations) = tokio::task::spawn_blocking(move || {
        let io = |op: &'static str, path: &std::path::Path| {
            let path = path.to_path_buf();
            move |source| plumb_source::SourceError::Io { op, path, source }
        };
        let key = ObjectKey {
            kind: KIND,
            namespace: &ns,
            name: &name,
        };
        let manifest = client.fetch_manifest(&resolved.digest)?;
        let (layer, data) = client.fetch_layer(&manifest, selector.media_type.as_deref())?;
        let revision = resolved.revision();
        let stored = match operation {
            LayerOperation::Extract => {
                let work = tempfile::Builder::new()
                    .prefix("plumb-oci-")
                    .tempdir()
                    .map_err(io("create pull dir", &std::env::temp_dir()))?;
                oci::pull::extract_layer(&data, work.path(), Limits::default())?;
                storage.store_dir(
                    key,
                    &revision,
                    work.path(),
                    ignore.as_deref(),
                    Limits::default(),
                )?
            }
            LayerOperation::Copy => {
                let hex = layer.digest.trim_start_matches("sha256:");
                storage.store_bytes(key, &revision, &format!("{hex}.tgz"), &data)?
            }
        };
        storage.gc(key, &stored.path, retention.0, retention.1)?;
        Ok::<_, plumb_source::SourceError>((stored, manifest.annotations))
    })
    .await
    .map_err(joined)?
    .map_err(|e| classify(&e))?;

    Ok((
        Artifact {
            path: stored.path,
            url: stored.url,
            revision: stored.revision,
            digest: Some(stored.digest),
            last_update_time: Time(k8s_openapi::jiff::Timestamp::now()),
            size: i64::try_from(stored.size).ok(),
            metadata: annotations.into_iter().collect::<BTreeMap<_, _>>(),
        },
        true,
    ))
}
