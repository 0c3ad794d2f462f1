//! The HelmRepository reconciler (`source.toolkit.fluxcd.io/v1`, type `default`): fetch
//! `index.yaml`, store it as an artifact at Flux's path
//! (`helmrepository/<ns>/<name>/index-<hex>.yaml`), and report Flux's status. Type `oci` is
//! rejected with a Stalled condition (reason `OCINotSupported`).
//!
//! The artifact is the normalized index as compact JSON (valid YAML); its sha256 is the
//! revision (`sha256:<hex>`), so a poll of an unchanged index writes nothing.
//!
//! [`resolve_chart`] is what the HelmRelease controller calls to get a chart: it reads the
//! stored index (never refetching it), resolves the version range, downloads the archive
//! with the repository's credentials (cached on disk by digest, verified) and returns it.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use plumb_api::conditions::{self, Status as CondStatus};
use plumb_api::consts::{FINALIZER, annotation, condition, reason};
use plumb_api::helm_repository::HelmRepositoryType;
use plumb_api::meta::Artifact;
use plumb_api::{HelmRepository, HelmRepositoryStatus};
use plumb_helm::RepoErrorKind;
use plumb_helm::repo::{BasicAuth, ChartCache, ClientOptions, IndexFile, RepoClient, redact_url};
use plumb_source::artifact::ObjectKey;

use crate::context::Context;
use crate::outcome::{Class, Failure, jitter};
use crate::{Error, Result};

/// Artifact storage kind segment, as in Flux's URLs.
const KIND: &str = "helmrepository";

/// Runs the HelmRepository controller until shutdown.
pub async fn run(
    ctx: Arc<Context>,
    api: Api<HelmRepository>,
    watch: watcher::Config,
    concurrency: u16,
) {
    crate::shared::desired_state_controller(api, watch)
        .with_config(kube::runtime::controller::Config::default().concurrency(concurrency))
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx)
        .for_each(|res| async move {
            if let Err(e) = res {
                tracing::debug!(error = %e, "helmrepository reconcile error");
            }
        })
        .await;
}

fn error_policy(_obj: Arc<HelmRepository>, err: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(error = %err, "helmrepository reconcile failed");
    Action::requeue(Duration::from_secs(10))
}

/// One reconcile of one HelmRepository (finalizer-aware).
pub async fn reconcile(obj: Arc<HelmRepository>, ctx: Arc<Context>) -> Result<Action> {
    let ns = obj.namespace().unwrap_or_default();
    let _timer = ctx
        .metrics
        .reconcile_timer("HelmRepository", &ns, &obj.name_any());
    let api: Api<HelmRepository> = Api::namespaced(ctx.client.clone(), &ns);
    finalizer(&api, FINALIZER, obj, |ev| async {
        match ev {
            Finalizer::Apply(o) => apply(o, &ctx, &api).await,
            Finalizer::Cleanup(o) => cleanup(o, &ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(e.to_string()))
}

async fn cleanup(obj: Arc<HelmRepository>, ctx: &Context) -> Result<Action> {
    let ns = obj.namespace().unwrap_or_default();
    let name = obj.name_any();
    // The index artifacts are plumb's own. Cached charts are shared by digest across
    // repositories and stay.
    ctx.storage
        .remove_all(ObjectKey {
            kind: KIND,
            namespace: &ns,
            name: &name,
        })
        .map_err(|e| Error::Storage(e.to_string()))?;
    Ok(Action::await_change())
}

fn is_oci(obj: &HelmRepository) -> bool {
    obj.spec.type_ == Some(HelmRepositoryType::Oci) || obj.spec.url.starts_with("oci://")
}

async fn apply(
    obj: Arc<HelmRepository>,
    ctx: &Context,
    api: &Api<HelmRepository>,
) -> Result<Action> {
    if obj.spec.suspend {
        return Ok(Action::await_change());
    }
    let interval = obj.interval().unwrap_or(Duration::from_secs(60));
    let generation = obj.meta().generation;
    let mut status = obj.status.clone().unwrap_or_default();
    let before = status.clone();
    let requested = obj
        .annotations()
        .get(annotation::RECONCILE_REQUESTED_AT)
        .cloned();
    let obj_ref = obj.object_ref(&());

    let outcome = if is_oci(&obj) {
        Err(Failure::new(
            Class::Stalled,
            reason::OCI_NOT_SUPPORTED,
            format!(
                "OCI HelmRepository is not supported yet: '{}' needs an OCI registry client; \
                 use a Helm repository with an index.yaml (type: default)",
                redact_url(&obj.spec.url)
            ),
        ))
    } else {
        fetch_and_store(&obj, ctx, &status).await
    };
    let action = match outcome {
        Ok((artifact, changed)) => {
            let msg = format!("stored artifact: revision '{}'", artifact.revision);
            conditions::remove(&mut status.conditions, condition::FETCH_FAILED);
            conditions::set(
                &mut status.conditions,
                condition::ARTIFACT_IN_STORAGE,
                CondStatus::True,
                reason::SUCCEEDED,
                &msg,
                generation,
            );
            conditions::mark_ready(&mut status.conditions, reason::SUCCEEDED, &msg, generation);
            if changed {
                ctx.event(
                    &obj_ref,
                    false,
                    "NewArtifact",
                    &format!(
                        "stored fetched index of size {} bytes from '{}'",
                        artifact.size.unwrap_or_default(),
                        redact_url(&obj.spec.url)
                    ),
                )
                .await;
            }
            status.url = Some(artifact.url.clone());
            status.artifact = Some(artifact);
            Action::requeue(jitter(interval, ctx.config.jitter_percent))
        }
        Err(f) => {
            conditions::set(
                &mut status.conditions,
                condition::FETCH_FAILED,
                CondStatus::True,
                f.reason,
                &f.message,
                generation,
            );
            if f.class == Class::Stalled {
                conditions::mark_stalled(&mut status.conditions, f.reason, &f.message, generation);
            } else {
                conditions::mark_failed(&mut status.conditions, f.reason, &f.message, generation);
                // Flux keeps Reconciling while it retries.
                conditions::set(
                    &mut status.conditions,
                    condition::RECONCILING,
                    CondStatus::True,
                    reason::PROGRESSING_WITH_RETRY,
                    &f.message,
                    generation,
                );
            }
            // The last good artifact stays in status and storage.
            ctx.event(&obj_ref, true, f.reason, &f.message).await;
            Action::requeue(f.requeue_after(Duration::from_secs(10), interval))
        }
    };
    status.observed_generation = generation;
    if requested.is_some() {
        status.reconcile_request.last_handled_reconcile_at = requested;
    }
    if status != before {
        crate::shared::write_status(api, &obj.name_any(), &before, &status).await?;
    }
    ctx.metrics.observe(
        "HelmRepository",
        &obj.namespace().unwrap_or_default(),
        &obj.name_any(),
        crate::metrics::Observed {
            conditions: &status.conditions,
            suspended: obj.spec.suspend,
            revision: status.artifact.as_ref().map_or("", |a| a.revision.as_str()),
        },
    );
    Ok(action)
}

/// Builds the repository client from the spec and its Secrets (`secretRef`: `username`,
/// `password`, and the deprecated TLS keys; `certSecretRef`: `ca.crt`, `tls.crt`,
/// `tls.key`).
async fn repo_client(
    obj: &HelmRepository,
    ctx: &Context,
) -> std::result::Result<RepoClient, Failure> {
    let ns = obj.namespace().unwrap_or_default();
    let stalled = |why: &'static str, msg: String| Failure::new(Class::Stalled, why, msg);
    let mut opts = ClientOptions {
        pass_credentials: obj.spec.pass_credentials,
        timeout: obj
            .timeout()
            .map_err(|e| stalled(reason::FAILED, format!("spec.timeout: {e}")))?,
        ..Default::default()
    };
    let mut tls_data: Option<(String, BTreeMap<String, Vec<u8>>)> = None;
    if let Some(r) = &obj.spec.secret_ref {
        let data = crate::shared::secret_data(ctx, &ns, &r.name).await?;
        let text = |k: &str| {
            data.get(k).map(|v| {
                String::from_utf8_lossy(v)
                    .trim_end_matches('\n')
                    .to_string()
            })
        };
        match (text("username"), text("password")) {
            (Some(u), Some(p)) if !u.is_empty() && !p.is_empty() => {
                opts.auth = Some(BasicAuth {
                    username: u,
                    password: p,
                })
            }
            (None, None) => {}
            _ => {
                return Err(stalled(
                    reason::AUTHENTICATION_FAILED,
                    format!(
                        "secret '{ns}/{}': basic auth needs both 'username' and 'password'",
                        r.name
                    ),
                ));
            }
        }
        if ["ca.crt", "tls.crt", "tls.key"]
            .iter()
            .any(|k| data.contains_key(*k))
        {
            tls_data = Some((r.name.clone(), data));
        }
    }
    if let Some(r) = &obj.spec.cert_secret_ref {
        tls_data = Some((
            r.name.clone(),
            crate::shared::secret_data(ctx, &ns, &r.name).await?,
        ));
    }
    if let Some((secret, data)) = tls_data {
        opts.ca_pem = data.get("ca.crt").cloned();
        match (data.get("tls.crt"), data.get("tls.key")) {
            (Some(c), Some(k)) => opts.client_cert = Some((c.clone(), k.clone())),
            (None, None) => {}
            _ => {
                return Err(stalled(
                    reason::AUTHENTICATION_FAILED,
                    format!(
                        "secret '{ns}/{secret}': a client certificate needs both 'tls.crt' and 'tls.key'"
                    ),
                ));
            }
        }
    }
    RepoClient::new(&obj.spec.url, opts).map_err(|e| match e.repo_kind() {
        Some(RepoErrorKind::Auth) => stalled(reason::AUTHENTICATION_FAILED, e.to_string()),
        _ => stalled(reason::URL_INVALID, e.to_string()),
    })
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

/// A chart resolved from a HelmRepository and downloaded.
#[derive(Clone, PartialEq, Eq)]
pub struct ResolvedChart {
    /// Chart name.
    pub name: String,
    /// The resolved version (as written in the index).
    pub version: String,
    /// `sha256:<hex>` of `archive`.
    pub digest: String,
    /// The chart archive (`.tgz`), verified against the index digest when it has one.
    pub archive: Vec<u8>,
}

impl std::fmt::Debug for ResolvedChart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResolvedChart")
            .field("name", &self.name)
            .field("version", &self.version)
            .field("digest", &self.digest)
            .field("archive_len", &self.archive.len())
            .finish()
    }
}

/// Where downloaded charts are cached, by digest.
pub fn chart_cache(ctx: &Context) -> ChartCache {
    ChartCache::new(ctx.config.storage_path.join("helm-charts"))
}

/// Parsed indexes by artifact digest, so many HelmReleases on one repository parse its
/// index once. Bounded: cleared when it holds more than [`INDEX_MEMO_MAX`] indexes.
static INDEX_MEMO: OnceLock<Mutex<HashMap<String, Arc<IndexFile>>>> = OnceLock::new();
const INDEX_MEMO_MAX: usize = 32;

async fn stored_index(
    ctx: &Context,
    artifact: &Artifact,
    repo_id: &str,
) -> std::result::Result<Arc<IndexFile>, Failure> {
    let key = artifact
        .digest
        .clone()
        .unwrap_or_else(|| artifact.revision.clone());
    let memo = INDEX_MEMO.get_or_init(Mutex::default);
    if let Some(i) = memo.lock().ok().and_then(|m| m.get(&key).cloned()) {
        return Ok(i);
    }
    let path = ctx.storage.root().join(&artifact.path);
    let waiting = |why: String| {
        Failure::new(
            Class::Waiting,
            reason::ARTIFACT_FAILED,
            format!("HelmRepository '{repo_id}': {why}"),
        )
    };
    let data = tokio::fs::read(&path)
        .await
        .map_err(|e| waiting(format!("reading index artifact '{}': {e}", artifact.path)))?;
    let source = format!("HelmRepository '{repo_id}' artifact");
    let index = tokio::task::spawn_blocking(move || IndexFile::from_json(&data, &source))
        .await
        .map_err(|e| waiting(e.to_string()))?
        .map_err(|e| waiting(e.to_string()))?;
    let index = Arc::new(index);
    if let Ok(mut m) = memo.lock() {
        if m.len() >= INDEX_MEMO_MAX {
            m.clear();
        }
        m.insert(key, index.clone());
    }
    Ok(index)
}

/// Resolves `chart` at `version` (Masterminds range; empty or `*`: latest stable) from the
/// stored index artifact of `repo` (no index refetch), downloads it with the repository's
/// credentials (`passCredentials` rule), verifies its digest and caches it by digest. A chart
/// already in the cache is returned without reading Secrets or touching the network.
///
/// Failures, classified for the caller's conditions:
/// - no artifact yet, or the artifact file is missing: `Waiting`, `ArtifactFailed`;
/// - chart not in the index, no version matching, invalid range: `Stalled`,
///   `InvalidChartReference` (Flux's HelmChart);
/// - chart URL 404, 401/403, digest mismatch, too large: `Stalled`, `ChartPullError`;
/// - network errors and timeouts: `Transient`, `ChartPullError`;
/// - a OCI repository: `Stalled`, `OCINotSupported`; Secret problems as the reconciler's.
pub async fn resolve_chart(
    ctx: &Context,
    repo: &HelmRepository,
    chart: &str,
    version: &str,
) -> std::result::Result<ResolvedChart, Failure> {
    let repo_id = format!(
        "{}/{}",
        repo.namespace().unwrap_or_default(),
        repo.name_any()
    );
    if is_oci(repo) {
        return Err(Failure::new(
            Class::Stalled,
            reason::OCI_NOT_SUPPORTED,
            format!("HelmRepository '{repo_id}': OCI HelmRepository is not supported yet"),
        ));
    }
    let Some(artifact) = repo.status.as_ref().and_then(|s| s.artifact.as_ref()) else {
        return Err(Failure::new(
            Class::Waiting,
            reason::ARTIFACT_FAILED,
            format!("HelmRepository '{repo_id}' has no artifact yet"),
        ));
    };
    let index = stored_index(ctx, artifact, &repo_id).await?;
    let cv = index.resolve(chart, version).map_err(|e| {
        Failure::new(
            Class::Stalled,
            reason::INVALID_CHART_REFERENCE,
            format!("invalid chart reference: HelmRepository '{repo_id}': {e}"),
        )
    })?;
    let cache = chart_cache(ctx);
    // A cached archive needs no Secret read and no client.
    if let Some(d) = cv.digest_hex()
        && let Ok(Some(archive)) = cache.get(&d)
    {
        return Ok(ResolvedChart {
            name: cv.name.clone(),
            version: cv.version.clone(),
            digest: format!("sha256:{d}"),
            archive,
        });
    }
    let client = repo_client(repo, ctx).await?;
    let archive = client.download_chart(cv, Some(&cache)).await.map_err(|e| {
        let class = match e.repo_kind() {
            Some(RepoErrorKind::Unreachable | RepoErrorKind::Timeout | RepoErrorKind::Io) => {
                Class::Transient
            }
            _ => Class::Stalled,
        };
        Failure::new(
            class,
            reason::CHART_PULL_ERROR,
            format!("chart pull error: HelmRepository '{repo_id}': {e}"),
        )
    })?;
    Ok(ResolvedChart {
        name: cv.name.clone(),
        version: cv.version.clone(),
        digest: format!("sha256:{}", plumb_helm::repo::sha256_hex(&archive)),
        archive,
    })
}
