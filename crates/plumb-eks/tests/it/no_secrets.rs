//! No credential, signature or token ever appears in the `Debug` or `Display` of this crate's
//! types and errors.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_config::{BehaviorVersion, Region};
use aws_credential_types::provider::SharedCredentialsProvider;
use plumb_eks::{
    Credentials, EksAuth, EndpointOverrides, ManualClock, StaticToken, TOKEN_PREFIX, mint_token,
    sts_endpoint,
};

const SECRET_KEY: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
const SESSION_TOKEN: &str = "FQoGZXIvYXdzEXAMPLESESSIONTOKEN";

fn assert_clean(what: &str, shown: &str, token: &str) {
    for needle in [
        SECRET_KEY,
        SESSION_TOKEN,
        TOKEN_PREFIX,
        "X-Amz-Signature",
        "Signature=",
        token,
    ] {
        assert!(!shown.contains(needle), "{what} shows {needle:?}: {shown}");
    }
}

#[tokio::test]
async fn nothing_secret_is_printed() {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600);
    let creds = Credentials::new(
        "AKIDEXAMPLE",
        SECRET_KEY,
        Some(SESSION_TOKEN.into()),
        None,
        "t",
    );
    let token = mint_token(
        &creds,
        "c1",
        "eu-west-1",
        &sts_endpoint("eu-west-1", None),
        now,
    )
    .unwrap();
    let raw = token.as_str().to_string();
    let signature = plumb_eks::token_url(&raw)
        .unwrap()
        .rsplit_once("X-Amz-Signature=")
        .unwrap()
        .1
        .to_string();
    assert_eq!(signature.len(), 64);

    let sdk = aws_config::SdkConfig::builder()
        .region(Region::new("eu-west-1"))
        .behavior_version(BehaviorVersion::latest())
        .credentials_provider(SharedCredentialsProvider::new(creds.clone()))
        .build();
    let auth =
        EksAuth::new(sdk, EndpointOverrides::default()).with_clock(Arc::new(ManualClock::new(now)));
    let source = auth.token_source("c1", None, None).await.unwrap();
    let cached = source.token().await.unwrap();

    let expired = Credentials::new("AK", SECRET_KEY, Some(SESSION_TOKEN.into()), Some(now), "t");
    let err = mint_token(&expired, "c1", "eu-west-1", "https://sts", now).unwrap_err();

    let shown = [
        ("token Debug", format!("{token:?}")),
        ("token Display", format!("{token}")),
        ("cached token Debug", format!("{cached:?}")),
        ("source Debug", format!("{source:?}")),
        ("auth Debug", format!("{auth:?}")),
        (
            "static token Debug",
            format!("{:?}", StaticToken(raw.clone())),
        ),
        ("error Display", err.to_string()),
        ("error Debug", format!("{err:?}")),
    ];
    for (what, text) in shown {
        assert_clean(what, &text, &raw);
        assert!(
            !text.contains(&signature),
            "{what} shows the signature: {text}"
        );
    }
}
