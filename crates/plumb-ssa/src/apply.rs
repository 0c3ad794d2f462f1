//! The applier: staged server-side apply, prune and health, over any kind the API server
//! serves (resolved through discovery, cached, refreshed when CRDs arrive).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use futures::{StreamExt, stream};
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams,
    PropagationPolicy,
};
use kube::discovery::Scope;
use kube::{Client, Error as KubeError};
use serde_json::{Value, json};

use crate::Error;
use crate::kstatus::{self, Health, Status};
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

/// What happened to one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    /// The object did not exist and was created (or was recreated).
    Created,
    /// The object existed and changed.
    Configured,
    /// The object existed and did not change.
    Unchanged,
    /// The object was deleted.
    Deleted,
    /// The object was left alone (ssa Ignore/IfNotPresent, prune disabled, not owned).
    Skipped,
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Flux's wording in events: "Deployment/ns/x configured".
        f.write_str(match self {
            Action::Created => "created",
            Action::Configured => "configured",
            Action::Unchanged => "unchanged",
            Action::Deleted => "deleted",
            Action::Skipped => "skipped",
        })
    }
}

/// One entry of a [`ChangeSet`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The object.
    pub object: ObjectRef,
    /// What happened.
    pub action: Action,
}

/// What an apply or prune did, object by object, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChangeSet {
    /// The changes.
    pub entries: Vec<Change>,
}

impl ChangeSet {
    /// Entries other than Unchanged/Skipped, as `Kind/ns/name action` lines (event text).
    pub fn summary(&self) -> String {
        self.entries
            .iter()
            .filter(|c| !matches!(c.action, Action::Unchanged | Action::Skipped))
            .map(|c| format!("{} {}", c.object, c.action))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// How many entries had `action`.
    pub fn count(&self, action: Action) -> usize {
        self.entries.iter().filter(|c| c.action == action).count()
    }
}

/// Options for [`Applier::prune`].
#[derive(Debug, Clone, Default)]
pub struct PruneOptions {
    /// Labels an object must carry to be deleted (ownership), e.g. Flux's
    /// `kustomize.toolkit.fluxcd.io/name` and `.../namespace`.
    pub owner_labels: BTreeMap<String, String>,
    /// Annotations (key, value) that exempt an object from deletion, e.g.
    /// `kustomize.toolkit.fluxcd.io/prune: disabled`.
    pub skip_annotations: Vec<(String, String)>,
    /// Deletion propagation (background when `None`).
    pub propagation: Option<PropagationPolicy>,
    /// Wait this long for the deleted objects to be gone (WaitForTermination).
    pub wait: Option<Duration>,
}

#[derive(Debug, Clone)]
struct Resolved {
    ar: ApiResource,
    namespaced: bool,
}

type Key = (String, String, String, String);

/// What an apply left behind: the resource version, and this manager's managed-fields
/// entry (time + fields). Other writers (status updates, controllers) move the resource
/// version; only our own changes move our entry.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    resource_version: String,
    own_entry: Option<String>,
    /// Hash of the object as applied.
    desired: u64,
}

fn desired_hash(obj: &Value) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    obj.to_string().hash(&mut h);
    h.finish()
}
/// (group, version, kind) -> how to reach it.
type KindCache = HashMap<(String, String, String), Resolved>;

/// The apply engine. Cheap to clone; clones share the discovery cache and the record of
/// resource versions seen, which is what lets a no-op pass cost one request per object.
#[derive(Clone)]
pub struct Applier {
    client: Client,
    field_manager: String,
    concurrency: usize,
    kinds: Arc<RwLock<KindCache>>,
    seen: Arc<Mutex<HashMap<Key, Seen>>>,
}

impl std::fmt::Debug for Applier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Applier")
            .field("field_manager", &self.field_manager)
            .field("concurrency", &self.concurrency)
            .finish()
    }
}

impl Applier {
    /// An applier writing as `field_manager`, with at most `concurrency` requests in flight.
    pub fn new(client: Client, field_manager: &str, concurrency: usize) -> Self {
        Applier {
            client,
            field_manager: field_manager.to_string(),
            concurrency: concurrency.max(1),
            kinds: Arc::default(),
            seen: Arc::default(),
        }
    }

    /// True when `resource_version` is the one this applier's last apply of `r` left
    /// behind, i.e. the change that produced it was our own (drift watches skip it).
    pub fn produced(&self, r: &ObjectRef, resource_version: &str) -> bool {
        self.seen
            .lock()
            .ok()
            .and_then(|m| {
                m.get(&r.key())
                    .map(|s| s.resource_version == resource_version)
            })
            .unwrap_or(false)
    }

    /// The field manager this applier writes as.
    pub fn field_manager(&self) -> &str {
        &self.field_manager
    }

    /// The client this applier talks through.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Resolves the kind of `r` through discovery (cached).
    async fn resolve(&self, r: &ObjectRef) -> Result<Resolved, Error> {
        let k = (r.group.clone(), r.version.clone(), r.kind.clone());
        if let Some(res) = self.kinds.read().ok().and_then(|m| m.get(&k).cloned()) {
            return Ok(res);
        }
        let gvk = GroupVersionKind::gvk(&r.group, &r.version, &r.kind);
        match kube::discovery::pinned_kind(&self.client, &gvk).await {
            Ok((ar, caps)) => {
                let res = Resolved {
                    ar,
                    namespaced: caps.scope == Scope::Namespaced,
                };
                if let Ok(mut m) = self.kinds.write() {
                    m.insert(k, res.clone());
                }
                Ok(res)
            }
            Err(e) if is_not_found(&e) || matches!(e, KubeError::Discovery(_)) => {
                Err(Error::UnknownKind {
                    api_version: r.api_version(),
                    kind: r.kind.clone(),
                    object: r.to_string(),
                })
            }
            Err(e) => Err(Error::api("discovering kind of", r, e)),
        }
    }

    async fn api_for(&self, r: &ObjectRef) -> Result<(Api<DynamicObject>, Resolved), Error> {
        let res = self.resolve(r).await?;
        let api = if res.namespaced {
            if r.namespace.is_empty() {
                return Err(Error::InvalidObject(format!(
                    "{r}: namespaced kind without metadata.namespace"
                )));
            }
            Api::namespaced_with(self.client.clone(), &r.namespace, &res.ar)
        } else {
            Api::all_with(self.client.clone(), &res.ar)
        };
        Ok((api, res))
    }

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
    fn own_entry(&self, obj: &DynamicObject) -> Option<String> {
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

    async fn wait_gone(
        &self,
        api: &Api<DynamicObject>,
        r: &ObjectRef,
        timeout: Duration,
    ) -> Result<(), Error> {
        let deadline = Instant::now() + timeout;
        loop {
            match api.get_metadata_opt(&r.name).await {
                Ok(None) => return Ok(()),
                Ok(Some(_)) => {}
                Err(e) => return Err(Error::api("waiting for deletion of", r, e)),
            }
            if Instant::now() > deadline {
                return Err(Error::Timeout {
                    what: format!("deletion of {r}"),
                    after: timeout,
                });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
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

    async fn wait_definitions(&self, refs: &[ObjectRef], timeout: Duration) -> Result<(), Error> {
        let waited: Vec<&ObjectRef> = refs
            .iter()
            .filter(|r| {
                matches!(
                    (r.group.as_str(), r.kind.as_str()),
                    ("apiextensions.k8s.io", "CustomResourceDefinition") | ("", "Namespace")
                )
            })
            .collect();
        if waited.is_empty() {
            return Ok(());
        }
        let deadline = Instant::now() + timeout;
        for r in waited {
            let (api, _) = self.api_for(r).await?;
            loop {
                let obj = api
                    .get_opt(&r.name)
                    .await
                    .map_err(|e| Error::api("waiting for", r, e))?;
                let health = obj
                    .as_ref()
                    .map(|o| serde_json::to_value(o).map(|v| kstatus::compute(&v)))
                    .transpose()
                    .map_err(|e| Error::InvalidObject(e.to_string()))?;
                if let (
                    Some(o),
                    Some(Health {
                        status: Status::Current,
                        ..
                    }),
                ) = (&obj, &health)
                {
                    // The server wrote status since our apply: remember that state, so the
                    // next pass does not mistake it for a change of ours.
                    let fp = self.own_entry(o);
                    if let Ok(mut m) = self.seen.lock()
                        && let Some(seen) = m.get_mut(&r.key())
                    {
                        seen.resource_version =
                            o.metadata.resource_version.clone().unwrap_or_default();
                        seen.own_entry = fp;
                    }
                    break;
                }
                if Instant::now() > deadline {
                    return Err(Error::Timeout {
                        what: format!("{r} to be ready"),
                        after: timeout,
                    });
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        // New CRDs mean new kinds: forget negative results so later stages rediscover.
        // (Positive entries stay valid; only misses are never cached.)
        Ok(())
    }

    /// Deletes the objects in `stale` that carry the owner labels and no skip
    /// annotation. Objects already gone, or of kinds no longer served, are skipped.
    /// Resources go before classes before definitions, so a CRD outlives its CRs.
    pub async fn prune(
        &self,
        stale: &[ObjectRef],
        opts: &PruneOptions,
    ) -> Result<ChangeSet, Error> {
        let mut order: Vec<&ObjectRef> = stale.iter().collect();
        order.sort_by_key(|r| std::cmp::Reverse(r.stage()));
        let dp = DeleteParams {
            propagation_policy: Some(
                opts.propagation
                    .clone()
                    .unwrap_or(PropagationPolicy::Background),
            ),
            ..DeleteParams::default()
        };
        let mut set = ChangeSet::default();
        let mut deleted = Vec::new();
        for r in order {
            let (api, _) = match self.api_for(r).await {
                Ok(x) => x,
                Err(Error::UnknownKind { .. }) => {
                    set.entries.push(Change {
                        object: r.clone(),
                        action: Action::Skipped,
                    });
                    continue;
                }
                Err(e) => return Err(e),
            };
            let Some(meta) = api
                .get_metadata_opt(&r.name)
                .await
                .map_err(|e| Error::api("reading (to prune)", r, e))?
            else {
                continue;
            };
            let labels = meta.metadata.labels.clone().unwrap_or_default();
            let annotations = meta.metadata.annotations.clone().unwrap_or_default();
            let owned = opts
                .owner_labels
                .iter()
                .all(|(k, v)| labels.get(k) == Some(v));
            let exempt = opts
                .skip_annotations
                .iter()
                .any(|(k, v)| annotations.get(k) == Some(v));
            if !owned || exempt || meta.metadata.deletion_timestamp.is_some() {
                set.entries.push(Change {
                    object: r.clone(),
                    action: Action::Skipped,
                });
                continue;
            }
            match api.delete(&r.name, &dp).await {
                Ok(_) => {}
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(Error::api("deleting", r, e)),
            }
            if let Ok(mut m) = self.seen.lock() {
                m.remove(&r.key());
            }
            set.entries.push(Change {
                object: r.clone(),
                action: Action::Deleted,
            });
            deleted.push((api, r));
        }
        if let Some(timeout) = opts.wait {
            for (api, r) in deleted {
                self.wait_gone(&api, r, timeout).await?;
            }
        }
        Ok(set)
    }

    /// The kstatus health of each object, read once (never waits).
    pub async fn health(&self, objects: &[ObjectRef]) -> Result<Vec<(ObjectRef, Health)>, Error> {
        let results: Vec<Result<(ObjectRef, Health), Error>> = stream::iter(objects.to_vec())
            .map(|r| async move {
                let r = &r;
                let (api, _) = self.api_for(r).await?;
                let obj = api
                    .get_opt(&r.name)
                    .await
                    .map_err(|e| Error::api("reading health of", r, e))?;
                let health = match obj {
                    None => Health {
                        status: Status::NotFound,
                        message: "not found".into(),
                    },
                    Some(o) => {
                        let v = serde_json::to_value(o)
                            .map_err(|e| Error::InvalidObject(format!("{r}: {e}")))?;
                        kstatus::compute(&v)
                    }
                };
                Ok((r.clone(), health))
            })
            .buffered(self.concurrency)
            .collect()
            .await;
        results.into_iter().collect()
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

fn is_not_found(e: &KubeError) -> bool {
    matches!(e, KubeError::Api(ae) if ae.code == 404)
}

fn api_message(e: &KubeError) -> String {
    match e {
        KubeError::Api(ae) => ae.message.clone(),
        other => other.to_string(),
    }
}

/// The API server's ways of saying a field cannot be changed in place.
fn is_immutable(e: &KubeError) -> bool {
    let KubeError::Api(ae) = e else { return false };
    if ae.code != 422 {
        return false;
    }
    let m = ae.message.as_str();
    m.contains("field is immutable")
        || m.contains("cannot change roleRef")
        || m.contains("may not change once set")
        || m.contains("Forbidden: updates to")
        || m.contains("is immutable")
}
