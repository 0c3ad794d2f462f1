//! How an ImageRepository reaches its registry, against the real API server and real
//! registries (Debian's `docker-registry`): `provider: aws` with moto's ECR
//! `GetAuthorizationToken`; `certSecretRef` with the test CA on a TLS registry and `insecure`
//! on a plain-HTTP one; `proxySecretRef` through tinyproxy; and an ImagePolicy in one
//! namespace referring to an ImageRepository in another (`accessFrom`, and plumb's
//! `--no-cross-namespace-refs`).

use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, Patch, PatchParams};
use plumb_api::{ImagePolicy, ImageRepository};
use plumb_source::oci::{self, ClientOptions};
use plumb_testing::git::TlsMaterial;
use plumb_testing::httpproxy::HttpProxy;
use plumb_testing::registry::{Registry, RegistryOptions};
use plumb_testing::{ControlPlane, TestNamespace};
use serde_json::{Value, json};

use crate::common::{
    admin_config, condition, install_crds, ready, start_plumb, start_plumb_scoped, wait_obj,
};
use crate::ecr::{ECR_HOST, moto_with_registry, start_plumb_on_moto};
use crate::image_policy::{create_policy, create_repo, insecure, latest_tag, push_tags_with};
use crate::oci_verify::secret;

/// Waits until `name` is not Ready; returns (reason, message).
async fn failed(api: &Api<ImageRepository>, name: &str) -> (String, String) {
    let v = wait_obj(api, name, &format!("{name} fails"), |v| {
        ready(v.get("status")).is_some_and(|r| r.0 == "False")
    })
    .await;
    let (_, why, msg) = ready(v.get("status")).unwrap();
    (why, msg)
}

/// Waits until `name` scanned `count` tags and is Ready.
async fn scanned(api: &Api<ImageRepository>, name: &str, count: i64) -> Value {
    wait_obj(api, name, &format!("{name} scanned {count} tags"), |v| {
        v["status"]["lastScanResult"]["tagCount"].as_i64() == Some(count)
            && ready(v.get("status")).is_some_and(|r| r.0 == "True")
    })
    .await
}

#[tokio::test]
async fn ecr_provider_scans_with_a_moto_token() {
    let info = ControlPlane::shared().unwrap();
    let client = info.admin_client().await.unwrap();
    install_crds(&client).await;
    let ns = TestNamespace::create(info, "img-ecr").await.unwrap();
    let n = ns.name().to_string();
    // The registry accepts exactly the credentials GetAuthorizationToken hands out.
    let (moto, password, reg) = moto_with_registry().await;
    let opts = ClientOptions {
        credentials: Some(oci::Credentials {
            username: "AWS".to_string(),
            password: password.clone(),
        }),
        ..insecure()
    };
    let digest = push_tags_with(reg.oci_url("app:1.0.0"), opts, &["1.2.0", "0.9.0"]).await;

    let tmp = tempfile::tempdir().unwrap();
    let auth = start_plumb_on_moto(info, &n, tmp.path(), &moto).await;
    let port = reg.host().rsplit_once(':').unwrap().1.to_string();
    let image = format!("{ECR_HOST}:{port}/app");
    let repos: Api<ImageRepository> = Api::namespaced(client.clone(), &n);
    create_repo(
        &repos,
        "ecr",
        json!({"image": image, "interval": "1h", "insecure": true, "provider": "aws"}),
    )
    .await;
    let v = scanned(&repos, "ecr", 3).await;
    let (_, _, msg) = ready(v.get("status")).unwrap();
    assert!(!msg.contains("not supported"), "{msg}");
    assert_eq!(v["status"]["canonicalImageName"], image.as_str());

    // The policy's digest lookup uses the same cached token.
    let pols: Api<ImagePolicy> = Api::namespaced(client.clone(), &n);
    create_policy(
        &pols,
        "ecr",
        json!({"imageRepositoryRef": {"name": "ecr"}, "policy": {"semver": {"range": "^1"}},
               "digestReflectionPolicy": "IfNotPresent"}),
    )
    .await;
    let v = latest_tag(&pols, "ecr", "1.2.0").await;
    assert_eq!(v["status"]["latestRef"]["digest"], digest.as_str());
    assert_eq!(auth.fetch_count(), 1, "one GetAuthorizationToken");

    // The generic provider sends no credentials: the registry refuses.
    create_repo(
        &repos,
        "generic",
        json!({"image": image, "interval": "1h", "insecure": true}),
    )
    .await;
    let (why, msg) = failed(&repos, "generic").await;
    assert_eq!(why, "AuthenticationFailed", "{msg}");
    for name in ["ecr", "generic"] {
        let text = repos.get(name).await.unwrap();
        let text = serde_json::to_string(&text).unwrap();
        assert!(!text.contains(&password), "the token leaked: {text}");
    }
    drop(reg);
    ns.delete().await.unwrap();
}

#[tokio::test]
async fn cert_secret_ref_and_insecure() {
    let info = ControlPlane::shared().unwrap();
    let client = info.admin_client().await.unwrap();
    install_crds(&client).await;
    let ns = TestNamespace::create(info, "img-tls").await.unwrap();
    let n = ns.name().to_string();
    let tls = TlsMaterial::generate();
    let (tls_reg, plain) = std::thread::scope(|s| {
        let t = s.spawn(|| {
            Registry::start(RegistryOptions {
                tls: Some(&tls),
                ..Default::default()
            })
            .unwrap()
        });
        let p = s.spawn(|| Registry::start(RegistryOptions::default()).unwrap());
        (t.join().unwrap(), p.join().unwrap())
    });
    let opts = ClientOptions {
        insecure: false,
        ca_pem: Some(tls.ca_pem.clone().into_bytes()),
        ..insecure()
    };
    push_tags_with(tls_reg.oci_url("app:1.0.0"), opts, &["1.1.0"]).await;
    push_tags_with(plain.oci_url("app:2.0.0"), insecure(), &[]).await;
    let tmp = tempfile::tempdir().unwrap();
    start_plumb(info, &n, tmp.path()).await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &n);
    secret(&secrets, "ca", "Opaque", json!({"ca.crt": tls.ca_pem})).await;
    let other = json!({"ca.crt": tls.other_ca_pem});
    secret(&secrets, "other-ca", "Opaque", other).await;

    let repos: Api<ImageRepository> = Api::namespaced(client.clone(), &n);
    let tls_image = format!("{}/app", tls_reg.host());
    let spec = |cert: Option<&str>| {
        let mut s = json!({"image": tls_image, "interval": "1h"});
        if let Some(c) = cert {
            s["certSecretRef"] = json!({"name": c});
        }
        s
    };
    create_repo(&repos, "trusted", spec(Some("ca"))).await;
    create_repo(&repos, "no-ca", spec(None)).await;
    create_repo(&repos, "wrong-ca", spec(Some("other-ca"))).await;
    let v = scanned(&repos, "trusted", 2).await;
    assert_eq!(
        v["status"]["lastScanResult"]["latestTags"],
        json!(["1.1.0", "1.0.0"])
    );
    for name in ["no-ca", "wrong-ca"] {
        let (why, msg) = failed(&repos, name).await;
        assert!(msg.contains(&tls_reg.host()), "{name}: {msg}");
        assert!(
            msg.to_lowercase().contains("certificate"),
            "{name}: {why}: {msg}"
        );
    }

    // A plain-HTTP registry: scanned with `insecure`, refused without.
    let plain_image = format!("{}/app", plain.host());
    create_repo(
        &repos,
        "plain",
        json!({"image": plain_image, "interval": "1h", "insecure": true}),
    )
    .await;
    create_repo(
        &repos,
        "plain-secure",
        json!({"image": plain_image, "interval": "1h"}),
    )
    .await;
    scanned(&repos, "plain", 1).await;
    let (_, msg) = failed(&repos, "plain-secure").await;
    assert!(msg.contains(&plain.host()), "{msg}");
    drop((tls_reg, plain));
    ns.delete().await.unwrap();
}

#[tokio::test]
async fn proxy_secret_ref_routes_the_scan() {
    let info = ControlPlane::shared().unwrap();
    let client = info.admin_client().await.unwrap();
    install_crds(&client).await;
    let ns = TestNamespace::create(info, "img-proxy").await.unwrap();
    let n = ns.name().to_string();
    let (reg, proxy) = tokio::task::spawn_blocking(|| {
        (
            Registry::start(RegistryOptions::default()).unwrap(),
            HttpProxy::start(Some(("proxyuser", "proxy-pw-4410"))).unwrap(),
        )
    })
    .await
    .unwrap();
    push_tags_with(reg.oci_url("app:1.0.0"), insecure(), &["1.0.1"]).await;
    let tmp = tempfile::tempdir().unwrap();
    start_plumb(info, &n, tmp.path()).await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &n);
    for (name, pw) in [("proxy", "proxy-pw-4410"), ("bad-proxy", "wrong-proxy-pw")] {
        let data = json!({"address": proxy.address(), "username": "proxyuser", "password": pw});
        secret(&secrets, name, "Opaque", data).await;
    }
    let repos: Api<ImageRepository> = Api::namespaced(client.clone(), &n);
    let image = format!("{}/app", reg.host());
    for (name, s) in [("via-proxy", "proxy"), ("bad-proxy", "bad-proxy")] {
        let spec = json!({"image": image, "interval": "1h", "insecure": true,
                          "proxySecretRef": {"name": s}});
        create_repo(&repos, name, spec).await;
    }
    scanned(&repos, "via-proxy", 2).await;
    assert!(
        proxy.logged(&format!("CONNECT {} ", reg.host()), Duration::from_secs(10)),
        "the scan went through the proxy: {}",
        proxy.log()
    );
    let (_, msg) = failed(&repos, "bad-proxy").await;
    assert!(!msg.contains("wrong-proxy-pw"), "{msg}");
    assert!(
        msg.contains("407") || msg.to_lowercase().contains("proxy"),
        "{msg}"
    );
    drop((reg, proxy));
    ns.delete().await.unwrap();
}

/// Creates ImageRepository `name` in `ns` with the scope label `scope`.
async fn labelled_repo(client: &kube::Client, ns: &str, name: &str, scope: &str, spec: Value) {
    let api: Api<ImageRepository> = Api::namespaced(client.clone(), ns);
    create_repo(&api, name, spec).await;
    label(&api, name, scope).await;
}

/// Creates ImagePolicy `name` in `ns` with the scope label `scope`.
async fn labelled_policy(client: &kube::Client, ns: &str, name: &str, scope: &str, spec: Value) {
    let api: Api<ImagePolicy> = Api::namespaced(client.clone(), ns);
    create_policy(&api, name, spec).await;
    label(&api, name, scope).await;
}

async fn label<K>(api: &Api<K>, name: &str, scope: &str)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let patch = json!({"metadata": {"labels": {"plumb.test/scope": scope}}});
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
}

/// Two plumbs watching every namespace, each only the objects with its label: one with
/// Flux's defaults, one with `--no-cross-namespace-refs`.
#[tokio::test]
async fn policies_across_namespaces() {
    let info = ControlPlane::shared().unwrap();
    let client = info.admin_client().await.unwrap();
    install_crds(&client).await;
    let a = TestNamespace::create(info, "img-acl-a").await.unwrap();
    let b = TestNamespace::create(info, "img-acl-b").await.unwrap();
    let (na, nb) = (a.name().to_string(), b.name().to_string());
    let (open, closed) = (format!("{na}-open"), format!("{na}-closed"));
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let patch = json!({"metadata": {"labels": {"team": nb}}});
    namespaces
        .patch(&nb, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let reg = tokio::task::spawn_blocking(|| Registry::start(RegistryOptions::default()))
        .await
        .unwrap()
        .unwrap();
    push_tags_with(reg.oci_url("app:1.0.0"), insecure(), &[]).await;
    let tmp = tempfile::tempdir().unwrap();
    for (sel, flag) in [(&open, false), (&closed, true)] {
        let scope = plumb_controller::Scope {
            namespace: None,
            label_selector: Some(format!("plumb.test/scope={sel}")),
        };
        let storage = tmp.path().join(sel);
        start_plumb_scoped(admin_config(info).await, scope, &storage, |c| {
            c.no_cross_namespace_refs = flag;
        })
        .await;
    }
    let image = format!("{}/app", reg.host());
    let spec = json!({"image": image, "interval": "1h", "insecure": true});
    labelled_repo(&client, &na, "app", &open, spec.clone()).await;
    let cross = json!({"imageRepositoryRef": {"name": "app", "namespace": na},
                       "policy": {"semver": {"range": "*"}}});
    labelled_policy(&client, &nb, "app", &open, cross.clone()).await;
    let pols_b: Api<ImagePolicy> = Api::namespaced(client.clone(), &nb);
    let denied =
        |v: &Value| ready(v.get("status")).is_some_and(|r| r.0 == "False" && r.1 == "AccessDenied");
    let v = wait_obj(&pols_b, "app", "denied without accessFrom", denied).await;
    assert_eq!(condition(v.get("status"), "Stalled").unwrap().0, "True");
    let msg = ready(v.get("status")).unwrap().2;
    assert!(
        msg.contains(&format!("'{na}/app'")) && msg.contains(&nb),
        "{msg}"
    );

    // accessFrom selecting another label: still denied; selecting B's label: allowed.
    let repos_a: Api<ImageRepository> = Api::namespaced(client.clone(), &na);
    let select = |team: &str| json!({"spec": {"accessFrom": {"namespaceSelectors": [{"matchLabels": {"team": team}}]}}});
    repos_a
        .patch(
            "app",
            &PatchParams::default(),
            &Patch::Merge(&select("nobody")),
        )
        .await
        .unwrap();
    crate::common::request_reconcile(&pols_b, "app").await;
    wait_obj(&pols_b, "app", "denied by another selector", |v| {
        denied(v) && v["status"]["lastHandledReconcileAt"].is_string()
    })
    .await;
    repos_a
        .patch("app", &PatchParams::default(), &Patch::Merge(&select(&nb)))
        .await
        .unwrap();
    let v = latest_tag(&pols_b, "app", "1.0.0").await;
    assert_eq!(v["status"]["latestRef"]["name"], image.as_str());

    // --no-cross-namespace-refs: denied whatever accessFrom says; same namespace still works.
    let mut all = spec;
    all["accessFrom"] = json!({"namespaceSelectors": [{"matchLabels": {}}]});
    labelled_repo(&client, &na, "shared", &closed, all).await;
    let mut cross = cross;
    cross["imageRepositoryRef"]["name"] = json!("shared");
    labelled_policy(&client, &nb, "blocked", &closed, cross).await;
    let local = json!({"imageRepositoryRef": {"name": "shared"},
                       "policy": {"semver": {"range": "*"}}});
    labelled_policy(&client, &na, "local", &closed, local).await;
    let v = wait_obj(&pols_b, "blocked", "blocked by the flag", denied).await;
    let msg = ready(v.get("status")).unwrap().2;
    assert!(
        msg.contains("cross-namespace references have been blocked"),
        "{msg}"
    );
    let pols_a: Api<ImagePolicy> = Api::namespaced(client.clone(), &na);
    latest_tag(&pols_a, "local", "1.0.0").await;
    drop(reg);
    b.delete().await.unwrap();
    a.delete().await.unwrap();
}
