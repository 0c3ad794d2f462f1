//! `plumb eks token` against moto: credentials come from aws-config's default chain through a
//! web-identity token file (IRSA), and the printed token replays as GetCallerIdentity.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use plumb_testing::moto::MotoServer;

const ROLE: &str = "arn:aws:iam::123456789012:role/plumb-hub";

fn plumb(moto: &MotoServer, home: &std::path::Path, extra: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_plumb"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("AWS_CONFIG_FILE", home.join("config"))
        .env("AWS_SHARED_CREDENTIALS_FILE", home.join("credentials"))
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_ENDPOINT_URL", moto.url());
    for (k, v) in extra {
        cmd.env(k, v);
    }
    cmd
}

#[test]
fn token_via_web_identity_replays_as_the_assumed_role() {
    let moto = MotoServer::start().unwrap();
    let home = tempfile::tempdir().unwrap();
    let token_file = home.path().join("web-identity-token");
    std::fs::write(
        &token_file,
        "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2EifQ.c2ln",
    )
    .unwrap();

    let out = plumb(
        &moto,
        home.path(),
        &[
            ("AWS_WEB_IDENTITY_TOKEN_FILE", token_file.to_str().unwrap()),
            ("AWS_ROLE_ARN", ROLE),
            ("AWS_ROLE_SESSION_NAME", "plumb-test"),
            ("AWS_REGION", "eu-west-1"),
        ],
    )
    .args(["eks", "token", "--cluster-name", "spoke-1"])
    .output()
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "plumb eks token failed: {stderr}");
    let ec: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(ec["kind"], "ExecCredential");
    assert_eq!(ec["apiVersion"], "client.authentication.k8s.io/v1beta1");
    assert!(
        ec["status"]["expirationTimestamp"]
            .as_str()
            .unwrap()
            .ends_with('Z')
    );
    let token = ec["status"]["token"].as_str().unwrap();
    let url = plumb_eks::token_url(token).expect("a k8s-aws-v1 token");
    assert!(
        url.starts_with(&format!("{}/?Action=GetCallerIdentity", moto.url())),
        "{url}"
    );
    assert!(url.contains("eu-west-1%2Fsts%2Faws4_request"), "{url}");
    // Temporary credentials from AssumeRoleWithWebIdentity carry a session token.
    assert!(url.contains("X-Amz-Security-Token="), "{url}");

    let response = moto.replay_presigned(&url, "spoke-1").unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(
        response.contains("assumed-role/plumb-hub/plumb-test"),
        "the token must be signed with the web-identity role: {response}"
    );
}

#[test]
fn token_without_credentials_fails_clearly() {
    let moto = MotoServer::start().unwrap();
    let home = tempfile::tempdir().unwrap();
    let out = plumb(&moto, home.path(), &[("AWS_REGION", "eu-west-1")])
        .args(["eks", "token", "--cluster-name", "spoke-2"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("spoke-2") && stderr.contains("credentials"),
        "{stderr}"
    );
}

#[test]
fn kubeconfig_uses_describe_cluster_and_plumb_token() {
    let moto = MotoServer::start().unwrap();
    let home = tempfile::tempdir().unwrap();
    let creds = [
        ("AWS_ACCESS_KEY_ID", "AKIDTESTTESTTEST"),
        ("AWS_SECRET_ACCESS_KEY", "not-a-secret"),
        ("AWS_REGION", "eu-west-1"),
    ];
    // Create the cluster in moto through its JSON API (the EKS REST call the SDK would make).
    let body = r#"{"name":"spoke-3","version":"1.33","roleArn":"arn:aws:iam::123456789012:role/eks","resourcesVpcConfig":{"subnetIds":["subnet-1"]}}"#;
    let host = moto.url().trim_start_matches("http://").to_string();
    let mut s = TcpStream::connect(&host).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "POST /clusters HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nAuthorization: AWS4-HMAC-SHA256 Credential=AKIDTESTTESTTEST/20260101/eu-west-1/eks/aws4_request, SignedHeaders=host, Signature=0\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut created = String::new();
    s.read_to_string(&mut created).unwrap();
    assert!(created.starts_with("HTTP/1.1 200"), "{created}");

    let out = plumb(&moto, home.path(), &creds)
        .args(["eks", "kubeconfig", "--cluster-name", "spoke-3"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let yaml = String::from_utf8(out.stdout).unwrap();
    assert!(yaml.contains("server: https://"), "{yaml}");
    assert!(yaml.contains("certificate-authority-data:"), "{yaml}");
    assert!(
        yaml.contains("- token") && yaml.contains("spoke-3"),
        "{yaml}"
    );
    assert!(
        yaml.contains("client.authentication.k8s.io/v1beta1"),
        "{yaml}"
    );

    let out = plumb(&moto, home.path(), &creds)
        .args(["eks", "kubeconfig", "--cluster-name", "missing"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("missing") && stderr.contains("ResourceNotFoundException"),
        "{stderr}"
    );
}
