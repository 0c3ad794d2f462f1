//! Step **render**: settle the chart's defaults and version (`valuesFiles`,
//! `reconcileStrategy`), render it with plumb-helm against the target cluster's capabilities
//! (memoized in the context for ten minutes), and run the kustomize post-renderers (`postrender.rs`).

use std::collections::HashMap;
use std::path::{Component, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kube::ResourceExt;
use plumb_api::HelmRelease;
use plumb_api::consts::reason;
use plumb_api::helm_release::ReconcileStrategy;
use plumb_helm::storage;
use serde_json::{Map, Value};

use super::chart::ChartSource;
use super::target::Target;
use crate::context::Context;
use crate::outcome::{Class, Failure};

/// The chart as loaded and rendered (thread-safe parts only).
pub(super) struct Built {
    pub(super) chart: storage::ChartRecord,
    pub(super) rendered: plumb_helm::Rendered,
}

/// How the chart's defaults and version are settled before rendering
/// (`spec.chart.spec.valuesFiles`, `reconcileStrategy`) and what the cluster offers.
pub(super) struct ChartOptions {
    values_files: Vec<String>,
    ignore_missing_values_files: bool,
    /// `reconcileStrategy: Revision`: the version gets `+<commit>`.
    by_revision: bool,
    capabilities: plumb_helm::Capabilities,
    /// `install`/`upgrade.disableSchemaValidation` of the action about to run.
    pub(super) skip_schema_validation: bool,
    /// The client `lookup` reads with (the release's identity; see `lookup.rs`).
    lookup_client: Result<kube::Client, String>,
}

/// The chart settings of `obj`, and the capabilities of the cluster it targets. `settled`:
/// the chart came through its HelmChart, which applied valuesFiles and the strategy already.
pub(super) async fn chart_options(
    obj: &HelmRelease,
    ctx: &Context,
    t: &Target,
    settled: bool,
) -> ChartOptions {
    let spec = obj
        .spec
        .chart
        .as_ref()
        .map(|c| &c.spec)
        .filter(|_| !settled);
    ChartOptions {
        values_files: spec.map(|s| s.values_files.clone()).unwrap_or_default(),
        ignore_missing_values_files: spec.is_some_and(|s| s.ignore_missing_values_files),
        by_revision: spec.is_some_and(|s| s.reconcile_strategy == ReconcileStrategy::Revision),
        capabilities: capabilities(obj, ctx, t).await,
        skip_schema_validation: false,
        lookup_client: super::lookup::client_for(obj, ctx, t),
    }
}

/// Discovered capabilities by cluster, with when they were read (a [`Context::memo`]).
#[derive(Default)]
struct CapabilitiesMemo(Mutex<HashMap<String, (Instant, plumb_helm::Capabilities)>>);

/// `.Capabilities` as the target cluster reports them (its version and served API
/// versions, as helm-controller reads them through discovery), cached per cluster for
/// ten minutes; Helm's defaults when discovery fails.
pub(super) async fn capabilities(
    obj: &HelmRelease,
    ctx: &Context,
    t: &Target,
) -> plumb_helm::Capabilities {
    const TTL: Duration = Duration::from_secs(600);
    let key = match &obj.spec.kube_config {
        None => String::new(),
        Some(kc) => format!(
            "{}/{:?}/{:?}",
            obj.namespace().unwrap_or_default(),
            kc.secret_ref.as_ref().map(|s| &s.name),
            kc.config_map_ref.as_ref().map(|c| &c.name)
        ),
    };
    let cache = ctx.memo::<CapabilitiesMemo>();
    let cache = &cache.0;
    if let Some((at, caps)) = cache.lock().unwrap_or_else(|p| p.into_inner()).get(&key)
        && at.elapsed() < TTL
    {
        return caps.clone();
    }
    let client = t.store.clone();
    let discovered = async {
        let version = client.apiserver_version().await.ok()?;
        let groups = client.list_api_groups().await.ok()?;
        let core = client.list_core_api_versions().await.ok()?;
        // Helm's version set: every served group/version and every `group/version/Kind`.
        let mut gvs: Vec<String> = core.versions.clone();
        for g in &groups.groups {
            gvs.extend(g.versions.iter().map(|v| v.group_version.clone()));
        }
        let mut api_versions = gvs.clone();
        for gv in &gvs {
            let resources = if gv.contains('/') {
                client.list_api_group_resources(gv).await
            } else {
                client.list_core_api_resources(gv).await
            };
            let Ok(list) = resources else { continue };
            for r in list.resources.iter().filter(|r| !r.name.contains('/')) {
                api_versions.push(format!("{gv}/{}", r.kind));
            }
        }
        api_versions.sort();
        api_versions.dedup();
        Some(plumb_helm::Capabilities {
            kube_version: version.git_version,
            api_versions,
        })
    }
    .await;
    match discovered {
        Some(caps) => {
            cache
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(key, (Instant::now(), caps.clone()));
            caps
        }
        None => plumb_helm::Capabilities::default(),
    }
}

/// The kustomize post-renderers of `spec.postRenderers`, then `spec.commonMetadata`'s labels
/// and annotations on every object (after the user's post-renderers, overriding keys they
/// set, as helm-controller's own post-renderer; which hooks they reach: `postrender.rs`).
pub(super) fn post_overlays(obj: &HelmRelease) -> Vec<plumb_kustomize::Overlay> {
    let mut overlays: Vec<_> = obj
        .spec
        .post_renderers
        .iter()
        .filter_map(|p| p.kustomize.as_ref())
        .map(|k| plumb_kustomize::Overlay {
            patches: crate::overlay::patches(&k.patches),
            images: crate::overlay::images(&k.images),
            ..Default::default()
        })
        .collect();
    if let Some(c) = obj.spec.common_metadata.as_ref() {
        let to_map = |m: &std::collections::BTreeMap<String, String>| {
            m.iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect::<Map<_, _>>()
        };
        overlays.push(plumb_kustomize::Overlay {
            common_labels: to_map(&c.labels),
            common_annotations: to_map(&c.annotations),
            ..Default::default()
        });
    }
    overlays
}

/// `sha256:<hex>` of `spec.postRenderers` and of `spec.commonMetadata` (canonical JSON), as
/// `status.observedPostRenderersDigest` / `observedCommonMetadataDigest` record them.
pub(super) fn post_render_digests(obj: &HelmRelease) -> (String, String) {
    use sha2::Digest as _;
    let digest = |v: Value| {
        let bytes = serde_json::to_vec(&v).unwrap_or_default();
        format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
    };
    (
        digest(serde_json::to_value(&obj.spec.post_renderers).unwrap_or_default()),
        digest(serde_json::to_value(&obj.spec.common_metadata).unwrap_or_default()),
    )
}

/// Whether the post-rendering changed since the last successful release: a recorded digest
/// that differs, or post-rendering configured with none recorded yet.
pub(super) fn post_render_changed(
    obj: &HelmRelease,
    status: &plumb_api::HelmReleaseStatus,
    (renderers, metadata): &(String, String),
) -> bool {
    let changed = |seen: &Option<String>, now: &String, configured: bool| match seen {
        Some(d) => d != now,
        None => configured,
    };
    changed(
        &status.observed_post_renderers_digest,
        renderers,
        !obj.spec.post_renderers.is_empty(),
    ) || changed(
        &status.observed_common_metadata_digest,
        metadata,
        obj.spec.common_metadata.is_some(),
    )
}

/// Loads and renders the chart off the async runtime (the chart model is single-threaded).
pub(super) async fn build(
    src: ChartSource,
    config: &Map<String, Value>,
    t: &Target,
    revision: i64,
    is_install: bool,
    post: super::postrender::PostRender,
    chart_opts: ChartOptions,
) -> std::result::Result<Built, Failure> {
    let values = Value::Object(config.clone());
    let release = plumb_helm::ReleaseInfo {
        name: t.name.clone(),
        namespace: t.namespace.clone(),
        revision,
        is_install,
    };
    let runtime = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let mut chart = match &src {
            ChartSource::Dir { chart, .. } => plumb_helm::load_dir(chart),
            ChartSource::Archive(data) => plumb_helm::load_archive(data),
        }
        .map_err(|e| {
            Failure::new(
                Class::Stalled,
                reason::ARTIFACT_FAILED,
                format!("loading chart failed: {e}"),
            )
        })?;
        apply_values_files(&mut chart, &src, &chart_opts)?;
        apply_revision_version(&mut chart, &src, &chart_opts);
        let user = match plumb_helm::Value::from_json(&values) {
            plumb_helm::Value::Nil => plumb_helm::Value::empty_map(),
            v => v,
        };
        let cluster = super::lookup::ClusterLookup::new(chart_opts.lookup_client.clone(), runtime);
        let opts = plumb_helm::RenderOptions {
            release,
            capabilities: chart_opts.capabilities,
            lookup: Some(&cluster),
            skip_schema_validation: chart_opts.skip_schema_validation,
        };
        let mut rendered = plumb_helm::render(&chart, &user, &opts).map_err(|e| {
            let r = match e {
                plumb_helm::HelmError::Load { .. } => reason::ARTIFACT_FAILED,
                _ => reason::INSTALL_FAILED,
            };
            Failure::new(Class::Stalled, r, format!("chart render failed: {e}"))
        })?;
        post.run(&mut rendered)?;
        Ok(Built {
            chart: storage::chart_record(&chart),
            rendered,
        })
    })
    .await
    .map_err(|e| Failure::new(Class::Transient, reason::INSTALL_FAILED, e.to_string()))?
}

/// Runs one kustomize post-renderer (patches, images) over one stream of rendered
/// documents, as Flux's post-renderer does.
pub(super) fn post_render(
    manifests: &[plumb_helm::Manifest],
    overlay: &plumb_kustomize::Overlay,
) -> std::result::Result<Vec<plumb_helm::Manifest>, Failure> {
    let fail = |m: String| {
        Failure::new(
            Class::Stalled,
            reason::INSTALL_FAILED,
            format!("post-renderer failed: {m}"),
        )
    };
    let dir = tempfile::Builder::new()
        .prefix("plumb-hr-post-")
        .tempdir()
        .map_err(|e| fail(format!("creating work dir: {e}")))?;
    std::fs::write(
        dir.path().join("resources.yaml"),
        storage::manifest_text(manifests),
    )
    .map_err(|e| fail(format!("writing manifests: {e}")))?;
    let opts = plumb_kustomize::BuildOptions {
        generate_missing_kustomization: true,
        ..Default::default()
    };
    let objects = plumb_kustomize::build_with_overlay(dir.path(), dir.path(), &opts, overlay)
        .map_err(|e| fail(e.to_string()))?;
    let str_at = |o: &Value, p: &str| {
        o.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    Ok(objects
        .iter()
        .map(|o| plumb_helm::Manifest {
            path: "post-renderer/kustomize".into(),
            content: plumb_kustomize::to_yaml(o).trim().to_string(),
            api_version: str_at(o, "/apiVersion"),
            kind: str_at(o, "/kind"),
            name: str_at(o, "/metadata/name"),
        })
        .collect())
}

/// Replaces the chart's default values with `valuesFiles` merged in order (Flux: the
/// chart's `values.yaml` counts only when listed). Paths are relative to the source
/// artifact for a GitRepository chart, to the chart for a packaged one.
pub(super) fn apply_values_files(
    chart: &mut plumb_helm::Chart,
    src: &ChartSource,
    opts: &ChartOptions,
) -> std::result::Result<(), Failure> {
    if opts.values_files.is_empty() {
        return Ok(());
    }
    let fail = |m: String| Failure::new(Class::Stalled, reason::ARTIFACT_FAILED, m);
    let mut files = Vec::new();
    for f in &opts.values_files {
        let rel = f.trim_start_matches("./");
        let text: Option<String> = match src {
            ChartSource::Dir { root, .. } => {
                let p = PathBuf::from(rel);
                if !p
                    .components()
                    .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
                {
                    return Err(fail(format!(
                        "values file '{f}' must stay inside the source"
                    )));
                }
                let path = root.join(&p);
                // Symlinks may not lead out of the artifact.
                match (path.canonicalize(), root.canonicalize()) {
                    (Ok(real), Ok(base)) if real.starts_with(&base) => Some(
                        std::fs::read_to_string(&real)
                            .map_err(|e| fail(format!("reading values file '{f}': {e}")))?,
                    ),
                    (Ok(_), Ok(_)) => {
                        return Err(fail(format!(
                            "values file '{f}' must stay inside the source"
                        )));
                    }
                    _ => None,
                }
            }
            ChartSource::Archive(_) if rel == "values.yaml" => {
                Some(plumb_helm::encode::to_yaml(&chart.values))
            }
            ChartSource::Archive(_) => chart
                .files
                .get(rel)
                .map(|b| String::from_utf8_lossy(b).into_owned()),
        };
        match text {
            Some(t) => files.push(
                plumb_helm::parse_values(&t)
                    .map_err(|e| fail(format!("values file '{f}': {e}")))?,
            ),
            None if opts.ignore_missing_values_files => {}
            None => {
                return Err(fail(format!(
                    "values file '{f}' not found in the chart source"
                )));
            }
        }
    }
    chart.values = plumb_helm::merge_user_values(&files, &[])
        .map_err(|e| fail(format!("merging values files: {e}")))?;
    Ok(())
}

/// `reconcileStrategy: Revision`: the chart version gets the source commit as build
/// metadata (`1.2.3+0123456789ab`), so every new commit is a new release, as Flux does.
pub(super) fn apply_revision_version(
    chart: &mut plumb_helm::Chart,
    src: &ChartSource,
    opts: &ChartOptions,
) {
    let ChartSource::Dir { revision, .. } = src else {
        return;
    };
    if !opts.by_revision {
        return;
    }
    let commit = revision.rsplit(':').next().unwrap_or(revision);
    let short: String = commit.chars().take(12).collect();
    if short.is_empty() {
        return;
    }
    let version = format!("{}+{short}", chart.version);
    let mut meta = chart.meta.to_json();
    if let Some(m) = meta.as_object_mut() {
        m.insert("version".into(), Value::String(version.clone()));
    }
    chart.meta = plumb_helm::Value::from_json(&meta);
    chart.version = version;
}
