//! Registry client options from a kind's access fields (`insecure`, `timeout`, `secretRef`,
//! `serviceAccountName`, `certSecretRef`, `proxySecretRef`, `provider`), shared by
//! OCIRepository and ImageRepository so both authenticate exactly as Flux's keychain does.

use std::time::Duration;

use plumb_api::consts::reason;
use plumb_api::meta::LocalObjectReference;
use plumb_source::oci::{self, ClientOptions};

use crate::context::Context;
use crate::ecr::{ProviderCredentials, provider_credentials};
use crate::outcome::{Class, Failure};

/// The registry access fields of an object, borrowed from its spec.
pub(crate) struct RegistryAccess<'a> {
    /// Namespace of the object (and of its Secrets and ServiceAccount).
    pub namespace: &'a str,
    /// `spec.insecure`.
    pub insecure: bool,
    /// `spec.timeout` as a duration.
    pub timeout: Duration,
    /// `spec.secretRef` (`kubernetes.io/dockerconfigjson`).
    pub secret_ref: Option<&'a LocalObjectReference>,
    /// `spec.serviceAccountName` (its image pull secrets).
    pub service_account_name: Option<&'a str>,
    /// `spec.certSecretRef`.
    pub cert_secret_ref: Option<&'a LocalObjectReference>,
    /// `spec.proxySecretRef`.
    pub proxy_secret_ref: Option<&'a LocalObjectReference>,
    /// `spec.provider` as written (`generic`, `aws`, ...).
    pub provider: &'a str,
}

/// Registry options for `access`: transport, timeout, credentials and TLS material. Without
/// credentials from `secretRef`, `provider: aws` takes them from ECR (returned too, so a
/// refused cached token can be refreshed once: [`crate::ecr::with_ecr_retry`]).
pub(crate) async fn client_options(
    ctx: &Context,
    access: &RegistryAccess<'_>,
    reference: &oci::Reference,
) -> Result<(ClientOptions, Option<ProviderCredentials>), Failure> {
    let ns = access.namespace;
    let mut opts = ClientOptions {
        insecure: access.insecure,
        timeout: access.timeout,
        resolve: ctx.config.oci_resolve.clone(),
        ..ClientOptions::default()
    };
    let invalid = |name: &str, e: plumb_source::SourceError| {
        Failure::new(
            Class::Stalled,
            reason::AUTHENTICATION_FAILED,
            format!("secret '{ns}/{name}': {e}"),
        )
    };
    if let Some(r) = access.secret_ref {
        let data = crate::secrets::secret_data(ctx, ns, &r.name).await?;
        opts.apply_docker_config_secret(&data, reference.api_host())
            .map_err(|e| invalid(&r.name, e))?;
    }
    // As Flux's keychain: the ServiceAccount's image pull secrets after `secretRef`.
    if opts.credentials.is_none()
        && let Some(sa) = access.service_account_name
    {
        for name in crate::secrets::image_pull_secrets(ctx, ns, sa).await? {
            let data = crate::secrets::secret_data(ctx, ns, &name).await?;
            opts.apply_docker_config_secret(&data, reference.api_host())
                .map_err(|e| invalid(&name, e))?;
            if opts.credentials.is_some() {
                break;
            }
        }
    }
    if let Some(r) = access.cert_secret_ref {
        let data = crate::secrets::secret_data(ctx, ns, &r.name).await?;
        opts.apply_cert_secret(&data)
            .map_err(|e| invalid(&r.name, e))?;
    }
    if let Some(r) = access.proxy_secret_ref {
        let data = crate::secrets::secret_data(ctx, ns, &r.name).await?;
        opts.apply_proxy_secret(&data)
            .map_err(|e| invalid(&r.name, e))?;
    }
    // As Flux: the provider is asked only when the secret gave no credentials.
    let mut provided = None;
    if opts.credentials.is_none() {
        provided = provider_credentials(ctx, Some(access.provider), &reference.registry).await?;
        opts.credentials = provided.as_ref().map(|p| p.credentials.clone());
    }
    Ok((opts, provided))
}
