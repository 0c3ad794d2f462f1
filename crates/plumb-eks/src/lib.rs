//! Amazon EKS integration: IAM authenticator tokens, remote cluster clients, cluster facts.
//!
//! - [`token`]: aws-iam-authenticator compatible tokens (`k8s-aws-v1.` + base64url of a
//!   presigned STS `GetCallerIdentity` URL). The SigV4 presigning is `aws-sigv4`'s; only
//!   the URL is assembled here, in botocore's parameter order, so tokens equal
//!   `aws eks get-token`'s byte for byte. [`mint_token`] is a pure function of credentials,
//!   cluster, region, endpoint and time.
//! - [`TokenSource`]: a token cache per (cluster, region, role) that re-mints after 10 of the
//!   15 minutes a token is accepted; the [`Clock`] is injectable.
//! - [`EksAuth`]: aws-config's default credential chain (environment, profile, IRSA web
//!   identity, EKS Pod Identity, IMDS) with standard retries (throttling is retried with
//!   backoff), DescribeCluster / ListClusters via `aws-sdk-eks`, and cached
//!   [`kube::Client`]s for remote clusters ([`RemoteCluster`], Flux's
//!   `kubeConfig.configMapRef` with `provider: aws`).
//! - [`client`]: how the remote client refreshes its token: a tower layer of ours sets the
//!   bearer token per request on top of kube's default stack.
//! - [`ClusterInfo::facts`] and [`watch_facts`]: the `eks_*` postBuild variables.
//! - [`ecr`]: Amazon ECR registry credentials (`GetAuthorizationToken`, cached until shortly
//!   before expiry) for `provider: aws` OCI sources.
//! - [`kubeconfig`]: the kubeconfig `plumb eks kubeconfig` prints, and recognition of
//!   kubeconfig users that exec `aws eks get-token` / `aws-iam-authenticator token` so plumb
//!   can serve them itself.
//!
//! - [`web_identity`]: AWS credentials of a Kubernetes ServiceAccount (a token it is given,
//!   STS `AssumeRoleWithWebIdentity` for the role of `eks.amazonaws.com/role-arn`), cached
//!   per account until shortly before they expire; KMS uses them for a Kustomization's
//!   `spec.decryption.serviceAccountName`.
//!
//! Nothing here ever puts a credential, a signature or a token in an error, `Debug` or
//! `Display`.

pub mod auth;
pub mod client;
pub mod cluster;
pub mod ecr;
pub mod error;
pub mod kms;
pub mod kubeconfig;
pub mod source;
pub mod token;
pub mod web_identity;

pub use auth::{DEFAULT_MAX_ATTEMPTS, EksAuth, EndpointOverrides, FactsWatcher, watch_facts};
pub use client::{
    BearerLayer, BearerTokenProvider, RemoteCluster, StaticToken, build_client, client_config,
    client_from_config,
};
pub use cluster::{ClusterArn, ClusterInfo, FACT_NAMES};
pub use ecr::{EcrAuth, EcrCredentials, EcrRegistry};
pub use error::{AwsErrorKind, Error, Result};
pub use kubeconfig::{ExecTokenRequest, recognise_exec, render_kubeconfig};
pub use source::{Clock, ManualClock, SystemClock, TokenKey, TokenSource};
pub use token::{
    EXEC_CREDENTIAL_API_VERSION, EksToken, TOKEN_LIFETIME, TOKEN_PREFIX, TOKEN_REFRESH_AFTER,
    mint_token, sts_endpoint, token_url,
};

/// Re-exported so callers can build credentials without depending on the crate themselves.
pub use aws_credential_types::Credentials;
