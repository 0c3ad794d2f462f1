//! The HelmRepository reconciler (`source.toolkit.fluxcd.io/v1`, type `default`): fetch
//! `index.yaml`, store it as an artifact at Flux's path
//! (`helmrepository/<ns>/<name>/index-<hex>.yaml`), and report Flux's status. Type `oci`
//! has no index and no artifact: the URL is checked and the object is Ready; its charts are
//! pulled from the registry when a HelmRelease needs them ([`crate::oci_charts`]).
//!
//! Steps ([`Kind::steps`]), top to bottom:
//! 1. **oci**: an OCI repository only has its URL checked ([`oci_ready`]);
//! 2. **fetch**: build the client from the spec and Secrets ([`crate::charts`]), fetch the
//!    index;
//! 3. **store**: unless the revision is unchanged and on disk, store the normalized index and
//!    garbage-collect;
//! 4. **report**: `ArtifactInStorage`, the artifact and URL in status, a `NewArtifact` event.
//!
//! The artifact is the normalized index as compact JSON (valid YAML); its sha256 is the
//! revision (`sha256:<hex>`), so a poll of an unchanged index writes nothing.
//!
//! [`resolve_chart`] (in [`crate::charts`]) is what the HelmRelease controller calls to get a
//! chart: it reads the stored index (never refetching it), resolves the version range,
//! downloads the archive with the repository's credentials (cached on disk by digest,
//! verified) and returns it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use plumb_api::conditions::{self};
use plumb_api::consts::{condition, reason};
use plumb_api::meta::Artifact;
use plumb_api::{HelmRepository, HelmRepositoryStatus};
use plumb_helm::RepoErrorKind;
use plumb_helm::repo::redact_url;
use plumb_source::artifact::ObjectKey;

use crate::Result;
pub use crate::charts::{ResolvedChart, chart_cache, resolve_chart};
use crate::charts::{is_oci, repo_client};
use crate::context::Context;
use crate::outcome::{Class, Failure};
use crate::reconciler::{Done, Kind, Policy};

/// Artifact storage kind segment, as in Flux's URLs.
const KIND: &str = "helmrepository";

/// An OCI HelmRepository: a valid `oci://` URL makes it Ready (no artifact, as Flux).
fn oci_ready(
    obj: &HelmRepository,
    status: &mut HelmRepositoryStatus,
) -> std::result::Result<Done, Failure> {
    plumb_source::oci::parse_url(&obj.spec.url).map_err(|e| {
        Failure::new(
            Class::Stalled,
            reason::URL_INVALID,
            format!("invalid OCI URL '{}': {e}", redact_url(&obj.spec.url)),
        )
    })?;
    status.artifact = None;
    status.url = None;
    conditions::remove(&mut status.conditions, condition::FETCH_FAILED);
    conditions::remove(&mut status.conditions, condition::ARTIFACT_IN_STORAGE);
    Ok(Done {
        ready: Some((reason::SUCCEEDED, "Helm repository is Ready".to_string())),
        event: None,
        requeue: None,
    })
}

/// Runs the HelmRepository controller until shutdown.
pub async fn run(
    ctx: Arc<Context>,
    api: Api<HelmRepository>,
    watch: watcher::Config,
    concurrency: u16,
) {
    let controller = crate::reconciler::desired_state_controller(api, watch);
    crate::reconciler::run(controller, ctx, concurrency).await;
}

impl Kind for HelmRepository {
    const KIND: &'static str = "HelmRepository";
    const POLICY: Policy = Policy {
        retry_progresses: true,
        ..Policy::SOURCE
    };

    fn suspended(&self) -> bool {
        self.spec.suspend
    }

    fn every(&self) -> Duration {
        self.interval().unwrap_or(Duration::from_secs(60))
    }

    fn revision(status: &HelmRepositoryStatus) -> &str {
        status.artifact.as_ref().map_or("", |a| a.revision.as_str())
    }

    async fn steps(
        obj: &Self,
        ctx: &Context,
        status: &mut HelmRepositoryStatus,
    ) -> std::result::Result<Done, Failure> {
        if is_oci(obj) {
            return oci_ready(obj, status);
        }
        let (artifact, changed) = fetch_and_store(obj, ctx, status).await?;
        let msg = format!("stored artifact: revision '{}'", artifact.revision);
        crate::artifact::mark_stored(&mut status.conditions, &msg, obj.meta().generation);
        let event = changed.then(|| {
            let note = format!(
                "stored fetched index of size {} bytes from '{}'",
                artifact.size.unwrap_or_default(),
                redact_url(&obj.spec.url)
            );
            ("NewArtifact", note)
        });
        status.url = Some(artifact.url.clone());
        status.artifact = Some(artifact);
        Ok(Done {
            ready: Some((reason::SUCCEEDED, msg)),
            event,
            requeue: None,
        })
    }

    fn failure_condition(_f: &Failure) -> Option<&'static str> {
        // The last good artifact stays in status and storage.
        Some(condition::FETCH_FAILED)
    }

    async fn cleanup(obj: Arc<Self>, ctx: &Context) -> Result<Action> {
        // The index artifacts are plumb's own. Cached charts are shared by digest across
        // repositories and stay.
        crate::artifact::remove_stored(ctx, KIND, &*obj)?;
        Ok(Action::await_change())
    }
}

/// Classifies an index fetch failure (Flux reports them all as `IndexationFailed`).
fn classify_fetch(e: &plumb_helm::HelmError) -> Failure {
    let class = match e.repo_kind() {
        Some(RepoErrorKind::Unreachable | RepoErrorKind::Timeout | RepoErrorKind::NotFound) => {
            Class::Transient
        }
        Some(RepoErrorKind::Io) => {
            return Failure::new(
                Class::Transient,
                condition::STORAGE_OPERATION_FAILED,
                e.to_string(),
            );
        }
        Some(RepoErrorKind::InvalidInput) => {
            return Failure::new(Class::Stalled, reason::URL_INVALID, e.to_string());
        }
        _ => Class::Stalled,
    };
    Failure::new(
        class,
        reason::INDEXATION_FAILED,
        format!("failed to fetch Helm repository index: {e}"),
    )
}

/// Fetches the index and stores it when its revision is new. Returns the artifact and
/// whether it is new.
async fn fetch_and_store(
    obj: &HelmRepository,
    ctx: &Context,
    status: &HelmRepositoryStatus,
) -> std::result::Result<(Artifact, bool), Failure> {
    let client = repo_client(obj, ctx).await?;
    let fetched = client.fetch_index().await.map_err(|e| classify_fetch(&e))?;
    let revision = format!("sha256:{}", fetched.digest);
    if let Some(current) = &status.artifact
        && current.revision == revision
        && ctx.storage.root().join(&current.path).is_file()
    {
        return Ok((current.clone(), false));
    }
    let storage = ctx.storage.clone();
    let ns = obj.namespace().unwrap_or_default();
    let name = obj.name_any();
    let retention = (
        ctx.config.artifact_retention_records,
        ctx.config.artifact_retention_ttl,
    );
    let file = format!("index-{}.yaml", fetched.digest);
    let rev = revision.clone();
    let stored = tokio::task::spawn_blocking(move || {
        let key = ObjectKey {
            kind: KIND,
            namespace: &ns,
            name: &name,
        };
        let a = storage.store_bytes(key, &rev, &file, &fetched.canonical)?;
        storage.gc(key, &a.path, retention.0, retention.1)?;
        Ok::<_, plumb_source::SourceError>(a)
    })
    .await
    .map_err(|e| {
        Failure::new(
            Class::Transient,
            condition::STORAGE_OPERATION_FAILED,
            e.to_string(),
        )
    })?
    .map_err(|e| {
        Failure::new(
            Class::Transient,
            condition::STORAGE_OPERATION_FAILED,
            e.to_string(),
        )
    })?;
    Ok((
        Artifact {
            path: stored.path,
            url: stored.url,
            revision,
            digest: Some(stored.digest),
            last_update_time: Time(k8s_openapi::jiff::Timestamp::now()),
            size: i64::try_from(stored.size).ok(),
            metadata: BTreeMap::new(),
        },
        true,
    ))
}
