//! Reading a Secret referenced by an object's spec (credentials of sources, kubeconfigs).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use kube::api::Api;
use plumb_api::consts::reason;

use crate::context::Context;
use crate::outcome::{Class, Failure};

/// Object `ns/name` of kind `what` (`secret`, `serviceaccount`): a failed read is transient,
/// a missing object is waiting; both carry `AuthenticationFailed`, as Flux reports them.
async fn get_auth_object<K>(
    ctx: &Context,
    ns: &str,
    name: &str,
    what: &str,
) -> std::result::Result<K, Failure>
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(ctx.client.clone(), ns);
    api.get_opt(name)
        .await
        .map_err(|e| {
            Failure::new(
                Class::Transient,
                reason::AUTHENTICATION_FAILED,
                format!("failed to get {what} '{ns}/{name}': {e}"),
            )
        })?
        .ok_or_else(|| {
            Failure::new(
                Class::Waiting,
                reason::AUTHENTICATION_FAILED,
                format!("{what} '{ns}/{name}' not found"),
            )
        })
}

/// The data of Secret `ns/name` (errors as [`get_auth_object`]).
pub(crate) async fn secret_data(
    ctx: &Context,
    ns: &str,
    name: &str,
) -> std::result::Result<BTreeMap<String, Vec<u8>>, Failure> {
    let secret: Secret = get_auth_object(ctx, ns, name, "secret").await?;
    Ok(secret
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect())
}

/// The names of the image pull secrets of ServiceAccount `ns/name`, in order (errors as
/// [`get_auth_object`]).
pub(crate) async fn image_pull_secrets(
    ctx: &Context,
    ns: &str,
    name: &str,
) -> std::result::Result<Vec<String>, Failure> {
    let sa: ServiceAccount = get_auth_object(ctx, ns, name, "serviceaccount").await?;
    Ok(sa
        .image_pull_secrets
        .unwrap_or_default()
        .into_iter()
        .map(|r| r.name)
        .filter(|n| !n.is_empty())
        .collect())
}
