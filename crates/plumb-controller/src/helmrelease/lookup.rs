//! Helm's `lookup` for HelmRelease renders: read-only GETs and LISTs on the target
//! cluster with the identity the release applies with (the remote kubeConfig client, the
//! client impersonating `spec.serviceAccountName` or `--default-service-account`, or the
//! controller's own), so a chart can read only what its release may read. Secrets need
//! the service account to be allowed `get`/`list` on them.
//!
//! The render is synchronous and runs on a blocking thread; each lookup is bridged to the
//! runtime with [`tokio::runtime::Handle::block_on`] and given up at the render's lookup
//! deadline. Caching and the per-render budget are plumb-helm's ([`plumb_helm::lookup`]).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::APIResource;
use kube::ResourceExt;
use kube::core::Request;
use kube::core::params::{GetParams, ListParams};
use plumb_api::HelmRelease;
use plumb_api::consts::field_manager;
use plumb_helm::{HelmError, LookupRequest};
use serde_json::Value;

use super::target::Target;
use crate::context::Context;

/// The client lookups of `obj` use: the one its release applies with. An impersonation
/// that cannot be set up is kept as the error every lookup then reports.
pub(super) fn client_for(
    obj: &HelmRelease,
    ctx: &Context,
    t: &Target,
) -> Result<kube::Client, String> {
    if obj.spec.kube_config.is_some() {
        // The remote cluster's client (impersonating there when asked), as the applier.
        return Ok(t.store.clone());
    }
    let sa = obj
        .spec
        .service_account_name
        .as_deref()
        .or(ctx.config.default_service_account.as_deref());
    let Some(sa) = sa else {
        return Ok(ctx.client.clone());
    };
    let ns = obj.namespace().unwrap_or_default();
    ctx.impersonating_applier_as(&ns, sa, field_manager::HELM_CONTROLLER)
        .map(|a| a.client().clone())
        .map_err(|e| format!("impersonating service account '{ns}/{sa}': {e}"))
}

/// `lookup` on one cluster, for one render.
pub(super) struct ClusterLookup {
    client: Result<kube::Client, String>,
    runtime: tokio::runtime::Handle,
    /// Resources by group/version, discovered once per render.
    discovered: Mutex<HashMap<String, Vec<APIResource>>>,
}

impl ClusterLookup {
    /// Lookups through `client` (see [`client_for`]), bridged onto `runtime`.
    pub(super) fn new(
        client: Result<kube::Client, String>,
        runtime: tokio::runtime::Handle,
    ) -> Self {
        ClusterLookup {
            client,
            runtime,
            discovered: Mutex::new(HashMap::new()),
        }
    }

    /// The resource serving `kind` in `api_version` (`None`: the version serves no such
    /// kind). An unknown group/version is an error, as Helm's discovery makes it.
    async fn resource(
        &self,
        client: &kube::Client,
        req: &LookupRequest,
    ) -> Result<Option<APIResource>, String> {
        let av = req.api_version.as_str();
        let cached = self
            .discovered
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(av)
            .cloned();
        let resources = match cached {
            Some(r) => r,
            None => {
                let list = if av.contains('/') {
                    client.list_api_group_resources(av).await
                } else {
                    client.list_core_api_resources(av).await
                }
                .map_err(|e| format!("discovering {av}: {}", api_message(&e)))?;
                self.discovered
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(av.to_string(), list.resources.clone());
                list.resources
            }
        };
        Ok(resources
            .into_iter()
            .find(|r| r.kind == req.kind && !r.name.contains('/')))
    }

    /// One lookup, Helm's way: a GET for a name, a LIST without one; not found is `{}`.
    async fn fetch(&self, req: &LookupRequest) -> Result<Value, String> {
        let client = self.client.as_ref().map_err(Clone::clone)?;
        let Some(res) = self.resource(client, req).await? else {
            return Ok(Value::Object(Default::default()));
        };
        let base = if req.api_version.contains('/') {
            format!("/apis/{}", req.api_version)
        } else {
            format!("/api/{}", req.api_version)
        };
        let path = if res.namespaced && !req.namespace.is_empty() {
            format!("{base}/namespaces/{}/{}", req.namespace, res.name)
        } else {
            format!("{base}/{}", res.name)
        };
        let r = Request::new(path);
        let http = if req.name.is_empty() {
            r.list(&ListParams::default())
        } else {
            r.get(&req.name, &GetParams::default())
        }
        .map_err(|e| e.to_string())?;
        match client.request::<Value>(http).await {
            Ok(v) if req.name.is_empty() => Ok(typed_items(v)),
            Ok(v) => Ok(v),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(Value::Object(Default::default())),
            Err(e) => Err(api_message(&e)),
        }
    }
}

impl plumb_helm::Lookup for ClusterLookup {
    fn lookup(&self, req: &LookupRequest, deadline: Instant) -> Result<Value, HelmError> {
        let fail = |msg: String| HelmError::Lookup {
            object: req.to_string(),
            msg,
        };
        let left = deadline.saturating_duration_since(Instant::now());
        self.runtime
            .block_on(tokio::time::timeout(left, self.fetch(req)))
            .map_err(|_| fail("timed out".into()))?
            .map_err(fail)
    }
}

/// The API server's message for API errors (it names the object, never its data).
fn api_message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => s.message.clone(),
        other => other.to_string(),
    }
}

/// Gives every item of a list its `apiVersion` and `kind` (the server leaves them out), as
/// client-go's unstructured lists do, so templates see the same objects as Helm's.
fn typed_items(mut list: Value) -> Value {
    let api_version = list.get("apiVersion").cloned();
    let kind = list
        .get("kind")
        .and_then(Value::as_str)
        .map(|k| Value::String(k.strip_suffix("List").unwrap_or(k).to_string()));
    if let Some(items) = list.get_mut("items").and_then(Value::as_array_mut) {
        for item in items.iter_mut().filter_map(Value::as_object_mut) {
            if let Some(av) = &api_version {
                item.entry("apiVersion").or_insert_with(|| av.clone());
            }
            if let Some(k) = &kind {
                item.entry("kind").or_insert_with(|| k.clone());
            }
        }
    }
    list
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn list_items_get_their_type() {
        let list = json!({"apiVersion": "v1", "kind": "ConfigMapList", "metadata": {},
            "items": [{"metadata": {"name": "a"}}, {"kind": "Other", "metadata": {"name": "b"}}]});
        assert_eq!(
            typed_items(list)["items"],
            json!([{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}},
                {"apiVersion": "v1", "kind": "Other", "metadata": {"name": "b"}}])
        );
    }
}
