//! Cluster descriptions (DescribeCluster), ARNs and the postBuild facts derived from them.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use aws_sdk_eks::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_types::error::display::DisplayErrorContext;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::error::{AwsErrorKind, Error, Result};

/// The postBuild variable names of the cluster facts.
pub const FACT_NAMES: [&str; 7] = [
    "eks_cluster_name",
    "eks_region",
    "eks_account_id",
    "eks_cluster_version",
    "eks_cluster_endpoint",
    "eks_oidc_issuer",
    "eks_vpc_id",
];

/// A parsed EKS cluster ARN: `arn:<partition>:eks:<region>:<account>:cluster/<name>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClusterArn {
    /// `aws`, `aws-cn`, `aws-us-gov`, …
    pub partition: String,
    /// The cluster's region.
    pub region: String,
    /// The owning account id (12 digits).
    pub account_id: String,
    /// The cluster name.
    pub name: String,
}

impl FromStr for ClusterArn {
    type Err = Error;

    fn from_str(arn: &str) -> Result<Self> {
        let bad = |reason| Error::InvalidArn {
            arn: arn.to_string(),
            reason,
        };
        let mut parts = arn.splitn(6, ':');
        let (Some("arn"), Some(partition), Some(service), Some(region), Some(account), Some(res)) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(bad(
                "expected arn:<partition>:eks:<region>:<account>:cluster/<name>",
            ));
        };
        if service != "eks" {
            return Err(bad("the service is not eks"));
        }
        if partition.is_empty() || region.is_empty() {
            return Err(bad("the partition or region is empty"));
        }
        if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad("the account id is not 12 digits"));
        }
        let Some(name) = res.strip_prefix("cluster/") else {
            return Err(bad("the resource is not cluster/<name>"));
        };
        if name.is_empty() || name.contains('/') {
            return Err(bad("the cluster name is empty or contains '/'"));
        }
        Ok(Self {
            partition: partition.to_string(),
            region: region.to_string(),
            account_id: account.to_string(),
            name: name.to_string(),
        })
    }
}

impl fmt::Display for ClusterArn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "arn:{}:eks:{}:{}:cluster/{}",
            self.partition, self.region, self.account_id, self.name
        )
    }
}

/// What DescribeCluster says about a cluster, in the shape plumb needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterInfo {
    /// The cluster name.
    pub name: String,
    /// The cluster ARN.
    pub arn: ClusterArn,
    /// The Kubernetes version (`1.33`).
    pub version: String,
    /// The API server URL.
    pub endpoint: String,
    /// The cluster CA bundle, PEM (decoded from DescribeCluster's base64).
    pub ca_pem: Vec<u8>,
    /// The OIDC issuer URL used for IRSA, if any.
    pub oidc_issuer: Option<String>,
    /// The cluster's VPC id, if known.
    pub vpc_id: Option<String>,
    /// The cluster status (`ACTIVE`, `CREATING`, …).
    pub status: String,
}

impl ClusterInfo {
    /// Builds the info from a DescribeCluster `cluster` structure.
    pub fn from_sdk(cluster: &aws_sdk_eks::types::Cluster) -> Result<Self> {
        let name = cluster.name().unwrap_or_default().to_string();
        let status = cluster
            .status()
            .map(|s| s.as_str().to_string())
            .unwrap_or_else(|| "UNKNOWN".into());
        let missing = |field| Error::Incomplete {
            cluster: name.clone(),
            field,
            status: status.clone(),
        };
        let arn: ClusterArn = cluster.arn().ok_or_else(|| missing("arn"))?.parse()?;
        let endpoint = cluster
            .endpoint()
            .filter(|e| !e.is_empty())
            .ok_or_else(|| missing("endpoint"))?
            .to_string();
        let ca_b64 = cluster
            .certificate_authority()
            .and_then(|c| c.data())
            .filter(|d| !d.is_empty())
            .ok_or_else(|| missing("certificateAuthority.data"))?;
        let ca_pem = STANDARD
            .decode(ca_b64.trim())
            .map_err(|e| Error::InvalidCa {
                cluster: name.clone(),
                message: format!("certificateAuthority.data is not base64: {e}"),
            })?;
        Ok(Self {
            name: if name.is_empty() {
                arn.name.clone()
            } else {
                name.clone()
            },
            version: cluster.version().unwrap_or_default().to_string(),
            endpoint,
            ca_pem,
            oidc_issuer: cluster
                .identity()
                .and_then(|i| i.oidc())
                .and_then(|o| o.issuer())
                .map(str::to_string),
            vpc_id: cluster
                .resources_vpc_config()
                .and_then(|v| v.vpc_id())
                .map(str::to_string),
            status,
            arn,
        })
    }

    /// The cluster facts for postBuild substitution ([`FACT_NAMES`]); unknown values are
    /// empty strings so `${eks_vpc_id}` never stays unsubstituted.
    pub fn facts(&self) -> BTreeMap<String, String> {
        let values = [
            self.name.clone(),
            self.arn.region.clone(),
            self.arn.account_id.clone(),
            self.version.clone(),
            self.endpoint.clone(),
            self.oidc_issuer.clone().unwrap_or_default(),
            self.vpc_id.clone().unwrap_or_default(),
        ];
        FACT_NAMES
            .iter()
            .map(|k| k.to_string())
            .zip(values)
            .collect()
    }
}

/// Maps an SDK error to [`Error::Aws`] (or [`Error::Credentials`]) naming the operation, the
/// cluster and the AWS error code.
pub(crate) fn aws_error<E, R>(
    operation: &'static str,
    cluster: &str,
    region: &str,
    err: SdkError<E, R>,
) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: fmt::Debug + Send + Sync + 'static,
{
    let (kind, code, message) = classify_sdk_error(&err);
    if kind == AwsErrorKind::Credentials {
        return Error::Credentials {
            cluster: cluster.to_string(),
            code,
            message,
        };
    }
    Error::Aws {
        operation,
        cluster: cluster.to_string(),
        region: region.to_string(),
        kind,
        code,
        message,
    }
}

/// The classification, AWS error code and message of an SDK error (shared by the EKS and
/// ECR calls).
pub(crate) fn classify_sdk_error<E, R>(err: &SdkError<E, R>) -> (AwsErrorKind, String, String)
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: fmt::Debug + Send + Sync + 'static,
{
    let context = DisplayErrorContext(err).to_string();
    let (kind, code) = match err {
        SdkError::TimeoutError(_) => (AwsErrorKind::Unreachable, "Timeout".to_string()),
        SdkError::DispatchFailure(d) if d.is_io() || d.is_timeout() => {
            (AwsErrorKind::Unreachable, "Unreachable".to_string())
        }
        SdkError::DispatchFailure(_) | SdkError::ConstructionFailure(_)
            if is_credentials_failure(&context) =>
        {
            (
                AwsErrorKind::Credentials,
                "CredentialsNotLoaded".to_string(),
            )
        }
        SdkError::ServiceError(_) | SdkError::ResponseError(_) => {
            let code = err.code().unwrap_or("Unknown").to_string();
            (classify_code(&code), code)
        }
        SdkError::DispatchFailure(_) => (AwsErrorKind::Unreachable, "DispatchFailure".to_string()),
        _ => (AwsErrorKind::Other, "ClientError".to_string()),
    };
    let message = err.message().map(str::to_string).unwrap_or(context);
    (kind, code, message)
}

fn is_credentials_failure(context: &str) -> bool {
    let lower = context.to_ascii_lowercase();
    lower.contains("credentials") || lower.contains("identity")
}

/// Classifies an AWS error code.
pub(crate) fn classify_code(code: &str) -> AwsErrorKind {
    match code {
        "ResourceNotFoundException" | "NotFoundException" => AwsErrorKind::NotFound,
        "ExpiredToken"
        | "ExpiredTokenException"
        | "InvalidClientTokenId"
        | "UnrecognizedClientException"
        | "InvalidIdentityToken"
        | "IDPRejectedClaim" => AwsErrorKind::Credentials,
        c if c.starts_with("AccessDenied")
            || c == "UnauthorizedOperation"
            || c == "SignatureDoesNotMatch"
            || c == "UnauthorizedException" =>
        {
            AwsErrorKind::AccessDenied
        }
        c if c.starts_with("Throttl")
            || c == "TooManyRequestsException"
            || c == "RequestLimitExceeded"
            || c == "SlowDown" =>
        {
            AwsErrorKind::Throttling
        }
        _ => AwsErrorKind::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arns_parse_and_reject() {
        let a: ClusterArn = "arn:aws:eks:eu-central-1:123456789012:cluster/prod-1"
            .parse()
            .unwrap();
        assert_eq!(a.region, "eu-central-1");
        assert_eq!(a.account_id, "123456789012");
        assert_eq!(a.name, "prod-1");
        assert_eq!(
            a.to_string(),
            "arn:aws:eks:eu-central-1:123456789012:cluster/prod-1"
        );
        for bad in [
            "",
            "prod-1",
            "arn:aws:ecs:eu-central-1:123456789012:cluster/x",
            "arn:aws:eks:eu-central-1:12345:cluster/x",
            "arn:aws:eks:eu-central-1:123456789012:nodegroup/x",
            "arn:aws:eks:eu-central-1:123456789012:cluster/",
            "arn:aws:eks::123456789012:cluster/x",
        ] {
            let err = bad.parse::<ClusterArn>().unwrap_err();
            assert!(
                err.to_string().contains("invalid EKS cluster ARN"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn codes_classify() {
        assert_eq!(
            classify_code("ResourceNotFoundException"),
            AwsErrorKind::NotFound
        );
        assert_eq!(
            classify_code("AccessDeniedException"),
            AwsErrorKind::AccessDenied
        );
        assert_eq!(
            classify_code("ThrottlingException"),
            AwsErrorKind::Throttling
        );
        assert_eq!(
            classify_code("ExpiredTokenException"),
            AwsErrorKind::Credentials
        );
        assert_eq!(classify_code("ServerException"), AwsErrorKind::Other);
    }

    #[test]
    fn facts_from_sdk_cluster() {
        use aws_sdk_eks::types::{Certificate, Cluster, Identity, Oidc, VpcConfigResponse};
        let c = Cluster::builder()
            .name("prod-1")
            .arn("arn:aws:eks:eu-central-1:123456789012:cluster/prod-1")
            .version("1.33")
            .endpoint("https://ABC.gr7.eu-central-1.eks.amazonaws.com")
            .certificate_authority(Certificate::builder().data(STANDARD.encode("PEM")).build())
            .identity(
                Identity::builder()
                    .oidc(Oidc::builder().issuer("https://oidc.eks/id/ABC").build())
                    .build(),
            )
            .resources_vpc_config(VpcConfigResponse::builder().vpc_id("vpc-1").build())
            .build();
        let info = ClusterInfo::from_sdk(&c).unwrap();
        assert_eq!(info.ca_pem, b"PEM");
        let f = info.facts();
        assert_eq!(f.len(), FACT_NAMES.len());
        assert_eq!(f["eks_cluster_name"], "prod-1");
        assert_eq!(f["eks_region"], "eu-central-1");
        assert_eq!(f["eks_account_id"], "123456789012");
        assert_eq!(f["eks_cluster_version"], "1.33");
        assert_eq!(f["eks_oidc_issuer"], "https://oidc.eks/id/ABC");
        assert_eq!(f["eks_vpc_id"], "vpc-1");

        let creating = Cluster::builder()
            .name("new")
            .arn("arn:aws:eks:eu-central-1:123456789012:cluster/new")
            .build();
        let err = ClusterInfo::from_sdk(&creating).unwrap_err();
        assert!(err.to_string().contains("new has no endpoint"), "{err}");
    }
}
