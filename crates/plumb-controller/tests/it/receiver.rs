//! Receiver end to end: the reconciler publishes the webhook path, the webhook server rejects
//! bad signatures and turns a signed GitHub push into an applied commit within 5 seconds while
//! the GitRepository polls hourly. Real API server, controllers in-process.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, PostParams};
use plumb_api::{GitRepository, Kustomization, Receiver};
use plumb_controller::receiver;
use plumb_testing::git::{GitHttpServer, HttpAuth, TestRepo};
use plumb_testing::{ControlPlane, TestNamespace, wait};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::{admin_config, install_crds, ready, start_plumb, wait_obj};

/// POSTs `body` to `http://addr{path}`; returns the status code and the body.
pub(crate) async fn post(
    addr: std::net::SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let (code, _, body) = post_from([127, 0, 0, 1], addr, path, headers, body).await;
    (code, body)
}

/// [`post`] from the local address `from` (any of 127.0.0.0/8): the status code, the
/// response head and the body.
async fn post_from(
    from: [u8; 4],
    addr: std::net::SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String, String) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind((from, 0).into()).unwrap();
    let mut s = socket.connect(addr).await.unwrap();
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).await.unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).await.unwrap();
    let code = resp
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
    (code, head.to_string(), body.to_string())
}

/// Serves webhooks for `ctx` with `opts` on a free local port.
pub(crate) async fn start_receiver(
    ctx: &std::sync::Arc<plumb_controller::Context>,
    opts: receiver::ServerOptions,
) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(receiver::serve_with(
        ctx.clone(),
        listener,
        opts,
        std::future::pending(),
    ));
    addr
}

fn configmap(v: &str) -> String {
    format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: pushed\ndata:\n  v: \"{v}\"\n")
}

#[tokio::test(flavor = "multi_thread")]
async fn signed_push_is_applied_within_five_seconds() {
    let info = ControlPlane::shared().unwrap();
    let client = info.admin_client().await.unwrap();
    install_crds(&client).await;
    let ns = TestNamespace::create(info, "e2e-rcv").await.unwrap();
    let n = ns.name().to_string();
    let pp = PostParams::default();

    let tmp = tempfile::tempdir().unwrap();
    let repo = TestRepo::init(&tmp.path().join("repos"), "fleet");
    repo.commit(
        &[
            ("deploy/kustomization.yaml", "resources:\n- cm.yaml\n"),
            ("deploy/cm.yaml", &configmap("1")),
        ],
        "initial",
    );
    let root = tmp.path().join("repos");
    let server = std::thread::spawn(move || GitHttpServer::start(&root, HttpAuth::Anonymous))
        .join()
        .unwrap();
    let ctx = start_plumb(info, &n, &tmp.path().join("storage")).await;
    let hook_addr = start_receiver(
        &ctx,
        receiver::ServerOptions {
            body_timeout: Duration::from_secs(2),
            ..receiver::ServerOptions::new(Some(n.clone()))
        },
    )
    .await;

    let token = "s3cr3t-token";
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "webhook-token", "namespace": n},
        "stringData": {"token": token}
    }))
    .unwrap();
    Api::<Secret>::namespaced(client.clone(), &n)
        .create(&pp, &secret)
        .await
        .unwrap();
    let git_api: Api<GitRepository> = Api::namespaced(client.clone(), &n);
    git_api
        .create(
            &pp,
            &serde_json::from_value(json!({
                "metadata": {"name": "fleet", "namespace": n},
                "spec": {"url": server.url("fleet"), "interval": "1h", "ref": {"branch": "master"}}
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    let ks_api: Api<Kustomization> = Api::namespaced(client.clone(), &n);
    ks_api
        .create(
            &pp,
            &serde_json::from_value(json!({
                "metadata": {"name": "app", "namespace": n, "labels": {"team": "a"}},
                "spec": {"interval": "1h", "path": "./deploy", "prune": true, "targetNamespace": n,
                         "sourceRef": {"kind": "GitRepository", "name": "fleet"}}
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    let rcv_api: Api<Receiver> = Api::namespaced(client.clone(), &n);
    for (name, spec) in [
        (
            "github",
            json!({"type": "github", "events": ["push"], "secretRef": {"name": "webhook-token"},
                   "resources": [{"kind": "GitRepository", "name": "fleet"}]}),
        ),
        (
            "by-label",
            json!({"type": "generic-hmac", "secretRef": {"name": "webhook-token"},
                   "resources": [{"kind": "Kustomization", "name": "*", "matchLabels": {"team": "a"}}]}),
        ),
        (
            "filtered",
            json!({"type": "generic", "secretRef": {"name": "webhook-token"},
                   "resourceFilter": "true",
                   "resources": [{"kind": "GitRepository", "name": "fleet"}]}),
        ),
        (
            "no-secret",
            json!({"type": "generic", "secretRef": {"name": "absent"},
                   "resources": [{"kind": "GitRepository", "name": "fleet"}]}),
        ),
    ] {
        rcv_api
            .create(
                &pp,
                &serde_json::from_value(
                    json!({"metadata": {"name": name, "namespace": n}, "spec": spec}),
                )
                .unwrap(),
            )
            .await
            .unwrap();
    }

    wait_obj(&ks_api, "app", "first apply", |v| {
        ready(v.get("status")).is_some_and(|r| r.0 == "True")
    })
    .await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &n);
    assert_eq!(cms.get("pushed").await.unwrap().data.unwrap()["v"], "1");

    // The reconciler publishes Flux's path and Ready; a missing Secret is reported.
    let v = wait_obj(&rcv_api, "github", "receiver ready", |v| {
        ready(v.get("status")).is_some_and(|r| r.0 == "True")
    })
    .await;
    let github_rcv = rcv_api.get("github").await.unwrap();
    let path = github_rcv.webhook_path(token);
    assert_eq!(v["status"]["webhookPath"], path.as_str());
    assert!(ready(v.get("status")).unwrap().2.contains(&path));
    let v = wait_obj(&rcv_api, "no-secret", "receiver without token", |v| {
        ready(v.get("status")).is_some_and(|r| r.0 == "False")
    })
    .await;
    let r = ready(v.get("status")).unwrap();
    assert_eq!(r.1, receiver::REASON_TOKEN_NOT_FOUND);
    assert!(r.2.contains("absent"), "{r:?}");
    assert!(v["status"].get("webhookPath").is_none());
    let events: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(client.clone(), &n);
    wait::poll("TokenNotFound event", Duration::from_secs(30), || {
        let events = events.clone();
        async move {
            let list = events.list(&Default::default()).await.ok()?;
            list.items
                .iter()
                .any(|e| {
                    e.involved_object.name.as_deref() == Some("no-secret")
                        && e.reason.as_deref() == Some(receiver::REASON_TOKEN_NOT_FOUND)
                        && e.type_.as_deref() == Some("Warning")
                })
                .then_some(())
        }
    })
    .await
    .unwrap();
    // A CEL resource filter is served (tests/it/cel.rs): the Receiver is Ready with a path.
    let v = wait_obj(&rcv_api, "filtered", "receiver with resourceFilter", |v| {
        ready(v.get("status")).is_some_and(|r| r.0 == "True")
    })
    .await;
    assert!(v["status"]["webhookPath"].is_string(), "{v:#}");

    // Bad and missing signatures are rejected and counted; unknown paths are 404.
    let body = r#"{"ref":"refs/heads/master"}"#;
    let before = receiver::rejected_total();
    let (code, _) = post(hook_addr, &path, &[("x-github-event", "push")], body).await;
    assert_eq!(code, 401);
    let wrong = receiver::sign("sha256", "not-the-token", body.as_bytes()).unwrap();
    let (code, _) = post(
        hook_addr,
        &path,
        &[("x-github-event", "push"), ("x-hub-signature-256", &wrong)],
        body,
    )
    .await;
    assert_eq!(code, 403);
    assert_eq!(receiver::rejected_total(), before + 2);
    let (code, _) = post(hook_addr, "/hook/0000", &[], body).await;
    assert_eq!(code, 404);
    let sig = receiver::sign("sha256", token, body.as_bytes()).unwrap();
    let (code, text) = post(
        hook_addr,
        &path,
        &[("x-github-event", "ping"), ("x-hub-signature-256", &sig)],
        body,
    )
    .await;
    assert_eq!((code, text.trim()), (200, "pong"));
    // An oversized body is refused from its declared length, before it is read.
    let mut s = tokio::net::TcpStream::connect(hook_addr).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n\r\n",
        receiver::MAX_BODY_BYTES + 1
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).await.unwrap();
    assert!(resp.starts_with("HTTP/1.1 413"), "{resp}");
    // A body that stops coming is answered 408 at the body timeout.
    let mut s = tokio::net::TcpStream::connect(hook_addr).await.unwrap();
    let head = format!("POST {path} HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n{{");
    s.write_all(head.as_bytes()).await.unwrap();
    let t0 = Instant::now();
    let mut resp = String::new();
    s.read_to_string(&mut resp).await.unwrap();
    assert!(resp.starts_with("HTTP/1.1 408"), "{resp}");
    assert!(t0.elapsed() < Duration::from_secs(4), "{:?}", t0.elapsed());

    // A push, then a signed webhook: applied within 5 seconds though the source polls hourly.
    let sha = repo.commit(&[("deploy/cm.yaml", &configmap("2"))], "push");
    let t0 = Instant::now();
    let (code, text) = post(
        hook_addr,
        &path,
        &[("x-github-event", "push"), ("x-hub-signature-256", &sig)],
        body,
    )
    .await;
    assert_eq!(code, 200, "{text}");
    let applied = wait::poll("pushed commit applied", Duration::from_secs(5), || {
        let cms = cms.clone();
        async move {
            let cm = cms.get("pushed").await.ok()?;
            (cm.data?.get("v")? == "2").then_some(())
        }
    })
    .await;
    let elapsed = t0.elapsed();
    assert!(
        applied.is_ok(),
        "not applied within 5s: {:?}",
        ks_api.get("app").await.unwrap().status
    );
    eprintln!("push through the receiver applied in {elapsed:?}");
    // The status follows the apply.
    let want = format!("master@sha1:{sha}");
    wait_obj(&ks_api, "app", "status names the pushed revision", |v| {
        v["status"]["lastAppliedRevision"] == want.as_str()
    })
    .await;

    // generic-hmac with a label selector annotates every matching Kustomization.
    let path2 = rcv_api.get("by-label").await.unwrap().webhook_path(token);
    wait_obj(&rcv_api, "by-label", "by-label ready", |v| {
        v["status"]["webhookPath"] == path2.as_str()
    })
    .await;
    let sig = receiver::sign("sha512", token, b"{}").unwrap();
    let (code, text) = post(hook_addr, &path2, &[("x-signature", &sig)], "{}").await;
    assert_eq!((code, text.trim()), (200, "1 reconcile(s) requested"));
    let ks = ks_api.get("app").await.unwrap();
    assert!(
        ks.metadata
            .annotations
            .unwrap()
            .contains_key("reconcile.fluxcd.io/requestedAt")
    );

    // Rotating the token moves the path at once (not at the 10m interval); the old one is 404.
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &n);
    secrets
        .patch(
            "webhook-token",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({"stringData": {"token": "rotated"}})),
        )
        .await
        .unwrap();
    let new_path = github_rcv.webhook_path("rotated");
    wait::poll(
        "path follows the rotated token",
        Duration::from_secs(15),
        || {
            let rcv_api = rcv_api.clone();
            let new_path = new_path.clone();
            async move {
                let r = rcv_api.get("github").await.ok()?;
                (r.status?.webhook_path? == new_path).then_some(())
            }
        },
    )
    .await
    .unwrap();
    let sig = receiver::sign("sha256", "rotated", body.as_bytes()).unwrap();
    let headers = [
        ("x-github-event", "push"),
        ("x-hub-signature-256", sig.as_str()),
    ];
    assert_eq!(post(hook_addr, &path, &headers, body).await.0, 404);
    // The server's index follows the status through its watch, a moment later.
    wait::poll("the new path is served", Duration::from_secs(5), || async {
        (post(hook_addr, &new_path, &headers, body).await.0 == 200).then_some(())
    })
    .await
    .unwrap();

    ns.delete().await.unwrap();
}

/// Kubernetes API requests `ctx`'s client made so far.
fn api_requests(ctx: &plumb_controller::Context) -> f64 {
    ctx.metrics
        .encode()
        .lines()
        .filter(|l| l.starts_with("plumb_kube_api_requests_total{"))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

/// The webhook server turns hostile clients away without the API server: an unknown path
/// is 404 from the watch-kept index (no API request, body unread), a client over its rate
/// limit gets 429 while another is served, a slow head is cut at the header timeout, and
/// connections past the cap wait until a slot frees.
#[tokio::test(flavor = "multi_thread")]
async fn webhook_server_turns_hostile_clients_away() {
    let info = ControlPlane::shared().unwrap();
    let admin = info.admin_client().await.unwrap();
    install_crds(&admin).await;
    let ns = TestNamespace::create(info, "rcv-hostile").await.unwrap();
    let n = ns.name().to_string();
    // A context of its own, running no controllers: its request counter is the server's.
    let cfg = admin_config(info).await;
    let metrics = std::sync::Arc::new(plumb_controller::metrics::Metrics::new());
    let client =
        plumb_controller::client::build(cfg.clone(), Default::default(), metrics.clone()).unwrap();
    let ctx = plumb_controller::Context::with_metrics(client, cfg, Default::default(), metrics);
    let header_timeout = Duration::from_secs(1);
    let opts = receiver::ServerOptions {
        rate_limit: receiver::RateLimit {
            burst: 5,
            per_second: 0.5,
            max_clients: 100,
        },
        header_timeout,
        max_connections: 2,
        ..receiver::ServerOptions::new(Some(n.clone()))
    };
    let addr = start_receiver(&ctx, opts).await;
    // Ready once the first list of Receivers is in (503 before).
    wait::poll("the index is ready", Duration::from_secs(30), || async {
        let (code, _, _) = post_from([127, 0, 0, 9], addr, "/hook/warmup", &[], "{}").await;
        (code == 404).then_some(())
    })
    .await
    .unwrap();

    // The index's LIST and WATCH are all the API requests the server makes.
    wait::poll("the index watches", Duration::from_secs(10), || async {
        ctx.metrics
            .encode()
            .contains("verb=\"WATCH\"")
            .then_some(())
    })
    .await
    .unwrap();
    let before = api_requests(&ctx);
    let t0 = Instant::now();
    for i in 0..5 {
        // A 1 MiB body is declared and never sent: the answer cannot have waited for it.
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let head = format!(
            "POST /hook/{i:064x} HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n\r\n",
            1 << 20
        );
        s.write_all(head.as_bytes()).await.unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).await.unwrap();
        assert!(resp.starts_with("HTTP/1.1 404"), "{resp}");
        assert!(resp.ends_with("no receiver for this path\n"), "{resp}");
    }
    let five = t0.elapsed();
    eprintln!("5 calls to unknown paths answered 404 in {five:?}");
    assert!(five < Duration::from_secs(2), "{five:?}");
    assert_eq!(
        api_requests(&ctx),
        before,
        "an unknown path made an API request"
    );
    // Over its burst, 127.0.0.1 is refused with a Retry-After; 127.0.0.2 is still served.
    let (code, head, _) = post_from([127, 0, 0, 1], addr, "/hook/a", &[], "{}").await;
    assert_eq!(code, 429, "{head}");
    assert!(
        head.to_ascii_lowercase().contains("retry-after: 2"),
        "{head}"
    );
    let (code, _, _) = post_from([127, 0, 0, 2], addr, "/hook/a", &[], "{}").await;
    assert_eq!(code, 404);

    // A slow head is cut at the header timeout.
    let open = plumb_testing::slow::slowloris(addr, "/hook/a", Duration::from_secs(10))
        .await
        .expect("the slow client was never disconnected");
    assert!(
        open >= header_timeout && open < header_timeout * 3,
        "{open:?}"
    );
    // Two silent connections hold both slots: a third client waits for the header timeout
    // to free one, then is served.
    let _silent: Vec<_> =
        futures::future::join_all((0..2).map(|_| tokio::net::TcpStream::connect(addr))).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let t0 = Instant::now();
    let (code, _, _) = post_from([127, 0, 0, 3], addr, "/hook/a", &[], "{}").await;
    let waited = t0.elapsed();
    assert_eq!(code, 404);
    assert!(
        waited >= header_timeout / 2 && waited < header_timeout * 3,
        "{waited:?}"
    );
    assert_eq!(api_requests(&ctx), before);
    ns.delete().await.unwrap();
}
