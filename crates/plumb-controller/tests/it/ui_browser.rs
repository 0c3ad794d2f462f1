//! The fleet UI in headless Chromium against the real API server, with examples/fleet
//! reconciled by plumb (called from `fleet.rs`, which owns the fleet's cluster-wide
//! namespaces): the graph shows every Flux object of the fleet Ready; a broken commit turns
//! its Kustomization red within seconds; the reconcile button patches with the user's
//! credentials, and a user whose RBAC forbids it sees the API server's refusal. Screenshots go
//! to `target/ui-screenshots/fleet-*.png`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use kube::api::{ListParams, Patch, PatchParams};
use plumb_api::kinds::FluxKind;
use plumb_testing::ControlPlaneInfo;
use plumb_testing::browser::{Browser, Page, js_str};
use plumb_testing::git::git;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(60);

/// Every Flux object in `ns`, as the page's ids.
async fn fleet_ids(client: &kube::Client, ns: &str) -> Vec<String> {
    let mut ids = Vec::new();
    for kind in FluxKind::ALL {
        let Ok(list) = kind.api(client, ns).list(&ListParams::default()).await else {
            continue;
        };
        for o in list.items {
            let name = o.metadata.name.unwrap_or_default();
            ids.push(format!("{}/{ns}/{name}", kind.kind()));
        }
    }
    ids
}

/// The graph's nodes as `data-id` -> `data-state`.
async fn node_states(page: &Page) -> BTreeMap<String, String> {
    let v = page
        .eval("[...document.querySelectorAll('svg#graph g.node')].map(e => [e.dataset.id, e.dataset.state])")
        .await
        .unwrap();
    serde_json::from_value::<Vec<(String, String)>>(v)
        .unwrap()
        .into_iter()
        .collect()
}

async fn open(browser: &Browser, url: &str) -> Page {
    let page = browser.new_page(1400, 900).await.unwrap();
    page.goto(url).await.unwrap();
    page.wait_until("document.body.dataset.rendered === '1'", WAIT)
        .await
        .unwrap();
    page
}

/// The checks, on the fleet plumb reconciled into `ns` from `apps_repo` (the apps source's
/// working copy: the broken commit goes there).
pub(crate) async fn check_fleet_in_browser(
    info: &ControlPlaneInfo,
    client: &kube::Client,
    ns: &str,
    apps_repo: &Path,
) {
    let addr = crate::ui::serve(client.clone(), ns, false).await;
    let base = format!("http://{addr}/");
    let browser = Browser::launch().await.unwrap();

    // Every object of the fleet is drawn Ready.
    let expected = fleet_ids(client, ns).await;
    assert!(expected.len() >= 7, "{expected:?}");
    let page = open(&browser, &format!("{base}#/?ns={ns}")).await;
    let cond = format!(
        "(() => {{ const want = {}; return want.every(id => \
         document.querySelector(`svg#graph g.node[data-id=\"${{id}}\"][data-state=ready]`)); }})()",
        serde_json::to_string(&expected).unwrap()
    );
    if page.wait_until(&cond, WAIT).await.is_err() {
        panic!(
            "not every fleet object is drawn ready: {:#?}",
            node_states(&page).await
        );
    }
    page.screenshot("fleet-graph").await.unwrap();

    // A broken commit on the apps source turns `apps` red within seconds.
    std::fs::write(
        apps_repo.join("podinfo/overlays/dev/kustomization.yaml"),
        "resources:\n  - ../../base\n  - missing.yaml\n",
    )
    .unwrap();
    git(apps_repo, &["commit", "-qam", "broken"]);
    let pushed = Instant::now();
    let stamp = format!("{:?}", std::time::SystemTime::now());
    FluxKind::GitRepository
        .api(client, ns)
        .patch(
            "apps",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {
                "reconcile.fluxcd.io/requestedAt": stamp}}})),
        )
        .await
        .unwrap();
    let apps = format!("Kustomization/{ns}/apps");
    let red = format!(
        "['failed', 'stalled'].includes(document.querySelector({})?.dataset.state)",
        js_str(&format!("svg#graph g.node[data-id=\"{apps}\"]"))
    );
    if page.wait_until(&red, WAIT).await.is_err() {
        panic!(
            "{apps} never turned red: {:?}",
            node_states(&page).await.get(&apps)
        );
    }
    let took = pushed.elapsed();
    assert!(took < Duration::from_secs(30), "{took:?}");
    eprintln!("broken commit to a red node: {took:?}");
    page.screenshot("fleet-broken").await.unwrap();

    // The failures list names it.
    page.goto(&format!("{base}#/failures")).await.unwrap();
    page.wait_for(&format!("#failures [data-id=\"{apps}\"]"), WAIT)
        .await
        .unwrap();

    // Reconcile now, with the user's credentials.
    let object = open(&browser, &format!("{base}#/object/{apps}")).await;
    object
        .wait_for("button[data-action=reconcile]", WAIT)
        .await
        .unwrap();
    object.click("button[data-action=reconcile]").await.unwrap();
    object
        .wait_for("#action-result[data-outcome=ok]", WAIT)
        .await
        .unwrap();
    let ks = FluxKind::Kustomization
        .api(client, ns)
        .get("apps")
        .await
        .unwrap();
    assert!(
        ks.metadata
            .annotations
            .unwrap_or_default()
            .contains_key("reconcile.fluxcd.io/requestedAt"),
        "the reconcile button sets requestedAt"
    );
    object.screenshot("fleet-object").await.unwrap();
    assert!(page.errors().is_empty(), "{:?}", page.errors());
    browser.close().await;

    // A user who may read but not patch: the button's refusal is the API server's.
    refused_for_a_viewer(info, client, ns, &apps).await;
}

async fn refused_for_a_viewer(info: &ControlPlaneInfo, admin: &kube::Client, ns: &str, id: &str) {
    let (viewer, _token_dir) = crate::ui::viewer_client(info, admin, ns, "ui-viewer").await;
    let addr = crate::ui::serve(viewer, ns, false).await;
    let browser = Browser::launch().await.unwrap();
    let page = open(&browser, &format!("http://{addr}/#/object/{id}")).await;
    page.wait_for("button[data-action=reconcile]", WAIT)
        .await
        .unwrap();
    page.click("button[data-action=reconcile]").await.unwrap();
    page.wait_for("#action-result[data-outcome=error]", WAIT)
        .await
        .unwrap();
    let text = page.text("#action-result").await.unwrap();
    assert!(
        text.contains("HTTP 403") && text.contains("forbidden"),
        "{text}"
    );
    page.screenshot("fleet-refused").await.unwrap();
    browser.close().await;
}
