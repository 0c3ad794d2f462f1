//! `spec.decryption.serviceAccountName` (Flux's object-level workload identity for AWS
//! KMS): the KMS credentials of a Kustomization come from a ServiceAccount in its
//! namespace. The account's `eks.amazonaws.com/role-arn` annotation names the role; a token
//! for the account (TokenRequest, audience `sts.amazonaws.com`) is exchanged with STS
//! `AssumeRoleWithWebIdentity` in the KMS key's region (plumb-eks), and the credentials are
//! cached per account until shortly before they expire, so the token is requested only on
//! a cache miss. Static `sops.aws-kms` credentials of the decryption Secret win; with an
//! account named, the controller's own identity is never used for KMS.
//!
//! With no account named, `plumb run --default-decryption-service-account` names one (Flux's
//! multi-tenant workload identity lockdown). The account is read on the first KMS call of a
//! reconcile, never for a tree that needs no KMS.
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

/// Which ServiceAccount `spec.decryption` uses for AWS KMS: the one it names, or the
/// operator's default (`plumb run --default-decryption-service-account`, Flux's
/// multi-tenant workload identity lockdown: with it set, the controller's own identity is
/// never used for a Kustomization's KMS keys).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Account<'a> {
    /// `spec.decryption.serviceAccountName`.
    Named(&'a str),
    /// The operator's default, the spec naming none.
    Default(&'a str),
}

impl Account<'_> {
    fn name(&self) -> &str {
        match self {
            Account::Named(s) | Account::Default(s) => s,
        }
    }

    fn origin(&self) -> &'static str {
        match self {
            Account::Named(_) => "spec.decryption.serviceAccountName",
            Account::Default(_) => "plumb run --default-decryption-service-account",
        }
    }
}

/// The KMS hook of `obj` with the credentials of ServiceAccount `sa` in its namespace. The
/// account is read only when a file needs AWS KMS (then once per reconcile): an age or
/// OpenPGP tree never depends on it.
pub(crate) fn service_account_kms(
    obj: &Kustomization,
    ctx: &Context,
    sa: Account<'_>,
) -> Arc<dyn plumb_sops::KmsDecrypt> {
    let memo = ctx.memo::<Identities>();
    let key = object_key(obj);
    memo.take(&key);
    Arc::new(LazyAccountKms {
        ctx: ctx.clone(),
        namespace: key.0.clone(),
        sa: sa.name().to_string(),
        origin: sa.origin(),
        lockdown: matches!(sa, Account::Default(_)),
        key,
        memo,
        handle: tokio::runtime::Handle::current(),
        resolved: std::sync::OnceLock::new(),
    })
}

/// The account's KMS client, resolved on the first KMS call of the reconcile.
struct LazyAccountKms {
    ctx: Context,
    namespace: String,
    sa: String,
    origin: &'static str,
    lockdown: bool,
    key: (String, String),
    memo: Arc<Identities>,
    handle: tokio::runtime::Handle,
    resolved: std::sync::OnceLock<Result<ServiceAccountKms, String>>,
}

impl plumb_sops::KmsDecrypt for LazyAccountKms {
    fn decrypt(&self, key: &plumb_sops::KmsKey, ciphertext: &[u8]) -> Result<Vec<u8>, String> {
        let resolved = self.resolved.get_or_init(|| {
            self.handle
                .block_on(self.resolve())
                .map_err(|(class, msg)| {
                    self.memo.record(&self.key, class);
                    msg
                })
        });
        match resolved {
            Ok(kms) => kms.decrypt(key, ciphertext),
            Err(msg) => Err(msg.clone()),
        }
    }
}

impl LazyAccountKms {
    /// Reads the account and builds its STS-backed KMS client.
    async fn resolve(&self) -> Result<ServiceAccountKms, (Class, String)> {
        let (ns, sa, origin) = (&self.namespace, &self.sa, self.origin);
        let account = format!("{ns}/{sa}");
        let api: Api<ServiceAccount> = Api::namespaced(self.ctx.client.clone(), ns);
        let found = api.get_opt(sa).await.map_err(|e| {
            let msg = format!("failed to get serviceaccount '{account}' ({origin}): {e}");
            (Class::Transient, msg)
        })?;
        let Some(found) = found else {
            let lockdown = if self.lockdown {
                ": the cluster is subject to multi-tenant workload identity lockdown, ask its administrator"
            } else {
                ""
            };
            let msg = format!("serviceaccount '{account}' ({origin}) not found{lockdown}");
            return Err((Class::Waiting, msg));
        };
        let role_arn = web_identity::role_arn(
            found
                .annotations()
                .get(web_identity::ROLE_ARN_ANNOTATION)
                .map(String::as_str),
        )
        .map_err(|e| (Class::Stalled, format!("serviceaccount '{account}' {e}")))?;
        let ctx = &self.ctx;
        let base = match &ctx.config.sops_kms {
            Some(k) => k.clone(),
            None => KmsDecryptor::from_env().await,
        };
        let inner = base.with_service_account(ServiceAccountIdentity {
            cache: self.memo.cache(ctx).await,
            namespace: ns.clone(),
            service_account: sa.clone(),
            role_arn: role_arn.clone(),
            token: token_fn(ctx.client.clone(), ns.clone(), sa.clone(), role_arn),
        });
        Ok(ServiceAccountKms {
            inner,
            account,
            key: self.key.clone(),
            memo: self.memo.clone(),
            handle: self.handle.clone(),
        })
    }
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
