//! Provider and Alert features beyond each type's payload, end to end against the real API
//! server: GitHub App authentication of the github types, and `matchLabels` on events
//! published without the object's labels.

use kube::api::{Api, PostParams};
use plumb_api::{Alert, GitRepository, Provider};
use plumb_testing::webhook_sink::{Behaviour, WebhookSink};
use serde_json::{Value, json};

use crate::common::world::{World, within};
use crate::common::{condition, ready, wait_obj};
use crate::notifications::{alert, apply_apps, files, provider, received, secret, wait_ready};

/// `github` and `githubdispatch` with a GitHub App instead of a token: a local endpoint
/// playing GitHub verifies the app's JWT and mints an installation token, which both
/// Providers send as their bearer token; the token is cached, not minted per delivery.
#[tokio::test]
async fn github_types_authenticate_as_a_github_app() {
    use plumb_testing::github_app::{AppKey, TOKEN, TokenEndpoint};
    let key = AppKey::generate();
    let endpoint = TokenEndpoint::start(key.public.clone());
    let status_sink = WebhookSink::start(Behaviour::default());
    let dispatch_sink = WebhookSink::start(Behaviour::default());
    let w = World::new("notify-ghapp", &files()).await;
    let data: serde_json::Map<String, Value> = endpoint
        .secret_data(&key.pem)
        .into_iter()
        .map(|(k, v)| (k, json!(String::from_utf8(v).unwrap())))
        .collect();
    secret(&w, "gh-app", Value::Object(data)).await;
    for (name, sink) in [("github", &status_sink), ("githubdispatch", &dispatch_sink)] {
        provider(
            &w,
            name,
            json!({"type": name, "address": sink.url("/org/repo"), "secretRef": {"name": "gh-app"}}),
        )
        .await;
        alert(&w, name, json!({})).await;
        wait_ready::<Provider>(&w, name).await;
        wait_ready::<Alert>(&w, name).await;
    }
    let revision = apply_apps(&w).await;
    let sha = revision.rsplit(':').next().unwrap().to_string();
    let bearer = format!("Bearer {TOKEN}");

    let status_path = format!("/api/v3/repos/org/repo/statuses/{sha}");
    let status = within("commit status with the app's token", 60, || async {
        status_sink
            .received()
            .into_iter()
            .find(|r| r.method == "POST" && r.path == status_path)
    })
    .await;
    assert_eq!(status.header("authorization"), Some(bearer.as_str()));
    assert_eq!(status.json()["state"], "success");
    let dispatch = received(&dispatch_sink, "dispatch with the app's token", |v| {
        v["client_payload"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("ConfigMap/"))
    })
    .await;
    assert_eq!(dispatch.path, "/api/v3/repos/org/repo/dispatches");
    assert_eq!(dispatch.header("authorization"), Some(bearer.as_str()));
    let minted = endpoint.tokens_minted();
    // Both Providers' workers may ask at once the first time; never once per request.
    assert!((1..=2).contains(&minted), "{minted}");

    // A new commit: more deliveries, no new token (cached until shortly before it expires).
    let revision2 = w.push(&[("deploy/cm.yaml", CM_CHANGED)], &[]).await;
    let sha2 = revision2.rsplit(':').next().unwrap().to_string();
    let status_path2 = format!("/api/v3/repos/org/repo/statuses/{sha2}");
    let status2 = within("second commit status", 60, || async {
        status_sink
            .received()
            .into_iter()
            .find(|r| r.method == "POST" && r.path == status_path2)
    })
    .await;
    assert_eq!(status2.header("authorization"), Some(bearer.as_str()));
    assert_eq!(endpoint.tokens_minted(), minted);

    // An app whose key is not a PEM RSA key stalls its Provider, naming the key.
    secret(
        &w,
        "bad-app",
        json!({"githubAppID": "42", "githubAppInstallationID": "7",
               "githubAppPrivateKey": "not a key"}),
    )
    .await;
    provider(
        &w,
        "bad-app",
        json!({"type": "github", "address": status_sink.url("/org/repo"),
               "secretRef": {"name": "bad-app"}}),
    )
    .await;
    let v = wait_obj(&providers_api(&w), "bad-app", "bad app stalled", |v| {
        condition(v.get("status"), "Stalled").is_some_and(|c| c.0 == "True")
    })
    .await;
    let message = ready(v.get("status")).unwrap().2;
    assert!(message.contains("githubAppPrivateKey"), "{message}");
    assert!(!message.contains("not a key"), "{message}");

    // The token and the key never show in the Providers' status or events.
    let providers: Api<Provider> = Api::namespaced(w.client.clone(), &w.n);
    let events: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(w.client.clone(), &w.n);
    let mut seen =
        serde_json::to_string(&providers.list(&Default::default()).await.unwrap()).unwrap();
    seen.push_str(
        &serde_json::to_string(&events.list(&Default::default()).await.unwrap()).unwrap(),
    );
    assert!(!seen.contains(TOKEN), "token leaked");
    assert!(!seen.contains("PRIVATE KEY"), "key leaked");
    w.finish().await;
}

const CM_CHANGED: &str =
    "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm\ndata:\n  k: changed\n";

/// An Alert's `matchLabels` on an event published with the object's reference only (a
/// GitRepository's unsupported-field warning, sent outside its reconcile's status): the
/// labels are read from the API server, as Flux does, so the labelled repository's event is
/// sent and the other's is not.
#[tokio::test]
async fn match_labels_apply_to_events_published_without_labels() {
    let sink = WebhookSink::start(Behaviour::default());
    let w = World::new("notify-labels", &files()).await;
    provider(
        &w,
        "team-a",
        json!({"type": "generic", "address": sink.url("/a")}),
    )
    .await;
    let a: Alert = serde_json::from_value(json!({
        "apiVersion": "notification.toolkit.fluxcd.io/v1beta3", "kind": "Alert",
        "metadata": {"name": "team-a", "namespace": w.n},
        "spec": {"providerRef": {"name": "team-a"}, "eventSources": [
            {"kind": "GitRepository", "name": "*", "matchLabels": {"team": "a"}}]}
    }))
    .unwrap();
    Api::<Alert>::namespaced(w.client.clone(), &w.n)
        .create(&PostParams::default(), &a)
        .await
        .unwrap();
    wait_ready::<Provider>(&w, "team-a").await;
    wait_ready::<Alert>(&w, "team-a").await;

    let repos: Api<GitRepository> = Api::namespaced(w.client.clone(), &w.n);
    let url = repos.get("fleet").await.unwrap().spec.url;
    for (name, team) in [("other", "b"), ("labelled", "a")] {
        let r: GitRepository = serde_json::from_value(json!({
            "apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository",
            "metadata": {"name": name, "namespace": w.n, "labels": {"team": team}},
            "spec": {"url": url, "interval": "1h", "ref": {"branch": "master"},
                     "serviceAccountName": "unsupported"}
        }))
        .unwrap();
        repos.create(&PostParams::default(), &r).await.unwrap();
    }
    let req = received(
        &sink,
        "unsupported-field warning of the labelled repository",
        |v| v["reason"] == "UnsupportedField",
    )
    .await;
    let body = req.json();
    assert_eq!(body["involvedObject"]["name"], "labelled", "{body}");
    assert_eq!(body["severity"], "error");
    // The other repository's warning was published in the same way (it was created first)
    // and matched nothing.
    within("both repositories reconciled", 60, || async {
        let list = repos.list(&Default::default()).await.ok()?;
        list.items
            .iter()
            .filter(|r| r.status.as_ref().is_some_and(|s| !s.conditions.is_empty()))
            .count()
            .eq(&3)
            .then_some(())
    })
    .await;
    for r in sink.received() {
        assert_ne!(r.json()["involvedObject"]["name"], "other", "{}", r.json());
    }
    for name in ["other", "labelled"] {
        let _ = repos.delete(name, &Default::default()).await;
    }
    w.finish().await;
}

fn providers_api(w: &World) -> Api<Provider> {
    Api::namespaced(w.client.clone(), &w.n)
}
