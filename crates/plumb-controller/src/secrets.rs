//! Reading a Secret referenced by an object's spec (credentials of sources, kubeconfigs).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use kube::api::Api;
use plumb_api::consts::reason;

use crate::context::Context;
use crate::outcome::{Class, Failure};

/// The data of Secret `ns/name`. A failed read is transient, a missing Secret is waiting;
/// both carry `AuthenticationFailed`, as Flux reports them.
pub(crate) async fn secret_data(
    ctx: &Context,
    ns: &str,
    name: &str,
) -> std::result::Result<BTreeMap<String, Vec<u8>>, Failure> {
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    let secret = secrets.get_opt(name).await.map_err(|e| {
        Failure::new(
            Class::Transient,
            reason::AUTHENTICATION_FAILED,
            format!("failed to get secret '{ns}/{name}': {e}"),
        )
    })?;
    let Some(secret) = secret else {
        return Err(Failure::new(
            Class::Waiting,
            reason::AUTHENTICATION_FAILED,
            format!("secret '{ns}/{name}' not found"),
        ));
    };
    Ok(secret
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect())
}

/// The names of the image pull secrets of ServiceAccount `ns/name`, in order. A failed read is
/// transient, a missing ServiceAccount is waiting (`AuthenticationFailed`, as the Secrets).
pub(crate) async fn image_pull_secrets(
    ctx: &Context,
    ns: &str,
    name: &str,
) -> std::result::Result<Vec<String>, Failure> {
    let accounts: Api<ServiceAccount> = Api::namespaced(ctx.client.clone(), ns);
    let sa = accounts.get_opt(name).await.map_err(|e| {
        Failure::new(
            Class::Transient,
            reason::AUTHENTICATION_FAILED,
            format!("failed to get serviceaccount '{ns}/{name}': {e}"),
        )
    })?;
    let Some(sa) = sa else {
        return Err(Failure::new(
            Class::Waiting,
            reason::AUTHENTICATION_FAILED,
            format!("serviceaccount '{ns}/{name}' not found"),
        ));
    };
    Ok(sa
        .image_pull_secrets
        .unwrap_or_default()
        .into_iter()
        .map(|r| r.name)
        .filter(|n| !n.is_empty())
        .collect())
}
