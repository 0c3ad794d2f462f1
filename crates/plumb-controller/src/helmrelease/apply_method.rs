//! How a release's objects are applied (`install`/`upgrade`/`rollback.serverSideApply`):
//! server-side apply, or Helm's client-side path (create, then three-way patches against
//! the previous release's manifest, see `plumb_ssa::three_way`). The choice is recorded in
//! the release (`apply_method`, as Helm 4 does) so that `auto` keeps a release on the
//! method it was installed with.

use plumb_api::HelmRelease;
use plumb_helm::storage::{Release, status as rstatus};
use plumb_ssa::{Applier, ClientSideItem, ObjectRef};
use serde_json::Value;

use super::manifest::parse_manifest;
use super::target::Target;

/// Server-side or client-side apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Method {
    /// Server-side apply (`ssa`).
    ServerSide,
    /// Create and three-way patches (`csa`).
    ClientSide,
}

impl Method {
    /// The value recorded in the release.
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Method::ServerSide => "ssa",
            Method::ClientSide => "csa",
        }
    }

    /// The method a release record names; records without one were written by plumb
    /// before client-side apply existed, which always applied server-side.
    pub(super) fn of_release(rel: &Release) -> Self {
        if rel.apply_method == "csa" {
            Method::ClientSide
        } else {
            Method::ServerSide
        }
    }

    /// `enabled`/`disabled`/`auto` of an upgrade or rollback; `auto` (the default) follows
    /// `previous` (server-side when there is none).
    fn from_setting(setting: Option<&str>, previous: Option<&Release>) -> Self {
        match setting {
            Some("enabled") => Method::ServerSide,
            Some("disabled") => Method::ClientSide,
            _ => previous.map_or(Method::ServerSide, Method::of_release),
        }
    }
}

/// The method of an install (`install.serverSideApply`, default true) or an upgrade
/// (`upgrade.serverSideApply`, default `auto`: as the current release was applied).
pub(super) fn for_attempt(obj: &HelmRelease, install: bool, live: &[Release]) -> Method {
    if install {
        let ssa = obj.spec.install.as_ref().and_then(|i| i.server_side_apply);
        return if ssa == Some(false) {
            Method::ClientSide
        } else {
            Method::ServerSide
        };
    }
    let setting = obj.spec.upgrade.as_ref();
    Method::from_setting(
        setting.and_then(|u| u.server_side_apply.as_deref()),
        current_release(live),
    )
}

/// The method of a rollback to `good` (`rollback.serverSideApply`, default `auto`: as
/// `good` was applied).
pub(super) fn for_rollback(obj: &HelmRelease, good: &Release) -> Method {
    let setting = obj.spec.rollback.as_ref();
    Method::from_setting(
        setting.and_then(|r| r.server_side_apply.as_deref()),
        Some(good),
    )
}

/// The release an upgrade starts from: the last deployed one, else the latest.
pub(super) fn current_release(live: &[Release]) -> Option<&Release> {
    live.iter()
        .rev()
        .find(|r| r.info.status == rstatus::DEPLOYED)
        .or(live.last())
}

/// Client-side apply of `objects` in manifest order, each patched against its version in
/// the `original` manifest (objects new to this release are created, or patched without
/// deletions when they already exist).
pub(super) async fn apply_client_side(
    applier: &Applier,
    original: Option<&Release>,
    objects: &[Value],
    t: &Target,
) -> std::result::Result<(), String> {
    let originals = match original {
        // An old manifest naming kinds no longer served: no deletions rather than no upgrade.
        Some(r) => parse_manifest(applier, &r.manifest, t)
            .await
            .unwrap_or_default(),
        None => Vec::new(),
    };
    let key = |o: &Value| ObjectRef::from_object(o).ok().map(|r| r.key());
    let items: Vec<ClientSideItem> = objects
        .iter()
        .map(|o| ClientSideItem {
            original: originals
                .iter()
                .find(|p| key(p).is_some() && key(p) == key(o))
                .cloned(),
            object: o.clone(),
        })
        .collect();
    applier
        .apply_client_side(&items, t.timeout)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn hr(spec: Value) -> HelmRelease {
        let mut s = json!({"interval": "1m"});
        if let (Some(m), Value::Object(e)) = (s.as_object_mut(), spec) {
            m.extend(e);
        }
        serde_json::from_value(json!({"apiVersion": "helm.toolkit.fluxcd.io/v2",
            "kind": "HelmRelease", "metadata": {"name": "x"}, "spec": s}))
        .unwrap()
    }

    fn rel(method: &str, status: &str) -> Release {
        let mut r = Release {
            apply_method: method.into(),
            ..Release::default()
        };
        r.info.status = status.into();
        r
    }

    #[test]
    fn install_defaults_to_ssa_and_auto_follows_the_current_release() {
        use Method::{ClientSide as Csa, ServerSide as Ssa};
        assert_eq!(for_attempt(&hr(json!({})), true, &[]), Ssa);
        let csa = hr(json!({"install": {"serverSideApply": false}}));
        assert_eq!(for_attempt(&csa, true, &[]), Csa);
        // auto (the default): as the last deployed release was applied.
        let live = [rel("csa", rstatus::DEPLOYED), rel("ssa", rstatus::FAILED)];
        assert_eq!(for_attempt(&hr(json!({})), false, &live), Csa);
        let live = [rel("", rstatus::DEPLOYED)];
        assert_eq!(for_attempt(&hr(json!({})), false, &live), Ssa);
        let on = hr(json!({"upgrade": {"serverSideApply": "enabled"}}));
        assert_eq!(
            for_attempt(&on, false, &[rel("csa", rstatus::DEPLOYED)]),
            Ssa
        );
        let off = hr(json!({"upgrade": {"serverSideApply": "disabled"},
            "rollback": {"serverSideApply": "disabled"}}));
        assert_eq!(
            for_attempt(&off, false, &[rel("ssa", rstatus::DEPLOYED)]),
            Csa
        );
        assert_eq!(for_rollback(&off, &rel("ssa", rstatus::SUPERSEDED)), Csa);
        assert_eq!(for_rollback(&hr(json!({})), &rel("csa", "superseded")), Csa);
    }
}
