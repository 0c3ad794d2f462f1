//! Known-answer test: tokens equal botocore's presigner (what `aws eks get-token` uses) byte
//! for byte, for fixed credentials and a fixed time.
//!
//! botocore is run at test time (`scripts/install-deps.sh` installs it). Without
//! python3/botocore the test fails: a missing tool never passes the run.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use std::process::Command;
use std::time::{Duration, SystemTime};

use plumb_eks::{Credentials, mint_token, sts_endpoint};

/// Presigns GetCallerIdentity like awscli's `eks get-token`: STS client, `x-k8s-aws-id`
/// header added before signing, GET, 60 seconds, fixed signing time.
const BOTOCORE: &str = r#"
import base64, datetime, sys
import botocore.auth, botocore.session
cluster, region, endpoint, ak, sk, tok, epoch = sys.argv[1:8]
fixed = datetime.datetime.fromtimestamp(int(epoch), datetime.timezone.utc).replace(tzinfo=None)
botocore.auth.get_current_datetime = lambda *a, **k: fixed
client = botocore.session.get_session().create_client(
    "sts", region_name=region, endpoint_url=endpoint,
    aws_access_key_id=ak, aws_secret_access_key=sk, aws_session_token=(tok or None))
def add_header(request, **kwargs):
    request.headers["x-k8s-aws-id"] = cluster
client.meta.events.register("before-sign.sts.GetCallerIdentity", add_header)
url = client.generate_presigned_url("get_caller_identity", Params={}, ExpiresIn=60, HttpMethod="GET")
print("k8s-aws-v1." + base64.urlsafe_b64encode(url.encode()).decode().rstrip("="))
"#;

fn botocore_token(args: &[&str]) -> String {
    let out = match Command::new("python3")
        .arg("-c")
        .arg(BOTOCORE)
        .args(args)
        .output()
    {
        Ok(o) => o,
        Err(e) => missing(&format!("python3 cannot run: {e}")),
    };
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        if stderr.contains("No module named") {
            missing(&format!("botocore is not installed: {stderr}"));
        }
        panic!("the botocore script failed: {stderr}");
    }
    String::from_utf8(out.stdout)
        .expect("utf-8 output")
        .trim()
        .to_string()
}

fn missing(why: &str) -> ! {
    panic!("{why} (run scripts/install-deps.sh: pip install botocore)");
}

#[test]
fn tokens_match_botocore_byte_for_byte() {
    struct Case {
        cluster: &'static str,
        region: &'static str,
        endpoint: Option<&'static str>,
        session_token: Option<&'static str>,
        epoch: u64,
    }
    let cases = [
        Case {
            cluster: "prod-eu-1",
            region: "eu-west-1",
            endpoint: None,
            session_token: Some("IQoJb3JpZ2luX2VjEPT//////////wEaCXVzLWVhc3QtMSJHMEUCIQ+/=="),
            epoch: 1_767_225_600,
        },
        Case {
            cluster: "Dev_Cluster-2",
            region: "us-east-1",
            endpoint: None,
            session_token: None,
            epoch: 1_700_000_123,
        },
        Case {
            cluster: "local",
            region: "us-west-2",
            endpoint: Some("http://127.0.0.1:5000"),
            session_token: Some("short-token"),
            epoch: 1_800_000_000,
        },
    ];
    let (ak, sk) = (
        "AKIAIOSFODNN7EXAMPLE",
        "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
    );
    for c in cases {
        let endpoint = sts_endpoint(c.region, c.endpoint);
        let epoch = c.epoch.to_string();
        let expected = botocore_token(&[
            c.cluster,
            c.region,
            &endpoint,
            ak,
            sk,
            c.session_token.unwrap_or(""),
            &epoch,
        ]);
        let creds = Credentials::new(ak, sk, c.session_token.map(str::to_string), None, "kat");
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(c.epoch);
        let ours = mint_token(&creds, c.cluster, c.region, &endpoint, now).unwrap();
        assert_eq!(
            ours.as_str(),
            expected,
            "cluster {} region {}: token differs from botocore's\nours:     {:?}\nbotocore: {:?}",
            c.cluster,
            c.region,
            plumb_eks::token_url(ours.as_str()),
            plumb_eks::token_url(&expected),
        );
    }
}
