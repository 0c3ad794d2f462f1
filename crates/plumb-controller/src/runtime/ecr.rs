//! Registry credentials from a cloud provider (`spec.provider` of OCIRepository and OCI
//! HelmRepository): `aws` gets them from ECR `GetAuthorizationToken` through one shared
//! [`EcrAuth`] cache; `generic` uses none; `azure` and `gcp` are a Stalled failure saying
//! they are not supported yet, never silently ignored.
//!
//! [`with_ecr_retry`] runs a registry operation and, when the registry refuses a token that
//! came from the cache (401), drops it, fetches a fresh one and tries once more; a second
//! refusal is a clear AuthenticationFailed condition. No message ever holds the token.

use std::sync::Arc;

use plumb_api::consts::reason;
use plumb_eks::{EcrAuth, EcrRegistry};
use plumb_source::{ErrorKind, SourceError, oci};
use tokio::sync::OnceCell;

use crate::context::Context;
use crate::outcome::{Class, Failure};

/// The ECR credential cache shared by every reconciler.
#[derive(Default)]
pub struct EcrProvider {
    auth: OnceCell<Arc<EcrAuth>>,
}

impl std::fmt::Debug for EcrProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EcrProvider").finish_non_exhaustive()
    }
}

impl EcrProvider {
    /// Uses `auth` instead of loading aws-config's default chain on first use (tests, or a
    /// caller sharing one [`EcrAuth`]). Returns false when one was already in use.
    pub fn use_auth(&self, auth: Arc<EcrAuth>) -> bool {
        self.auth.set(auth).is_ok()
    }

    /// The cache (aws-config's default chain, loaded on first use).
    pub async fn auth(&self) -> Arc<EcrAuth> {
        self.auth
            .get_or_init(|| async { Arc::new(EcrAuth::from_env().await) })
            .await
            .clone()
    }
}

/// Credentials a provider gave for a registry.
#[derive(Debug, Clone)]
pub struct ProviderCredentials {
    /// The registry credentials.
    pub credentials: oci::Credentials,
    /// The ECR registry they are for.
    pub registry: EcrRegistry,
    /// They came from the cache (a refusal is worth one refresh).
    pub cached: bool,
}

/// Credentials for `host` from `provider` (`None` for `generic` or no provider).
pub async fn provider_credentials(
    ctx: &Context,
    provider: Option<&str>,
    host: &str,
) -> Result<Option<ProviderCredentials>, Failure> {
    match provider.unwrap_or("generic") {
        "" | "generic" => Ok(None),
        "aws" => ecr_credentials(ctx, host).await.map(Some),
        other => Err(Failure::new(
            Class::Stalled,
            reason::AUTHENTICATION_FAILED,
            format!(
                "spec.provider '{other}' is not supported yet (supported: generic, aws); \
                 use a secretRef with registry credentials"
            ),
        )),
    }
}

async fn ecr_credentials(ctx: &Context, host: &str) -> Result<ProviderCredentials, Failure> {
    let registry = EcrRegistry::parse(host).map_err(|e| {
        Failure::new(
            Class::Stalled,
            reason::AUTHENTICATION_FAILED,
            format!("provider 'aws': {e}"),
        )
    })?;
    let fetched = ctx
        .ecr
        .auth()
        .await
        .credentials(&registry)
        .await
        .map_err(|e| {
            let class = if e.is_transient() {
                Class::Transient
            } else {
                Class::Stalled
            };
            Failure::new(
                class,
                reason::AUTHENTICATION_FAILED,
                format!("provider 'aws': {e}"),
            )
        })?;
    Ok(ProviderCredentials {
        credentials: oci::Credentials {
            username: fetched.credentials.username,
            password: fetched.credentials.password,
        },
        registry,
        cached: fetched.cached,
    })
}

/// Runs `op` with `opts`; when the registry refuses cached ECR credentials, drops them,
/// fetches fresh ones and runs `op` once more. A refusal of fresh credentials is returned
/// as an error naming the registry and saying the token was refreshed.
pub async fn with_ecr_retry<T, F, Fut>(
    ctx: &Context,
    ecr: Option<ProviderCredentials>,
    mut opts: oci::ClientOptions,
    op: F,
) -> Result<Result<T, SourceError>, Failure>
where
    F: Fn(oci::ClientOptions) -> Fut,
    Fut: std::future::Future<Output = Result<Result<T, SourceError>, Failure>>,
{
    let result = op(opts.clone()).await?;
    let Some(ecr) = ecr else {
        return Ok(result);
    };
    let refused = matches!(&result, Err(e) if e.kind() == ErrorKind::AuthFailed);
    if !refused {
        return Ok(result);
    }
    let auth = ctx.ecr.auth().await;
    auth.invalidate(&ecr.registry).await;
    if !ecr.cached {
        return Err(refused_ecr(&ecr.registry, false));
    }
    tracing::info!(registry = %ecr.registry, "registry refused the cached ECR token; fetching a new one");
    let fresh = ecr_credentials(ctx, &ecr.registry.to_string()).await?;
    opts.credentials = Some(fresh.credentials);
    match op(opts).await? {
        Err(e) if e.kind() == ErrorKind::AuthFailed => {
            auth.invalidate(&ecr.registry).await;
            Err(refused_ecr(&ecr.registry, true))
        }
        other => Ok(other),
    }
}

fn refused_ecr(registry: &EcrRegistry, refreshed: bool) -> Failure {
    let how = if refreshed {
        "the cached ECR token, then a freshly fetched one (refreshed once)"
    } else {
        "a freshly fetched ECR token"
    };
    Failure::new(
        Class::Stalled,
        reason::AUTHENTICATION_FAILED,
        format!(
            "provider 'aws': the registry {registry} refused {how}; check the IAM permissions \
             (ecr:GetAuthorizationToken, ecr:BatchGetImage) of the controller's identity"
        ),
    )
}
