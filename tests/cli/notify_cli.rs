//! `plumb get providers|alerts` against the real API server.

use kube::api::{Api, Patch, PatchParams, PostParams};
use plumb_api::{Alert, Provider};
use plumb_testing::{ControlPlane, TestNamespace};
use serde_json::json;

async fn get(info: &plumb_testing::ControlPlaneInfo, what: &str, ns: &str) -> String {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_plumb"))
        .args(["get", what, "-n", ns])
        .env("KUBECONFIG", &info.kubeconfig)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn get_lists_providers_and_alerts_with_their_state() {
    let info = ControlPlane::shared().unwrap();
    let client = info.admin_client().await.unwrap();
    crate::ops_cli::install_crds(&client).await;
    let ns = TestNamespace::create(info, "notify-cli").await.unwrap();
    let n = ns.name().to_string();
    let providers: Api<Provider> = Api::namespaced(client.clone(), &n);
    let alerts: Api<Alert> = Api::namespaced(client.clone(), &n);
    let p: Provider = serde_json::from_value(json!({
        "apiVersion": "notification.toolkit.fluxcd.io/v1beta3", "kind": "Provider",
        "metadata": {"name": "slack"}, "spec": {"type": "slack", "channel": "ops"}
    }))
    .unwrap();
    providers.create(&PostParams::default(), &p).await.unwrap();
    let a: Alert = serde_json::from_value(json!({
        "apiVersion": "notification.toolkit.fluxcd.io/v1beta3", "kind": "Alert",
        "metadata": {"name": "on-call"},
        "spec": {"providerRef": {"name": "slack"}, "suspend": true,
                 "eventSources": [{"kind": "Kustomization", "name": "*"}]}
    }))
    .unwrap();
    alerts.create(&PostParams::default(), &a).await.unwrap();
    let cond = json!({"status": {"conditions": [{"type": "Ready", "status": "True",
        "reason": "Succeeded", "message": "Provider initialized",
        "lastTransitionTime": "2024-01-01T00:00:00Z"}]}});
    providers
        .patch_status("slack", &PatchParams::default(), &Patch::Merge(&cond))
        .await
        .unwrap();

    let out = get(info, "providers", &n).await;
    let row = out
        .lines()
        .find(|l| l.starts_with("slack"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        row.contains("True") && row.contains("Provider initialized"),
        "{row}"
    );
    assert!(
        row.split_whitespace().nth(2) == Some("slack"),
        "type in REVISION: {row}"
    );
    let out = get(info, "alerts", &n).await;
    let row = out
        .lines()
        .find(|l| l.starts_with("on-call"))
        .unwrap_or_else(|| panic!("{out}"));
    // Suspended, with its provider in the REVISION column.
    assert!(row.contains("slack") && row.contains("True"), "{row}");
    ns.delete().await.unwrap();
}
