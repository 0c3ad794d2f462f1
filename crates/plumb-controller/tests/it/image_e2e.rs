//! Image automation end to end, in one run against the real API server, a real registry
//! (Debian's `docker-registry`) and the smart-HTTP git server, with nothing written by the
//! test in between: a tag copied into the registry with `skopeo copy` is scanned by the
//! ImageRepository, picked by a semver ImagePolicy, committed to git by the
//! ImageUpdateAutomation (templated message, author, byte-exact setter change), fetched by the
//! GitRepository on its interval and applied by a Kustomization: the live Deployment runs the
//! new image; the push carries `git.push.options` to the server's hook. A run with no new
//! tag pushes nothing.

use std::process::Command;
use std::time::{Instant, SystemTime};

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, Patch, PatchParams};
use plumb_api::{GitRepository, ImagePolicy, ImageRepository, ImageUpdateAutomation};
use plumb_testing::git::git as run_git;
use plumb_testing::registry::{Registry, RegistryOptions};
use serde_json::{Value, json};

use crate::common::world::{World, within};
use crate::common::{ready, wait_obj};
use crate::image_policy::{create_policy, create_repo, latest_tag, push_tags};
use crate::image_update::{accept_pushes, automation_with};

/// The fleet's Deployment; `IMAGE` is the registry's image, `NS` the test namespace.
const DEPLOY: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  \
replicas: 1\n  selector:\n    matchLabels:\n      app: web\n  template:\n    metadata:\n      \
labels:\n        app: web\n    spec:\n      containers:\n        - name: web\n          \
# bumped by the automation\n          image: IMAGE:1.0.0 # {\"$imagepolicy\": \"NS:app\"}\n";

const TEMPLATE: &str = "chore: bump {{ .AutomationObject.Name }} in {{ .Values.cluster }}\n\n\
{{ range .Changed.Changes }}{{ print .OldValue }} -> {{ println .NewValue }}{{ end }}";

/// `skopeo copy` of `from` to `to` inside the plain-HTTP registry `host`.
fn skopeo_tag(host: &str, from: &str, to: &str) {
    let out = Command::new("skopeo")
        .args(["copy", "--insecure-policy", "--src-tls-verify=false"])
        .arg("--dest-tls-verify=false")
        .arg(format!("docker://{host}/{from}"))
        .arg(format!("docker://{host}/{to}"))
        .output()
        .expect("skopeo (scripts/install-deps.sh)");
    assert!(
        out.status.success(),
        "skopeo copy: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn live_image(deploys: &Api<Deployment>) -> Option<String> {
    let d = deploys.get("web").await.ok()?;
    d.spec?.template.spec?.containers.first()?.image.clone()
}

/// Asks `name` to reconcile and waits until that request was handled with Ready=True.
async fn handled<K>(api: &Api<K>, name: &str) -> Value
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let stamp = format!("{:?}", SystemTime::now());
    let patch = json!({"metadata": {"annotations": {"reconcile.fluxcd.io/requestedAt": stamp}}});
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    wait_obj(api, name, &format!("{name} handled {stamp}"), |v| {
        v["status"]["lastHandledReconcileAt"].as_str() == Some(stamp.as_str())
            && ready(v.get("status")).is_some_and(|r| r.0 == "True")
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pushed_tag_is_committed_and_applied() {
    let reg = tokio::task::spawn_blocking(|| Registry::start(RegistryOptions::default()))
        .await
        .unwrap()
        .unwrap();
    let host = reg.host();
    let image = format!("{host}/app");
    push_tags(&reg, "app", "1.0.0", &[]).await;

    let w = World::new("img-e2e", &[("apps/readme.md", "fleet\n")]).await;
    let deploy = DEPLOY.replace("IMAGE", &image).replace("NS", &w.n);
    w.repo.commit(&[("apps/web.yaml", &deploy)], "web");
    accept_pushes(&w);
    // The server takes push options and records those of the last push.
    run_git(
        &w.repo.path,
        &["config", "receive.advertisePushOptions", "true"],
    );
    let seen = w.repo.path.join(".git/push-options.txt");
    let hook = w.repo.path.join(".git/hooks/pre-receive");
    let body = format!(
        "#!/bin/sh\ncat >/dev/null\necho \"$GIT_PUSH_OPTION_COUNT $GIT_PUSH_OPTION_0\" > '{}'\n",
        seen.display()
    );
    std::fs::write(&hook, body).unwrap();
    std::fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    w.create_ks("apps", json!({"path": "./apps"})).await;
    w.wait_ready("apps").await;
    let deploys: Api<Deployment> = Api::namespaced(w.client.clone(), &w.n);
    assert_eq!(
        live_image(&deploys).await.unwrap(),
        format!("{image}:1.0.0")
    );

    // Scanning every 2 s, the GitRepository fetching every 2 s: no request from here on.
    let repos: Api<ImageRepository> = Api::namespaced(w.client.clone(), &w.n);
    create_repo(
        &repos,
        "app",
        json!({"image": image, "interval": "2s", "insecure": true}),
    )
    .await;
    let pols: Api<ImagePolicy> = Api::namespaced(w.client.clone(), &w.n);
    create_policy(
        &pols,
        "app",
        json!({"imageRepositoryRef": {"name": "app"}, "policy": {"semver": {"range": ">=1.0.0"}}}),
    )
    .await;
    latest_tag(&pols, "app", "1.0.0").await;
    let autos: Api<ImageUpdateAutomation> = Api::namespaced(w.client.clone(), &w.n);
    let author = ("Image Bot", "images@plumb.invalid");
    let values = json!({"cluster": "staging"});
    // A non-empty value: the local 1.20 API server turns "" in a custom resource's string
    // map into null and refuses it (found here; real clusters keep "").
    let push = json!({"branch": "master", "options": {"ci.variable": "IMAGE=bumped"}});
    automation_with(&w, "bump", push, author, TEMPLATE, values).await;
    let before = w.repo.head();
    let v = wait_obj(&autos, "bump", "first run, nothing to change", |v| {
        ready(v.get("status")).is_some_and(|r| r.2.starts_with("repository up-to-date"))
    })
    .await;
    assert!(v["status"].get("lastPushCommit").is_none(), "{v:#}");
    assert_eq!(w.repo.head(), before, "1.0.0 is already in git");
    Api::<GitRepository>::namespaced(w.client.clone(), &w.n)
        .patch(
            "fleet",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"interval": "2s"}})),
        )
        .await
        .unwrap();

    // A new tag in the registry, and nothing else.
    let t0 = Instant::now();
    let h = host.clone();
    tokio::task::spawn_blocking(move || skopeo_tag(&h, "app:1.0.0", "app:1.1.0"))
        .await
        .unwrap();
    let want = format!("{image}:1.1.0");
    within("the Deployment runs the new image", 120, || {
        let deploys = deploys.clone();
        let want = want.clone();
        async move { (live_image(&deploys).await? == want).then_some(()) }
    })
    .await;
    eprintln!(
        "tag pushed -> scanned -> committed -> fetched -> applied: {:?}",
        t0.elapsed()
    );

    // The commit: templated message, the author, exactly the marked scalar changed.
    let head = w.repo.head();
    assert_ne!(head, before);
    assert_eq!(
        run_git(&w.repo.path, &["log", "-1", "--format=%an <%ae>%n%B"]),
        format!(
            "Image Bot <images@plumb.invalid>\nchore: bump bump in staging\n\n\
             {image}:1.0.0 -> {image}:1.1.0"
        )
    );
    assert_eq!(
        run_git(
            &w.repo.path,
            &["rev-list", "--count", &format!("{before}..{head}")]
        ),
        "1"
    );
    let file = run_git(&w.repo.path, &["show", "HEAD:apps/web.yaml"]);
    assert_eq!(format!("{file}\n"), deploy.replace(":1.0.0 #", ":1.1.0 #"));
    assert_eq!(
        run_git(&w.repo.path, &["diff", "--numstat", &before, &head]),
        "1\t1\tapps/web.yaml"
    );
    let v = wait_obj(&autos, "bump", "push recorded", |v| {
        v["status"]["lastPushCommit"].as_str() == Some(head.as_str())
    })
    .await;
    assert_eq!(
        std::fs::read_to_string(&seen).unwrap(),
        "1 ci.variable=IMAGE=bumped\n"
    );
    let msg = ready(v.get("status")).unwrap().2;
    assert!(
        !msg.contains("not supported"),
        "push options are served: {msg}"
    );
    assert_eq!(v["status"]["observedPolicies"]["app"]["tag"], "1.1.0");
    let v = latest_tag(&pols, "app", "1.1.0").await;
    assert_eq!(v["status"]["observedPreviousRef"]["tag"], "1.0.0");
    let v = w.wait_ready("apps").await;
    assert_eq!(
        v["status"]["lastAppliedRevision"],
        format!("master@sha1:{head}")
    );

    // Another scan and another automation run with no new tag: nothing pushed.
    handled(&repos, "app").await;
    let v = handled(&autos, "bump").await;
    let msg = ready(v.get("status")).unwrap().2;
    assert!(msg.starts_with("repository up-to-date"), "{msg}");
    assert_eq!(w.repo.head(), head, "nothing pushed without a new tag");
    assert_eq!(v["status"]["lastPushCommit"], head.as_str());
    drop(reg);
    w.finish().await;
}
