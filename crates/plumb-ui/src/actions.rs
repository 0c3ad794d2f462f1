//! Reconcile, suspend and resume: the patches `plumb reconcile|suspend|resume` send (the
//! CLI calls these too), made with the credentials of whoever runs `plumb ui`.

use kube::api::{Patch, PatchParams};
use plumb_api::consts::annotation::RECONCILE_REQUESTED_AT;
use plumb_api::kinds::FluxKind;
use serde_json::{Value, json};

use crate::error::UiError;

/// An action the page may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Set `reconcile.fluxcd.io/requestedAt` to now.
    Reconcile,
    /// Set `spec.suspend: true`.
    Suspend,
    /// Clear `spec.suspend` and request a reconcile.
    Resume,
}

impl Action {
    /// The action named `s` (the last segment of the path).
    pub fn parse(s: &str) -> Result<Action, UiError> {
        match s {
            "reconcile" => Ok(Action::Reconcile),
            "suspend" => Ok(Action::Suspend),
            "resume" => Ok(Action::Resume),
            other => Err(UiError::UnknownAction(other.chars().take(40).collect())),
        }
    }
}

/// A reconcile request's stamp: now, RFC 3339 with nanoseconds (as the flux CLI writes it).
pub fn stamp() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// The merge patch that requests a reconcile: `requestedAt` and each of `extra` (Flux's
/// `forceAt`/`resetAt`) set to `stamp`.
pub fn reconcile_patch(stamp: &str, extra: &[&str]) -> Value {
    let mut annotations = serde_json::Map::new();
    annotations.insert(RECONCILE_REQUESTED_AT.into(), json!(stamp));
    for key in extra {
        annotations.insert((*key).into(), json!(stamp));
    }
    json!({"metadata": {"annotations": annotations}})
}

/// The merge patch that suspends or resumes.
pub fn suspend_patch(suspend: bool) -> Value {
    json!({"spec": {"suspend": suspend}})
}

/// Requests a reconcile of one object; returns the stamp written.
pub async fn request_reconcile(
    client: &kube::Client,
    kind: FluxKind,
    ns: &str,
    name: &str,
    extra: &[&str],
) -> Result<String, kube::Error> {
    let stamp = stamp();
    let patch = reconcile_patch(&stamp, extra);
    kind.api(client, ns)
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(stamp)
}

/// Sets `spec.suspend` of one object.
pub async fn set_suspend(
    client: &kube::Client,
    kind: FluxKind,
    ns: &str,
    name: &str,
    suspend: bool,
) -> Result<(), kube::Error> {
    kind.api(client, ns)
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(&suspend_patch(suspend)),
        )
        .await?;
    Ok(())
}

/// Performs `action` on one object; answers `{"requestedAt": stamp}` for the actions that
/// request a reconcile, `{}` otherwise. The API server's refusals (RBAC) come back as
/// [`UiError::Forbidden`] with its message.
pub async fn perform(
    client: &kube::Client,
    kind: FluxKind,
    ns: &str,
    name: &str,
    action: Action,
) -> Result<Value, UiError> {
    let what = format!("{} {ns}/{name}", kind.kind());
    let fail = |verb: &str| {
        let op = format!("{verb} {what}");
        let what = what.clone();
        move |e| UiError::from_kube(op, &what, e)
    };
    match action {
        Action::Reconcile => {
            let obj = kind
                .api(client, ns)
                .get(name)
                .await
                .map_err(fail("getting"))?;
            if obj.data["spec"]["suspend"].as_bool() == Some(true) {
                return Err(UiError::Suspended(what));
            }
            let stamp = request_reconcile(client, kind, ns, name, &[])
                .await
                .map_err(fail("annotating"))?;
            Ok(json!({ "requestedAt": stamp }))
        }
        Action::Suspend => {
            set_suspend(client, kind, ns, name, true)
                .await
                .map_err(fail("suspending"))?;
            Ok(json!({}))
        }
        Action::Resume => {
            set_suspend(client, kind, ns, name, false)
                .await
                .map_err(fail("resuming"))?;
            let stamp = request_reconcile(client, kind, ns, name, &[])
                .await
                .map_err(fail("annotating"))?;
            Ok(json!({ "requestedAt": stamp }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patches_are_the_cli_ones() {
        let p = reconcile_patch("t", &["reconcile.fluxcd.io/forceAt"]);
        assert_eq!(
            p,
            json!({"metadata": {"annotations": {
                "reconcile.fluxcd.io/requestedAt": "t", "reconcile.fluxcd.io/forceAt": "t"}}})
        );
        assert_eq!(suspend_patch(false), json!({"spec": {"suspend": false}}));
        assert_eq!(Action::parse("resume").ok(), Some(Action::Resume));
        assert!(matches!(
            Action::parse("delete"),
            Err(UiError::UnknownAction(_))
        ));
    }
}
