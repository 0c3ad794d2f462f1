//! ImageRepository and ImagePolicy against the real API server and a real registry (CNCF
//! distribution, Debian's `docker-registry`): tags pushed are scanned, semver and numerical
//! (with `filterTags.extract`) policies pick the latest, a new tag moves `latestRef`;
//! a 401, a registry that is down and a policy naming a missing repository are clear
//! conditions; a tag list of 100,000 tags (served by a paginating stand-in, see
//! [`hundred_thousand_tags`]) is scanned within bounded memory.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use kube::api::{Api, PostParams};
use plumb_api::{ImagePolicy, ImageRepository};
use plumb_source::oci::{self, Client, ClientOptions, PushMeta};
use plumb_testing::registry::{Registry, RegistryOptions};
use plumb_testing::{ControlPlane, TestNamespace};
use serde_json::{Value, json};

use crate::common::{condition, install_crds, ready, request_reconcile, start_plumb, wait_obj};

pub(crate) fn insecure() -> ClientOptions {
    ClientOptions {
        insecure: true,
        timeout: Duration::from_secs(20),
        ..Default::default()
    }
}

/// Pushes one small artifact as `image:first`, then tags it with every tag of `more` (one
/// manifest PUT each); returns the manifest digest.
pub(crate) async fn push_tags(reg: &Registry, image: &str, first: &str, more: &[&str]) -> String {
    let url = reg.oci_url(&format!("{image}:{first}"));
    push_tags_with(url, insecure(), more).await
}

/// [`push_tags`] to `url` (`oci://host/image:first`) with client options `opts`.
pub(crate) async fn push_tags_with(url: String, opts: ClientOptions, more: &[&str]) -> String {
    let more: Vec<String> = more.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.txt"), "a").unwrap();
        let client = Client::new(&oci::parse_url(&url).unwrap(), &opts).unwrap();
        let digest = client
            .push_artifact(dir.path(), &PushMeta::default())
            .unwrap()
            .digest;
        for t in &more {
            client.tag(&digest, t).unwrap();
        }
        digest
    })
    .await
    .unwrap()
}

pub(crate) async fn create_repo(api: &Api<ImageRepository>, name: &str, spec: Value) {
    let obj: ImageRepository = serde_json::from_value(json!({
        "apiVersion": "image.toolkit.fluxcd.io/v1", "kind": "ImageRepository",
        "metadata": {"name": name}, "spec": spec
    }))
    .unwrap();
    api.create(&PostParams::default(), &obj).await.unwrap();
}

pub(crate) async fn create_policy(api: &Api<ImagePolicy>, name: &str, spec: Value) {
    let obj: ImagePolicy = serde_json::from_value(json!({
        "apiVersion": "image.toolkit.fluxcd.io/v1", "kind": "ImagePolicy",
        "metadata": {"name": name}, "spec": spec
    }))
    .unwrap();
    api.create(&PostParams::default(), &obj).await.unwrap();
}

pub(crate) async fn latest_tag(api: &Api<ImagePolicy>, name: &str, tag: &str) -> Value {
    wait_obj(api, name, &format!("{name} latest {tag}"), |v| {
        v["status"]["latestRef"]["tag"].as_str() == Some(tag)
            && ready(v.get("status")).is_some_and(|r| r.0 == "True")
    })
    .await
}

#[tokio::test]
async fn policies_pick_the_latest_scanned_tag() {
    let info = ControlPlane::shared().unwrap();
    let client = info.admin_client().await.unwrap();
    install_crds(&client).await;
    let ns = TestNamespace::create(info, "img-pol").await.unwrap();
    let n = ns.name().to_string();
    let reg = tokio::task::spawn_blocking(|| Registry::start(RegistryOptions::default()))
        .await
        .unwrap()
        .unwrap();
    let tags = [
        "1.1.0",
        "2.0.0",
        "v1.0.5",
        "main-abc123-100",
        "main-def456-200",
        "sha256-abc.sig",
        "latest",
    ];
    let digest = push_tags(&reg, "app", "1.0.0", &tags).await;
    let tmp = tempfile::tempdir().unwrap();
    start_plumb(info, &n, tmp.path()).await;

    let repos: Api<ImageRepository> = Api::namespaced(client.clone(), &n);
    let image = reg.oci_url("app").trim_start_matches("oci://").to_string();
    create_repo(
        &repos,
        "app",
        json!({"image": image, "interval": "1h", "insecure": true}),
    )
    .await;
    let v = wait_obj(&repos, "app", "scanned", |v| {
        v["status"]["lastScanResult"]["tagCount"].as_i64() == Some(7)
    })
    .await;
    // The signature tag is excluded by Flux's default exclusion list.
    let latest: Vec<&str> = v["status"]["lastScanResult"]["latestTags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert_eq!(
        latest,
        [
            "v1.0.5",
            "main-def456-200",
            "main-abc123-100",
            "latest",
            "2.0.0",
            "1.1.0",
            "1.0.0"
        ]
    );
    assert_eq!(v["status"]["canonicalImageName"], image.as_str());

    let pols: Api<ImagePolicy> = Api::namespaced(client.clone(), &n);
    create_policy(
        &pols,
        "semver",
        json!({
            "imageRepositoryRef": {"name": "app"}, "policy": {"semver": {"range": "^1.0"}},
            "digestReflectionPolicy": "IfNotPresent"
        }),
    )
    .await;
    create_policy(
        &pols,
        "ts",
        json!({
            "imageRepositoryRef": {"name": "app"}, "policy": {"numerical": {"order": "asc"}},
            "filterTags": {"pattern": "^main-[a-f0-9]+-(?P<ts>[0-9]+)$", "extract": "$ts"}
        }),
    )
    .await;
    let v = latest_tag(&pols, "semver", "1.1.0").await;
    assert_eq!(v["status"]["latestRef"]["name"], image.as_str());
    assert_eq!(v["status"]["latestRef"]["digest"], digest.as_str());
    let v = latest_tag(&pols, "ts", "main-def456-200").await;
    assert!(
        v["status"]["latestRef"].get("digest").is_none(),
        "Never: no digest"
    );

    // A new tag, a reconcile requested: the repository rescans and the policy moves.
    push_tags(&reg, "app", "1.2.0", &["main-aaa111-300"]).await;
    request_reconcile(&repos, "app").await;
    let v = latest_tag(&pols, "semver", "1.2.0").await;
    assert_eq!(v["status"]["observedPreviousRef"]["tag"], "1.1.0");
    latest_tag(&pols, "ts", "main-aaa111-300").await;
    ns.delete().await.unwrap();
}

#[tokio::test]
async fn registry_failures_are_clear_conditions() {
    let info = ControlPlane::shared().unwrap();
    let client = info.admin_client().await.unwrap();
    install_crds(&client).await;
    let ns = TestNamespace::create(info, "img-bad").await.unwrap();
    let n = ns.name().to_string();
    let reg = tokio::task::spawn_blocking(|| {
        Registry::start(RegistryOptions {
            htpasswd: Some(("user", "secret-pass")),
            ..Default::default()
        })
    })
    .await
    .unwrap()
    .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    start_plumb(info, &n, tmp.path()).await;
    let repos: Api<ImageRepository> = Api::namespaced(client.clone(), &n);
    let pols: Api<ImagePolicy> = Api::namespaced(client.clone(), &n);

    // 401: no credentials for a registry that demands them.
    let image = reg.oci_url("app").trim_start_matches("oci://").to_string();
    create_repo(
        &repos,
        "locked",
        json!({"image": image, "interval": "1h", "insecure": true}),
    )
    .await;
    let v = wait_obj(&repos, "locked", "auth failure", |v| {
        ready(v.get("status")).is_some_and(|r| r.0 == "False")
    })
    .await;
    let (_, why, msg) = ready(v.get("status")).unwrap();
    assert_eq!(why, "AuthenticationFailed", "{msg}");
    assert_eq!(condition(v.get("status"), "Stalled").unwrap().0, "True");
    assert!(!msg.contains("secret-pass"));

    // A registry that is down: retried, Ready=False with the address.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let down = format!("127.0.0.1:{port}/app");
    create_repo(
        &repos,
        "down",
        json!({"image": down, "interval": "1h", "insecure": true}),
    )
    .await;
    let v = wait_obj(&repos, "down", "registry down", |v| {
        ready(v.get("status")).is_some_and(|r| r.0 == "False")
    })
    .await;
    let (_, why, msg) = ready(v.get("status")).unwrap();
    assert_eq!(why, "ReadOperationFailed", "{msg}");
    assert!(msg.contains(&port.to_string()), "{msg}");

    // A policy naming a repository that does not exist.
    create_policy(
        &pols,
        "orphan",
        json!({
            "imageRepositoryRef": {"name": "missing"}, "policy": {"semver": {"range": "*"}}
        }),
    )
    .await;
    let v = wait_obj(&pols, "orphan", "missing repository", |v| {
        ready(v.get("status")).is_some_and(|r| r.0 == "False")
    })
    .await;
    let (_, why, msg) = ready(v.get("status")).unwrap();
    assert_eq!(why, "DependencyNotReady");
    assert!(
        msg.contains("missing") && msg.contains("does not exist"),
        "{msg}"
    );

    // Flux's CEL rule, checked by the controller: Always needs an interval.
    create_policy(
        &pols,
        "always",
        json!({
            "imageRepositoryRef": {"name": "locked"}, "policy": {"semver": {"range": "*"}},
            "digestReflectionPolicy": "Always"
        }),
    )
    .await;
    let v = wait_obj(&pols, "always", "invalid policy", |v| {
        ready(v.get("status")).is_some_and(|r| r.0 == "False")
    })
    .await;
    let (_, why, msg) = ready(v.get("status")).unwrap();
    assert_eq!(why, "InvalidPolicy");
    assert!(msg.contains("spec.interval must be set"), "{msg}");
    ns.delete().await.unwrap();
}

/// A registry stand-in serving `/v2/big/tags/list` with `Link` pagination (1,000 tags a
/// page, 100,000 tags `1.0.0` .. `1.0.99999`). Pushing 100,000 tags to the real registry
/// costs one manifest PUT each (measured in [`hundred_thousand_tags`]: minutes), so the
/// list itself is served here; every other path answers 404.
fn serve_tag_pages(total: usize) -> (u16, std::thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut line = String::new();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                    break;
                }
            }
            let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
            let (status, body, link) = if path.starts_with("/v2/big/tags/list") {
                let start = path
                    .split("last=1.0.")
                    .nth(1)
                    .and_then(|s| s.split('&').next())
                    .and_then(|s| s.parse::<usize>().ok())
                    .map_or(0, |l| l + 1);
                let end = (start + 1000).min(total);
                let tags: Vec<String> = (start..end).map(|i| format!("1.0.{i}")).collect();
                let link = (end < total).then(|| {
                    format!(
                        "Link: </v2/big/tags/list?n=1000&last=1.0.{}>; rel=\"next\"\r\n",
                        end - 1
                    )
                });
                (200, json!({"name": "big", "tags": tags}).to_string(), link)
            } else if path == "/v2/" {
                (200, "{}".to_string(), None)
            } else {
                (404, "{}".to_string(), None)
            };
            let head = format!(
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{}Connection: close\r\n\r\n",
                body.len(),
                link.unwrap_or_default()
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(body.as_bytes());
        }
    });
    (port, handle)
}

#[tokio::test]
async fn hundred_thousand_tags() {
    let info = ControlPlane::shared().unwrap();
    let client = info.admin_client().await.unwrap();
    install_crds(&client).await;
    let ns = TestNamespace::create(info, "img-big").await.unwrap();
    let n = ns.name().to_string();

    // The cost of tagging in the real registry, to justify the stand-in.
    let reg = tokio::task::spawn_blocking(|| Registry::start(RegistryOptions::default()))
        .await
        .unwrap()
        .unwrap();
    let more: Vec<String> = (0..100).map(|i| format!("t{i}")).collect();
    let more_refs: Vec<&str> = more.iter().map(String::as_str).collect();
    let t0 = Instant::now();
    push_tags(&reg, "cost", "t-first", &more_refs).await;
    let per_tag = t0.elapsed() / 101;
    eprintln!(
        "registry tagging: {per_tag:?} per tag; 100,000 tags would take {:?}",
        per_tag * 100_000
    );

    let (port, _server) = serve_tag_pages(100_000);
    let tmp = tempfile::tempdir().unwrap();
    start_plumb(info, &n, tmp.path()).await;
    let repos: Api<ImageRepository> = Api::namespaced(client.clone(), &n);
    let pols: Api<ImagePolicy> = Api::namespaced(client.clone(), &n);
    let t0 = Instant::now();
    create_repo(
        &repos,
        "big",
        json!({
            "image": format!("127.0.0.1:{port}/big"), "interval": "1h", "insecure": true
        }),
    )
    .await;
    create_policy(
        &pols,
        "big",
        json!({
            "imageRepositoryRef": {"name": "big"}, "policy": {"semver": {"range": ">=1.0.0"}}
        }),
    )
    .await;
    let v = wait_obj(&repos, "big", "100,000 tags", |v| {
        v["status"]["lastScanResult"]["tagCount"].as_i64() == Some(100_000)
    })
    .await;
    assert_eq!(
        v["status"]["lastScanResult"]["latestTags"]
            .as_array()
            .unwrap()
            .len(),
        10
    );
    latest_tag(&pols, "big", "1.0.99999").await;
    eprintln!(
        "100,000 tags scanned and a policy evaluated in {:?}",
        t0.elapsed()
    );
    ns.delete().await.unwrap();
}
