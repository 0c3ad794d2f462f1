//! Receiver types beyond GitHub/GitLab end to end, through the real webhook server and API
//! server: `harbor` and `nexus` (token and HMAC), `generic-oidc` with a local OIDC issuer made
//! here (discovery + JWKS, an RS256 key generated in the test, CEL validations and `claims`
//! in the resource filter) and `gcr` (an ES256 "Google" key served as the certs URL). A
//! Receiver breaking Flux's spec rules is stalled, not Ready, and has no path.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use std::convert::Infallible;
use std::sync::Arc;

use base64::Engine as _;
use http_body_util::Full;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};
use plumb_api::{GitRepository, Receiver};
use plumb_controller::receiver;
use plumb_testing::jwt::{ec_key, rsa_key, sign};
use plumb_testing::{ControlPlane, TestNamespace};
use serde_json::{Value, json};

use crate::common::{install_crds, ready, start_plumb, wait_obj};
use crate::receiver::{post, start_receiver};

/// A local OIDC issuer: `/.well-known/openid-configuration` and `/jwks` with `keys`.
async fn issuer(keys: Vec<Value>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let doc = json!({"issuer": base, "jwks_uri": format!("{base}/jwks")}).to_string();
    let jwks = json!({ "keys": keys }).to_string();
    let (doc, jwks) = (Arc::new(doc), Arc::new(jwks));
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (doc, jwks) = (doc.clone(), jwks.clone());
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: hyper::Request<_>| {
                    let body = match req.uri().path() {
                        "/.well-known/openid-configuration" => doc.to_string(),
                        "/jwks" => jwks.to_string(),
                        _ => "{}".to_string(),
                    };
                    async move {
                        Ok::<_, Infallible>(hyper::Response::new(Full::new(bytes::Bytes::from(
                            body,
                        ))))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    base
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

#[tokio::test(flavor = "multi_thread")]
async fn registry_and_oidc_receivers_trigger_reconciles() {
    let info = ControlPlane::shared().unwrap();
    let client = info.admin_client().await.unwrap();
    install_crds(&client).await;
    let ns = TestNamespace::create(info, "rcv-types").await.unwrap();
    let n = ns.name().to_string();
    let pp = PostParams::default();
    let tmp = tempfile::tempdir().unwrap();
    let ctx = start_plumb(info, &n, &tmp.path().join("storage")).await;

    let oidc_key = rsa_key("ci-1");
    let iss = issuer(vec![oidc_key.jwk.clone()]).await;
    let google_key = ec_key("g-1");
    let google = issuer(vec![google_key.jwk.clone()]).await;
    let hook = start_receiver(
        &ctx,
        receiver::ServerOptions {
            google_certs_url: format!("{google}/jwks"),
            ..receiver::ServerOptions::new(Some(n.clone()))
        },
    )
    .await;

    let token = "registry-token";
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "tok", "namespace": n},
        "stringData": {"token": token, "email": "push@p.iam.gserviceaccount.com",
                       "audience": "https://hooks.example.com"}
    }))
    .unwrap();
    Api::<Secret>::namespaced(client.clone(), &n)
        .create(&pp, &secret)
        .await
        .unwrap();
    let git: Api<GitRepository> = Api::namespaced(client.clone(), &n);
    for name in ["app", "other"] {
        let repo = json!({"metadata": {"name": name, "namespace": n},
            "spec": {"url": "http://127.0.0.1:1/none.git", "interval": "1h"}});
        git.create(&pp, &serde_json::from_value(repo).unwrap())
            .await
            .unwrap();
    }
    let res = json!([{"kind": "GitRepository", "name": "app"}]);
    let oidc_provider = json!({"issuerURL": iss, "audience": "plumb",
        "variables": [{"name": "owner", "expression": "claims.repository_owner"}],
        "validations": [{"expression": "vars.owner == 'org'", "message": "wrong owner"}]});
    let rcv_api: Api<Receiver> = Api::namespaced(client.clone(), &n);
    for (name, spec) in [
        (
            "harbor",
            json!({"type": "harbor", "secretRef": {"name": "tok"}, "resources": res}),
        ),
        (
            "nexus",
            json!({"type": "nexus", "secretRef": {"name": "tok"}, "resources": res}),
        ),
        (
            "gcr",
            json!({"type": "gcr", "secretRef": {"name": "tok"}, "resources": res}),
        ),
        (
            "oidc",
            json!({"type": "generic-oidc", "oidcProviders": [oidc_provider],
                "resourceFilter": "res.metadata.name == claims.target",
                "resources": [{"kind": "GitRepository", "name": "*", "matchLabels": {}}]}),
        ),
        (
            "oidc-with-secret",
            json!({"type": "generic-oidc", "secretRef": {"name": "tok"},
                "oidcProviders": [oidc_provider], "resources": res}),
        ),
    ] {
        let obj = json!({"metadata": {"name": name, "namespace": n}, "spec": spec});
        rcv_api
            .create(&pp, &serde_json::from_value(obj).unwrap())
            .await
            .unwrap();
    }
    let mut paths = std::collections::HashMap::new();
    for name in ["harbor", "nexus", "gcr", "oidc"] {
        let v = wait_obj(&rcv_api, name, "receiver ready", |v| {
            ready(v.get("status")).is_some_and(|r| r.0 == "True")
        })
        .await;
        paths.insert(
            name,
            v["status"]["webhookPath"].as_str().unwrap().to_string(),
        );
    }
    // generic-oidc has no token: its path is salted with the empty one, as Flux.
    let oidc_rcv = rcv_api.get("oidc").await.unwrap();
    assert_eq!(paths["oidc"], oidc_rcv.webhook_path(""));
    // A spec Flux's schema refuses is stalled, not Ready, and serves no path.
    let v = wait_obj(&rcv_api, "oidc-with-secret", "invalid receiver", |v| {
        ready(v.get("status")).is_some_and(|r| r.0 == "False")
    })
    .await;
    let r = ready(v.get("status")).unwrap();
    assert_eq!(r.1, receiver::REASON_VALIDATION_FAILED);
    assert!(r.2.contains("secretRef cannot be set"), "{r:?}");
    assert!(v["status"].get("webhookPath").is_none(), "{v:#}");

    let ok = (200, "1 reconcile(s) requested".to_string());
    let call = |name: &'static str, headers: Vec<(&'static str, String)>, body: String| {
        let path = paths[name].clone();
        async move {
            let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let (code, text) = post(hook, &path, &h, &body).await;
            (code, text.trim().to_string())
        }
    };
    // harbor: Authorization must equal the token.
    let body = r#"{"type":"PUSH_ARTIFACT"}"#.to_string();
    assert_eq!(
        call(
            "harbor",
            vec![("authorization", token.into())],
            body.clone()
        )
        .await,
        ok
    );
    let (code, text) = call("harbor", vec![("authorization", "nope".into())], body).await;
    assert_eq!(code, 403);
    assert!(!text.contains(token), "{text}");
    // nexus: hex HMAC-SHA1 of the body.
    let body = r#"{"action":"CREATED","repositoryName":"docker"}"#.to_string();
    let sig = receiver::nexus_sign(token, body.as_bytes());
    assert_eq!(
        call(
            "nexus",
            vec![("x-nexus-webhook-signature", sig)],
            body.clone()
        )
        .await,
        ok
    );
    let bad = receiver::nexus_sign("other", body.as_bytes());
    assert_eq!(
        call("nexus", vec![("x-nexus-webhook-signature", bad)], body)
            .await
            .0,
        403
    );

    // generic-oidc: signature, audience, validations, and claims in the resource filter.
    let claims = |owner: &str, aud: &str, exp: i64| {
        json!({"iss": iss, "aud": aud, "sub": "repo:org/app", "repository_owner": owner,
            "target": "app", "iat": now(), "exp": exp})
    };
    let bearer = |t: String| vec![("authorization", format!("Bearer {t}"))];
    let good = sign(&oidc_key, &claims("org", "plumb", now() + 300));
    assert_eq!(call("oidc", bearer(good), "{}".into()).await, ok);
    let (code, text) = call(
        "oidc",
        bearer(sign(&oidc_key, &claims("evil", "plumb", now() + 300))),
        "{}".into(),
    )
    .await;
    assert_eq!(
        (code, text.as_str()),
        (403, "token validation failed: wrong owner")
    );
    let wrong_aud = sign(
        &oidc_key,
        &claims("org", "notification-controller", now() + 300),
    );
    assert_eq!(call("oidc", bearer(wrong_aud), "{}".into()).await.0, 403);
    let expired = sign(&oidc_key, &claims("org", "plumb", now() - 10));
    assert_eq!(call("oidc", bearer(expired), "{}".into()).await.0, 403);
    let forged = sign(&rsa_key("ci-1"), &claims("org", "plumb", now() + 300));
    assert_eq!(call("oidc", bearer(forged), "{}".into()).await.0, 403);
    assert_eq!(call("oidc", vec![], "{}".into()).await.0, 401);
    let app = git.get("app").await.unwrap();
    assert!(
        app.metadata
            .annotations
            .unwrap_or_default()
            .contains_key("reconcile.fluxcd.io/requestedAt")
    );
    let other = git.get("other").await.unwrap();
    assert!(
        !other
            .metadata
            .annotations
            .unwrap_or_default()
            .contains_key("reconcile.fluxcd.io/requestedAt"),
        "the claims filter chose 'app' only"
    );

    // gcr: a Google-signed push identity with the Secret's email and audience.
    let inner = br#"{"action":"INSERT","tag":"gcr.io/p/app:v2"}"#;
    let push = json!({"message": {"data": base64::engine::general_purpose::STANDARD.encode(inner),
        "messageId": "1", "publishTime": "2026-12-06T18:00:00Z"}})
    .to_string();
    let id = |email: &str, verified: bool| {
        sign(
            &google_key,
            &json!({"iss": "https://accounts.google.com",
            "aud": "https://hooks.example.com", "email": email, "email_verified": verified,
            "iat": now(), "exp": now() + 300}),
        )
    };
    let good = id("push@p.iam.gserviceaccount.com", true);
    assert_eq!(call("gcr", bearer(good), push.clone()).await, ok);
    let other_sa = id("someone@p.iam.gserviceaccount.com", true);
    assert_eq!(call("gcr", bearer(other_sa), push.clone()).await.0, 403);
    let unverified = id("push@p.iam.gserviceaccount.com", false);
    assert_eq!(call("gcr", bearer(unverified), push).await.0, 403);
}
