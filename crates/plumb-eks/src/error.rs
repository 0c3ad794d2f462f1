//! The crate's error type.

use std::fmt;

/// What kind of AWS failure happened, for classification (transient or not) and for
/// condition reasons.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AwsErrorKind {
    /// No credentials could be found or loaded, or they have expired.
    Credentials,
    /// The caller is not allowed to perform the operation (`AccessDenied*`, `UnauthorizedOperation`).
    AccessDenied,
    /// The cluster does not exist (`ResourceNotFoundException`).
    NotFound,
    /// The service throttled the request and retries with backoff were exhausted.
    Throttling,
    /// The endpoint could not be reached or timed out.
    Unreachable,
    /// Any other service or client error.
    Other,
}

impl AwsErrorKind {
    /// Whether retrying later can succeed without anyone changing anything.
    pub fn is_transient(self) -> bool {
        matches!(self, Self::Throttling | Self::Unreachable | Self::Other)
    }
}

impl fmt::Display for AwsErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Credentials => "credentials",
            Self::AccessDenied => "access denied",
            Self::NotFound => "not found",
            Self::Throttling => "throttled",
            Self::Unreachable => "unreachable",
            Self::Other => "error",
        })
    }
}

/// Errors of the EKS integration. None of them ever carries a credential, a signature or a token.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No region was given and none could be resolved from the environment.
    #[error(
        "no AWS region for EKS cluster {cluster}: pass --region, set AWS_REGION, or use a cluster ARN"
    )]
    NoRegion {
        /// The cluster name.
        cluster: String,
    },
    /// Loading AWS credentials failed (none configured, provider failed, or expired).
    #[error("loading AWS credentials for EKS cluster {cluster}: {code}: {message}")]
    Credentials {
        /// The cluster name.
        cluster: String,
        /// A short code, e.g. `CredentialsNotLoaded`, `ExpiredToken`, or the STS error code.
        code: String,
        /// Human-readable description (never the credentials themselves).
        message: String,
    },
    /// Presigning the STS request failed.
    #[error("signing the STS GetCallerIdentity request for EKS cluster {cluster}: {message}")]
    Signing {
        /// The cluster name.
        cluster: String,
        /// What went wrong.
        message: String,
    },
    /// An AWS API call failed.
    #[error("{operation} for EKS cluster {cluster} in {region} failed ({kind}): {code}: {message}")]
    Aws {
        /// The API operation, e.g. `DescribeCluster`.
        operation: &'static str,
        /// The cluster name (or `*` for ListClusters).
        cluster: String,
        /// The region.
        region: String,
        /// The classification.
        kind: AwsErrorKind,
        /// The AWS error code, e.g. `ResourceNotFoundException`, `AccessDeniedException`.
        code: String,
        /// The AWS error message.
        message: String,
    },
    /// A cluster ARN could not be parsed.
    #[error("invalid EKS cluster ARN {arn:?}: {reason}")]
    InvalidArn {
        /// The offending ARN.
        arn: String,
        /// Why it is invalid.
        reason: &'static str,
    },
    /// DescribeCluster returned a cluster without a required field (e.g. still creating).
    #[error("EKS cluster {cluster} has no {field} yet (status {status})")]
    Incomplete {
        /// The cluster name.
        cluster: String,
        /// The missing field.
        field: &'static str,
        /// The cluster status.
        status: String,
    },
    /// The certificate authority data could not be decoded.
    #[error("invalid certificate authority data for EKS cluster {cluster}: {message}")]
    InvalidCa {
        /// The cluster name.
        cluster: String,
        /// What is wrong with it.
        message: String,
    },
    /// Building a Kubernetes client for the cluster failed.
    #[error("building the Kubernetes client for EKS cluster {cluster} at {endpoint}: {message}")]
    Client {
        /// The cluster name.
        cluster: String,
        /// The API server address.
        endpoint: String,
        /// What went wrong.
        message: String,
    },
    /// Remote-cluster settings (e.g. a `provider: aws` ConfigMap) are incomplete or invalid.
    #[error("invalid remote EKS cluster settings: {0}")]
    InvalidSettings(String),
    /// A registry host is not an ECR one (`<account>.dkr.ecr.<region>.amazonaws.com` or
    /// `public.ecr.aws`).
    #[error("{host:?} is not an Amazon ECR registry host: {reason}")]
    NotEcr {
        /// The offending host.
        host: String,
        /// Why it is not one.
        reason: &'static str,
    },
    /// An ECR `GetAuthorizationToken` call failed.
    #[error("{operation} for ECR registry {registry} failed ({kind}): {code}: {message}")]
    Ecr {
        /// `ecr:GetAuthorizationToken` or `ecr-public:GetAuthorizationToken`.
        operation: &'static str,
        /// The registry host.
        registry: String,
        /// The classification.
        kind: AwsErrorKind,
        /// The AWS error code.
        code: String,
        /// The AWS error message.
        message: String,
    },
    /// The authorization data ECR returned is unusable (never quoted: it is a credential).
    #[error("ECR returned unusable authorization data for {registry}: {reason}")]
    EcrToken {
        /// The registry host.
        registry: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An AWS KMS call for a SOPS data key failed (the message never holds key material).
    #[error("kms:Decrypt with key {key}: {code}: {message}")]
    Kms {
        /// The key ARN.
        key: String,
        /// The classification.
        kind: AwsErrorKind,
        /// The AWS error code.
        code: String,
        /// The AWS error message.
        message: String,
    },
    /// AWS credentials for a Kubernetes ServiceAccount could not be obtained: its token
    /// could not be requested, or STS `AssumeRoleWithWebIdentity` failed (the message never
    /// holds the token or credentials).
    #[error("AWS credentials of serviceaccount '{account}' (role {role_arn}): {code}: {message}")]
    WebIdentity {
        /// `namespace/name` of the ServiceAccount.
        account: String,
        /// The role ARN of its annotation.
        role_arn: String,
        /// The classification.
        kind: AwsErrorKind,
        /// The STS error code, or `TokenRequestFailed`.
        code: String,
        /// What went wrong.
        message: String,
    },
    /// Rendering the kubeconfig failed.
    #[error("rendering the kubeconfig for EKS cluster {cluster}: {message}")]
    Kubeconfig {
        /// The cluster name.
        cluster: String,
        /// What went wrong.
        message: String,
    },
}

impl Error {
    /// The AWS classification of this error, when it came from AWS.
    pub fn aws_kind(&self) -> Option<AwsErrorKind> {
        match self {
            Self::Aws { kind, .. }
            | Self::Ecr { kind, .. }
            | Self::Kms { kind, .. }
            | Self::WebIdentity { kind, .. } => Some(*kind),
            Self::Credentials { .. } => Some(AwsErrorKind::Credentials),
            _ => None,
        }
    }

    /// Whether retrying later can succeed without a change of configuration.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Aws { kind, .. } | Self::Ecr { kind, .. } | Self::WebIdentity { kind, .. } => {
                kind.is_transient()
            }
            Self::Credentials { code, .. } => code == "ProviderTimedOut" || code == "Unreachable",
            Self::Incomplete { .. } | Self::Client { .. } => true,
            _ => false,
        }
    }
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
