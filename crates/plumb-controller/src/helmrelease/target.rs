//! Where a release lives and who applies it: the release name, namespaces, timeout, origin
//! labels, the storage client, and the applier (shared, impersonating, or remote).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kube::ResourceExt;
use plumb_api::HelmRelease;
use plumb_api::consts::{field_manager, label};
use plumb_helm::storage;
use plumb_ssa::Applier;

use crate::cel::health::StatusEvaluator;
use crate::context::Context;
use crate::outcome::{Class, Failure};

/// The Helm release name Flux uses: `spec.releaseName` or `[targetNamespace-]name`,
/// shortened when longer than 53 characters.
pub fn release_name(obj: &HelmRelease) -> String {
    storage::shorten_name(&obj.release_name())
}

/// Where one release lives.
#[derive(Clone)]
pub(super) struct Target {
    pub(super) name: String,
    pub(super) namespace: String,
    pub(super) storage_ns: String,
    pub(super) timeout: Duration,
    /// Flux's origin labels, stamped on every object.
    pub(super) origin: BTreeMap<String, String>,
    /// Client of the release storage: the target cluster's (as Helm keeps releases where
    /// they are installed), the controller's own for the local cluster.
    pub(super) store: kube::Client,
    /// `spec.healthCheckExprs`, compiled (a bad one stalled the release before this).
    pub(super) health_exprs: Arc<Vec<StatusEvaluator>>,
    /// `spec.waitStrategy.name: legacy`: wait with Helm 3's readiness rules instead of
    /// kstatus (`poller`, the default).
    pub(super) legacy_wait: bool,
}

/// Where the release of `obj` lives, applied through `applier`.
pub(super) fn target_of(obj: &HelmRelease, ctx: &Context, applier: &Applier) -> Target {
    let own = obj.namespace().unwrap_or_default();
    let store = if obj.spec.kube_config.is_some() {
        applier.client().clone()
    } else {
        ctx.client.clone()
    };
    Target {
        store,
        name: release_name(obj),
        namespace: obj.release_namespace().unwrap_or(&own).to_string(),
        storage_ns: obj.storage_namespace().unwrap_or(&own).to_string(),
        timeout: obj.timeout().unwrap_or(Duration::from_secs(300)),
        origin: origin_labels(obj),
        health_exprs: Arc::new(
            StatusEvaluator::compile_all(&obj.spec.health_check_exprs).unwrap_or_default(),
        ),
        legacy_wait: obj
            .spec
            .wait_strategy
            .as_ref()
            .and_then(|w| w.get("name"))
            .and_then(serde_json::Value::as_str)
            == Some("legacy"),
    }
}

/// Compiles `spec.healthCheckExprs` (cached per expression); a bad expression stalls the
/// release as Flux does (`InvalidCELExpression`).
pub(super) fn check_health_exprs(obj: &HelmRelease) -> std::result::Result<(), Failure> {
    StatusEvaluator::compile_all(&obj.spec.health_check_exprs)
        .map(|_| ())
        .map_err(|e| {
            Failure::new(
                Class::Stalled,
                plumb_api::consts::reason::INVALID_CEL_EXPRESSION,
                format!("{}: {e}", crate::cel::TERMINAL_ERROR),
            )
        })
}

/// The applier to use: the shared one (as `helm-controller`), one impersonating
/// `spec.serviceAccountName`, or one for the remote cluster of `spec.kubeConfig`.
pub(super) async fn applier(
    obj: &HelmRelease,
    ctx: &Context,
) -> std::result::Result<Applier, Failure> {
    let ns = obj.namespace().unwrap_or_default();
    ctx.applier_for(
        &ns,
        obj.spec.kube_config.as_ref(),
        obj.spec.service_account_name.as_deref(),
        field_manager::HELM_CONTROLLER,
    )
    .await
}

/// Origin labels Flux puts on the objects of a HelmRelease (not used for ownership: the
/// release manifest is the record of what the release owns).
pub fn origin_labels(obj: &HelmRelease) -> BTreeMap<String, String> {
    BTreeMap::from([
        (label::HELM_NAME.to_string(), obj.name_any()),
        (
            label::HELM_NAMESPACE.to_string(),
            obj.namespace().unwrap_or_default(),
        ),
    ])
}
