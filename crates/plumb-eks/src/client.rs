//! Kubernetes clients for remote EKS clusters, authenticated with fresh IAM tokens.
//!
//! kube's `Config::auth_info.token` is static and its `exec` support would spawn a process per
//! refresh, so the client is built from kube's default service stack (TLS with the cluster CA,
//! timeouts, tracing) plus one tower layer of our own that sets `Authorization: Bearer <token>`
//! on every request from a [`BearerTokenProvider`]. The provider ([`crate::TokenSource`])
//! answers from its cache and re-mints before expiry, so a long-lived client never presents an
//! expired token and no background task is needed.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::AUTHORIZATION;
use http::{HeaderValue, Request};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use tower::buffer::BufferLayer;
use tower::{BoxError, Layer, Service};

use crate::cluster::ClusterArn;
use crate::error::{Error, Result};
use crate::source::TokenSource;

/// A boxed future returned by [`BearerTokenProvider::bearer_token`].
pub type TokenFuture<'a> = Pin<Box<dyn Future<Output = Result<String>> + Send + 'a>>;

/// Something that yields a currently valid bearer token.
pub trait BearerTokenProvider: Send + Sync + 'static {
    /// The token to present now. Implementations cache; this is called on every request.
    fn bearer_token(&self) -> TokenFuture<'_>;
}

impl BearerTokenProvider for TokenSource {
    fn bearer_token(&self) -> TokenFuture<'_> {
        Box::pin(async move { self.token().await.map(|t| t.as_str().to_string()) })
    }
}

/// A fixed token (tests; clusters with a static service-account token).
pub struct StaticToken(pub String);

impl std::fmt::Debug for StaticToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StaticToken(<redacted>)")
    }
}

impl BearerTokenProvider for StaticToken {
    fn bearer_token(&self) -> TokenFuture<'_> {
        Box::pin(async move { Ok(self.0.clone()) })
    }
}

/// A tower layer setting `Authorization: Bearer` from a [`BearerTokenProvider`] per request.
#[derive(Clone)]
pub struct BearerLayer {
    tokens: Arc<dyn BearerTokenProvider>,
}

impl BearerLayer {
    /// A layer taking tokens from `tokens`.
    pub fn new(tokens: Arc<dyn BearerTokenProvider>) -> Self {
        Self { tokens }
    }
}

impl<S> Layer<S> for BearerLayer {
    type Service = BearerService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        BearerService {
            inner,
            tokens: self.tokens.clone(),
        }
    }
}

/// The service made by [`BearerLayer`].
#[derive(Clone)]
pub struct BearerService<S> {
    inner: S,
    tokens: Arc<dyn BearerTokenProvider>,
}

impl<S, B> Service<Request<B>> for BearerService<S>
where
    S: Service<Request<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        // The instance polled ready is the one that must serve the call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let tokens = self.tokens.clone();
        Box::pin(async move {
            let token = tokens.bearer_token().await?;
            let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|_| BoxError::from("the bearer token is not a valid header value"))?;
            value.set_sensitive(true);
            req.headers_mut().insert(AUTHORIZATION, value);
            inner.call(req).await.map_err(Into::into)
        })
    }
}

/// Builds a kube client for the API server at `endpoint`, trusting `ca_pem` (system roots when
/// `None`), authenticating every request with a token from `tokens`. `cluster` only names the
/// cluster in errors. Must be called inside a tokio runtime (the client spawns a buffer task).
pub fn build_client(
    cluster: &str,
    endpoint: &str,
    ca_pem: Option<&[u8]>,
    tokens: Arc<dyn BearerTokenProvider>,
) -> Result<kube::Client> {
    client_from_config(cluster, client_config(cluster, endpoint, ca_pem)?, tokens)
}

/// The kube configuration [`build_client`] uses: `endpoint` (which must be `https://`),
/// trusting `ca_pem` (system roots when `None`), without credentials. Callers may adjust it
/// (e.g. impersonation) before [`client_from_config`].
pub fn client_config(cluster: &str, endpoint: &str, ca_pem: Option<&[u8]>) -> Result<kube::Config> {
    let err = |message: String| Error::Client {
        cluster: cluster.to_string(),
        endpoint: endpoint.to_string(),
        message,
    };
    let uri: http::Uri = endpoint
        .parse()
        .map_err(|e| err(format!("invalid address: {e}")))?;
    if uri.scheme_str() != Some("https") {
        return Err(err("the address must be an https:// URL".into()));
    }
    let mut config = kube::Config::new(uri);
    if let Some(pem) = ca_pem {
        let certs = CertificateDer::pem_slice_iter(pem)
            .map(|c| c.map(|c| c.as_ref().to_vec()))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| Error::InvalidCa {
                cluster: cluster.to_string(),
                message: e.to_string(),
            })?;
        if certs.is_empty() {
            return Err(Error::InvalidCa {
                cluster: cluster.to_string(),
                message: "no PEM certificate found".into(),
            });
        }
        config.root_cert = Some(certs);
    }
    Ok(config)
}

/// Builds a kube client from `config` (address, TLS, impersonation, timeouts) that
/// authenticates every request with a token from `tokens`; any token, exec or auth provider in
/// `config.auth_info` is dropped. `cluster` only names the cluster in errors. Must be called
/// inside a tokio runtime.
pub fn client_from_config(
    cluster: &str,
    mut config: kube::Config,
    tokens: Arc<dyn BearerTokenProvider>,
) -> Result<kube::Client> {
    let endpoint = config.cluster_url.to_string();
    if config.cluster_url.scheme_str() != Some("https") {
        return Err(Error::Client {
            cluster: cluster.to_string(),
            endpoint,
            message: "the address must be an https:// URL".into(),
        });
    }
    config.auth_info.token = None;
    config.auth_info.token_file = None;
    config.auth_info.exec = None;
    config.auth_info.auth_provider = None;
    config.auth_info.username = None;
    config.auth_info.password = None;
    let builder = kube::client::ClientBuilder::try_from(config).map_err(|e| Error::Client {
        cluster: cluster.to_string(),
        endpoint,
        message: e.to_string(),
    })?;
    Ok(builder
        .with_layer(&BufferLayer::new(1024))
        .with_layer(&BearerLayer::new(tokens))
        .build())
}

/// How to reach a remote EKS cluster: Flux's `kubeConfig.configMapRef` with `provider: aws`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RemoteCluster {
    /// The cluster name.
    pub name: String,
    /// The cluster region (from the ARN).
    pub region: String,
    /// The cluster ARN, when given.
    pub arn: Option<String>,
    /// The API server address; looked up with DescribeCluster when `None`.
    pub address: Option<String>,
    /// The CA bundle (PEM); looked up with DescribeCluster when `None`.
    pub ca_pem: Option<Vec<u8>>,
    /// A role to assume before signing tokens.
    pub role_arn: Option<String>,
}

impl RemoteCluster {
    /// A remote cluster identified by its ARN.
    pub fn from_arn(arn: &str) -> Result<Self> {
        let parsed: ClusterArn = arn.parse()?;
        Ok(Self {
            name: parsed.name,
            region: parsed.region,
            arn: Some(arn.to_string()),
            address: None,
            ca_pem: None,
            role_arn: None,
        })
    }

    /// Reads the data of a `kubeConfig.configMapRef` ConfigMap: `provider: aws`, `cluster`
    /// (the ARN, required), `address` and `ca.crt` (optional; DescribeCluster fills them in).
    pub fn from_config_map(data: &BTreeMap<String, String>) -> Result<Self> {
        match data.get("provider").map(String::as_str) {
            Some("aws") => {}
            Some(other) => {
                return Err(Error::InvalidSettings(format!(
                    "provider {other:?} is not handled by plumb-eks (want \"aws\")"
                )));
            }
            None => return Err(Error::InvalidSettings("the provider key is missing".into())),
        }
        let arn = data
            .get("cluster")
            .filter(|s| !s.trim().is_empty())
            .ok_or_else(|| {
                Error::InvalidSettings("the cluster key (the EKS cluster ARN) is missing".into())
            })?;
        let mut remote = Self::from_arn(arn.trim())?;
        remote.address = data
            .get("address")
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty());
        if let Some(address) = &remote.address
            && !address.starts_with("https://")
        {
            return Err(Error::InvalidSettings(format!(
                "address {address:?} of EKS cluster {} must start with https://",
                remote.name
            )));
        }
        remote.ca_pem = data
            .get("ca.crt")
            .filter(|s| !s.trim().is_empty())
            .map(|s| s.as_bytes().to_vec());
        Ok(remote)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_map_data() {
        let mut d = BTreeMap::new();
        assert!(RemoteCluster::from_config_map(&d).is_err());
        d.insert("provider".into(), "aws".into());
        let err = RemoteCluster::from_config_map(&d).unwrap_err();
        assert!(err.to_string().contains("cluster key"), "{err}");
        d.insert(
            "cluster".into(),
            "arn:aws:eks:us-west-2:123456789012:cluster/spoke".into(),
        );
        let r = RemoteCluster::from_config_map(&d).unwrap();
        assert_eq!((r.name.as_str(), r.region.as_str()), ("spoke", "us-west-2"));
        assert_eq!(r.address, None);
        d.insert("address".into(), "http://x".into());
        assert!(RemoteCluster::from_config_map(&d).is_err());
        d.insert("address".into(), "https://x:6443".into());
        d.insert("ca.crt".into(), "PEM".into());
        let r = RemoteCluster::from_config_map(&d).unwrap();
        assert_eq!(r.address.as_deref(), Some("https://x:6443"));
        assert_eq!(r.ca_pem.as_deref(), Some(&b"PEM"[..]));
        d.insert("provider".into(), "gcp".into());
        assert!(RemoteCluster::from_config_map(&d).is_err());
    }

    #[tokio::test]
    async fn bad_addresses_and_ca_are_refused() {
        let t: Arc<dyn BearerTokenProvider> = Arc::new(StaticToken("x".into()));
        let e = build_client("c", "http://insecure", None, t.clone())
            .err()
            .unwrap();
        assert!(e.to_string().contains("https://"), "{e}");
        let e = build_client("c", "https://ok", Some(b"not pem"), t)
            .err()
            .unwrap();
        assert!(e.to_string().contains("certificate authority"), "{e}");
    }

    #[tokio::test]
    async fn every_request_carries_a_fresh_token() {
        use crate::source::{ManualClock, TokenKey};
        use aws_credential_types::Credentials;
        use aws_credential_types::provider::SharedCredentialsProvider;
        use std::sync::Mutex;
        use std::time::{Duration, SystemTime};
        use tower::ServiceExt as _;

        let clock = Arc::new(ManualClock::new(
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600),
        ));
        let source = Arc::new(TokenSource::new(
            TokenKey {
                cluster: "c1".into(),
                region: "us-east-1".into(),
                role_arn: None,
            },
            SharedCredentialsProvider::new(Credentials::new("AK", "SK", None, None, "t")),
            "https://sts.us-east-1.amazonaws.com",
            clock.clone(),
        ));
        let seen = Arc::new(Mutex::new(Vec::<String>::new()));
        let seen2 = seen.clone();
        let inner = tower::service_fn(move |req: Request<()>| {
            let seen = seen2.clone();
            async move {
                let h = req.headers().get(AUTHORIZATION).unwrap();
                assert!(h.is_sensitive());
                seen.lock().unwrap().push(h.to_str().unwrap().to_string());
                Ok::<_, BoxError>(())
            }
        });
        let mut svc = BearerLayer::new(source.clone()).layer(inner);
        for advance in [0, 60, 10 * 60] {
            clock.advance(Duration::from_secs(advance));
            svc.ready()
                .await
                .unwrap()
                .call(Request::new(()))
                .await
                .unwrap();
        }
        let seen = seen.lock().unwrap();
        assert!(seen.iter().all(|h| h.starts_with("Bearer k8s-aws-v1.")));
        assert_eq!(seen[0], seen[1], "cached within 10 minutes");
        assert_ne!(seen[1], seen[2], "re-minted after 10 minutes");
        assert_eq!(source.mint_count(), 2);
    }
}
