//! Step **package**: stage the chart as `<name>/`, merge `valuesFiles` into its
//! `values.yaml`, stamp the `Revision` version, archive and store it.

use std::path::{Path, PathBuf};

use kube::ResourceExt;
use plumb_api::consts::{condition, reason};
use plumb_api::meta::Artifact;
use plumb_api::{HelmChart, HelmChartStatus};
use plumb_source::artifact::{Limits, ObjectKey};

use super::{KIND, Source, artifact_of};
use crate::context::Context;
use crate::outcome::{Class, Failure};

fn build_failed(msg: String) -> Failure {
    Failure::new(Class::Stalled, reason::BUILD_FAILED, msg)
}

/// Packages the chart of `src` unless the stored artifact already is that chart (same name,
/// version, source revision and values files); returns the artifact, the chart name and
/// whether it is new.
pub(super) async fn package_and_store(
    obj: &HelmChart,
    ctx: &Context,
    status: &HelmChartStatus,
    src: &Source,
) -> Result<(Artifact, String, bool), Failure> {
    let (chart_dir, commit) = (src.chart_dir.clone(), src.commit.clone());
    // (name, version, Chart.yaml as JSON): the loaded chart itself is not `Send`.
    let (name, chart_version, meta) = tokio::task::spawn_blocking(move || {
        plumb_helm::load_dir(&chart_dir).map(|c| (c.name, c.version, c.meta.to_json()))
    })
    .await
    .map_err(|e| build_failed(e.to_string()))?
    .map_err(|e| build_failed(format!("loading chart failed: {e}")))?;
    let version = match &commit {
        Some(c) if !c.is_empty() => {
            let short: String = c.chars().take(12).collect();
            format!("{chart_version}+{short}")
        }
        _ => chart_version.clone(),
    };
    if let Some(current) = &status.artifact
        && current.revision == version
        && status.observed_chart_name.as_deref() == Some(name.as_str())
        && status.observed_source_artifact_revision.as_deref() == Some(src.revision.as_str())
        && status.observed_values_files == obj.spec.values_files
        && ctx.storage.root().join(&current.path).is_file()
    {
        return Ok((current.clone(), name, false));
    }
    let (files, ignore_missing) = (
        obj.spec.values_files.clone(),
        obj.spec.ignore_missing_values_files,
    );
    let values_root = src.values_root.clone();
    let storage = ctx.storage.clone();
    let (ns, obj_name) = (obj.namespace().unwrap_or_default(), obj.name_any());
    let retention = (
        ctx.config.artifact_retention_records,
        ctx.config.artifact_retention_ttl,
    );
    let (chart_dir, rev, n) = (src.chart_dir.clone(), version.clone(), name.clone());
    let stored = tokio::task::spawn_blocking(move || {
        let values = merged_values(&files, ignore_missing, &values_root)?;
        let storage_failed = |m: String| {
            Failure::new(
                Class::Transient,
                condition::STORAGE_OPERATION_FAILED,
                format!("packaging chart '{n}': {m}"),
            )
        };
        let out = tempfile::Builder::new()
            .prefix("plumb-hc-pkg-")
            .tempdir()
            .map_err(|e| storage_failed(e.to_string()))?;
        plumb_source::fsjoin::copy_tree(&chart_dir, out.path(), &n)
            .map_err(|e| storage_failed(e.to_string()))?;
        let staged = out.path().join(&n);
        if let Some(text) = values {
            std::fs::write(staged.join("values.yaml"), text)
                .map_err(|e| storage_failed(format!("writing values.yaml: {e}")))?;
        }
        if rev != chart_version {
            let mut meta = meta;
            if let Some(m) = meta.as_object_mut() {
                m.insert("version".into(), serde_json::Value::String(rev.clone()));
            }
            let text = plumb_helm::encode::to_yaml(&plumb_helm::Value::from_json(&meta));
            std::fs::write(staged.join("Chart.yaml"), text)
                .map_err(|e| storage_failed(format!("writing Chart.yaml: {e}")))?;
        }
        let key = ObjectKey {
            kind: KIND,
            namespace: &ns,
            name: &obj_name,
        };
        let a = storage
            .store_dir(key, &rev, out.path(), None, Limits::default())
            .map_err(|e| storage_failed(e.to_string()))?;
        storage
            .gc(key, &a.path, retention.0, retention.1)
            .map_err(|e| storage_failed(e.to_string()))?;
        Ok::<_, Failure>(a)
    })
    .await
    .map_err(|e| build_failed(e.to_string()))??;
    Ok((artifact_of(stored, &version), name, true))
}

/// `valuesFiles` merged in order (later files win), read inside `root` only, as the YAML of
/// the new `values.yaml`; `None` when the spec lists none (the chart's own stays).
fn merged_values(
    values_files: &[String],
    ignore_missing: bool,
    root: &Path,
) -> Result<Option<String>, Failure> {
    if values_files.is_empty() {
        return Ok(None);
    }
    let mut files = Vec::new();
    for f in values_files {
        let rel = f.trim_start_matches("./");
        let path: PathBuf = plumb_source::fsjoin::join_inside(root, rel)
            .map_err(|e| build_failed(format!("values file '{f}': {e}")))?;
        match std::fs::read_to_string(&path) {
            Ok(text) => files.push(
                plumb_helm::parse_values(&text)
                    .map_err(|e| build_failed(format!("values file '{f}': {e}")))?,
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if !ignore_missing {
                    return Err(build_failed(format!(
                        "values file '{f}' not found in the chart source"
                    )));
                }
            }
            Err(e) => return Err(build_failed(format!("reading values file '{f}': {e}"))),
        }
    }
    plumb_helm::merge_user_values(&files, &[])
        .map(|v| Some(plumb_helm::encode::to_yaml(&v)))
        .map_err(|e| build_failed(format!("merging values files: {e}")))
}
