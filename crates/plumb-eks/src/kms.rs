//! AWS KMS `Decrypt` for SOPS data keys (Kustomization `spec.decryption`).
//!
//! [`KmsDecryptor`] decrypts a data key with the key ARN and encryption context sops
//! recorded, in the key's region (from its ARN), assuming the recorded role first (STS
//! AssumeRole, session `plumb-sops`). Credentials: aws-config's default chain (environment,
//! IRSA web identity, EKS Pod Identity, IMDS), or static keys from a decryption Secret's
//! `sops.aws-kms` entry ([`KmsDecryptor::with_static_credentials`]), or a Kubernetes
//! ServiceAccount's ([`KmsDecryptor::with_service_account`], STS in the key's region through
//! [`crate::web_identity`]). The endpoint follows
//! aws-config (`AWS_ENDPOINT_URL_KMS`, `AWS_ENDPOINT_URL`), so tests point it at moto.
//! Plaintext keys are returned, never logged; errors carry AWS's code and message only.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use aws_config::{Region, SdkConfig};
use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_smithy_types::Blob;

use crate::cluster::classify_sdk_error;
use crate::error::{AwsErrorKind, Error, Result};
use crate::web_identity::{WebIdentityCache, WebIdentityKey};

/// Decrypts SOPS data keys with AWS KMS.
#[derive(Debug, Clone)]
pub struct KmsDecryptor {
    sdk: SdkConfig,
    account: Option<Arc<ServiceAccountIdentity>>,
}

/// Requests a token for a ServiceAccount (audience [`crate::web_identity::STS_AUDIENCE`]);
/// the caller's Kubernetes client does it.
pub type TokenFn =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<String>> + Send>> + Send + Sync>;

/// The ServiceAccount whose credentials KMS calls use, in place of the configuration's.
pub struct ServiceAccountIdentity {
    /// Where the credentials are cached.
    pub cache: Arc<WebIdentityCache>,
    /// The ServiceAccount's namespace.
    pub namespace: String,
    /// The ServiceAccount's name.
    pub service_account: String,
    /// The role of its `eks.amazonaws.com/role-arn` annotation.
    pub role_arn: String,
    /// Requests a token for it (called on a cache miss only).
    pub token: TokenFn,
}

impl std::fmt::Debug for ServiceAccountIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccountIdentity")
            .field("namespace", &self.namespace)
            .field("service_account", &self.service_account)
            .field("role_arn", &self.role_arn)
            .finish_non_exhaustive()
    }
}

/// The YAML of a decryption Secret's `sops.aws-kms` entry (Flux's format).
#[derive(serde::Deserialize)]
struct StaticKeys {
    aws_access_key_id: String,
    aws_secret_access_key: String,
    #[serde(default)]
    aws_session_token: Option<String>,
}

impl KmsDecryptor {
    /// With aws-config's default chain (the controller's identity).
    pub async fn from_env() -> Self {
        Self::new(crate::auth::default_sdk_config(None).await)
    }

    /// Wraps an already loaded configuration.
    pub fn new(sdk: SdkConfig) -> Self {
        KmsDecryptor { sdk, account: None }
    }

    /// The configuration KMS clients are built from.
    pub fn sdk_config(&self) -> &SdkConfig {
        &self.sdk
    }

    /// The same configuration with the credentials of a Kubernetes ServiceAccount instead
    /// of its own: STS `AssumeRoleWithWebIdentity` in the key's region, cached in
    /// `identity.cache`.
    pub fn with_service_account(&self, identity: ServiceAccountIdentity) -> Self {
        KmsDecryptor {
            sdk: self.sdk.clone(),
            account: Some(Arc::new(identity)),
        }
    }

    /// The same configuration with the static credentials of a `sops.aws-kms` Secret entry
    /// (YAML: `aws_access_key_id`, `aws_secret_access_key`, optional `aws_session_token`).
    pub fn with_static_credentials(&self, yaml: &[u8]) -> Result<Self> {
        let bad = || Error::Kms {
            key: "-".into(),
            kind: AwsErrorKind::Credentials,
            code: "InvalidStaticCredentials".into(),
            message: "sops.aws-kms is not YAML with aws_access_key_id and aws_secret_access_key"
                .into(),
        };
        let text = std::str::from_utf8(yaml).map_err(|_| bad())?;
        let k: StaticKeys = serde_saphyr::from_str(text).map_err(|_| bad())?;
        let creds = Credentials::new(
            k.aws_access_key_id,
            k.aws_secret_access_key,
            k.aws_session_token,
            None,
            "sops.aws-kms",
        );
        let sdk = self
            .sdk
            .to_builder()
            .credentials_provider(SharedCredentialsProvider::new(creds))
            .build();
        Ok(KmsDecryptor { sdk, account: None })
    }

    /// `kms:Decrypt` of `blob` under `key_arn` with `context`, after assuming `role`.
    pub async fn decrypt(
        &self,
        key_arn: &str,
        role: Option<&str>,
        context: &[(String, String)],
        blob: &[u8],
    ) -> Result<Vec<u8>> {
        let region = key_arn
            .split(':')
            .nth(3)
            .filter(|r| !r.is_empty())
            .map(|r| Region::new(r.to_string()))
            .or_else(|| self.sdk.region().cloned());
        let mut conf = aws_sdk_kms::config::Builder::from(&self.sdk);
        if let Some(r) = &region {
            conf = conf.region(r.clone());
        }
        let mut base = self.sdk.credentials_provider();
        if let Some(a) = &self.account {
            let key = WebIdentityKey {
                namespace: a.namespace.clone(),
                service_account: a.service_account.clone(),
                role_arn: a.role_arn.clone(),
                region: region
                    .as_ref()
                    .map(|r| r.to_string())
                    .unwrap_or_else(|| "us-east-1".into()),
            };
            let creds = a.cache.credentials(&key, || (a.token)()).await?;
            let creds = SharedCredentialsProvider::new(creds);
            conf = conf.credentials_provider(creds.clone());
            base = Some(creds);
        }
        if let Some(role) = role {
            let base = base.ok_or_else(|| Error::Kms {
                key: key_arn.to_string(),
                kind: AwsErrorKind::Credentials,
                code: "CredentialsNotLoaded".into(),
                message: "no credentials provider is configured".into(),
            })?;
            let mut b = aws_config::sts::AssumeRoleProvider::builder(role)
                .session_name("plumb-sops")
                .configure(&self.sdk);
            if let Some(r) = &region {
                b = b.region(r.clone());
            }
            conf = conf.credentials_provider(SharedCredentialsProvider::new(
                b.build_from_provider(base).await,
            ));
        }
        let ctx: HashMap<String, String> = context.iter().cloned().collect();
        let out = aws_sdk_kms::Client::from_conf(conf.build())
            .decrypt()
            .key_id(key_arn)
            .ciphertext_blob(Blob::new(blob.to_vec()))
            .set_encryption_context((!ctx.is_empty()).then_some(ctx))
            .send()
            .await
            .map_err(|e| {
                let (kind, code, message) = classify_sdk_error(&e);
                Error::Kms {
                    key: key_arn.to_string(),
                    kind,
                    code,
                    message,
                }
            })?;
        out.plaintext()
            .map(|p| p.as_ref().to_vec())
            .ok_or_else(|| Error::Kms {
                key: key_arn.to_string(),
                kind: AwsErrorKind::Other,
                code: "NoPlaintext".into(),
                message: "KMS returned no plaintext".into(),
            })
    }
}
