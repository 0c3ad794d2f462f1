//! ECR `GetAuthorizationToken` against a local moto server: the decoded credentials, the
//! cache per registry until shortly before `expiresAt` (moto's tokens expire on
//! 2015-01-01, so a controllable clock stands before that), invalidation, and an
//! unreachable endpoint as a clear, transient error.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_config::{BehaviorVersion, Region};
use plumb_eks::ecr::REFRESH_BEFORE_EXPIRY;
use plumb_eks::{Credentials, EcrAuth, EcrRegistry, ManualClock};
use plumb_testing::moto::MotoServer;

/// moto's tokens expire at 2015-01-01T00:00:00 (its local time: UTC here).
fn moto_expiry() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_420_070_400)
}

async fn sdk() -> aws_config::SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("eu-west-1"))
        .credentials_provider(Credentials::new("AKIDTEST", "secret", None, None, "test"))
        .load()
        .await
}

#[tokio::test]
async fn tokens_are_fetched_once_and_refreshed_before_expiry() {
    let moto = MotoServer::start().unwrap();
    let clock = Arc::new(ManualClock::new(moto_expiry() - Duration::from_secs(3600)));
    let auth = EcrAuth::new(sdk().await)
        .with_endpoint(moto.url())
        .with_clock(clock.clone());
    let registry = EcrRegistry::parse("123456789012.dkr.ecr.us-east-1.amazonaws.com").unwrap();

    let first = auth.credentials(&registry).await.unwrap();
    assert!(!first.cached);
    assert_eq!(first.credentials.username, "AWS");
    assert_eq!(first.credentials.password, "123456789012-auth-token");
    assert_eq!(first.credentials.expires_at, moto_expiry());
    assert!(!format!("{first:?}").contains("auth-token"));

    for _ in 0..3 {
        let again = auth.credentials(&registry).await.unwrap();
        assert!(again.cached);
    }
    assert_eq!(
        auth.fetch_count(),
        1,
        "one GetAuthorizationToken for four uses"
    );

    // Within REFRESH_BEFORE_EXPIRY of expiresAt: fetched again.
    clock.set(moto_expiry() - REFRESH_BEFORE_EXPIRY + Duration::from_secs(1));
    assert!(!auth.credentials(&registry).await.unwrap().cached);
    assert_eq!(auth.fetch_count(), 2);

    // Invalidated (the registry refused it): fetched again.
    clock.set(moto_expiry() - Duration::from_secs(3600));
    assert!(auth.credentials(&registry).await.unwrap().cached);
    auth.invalidate(&registry).await;
    assert!(!auth.credentials(&registry).await.unwrap().cached);
    assert_eq!(auth.fetch_count(), 3);
}

#[tokio::test]
async fn an_unreachable_endpoint_is_a_transient_error_without_secrets() {
    let auth = EcrAuth::new(sdk().await).with_endpoint("http://127.0.0.1:9");
    let registry = EcrRegistry::parse("123456789012.dkr.ecr.us-east-1.amazonaws.com").unwrap();
    let e = auth.credentials(&registry).await.unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("ecr:GetAuthorizationToken"), "{msg}");
    assert!(
        msg.contains("123456789012.dkr.ecr.us-east-1.amazonaws.com"),
        "{msg}"
    );
    assert!(!msg.contains("secret"), "{msg}");
    assert!(e.is_transient(), "{msg}");
}
