//! Staged server-side apply: definitions first (waited for), then classes, resources and
//! webhooks; within a stage concurrently; force-recreate on immutable fields; foreign field
//! managers removed so that a `kubectl edit` is reverted.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::{StreamExt, stream};
use kube::Error as KubeError;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PropagationPolicy};
use serde_json::{Value, json};

use crate::Error;
use crate::applier::{Applier, Seen, api_message, desired_hash, is_immutable, is_not_found};
use crate::changeset::{Action, Change, ChangeSet};
use crate::object::{ObjectRef, Stage};

/// How one object is applied; the caller derives it from the object's annotations
/// (Flux's `kustomize.toolkit.fluxcd.io/ssa` and `.../force`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SsaMode {
    /// Apply and take ownership of every field in the object (the default).
    #[default]
    Override,
    /// Apply, leaving fields other managers added alone (no managed-fields clean-up).
    Merge,
    /// Create the object if it does not exist; never update it.
    IfNotPresent,
    /// Do not apply the object at all.
    Ignore,
}

/// One object to apply and how.
#[derive(Debug, Clone)]
pub struct ApplyItem {
    /// The object, fully rendered (apiVersion, kind, metadata.name, namespace if namespaced).
    pub object: Value,
    /// Apply mode.
    pub mode: SsaMode,
    /// Delete and recreate on immutable-field errors.
    pub force: bool,
}

impl ApplyItem {
    /// An item applied with the default mode and no force.
    pub fn new(object: Value) -> Self {
        ApplyItem {
            object,
            mode: SsaMode::Override,
            force: false,
        }
    }
}

/// Options for [`Applier::apply_all`].
#[derive(Debug, Clone)]
pub struct ApplyOptions {
    /// Delete and recreate every object that hits an immutable-field error.
    pub force: bool,
    /// Managed-fields entries removed from applied objects, as (manager, operation) — Flux
    /// removes `kubectl`'s and `before-first-apply`'s so that a `kubectl edit` is reverted.
    /// The operation matters: the applier's own `Apply` entry must never match.
    pub cleanup_managers: Vec<(String, String)>,
    /// How long to wait for CRDs to be established and namespaces to be active.
    pub wait_timeout: Duration,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        ApplyOptions {
            force: false,
            cleanup_managers: Vec::new(),
            wait_timeout: Duration::from_secs(60),
        }
    }
}

impl Applier {
    /// Applies `items` in Flux's stages: definitions (then waits for CRDs to be
    /// established and namespaces to be active), classes, resources, webhooks. Within a
    /// stage, objects are applied concurrently. A failing stage stops the apply; its
    /// error lists every object that failed.
    pub async fn apply_all(
        &self,
        items: Vec<ApplyItem>,
        opts: &ApplyOptions,
    ) -> Result<ChangeSet, Error> {
        let mut staged: BTreeMap<Stage, Vec<(ObjectRef, ApplyItem)>> = BTreeMap::new();
        for item in items {
            let r = ObjectRef::from_object(&item.object)?;
            staged.entry(r.stage()).or_default().push((r, item));
        }
        let mut set = ChangeSet::default();
        for (stage, items) in staged {
            let refs: Vec<ObjectRef> = items.iter().map(|(r, _)| r.clone()).collect();
            let results: Vec<(usize, Result<Action, Error>)> =
                stream::iter(items.into_iter().enumerate())
                    .map(|(i, (r, item))| async move { (i, self.apply_one(&r, &item, opts).await) })
                    .buffer_unordered(self.concurrency)
                    .collect()
                    .await;
            let mut ordered: Vec<Option<Result<Action, Error>>> =
                (0..refs.len()).map(|_| None).collect();
            for (i, res) in results {
                ordered[i] = Some(res);
            }
            let mut failures = Vec::new();
            for (r, res) in refs.iter().zip(ordered) {
                match res {
                    Some(Ok(action)) => set.entries.push(Change {
                        object: r.clone(),
                        action,
                    }),
                    Some(Err(e)) => failures.push(e),
                    None => {}
                }
            }
            if !failures.is_empty() {
                return Err(Error::Apply {
                    applied: set,
                    failures,
                });
            }
            if stage == Stage::Definitions {
                self.wait_definitions(&refs, opts.wait_timeout).await?;
            }
        }
        Ok(set)
    }

    /// Applies one object and says what happened.
    pub async fn apply_one(
        &self,
        r: &ObjectRef,
        item: &ApplyItem,
        opts: &ApplyOptions,
    ) -> Result<Action, Error> {
        if item.mode == SsaMode::Ignore {
            return Ok(Action::Skipped);
        }
        let (api, _) = self.api_for(r).await?;
        let key = r.key();
        let known = self.seen.lock().ok().and_then(|m| m.get(&key).cloned());
        // The state before the apply tells unchanged from configured. After the first
        // pass it comes from memory, so a no-op pass costs one request.
        let before = match known {
            Some(seen) if item.mode != SsaMode::IfNotPresent => Some(seen),
            _ => match api.get_metadata_opt(&r.name).await {
                Ok(m) => m.and_then(|m| m.metadata.resource_version).map(|rv| Seen {
                    resource_version: rv,
                    own_entry: None,
                    desired: 0,
                }),
                Err(e) => return Err(Error::api("reading", r, e)),
            },
        };
        if item.mode == SsaMode::IfNotPresent && before.is_some() {
            return Ok(Action::Skipped);
        }
        let params = PatchParams::apply(&self.field_manager).force();
        let mut recreated = false;
        let applied = match self.patch_retrying(&api, r, &params, &item.object).await {
            Ok(o) => o,
            Err(e) if is_immutable(&e) && (item.force || opts.force) => {
                recreated = true;
                self.recreate(&api, r, &params, &item.object, opts.wait_timeout)
                    .await?
            }
            Err(e) if is_immutable(&e) => {
                return Err(Error::Immutable {
                    object: r.to_string(),
                    message: api_message(&e),
                });
            }
            Err(e) => return Err(Error::api("applying", r, e)),
        };
        let applied_fp = self.own_entry(&applied);
        let (applied, cleaned) =
            if item.mode == SsaMode::Override && !opts.cleanup_managers.is_empty() {
                let rv = applied.metadata.resource_version.clone();
                let obj = self
                    .cleanup_managers(&api, r, applied, &opts.cleanup_managers)
                    .await?;
                let cleaned = obj.metadata.resource_version != rv;
                (obj, cleaned)
            } else {
                (applied, false)
            };
        let after = Seen {
            resource_version: applied
                .metadata
                .resource_version
                .clone()
                .unwrap_or_default(),
            own_entry: self.own_entry(&applied),
            desired: desired_hash(&item.object),
        };
        if let Ok(mut m) = self.seen.lock() {
            m.insert(key, after.clone());
        }
        Ok(match before {
            _ if recreated => Action::Created,
            None => Action::Created,
            // Foreign managers (kubectl edit) had to be removed: drift was reverted.
            Some(_) if cleaned => Action::Configured,
            Some(b) if b.resource_version == after.resource_version => Action::Unchanged,
            // Same config as last time and the managers and their fields unchanged:
            // someone else (a status update, a controller) wrote the object, not us.
            Some(b) if b.desired == after.desired && b.own_entry == applied_fp => Action::Unchanged,
            Some(_) => Action::Configured,
        })
    }

    /// Who manages which fields (times left out), as comparable text. Changes when a
    /// manager takes or loses fields, not when one only rewrites values it owns.
    pub(crate) fn own_entry(&self, obj: &DynamicObject) -> Option<String> {
        let mut entries: Vec<String> = obj
            .metadata
            .managed_fields
            .as_ref()?
            .iter()
            .map(|f| {
                serde_json::to_string(&(&f.manager, &f.operation, &f.subresource, &f.fields_v1))
                    .unwrap_or_default()
            })
            .collect();
        entries.sort();
        Some(entries.join("\n"))
    }

    /// A server-side apply, retried a few times when the request got no answer: the
    /// apiserver drops connections while it installs handlers for a new CRD.
    async fn patch_retrying(
        &self,
        api: &Api<DynamicObject>,
        r: &ObjectRef,
        params: &PatchParams,
        obj: &Value,
    ) -> Result<DynamicObject, KubeError> {
        let mut delay = Duration::from_millis(100);
        for _ in 0..4 {
            match api.patch(&r.name, params, &Patch::Apply(obj)).await {
                Err(e) if !matches!(e, KubeError::Api(_)) => {
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
                other => return other,
            }
        }
        api.patch(&r.name, params, &Patch::Apply(obj)).await
    }

    async fn recreate(
        &self,
        api: &Api<DynamicObject>,
        r: &ObjectRef,
        params: &PatchParams,
        obj: &Value,
        timeout: Duration,
    ) -> Result<DynamicObject, Error> {
        let dp = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Background),
            ..DeleteParams::default()
        };
        match api.delete(&r.name, &dp).await {
            Ok(_) => {}
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(Error::api("deleting (to recreate)", r, e)),
        }
        self.wait_gone(api, r, timeout).await?;
        if let Ok(mut m) = self.seen.lock() {
            m.remove(&r.key());
        }
        api.patch(&r.name, params, &Patch::Apply(obj))
            .await
            .map_err(|e| Error::api("recreating", r, e))
    }

    /// Drops managed-fields entries of `managers` so that this applier is the only owner
    /// of what it applied; the next apply then reverts fields they changed.
    async fn cleanup_managers(
        &self,
        api: &Api<DynamicObject>,
        r: &ObjectRef,
        obj: DynamicObject,
        managers: &[(String, String)],
    ) -> Result<DynamicObject, Error> {
        let Some(fields) = obj.metadata.managed_fields.as_ref() else {
            return Ok(obj);
        };
        let is_foreign =
            |f: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry| {
                let (m, op) = (f.manager.as_deref(), f.operation.as_deref());
                managers
                    .iter()
                    .any(|(xm, xop)| m == Some(xm.as_str()) && op == Some(xop.as_str()))
            };
        if !fields.iter().any(is_foreign) {
            return Ok(obj);
        }
        // A JSON patch that removes the foreign entries by index (highest first), guarded by
        // a test of the resource version: a concurrent writer makes it fail instead of
        // losing their change. Removing by index never re-serializes the entries we keep:
        // a 1.20 apiserver that cannot decode re-serialized entries resets managedFields to
        // empty, and the next apply would bring `before-first-apply` back (an endless loop).
        let mut ops = vec![json!({
            "op": "test",
            "path": "/metadata/resourceVersion",
            "value": obj.metadata.resource_version,
        })];
        for (i, _) in fields
            .iter()
            .enumerate()
            .filter(|(_, f)| is_foreign(f))
            .rev()
        {
            ops.push(json!({"op": "remove", "path": format!("/metadata/managedFields/{i}")}));
        }
        let patch: json_patch::Patch = serde_json::from_value(Value::Array(ops))
            .map_err(|e| Error::InvalidObject(format!("managed-fields patch for {r}: {e}")))?;
        let cleaned = api
            .patch(&r.name, &PatchParams::default(), &Patch::Json::<()>(patch))
            .await
            .map_err(|e| Error::api("removing foreign field managers from", r, e))?;
        Ok(cleaned)
    }

    /// Server-side dry-run of applying `item`: (live object if any, object after apply).
    /// Used by `plumb diff`.
    pub async fn dry_run(&self, item: &ApplyItem) -> Result<(Option<Value>, Value), Error> {
        let r = ObjectRef::from_object(&item.object)?;
        let (api, _) = self.api_for(&r).await?;
        let live = api
            .get_opt(&r.name)
            .await
            .map_err(|e| Error::api("reading", &r, e))?;
        let mut params = PatchParams::apply(&self.field_manager).force();
        params.dry_run = true;
        let after = api
            .patch(&r.name, &params, &Patch::Apply(&item.object))
            .await
            .map_err(|e| Error::api("dry-run applying", &r, e))?;
        let to_json = |o: DynamicObject| {
            serde_json::to_value(o).map_err(|e| Error::InvalidObject(format!("{r}: {e}")))
        };
        Ok((live.map(to_json).transpose()?, to_json(after)?))
    }
}
