//! ImageUpdateAutomation end to end against the real API server and the smart-HTTP git
//! server: an ImagePolicy's latest image is committed to git with the templated message and a
//! Kustomization on that GitRepository applies it; a marker naming a missing policy and a
//! non-YAML file are left alone and reported; a push a protected branch refuses stalls with a
//! clear condition and lands nothing.
//!
//! The ImagePolicy's `status.latestRef` is written by the test (the ImageRepository and
//! ImagePolicy reconcilers are another branch's work), so the registry is not involved here.

#![allow(clippy::unwrap_used)]

use kube::api::{Api, Patch, PatchParams, PostParams};
use plumb_api::{GitRepository, ImagePolicy, ImageUpdateAutomation};
use plumb_testing::git::git as run_git;
use serde_json::{Value, json};

use crate::common::world::{World, within};
use crate::common::{ready, wait_obj};

const CM: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: app\ndata:\n  # the image the app runs\n  image: \"registry.local/app:1.0.0\" # {\"$imagepolicy\": \"NS:app\"}\n  tag: 1.0.0 # {\"$imagepolicy\": \"NS:app:tag\"}\n  other: x:1 # {\"$imagepolicy\": \"NS:missing\"}\n";

const TEMPLATE: &str = "Bump images in {{ .AutomationObject }} ({{ .Values.env }})\n\
{{ range $resource, $changes := .Changed.Objects -}}\n\
- {{ $resource.Kind }} {{ $resource.Name }}\n\
{{- range $_, $change := $changes }}: {{ $change.OldValue }} -> {{ $change.NewValue }}{{ end }}\n\
{{ end -}}";

async fn policy(w: &World, name: &str, tag: &str) {
    let api: Api<ImagePolicy> = Api::namespaced(w.client.clone(), &w.n);
    let p: ImagePolicy = serde_json::from_value(json!({
        "apiVersion": "image.toolkit.fluxcd.io/v1", "kind": "ImagePolicy",
        "metadata": {"name": name, "namespace": w.n},
        "spec": {"imageRepositoryRef": {"name": name}, "policy": {"semver": {"range": ">=1.0.0"}}}
    }))
    .unwrap();
    if api.get_opt(name).await.unwrap().is_none() {
        api.create(&PostParams::default(), &p).await.unwrap();
    }
    let status = json!({"status": {"latestRef": {"name": "registry.local/app", "tag": tag}}});
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
}

/// Lets the smart-HTTP server take pushes to the checked-out branch.
pub(crate) fn accept_pushes(w: &World) {
    run_git(&w.repo.path, &["config", "http.receivepack", "true"]);
    run_git(
        &w.repo.path,
        &["config", "receive.denyCurrentBranch", "updateInstead"],
    );
}

async fn automation(w: &World, name: &str, branch: &str) {
    let author = ("Flux Bot", "bot@plumb.invalid");
    let push = json!({"branch": branch});
    automation_with(w, name, push, author, TEMPLATE, json!({"env": "staging"})).await;
}

/// Creates ImageUpdateAutomation `name` on GitRepository `fleet` (master), pushing as
/// `push` (`git.push`), Setters over `./apps`, committing as `author` with `template` and
/// `values`.
pub(crate) async fn automation_with(
    w: &World,
    name: &str,
    push: Value,
    author: (&str, &str),
    template: &str,
    values: Value,
) {
    let api: Api<ImageUpdateAutomation> = Api::namespaced(w.client.clone(), &w.n);
    let a: ImageUpdateAutomation = serde_json::from_value(json!({
        "apiVersion": "image.toolkit.fluxcd.io/v1", "kind": "ImageUpdateAutomation",
        "metadata": {"name": name, "namespace": w.n},
        "spec": {
            "interval": "1h",
            "sourceRef": {"kind": "GitRepository", "name": "fleet"},
            "git": {
                "checkout": {"ref": {"branch": "master"}},
                "commit": {
                    "author": {"name": author.0, "email": author.1},
                    "messageTemplate": template,
                    "messageTemplateValues": values
                },
                "push": push
            },
            "update": {"strategy": "Setters", "path": "./apps"}
        }
    }))
    .unwrap();
    api.create(&PostParams::default(), &a).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_image_is_committed_with_the_template_and_applied() {
    let cm = CM.replace("NS", "PLACEHOLDER");
    let w = World::new(
        "iua",
        &[
            ("apps/cm.yaml", &cm),
            ("apps/notes.txt", "image: x # {\"$imagepolicy\": \"a:b\"}\n"),
        ],
    )
    .await;
    // The markers name the test namespace, known only now.
    w.repo
        .commit(&[("apps/cm.yaml", &CM.replace("NS", &w.n))], "markers");
    accept_pushes(&w);
    w.create_ks("apps", json!({"path": "./apps"})).await;
    w.wait_ready("apps").await;
    let before = w.repo.head();

    policy(&w, "app", "1.1.0").await;
    automation(&w, "bump", "master").await;
    let api: Api<ImageUpdateAutomation> = Api::namespaced(w.client.clone(), &w.n);
    // Ready says "pushed commit" once; a later run (the source's new revision wakes it) says
    // "repository up-to-date", so wait on the recorded push instead of the message.
    let v = wait_obj(&api, "bump", "automation pushed", |v| {
        ready(v.get("status")).is_some_and(|r| r.0 == "True")
            && v["status"]["lastPushCommit"].is_string()
    })
    .await;
    let (_, reason, msg) = ready(v.get("status")).unwrap();
    assert_eq!(reason, "Succeeded");
    // The marker naming a missing policy is reported, the file was left as it was.
    assert!(msg.contains(&format!("{}:missing", w.n)), "{msg}");
    let head = w.repo.head();
    assert_ne!(head, before);
    assert_eq!(v["status"]["lastPushCommit"], json!(head));
    assert_eq!(
        v["status"]["observedPolicies"]["app"]["tag"],
        json!("1.1.0")
    );
    // The revision it worked from: the one it pushed on, or (when the source's new revision
    // already woke it again) its own pushed commit.
    let observed = v["status"]["observedSourceRevision"].as_str().unwrap();
    assert!(
        observed.ends_with(&before) || observed.ends_with(&head),
        "{observed}"
    );
    assert_eq!(
        run_git(&w.repo.path, &["log", "-1", "--format=%an <%ae>%n%B"]),
        format!(
            "Flux Bot <bot@plumb.invalid>\nBump images in {}/bump (staging)\n- ConfigMap app: \
             registry.local/app:1.0.0 -> registry.local/app:1.1.0: 1.0.0 -> 1.1.0",
            w.n
        )
    );
    let file = run_git(&w.repo.path, &["show", "HEAD:apps/cm.yaml"]);
    let expected = CM
        .replace("NS", &w.n)
        .replace("app:1.0.0\"", "app:1.1.0\"")
        .replace("tag: 1.0.0", "tag: 1.1.0");
    assert_eq!(format!("{file}\n"), expected);
    assert_eq!(
        run_git(&w.repo.path, &["show", "HEAD:apps/notes.txt"]),
        "image: x # {\"$imagepolicy\": \"a:b\"}"
    );

    // The Kustomization on the same GitRepository applies the new image.
    let stamp = format!("{:?}", std::time::SystemTime::now());
    Api::<GitRepository>::namespaced(w.client.clone(), &w.n)
        .patch(
            "fleet",
            &PatchParams::default(),
            &Patch::Merge(
                &json!({"metadata": {"annotations": {"reconcile.fluxcd.io/requestedAt": stamp}}}),
            ),
        )
        .await
        .unwrap();
    let cms = w.cms();
    within("ConfigMap carries the new image", 60, || {
        let cms = cms.clone();
        async move {
            let cm = cms.get("app").await.ok()?;
            let data = cm.data?;
            (data.get("image")? == "registry.local/app:1.1.0" && data.get("tag")? == "1.1.0")
                .then_some(())
        }
    })
    .await;

    // A second run with the same policy pushes nothing.
    crate::common::request_reconcile(&api, "bump").await;
    wait_obj(&api, "bump", "up to date", |v: &Value| {
        ready(v.get("status")).is_some_and(|r| r.2.starts_with("repository up-to-date"))
    })
    .await;
    assert_eq!(w.repo.head(), head);
    w.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_protected_branch_stalls_and_nothing_lands() {
    let w = World::new("iua-protected", &[("apps/readme.md", "x\n")]).await;
    w.repo
        .commit(&[("apps/cm.yaml", &CM.replace("NS", &w.n))], "markers");
    run_git(&w.repo.path, &["config", "http.receivepack", "true"]);
    let hook = w.repo.path.join(".git/hooks/pre-receive");
    std::fs::write(
        &hook,
        "#!/bin/sh\nwhile read old new ref; do\n  [ \"$ref\" = refs/heads/protected ] && { echo protected branch >&2; exit 1; }\ndone\nexit 0\n",
    )
    .unwrap();
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    policy(&w, "app", "2.0.0").await;
    automation(&w, "guarded", "protected").await;
    let api: Api<ImageUpdateAutomation> = Api::namespaced(w.client.clone(), &w.n);
    let v = wait_obj(&api, "guarded", "automation stalled", |v| {
        ready(v.get("status")).is_some_and(|r| r.0 == "False")
    })
    .await;
    let (_, reason, msg) = ready(v.get("status")).unwrap();
    assert_eq!(reason, "GitOperationFailed");
    assert!(msg.contains("refs/heads/protected"), "{msg}");
    assert!(msg.contains("pre-receive hook declined"), "{msg}");
    assert!(v["status"].get("lastPushCommit").is_none());
    assert!(run_git(&w.repo.path, &["branch", "--list", "protected"]).is_empty());
    w.finish().await;
}
