//! Issue 2 acceptance, against the real 1.20 API server: plumb's CRDs apply server-side and
//! become Established, a full example of each kind (every field set, spec and status)
//! round-trips with no field lost, and the API server serves Flux's printer columns.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use std::path::Path;

use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use plumb_ssa::{Applier, ApplyItem, ApplyOptions};
use plumb_testing::{ControlPlane, TestNamespace};
use serde_json::Value;

fn fixture(kind: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("crates/plumb-api/tests/fixtures")
        .join(format!("{kind}-full.yaml"));
    let text = std::fs::read_to_string(&path).unwrap();
    serde_saphyr::from_str(&text).unwrap()
}

async fn install_crds(applier: &Applier) {
    let items = plumb_api::crds()
        .into_iter()
        .map(|crd| ApplyItem::new(serde_json::to_value(crd).unwrap()))
        .collect();
    applier
        .apply_all(items, &ApplyOptions::default())
        .await
        .unwrap();
}

#[tokio::test]
async fn full_objects_round_trip_through_the_api_server() {
    let info = ControlPlane::shared().unwrap();
    let client = info.admin_client().await.unwrap();
    let applier = Applier::new(client.clone(), "plumb-test", 4);
    install_crds(&applier).await;
    let ns = TestNamespace::create(info, "crds").await.unwrap();

    for kind in [
        "gitrepository",
        "helmrepository",
        "ocirepository",
        "kustomization",
        "helmrelease",
        "receiver",
        "provider",
        "alert",
    ] {
        let mut obj = fixture(kind);
        obj["metadata"]["namespace"] = Value::String(ns.name().to_string());
        let name = obj["metadata"]["name"].as_str().unwrap().to_string();
        let api_version = obj["apiVersion"].as_str().unwrap().to_string();
        let (group, version) = api_version.as_str().split_once('/').unwrap();
        let gvk = GroupVersionKind::gvk(group, version, obj["kind"].as_str().unwrap());
        let (ar, _): (ApiResource, _) = kube::discovery::pinned_kind(&client, &gvk).await.unwrap();
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns.name(), &ar);

        let status = obj.as_object_mut().unwrap().remove("status");
        let pp = PatchParams::apply("plumb-test").force();
        api.patch(&name, &pp, &Patch::Apply(&obj)).await.unwrap();
        if let Some(status) = &status {
            let body = serde_json::json!({"apiVersion": api_version, "kind": obj["kind"], "status": status});
            api.patch_status(&name, &pp, &Patch::Apply(&body))
                .await
                .unwrap();
        }
        let back = serde_json::to_value(api.get(&name).await.unwrap()).unwrap();
        let mut lost = plumb_api::schema_check::lost_fields(&obj["spec"], &back["spec"]);
        if let Some(status) = &status {
            lost.extend(plumb_api::schema_check::lost_fields(
                status,
                &back["status"],
            ));
        }
        assert!(
            lost.is_empty(),
            "{kind}: fields lost by the API server: {lost:#?}"
        );

        // The object also parses into plumb's Rust type.
        match kind {
            "gitrepository" => {
                drop(serde_json::from_value::<plumb_api::GitRepository>(back).unwrap())
            }
            "helmrepository" => {
                drop(serde_json::from_value::<plumb_api::HelmRepository>(back).unwrap())
            }
            "ocirepository" => {
                drop(serde_json::from_value::<plumb_api::OCIRepository>(back).unwrap())
            }
            "kustomization" => {
                drop(serde_json::from_value::<plumb_api::Kustomization>(back).unwrap())
            }
            "helmrelease" => drop(serde_json::from_value::<plumb_api::HelmRelease>(back).unwrap()),
            "provider" => drop(serde_json::from_value::<plumb_api::Provider>(back).unwrap()),
            "alert" => drop(serde_json::from_value::<plumb_api::Alert>(back).unwrap()),
            _ => drop(serde_json::from_value::<plumb_api::Receiver>(back).unwrap()),
        }
    }
    ns.delete().await.unwrap();
}

/// What `kubectl get gitrepo,helmrepo,ks,hr` shows comes from the server's Table output.
#[tokio::test]
async fn api_server_serves_flux_printer_columns() {
    let info = ControlPlane::shared().unwrap();
    let client = info.admin_client().await.unwrap();
    install_crds(&Applier::new(client.clone(), "plumb-test", 4)).await;
    let cases = [
        (
            "source.toolkit.fluxcd.io/v1",
            "gitrepositories",
            &["Name", "URL", "Age", "Ready", "Status"][..],
        ),
        (
            "source.toolkit.fluxcd.io/v1",
            "helmrepositories",
            &["Name", "URL", "Age", "Ready", "Status"][..],
        ),
        (
            "source.toolkit.fluxcd.io/v1",
            "ocirepositories",
            &["Name", "URL", "Ready", "Status", "Age"][..],
        ),
        (
            "kustomize.toolkit.fluxcd.io/v1",
            "kustomizations",
            &["Name", "Age", "Ready", "Status"][..],
        ),
        (
            "helm.toolkit.fluxcd.io/v2",
            "helmreleases",
            &["Name", "Age", "Ready", "Status"][..],
        ),
    ];
    for (gv, plural, want) in cases {
        let req = http::Request::get(format!("/apis/{gv}/{plural}"))
            .header("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io")
            .body(Vec::new())
            .unwrap();
        let table: Value = serde_json::from_str(&client.request_text(req).await.unwrap()).unwrap();
        let columns: Vec<&str> = table["columnDefinitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        for w in want {
            assert!(
                columns.contains(w),
                "{plural}: column {w} missing from {columns:?}"
            );
        }
    }
    // Short names and the `flux` category, as kubectl resolves them from discovery.
    // Flux's OCIRepository CRD is in `fluxcd` and `fluxcd-sources`, not `flux`.
    let short = [
        (
            "source.toolkit.fluxcd.io/v1",
            "gitrepositories",
            "gitrepo",
            "flux",
        ),
        (
            "source.toolkit.fluxcd.io/v1",
            "helmrepositories",
            "helmrepo",
            "flux",
        ),
        (
            "source.toolkit.fluxcd.io/v1",
            "ocirepositories",
            "ocirepo",
            "fluxcd-sources",
        ),
        (
            "kustomize.toolkit.fluxcd.io/v1",
            "kustomizations",
            "ks",
            "flux",
        ),
        ("helm.toolkit.fluxcd.io/v2", "helmreleases", "hr", "flux"),
    ];
    for (gv, plural, short_name, category) in short {
        let req = http::Request::get(format!("/apis/{gv}"))
            .body(Vec::new())
            .unwrap();
        let list: Value = serde_json::from_str(&client.request_text(req).await.unwrap()).unwrap();
        let res = list["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == plural)
            .unwrap_or_else(|| panic!("{plural} not served"));
        assert!(
            res["shortNames"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s == short_name),
            "{res}"
        );
        assert!(
            res["categories"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c == category),
            "{res}"
        );
    }
}
