//! AWS credentials for a Kubernetes ServiceAccount (object-level workload identity, IRSA
//! style): a ServiceAccount token (audience [`STS_AUDIENCE`]) is exchanged with STS
//! `AssumeRoleWithWebIdentity` for the role of the account's [`ROLE_ARN_ANNOTATION`].
//!
//! This crate has no Kubernetes client for it: the caller reads the ServiceAccount, checks
//! the annotation ([`role_arn`]) and passes a function that requests the token; it is
//! called only on a cache miss. [`WebIdentityCache`] keeps the credentials per
//! (namespace, ServiceAccount, role, STS region) until [`REFRESH_MARGIN`] before they expire.
//! The STS call is unsigned (the token is the proof); the STS endpoint is the region's, or
//! an override (tests point it at moto). Errors never hold the token or the credentials.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, SystemTime};

use aws_config::{Region, SdkConfig};
use aws_credential_types::Credentials;

use crate::cluster::classify_sdk_error;
use crate::error::{AwsErrorKind, Error, Result};
use crate::source::{Clock, SystemClock};

/// The ServiceAccount annotation naming the IAM role (EKS IRSA's).
pub const ROLE_ARN_ANNOTATION: &str = "eks.amazonaws.com/role-arn";

/// The audience of the ServiceAccount token STS accepts.
pub const STS_AUDIENCE: &str = "sts.amazonaws.com";

/// Cached credentials are renewed this long before they expire.
pub const REFRESH_MARGIN: Duration = Duration::from_secs(5 * 60);

/// The role ARN of a ServiceAccount's [`ROLE_ARN_ANNOTATION`] value: an IAM role ARN
/// (`arn:<partition>:iam::<account>:role/<name>`), or an error saying what is wrong.
pub fn role_arn(annotation: Option<&str>) -> std::result::Result<String, String> {
    let Some(arn) = annotation.map(str::trim).filter(|a| !a.is_empty()) else {
        return Err(format!("has no {ROLE_ARN_ANNOTATION} annotation"));
    };
    let bad = || {
        Err(format!(
            "annotation {ROLE_ARN_ANNOTATION} is not an IAM role ARN \
             (arn:aws:iam::<account>:role/<name>): {arn:?}"
        ))
    };
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let [prefix, partition, service, region, account, resource] = parts.as_slice() else {
        return bad();
    };
    let ok = *prefix == "arn"
        && partition.starts_with("aws")
        && *service == "iam"
        && region.is_empty()
        && (1..=30).contains(&account.len())
        && account.bytes().all(|b| b.is_ascii_digit())
        && resource
            .strip_prefix("role/")
            .is_some_and(|n| (1..=200).contains(&n.chars().count()));
    if ok { Ok(arn.to_string()) } else { bad() }
}

/// The STS session name of a ServiceAccount's credentials, as Flux names them
/// (`<name>.<namespace>.<region>.fluxcd.io`, so IAM conditions and CloudTrail read the
/// same), cut to the 64 characters STS allows.
pub fn session_name(namespace: &str, service_account: &str, region: &str) -> String {
    let mut s = format!("{service_account}.{namespace}.{region}.fluxcd.io");
    s.truncate(64);
    s
}

/// What credentials are cached by.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WebIdentityKey {
    /// The ServiceAccount's namespace.
    pub namespace: String,
    /// The ServiceAccount's name.
    pub service_account: String,
    /// The role assumed (the annotation's value).
    pub role_arn: String,
    /// The STS region (the KMS key's).
    pub region: String,
}

impl WebIdentityKey {
    /// `namespace/name` of the ServiceAccount.
    pub fn account(&self) -> String {
        format!("{}/{}", self.namespace, self.service_account)
    }
}

/// Credentials per [`WebIdentityKey`], renewed shortly before they expire. One lock per
/// key, so two accounts never wait on each other's STS call.
pub struct WebIdentityCache {
    sdk: SdkConfig,
    sts_endpoint: Option<String>,
    clock: Arc<dyn Clock>,
    entries: StdMutex<HashMap<WebIdentityKey, Arc<tokio::sync::Mutex<Option<Credentials>>>>>,
    exchanges: AtomicU64,
}

impl std::fmt::Debug for WebIdentityCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebIdentityCache")
            .field("sts_endpoint", &self.sts_endpoint)
            .field("exchanges", &self.exchange_count())
            .finish_non_exhaustive()
    }
}

impl WebIdentityCache {
    /// A cache calling STS with `sdk`'s HTTP client, retries and timeouts (never its
    /// credentials); `sts_endpoint` overrides the regional endpoint (else `sdk`'s endpoint
    /// settings, e.g. `AWS_ENDPOINT_URL_STS`, apply).
    pub fn new(sdk: SdkConfig, sts_endpoint: Option<String>) -> Self {
        Self {
            sdk,
            sts_endpoint,
            clock: Arc::new(SystemClock),
            entries: StdMutex::new(HashMap::new()),
            exchanges: AtomicU64::new(0),
        }
    }

    /// Replaces the clock (tests).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// How many `AssumeRoleWithWebIdentity` calls succeeded (cache misses).
    pub fn exchange_count(&self) -> u64 {
        self.exchanges.load(Ordering::Relaxed)
    }

    /// Drops every cached credential of ServiceAccount `namespace/name`.
    pub fn forget(&self, namespace: &str, service_account: &str) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.retain(|k, _| !(k.namespace == namespace && k.service_account == service_account));
    }

    /// The credentials of `key`: the cached ones while they are valid for more than
    /// [`REFRESH_MARGIN`], else `token()` is called for a ServiceAccount token and STS
    /// exchanges it. A failing `token()` is returned as it is.
    pub async fn credentials<F, Fut>(&self, key: &WebIdentityKey, token: F) -> Result<Credentials>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<String>>,
    {
        let slot = {
            let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
            entries.entry(key.clone()).or_default().clone()
        };
        let mut cached = slot.lock().await;
        let now = self.clock.now();
        if let Some(c) = cached.as_ref()
            && c.expiry().is_none_or(|e| e > now + REFRESH_MARGIN)
        {
            return Ok(c.clone());
        }
        *cached = None;
        let jwt = token().await?;
        let creds = self.exchange(key, &jwt).await?;
        self.exchanges.fetch_add(1, Ordering::Relaxed);
        *cached = Some(creds.clone());
        Ok(creds)
    }

    async fn exchange(&self, key: &WebIdentityKey, jwt: &str) -> Result<Credentials> {
        let mut conf =
            aws_sdk_sts::config::Builder::from(&self.sdk).region(Region::new(key.region.clone()));
        conf.set_credentials_provider(None);
        if let Some(e) = &self.sts_endpoint {
            conf = conf.endpoint_url(e);
        }
        let err = |kind, code: &str, message: String| Error::WebIdentity {
            account: key.account(),
            role_arn: key.role_arn.clone(),
            kind,
            code: code.to_string(),
            message,
        };
        let out = aws_sdk_sts::Client::from_conf(conf.build())
            .assume_role_with_web_identity()
            .role_arn(&key.role_arn)
            .role_session_name(session_name(
                &key.namespace,
                &key.service_account,
                &key.region,
            ))
            .web_identity_token(jwt)
            .send()
            .await
            .map_err(|e| {
                let (kind, code, message) = classify_sdk_error(&e);
                err(kind, &code, message)
            })?;
        let c = out.credentials.ok_or_else(|| {
            err(
                AwsErrorKind::Other,
                "NoCredentials",
                "STS returned no credentials".into(),
            )
        })?;
        let expiry = SystemTime::try_from(c.expiration).map_err(|_| {
            err(
                AwsErrorKind::Other,
                "BadExpiration",
                "STS returned an unrepresentable expiration".into(),
            )
        })?;
        Ok(Credentials::new(
            c.access_key_id,
            c.secret_access_key,
            Some(c.session_token),
            Some(expiry),
            "plumb-service-account",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_arn_is_checked() {
        let ok = "arn:aws:iam::123456789012:role/sops";
        assert_eq!(role_arn(Some(ok)).unwrap(), ok);
        assert_eq!(
            role_arn(Some("arn:aws-cn:iam::123456789012:role/a/b")).unwrap(),
            "arn:aws-cn:iam::123456789012:role/a/b"
        );
        assert!(
            role_arn(None)
                .unwrap_err()
                .contains("has no eks.amazonaws.com/role-arn")
        );
        assert!(role_arn(Some(" ")).is_err());
        for bad in [
            "sops",
            "arn:aws:iam::123456789012:user/sops",
            "arn:aws:sts::123456789012:role/sops",
            "arn:aws:iam:us-east-1:123456789012:role/sops",
            "arn:aws:iam::12x:role/sops",
            "arn:aws:iam::123456789012:role/",
        ] {
            let e = role_arn(Some(bad)).unwrap_err();
            assert!(e.contains("not an IAM role ARN"), "{bad}: {e}");
        }
    }

    #[test]
    fn session_names_are_flux_s_and_fit() {
        assert_eq!(
            session_name("team-a", "sops", "eu-west-1"),
            "sops.team-a.eu-west-1.fluxcd.io"
        );
        assert_eq!(session_name(&"n".repeat(63), "sa", "us-east-1").len(), 64);
    }
}
