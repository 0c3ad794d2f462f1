//! Charts from HelmRepositories, shared by the HelmRepository reconciler (which fetches and
//! stores the index) and the HelmRelease reconciler (which resolves and downloads charts):
//! the repository client built from the spec and its Secrets, the stored index (parsed once
//! per digest), chart resolution and the chart cache.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use kube::ResourceExt;
use plumb_api::HelmRepository;
use plumb_api::consts::reason;
use plumb_api::helm_repository::HelmRepositoryType;
use plumb_api::meta::Artifact;
use plumb_helm::RepoErrorKind;
use plumb_helm::repo::{BasicAuth, ChartCache, ClientOptions, IndexFile, RepoClient};

use crate::context::Context;
use crate::outcome::{Class, Failure};

/// Whether `obj` is an OCI repository (charts pulled from the registry, no index).
pub(crate) fn is_oci(obj: &HelmRepository) -> bool {
    obj.spec.type_ == Some(HelmRepositoryType::Oci) || obj.spec.url.starts_with("oci://")
}

/// Builds the repository client from the spec and its Secrets (`secretRef`: `username`,
/// `password`, and the deprecated TLS keys; `certSecretRef`: `ca.crt`, `tls.crt`,
/// `tls.key`).
pub(crate) async fn repo_client(
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
        let data = crate::secrets::secret_data(ctx, &ns, &r.name).await?;
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
            crate::secrets::secret_data(ctx, &ns, &r.name).await?,
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
/// index once (a [`Context::memo`]). Bounded: cleared when it holds more than
/// [`INDEX_MEMO_MAX`] indexes.
#[derive(Default)]
struct IndexMemo(Mutex<HashMap<String, Arc<IndexFile>>>);
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
    let memo = ctx.memo::<IndexMemo>();
    let memo = &memo.0;
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
/// - an OCI repository: see [`crate::oci_charts::resolve_chart`]; Secret problems as the
///   reconciler's; with `verify` keys, the chart's cosign signature is checked first
///   (`VerificationError`; an index repository cannot be verified).
pub async fn resolve_chart(
    ctx: &Context,
    repo: &HelmRepository,
    chart: &str,
    version: &str,
    verify: Option<Vec<plumb_source::oci::cosign::TrustedKey>>,
) -> std::result::Result<ResolvedChart, Failure> {
    let repo_id = format!(
        "{}/{}",
        repo.namespace().unwrap_or_default(),
        repo.name_any()
    );
    if is_oci(repo) {
        return crate::oci_charts::resolve_chart(ctx, (repo, &repo_id), chart, version, verify)
            .await;
    }
    if verify.is_some() {
        // Flux verifies OCI charts only; never pass an unverified chart off as verified.
        return Err(Failure::new(
            Class::Stalled,
            reason::VERIFICATION_ERROR,
            format!(
                "HelmRepository '{repo_id}': signature verification is supported for charts from OCI HelmRepositories only"
            ),
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
