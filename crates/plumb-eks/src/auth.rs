//! [`EksAuth`]: the AWS configuration, token sources, EKS API calls and remote clients,
//! each cached.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::provider::SharedCredentialsProvider;
use tokio::sync::watch;

use crate::client::{RemoteCluster, build_client};
use crate::cluster::{ClusterInfo, aws_error};
use crate::error::{Error, Result};
use crate::source::{Clock, SystemClock, TokenKey, TokenSource};
use crate::token::{EksToken, sts_endpoint};

/// Attempts per AWS call (standard retry mode: exponential backoff with jitter; throttling
/// errors are retried).
pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;

/// Endpoint overrides, read from the environment like the AWS CLI does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EndpointOverrides {
    /// STS base URL used in tokens (`AWS_ENDPOINT_URL_STS`, else `AWS_ENDPOINT_URL`).
    pub sts: Option<String>,
}

impl EndpointOverrides {
    /// Reads `AWS_ENDPOINT_URL_STS` / `AWS_ENDPOINT_URL`. (The SDK clients read their own
    /// `AWS_ENDPOINT_URL_EKS` / `AWS_ENDPOINT_URL` through aws-config.)
    pub fn from_env() -> Self {
        let get = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        Self {
            sts: get("AWS_ENDPOINT_URL_STS").or_else(|| get("AWS_ENDPOINT_URL")),
        }
    }
}

/// Entry point of the crate: holds the AWS configuration and caches token sources (per
/// cluster, region and role), EKS API clients (per region) and Kubernetes clients (per
/// remote cluster).
pub struct EksAuth {
    sdk: SdkConfig,
    overrides: EndpointOverrides,
    clock: Arc<dyn Clock>,
    sources: tokio::sync::Mutex<HashMap<TokenKey, Arc<TokenSource>>>,
    eks_clients: StdMutex<HashMap<String, aws_sdk_eks::Client>>,
    kube_clients: tokio::sync::Mutex<HashMap<RemoteCluster, kube::Client>>,
}

impl std::fmt::Debug for EksAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EksAuth")
            .field("region", &self.sdk.region())
            .field("overrides", &self.overrides)
            .finish_non_exhaustive()
    }
}

/// aws-config's default chain (environment, profile, IRSA web identity, EKS Pod Identity,
/// ECS, IMDS) with standard retries; `region` overrides the default region chain. Shared by
/// the EKS, ECR and KMS clients.
pub async fn default_sdk_config(region: Option<&str>) -> aws_config::SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .retry_config(RetryConfig::standard().with_max_attempts(DEFAULT_MAX_ATTEMPTS));
    if let Some(r) = region {
        loader = loader.region(Region::new(r.to_string()));
    }
    loader.load().await
}

impl EksAuth {
    /// Loads aws-config's default chain (environment, profile, web identity/IRSA, EKS Pod
    /// Identity, ECS, IMDS) with standard retries, and endpoint overrides from the
    /// environment. `region` overrides the default region chain.
    pub async fn from_env(region: Option<&str>) -> Self {
        Self::new(
            default_sdk_config(region).await,
            EndpointOverrides::from_env(),
        )
    }

    /// Wraps an already loaded configuration.
    pub fn new(sdk: SdkConfig, overrides: EndpointOverrides) -> Self {
        Self {
            sdk,
            overrides,
            clock: Arc::new(SystemClock),
            sources: Default::default(),
            eks_clients: Default::default(),
            kube_clients: Default::default(),
        }
    }

    /// Replaces the clock token sources use (tests).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The loaded AWS configuration.
    pub fn sdk_config(&self) -> &SdkConfig {
        &self.sdk
    }

    /// `region` if given, else the configuration's region, else [`Error::NoRegion`].
    pub fn resolve_region(&self, cluster: &str, region: Option<&str>) -> Result<String> {
        region
            .map(str::to_string)
            .or_else(|| self.sdk.region().map(|r| r.to_string()))
            .filter(|r| !r.is_empty())
            .ok_or_else(|| Error::NoRegion {
                cluster: cluster.to_string(),
            })
    }

    /// The (cached) token source for a cluster; `role_arn` is assumed (STS AssumeRole) with
    /// the default credentials before signing.
    pub async fn token_source(
        &self,
        cluster: &str,
        region: Option<&str>,
        role_arn: Option<&str>,
    ) -> Result<Arc<TokenSource>> {
        let region = self.resolve_region(cluster, region)?;
        let key = TokenKey {
            cluster: cluster.to_string(),
            region: region.clone(),
            role_arn: role_arn.map(str::to_string),
        };
        let mut sources = self.sources.lock().await;
        if let Some(s) = sources.get(&key) {
            return Ok(s.clone());
        }
        let base = self
            .sdk
            .credentials_provider()
            .ok_or_else(|| Error::Credentials {
                cluster: cluster.to_string(),
                code: "CredentialsNotLoaded".into(),
                message: "no credentials provider is configured".into(),
            })?;
        let credentials = match role_arn {
            None => base,
            Some(role) => SharedCredentialsProvider::new(
                aws_config::sts::AssumeRoleProvider::builder(role)
                    .session_name("plumb-eks")
                    .region(Region::new(region.clone()))
                    .configure(&self.sdk)
                    .build_from_provider(base)
                    .await,
            ),
        };
        let endpoint = sts_endpoint(&region, self.overrides.sts.as_deref());
        let source = Arc::new(TokenSource::new(
            key.clone(),
            credentials,
            endpoint,
            self.clock.clone(),
        ));
        sources.insert(key, source.clone());
        Ok(source)
    }

    /// A token for the cluster, from the cache while it is fresh.
    pub async fn token(
        &self,
        cluster: &str,
        region: Option<&str>,
        role_arn: Option<&str>,
    ) -> Result<EksToken> {
        self.token_source(cluster, region, role_arn)
            .await?
            .token()
            .await
    }

    fn eks_client(&self, region: &str) -> aws_sdk_eks::Client {
        let mut clients = self.eks_clients.lock().unwrap_or_else(|p| p.into_inner());
        clients
            .entry(region.to_string())
            .or_insert_with(|| {
                let conf = aws_sdk_eks::config::Builder::from(&self.sdk)
                    .region(Region::new(region.to_string()))
                    .build();
                aws_sdk_eks::Client::from_conf(conf)
            })
            .clone()
    }

    /// DescribeCluster.
    pub async fn describe_cluster(&self, name: &str, region: Option<&str>) -> Result<ClusterInfo> {
        let region = self.resolve_region(name, region)?;
        let out = self
            .eks_client(&region)
            .describe_cluster()
            .name(name)
            .send()
            .await
            .map_err(|e| aws_error("DescribeCluster", name, &region, e))?;
        let cluster = out.cluster().ok_or_else(|| Error::Aws {
            operation: "DescribeCluster",
            cluster: name.to_string(),
            region: region.clone(),
            kind: crate::AwsErrorKind::Other,
            code: "EmptyResponse".into(),
            message: "the response has no cluster".into(),
        })?;
        ClusterInfo::from_sdk(cluster)
    }

    /// ListClusters (all pages).
    pub async fn list_clusters(&self, region: Option<&str>) -> Result<Vec<String>> {
        let region = self.resolve_region("*", region)?;
        let client = self.eks_client(&region);
        let mut names = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let out = client
                .list_clusters()
                .set_next_token(next.take())
                .send()
                .await
                .map_err(|e| aws_error("ListClusters", "*", &region, e))?;
            names.extend(out.clusters().iter().cloned());
            match out.next_token() {
                Some(t) if !t.is_empty() => next = Some(t.to_string()),
                _ => break,
            }
        }
        Ok(names)
    }

    /// A Kubernetes client for a remote cluster, cached per [`RemoteCluster`]. What the
    /// remote does not give (address, CA) comes from DescribeCluster. Tokens are refreshed per request (see
    /// [`crate::client`]).
    pub async fn client_for(&self, remote: &RemoteCluster) -> Result<kube::Client> {
        let mut clients = self.kube_clients.lock().await;
        if let Some(c) = clients.get(remote) {
            return Ok(c.clone());
        }
        let (endpoint, ca) = match (&remote.address, &remote.ca_pem) {
            (Some(a), Some(ca)) => (a.clone(), ca.clone()),
            (address, ca) => {
                let info = self
                    .describe_cluster(&remote.name, Some(&remote.region))
                    .await?;
                (
                    address.clone().unwrap_or(info.endpoint),
                    ca.clone().unwrap_or(info.ca_pem),
                )
            }
        };
        let source = self
            .token_source(
                &remote.name,
                Some(&remote.region),
                remote.role_arn.as_deref(),
            )
            .await?;
        let client = build_client(&remote.name, &endpoint, Some(&ca), source)?;
        clients.insert(remote.clone(), client.clone());
        Ok(client)
    }

    /// Forgets the cached client of a remote cluster (e.g. after its endpoint changed).
    pub async fn forget_client(&self, remote: &RemoteCluster) {
        self.kube_clients.lock().await.remove(remote);
    }
}

/// The latest cluster facts, kept fresh by a background task; see [`watch_facts`].
pub struct FactsWatcher {
    rx: watch::Receiver<Option<Arc<BTreeMap<String, String>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl FactsWatcher {
    /// The most recent facts, or `None` before the first successful DescribeCluster.
    pub fn current(&self) -> Option<Arc<BTreeMap<String, String>>> {
        self.rx.borrow().clone()
    }

    /// A receiver notified whenever the facts change.
    pub fn subscribe(&self) -> watch::Receiver<Option<Arc<BTreeMap<String, String>>>> {
        self.rx.clone()
    }

    /// Waits until the first facts are known or `timeout` elapses.
    pub async fn ready(&self, timeout: Duration) -> Option<Arc<BTreeMap<String, String>>> {
        let mut rx = self.rx.clone();
        tokio::time::timeout(timeout, rx.wait_for(Option::is_some))
            .await
            .ok()
            .and_then(|r| r.ok().and_then(|v| v.clone()))
    }
}

impl Drop for FactsWatcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts a task that reads the facts of `cluster` now and then every `interval`, publishing
/// them when they change. Failures are logged (without secrets) and the last good facts kept;
/// after a failure the next attempt comes after `interval / 10` (at least one second).
pub fn watch_facts(
    auth: Arc<EksAuth>,
    cluster: String,
    region: Option<String>,
    interval: Duration,
) -> FactsWatcher {
    let (tx, rx) = watch::channel(None);
    let task = tokio::spawn(async move {
        loop {
            let wait = match auth.describe_cluster(&cluster, region.as_deref()).await {
                Ok(info) => {
                    let facts = Arc::new(info.facts());
                    tx.send_if_modified(|cur| {
                        if cur.as_deref() == Some(&*facts) {
                            false
                        } else {
                            *cur = Some(facts.clone());
                            true
                        }
                    });
                    interval
                }
                Err(err) => {
                    tracing::warn!(cluster = %cluster, error = %err, "reading EKS cluster facts failed");
                    (interval / 10).max(Duration::from_secs(1))
                }
            };
            tokio::time::sleep(wait).await;
        }
    });
    FactsWatcher { rx, task }
}
