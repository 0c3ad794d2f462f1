//! `plumb build hr` and `plumb diff hr` against the real API server: a chart in a Git
//! repository, plumb's controllers in this process install it, then the CLI shows what
//! the next upgrade would change and delete.

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams, PostParams};
use plumb_api::{GitRepository, HelmRelease};
use plumb_testing::{ControlPlane, TestNamespace};
use serde_json::json;

use crate::ks_cli::{git_source, install_crds, plumb, start_controllers, text, wait_ready};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn build_and_diff_a_helmrelease() {
    let info = ControlPlane::shared().unwrap();
    let client = info.admin_client().await.unwrap();
    install_crds(&client).await;
    let ns = TestNamespace::create(info, "hr-cli").await.unwrap();
    let n = ns.name().to_string();

    let tmp = tempfile::tempdir().unwrap();
    let (ctx, controllers) = start_controllers(info, &n, tmp.path()).await;
    let _server = git_source(
        &client,
        &n,
        tmp.path(),
        "charts",
        &[
            ("app/Chart.yaml", "apiVersion: v2\nname: app\nversion: 1.0.0\n"),
            ("app/values.yaml", "msg: default\nextra: true\n"),
            ("app/templates/cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-cm\ndata:\n  msg: {{ .Values.msg | quote }}\n"),
            ("app/templates/extra.yaml", "{{- if .Values.extra }}\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-extra\n{{- end }}\n"),
        ],
    )
    .await;
    let hr: HelmRelease = serde_json::from_value(json!({
        "apiVersion": "helm.toolkit.fluxcd.io/v2", "kind": "HelmRelease",
        "metadata": {"name": "web", "namespace": n},
        "spec": {"interval": "1h",
                 "chart": {"spec": {"chart": "./app", "sourceRef": {"kind": "GitRepository", "name": "charts"}}},
                 "values": {"msg": "one"}}
    }))
    .unwrap();
    let hr_api: Api<HelmRelease> = Api::namespaced(client.clone(), &n);
    hr_api.create(&PostParams::default(), &hr).await.unwrap();
    wait_ready(&hr_api, "web").await;
    // Stop the controllers so the spec changes below are not released.
    controllers.abort();
    drop(ctx);
    let kcfg = info.kubeconfig.clone();

    // Nothing changed: exit 0, no output; build prints the release's objects.
    let out = plumb(&kcfg, &["diff", "hr", "web", "-n", &n]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(out.stdout.is_empty(), "{}", text(&out));
    assert!(text(&out).contains("deployed revision 1"), "{}", text(&out));
    let out = plumb(&kcfg, &["build", "hr", "web", "-n", &n]).await;
    assert!(out.status.success(), "{}", text(&out));
    let yaml = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        yaml.contains("name: web-cm") && yaml.contains("msg: one"),
        "{yaml}"
    );
    assert!(yaml.contains("helm.toolkit.fluxcd.io/name: web"), "{yaml}");

    // New values: the ConfigMap would change and the extra one would be deleted.
    let patch = json!({"spec": {"values": {"msg": "two", "extra": false}}});
    hr_api
        .patch("web", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let out = plumb(&kcfg, &["diff", "hr", "web", "-n", &n]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let d = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        d.contains(&format!("► ConfigMap/{n}/web-cm drifted")),
        "{d}"
    );
    assert!(
        d.contains("-  msg: one") && d.contains("+  msg: two"),
        "{d}"
    );
    assert!(
        d.contains(&format!("► ConfigMap/{n}/web-extra deleted")),
        "{d}"
    );
    // The diff changed nothing.
    let cm = Api::<ConfigMap>::namespaced(client.clone(), &n)
        .get("web-cm")
        .await
        .unwrap();
    assert_eq!(cm.data.unwrap()["msg"], "one");

    // A HelmRelease that does not exist is an error naming it.
    let out = plumb(&kcfg, &["diff", "hr", "nope", "-n", &n]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("nope"), "{}", text(&out));

    // The controllers are gone: drop their finalizers so the namespace can go.
    let unfinalize = json!({"metadata": {"finalizers": null}});
    let pp = PatchParams::default();
    hr_api
        .patch("web", &pp, &Patch::Merge(&unfinalize))
        .await
        .unwrap();
    Api::<GitRepository>::namespaced(client.clone(), &n)
        .patch("charts", &pp, &Patch::Merge(&unfinalize))
        .await
        .unwrap();
    // The HelmChart the release made, as helm-controller does.
    Api::<plumb_api::HelmChart>::namespaced(client.clone(), &n)
        .patch(&format!("{n}-web"), &pp, &Patch::Merge(&unfinalize))
        .await
        .unwrap();
    ns.delete().await.unwrap();
}
