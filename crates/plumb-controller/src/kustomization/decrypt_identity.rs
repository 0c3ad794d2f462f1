//! `spec.decryption.serviceAccountName` (Flux's object-level workload identity for AWS
//! KMS): the KMS credentials of a Kustomization come from a ServiceAccount in its
//! namespace. The account's `eks.amazonaws.com/role-arn` annotation names the role; a token
//! for the account (TokenRequest, audience `sts.amazonaws.com`) is exchanged with STS
//! `AssumeRoleWithWebIdentity` in the KMS key's region (plumb-eks), and the credentials are
//! cached per account until shortly before they expire, so the token is requested only on
//! a cache miss. Static `sops.aws-kms` credentials of the decryption Secret win; with an
//! account named, the controller's own identity is never used for KMS.
//!
//! Failures are `DecryptionFailed` naming the account (never the token): a missing account
//! waits for it; a missing or invalid annotation, a denied TokenRequest and STS refusing the
//! token are stalled; an unreachable STS or API server is transient. The token and STS
//! steps run inside the build (the region is the key's), so their class is recorded here
//! and applied to the build's failure by [`reclassify`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::ResourceExt;
use kube::api::{Api, PostParams};
use plumb_api::Kustomization;
use plumb_api::consts::reason;
use plumb_eks::kms::{KmsDecryptor, ServiceAccountIdentity, TokenFn};
use plumb_eks::web_identity::{self, WebIdentityCache};
use plumb_eks::{AwsErrorKind, Error as EksError};

use crate::context::Context;
use crate::outcome::{Class, Failure};

/// Shared state (a [`Context`] memo): the credentials cache and, per Kustomization, the
/// class of the last identity failure of its build.
#[derive(Default)]
pub(crate) struct Identities {
    cache: tokio::sync::OnceCell<Arc<WebIdentityCache>>,
    failures: Mutex<HashMap<(String, String), Class>>,
}

impl Identities {
    async fn cache(&self, ctx: &Context) -> Arc<WebIdentityCache> {
        self.cache
            .get_or_init(|| async {
                let sdk = match &ctx.config.sops_kms {
                    Some(k) => k.sdk_config().clone(),
                    None => plumb_eks::auth::default_sdk_config(None).await,
                };
                Arc::new(WebIdentityCache::new(sdk, None))
            })
            .await
            .clone()
    }

    fn record(&self, key: &(String, String), class: Class) {
        let mut f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        f.entry(key.clone()).or_insert(class);
    }

    fn take(&self, key: &(String, String)) -> Option<Class> {
        let mut f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        f.remove(key)
    }
}

fn object_key(obj: &Kustomization) -> (String, String) {
    (obj.namespace().unwrap_or_default(), obj.name_any())
}

fn failed(class: Class, msg: String) -> Failure {
    Failure::new(
        class,
        reason::DECRYPTION_FAILED,
        format!("decryption failed: {msg}; nothing was applied"),
    )
}

/// The KMS hook of `obj` with the credentials of ServiceAccount `sa` in its namespace.
pub(crate) async fn service_account_kms(
    obj: &Kustomization,
    ctx: &Context,
    sa: &str,
) -> Result<Arc<dyn plumb_sops::KmsDecrypt>, Failure> {
    let ns = obj.namespace().unwrap_or_default();
    let account = format!("{ns}/{sa}");
    let memo = ctx.memo::<Identities>();
    let key = object_key(obj);
    memo.take(&key);
    let api: Api<ServiceAccount> = Api::namespaced(ctx.client.clone(), &ns);
    let found = api.get_opt(sa).await.map_err(|e| {
        failed(
            Class::Transient,
            format!(
                "failed to get serviceaccount '{account}' (spec.decryption.serviceAccountName): {e}"
            ),
        )
    })?;
    let Some(found) = found else {
        return Err(failed(
            Class::Waiting,
            format!("serviceaccount '{account}' (spec.decryption.serviceAccountName) not found"),
        ));
    };
    let role_arn = web_identity::role_arn(
        found
            .annotations()
            .get(web_identity::ROLE_ARN_ANNOTATION)
            .map(String::as_str),
    )
    .map_err(|e| failed(Class::Stalled, format!("serviceaccount '{account}' {e}")))?;
    let base = match &ctx.config.sops_kms {
        Some(k) => k.clone(),
        None => KmsDecryptor::from_env().await,
    };
    let inner = base.with_service_account(ServiceAccountIdentity {
        cache: memo.cache(ctx).await,
        namespace: ns.clone(),
        service_account: sa.to_string(),
        role_arn: role_arn.clone(),
        token: token_fn(ctx.client.clone(), ns, sa.to_string(), role_arn),
    });
    Ok(Arc::new(ServiceAccountKms {
        inner,
        account,
        key,
        memo,
        handle: tokio::runtime::Handle::current(),
    }))
}

/// TokenRequest for `ns/sa` with STS's audience (the API server's default lifetime).
fn token_fn(client: kube::Client, ns: String, sa: String, role_arn: String) -> TokenFn {
    Arc::new(move || {
        let api: Api<ServiceAccount> = Api::namespaced(client.clone(), &ns);
        let (account, sa, role_arn) = (format!("{ns}/{sa}"), sa.clone(), role_arn.clone());
        Box::pin(async move {
            let req = TokenRequest {
                spec: TokenRequestSpec {
                    audiences: vec![web_identity::STS_AUDIENCE.to_string()],
                    ..Default::default()
                },
                ..Default::default()
            };
            let err = |kind, message: String| EksError::WebIdentity {
                account: account.clone(),
                role_arn: role_arn.clone(),
                kind,
                code: "TokenRequestFailed".into(),
                message,
            };
            match api
                .create_token_request(&sa, &PostParams::default(), &req)
                .await
            {
                Ok(r) => r
                    .status
                    .map(|s| s.token)
                    .filter(|t| !t.is_empty())
                    .ok_or_else(|| {
                        err(
                            AwsErrorKind::Other,
                            "the API server returned no token".into(),
                        )
                    }),
                Err(kube::Error::Api(s)) => {
                    let kind = match s.code {
                        401 | 403 => AwsErrorKind::AccessDenied,
                        404 => AwsErrorKind::NotFound,
                        _ => AwsErrorKind::Other,
                    };
                    Err(err(
                        kind,
                        format!("TokenRequest: {} ({})", s.message, s.code),
                    ))
                }
                Err(e) => Err(err(AwsErrorKind::Unreachable, format!("TokenRequest: {e}"))),
            }
        })
    })
}

/// plumb-sops' KMS hook with a ServiceAccount's credentials; records the class of an
/// identity failure for [`reclassify`].
struct ServiceAccountKms {
    inner: KmsDecryptor,
    account: String,
    key: (String, String),
    memo: Arc<Identities>,
    handle: tokio::runtime::Handle,
}

impl plumb_sops::KmsDecrypt for ServiceAccountKms {
    fn decrypt(&self, key: &plumb_sops::KmsKey, ciphertext: &[u8]) -> Result<Vec<u8>, String> {
        let out = self.handle.block_on(self.inner.decrypt(
            &key.arn,
            key.role.as_deref(),
            &key.context,
            ciphertext,
        ));
        out.map_err(|e| match &e {
            EksError::WebIdentity { kind, .. } => {
                let class = match kind {
                    AwsErrorKind::NotFound => Class::Waiting,
                    AwsErrorKind::AccessDenied | AwsErrorKind::Credentials => Class::Stalled,
                    _ => Class::Transient,
                };
                self.memo.record(&self.key, class);
                e.to_string()
            }
            _ => format!("{e} (credentials of serviceaccount '{}')", self.account),
        })
    }
}

/// `f` with the class of the identity failure `obj`'s build recorded, if any (a
/// `DecryptionFailed` from the build is stalled otherwise).
pub(crate) fn reclassify(ctx: &Context, obj: &Kustomization, mut f: Failure) -> Failure {
    if let Some(class) = ctx.memo::<Identities>().take(&object_key(obj))
        && f.reason == reason::DECRYPTION_FAILED
    {
        f.class = class;
    }
    f
}
