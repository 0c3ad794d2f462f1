//! The HelmChart reconciler: take a chart from its source, package it as an artifact and
//! report Flux's status (`observedChartName`, `observedSourceArtifactRevision`,
//! `observedValuesFiles`). HelmReleases read it through `chartRef: {kind: HelmChart}`.
//!
//! Steps ([`Kind::steps`]), top to bottom:
//! 1. **source**: a HelmRepository (index or OCI: the version range resolved and the chart
//!    downloaded, [`crate::charts::resolve_chart`]; with `verify`, an OCI chart's cosign
//!    signature is checked first and `SourceVerified` set) or a chart directory in a
//!    GitRepository artifact; Buckets are reported unsupported;
//! 2. **package** ([`package`]): unless chart, version, source revision and values files are
//!    unchanged (and the artifact on disk): the chart staged as `<name>/`, `valuesFiles`
//!    merged in order into its `values.yaml`, with `reconcileStrategy: Revision` the version
//!    `<version>+<commit>` for Git charts, archived and stored (revision: the version);
//! 3. **report**: `ArtifactInStorage`, the artifact, a `NewArtifact` event.

mod package;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use plumb_api::conditions::{self};
use plumb_api::consts::{condition, reason};
use plumb_api::helm_release::{ChartSourceKind, ReconcileStrategy};
use plumb_api::meta::Artifact;
use plumb_api::{GitRepository, HelmChart, HelmChartStatus, HelmRepository};

use crate::Result;
use crate::artifact::git_artifact;
use crate::context::Context;
use crate::outcome::{Class, Failure};
use crate::reconciler::{Done, Kind, Policy};

/// Artifact storage kind segment, as in Flux's URLs.
const KIND: &str = "helmchart";

/// Runs the HelmChart controller until shutdown. A new artifact of a GitRepository or
/// HelmRepository (a new index) reconciles the HelmCharts built from it, as Flux's watches do.
pub async fn run(ctx: Arc<Context>, api: Api<HelmChart>, watch: watcher::Config, concurrency: u16) {
    let (git, repos): (Api<GitRepository>, Api<HelmRepository>) = match api.namespace() {
        Some(ns) => (
            Api::namespaced(ctx.client.clone(), ns),
            Api::namespaced(ctx.client.clone(), ns),
        ),
        None => (Api::all(ctx.client.clone()), Api::all(ctx.client.clone())),
    };
    let controller = crate::reconciler::desired_state_controller(api, watch.clone());
    let (by_git, by_repo) = (controller.store(), controller.store());
    let controller = controller
        .watches(git, watch.clone(), move |src: GitRepository| {
            built_from(&by_git, ChartSourceKind::GitRepository, &src)
        })
        .watches(repos, watch, move |src: HelmRepository| {
            built_from(&by_repo, ChartSourceKind::HelmRepository, &src)
        });
    crate::reconciler::run(controller, ctx, concurrency).await;
}

/// The HelmCharts of the store whose source is `src` (same namespace, as Flux).
fn built_from<S: ResourceExt>(
    store: &kube::runtime::reflector::Store<HelmChart>,
    kind: ChartSourceKind,
    src: &S,
) -> Vec<kube::runtime::reflector::ObjectRef<HelmChart>> {
    store
        .state()
        .into_iter()
        .filter(|c| {
            c.spec.source_ref.kind == kind
                && c.spec.source_ref.name == src.name_any()
                && c.namespace() == src.namespace()
        })
        .map(|c| kube::runtime::reflector::ObjectRef::from_obj(&*c))
        .collect()
}

impl Kind for HelmChart {
    const KIND: &'static str = "HelmChart";
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

    fn revision(status: &HelmChartStatus) -> &str {
        status.artifact.as_ref().map_or("", |a| a.revision.as_str())
    }

    async fn steps(
        obj: &Self,
        ctx: &Context,
        status: &mut HelmChartStatus,
    ) -> std::result::Result<Done, Failure> {
        let generation = obj.meta().generation;
        let source = match fetch_source(obj, ctx).await {
            Err(f) if obj.spec.verify.is_some() && f.reason == reason::VERIFICATION_ERROR => {
                crate::verify::mark(&mut status.conditions, Err(&f), generation);
                return Err(f);
            }
            r => r?,
        };
        match &obj.spec.verify {
            Some(_) if source.packaged => {
                crate::verify::mark(&mut status.conditions, Ok(&source.revision), generation);
            }
            _ => crate::verify::clear(&mut status.conditions),
        }
        let (artifact, name, changed) =
            package::package_and_store(obj, ctx, status, &source).await?;
        let verb = if source.packaged {
            "pulled"
        } else {
            "packaged"
        };
        let msg = format!("{verb} '{name}' chart with version '{}'", artifact.revision);
        conditions::remove(&mut status.conditions, condition::BUILD_FAILED);
        crate::artifact::mark_stored(&mut status.conditions, &msg, obj.meta().generation);
        let event = changed.then(|| ("NewArtifact", msg.clone()));
        let why = if source.packaged {
            "ChartPullSucceeded"
        } else {
            "ChartPackageSucceeded"
        };
        status.url = Some(artifact.url.clone());
        status.artifact = Some(artifact);
        status.observed_chart_name = Some(name);
        status.observed_source_artifact_revision = Some(source.revision.clone());
        status.observed_values_files = obj.spec.values_files.clone();
        Ok(Done {
            ready: Some((why, msg)),
            event,
            requeue: None,
        })
    }

    fn failure_condition(f: &Failure) -> Option<&'static str> {
        // The last good artifact stays in status and storage; a verification failure is
        // reported in `SourceVerified`.
        if f.reason == reason::VERIFICATION_ERROR {
            return None;
        }
        Some(if f.reason == reason::BUILD_FAILED {
            condition::BUILD_FAILED
        } else {
            condition::FETCH_FAILED
        })
    }

    async fn cleanup(obj: Arc<Self>, ctx: &Context) -> Result<Action> {
        crate::artifact::remove_stored(ctx, KIND, &*obj)?;
        Ok(Action::await_change())
    }
}

/// Where the chart comes from, fetched.
pub(crate) struct Source {
    /// The chart directory (extracted archive or a directory of the Git artifact).
    pub(crate) chart_dir: PathBuf,
    /// Where `valuesFiles` are relative to: the source root (Git) or the chart (packaged).
    pub(crate) values_root: PathBuf,
    /// The source's revision: its artifact revision, or the chart digest.
    pub(crate) revision: String,
    /// The Git commit for `reconcileStrategy: Revision` (`None` for packaged charts).
    pub(crate) commit: Option<String>,
    /// A packaged chart from a repository (else a directory from Git).
    pub(crate) packaged: bool,
    /// Keeps the extracted files alive.
    _work: Arc<tempfile::TempDir>,
}

fn failed(class: Class, why: &'static str, msg: String) -> Failure {
    Failure::new(class, why, msg)
}

/// Fetches the chart from the HelmChart's source (same namespace, as Flux).
async fn fetch_source(obj: &HelmChart, ctx: &Context) -> std::result::Result<Source, Failure> {
    let ns = obj.namespace().unwrap_or_default();
    let src = &obj.spec.source_ref;
    match src.kind {
        ChartSourceKind::HelmRepository => {
            let api: Api<HelmRepository> = Api::namespaced(ctx.client.clone(), &ns);
            let repo = api
                .get_opt(&src.name)
                .await
                .map_err(|e| {
                    failed(
                        Class::Transient,
                        reason::ARTIFACT_FAILED,
                        format!("getting HelmRepository '{ns}/{}': {e}", src.name),
                    )
                })?
                .ok_or_else(|| {
                    failed(
                        Class::Waiting,
                        reason::ARTIFACT_FAILED,
                        format!("Source 'HelmRepository/{ns}/{}' not found", src.name),
                    )
                })?;
            let keys = match &obj.spec.verify {
                Some(v) => Some(crate::verify::trusted_keys(ctx, &ns, v).await?),
                None => None,
            };
            let chart =
                crate::charts::resolve_chart(ctx, &repo, &obj.spec.chart, &obj.spec.version, keys)
                    .await?;
            let work = tempfile::Builder::new()
                .prefix("plumb-hc-")
                .tempdir()
                .map_err(|e| failed(Class::Transient, reason::ARTIFACT_FAILED, e.to_string()))?;
            let dir = work.path().to_path_buf();
            let archive = chart.archive;
            tokio::task::spawn_blocking(move || {
                plumb_source::artifact::extract_tar_gz(
                    &archive,
                    &dir,
                    plumb_source::artifact::Limits::default(),
                )
            })
            .await
            .map_err(|e| failed(Class::Transient, reason::ARTIFACT_FAILED, e.to_string()))?
            .map_err(|e| {
                failed(
                    Class::Stalled,
                    reason::ARTIFACT_FAILED,
                    format!("chart archive: {e}"),
                )
            })?;
            let chart_dir = crate::helmrelease::chart_dir_of(work.path()).ok_or_else(|| {
                failed(
                    Class::Stalled,
                    reason::ARTIFACT_FAILED,
                    "the chart archive holds no Chart.yaml".into(),
                )
            })?;
            Ok(Source {
                values_root: chart_dir.clone(),
                chart_dir,
                revision: chart.digest,
                commit: None,
                packaged: true,
                _work: Arc::new(work),
            })
        }
        ChartSourceKind::GitRepository => {
            if obj.spec.verify.is_some() {
                return Err(failed(
                    Class::Stalled,
                    reason::VERIFICATION_ERROR,
                    "signature verification is supported for charts from OCI HelmRepositories only"
                        .into(),
                ));
            }
            let api: Api<GitRepository> = Api::namespaced(ctx.client.clone(), &ns);
            let repo = api.get_opt(&src.name).await.map_err(|e| {
                failed(
                    Class::Transient,
                    reason::ARTIFACT_FAILED,
                    format!("getting GitRepository '{ns}/{}': {e}", src.name),
                )
            })?;
            let artifact = git_artifact(repo, &ns, &src.name)?;
            let work = crate::artifact::fetch_artifact(
                ctx,
                &artifact,
                "plumb-hc-",
                Duration::from_secs(300),
            )
            .await?;
            let rel = obj
                .spec
                .chart
                .trim_start_matches("./")
                .trim_start_matches('/');
            let chart_dir = plumb_source::fsjoin::join_inside(work.path(), rel).map_err(|e| {
                failed(
                    Class::Stalled,
                    reason::ARTIFACT_FAILED,
                    format!("invalid chart path '{}': {e}", obj.spec.chart),
                )
            })?;
            if !chart_dir.join("Chart.yaml").is_file() {
                return Err(failed(
                    Class::Stalled,
                    reason::ARTIFACT_FAILED,
                    format!(
                        "no chart at '{}' in GitRepository '{ns}/{}'",
                        obj.spec.chart, src.name
                    ),
                ));
            }
            let commit = (obj.spec.reconcile_strategy == ReconcileStrategy::Revision).then(|| {
                artifact
                    .revision
                    .rsplit(':')
                    .next()
                    .unwrap_or_default()
                    .to_string()
            });
            Ok(Source {
                chart_dir,
                values_root: work.path().to_path_buf(),
                revision: artifact.revision,
                commit,
                packaged: false,
                _work: Arc::new(work),
            })
        }
        ChartSourceKind::Bucket => Err(failed(
            Class::Stalled,
            reason::ARTIFACT_FAILED,
            "HelmChart from a Bucket is not supported yet".into(),
        )),
    }
}

/// The artifact in status for a stored one.
fn artifact_of(stored: plumb_source::artifact::Artifact, version: &str) -> Artifact {
    Artifact {
        path: stored.path,
        url: stored.url,
        revision: version.to_string(),
        digest: Some(stored.digest),
        last_update_time: Time(k8s_openapi::jiff::Timestamp::now()),
        size: i64::try_from(stored.size).ok(),
        metadata: BTreeMap::new(),
    }
}
