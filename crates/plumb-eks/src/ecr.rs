//! Amazon ECR registry credentials for `provider: aws` OCI sources.
//!
//! - [`EcrRegistry::parse`]: recognises private ECR hosts
//!   (`<12-digit account>.dkr.ecr[-fips].<region>.amazonaws.com[.cn]`) and ECR Public
//!   (`public.ecr.aws`); anything else is [`Error::NotEcr`], so a credential is never sent to
//!   a host that merely looks like ECR.
//! - [`EcrAuth`]: `GetAuthorizationToken` (`aws-sdk-ecr`, or `aws-sdk-ecrpublic` in
//!   `us-east-1` for ECR Public) with aws-config's default chain (environment, profile, IRSA
//!   web identity, EKS Pod Identity, IMDS); decodes `AWS:<password>` and caches it per
//!   (account, region) until [`REFRESH_BEFORE_EXPIRY`] before `expiresAt`. The endpoint
//!   follows aws-config (`AWS_ENDPOINT_URL_ECR`, `AWS_ENDPOINT_URL`), as the EKS and STS calls
//!   do; [`EcrAuth::with_endpoint`] sets it explicitly (tests, against moto).
//!
//! [`EcrCredentials`]'s `Debug` never prints the password, and no error quotes the token.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use aws_config::{Region, SdkConfig};
use base64::Engine as _;

use crate::cluster::classify_sdk_error;
use crate::error::{Error, Result};
use crate::source::{Clock, SystemClock};

/// A token is fetched again this long before its `expiresAt` (ECR tokens last 12 hours).
pub const REFRESH_BEFORE_EXPIRY: Duration = Duration::from_secs(5 * 60);

/// The host of ECR Public.
pub const ECR_PUBLIC_HOST: &str = "public.ecr.aws";

/// The only region serving the ECR Public API.
const ECR_PUBLIC_REGION: &str = "us-east-1";

/// An ECR registry named by a registry host.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EcrRegistry {
    /// A private registry of an account in a region.
    Private {
        /// The 12-digit account id (the registry id).
        account: String,
        /// The region.
        region: String,
    },
    /// ECR Public (`public.ecr.aws`).
    Public,
}

impl EcrRegistry {
    /// Recognises an ECR registry host; an explicit port (`:443`) is allowed and ignored.
    pub fn parse(host: &str) -> Result<EcrRegistry> {
        let not = |reason| Error::NotEcr {
            host: host.to_string(),
            reason,
        };
        let name = match host.rsplit_once(':') {
            Some((n, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => n,
            Some(_) => return Err(not("invalid port")),
            None => host,
        };
        let name = name.to_ascii_lowercase();
        if name == ECR_PUBLIC_HOST {
            return Ok(EcrRegistry::Public);
        }
        let rest = name
            .strip_suffix(".amazonaws.com")
            .or_else(|| name.strip_suffix(".amazonaws.com.cn"))
            .ok_or_else(|| not("not under amazonaws.com, amazonaws.com.cn or public.ecr.aws"))?;
        let mut labels = rest.split('.');
        let (Some(account), Some("dkr"), Some(ecr), Some(region), None) = (
            labels.next(),
            labels.next(),
            labels.next(),
            labels.next(),
            labels.next(),
        ) else {
            return Err(not("expected <account>.dkr.ecr.<region>.amazonaws.com"));
        };
        if !matches!(ecr, "ecr" | "ecr-fips") {
            return Err(not("expected <account>.dkr.ecr.<region>.amazonaws.com"));
        }
        if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
            return Err(not("the account id must be 12 digits"));
        }
        if region.is_empty()
            || !region
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(not("invalid region"));
        }
        Ok(EcrRegistry::Private {
            account: account.to_string(),
            region: region.to_string(),
        })
    }

    /// The region whose API hands out the registry's tokens.
    pub fn region(&self) -> &str {
        match self {
            EcrRegistry::Private { region, .. } => region,
            EcrRegistry::Public => ECR_PUBLIC_REGION,
        }
    }
}

impl std::fmt::Display for EcrRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EcrRegistry::Private { account, region } => {
                write!(f, "{account}.dkr.ecr.{region}.amazonaws.com")
            }
            EcrRegistry::Public => f.write_str(ECR_PUBLIC_HOST),
        }
    }
}

/// Registry credentials from `GetAuthorizationToken`. `Debug` never prints the password.
#[derive(Clone, PartialEq, Eq)]
pub struct EcrCredentials {
    /// The user name (`AWS`).
    pub username: String,
    /// The password (the token).
    pub password: String,
    /// When ECR stops accepting it.
    pub expires_at: SystemTime,
}

impl std::fmt::Debug for EcrCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EcrCredentials")
            .field("username", &self.username)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// Decodes an `authorizationToken` (base64 of `user:password`).
pub fn decode_token(
    registry: &EcrRegistry,
    token: &str,
    expires_at: SystemTime,
) -> Result<EcrCredentials> {
    let bad = |reason| Error::EcrToken {
        registry: registry.to_string(),
        reason,
    };
    let raw = base64::engine::general_purpose::STANDARD
        .decode(token.trim())
        .map_err(|_| bad("the token is not base64"))?;
    let text = String::from_utf8(raw).map_err(|_| bad("the token is not UTF-8"))?;
    let (user, password) = text
        .split_once(':')
        .ok_or_else(|| bad("the token is not user:password"))?;
    if user.is_empty() || password.is_empty() {
        return Err(bad("the token has an empty user or password"));
    }
    Ok(EcrCredentials {
        username: user.to_string(),
        password: password.to_string(),
        expires_at,
    })
}

/// Credentials plus whether they came from the cache (a 401 with cached credentials is worth
/// one refresh; with fresh ones it is not).
#[derive(Debug, Clone)]
pub struct Fetched {
    /// The credentials.
    pub credentials: EcrCredentials,
    /// Served from the cache rather than fetched just now.
    pub cached: bool,
}

/// `GetAuthorizationToken` with a cache per registry (account and region).
pub struct EcrAuth {
    sdk: SdkConfig,
    endpoint: Option<String>,
    clock: Arc<dyn Clock>,
    cache: tokio::sync::Mutex<HashMap<EcrRegistry, EcrCredentials>>,
    fetches: AtomicU64,
}

impl std::fmt::Debug for EcrAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EcrAuth")
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl EcrAuth {
    /// aws-config's default chain (environment, profile, IRSA, EKS Pod Identity, IMDS) with
    /// standard retries; the endpoint follows `AWS_ENDPOINT_URL_ECR` / `AWS_ENDPOINT_URL`.
    pub async fn from_env() -> Self {
        Self::new(crate::auth::default_sdk_config(None).await)
    }

    /// Wraps an already loaded configuration.
    pub fn new(sdk: SdkConfig) -> Self {
        Self {
            sdk,
            endpoint: None,
            clock: Arc::new(SystemClock),
            cache: Default::default(),
            fetches: AtomicU64::new(0),
        }
    }

    /// Sends every `GetAuthorizationToken` to `url` (e.g. a moto server).
    pub fn with_endpoint(mut self, url: impl Into<String>) -> Self {
        self.endpoint = Some(url.into());
        self
    }

    /// Replaces the clock expiry is judged by (tests).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// How many `GetAuthorizationToken` calls were made (cache misses).
    pub fn fetch_count(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    /// Credentials for `registry`: the cached ones until [`REFRESH_BEFORE_EXPIRY`] before
    /// they expire, else fresh ones.
    pub async fn credentials(&self, registry: &EcrRegistry) -> Result<Fetched> {
        let mut cache = self.cache.lock().await;
        let now = self.clock.now();
        if let Some(c) = cache.get(registry)
            && c.expires_at > now + REFRESH_BEFORE_EXPIRY
        {
            return Ok(Fetched {
                credentials: c.clone(),
                cached: true,
            });
        }
        cache.remove(registry);
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let (token, expires_at) = self.get_authorization_token(registry).await?;
        let credentials = decode_token(registry, &token, expires_at)?;
        cache.insert(registry.clone(), credentials.clone());
        Ok(Fetched {
            credentials,
            cached: false,
        })
    }

    /// Drops the cached credentials of `registry` (after the registry refused them).
    pub async fn invalidate(&self, registry: &EcrRegistry) {
        self.cache.lock().await.remove(registry);
    }

    async fn get_authorization_token(
        &self,
        registry: &EcrRegistry,
    ) -> Result<(String, SystemTime)> {
        let region = Region::new(registry.region().to_string());
        let empty = |what| Error::EcrToken {
            registry: registry.to_string(),
            reason: what,
        };
        let (token, expires) = match registry {
            // The token is good for every registry the principal may read: no registry id.
            EcrRegistry::Private { .. } => {
                let mut conf = aws_sdk_ecr::config::Builder::from(&self.sdk).region(region);
                if let Some(url) = &self.endpoint {
                    conf = conf.endpoint_url(url);
                }
                let out = aws_sdk_ecr::Client::from_conf(conf.build())
                    .get_authorization_token()
                    .send()
                    .await
                    .map_err(|e| ecr_error("ecr:GetAuthorizationToken", registry, &e))?;
                let data = out
                    .authorization_data()
                    .first()
                    .ok_or_else(|| empty("no authorization data"))?;
                (
                    data.authorization_token().map(str::to_string),
                    data.expires_at().cloned(),
                )
            }
            EcrRegistry::Public => {
                let mut conf = aws_sdk_ecrpublic::config::Builder::from(&self.sdk).region(region);
                if let Some(url) = &self.endpoint {
                    conf = conf.endpoint_url(url);
                }
                let out = aws_sdk_ecrpublic::Client::from_conf(conf.build())
                    .get_authorization_token()
                    .send()
                    .await
                    .map_err(|e| ecr_error("ecr-public:GetAuthorizationToken", registry, &e))?;
                let data = out
                    .authorization_data()
                    .ok_or_else(|| empty("no authorization data"))?;
                (
                    data.authorization_token().map(str::to_string),
                    data.expires_at().cloned(),
                )
            }
        };
        let token = token.ok_or_else(|| empty("no authorization token"))?;
        let expires = expires
            .and_then(|t| SystemTime::try_from(t).ok())
            .ok_or_else(|| empty("no valid expiresAt"))?;
        Ok((token, expires))
    }
}

fn ecr_error<E, R>(
    operation: &'static str,
    registry: &EcrRegistry,
    err: &aws_smithy_runtime_api::client::result::SdkError<E, R>,
) -> Error
where
    E: aws_sdk_ecr::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    let (kind, code, message) = classify_sdk_error(err);
    Error::Ecr {
        operation,
        registry: registry.to_string(),
        kind,
        code,
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ecr_hosts() {
        let p = |h: &str| EcrRegistry::parse(h);
        let private = |a: &str, r: &str| EcrRegistry::Private {
            account: a.into(),
            region: r.into(),
        };
        assert_eq!(
            p("123456789012.dkr.ecr.us-east-1.amazonaws.com").unwrap(),
            private("123456789012", "us-east-1")
        );
        assert_eq!(
            p("123456789012.dkr.ecr-fips.us-gov-west-1.amazonaws.com").unwrap(),
            private("123456789012", "us-gov-west-1")
        );
        assert_eq!(
            p("123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn").unwrap(),
            private("123456789012", "cn-north-1")
        );
        assert_eq!(
            p("123456789012.dkr.ecr.eu-west-1.amazonaws.com:443").unwrap(),
            private("123456789012", "eu-west-1")
        );
        assert_eq!(p("public.ecr.aws").unwrap(), EcrRegistry::Public);
        assert_eq!(EcrRegistry::Public.region(), "us-east-1");
        for bad in [
            "ghcr.io",
            "12345.dkr.ecr.us-east-1.amazonaws.com",
            "123456789012.dkr.ecr.us-east-1.amazonaws.com.evil.io",
            "evil.io/123456789012.dkr.ecr.us-east-1.amazonaws.com",
            "x.123456789012.dkr.ecr.us-east-1.amazonaws.com",
            "123456789012.dkr.ecr.US_EAST.amazonaws.com",
            "123456789012.dkr.ecs.us-east-1.amazonaws.com",
            "123456789012.dkr.ecr.us-east-1.amazonaws.com:x",
            "",
        ] {
            assert!(p(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn decodes_tokens_without_quoting_them() {
        let r = EcrRegistry::Public;
        let t = base64::engine::general_purpose::STANDARD.encode("AWS:s3cr:et");
        let c = decode_token(&r, &t, SystemTime::UNIX_EPOCH).unwrap();
        assert_eq!(
            (c.username.as_str(), c.password.as_str()),
            ("AWS", "s3cr:et")
        );
        assert!(!format!("{c:?}").contains("s3cr"));
        let bad = base64::engine::general_purpose::STANDARD.encode("hunter2-no-colon");
        let e = decode_token(&r, &bad, SystemTime::UNIX_EPOCH).unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
        assert!(decode_token(&r, "!!!", SystemTime::UNIX_EPOCH).is_err());
    }
}
