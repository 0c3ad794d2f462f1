//! The GitRepository reconciler against the real API server: credentials from Secrets,
//! artifacts served and downloadable, failures that keep the last good artifact, refs,
//! reconcile requests, suspend, the finalizer and unsupported fields. No secret value may
//! appear in status or events.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use plumb_api::GitRepository;
use plumb_controller::Context;
use plumb_source::artifact::Limits;
use plumb_testing::git::{GitHttpServer, HttpAuth, TestRepo};
use plumb_testing::{ControlPlane, TestNamespace, wait};
use serde_json::{Value, json};

use crate::common::{condition, install_crds, ready, start_plumb, wait_obj};

/// One test's world: a namespace, a git server over `repos`, controllers in-process.
struct World {
    client: kube::Client,
    ns: TestNamespace,
    tmp: tempfile::TempDir,
    server: GitHttpServer,
    ctx: Arc<Context>,
    api: Api<GitRepository>,
}

impl World {
    async fn new(prefix: &str, auth: HttpAuth, repos: &[&str]) -> (World, Vec<TestRepo>) {
        let info = ControlPlane::shared().unwrap();
        let client = info.admin_client().await.unwrap();
        install_crds(&client).await;
        let ns = TestNamespace::create(info, prefix).await.unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let made = repos
            .iter()
            .map(|r| TestRepo::init(&tmp.path().join("repos"), r))
            .collect();
        let server = GitHttpServer::start(&tmp.path().join("repos"), auth);
        let ctx = start_plumb(info, ns.name(), &tmp.path().join("storage")).await;
        let api = Api::namespaced(client.clone(), ns.name());
        (
            World {
                client,
                ns,
                tmp,
                server,
                ctx,
                api,
            },
            made,
        )
    }

    fn n(&self) -> &str {
        self.ns.name()
    }

    async fn create(&self, name: &str, spec: Value) {
        let mut spec = spec;
        let repo = spec["url"].as_str().unwrap_or(name).to_string();
        spec["url"] = json!(self.server.url(&repo));
        spec.as_object_mut()
            .unwrap()
            .entry("interval")
            .or_insert(json!("1h"));
        let obj: GitRepository = serde_json::from_value(json!({
            "apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository",
            "metadata": {"name": name, "namespace": self.n()},
            "spec": spec,
        }))
        .unwrap();
        self.api.create(&PostParams::default(), &obj).await.unwrap();
    }

    async fn patch(&self, name: &str, patch: Value) {
        self.api
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap();
    }

    /// Sets `reconcile.fluxcd.io/requestedAt` and returns the stamp.
    async fn request(&self, name: &str) -> String {
        let stamp = format!("{:?}", std::time::SystemTime::now());
        self.patch(
            name,
            json!({"metadata": {"annotations": {"reconcile.fluxcd.io/requestedAt": stamp}}}),
        )
        .await;
        stamp
    }

    async fn wait(&self, name: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        wait_obj(&self.api, name, what, pred).await
    }

    async fn wait_ready(&self, name: &str) -> Value {
        self.wait(name, "Ready=True", |v| {
            ready(v.get("status")).is_some_and(|r| r.0 == "True")
        })
        .await
    }

    fn artifact_file(&self, v: &Value) -> PathBuf {
        self.ctx
            .storage
            .root()
            .join(v["status"]["artifact"]["path"].as_str().unwrap())
    }

    /// Every events.k8s.io/v1 Event in the namespace, as JSON text.
    async fn events_text(&self) -> (Vec<Event>, String) {
        let api: Api<Event> = Api::namespaced(self.client.clone(), self.n());
        let evs = api.list(&ListParams::default()).await.unwrap().items;
        let text = serde_json::to_string(&evs).unwrap();
        (evs, text)
    }

    async fn finish(self) {
        self.ns.delete().await.unwrap();
        drop(self.tmp);
    }
}

fn revision(v: &Value) -> String {
    v["status"]["artifact"]["revision"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

async fn secret(client: &kube::Client, ns: &str, name: &str, data: Value) {
    let s: Secret = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name, "namespace": ns},
        "stringData": data,
    }))
    .unwrap();
    let api: Api<Secret> = Api::namespaced(client.clone(), ns);
    api.patch(
        name,
        &PatchParams::apply("plumb-test").force(),
        &Patch::Apply(&s),
    )
    .await
    .unwrap();
}

const GOOD: &str = "s3cr3t-Pa55-good";
const BAD: &str = "s3cr3t-Pa55-wrong";
const TOKEN: &str = "tok3n-0123456789abcdef";

#[tokio::test]
async fn basic_auth_artifact_then_wrong_password_keeps_last_good() {
    let auth = HttpAuth::Basic {
        username: "plumb".into(),
        password: GOOD.into(),
    };
    let (w, repos) = World::new("gr-auth", auth, &["fleet"]).await;
    let sha = repos[0].commit(&[("deploy/cm.yaml", "kind: ConfigMap\n")], "initial");
    secret(
        &w.client,
        w.n(),
        "git-auth",
        json!({"username": "plumb", "password": GOOD}),
    )
    .await;
    w.create(
        "fleet",
        json!({"ref": {"branch": "master"}, "secretRef": {"name": "git-auth"}}),
    )
    .await;
    let v = w.wait_ready("fleet").await;
    let art = &v["status"]["artifact"];
    assert_eq!(revision(&v), format!("master@sha1:{sha}"));
    let digest = art["digest"].as_str().unwrap();
    assert!(digest.starts_with("sha256:"), "{digest}");
    assert!(art["size"].as_i64().unwrap() > 0, "{art}");
    let url = art["url"].as_str().unwrap();
    let prefix = format!(
        "http://{}/gitrepository/{}/fleet/",
        w.ctx.config.storage_adv_addr,
        w.n()
    );
    assert!(url.starts_with(&prefix), "{url} under {prefix}");
    assert_eq!(
        v["status"]["observedGeneration"],
        v["metadata"]["generation"]
    );
    // Downloadable from the artifact server; the sha256 matches the digest.
    let dest = w.tmp.path().join("download");
    plumb_source::artifact::fetch_and_extract(
        url,
        digest,
        &dest,
        Limits::default(),
        Duration::from_secs(20),
    )
    .await
    .unwrap();
    assert_eq!(
        std::fs::read_to_string(dest.join("deploy/cm.yaml")).unwrap(),
        "kind: ConfigMap\n"
    );
    let first_file = w.artifact_file(&v);
    assert!(first_file.is_file());

    // Wrong password: AuthenticationFailed, FetchFailed, the last artifact stays.
    secret(
        &w.client,
        w.n(),
        "git-auth",
        json!({"username": "plumb", "password": BAD}),
    )
    .await;
    repos[0].commit(&[("deploy/cm.yaml", "kind: ConfigMap # 2\n")], "second");
    w.request("fleet").await;
    let v = w
        .wait("fleet", "Ready=False AuthenticationFailed", |v| {
            ready(v.get("status")).is_some_and(|r| r.0 == "False" && r.1 == "AuthenticationFailed")
        })
        .await;
    let ff = condition(v.get("status"), "FetchFailed").unwrap();
    assert_eq!(
        (ff.0.as_str(), ff.1.as_str()),
        ("True", "AuthenticationFailed")
    );
    assert_eq!(revision(&v), format!("master@sha1:{sha}"), "last good kept");
    assert_eq!(v["status"]["artifact"]["digest"].as_str(), Some(digest));
    assert!(first_file.is_file(), "last good artifact still stored");

    // No secret value anywhere in status or events.
    let (evs, text) = w
        .events_text_with(|evs| {
            evs.iter()
                .any(|e| e.reason.as_deref() == Some("AuthenticationFailed"))
        })
        .await;
    assert!(
        evs.iter()
            .any(|e| e.reason.as_deref() == Some("NewArtifact")),
        "{text}"
    );
    let status = v["status"].to_string();
    for s in [GOOD, BAD] {
        assert!(!text.contains(s), "secret in events: {text}");
        assert!(!status.contains(s), "secret in status: {status}");
    }

    // Good credentials again: the new commit arrives.
    secret(
        &w.client,
        w.n(),
        "git-auth",
        json!({"username": "plumb", "password": GOOD}),
    )
    .await;
    let head = repos[0].head();
    w.request("fleet").await;
    w.wait("fleet", "recovered with the new commit", |v| {
        revision(v) == format!("master@sha1:{head}")
            && ready(v.get("status")).is_some_and(|r| r.0 == "True")
            && condition(v.get("status"), "FetchFailed").is_none()
    })
    .await;
    w.finish().await;
}

#[tokio::test]
async fn bearer_token_never_leaks() {
    let (w, repos) = World::new("gr-token", HttpAuth::Bearer(TOKEN.into()), &["fleet"]).await;
    let sha = repos[0].commit(&[("a.txt", "a\n")], "initial");
    secret(&w.client, w.n(), "tok", json!({"bearerToken": TOKEN})).await;
    w.create("fleet", json!({"secretRef": {"name": "tok"}}))
        .await;
    let v = w.wait_ready("fleet").await;
    assert_eq!(revision(&v), format!("master@sha1:{sha}"));
    secret(
        &w.client,
        w.n(),
        "tok",
        json!({"bearerToken": "nope-not-it"}),
    )
    .await;
    w.request("fleet").await;
    let v = w
        .wait("fleet", "Ready=False AuthenticationFailed", |v| {
            ready(v.get("status")).is_some_and(|r| r.0 == "False" && r.1 == "AuthenticationFailed")
        })
        .await;
    let (_, text) = w
        .events_text_with(|evs| {
            evs.iter()
                .any(|e| e.reason.as_deref() == Some("AuthenticationFailed"))
        })
        .await;
    for s in [TOKEN, "nope-not-it"] {
        assert!(!text.contains(s), "token in events: {text}");
        assert!(!v["status"].to_string().contains(s), "token in status");
    }
    w.finish().await;
}

impl World {
    /// Events once `pred` holds on them (events are published asynchronously).
    async fn events_text_with(&self, pred: impl Fn(&[Event]) -> bool) -> (Vec<Event>, String) {
        let pred = &pred;
        let r = wait::poll("events", Duration::from_secs(30), || async move {
            let (evs, text) = self.events_text().await;
            pred(&evs).then_some((evs, text))
        })
        .await;
        match r {
            Ok(x) => x,
            Err(e) => panic!("{e}; events: {}", self.events_text().await.1),
        }
    }
}

#[tokio::test]
async fn tag_and_semver_refs() {
    let (w, repos) = World::new("gr-refs", HttpAuth::Anonymous, &["fleet"]).await;
    let r = &repos[0];
    let c1 = r.commit(&[("v.txt", "1.0.0\n")], "one");
    r.tag("v1.0.0");
    let c2 = r.commit(&[("v.txt", "1.2.0\n")], "two");
    r.tag_annotated("v1.2.0", "release 1.2.0");
    r.commit(&[("v.txt", "2.0.0\n")], "three");
    r.tag("v2.0.0");
    w.create("bytag", json!({"url": "fleet", "ref": {"tag": "v1.0.0"}}))
        .await;
    w.create(
        "bysemver",
        json!({"url": "fleet", "ref": {"semver": ">=1.0.0 <2.0.0"}}),
    )
    .await;
    w.create("missing", json!({"url": "fleet", "ref": {"tag": "v9.9.9"}}))
        .await;
    let v = w.wait_ready("bytag").await;
    assert_eq!(revision(&v), format!("v1.0.0@sha1:{c1}"));
    let v = w.wait_ready("bysemver").await;
    assert_eq!(revision(&v), format!("v1.2.0@sha1:{c2}"));
    let v = w
        .wait("missing", "Ready=False for a missing tag", |v| {
            ready(v.get("status")).is_some_and(|r| r.0 == "False")
        })
        .await;
    let r = ready(v.get("status")).unwrap();
    assert!(r.2.contains("v9.9.9"), "message names the tag: {r:?}");
    assert!(v["status"].get("artifact").is_none());
    w.finish().await;
}

#[tokio::test]
async fn requested_at_suspend_and_resume() {
    let (w, repos) = World::new("gr-suspend", HttpAuth::Anonymous, &["fleet"]).await;
    let first = repos[0].commit(&[("a.txt", "1\n")], "one");
    w.create("fleet", json!({})).await;
    w.wait_ready("fleet").await;

    let stamp = w.request("fleet").await;
    w.wait("fleet", "lastHandledReconcileAt", |v| {
        v["status"]["lastHandledReconcileAt"].as_str() == Some(stamp.as_str())
    })
    .await;

    w.patch("fleet", json!({"spec": {"suspend": true}})).await;
    let second = repos[0].commit(&[("a.txt", "2\n")], "two");
    let stamp = w.request("fleet").await;
    // Suspended: neither the request nor the new commit is acted on.
    let acted = wait::poll(
        "anything while suspended",
        Duration::from_secs(5),
        || async {
            let v = serde_json::to_value(w.api.get("fleet").await.ok()?).ok()?;
            (revision(&v) != format!("master@sha1:{first}")
                || v["status"]["lastHandledReconcileAt"].as_str() == Some(stamp.as_str()))
            .then_some(v)
        },
    )
    .await;
    assert!(acted.is_err(), "acted while suspended: {acted:?}");

    w.patch("fleet", json!({"spec": {"suspend": false}})).await;
    let v = w
        .wait("fleet", "new artifact after resume", |v| {
            revision(v) == format!("master@sha1:{second}")
        })
        .await;
    assert_eq!(ready(v.get("status")).unwrap().0, "True");
    w.finish().await;
}

#[tokio::test]
async fn deletion_removes_artifacts() {
    let (w, repos) = World::new("gr-delete", HttpAuth::Anonymous, &["fleet"]).await;
    repos[0].commit(&[("a.txt", "1\n")], "one");
    w.create("fleet", json!({})).await;
    let v = w.wait_ready("fleet").await;
    let file = w.artifact_file(&v);
    assert!(file.is_file());
    assert!(
        v["metadata"]["finalizers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f == "finalizers.fluxcd.io"),
        "{v}"
    );
    w.api
        .delete("fleet", &DeleteParams::default())
        .await
        .unwrap();
    wait::poll("object gone", Duration::from_secs(30), || async {
        w.api.get_opt("fleet").await.ok()?.is_none().then_some(())
    })
    .await
    .unwrap();
    assert!(!file.exists(), "artifact removed");
    assert!(!file.parent().unwrap().exists(), "object directory removed");
    w.finish().await;
}

#[tokio::test]
async fn unsupported_service_account_is_reported() {
    let (w, repos) = World::new("gr-unsupported", HttpAuth::Anonymous, &["fleet"]).await;
    repos[0].commit(&[("a.txt", "1\n")], "one");
    w.create("fleet", json!({"serviceAccountName": "builder"}))
        .await;
    let v = w.wait_ready("fleet").await;
    let r = ready(v.get("status")).unwrap();
    assert!(
        r.2.contains("spec.serviceAccountName is not supported yet"),
        "{r:?}"
    );
    let (evs, _) = w
        .events_text_with(|evs| {
            evs.iter().any(|e| {
                e.type_.as_deref() == Some("Warning")
                    && e.note
                        .as_deref()
                        .is_some_and(|n| n.contains("spec.serviceAccountName is not supported"))
            })
        })
        .await;
    assert!(
        evs.iter()
            .any(|e| e.reason.as_deref() == Some("UnsupportedField"))
    );
    w.finish().await;
}

#[tokio::test]
async fn include_copies_other_artifacts() {
    let (w, repos) = World::new("gr-include", HttpAuth::Anonymous, &["app", "shared"]).await;
    let app_sha = repos[0].commit(
        &[("app.yaml", "app\n"), ("vendor/shared/stale.txt", "old\n")],
        "app",
    );
    repos[1].commit(&[("lib/x.yaml", "x: 1\n"), ("README", "r\n")], "lib");
    w.create("shared", json!({})).await;
    let shared = w.wait_ready("shared").await;
    w.create(
        "app",
        json!({"include": [{"repository": {"name": "shared"}, "fromPath": "lib", "toPath": "vendor/shared"}]}),
    )
    .await;
    let v = w.wait_ready("app").await;
    assert_eq!(revision(&v), format!("master@sha1:{app_sha}"));
    let inc = v["status"]["includedArtifacts"].as_array().unwrap();
    assert_eq!(inc.len(), 1, "{v}");
    assert_eq!(inc[0]["revision"], shared["status"]["artifact"]["revision"]);
    assert_eq!(v["status"]["observedInclude"][0]["toPath"], "vendor/shared");
    let download = |v: Value, dir: &str| {
        let dest = w.tmp.path().join(dir);
        async move {
            let art = &v["status"]["artifact"];
            plumb_source::artifact::fetch_and_extract(
                art["url"].as_str().unwrap(),
                art["digest"].as_str().unwrap(),
                &dest,
                Limits::default(),
                Duration::from_secs(20),
            )
            .await
            .unwrap();
            dest
        }
    };
    let dest = download(v.clone(), "one").await;
    assert_eq!(
        std::fs::read_to_string(dest.join("app.yaml")).unwrap(),
        "app\n"
    );
    assert_eq!(
        std::fs::read_to_string(dest.join("vendor/shared/x.yaml")).unwrap(),
        "x: 1\n"
    );
    assert!(
        !dest.join("vendor/shared/stale.txt").exists(),
        "toPath replaced"
    );
    assert!(
        !dest.join("vendor/shared/README").exists(),
        "only fromPath copied"
    );

    // A new commit of the included repository reaches the including artifact.
    let first_digest = v["status"]["artifact"]["digest"].clone();
    repos[1].commit(&[("lib/x.yaml", "x: 2\n")], "lib 2");
    w.request("shared").await;
    let shared2 = w
        .wait("shared", "shared second commit", |s| {
            revision(s) != revision(&shared)
        })
        .await;
    // No request for "app": the new artifact of "shared" triggers it.
    let v = w
        .wait("app", "app re-archived with the new include", |a| {
            a["status"]["includedArtifacts"][0]["revision"]
                == shared2["status"]["artifact"]["revision"]
        })
        .await;
    assert_ne!(v["status"]["artifact"]["digest"], first_digest);
    assert_eq!(revision(&v), format!("master@sha1:{app_sha}"));
    let dest = download(v, "two").await;
    assert_eq!(
        std::fs::read_to_string(dest.join("vendor/shared/x.yaml")).unwrap(),
        "x: 2\n"
    );

    // Including a repository that does not exist: IncludeUnavailable.
    w.create(
        "dangling",
        json!({"url": "app", "include": [{"repository": {"name": "nope"}}]}),
    )
    .await;
    let v = w
        .wait("dangling", "IncludeUnavailable", |v| {
            condition(v.get("status"), "IncludeUnavailable").is_some_and(|c| c.0 == "True")
        })
        .await;
    let r = ready(v.get("status")).unwrap();
    assert_eq!(r.0, "False");
    assert!(r.2.contains("nope"), "{r:?}");
    w.finish().await;
}

#[tokio::test]
async fn removed_ignore_leaves_status_and_polls_stay_cheap() {
    let (w, repos) = World::new("gr-ignore", HttpAuth::Anonymous, &["fleet"]).await;
    repos[0].commit(&[("a.txt", "a\n"), ("b.yaml", "b\n")], "one");
    w.create("fleet", json!({"ignore": "*.txt"})).await;
    let v = w
        .wait("fleet", "observedIgnore", |v| {
            v["status"]["observedIgnore"] == "*.txt"
                && ready(v.get("status")).is_some_and(|r| r.0 == "True")
        })
        .await;
    let first = v["status"]["artifact"].clone();
    w.patch("fleet", json!({"spec": {"ignore": null}})).await;
    let v = w
        .wait("fleet", "observedIgnore removed, new artifact", |v| {
            v["status"].get("observedIgnore").is_none()
                && v["status"]["artifact"]["digest"] != first["digest"]
        })
        .await;
    // Unchanged remote and spec: a requested poll keeps the very same artifact.
    let second = v["status"]["artifact"].clone();
    let stamp = w.request("fleet").await;
    let v = w
        .wait("fleet", "request handled", |v| {
            v["status"]["lastHandledReconcileAt"].as_str() == Some(stamp.as_str())
        })
        .await;
    assert_eq!(v["status"]["artifact"], second);
    w.finish().await;
}

/// `provider: github` end to end: the Secret's GitHub App signs a JWT, a local endpoint
/// playing GitHub checks it against the app's public key and mints an installation token,
/// and the git server lets only `x-access-token` with that token read the repository. The
/// token and the private key never show in status or events.
#[tokio::test]
async fn github_app_provider_fetches_with_an_installation_token() {
    use plumb_testing::github_app::{AppKey, TOKEN, TokenEndpoint};
    let key = AppKey::generate();
    let endpoint = TokenEndpoint::start(key.public.clone());
    let auth = HttpAuth::Basic {
        username: "x-access-token".into(),
        password: TOKEN.into(),
    };
    let (w, repos) = World::new("gr-ghapp", auth, &["app"]).await;
    let sha = repos[0].commit(&[("deploy/cm.yaml", "kind: ConfigMap\n")], "initial");
    let data: serde_json::Map<String, Value> = endpoint
        .secret_data(&key.pem)
        .into_iter()
        .map(|(k, v)| (k, json!(String::from_utf8(v).unwrap())))
        .collect();
    secret(&w.client, w.n(), "gh-app", Value::Object(data)).await;
    // Without the provider, the Secret has no git credentials: the server refuses.
    w.create(
        "plain",
        json!({"url": "app", "ref": {"branch": "master"}, "secretRef": {"name": "gh-app"}}),
    )
    .await;
    w.create(
        "app",
        json!({"ref": {"branch": "master"}, "provider": "github", "secretRef": {"name": "gh-app"}}),
    )
    .await;
    let v = w.wait_ready("app").await;
    assert_eq!(revision(&v), format!("master@sha1:{sha}"));
    assert!(endpoint.tokens_minted() >= 1);
    let plain = w
        .wait("plain", "AuthenticationFailed", |v| {
            ready(v.get("status")).is_some_and(|r| r.1 == "AuthenticationFailed")
        })
        .await;
    assert!(plain["status"]["artifact"].is_null(), "{plain}");

    let (_, events) = w.events_text().await;
    let statuses = format!("{} {}", v["status"], plain["status"]);
    for text in [events, statuses] {
        assert!(!text.contains(TOKEN), "token leaked: {text}");
        assert!(!text.contains("PRIVATE KEY"), "key leaked: {text}");
    }
    w.finish().await;
}
