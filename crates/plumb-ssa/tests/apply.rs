//! The apply engine against the real API server.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams};
use plumb_ssa::kstatus::Status;
use plumb_ssa::{Action, Applier, ApplyItem, ApplyOptions, ObjectRef, PruneOptions, SsaMode};
use plumb_testing::{ControlPlane, TestNamespace};
use serde_json::{Value, json};

const MANAGER: &str = "kustomize-controller";

fn cm(ns: &str, name: &str, data: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": {"name": name, "namespace": ns,
                        "labels": {"owner": "test"}},
           "data": data})
}

fn actions(set: &plumb_ssa::ChangeSet) -> Vec<(String, Action)> {
    set.entries
        .iter()
        .map(|c| (c.object.to_string(), c.action))
        .collect()
}

#[tokio::test]
async fn crd_and_cr_namespace_and_objects_in_one_apply() {
    let info = ControlPlane::shared().unwrap();
    let ns = TestNamespace::create(info, "ssa-stage").await.unwrap();
    let client = info.admin_client().await.unwrap();
    let applier = Applier::new(client, MANAGER, 4);
    let group = format!("{}.plumb.test", ns.name());
    let new_ns = format!("{}-extra", ns.name());
    let crd = json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("widgets.{group}")},
        "spec": {"group": group, "scope": "Namespaced",
                 "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
                 "versions": [{"name": "v1", "served": true, "storage": true,
                   "schema": {"openAPIV3Schema": {"type": "object",
                     "x-kubernetes-preserve-unknown-fields": true}}}]}
    });
    let cr = json!({"apiVersion": format!("{group}/v1"), "kind": "Widget",
                    "metadata": {"name": "w1", "namespace": new_ns}, "spec": {"size": 3}});
    let namespace = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": new_ns}});
    let config = cm(&new_ns, "in-new-ns", json!({"a": "1"}));
    // CR first: staging must order it after its CRD and namespace anyway.
    let items = vec![cr.clone(), config.clone(), crd.clone(), namespace.clone()]
        .into_iter()
        .map(ApplyItem::new)
        .collect::<Vec<_>>();
    let set = applier
        .apply_all(items.clone(), &ApplyOptions::default())
        .await
        .unwrap();
    assert_eq!(set.count(Action::Created), 4, "{:?}", actions(&set));
    assert_eq!(set.entries[0].object.kind, "CustomResourceDefinition");

    // Second pass: nothing changes. (A 1.20 apiserver records a Namespace created by
    // server-side apply under `before-first-apply`; the next apply moves ownership to us
    // once, which is a real write.)
    let set = applier
        .apply_all(items.clone(), &ApplyOptions::default())
        .await
        .unwrap();
    let changed: Vec<_> = actions(&set)
        .into_iter()
        .filter(|(_, a)| *a != Action::Unchanged)
        .collect();
    assert!(
        changed.iter().all(|(o, _)| o.starts_with("Namespace/")),
        "{changed:?}"
    );
    let set = applier
        .apply_all(items.clone(), &ApplyOptions::default())
        .await
        .unwrap();
    assert_eq!(set.count(Action::Unchanged), 4, "{:?}", actions(&set));

    // A fresh applier (controller restart) also sees no change.
    let fresh = Applier::new(info.admin_client().await.unwrap(), MANAGER, 4);
    let set = fresh
        .apply_all(items, &ApplyOptions::default())
        .await
        .unwrap();
    assert_eq!(set.count(Action::Unchanged), 4, "{:?}", actions(&set));

    // Clean up the cluster-scoped objects this test made.
    let stale: Vec<ObjectRef> = [&crd, &namespace]
        .iter()
        .map(|o| ObjectRef::from_object(o).unwrap())
        .collect();
    let set = applier
        .prune(
            &stale,
            &PruneOptions {
                wait: Some(Duration::from_secs(60)),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(set.count(Action::Deleted), 2, "{:?}", actions(&set));
    ns.delete().await.unwrap();
}

#[tokio::test]
async fn update_drift_revert_and_unknown_kind() {
    let info = ControlPlane::shared().unwrap();
    let ns = TestNamespace::create(info, "ssa-drift").await.unwrap();
    let client = info.admin_client().await.unwrap();
    let applier = Applier::new(client.clone(), MANAGER, 4);
    let opts = ApplyOptions {
        cleanup_managers: vec![
            ("kubectl-edit".into(), "Update".into()),
            ("before-first-apply".into(), "Update".into()),
        ],
        ..Default::default()
    };
    let v1 = cm(ns.name(), "app", json!({"key": "v1"}));
    let set = applier
        .apply_all(vec![ApplyItem::new(v1.clone())], &opts)
        .await
        .unwrap();
    assert_eq!(
        actions(&set),
        vec![(format!("ConfigMap/{}/app", ns.name()), Action::Created)]
    );

    let v2 = cm(ns.name(), "app", json!({"key": "v2"}));
    let set = applier
        .apply_all(vec![ApplyItem::new(v2.clone())], &opts)
        .await
        .unwrap();
    assert_eq!(set.count(Action::Configured), 1);

    // Someone runs `kubectl edit`: an Update by another manager.
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns.name());
    let pp = PatchParams {
        field_manager: Some("kubectl-edit".into()),
        ..Default::default()
    };
    api.patch(
        "app",
        &pp,
        &Patch::Merge(json!({"data": {"key": "edited", "extra": "x"}})),
    )
    .await
    .unwrap();
    let set = applier
        .apply_all(vec![ApplyItem::new(v2.clone())], &opts)
        .await
        .unwrap();
    assert_eq!(set.count(Action::Configured), 1, "{:?}", actions(&set));
    let live = api.get("app").await.unwrap();
    assert_eq!(live.data.as_ref().unwrap().get("key").unwrap(), "v2");
    let managers: Vec<String> = live
        .metadata
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .filter_map(|m| m.manager)
        .collect();
    assert_eq!(
        managers,
        vec![MANAGER.to_string()],
        "kubectl-edit's entry is removed"
    );

    // IfNotPresent leaves an existing object alone; Ignore never touches it.
    let mut item = ApplyItem::new(cm(ns.name(), "app", json!({"key": "v3"})));
    item.mode = SsaMode::IfNotPresent;
    let set = applier.apply_all(vec![item.clone()], &opts).await.unwrap();
    assert_eq!(set.count(Action::Skipped), 1);
    item.mode = SsaMode::Ignore;
    applier.apply_all(vec![item], &opts).await.unwrap();
    assert_eq!(api.get("app").await.unwrap().data.unwrap()["key"], "v2");

    let unknown = json!({"apiVersion": "nope.plumb.test/v1", "kind": "Nope",
                         "metadata": {"name": "x", "namespace": ns.name()}});
    let err = applier
        .apply_all(vec![ApplyItem::new(unknown)], &opts)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("no matches for kind \"Nope\""),
        "{err}"
    );
    ns.delete().await.unwrap();
}

#[tokio::test]
async fn immutable_fields_need_force() {
    let info = ControlPlane::shared().unwrap();
    let ns = TestNamespace::create(info, "ssa-force").await.unwrap();
    let applier = Applier::new(info.admin_client().await.unwrap(), MANAGER, 4);
    let mut obj = cm(ns.name(), "frozen", json!({"k": "1"}));
    obj["immutable"] = json!(true);
    applier
        .apply_all(vec![ApplyItem::new(obj.clone())], &ApplyOptions::default())
        .await
        .unwrap();
    obj["data"]["k"] = json!("2");
    let err = applier
        .apply_all(vec![ApplyItem::new(obj.clone())], &ApplyOptions::default())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("immutable"), "{err}");
    let mut item = ApplyItem::new(obj.clone());
    item.force = true;
    let set = applier
        .apply_all(vec![item], &ApplyOptions::default())
        .await
        .unwrap();
    assert_eq!(
        set.count(Action::Created),
        1,
        "recreated: {:?}",
        actions(&set)
    );
    let api: Api<ConfigMap> = Api::namespaced(info.admin_client().await.unwrap(), ns.name());
    assert_eq!(api.get("frozen").await.unwrap().data.unwrap()["k"], "2");
    ns.delete().await.unwrap();
}

#[tokio::test]
async fn prune_respects_ownership_and_opt_out() {
    let info = ControlPlane::shared().unwrap();
    let ns = TestNamespace::create(info, "ssa-prune").await.unwrap();
    let applier = Applier::new(info.admin_client().await.unwrap(), MANAGER, 4);
    let owned = cm(ns.name(), "owned", json!({}));
    let mut kept = cm(ns.name(), "kept", json!({}));
    kept["metadata"]["annotations"] = json!({"kustomize.toolkit.fluxcd.io/prune": "disabled"});
    let mut foreign = cm(ns.name(), "foreign", json!({}));
    foreign["metadata"]["labels"] = json!({"owner": "someone-else"});
    let objs = [owned, kept, foreign];
    applier
        .apply_all(
            objs.iter().cloned().map(ApplyItem::new).collect(),
            &ApplyOptions::default(),
        )
        .await
        .unwrap();
    let mut stale: Vec<ObjectRef> = objs
        .iter()
        .map(|o| ObjectRef::from_object(o).unwrap())
        .collect();
    stale.push(ObjectRef::from_object(&cm(ns.name(), "already-gone", json!({}))).unwrap());
    let opts = PruneOptions {
        owner_labels: BTreeMap::from([("owner".to_string(), "test".to_string())]),
        skip_annotations: vec![(
            "kustomize.toolkit.fluxcd.io/prune".into(),
            "disabled".into(),
        )],
        wait: Some(Duration::from_secs(30)),
        ..Default::default()
    };
    let set = applier.prune(&stale, &opts).await.unwrap();
    let got = actions(&set);
    let n = ns.name();
    assert!(
        got.contains(&(format!("ConfigMap/{n}/owned"), Action::Deleted)),
        "{got:?}"
    );
    assert!(
        got.contains(&(format!("ConfigMap/{n}/kept"), Action::Skipped)),
        "{got:?}"
    );
    assert!(
        got.contains(&(format!("ConfigMap/{n}/foreign"), Action::Skipped)),
        "{got:?}"
    );
    let api: Api<ConfigMap> = Api::namespaced(info.admin_client().await.unwrap(), n);
    assert!(api.get_opt("owned").await.unwrap().is_none());
    assert!(api.get_opt("kept").await.unwrap().is_some());
    assert!(api.get_opt("foreign").await.unwrap().is_some());
    ns.delete().await.unwrap();
}

/// Prune deletes only the object it judged: an object deleted and recreated under the same
/// name after the read (a new uid) is left alone; owner annotations are ownership too.
#[tokio::test]
async fn prune_deletes_by_uid_and_checks_owner_annotations() {
    let info = ControlPlane::shared().unwrap();
    let ns = TestNamespace::create(info, "ssa-uid").await.unwrap();
    let client = info.admin_client().await.unwrap();
    let applier = Applier::new(client.clone(), MANAGER, 4);
    let api: Api<ConfigMap> = Api::namespaced(client, ns.name());
    let obj = cm(ns.name(), "replaced", json!({}));
    applier
        .apply_all(vec![ApplyItem::new(obj.clone())], &ApplyOptions::default())
        .await
        .unwrap();
    let old_uid = api.get("replaced").await.unwrap().metadata.uid.unwrap();
    // Someone else replaces it.
    api.delete("replaced", &Default::default()).await.unwrap();
    applier
        .apply_all(vec![ApplyItem::new(obj.clone())], &ApplyOptions::default())
        .await
        .unwrap();
    let r = ObjectRef::from_object(&obj).unwrap();
    let bg = kube::api::PropagationPolicy::Background;
    let deleted = applier.delete_exact(&r, Some(&old_uid), &bg).await.unwrap();
    assert!(!deleted, "a stale uid must not delete the new object");
    let new_uid = api.get("replaced").await.unwrap().metadata.uid.unwrap();
    assert_ne!(new_uid, old_uid);
    assert!(applier.delete_exact(&r, Some(&new_uid), &bg).await.unwrap());
    assert!(api.get_opt("replaced").await.unwrap().is_none());

    // Owner annotations: an object without them is skipped, one with them deleted.
    let mut annotated = cm(ns.name(), "annotated", json!({}));
    annotated["metadata"]["annotations"] = json!({"meta.helm.sh/release-name": "web"});
    let bare = cm(ns.name(), "bare", json!({}));
    applier
        .apply_all(
            vec![
                ApplyItem::new(annotated.clone()),
                ApplyItem::new(bare.clone()),
            ],
            &ApplyOptions::default(),
        )
        .await
        .unwrap();
    let opts = PruneOptions {
        owner_annotations: BTreeMap::from([(
            "meta.helm.sh/release-name".to_string(),
            "web".to_string(),
        )]),
        ..Default::default()
    };
    let stale = [&annotated, &bare].map(|o| ObjectRef::from_object(o).unwrap());
    let set = applier.prune(&stale, &opts).await.unwrap();
    let n = ns.name();
    let got = actions(&set);
    assert!(
        got.contains(&(format!("ConfigMap/{n}/annotated"), Action::Deleted)),
        "{got:?}"
    );
    assert!(
        got.contains(&(format!("ConfigMap/{n}/bare"), Action::Skipped)),
        "{got:?}"
    );
    assert!(api.get_opt("bare").await.unwrap().is_some());
    ns.delete().await.unwrap();
}

#[tokio::test]
async fn health_and_rbac_denial() {
    let info = ControlPlane::shared().unwrap();
    let ns = TestNamespace::create(info, "ssa-health").await.unwrap();
    let applier = Applier::new(info.admin_client().await.unwrap(), MANAGER, 4);
    let deploy = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": ns.name()},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "web", "image": "nginx"}]}}}});
    let config = cm(ns.name(), "c", json!({}));
    applier
        .apply_all(
            vec![
                ApplyItem::new(deploy.clone()),
                ApplyItem::new(config.clone()),
            ],
            &ApplyOptions::default(),
        )
        .await
        .unwrap();
    let refs = vec![
        ObjectRef::from_object(&deploy).unwrap(),
        ObjectRef::from_object(&config).unwrap(),
        ObjectRef::from_object(&cm(ns.name(), "missing", json!({}))).unwrap(),
    ];
    let health = applier.health(&refs).await.unwrap();
    // No kubelet runs pods here: the Deployment can never become available.
    assert_eq!(health[0].1.status, Status::InProgress, "{:?}", health[0]);
    assert_eq!(health[1].1.status, Status::Current);
    assert_eq!(health[2].1.status, Status::NotFound);

    let denied = Applier::new(info.restricted_client().await.unwrap(), MANAGER, 1);
    let err = denied
        .apply_all(
            vec![ApplyItem::new(cm(ns.name(), "d", json!({})))],
            &ApplyOptions::default(),
        )
        .await
        .unwrap_err();
    assert!(err.is_forbidden(), "{err}");
    assert!(
        err.to_string()
            .contains(&format!("ConfigMap/{}/d", ns.name())),
        "{err}"
    );
    ns.delete().await.unwrap();
}
