//! Provider and Alert against the real API server: plumb's own events reach local HTTP(S)
//! servers standing in for the services (exact request checked), with Flux's filtering,
//! signing, TLS, retries, and no reconcile waiting on a slow or failing Provider.

use std::time::Duration;

use hmac::{Hmac, Mac};
use k8s_openapi::api::core::v1::{Event as KubeEvent, Secret};
use kube::api::{Api, ListParams, PostParams};
use plumb_api::{Alert, Provider};
use plumb_controller::notification::{Dispatcher, Options, REASON_NOTIFICATION_FAILED};
use plumb_testing::git::TlsMaterial;
use plumb_testing::webhook_sink::{Behaviour, Received, WebhookSink};
use serde_json::{Value, json};

use crate::common::world::{World, within};
use crate::common::{condition, ready, wait_obj};

const CM: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm\ndata:\n  k: v\n";

pub(crate) fn files() -> Vec<(&'static str, &'static str)> {
    vec![
        ("deploy/kustomization.yaml", "resources:\n- cm.yaml\n"),
        ("deploy/cm.yaml", CM),
        ("other/kustomization.yaml", "resources:\n- cm.yaml\n"),
        ("other/cm.yaml", CM2),
    ]
}

const CM2: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm2\ndata:\n  k: v\n";

pub(crate) async fn secret(w: &World, name: &str, data: Value) {
    let s: Secret = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name, "namespace": w.n}, "stringData": data
    }))
    .unwrap();
    Api::<Secret>::namespaced(w.client.clone(), &w.n)
        .create(&PostParams::default(), &s)
        .await
        .unwrap();
}

pub(crate) async fn provider(w: &World, name: &str, spec: Value) {
    let p: Provider = serde_json::from_value(json!({
        "apiVersion": "notification.toolkit.fluxcd.io/v1beta3", "kind": "Provider",
        "metadata": {"name": name, "namespace": w.n}, "spec": spec
    }))
    .unwrap();
    Api::<Provider>::namespaced(w.client.clone(), &w.n)
        .create(&PostParams::default(), &p)
        .await
        .unwrap();
}

/// An Alert `name` on Provider `name` for every Kustomization, `extra` merged into the spec.
pub(crate) async fn alert(w: &World, name: &str, extra: Value) {
    let mut spec = json!({
        "providerRef": {"name": name},
        "eventSources": [{"kind": "Kustomization", "name": "*"}],
    });
    for (k, v) in extra.as_object().unwrap() {
        spec[k] = v.clone();
    }
    let a: Alert = serde_json::from_value(json!({
        "apiVersion": "notification.toolkit.fluxcd.io/v1beta3", "kind": "Alert",
        "metadata": {"name": name, "namespace": w.n}, "spec": spec
    }))
    .unwrap();
    Api::<Alert>::namespaced(w.client.clone(), &w.n)
        .create(&PostParams::default(), &a)
        .await
        .unwrap();
}

pub(crate) async fn wait_ready<K>(w: &World, name: &str)
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(w.client.clone(), &w.n);
    wait_obj(&api, name, &format!("{name} ready"), |v| {
        ready(v.get("status")).is_some_and(|r| r.0 == "True")
    })
    .await;
}

/// Waits until `sink` received a request whose JSON body satisfies `pred`.
pub(crate) async fn received(
    sink: &WebhookSink,
    what: &str,
    pred: impl Fn(&Value) -> bool,
) -> Received {
    within(what, 60, || async {
        sink.received().into_iter().find(|r| pred(&r.json()))
    })
    .await
}

/// Creates Kustomization `apps` on `./deploy` and returns the revision it applied.
pub(crate) async fn apply_apps(w: &World) -> String {
    w.create_ks("apps", json!({"path": "./deploy"})).await;
    let ks = w.wait_ready("apps").await;
    ks["status"]["lastAppliedRevision"]
        .as_str()
        .unwrap()
        .to_string()
}

pub(crate) fn is_change_set(v: &Value) -> bool {
    v["message"]
        .as_str()
        .is_some_and(|m| m.contains("ConfigMap/"))
}

#[tokio::test]
async fn generic_provider_gets_kustomization_events_filtered_like_flux() {
    let w = World::new("notify-generic", &files()).await;
    let all = WebhookSink::start(Behaviour::default());
    let included = WebhookSink::start(Behaviour::default());
    let excluded = WebhookSink::start(Behaviour::default());
    let errors_only = WebhookSink::start(Behaviour::default());
    secret(
        &w,
        "hook",
        json!({"address": all.url("/hook/s3cret"),
                               "headers": "X-Team: platform\nAuthorization: Bearer t0k\n"}),
    )
    .await;
    provider(
        &w,
        "all",
        json!({"type": "generic", "secretRef": {"name": "hook"}}),
    )
    .await;
    for (name, sink) in [
        ("included", &included),
        ("excluded", &excluded),
        ("errors", &errors_only),
    ] {
        provider(
            &w,
            name,
            json!({"type": "generic", "address": sink.url("/")}),
        )
        .await;
    }
    alert(
        &w,
        "all",
        json!({"summary": "test cluster", "eventMetadata": {"env": "ci"}}),
    )
    .await;
    alert(
        &w,
        "included",
        json!({"inclusionList": ["^ConfigMap/.*created"]}),
    )
    .await;
    alert(&w, "excluded", json!({"exclusionList": ["ConfigMap"]})).await;
    alert(&w, "errors", json!({"eventSeverity": "error"})).await;
    for name in ["all", "included", "excluded", "errors"] {
        wait_ready::<Provider>(&w, name).await;
        wait_ready::<Alert>(&w, name).await;
    }

    let revision = apply_apps(&w).await;

    let req = received(&all, "change set at the generic provider", is_change_set).await;
    assert_eq!(req.method, "POST");
    assert_eq!(req.path, "/hook/s3cret");
    assert_eq!(req.header("content-type"), Some("application/json"));
    assert_eq!(req.header("gotk-component"), Some("kustomize-controller"));
    assert_eq!(req.header("x-team"), Some("platform"));
    assert_eq!(req.header("authorization"), Some("Bearer t0k"));
    assert!(req.header("x-signature").is_none());
    let body = req.json();
    assert_eq!(body["involvedObject"]["kind"], "Kustomization");
    assert_eq!(body["involvedObject"]["name"], "apps");
    assert_eq!(body["involvedObject"]["namespace"], w.n.as_str());
    assert_eq!(
        body["involvedObject"]["apiVersion"],
        "kustomize.toolkit.fluxcd.io/v1"
    );
    assert_eq!(body["severity"], "info");
    assert_eq!(body["reason"], "ReconciliationSucceeded");
    assert_eq!(body["reportingController"], "kustomize-controller");
    assert!(
        body["message"].as_str().unwrap().contains("ConfigMap/"),
        "{body}"
    );
    assert_eq!(body["metadata"]["revision"], revision.as_str());
    assert_eq!(body["metadata"]["summary"], "test cluster");
    assert_eq!(body["metadata"]["env"], "ci");
    assert!(body["timestamp"].is_string());

    received(
        &included,
        "change set at the inclusion-list provider",
        is_change_set,
    )
    .await;
    // Routed in the same pass as the two above; neither filter lets anything through.
    assert!(
        excluded
            .received()
            .iter()
            .all(|r| !is_change_set(&r.json()))
    );
    let errors: Vec<Value> = errors_only.received().iter().map(|r| r.json()).collect();
    assert!(errors.is_empty(), "{errors:?}");
    // Flux's commit-status updates never reach non-commit-status providers.
    for r in all.received() {
        assert!(
            r.json()["metadata"].get("commit_status").is_none(),
            "{}",
            r.json()
        );
    }

    // An error reaches the error-only Alert.
    w.patch_ks("apps", json!({"spec": {"path": "./missing"}}))
        .await;
    let err = received(&errors_only, "error event", |v| v["severity"] == "error").await;
    assert!(
        err.json()["message"].as_str().unwrap().contains("missing"),
        "{}",
        err.json()
    );
    assert!(
        errors_only
            .received()
            .iter()
            .all(|r| r.json()["severity"] == "error")
    );
    w.finish().await;
}

#[tokio::test]
async fn generic_hmac_over_tls_with_a_test_ca() {
    let w = World::new("notify-hmac", &files()).await;
    let tls = TlsMaterial::generate();
    let sink = WebhookSink::start_tls(Behaviour::default(), &tls);
    secret(&w, "hmac", json!({"token": "sign-me"})).await;
    secret(&w, "ca", json!({"ca.crt": tls.ca_pem})).await;
    provider(
        &w,
        "signed",
        json!({"type": "generic-hmac", "address": sink.url("/hook"),
        "secretRef": {"name": "hmac"}, "certSecretRef": {"name": "ca"}, "timeout": "5s"}),
    )
    .await;
    alert(&w, "signed", json!({})).await;
    wait_ready::<Provider>(&w, "signed").await;
    wait_ready::<Alert>(&w, "signed").await;
    w.create_ks("apps", json!({"path": "./deploy"})).await;
    let req = received(&sink, "signed change set over TLS", is_change_set).await;
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(b"sign-me").unwrap();
    mac.update(&req.body);
    let want = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    assert_eq!(req.header("x-signature"), Some(want.as_str()));
    w.finish().await;
}

#[tokio::test]
async fn hanging_and_failing_providers_delay_nothing_and_retry() {
    let w = World::new("notify-slow", &files()).await;
    let dispatcher = w.ctx.memo::<Dispatcher>();
    dispatcher.set_options(Options {
        retries: 2,
        backoff: Duration::from_millis(100),
        warn_after: 1,
        ..Options::default()
    });
    let hang = WebhookSink::start(Behaviour {
        status: 200,
        delay: Duration::from_secs(120),
    });
    let fail = WebhookSink::start(Behaviour {
        status: 500,
        delay: Duration::ZERO,
    });
    let good = WebhookSink::start(Behaviour::default());
    provider(
        &w,
        "hang",
        json!({"type": "generic", "address": hang.url("/"), "timeout": "30s"}),
    )
    .await;
    provider(
        &w,
        "fail",
        json!({"type": "generic", "address": fail.url("/")}),
    )
    .await;
    provider(
        &w,
        "good",
        json!({"type": "generic", "address": good.url("/")}),
    )
    .await;
    for name in ["hang", "fail", "good"] {
        alert(&w, name, json!({})).await;
        wait_ready::<Provider>(&w, name).await;
        wait_ready::<Alert>(&w, name).await;
    }
    w.create_ks("a", json!({"path": "./deploy"})).await;
    w.wait_ready("a").await;
    // The good provider is served while the hanging one still holds its first request.
    received(&good, "event at the good provider", is_change_set).await;
    // (It holds an earlier event of `a`, e.g. waiting for its source, for its timeout.)
    received(&hang, "a request at the hanging provider", |_| true).await;
    // Another reconcile is not held up by the hanging provider either.
    w.create_ks("b", json!({"path": "./other"})).await;
    w.wait_ready("b").await;
    // The failing provider: one try and two retries for the change set of `a`.
    let key = format!("{}/fail", w.n);
    within("retries counted", 30, || async {
        (w.ctx.metrics.notification_count(&key, "failure") >= 1).then_some(())
    })
    .await;
    assert!(w.ctx.metrics.notification_count(&key, "retry") >= 2);
    let tries_a = fail
        .received()
        .iter()
        .filter(|r| r.json()["involvedObject"]["name"] == "a" && is_change_set(&r.json()))
        .count();
    assert_eq!(tries_a, 3);
    assert!(
        w.ctx
            .metrics
            .notification_count(&format!("{}/good", w.n), "success")
            >= 1
    );
    // And the Provider shows it.
    let events: Api<KubeEvent> = Api::namespaced(w.client.clone(), &w.n);
    within("NotificationFailed event on the provider", 30, || async {
        let list = events.list(&ListParams::default()).await.ok()?;
        list.items
            .into_iter()
            .find(|e| {
                e.reason.as_deref() == Some(REASON_NOTIFICATION_FAILED)
                    && e.involved_object.name.as_deref() == Some("fail")
            })
            .map(|_| ())
    })
    .await;
    w.finish().await;
}

#[tokio::test]
async fn unusable_providers_and_alerts_are_not_ready_with_a_reason() {
    let w = World::new("notify-bad", &files()).await;
    provider(
        &w,
        "sentry",
        json!({"type": "sentry", "address": "https://sentry.example.com"}),
    )
    .await;
    provider(&w, "noaddr", json!({"type": "generic"})).await;
    provider(
        &w,
        "nosecret",
        json!({"type": "generic", "secretRef": {"name": "absent"}}),
    )
    .await;
    let providers: Api<Provider> = Api::namespaced(w.client.clone(), &w.n);
    let v = wait_obj(&providers, "sentry", "sentry stalled", |v| {
        condition(v.get("status"), "Stalled").is_some_and(|c| c.0 == "True")
    })
    .await;
    let (status, _, msg) = ready(v.get("status")).unwrap();
    assert_eq!(status, "False");
    assert!(
        msg.contains("provider type 'sentry' is not supported"),
        "{msg}"
    );
    let v = wait_obj(&providers, "noaddr", "noaddr stalled", |v| {
        condition(v.get("status"), "Stalled").is_some_and(|c| c.0 == "True")
    })
    .await;
    assert!(ready(v.get("status")).unwrap().2.contains("no address"));
    let v = wait_obj(&providers, "nosecret", "nosecret not ready", |v| {
        ready(v.get("status")).is_some_and(|c| c.0 == "False")
    })
    .await;
    assert!(ready(v.get("status")).unwrap().2.contains("absent"), "{v}");

    alert(&w, "sentry", json!({})).await;
    alert(&w, "badregex", json!({"exclusionList": ["(unclosed"]})).await;
    let alerts: Api<Alert> = Api::namespaced(w.client.clone(), &w.n);
    let v = wait_obj(&alerts, "sentry", "alert waits for its provider", |v| {
        ready(v.get("status")).is_some_and(|c| c.0 == "False")
    })
    .await;
    assert!(
        ready(v.get("status")).unwrap().2.contains("is not ready"),
        "{v}"
    );
    let v = wait_obj(&alerts, "badregex", "bad regex stalled", |v| {
        condition(v.get("status"), "Stalled").is_some_and(|c| c.0 == "True")
    })
    .await;
    assert!(
        ready(v.get("status")).unwrap().2.contains("invalid regex"),
        "{v}"
    );
    w.finish().await;
}
