//! The registry harness starts a real `docker-registry` in each variant.

use plumb_testing::git::TlsMaterial;
use plumb_testing::registry::{Registry, RegistryOptions};

fn v2_status(args: &[&str], url: &str) -> String {
    let out = std::process::Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
        .args(args)
        .arg(format!("{url}/v2/"))
        .output()
        .expect("curl");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn plain_tls_and_htpasswd_variants_answer_v2() {
    let plain = Registry::start(RegistryOptions::default()).expect("plain registry");
    assert_eq!(v2_status(&[], &plain.base_url()), "200");

    let tls = TlsMaterial::generate();
    let ca = tls.ca_path();
    let secure = Registry::start(RegistryOptions {
        tls: Some(&tls),
        htpasswd: Some(("alice", "s3cret")),
        ..Default::default()
    })
    .expect("tls+htpasswd registry");
    assert!(secure.base_url().starts_with("https://"));
    let cacert = ["--cacert", ca.to_str().expect("utf-8 path")];
    assert_eq!(v2_status(&cacert, &secure.base_url()), "401");
    let mut with_creds = cacert.to_vec();
    with_creds.extend(["-u", "alice:s3cret"]);
    assert_eq!(v2_status(&with_creds, &secure.base_url()), "200");
    let mut wrong = cacert.to_vec();
    wrong.extend(["-u", "alice:wrong"]);
    assert_eq!(v2_status(&wrong, &secure.base_url()), "401");
}
