//! The fleet UI's server (`plumb ui`) against the real API server: the watches fill the fleet
//! with the right states and references, changes arrive on the stream, the object page reads
//! conditions, events and the inventory, and the actions patch with the user's credentials
//! (refused by RBAC with 403, by the same-origin checks, and on the read-only view).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use std::net::SocketAddr;
use std::time::Duration;

use plumb_testing::ControlPlane;
use plumb_ui::{AppState, Cluster, Store, UiOptions};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

use crate::common::world::{World, within};
use crate::rbac::service_account_config;

const FILES: &[(&str, &str)] = &[
    ("base/kustomization.yaml", "resources:\n- cm.yaml\n"),
    (
        "base/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: base\ndata:\n  a: '1'\n",
    ),
    ("apps/kustomization.yaml", "resources:\n- cm.yaml\n"),
    (
        "apps/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: apps\ndata:\n  a: '1'\n",
    ),
];

/// Serves the UI over `client`'s view (watching cluster-wide, else `ns`); returns its address.
pub(crate) async fn serve(client: kube::Client, ns: &str, read_only: bool) -> SocketAddr {
    let store = Store::new();
    plumb_ui::watch::spawn_watches(client.clone(), store.clone(), vec![ns.to_string()]);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let bound = listener.local_addr().unwrap();
    let state = AppState::new(
        store,
        UiOptions {
            context: "test".into(),
            read_only,
            bound: Some(bound),
        },
    )
    .with_cluster(Cluster {
        client,
        differ: None,
    });
    tokio::spawn(plumb_ui::serve(
        listener,
        plumb_ui::router(state),
        std::future::pending(),
    ));
    bound
}

/// One HTTP/1.1 request; returns the status and the body (JSON answers have a length).
async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, Value) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nconnection: close\r\ncontent-length: 0\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req.push_str(&format!("host: {addr}\r\n"));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap();
    let code = head.split(' ').nth(1).unwrap().parse().unwrap();
    (code, serde_json::from_str(body).unwrap_or(Value::Null))
}

async fn fleet(addr: SocketAddr) -> Value {
    let (code, body) = http(addr, "GET", "/api/fleet", &[]).await;
    assert_eq!(code, 200, "{body}");
    body
}

fn object<'a>(fleet: &'a Value, id: &str) -> Option<&'a Value> {
    fleet["objects"].as_array()?.iter().find(|o| o["id"] == id)
}

/// Polls the fleet until `id` is in `state`; returns it.
async fn wait_state(addr: SocketAddr, id: &str, state: &str) -> Value {
    within(&format!("{id} {state} in the fleet"), 60, || async {
        let f = fleet(addr).await;
        object(&f, id).filter(|o| o["state"] == state).cloned()
    })
    .await
}

fn refs(o: &Value) -> Vec<(String, String)> {
    o["refs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["id"].as_str().unwrap().into(),
                r["rel"].as_str().unwrap().into(),
            )
        })
        .collect()
}

const ACTION: (&str, &str) = ("x-plumb-action", "1");

#[tokio::test]
async fn fleet_stream_details_and_actions() {
    let w = World::new("ui", FILES).await;
    let n = w.n.clone();
    w.create_ks("base", json!({"path": "./base"})).await;
    w.create_ks(
        "apps",
        json!({"path": "./apps", "dependsOn": [{"name": "base"}]}),
    )
    .await;
    let addr = serve(w.client.clone(), &n, false).await;

    let git = wait_state(addr, &format!("GitRepository/{n}/fleet"), "ready").await;
    assert!(
        git["revision"]
            .as_str()
            .unwrap()
            .starts_with("master@sha1:")
    );
    let base = wait_state(addr, &format!("Kustomization/{n}/base"), "ready").await;
    let source = (format!("GitRepository/{n}/fleet"), "source".to_string());
    assert_eq!(refs(&base), std::slice::from_ref(&source));
    let apps = wait_state(addr, &format!("Kustomization/{n}/apps"), "ready").await;
    assert_eq!(
        refs(&apps),
        [
            source,
            (format!("Kustomization/{n}/base"), "dependsOn".into())
        ]
    );
    assert_eq!(fleet(addr).await["forbiddenKinds"], json!([]));

    // A broken path: the failure arrives on the stream within seconds.
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("GET /api/stream HTTP/1.1\r\nhost: {addr}\r\n\r\n");
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut lines = BufReader::new(stream).lines();
    w.patch_ks("apps", json!({"spec": {"path": "./missing"}}))
        .await;
    let apps_id = format!("Kustomization/{n}/apps");
    let event = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let Some(data) = line.strip_prefix("data:") else {
                continue;
            };
            let o: Value = serde_json::from_str(data.trim()).unwrap_or(Value::Null);
            // A missing path is terminal in plumb: stalled (red as failed is).
            if o["id"] == apps_id.as_str() && (o["state"] == "failed" || o["state"] == "stalled") {
                return o;
            }
        }
        panic!("the stream ended");
    })
    .await;
    let Ok(event) = event else {
        let f = fleet(addr).await;
        panic!(
            "no failure streamed within 30 s; the fleet has {:?}",
            object(&f, &apps_id)
        );
    };
    assert!(
        event["message"].as_str().unwrap().contains("missing"),
        "{event}"
    );

    // The object page: conditions, history, inventory.
    let (code, d) = http(
        addr,
        "GET",
        &format!("/api/object/kustomization/{n}/base"),
        &[],
    )
    .await;
    assert_eq!(code, 200, "{d}");
    assert_eq!(d["summary"]["state"], "ready");
    assert!(
        d["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["type"] == "Ready")
    );
    assert!(
        !d["history"].as_array().unwrap().is_empty(),
        "{}",
        d["history"]
    );
    let inv = d["inventory"]["entries"].as_array().unwrap();
    assert!(
        inv.iter()
            .any(|e| e["kind"] == "ConfigMap" && e["name"] == "base"),
        "{inv:?}"
    );
    assert!(d["events"].is_array());
    let (code, _) = http(
        addr,
        "GET",
        &format!("/api/object/Kustomization/{n}/nope"),
        &[],
    )
    .await;
    assert_eq!(code, 404);

    // Same-origin checks: no header, a rebinding Host, a cross-origin Origin.
    let reconcile = format!("/api/object/Kustomization/{n}/base/reconcile");
    let (code, _) = http(addr, "POST", &reconcile, &[]).await;
    assert_eq!(code, 403);
    let (code, _) = http(
        addr,
        "POST",
        &reconcile,
        &[ACTION, ("host", "evil.example:80")],
    )
    .await;
    assert_eq!(code, 403);
    let (code, _) = http(addr, "GET", "/api/fleet", &[("host", "evil.example:80")]).await;
    assert_eq!(code, 403, "a rebinding page cannot read the fleet");
    let (code, _) = http(
        addr,
        "POST",
        &reconcile,
        &[ACTION, ("origin", "http://evil.example")],
    )
    .await;
    assert_eq!(code, 403);

    // Reconcile sets requestedAt; suspend and resume flip spec.suspend.
    let (code, body) = http(addr, "POST", &reconcile, &[ACTION]).await;
    assert_eq!(code, 200, "{body}");
    let stamp = body["requestedAt"].as_str().unwrap().to_string();
    let ks = w.ks_api().get("base").await.unwrap();
    assert_eq!(
        ks.metadata.annotations.unwrap()["reconcile.fluxcd.io/requestedAt"],
        stamp
    );
    let path = |a: &str| format!("/api/object/Kustomization/{n}/base/{a}");
    let (code, body) = http(addr, "POST", &path("suspend"), &[ACTION]).await;
    assert_eq!(code, 200, "{body}");
    assert!(w.ks_api().get("base").await.unwrap().spec.suspend);
    wait_state(addr, &format!("Kustomization/{n}/base"), "suspended").await;
    let (code, _) = http(addr, "POST", &reconcile, &[ACTION]).await;
    assert_eq!(code, 409, "a suspended object is resumed first");
    let (code, body) = http(addr, "POST", &path("resume"), &[ACTION]).await;
    assert_eq!(code, 200, "{body}");
    assert!(!w.ks_api().get("base").await.unwrap().spec.suspend);
    wait_state(addr, &format!("Kustomization/{n}/base"), "ready").await;

    // The shared in-cluster view refuses actions.
    let shared = serve(w.client.clone(), &n, true).await;
    let (code, body) = http(shared, "POST", &reconcile, &[ACTION]).await;
    assert_eq!(code, 405, "{body}");
    w.finish().await;
}

/// A client of the ServiceAccount `sa` in `ns`, which may get, list and watch Kustomizations
/// and GitRepositories there and nothing else (keep the returned dir: it holds the token).
pub(crate) async fn viewer_client(
    info: &plumb_testing::ControlPlaneInfo,
    admin: &kube::Client,
    ns: &str,
    sa: &str,
) -> (kube::Client, tempfile::TempDir) {
    let objects = [
        json!({"apiVersion": "v1", "kind": "ServiceAccount",
               "metadata": {"name": sa, "namespace": ns}}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
               "metadata": {"name": sa, "namespace": ns},
               "rules": [{"apiGroups": ["kustomize.toolkit.fluxcd.io", "source.toolkit.fluxcd.io"],
                          "resources": ["kustomizations", "gitrepositories"],
                          "verbs": ["get", "list", "watch"]}]}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
               "metadata": {"name": sa, "namespace": ns},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": sa},
               "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": ns}]}),
    ];
    plumb_ssa::Applier::new(admin.clone(), "plumb-test", 4)
        .apply_all(
            objects.into_iter().map(plumb_ssa::ApplyItem::new).collect(),
            &plumb_ssa::ApplyOptions::default(),
        )
        .await
        .unwrap();
    let (cfg, dir) = service_account_config(info, admin, ns, sa).await;
    (kube::Client::try_from(cfg).unwrap(), dir)
}

/// A user with a read-only Role on Kustomizations and GitRepositories in one namespace: the
/// fleet falls back to that namespace, other kinds are listed as forbidden, and actions
/// answer the API server's 403.
#[tokio::test]
async fn a_read_only_user_sees_forbidden_kinds_and_gets_403() {
    let info = ControlPlane::shared().unwrap();
    let w = World::new("ui-rbac", FILES).await;
    let n = w.n.clone();
    w.create_ks("base", json!({"path": "./base"})).await;
    let admin = w.client.clone();
    let (viewer, _token_dir) = viewer_client(info, &admin, &n, "viewer").await;

    let addr = serve(viewer, &n, false).await;
    wait_state(addr, &format!("Kustomization/{n}/base"), "ready").await;
    let f = within("forbidden kinds listed", 30, || async {
        let f = fleet(addr).await;
        let forbidden = f["forbiddenKinds"].as_array()?;
        (forbidden.iter().any(|k| k == "HelmRelease")).then_some(f)
    })
    .await;
    let forbidden = f["forbiddenKinds"].as_array().unwrap();
    assert!(
        !forbidden.iter().any(|k| k == "Kustomization"),
        "{forbidden:?}"
    );
    assert!(
        f["objects"]
            .as_array()
            .unwrap()
            .iter()
            .all(|o| o["namespace"] == n.as_str()),
        "the fallback watches only the user's namespace"
    );
    let (code, body) = http(
        addr,
        "POST",
        &format!("/api/object/Kustomization/{n}/base/reconcile"),
        &[ACTION],
    )
    .await;
    assert_eq!(code, 403, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("forbidden"),
        "{body}"
    );
    assert!(
        w.ks_api()
            .get("base")
            .await
            .unwrap()
            .metadata
            .annotations
            .is_none_or(|a| !a.contains_key("reconcile.fluxcd.io/requestedAt"))
    );
    w.finish().await;
}

/// A Kustomization that applies another: the child shows `appliedBy` in the fleet, the
/// parent's object page expands the child's inventory, and a broken commit turns the child
/// red.
#[tokio::test]
async fn nested_inventory_and_a_broken_commit() {
    let w = World::new("ui-nested", FILES).await;
    let n = w.n.clone();
    let child = format!(
        "apiVersion: kustomize.toolkit.fluxcd.io/v1\nkind: Kustomization\nmetadata:\n  \
         name: child\n  namespace: {n}\nspec:\n  interval: 1h\n  path: ./base\n  prune: true\n  \
         targetNamespace: {n}\n  sourceRef:\n    kind: GitRepository\n    name: fleet\n"
    );
    w.push(
        &[
            ("nested/kustomization.yaml", "resources:\n- child.yaml\n"),
            ("nested/child.yaml", &child),
        ],
        &[],
    )
    .await;
    w.create_ks(
        "parent",
        json!({"path": "./nested", "targetNamespace": null}),
    )
    .await;
    let addr = serve(w.client.clone(), &n, false).await;
    let child_id = format!("Kustomization/{n}/child");
    let c = wait_state(addr, &child_id, "ready").await;
    assert!(
        refs(&c).contains(&(format!("Kustomization/{n}/parent"), "appliedBy".into())),
        "{c}"
    );
    let (code, d) = http(
        addr,
        "GET",
        &format!("/api/object/Kustomization/{n}/parent"),
        &[],
    )
    .await;
    assert_eq!(code, 200, "{d}");
    let entries = d["inventory"]["entries"].as_array().unwrap();
    let node = entries
        .iter()
        .find(|e| e["id"] == child_id.as_str())
        .unwrap();
    let leaves = node["children"].as_array().unwrap();
    assert!(
        leaves
            .iter()
            .any(|e| e["kind"] == "ConfigMap" && e["name"] == "base"),
        "{node}"
    );

    w.push(
        &[("base/kustomization.yaml", "resources:\n- absent.yaml\n")],
        &[],
    )
    .await;
    let failed = within("the child red in the fleet", 60, || async {
        let f = fleet(addr).await;
        object(&f, &child_id)
            .filter(|o| o["state"] == "failed" || o["state"] == "stalled")
            .cloned()
    })
    .await;
    assert!(
        failed["message"].as_str().unwrap().contains("absent"),
        "{failed}"
    );
    w.finish().await;
}
