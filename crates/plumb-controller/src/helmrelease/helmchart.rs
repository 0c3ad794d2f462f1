//! The HelmChart of a `spec.chart` template, as helm-controller keeps it: created (server-side
//! applied) as `<namespace>-<name>` in the source's namespace, followed until it holds the
//! artifact of its current spec, and deleted with the release. The chart is then read from
//! that artifact (valuesFiles and `reconcileStrategy` already applied by the HelmChart), so
//! `status.helmChart` and Flux's tooling see the same objects as with Flux.

use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use plumb_api::consts::{condition, field_manager, reason};
use plumb_api::{HelmChart, HelmRelease};
use serde_json::json;

use super::chart::{ChartSource, Fetched, chart_dir_of, extracted};
use crate::artifact::source_namespace;
use crate::context::Context;
use crate::outcome::{Class, Failure};

/// `ns/name` of the HelmChart of `obj` (`None` without `spec.chart`).
pub(super) fn helm_chart_ref(obj: &HelmRelease, ctx: &Context) -> Option<(String, String)> {
    let tpl = obj.spec.chart.as_ref()?;
    let own = obj.namespace().unwrap_or_default();
    let src = &tpl.spec.source_ref;
    let ns = source_namespace(ctx, &own, src.namespace.as_deref(), &src.kind, &src.name).ok()?;
    Some((ns, obj.helm_chart_name()))
}

/// Applies the HelmChart of `obj`'s chart template and returns its chart once the HelmChart
/// is Ready for its current generation; waits (or stalls with it) before that.
pub(super) async fn from_helm_chart(
    obj: &HelmRelease,
    ctx: &Context,
) -> std::result::Result<Fetched, Failure> {
    let Some(tpl) = &obj.spec.chart else {
        return Err(Failure::new(
            Class::Stalled,
            reason::INVALID_CHART_REFERENCE,
            "spec.chart is not set",
        ));
    };
    let own = obj.namespace().unwrap_or_default();
    let src = &tpl.spec.source_ref;
    let ns = source_namespace(ctx, &own, src.namespace.as_deref(), &src.kind, &src.name)?;
    let name = obj.helm_chart_name();
    let t = &tpl.spec;
    let mut spec = json!({
        "chart": t.chart, "version": t.version,
        "sourceRef": {"kind": src.kind.to_string(), "name": src.name},
        "interval": t.interval.clone().unwrap_or_else(|| obj.spec.interval.clone()),
        "reconcileStrategy": t.reconcile_strategy,
    });
    if !t.values_files.is_empty() {
        spec["valuesFiles"] = json!(t.values_files);
    }
    if t.ignore_missing_values_files {
        spec["ignoreMissingValuesFiles"] = json!(true);
    }
    if let Some(v) = &t.verify {
        spec["verify"] = serde_json::to_value(v).unwrap_or_default();
    }
    let desired = json!({
        "apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "HelmChart",
        "metadata": {"name": name, "namespace": ns, "labels": super::origin_labels(obj)},
        "spec": spec,
    });
    let api: Api<HelmChart> = Api::namespaced(ctx.client.clone(), &ns);
    let pp = PatchParams::apply(field_manager::HELM_CONTROLLER).force();
    let chart = api
        .patch(&name, &pp, &Patch::Apply(&desired))
        .await
        .map_err(|e| {
            Failure::new(
                Class::Transient,
                reason::ARTIFACT_FAILED,
                format!("applying HelmChart '{ns}/{name}': {e}"),
            )
        })?;
    let not_ready = |class: Class, why: String| {
        Failure::new(
            class,
            reason::ARTIFACT_FAILED,
            format!("HelmChart '{ns}/{name}' is not ready: {why}"),
        )
    };
    let status = chart.status.clone().unwrap_or_default();
    let current = status.observed_generation == chart.metadata.generation;
    let ready = status
        .conditions
        .iter()
        .find(|c| c.type_ == condition::READY);
    let stalled = status
        .conditions
        .iter()
        .any(|c| c.type_ == condition::STALLED && c.status == "True");
    let artifact = match (current, ready, status.artifact) {
        (true, Some(r), Some(a)) if r.status == "True" => a,
        (true, Some(r), _) if stalled => return Err(not_ready(Class::Stalled, r.message.clone())),
        (_, r, _) => {
            let why = r.map_or_else(
                || "waiting to be reconciled".to_string(),
                |r| r.message.clone(),
            );
            return Err(not_ready(Class::Waiting, why));
        }
    };
    let timeout = obj.timeout().unwrap_or(std::time::Duration::from_secs(300));
    let work = extracted(ctx, &artifact, timeout).await?;
    let dir = chart_dir_of(work.path())
        .ok_or_else(|| not_ready(Class::Stalled, "its artifact holds no chart".into()))?;
    Ok((
        ChartSource::Dir {
            chart: dir,
            root: work.path().to_path_buf(),
            revision: artifact.revision.clone(),
        },
        Some(work),
    ))
}

/// Deletes the HelmChart of `obj` (on deletion of the release, as helm-controller does).
pub(super) async fn delete_helm_chart(obj: &HelmRelease, ctx: &Context) -> crate::Result<()> {
    let Some((ns, name)) = helm_chart_ref(obj, ctx) else {
        return Ok(());
    };
    let api: Api<HelmChart> = Api::namespaced(ctx.client.clone(), &ns);
    match api.delete(&name, &DeleteParams::background()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(ae)) if ae.code == 404 => Ok(()),
        Err(e) => Err(crate::Error::Kube(format!(
            "deleting HelmChart {ns}/{name}: {e}"
        ))),
    }
}
