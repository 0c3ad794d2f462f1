//! aws-iam-authenticator compatible bearer tokens.
//!
//! A token is `k8s-aws-v1.` followed by the unpadded base64url encoding of a presigned
//! STS `GetCallerIdentity` GET URL. The URL is signed with SigV4 query-string signing
//! (`X-Amz-Expires=60`) over the `host` and `x-k8s-aws-id: <cluster name>` headers; the
//! EKS authenticator replays it against STS to learn the caller's identity and checks the
//! header names its cluster. The authenticator accepts a URL for 15 minutes after its
//! `X-Amz-Date`, so tokens are reported as expiring after 14 minutes (as `aws eks get-token`
//! does) and [`crate::TokenSource`] re-mints them after 10.
//!
//! The signature itself comes from `aws-sigv4`; only the final URL is assembled here, because
//! `aws-sigv4` orders `X-Amz-Security-Token` after `X-Amz-Signature` while botocore (the
//! reference the known-answer test compares with) puts it before. STS accepts both; assembling
//! it like botocore makes the token byte-for-byte identical to `aws eks get-token`.

use std::fmt;
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    SignableBody, SignableRequest, SignatureLocation, SigningSettings, sign,
};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::error::{Error, Result};

/// The prefix of every token.
pub const TOKEN_PREFIX: &str = "k8s-aws-v1.";
/// The signed header carrying the cluster name.
pub const CLUSTER_ID_HEADER: &str = "x-k8s-aws-id";
/// `X-Amz-Expires` of the presigned URL, in seconds (what every EKS client sends).
pub const PRESIGN_EXPIRES_SECS: u64 = 60;
/// How long a token is reported valid (`status.expirationTimestamp`), like `aws eks get-token`.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(14 * 60);
/// After this age a cached token is replaced by a fresh one.
pub const TOKEN_REFRESH_AFTER: Duration = Duration::from_secs(10 * 60);
/// The `apiVersion` of the ExecCredential printed by `plumb eks token`.
pub const EXEC_CREDENTIAL_API_VERSION: &str = "client.authentication.k8s.io/v1beta1";

const STS_QUERY: &str = "Action=GetCallerIdentity&Version=2011-06-15";

/// A minted bearer token. `Debug` and `Display` never show the token itself.
#[derive(Clone, PartialEq, Eq)]
pub struct EksToken {
    token: String,
    cluster: String,
    issued_at: SystemTime,
    expires_at: SystemTime,
}

impl EksToken {
    /// The bearer token (`k8s-aws-v1.…`). Treat it as a secret.
    pub fn as_str(&self) -> &str {
        &self.token
    }

    /// The cluster name the token is bound to.
    pub fn cluster(&self) -> &str {
        &self.cluster
    }

    /// When the token was signed (`X-Amz-Date`).
    pub fn issued_at(&self) -> SystemTime {
        self.issued_at
    }

    /// When the token is reported to expire (`issued_at` + 14 minutes).
    pub fn expires_at(&self) -> SystemTime {
        self.expires_at
    }

    /// `status.expirationTimestamp` as RFC 3339 with second precision (`2026-01-01T00:14:00Z`).
    pub fn expiration_timestamp(&self) -> String {
        chrono::DateTime::<chrono::Utc>::from(self.expires_at)
            .format("%Y-%m-%dT%H:%M:%SZ")
            .to_string()
    }

    /// The ExecCredential document, shaped like the output of `aws eks get-token`.
    pub fn exec_credential(&self) -> serde_json::Value {
        serde_json::json!({
            "kind": "ExecCredential",
            "apiVersion": EXEC_CREDENTIAL_API_VERSION,
            "spec": {},
            "status": {
                "expirationTimestamp": self.expiration_timestamp(),
                "token": self.token,
            }
        })
    }
}

impl fmt::Debug for EksToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EksToken")
            .field("token", &"<redacted>")
            .field("cluster", &self.cluster)
            .field("expires_at", &self.expiration_timestamp())
            .finish()
    }
}

impl fmt::Display for EksToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "EKS token for cluster {} (expires {})",
            self.cluster,
            self.expiration_timestamp()
        )
    }
}

/// The regional STS endpoint, or `override_url` when set (`AWS_ENDPOINT_URL_STS`/`AWS_ENDPOINT_URL`).
pub fn sts_endpoint(region: &str, override_url: Option<&str>) -> String {
    match override_url {
        Some(url) if !url.trim().is_empty() => url.trim().to_string(),
        _ if region.starts_with("cn-") => format!("https://sts.{region}.amazonaws.com.cn"),
        _ => format!("https://sts.{region}.amazonaws.com"),
    }
}

/// Mints a token for `cluster` with explicit credentials and signing time: a pure function,
/// usable by tests to precompute the token a client will present.
///
/// `sts_endpoint` is a base URL such as `https://sts.us-west-2.amazonaws.com`
/// (see [`sts_endpoint`]); `region` is the signing region.
pub fn mint_token(
    credentials: &Credentials,
    cluster: &str,
    region: &str,
    sts_endpoint: &str,
    now: SystemTime,
) -> Result<EksToken> {
    let signing_err = |message: String| Error::Signing {
        cluster: cluster.to_string(),
        message,
    };
    if cluster.is_empty() {
        return Err(signing_err("the cluster name is empty".into()));
    }
    if let Some(expiry) = credentials.expiry()
        && expiry <= now
    {
        return Err(Error::Credentials {
            cluster: cluster.to_string(),
            code: "ExpiredToken".into(),
            message: format!(
                "the AWS credentials expired at {}",
                chrono::DateTime::<chrono::Utc>::from(expiry).format("%Y-%m-%dT%H:%M:%SZ")
            ),
        });
    }
    let base = sts_endpoint.trim_end_matches('/');
    let unsigned = format!("{base}/?{STS_QUERY}");

    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(Duration::from_secs(PRESIGN_EXPIRES_SECS));
    let identity = Identity::from(credentials.clone());
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("sts")
        .time(now)
        .settings(settings)
        .build()
        .map_err(|e| signing_err(e.to_string()))?
        .into();
    let request = SignableRequest::new(
        "GET",
        unsigned.as_str(),
        std::iter::once((CLUSTER_ID_HEADER, cluster)),
        SignableBody::Bytes(&[]),
    )
    .map_err(|e| signing_err(format!("invalid STS endpoint {base:?}: {e}")))?;
    let (instructions, _signature) = sign(request, &params)
        .map_err(|e| signing_err(e.to_string()))?
        .into_parts();
    let (_headers, query) = instructions.into_parts();

    // botocore's order: operation parameters, then the auth parameters, signature last.
    const ORDER: [&str; 7] = [
        "X-Amz-Algorithm",
        "X-Amz-Credential",
        "X-Amz-Date",
        "X-Amz-Expires",
        "X-Amz-SignedHeaders",
        "X-Amz-Security-Token",
        "X-Amz-Signature",
    ];
    let mut url = unsigned;
    for name in ORDER {
        if let Some((_, value)) = query.iter().find(|(n, _)| *n == name) {
            url.push('&');
            url.push_str(name);
            url.push('=');
            percent_encode_into(value, &mut url);
        }
    }
    let token = format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(url.as_bytes()));
    Ok(EksToken {
        token,
        cluster: cluster.to_string(),
        issued_at: now,
        expires_at: now + TOKEN_LIFETIME,
    })
}

/// Decodes a token back into its presigned URL (for verifiers and tests); `None` if it is
/// not a `k8s-aws-v1.` token.
pub fn token_url(token: &str) -> Option<String> {
    let encoded = token.strip_prefix(TOKEN_PREFIX)?;
    let bytes = URL_SAFE_NO_PAD.decode(encoded).ok()?;
    String::from_utf8(bytes).ok()
}

/// RFC 3986 percent-encoding keeping only the unreserved characters, exactly as SigV4 and
/// botocore's `percent_encode` do (upper-case hex). Eight lines do not justify a dependency.
fn percent_encode_into(value: &str, out: &mut String) {
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds() -> Credentials {
        Credentials::new(
            "AKIDEXAMPLE",
            "secretkeyvalue",
            Some("sessiontok+/=".into()),
            None,
            "test",
        )
    }

    #[test]
    fn token_shape_and_url() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600);
        let t = mint_token(
            &creds(),
            "c1",
            "eu-west-1",
            &sts_endpoint("eu-west-1", None),
            now,
        )
        .unwrap();
        assert!(t.as_str().starts_with(TOKEN_PREFIX));
        assert!(!t.as_str().contains('='));
        let url = token_url(t.as_str()).unwrap();
        assert!(url.starts_with(
            "https://sts.eu-west-1.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIDEXAMPLE%2F20260101%2Feu-west-1%2Fsts%2Faws4_request&X-Amz-Date=20260101T000000Z&X-Amz-Expires=60&X-Amz-SignedHeaders=host%3Bx-k8s-aws-id&X-Amz-Security-Token=sessiontok%2B%2F%3D&X-Amz-Signature="
        ), "{url}");
        assert_eq!(t.expiration_timestamp(), "2026-01-01T00:14:00Z");
        let ec = t.exec_credential();
        assert_eq!(ec["status"]["token"], t.as_str());
        assert_eq!(ec["apiVersion"], EXEC_CREDENTIAL_API_VERSION);
    }

    #[test]
    fn debug_and_display_hide_the_token() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600);
        let t = mint_token(
            &creds(),
            "c1",
            "eu-west-1",
            &sts_endpoint("eu-west-1", None),
            now,
        )
        .unwrap();
        for shown in [format!("{t:?}"), format!("{t}")] {
            assert!(!shown.contains(TOKEN_PREFIX), "{shown}");
            assert!(!shown.contains("Signature"), "{shown}");
            assert!(shown.contains("c1"));
        }
    }

    #[test]
    fn expired_credentials_are_refused() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600);
        let c = Credentials::new("AK", "SK", None, Some(now - Duration::from_secs(1)), "t");
        let err = mint_token(
            &c,
            "c1",
            "us-east-1",
            "https://sts.us-east-1.amazonaws.com",
            now,
        )
        .unwrap_err();
        assert!(err.to_string().contains("ExpiredToken"), "{err}");
        assert!(err.to_string().contains("c1"));
        assert!(!err.to_string().contains("SK"));
    }

    #[test]
    fn endpoints() {
        assert_eq!(
            sts_endpoint("us-east-1", None),
            "https://sts.us-east-1.amazonaws.com"
        );
        assert_eq!(
            sts_endpoint("cn-north-1", None),
            "https://sts.cn-north-1.amazonaws.com.cn"
        );
        assert_eq!(
            sts_endpoint("us-east-1", Some("http://127.0.0.1:5000")),
            "http://127.0.0.1:5000"
        );
        assert_eq!(token_url("nope"), None);
    }
}
