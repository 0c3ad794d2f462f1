//! ServiceAccount credentials (STS AssumeRoleWithWebIdentity) for KMS against moto: KMS
//! works only through them (the configuration has no credentials), they are cached until
//! shortly before they expire, and failures are classified and never quote the token.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use aws_config::{BehaviorVersion, Region};
use aws_sdk_kms::primitives::Blob;
use plumb_eks::kms::{KmsDecryptor, ServiceAccountIdentity, TokenFn};
use plumb_eks::web_identity::WebIdentityCache;
use plumb_eks::{AwsErrorKind, Credentials, Error, ManualClock};
use plumb_testing::moto::MotoServer;

const REGION: &str = "eu-west-1";
const ROLE: &str = "arn:aws:iam::123456789012:role/sops-team-a";
const JWT: &str = "eyJhbGciOiJSUzI1NiJ9.not-a-real-token.sig";

/// A KMS key in moto (made with static credentials) and a data key encrypted under it.
async fn key(moto: &MotoServer) -> (String, Vec<u8>) {
    let admin = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .endpoint_url(moto.url())
        .credentials_provider(Credentials::new("AKIDADMIN", "secret", None, None, "t"))
        .load()
        .await;
    let kms = aws_sdk_kms::Client::new(&admin);
    let arn = kms
        .create_key()
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap()
        .arn
        .unwrap();
    let blob = kms
        .encrypt()
        .key_id(&arn)
        .plaintext(Blob::new(b"data-key-0123456789".to_vec()))
        .send()
        .await
        .unwrap()
        .ciphertext_blob
        .unwrap()
        .into_inner();
    (arn, blob)
}

/// The controller's configuration: moto's endpoint and no credentials at all.
async fn no_credentials(moto: &MotoServer) -> aws_config::SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .endpoint_url(moto.url())
        .no_credentials()
        .load()
        .await
}

fn token_fn(calls: Arc<AtomicU64>) -> TokenFn {
    Arc::new(move || {
        calls.fetch_add(1, Ordering::SeqCst);
        Box::pin(async { Ok(JWT.to_string()) })
    })
}

fn identity(cache: Arc<WebIdentityCache>, token: TokenFn) -> ServiceAccountIdentity {
    ServiceAccountIdentity {
        cache,
        namespace: "team-a".into(),
        service_account: "sops".into(),
        role_arn: ROLE.into(),
        token,
    }
}

#[tokio::test]
async fn kms_decrypts_with_service_account_credentials_cached_until_expiry() {
    let moto = MotoServer::start().unwrap();
    let (arn, blob) = key(&moto).await;
    let sdk = no_credentials(&moto).await;
    let controller = KmsDecryptor::new(sdk.clone());

    // Without the ServiceAccount there are no credentials: KMS cannot be called.
    let e = controller
        .decrypt(&arn, None, &[], &blob)
        .await
        .unwrap_err();
    assert_eq!(e.aws_kind(), Some(AwsErrorKind::Credentials), "{e}");

    let clock = Arc::new(ManualClock::new(SystemTime::now()));
    let cache = Arc::new(WebIdentityCache::new(sdk, Some(moto.url())).with_clock(clock.clone()));
    let calls = Arc::new(AtomicU64::new(0));
    let kms = controller.with_service_account(identity(cache.clone(), token_fn(calls.clone())));
    for _ in 0..3 {
        let plain = kms.decrypt(&arn, None, &[], &blob).await.unwrap();
        assert_eq!(plain, b"data-key-0123456789");
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "one token for three decrypts"
    );
    assert_eq!(cache.exchange_count(), 1);

    // moto's credentials last an hour: within 5 minutes of that they are renewed.
    clock.advance(Duration::from_secs(50 * 60));
    kms.decrypt(&arn, None, &[], &blob).await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    clock.advance(Duration::from_secs(6 * 60));
    kms.decrypt(&arn, None, &[], &blob).await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 2, "renewed before expiry");
    assert_eq!(cache.exchange_count(), 2);

    // Another account has its own credentials; forgetting one drops only its own.
    clock.set(SystemTime::now());
    let other = controller.with_service_account(ServiceAccountIdentity {
        service_account: "other".into(),
        ..identity(cache.clone(), token_fn(calls.clone()))
    });
    other.decrypt(&arn, None, &[], &blob).await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    cache.forget("team-a", "sops");
    kms.decrypt(&arn, None, &[], &blob).await.unwrap();
    other.decrypt(&arn, None, &[], &blob).await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn token_and_sts_failures_are_classified_and_never_quote_the_token() {
    let moto = MotoServer::start().unwrap();
    let (arn, blob) = key(&moto).await;
    let sdk = no_credentials(&moto).await;
    let controller = KmsDecryptor::new(sdk.clone());

    // The token request fails: its error comes back as it is, STS is not called.
    let cache = Arc::new(WebIdentityCache::new(sdk.clone(), Some(moto.url())));
    let denied: TokenFn = Arc::new(|| {
        Box::pin(async {
            Err(Error::WebIdentity {
                account: "team-a/sops".into(),
                role_arn: ROLE.into(),
                kind: AwsErrorKind::AccessDenied,
                code: "TokenRequestFailed".into(),
                message: "forbidden".into(),
            })
        })
    });
    let e = controller
        .with_service_account(identity(cache.clone(), denied))
        .decrypt(&arn, None, &[], &blob)
        .await
        .unwrap_err();
    assert_eq!(e.aws_kind(), Some(AwsErrorKind::AccessDenied));
    assert!(e.to_string().contains("team-a/sops"), "{e}");
    assert_eq!(cache.exchange_count(), 0);

    // STS unreachable: transient, names the account and the role, not the token.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let cache = Arc::new(WebIdentityCache::new(sdk, Some(url)));
    let calls = Arc::new(AtomicU64::new(0));
    let e = controller
        .with_service_account(identity(cache.clone(), token_fn(calls)))
        .decrypt(&arn, None, &[], &blob)
        .await
        .unwrap_err();
    assert_eq!(e.aws_kind(), Some(AwsErrorKind::Unreachable), "{e}");
    assert!(e.is_transient());
    let text = format!("{e} {e:?}");
    assert!(
        text.contains("team-a/sops") && text.contains(ROLE),
        "{text}"
    );
    assert!(!text.contains("not-a-real-token"), "{text}");
    assert_eq!(cache.exchange_count(), 0);
}
