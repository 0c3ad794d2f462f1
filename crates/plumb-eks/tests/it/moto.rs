//! DescribeCluster, ListClusters and GetCallerIdentity (replaying a token's presigned URL)
//! against a local moto server; token refresh with a controllable clock.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_config::{BehaviorVersion, Region};
use plumb_eks::{
    AwsErrorKind, Credentials, EksAuth, EndpointOverrides, ManualClock, TOKEN_REFRESH_AFTER,
    token_url,
};
use plumb_testing::moto::MotoServer;

const REGION: &str = "eu-west-1";

async fn sdk_config(moto: &MotoServer) -> aws_config::SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .credentials_provider(Credentials::new(
            "AKIDTESTTESTTEST",
            "secret",
            None,
            None,
            "test",
        ))
        .endpoint_url(moto.url())
        .load()
        .await
}

async fn create_cluster(sdk: &aws_config::SdkConfig, name: &str) {
    let eks = aws_sdk_eks::Client::new(sdk);
    eks.create_cluster()
        .name(name)
        .version("1.33")
        .role_arn("arn:aws:iam::123456789012:role/eks")
        .resources_vpc_config(
            aws_sdk_eks::types::VpcConfigRequest::builder()
                .subnet_ids("subnet-1")
                .build(),
        )
        .send()
        .await
        .expect("CreateCluster in moto");
}

#[tokio::test]
async fn describe_list_and_caller_identity_against_moto() {
    let moto = MotoServer::start().unwrap();
    let sdk = sdk_config(&moto).await;
    create_cluster(&sdk, "spoke-1").await;
    create_cluster(&sdk, "spoke-2").await;

    let auth = EksAuth::new(
        sdk,
        EndpointOverrides {
            sts: Some(moto.url()),
        },
    );
    let mut names = auth.list_clusters(None).await.unwrap();
    names.sort();
    assert_eq!(names, ["spoke-1", "spoke-2"]);

    let info = auth.describe_cluster("spoke-1", None).await.unwrap();
    assert_eq!(info.name, "spoke-1");
    assert_eq!(info.arn.region, REGION);
    assert_eq!(info.arn.account_id.len(), 12);
    assert!(info.endpoint.starts_with("https://"), "{}", info.endpoint);
    let facts = info.facts();
    assert_eq!(facts.len(), plumb_eks::FACT_NAMES.len());
    assert_eq!(facts["eks_cluster_name"], "spoke-1");
    assert_eq!(facts["eks_region"], REGION);
    assert_eq!(facts["eks_cluster_version"], "1.33");
    assert_eq!(facts["eks_cluster_endpoint"], info.endpoint);

    let err = auth.describe_cluster("nope", None).await.unwrap_err();
    assert_eq!(err.aws_kind(), Some(AwsErrorKind::NotFound), "{err}");
    let shown = err.to_string();
    assert!(
        shown.contains("nope") && shown.contains("ResourceNotFoundException"),
        "{shown}"
    );
    assert!(!shown.contains("secret"), "{shown}");

    // The token's presigned URL is a valid GetCallerIdentity request.
    let token = auth.token("spoke-1", None, None).await.unwrap();
    let url = token_url(token.as_str()).unwrap();
    assert!(
        url.starts_with(&format!("{}/?Action=GetCallerIdentity", moto.url())),
        "{url}"
    );
    let response = moto.replay_presigned(&url, "spoke-1").unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(
        response.contains("GetCallerIdentityResult") && response.contains("<Arn>"),
        "{response}"
    );

    // Facts are published by the watcher.
    let auth = Arc::new(auth);
    let watcher = plumb_eks::watch_facts(
        auth.clone(),
        "spoke-2".into(),
        None,
        Duration::from_secs(3600),
    );
    let published = watcher
        .ready(Duration::from_secs(60))
        .await
        .expect("facts within 60s");
    assert_eq!(published["eks_cluster_name"], "spoke-2");
    assert_eq!(
        *published,
        auth.describe_cluster("spoke-2", None)
            .await
            .unwrap()
            .facts()
    );
    assert_eq!(watcher.current(), Some(published));

    // A remote client's address and CA come from DescribeCluster.
    let remote = plumb_eks::RemoteCluster::from_arn(&info.arn.to_string()).unwrap();
    // moto's certificateAuthority.data is random bytes, not PEM: refused, naming the cluster.
    let err = auth
        .client_for(&remote)
        .await
        .err()
        .expect("moto's CA is not PEM");
    let shown = err.to_string();
    assert!(
        shown.contains("spoke-1") && shown.contains("certificate authority"),
        "{shown}"
    );
}

#[tokio::test]
async fn unreachable_endpoint_is_a_clear_transient_error() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let sdk = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .credentials_provider(Credentials::new("AKIDTEST", "secret", None, None, "test"))
        .endpoint_url(format!("http://127.0.0.1:{port}"))
        .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(2))
        .load()
        .await;
    let auth = EksAuth::new(sdk, EndpointOverrides::default());
    let err = auth.describe_cluster("spoke-9", None).await.unwrap_err();
    assert_eq!(err.aws_kind(), Some(AwsErrorKind::Unreachable), "{err}");
    assert!(err.is_transient());
    assert!(err.to_string().contains("spoke-9"), "{err}");
}

#[tokio::test]
async fn missing_credentials_name_the_cluster() {
    let sdk = aws_config::SdkConfig::builder()
        .region(Region::new(REGION))
        .behavior_version(BehaviorVersion::latest())
        .build();
    let auth = EksAuth::new(sdk, EndpointOverrides::default());
    let err = auth.token("spoke-3", None, None).await.unwrap_err();
    assert_eq!(err.aws_kind(), Some(AwsErrorKind::Credentials), "{err}");
    assert!(err.to_string().contains("spoke-3"), "{err}");
    let err = auth.describe_cluster("spoke-4", None).await.unwrap_err();
    assert_eq!(err.aws_kind(), Some(AwsErrorKind::Credentials), "{err}");
    assert!(err.to_string().contains("spoke-4"), "{err}");
}

#[tokio::test]
async fn tokens_are_refreshed_before_expiry() {
    let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600);
    let clock = Arc::new(ManualClock::new(start));
    let sdk = aws_config::SdkConfig::builder()
        .region(Region::new(REGION))
        .behavior_version(BehaviorVersion::latest())
        .credentials_provider(
            aws_credential_types::provider::SharedCredentialsProvider::new(Credentials::new(
                "AKIDTEST",
                "secret",
                Some("session".into()),
                None,
                "test",
            )),
        )
        .build();
    let auth = EksAuth::new(sdk, EndpointOverrides::default()).with_clock(clock.clone());
    let source = auth.token_source("spoke-1", None, None).await.unwrap();

    let first = source.token().await.unwrap();
    assert_eq!(first.issued_at(), start);
    assert_eq!(first.expiration_timestamp(), "2026-01-01T00:14:00Z");
    clock.advance(TOKEN_REFRESH_AFTER - Duration::from_secs(1));
    assert_eq!(source.token().await.unwrap(), first, "reused while fresh");
    assert_eq!(source.mint_count(), 1);

    clock.advance(Duration::from_secs(1));
    let second = source.token().await.unwrap();
    assert_ne!(second, first, "re-minted at 10 minutes");
    assert_eq!(second.issued_at(), start + TOKEN_REFRESH_AFTER);
    assert!(second.expires_at() > first.expires_at());
    assert_eq!(source.mint_count(), 2);
    assert!(
        token_url(second.as_str())
            .unwrap()
            .contains("X-Amz-Date=20260101T001000Z")
    );

    // The same key shares the source (and its cache).
    let again = auth
        .token_source("spoke-1", Some(REGION), None)
        .await
        .unwrap();
    assert!(Arc::ptr_eq(&source, &again));
    assert_eq!(auth.token("spoke-1", None, None).await.unwrap(), second);
}
