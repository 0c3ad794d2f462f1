//! Step **chart**: fetch the chart from its source: a directory of a GitRepository artifact
//! (extracted once per digest and shared, memoized in the context), a packaged chart
//! resolved from a HelmRepository's stored index ([`crate::charts`]), or the artifact of
//! the OCIRepository `chartRef` names.

use std::path::{Component, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::ResourceExt;
use kube::api::Api;
use plumb_api::consts::reason;
use plumb_api::helm_release::{ChartReferenceKind, ChartSourceKind};
use plumb_api::{GitRepository, HelmChart, HelmRelease, HelmRepository, OCIRepository};

use crate::artifact::{git_artifact, source_namespace};
use crate::context::Context;
use crate::outcome::{Class, Failure};

/// Where a chart is loaded from.
pub(super) enum ChartSource {
    /// A chart directory inside a GitRepository artifact.
    Dir {
        /// The chart directory.
        chart: PathBuf,
        /// The extracted artifact (`valuesFiles` are relative to it).
        root: PathBuf,
        /// The artifact revision (`<ref>@sha1:<hex>`).
        revision: String,
    },
    /// A packaged chart from a HelmRepository.
    Archive(Vec<u8>),
}

/// Fetches the chart: a directory of the GitRepository artifact (extracted into a work
/// dir that lives as long as the returned guard), or an archive of a HelmRepository.
/// With `via_helm_chart` (the reconciler), a `spec.chart` template goes through its
/// HelmChart object as with helm-controller ([`super::helmchart`]); without (`plumb build
/// hr`, which must not create objects), the chart is fetched from the source directly.
pub(super) async fn fetch_chart(
    obj: &HelmRelease,
    ctx: &Context,
    via_helm_chart: bool,
) -> std::result::Result<Fetched, Failure> {
    if via_helm_chart && obj.spec.chart.is_some() {
        return super::helmchart::from_helm_chart(obj, ctx).await;
    }
    let Some(tpl) = &obj.spec.chart else {
        return match &obj.spec.chart_ref {
            Some(r) => from_chart_ref(obj, ctx, r).await,
            None => Err(Failure::new(
                Class::Stalled,
                reason::INVALID_CHART_REFERENCE,
                "one of spec.chart or spec.chartRef must be set",
            )),
        };
    };
    let src = &tpl.spec.source_ref;
    let own = obj.namespace().unwrap_or_default();
    let ns = source_namespace(ctx, &own, src.namespace.as_deref(), &src.kind, &src.name)?;
    if src.kind == ChartSourceKind::HelmRepository {
        return from_helm_repository(ctx, tpl, &ns).await;
    }
    if src.kind != ChartSourceKind::GitRepository {
        return Err(Failure::new(
            Class::Stalled,
            reason::ARTIFACT_FAILED,
            format!("chart source kind {} is not supported yet", src.kind),
        ));
    }
    from_git_repository(obj, ctx, tpl, &ns).await
}

/// The chart of `chartRef`: the artifact of a HelmChart (a packaged chart), or of an
/// OCIRepository, either the chart archive itself (layer `operation: copy` of a `helm
/// push`ed chart, Flux's usual setup) or the chart's files (layer extracted); extracted
/// once per digest and shared.
async fn from_chart_ref(
    obj: &HelmRelease,
    ctx: &Context,
    r: &plumb_api::helm_release::ChartReference,
) -> std::result::Result<Fetched, Failure> {
    let own = obj.namespace().unwrap_or_default();
    let ns = source_namespace(ctx, &own, r.namespace.as_deref(), &r.kind, &r.name)?;
    let get = |e: kube::Error| {
        Failure::new(
            Class::Transient,
            reason::ARTIFACT_FAILED,
            format!("getting {} '{ns}/{}': {e}", r.kind, r.name),
        )
    };
    let artifact = match r.kind {
        ChartReferenceKind::OCIRepository => {
            let api: Api<OCIRepository> = Api::namespaced(ctx.client.clone(), &ns);
            let repo = api.get_opt(&r.name).await.map_err(get)?;
            repo.and_then(|o| o.status).and_then(|s| s.artifact)
        }
        ChartReferenceKind::HelmChart => {
            let api: Api<HelmChart> = Api::namespaced(ctx.client.clone(), &ns);
            let chart = api.get_opt(&r.name).await.map_err(get)?;
            chart.and_then(|o| o.status).and_then(|s| s.artifact)
        }
        ChartReferenceKind::ExternalArtifact => {
            let api: Api<plumb_api::ExternalArtifact> = Api::namespaced(ctx.client.clone(), &ns);
            let ea = api.get_opt(&r.name).await.map_err(get)?;
            ea.and_then(|o| o.status).and_then(|s| s.artifact)
        }
    };
    let artifact = artifact.ok_or_else(|| {
        Failure::new(
            Class::Waiting,
            reason::ARTIFACT_FAILED,
            format!(
                "Source '{}/{ns}/{}' is not ready, artifact not found",
                r.kind, r.name
            ),
        )
    })?;
    let timeout = obj.timeout().unwrap_or(Duration::from_secs(300));
    let work = extracted(ctx, &artifact, timeout).await?;
    let chart = chart_dir_of(work.path()).ok_or_else(|| {
        Failure::new(
            Class::Stalled,
            reason::INVALID_CHART_REFERENCE,
            format!(
                "the artifact of {} '{ns}/{}' ({}) holds no Helm chart",
                r.kind, r.name, artifact.revision
            ),
        )
    })?;
    Ok((
        ChartSource::Dir {
            chart,
            root: work.path().to_path_buf(),
            revision: artifact.revision.clone(),
        },
        Some(work),
    ))
}

/// The chart directory of an extracted artifact: its root, or its one top-level directory
/// (a packaged chart unpacks into `<name>/`).
pub fn chart_dir_of(root: &std::path::Path) -> Option<PathBuf> {
    if root.join("Chart.yaml").is_file() {
        return Some(root.to_path_buf());
    }
    let mut dirs = std::fs::read_dir(root)
        .ok()?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path());
    let only = dirs.next()?;
    (dirs.next().is_none() && only.join("Chart.yaml").is_file()).then_some(only)
}

/// The fetched chart and the guard of its work dir.
pub(super) type Fetched = (ChartSource, Option<Arc<tempfile::TempDir>>);

/// A packaged chart resolved from the HelmRepository's stored index.
async fn from_helm_repository(
    ctx: &Context,
    tpl: &plumb_api::helm_release::HelmChartTemplate,
    ns: &str,
) -> std::result::Result<Fetched, Failure> {
    let src = &tpl.spec.source_ref;
    let api: Api<HelmRepository> = Api::namespaced(ctx.client.clone(), ns);
    let repo = api
        .get_opt(&src.name)
        .await
        .map_err(|e| {
            Failure::new(
                Class::Transient,
                reason::ARTIFACT_FAILED,
                format!("getting HelmRepository '{ns}/{}': {e}", src.name),
            )
        })?
        .ok_or_else(|| {
            Failure::new(
                Class::Waiting,
                reason::ARTIFACT_FAILED,
                format!("Source 'HelmRepository/{ns}/{}' not found", src.name),
            )
        })?;
    let version = if tpl.spec.version.is_empty() {
        "*"
    } else {
        tpl.spec.version.as_str()
    };
    let keys = match &tpl.spec.verify {
        Some(v) => {
            let v = plumb_api::oci_repository::OCIRepositoryVerification {
                provider: v.provider,
                secret_ref: v.secret_ref.clone(),
                match_oidc_identity: Vec::new(),
                trusted_root_secret_ref: None,
            };
            Some(crate::verify::trusted_keys(ctx, ns, &v).await?)
        }
        None => None,
    };
    let chart = crate::charts::resolve_chart(ctx, &repo, &tpl.spec.chart, version, keys).await?;
    Ok((ChartSource::Archive(chart.archive), None))
}

/// A chart directory of the GitRepository's artifact (extracted once per digest).
async fn from_git_repository(
    obj: &HelmRelease,
    ctx: &Context,
    tpl: &plumb_api::helm_release::HelmChartTemplate,
    ns: &str,
) -> std::result::Result<Fetched, Failure> {
    let src = &tpl.spec.source_ref;
    // Read from the server, not a watch store: this reconcile may have been queued by a
    // GitRepository watch event that another watch's store has not seen yet.
    let api: Api<GitRepository> = Api::namespaced(ctx.client.clone(), ns);
    let repo = api.get_opt(&src.name).await.map_err(|e| {
        Failure::new(
            Class::Transient,
            reason::ARTIFACT_FAILED,
            format!("getting GitRepository '{ns}/{}': {e}", src.name),
        )
    })?;
    let artifact = git_artifact(repo, ns, &src.name)?;
    let work = extracted(
        ctx,
        &artifact,
        obj.timeout().unwrap_or(Duration::from_secs(300)),
    )
    .await?;
    let rel = PathBuf::from(
        tpl.spec
            .chart
            .trim_start_matches("./")
            .trim_start_matches('/'),
    );
    if !rel
        .components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(Failure::new(
            Class::Stalled,
            reason::ARTIFACT_FAILED,
            format!(
                "invalid chart path '{}': must stay inside the source",
                tpl.spec.chart
            ),
        ));
    }
    let dir = work.path().join(rel);
    if !dir.join("Chart.yaml").is_file() {
        return Err(Failure::new(
            Class::Stalled,
            reason::ARTIFACT_FAILED,
            format!(
                "no chart at '{}' in GitRepository '{ns}/{}'",
                tpl.spec.chart, src.name
            ),
        ));
    }
    Ok((
        ChartSource::Dir {
            chart: dir,
            root: work.path().to_path_buf(),
            revision: artifact.revision.clone(),
        },
        Some(work),
    ))
}

/// A GitRepository artifact extracted once per digest and shared (read-only) by the
/// HelmReleases charted from it: a thousand releases of one source extract it once.
pub(super) type Extracted = Arc<tokio::sync::OnceCell<Arc<tempfile::TempDir>>>;

/// Most recently used extracted artifacts, newest last (a [`Context::memo`]).
#[derive(Default)]
struct ExtractedMemo(Mutex<Vec<(String, Extracted)>>);

/// How many extracted artifacts are kept; a directory in use outlives its eviction.
pub(super) const EXTRACTED_KEEP: usize = 16;

pub(super) async fn extracted(
    ctx: &Context,
    artifact: &plumb_api::meta::Artifact,
    timeout: Duration,
) -> std::result::Result<Arc<tempfile::TempDir>, Failure> {
    let key = artifact
        .digest
        .clone()
        .unwrap_or_else(|| artifact.url.clone());
    let cell = {
        let memo = ctx.memo::<ExtractedMemo>();
        let mut cache = memo.0.lock().unwrap_or_else(|p| p.into_inner());
        let cell = match cache.iter().position(|(k, _)| *k == key) {
            Some(i) => cache.remove(i).1,
            None => Extracted::default(),
        };
        cache.push((key.clone(), cell.clone()));
        let excess = cache.len().saturating_sub(EXTRACTED_KEEP);
        cache.drain(..excess);
        cell
    };
    let dir = cell
        .get_or_try_init(|| async {
            let work = crate::artifact::fetch_artifact(ctx, artifact, "plumb-hr-", timeout).await?;
            Ok::<_, Failure>(Arc::new(work))
        })
        .await?;
    Ok(dir.clone())
}
