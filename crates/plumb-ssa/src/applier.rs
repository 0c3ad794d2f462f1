//! The applier: the engine's handle (client, field manager, concurrency), kind resolution
//! through discovery (cached), and the record of what each apply left behind, shared by
//! `apply`, `prune` and `wait`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};
use kube::discovery::Scope;
use kube::{Client, Error as KubeError};
use serde_json::Value;

use crate::Error;
use crate::object::ObjectRef;

#[derive(Debug, Clone)]
pub(crate) struct Resolved {
    pub(crate) ar: ApiResource,
    pub(crate) namespaced: bool,
}

pub(crate) type Key = (String, String, String, String);

/// What an apply left behind: the resource version, and this manager's managed-fields
/// entry (time + fields). Other writers (status updates, controllers) move the resource
/// version; only our own changes move our entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Seen {
    pub(crate) resource_version: String,
    pub(crate) own_entry: Option<String>,
    /// Hash of the object as applied.
    pub(crate) desired: u64,
}

pub(crate) fn desired_hash(obj: &Value) -> u64 {
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
    pub(crate) client: Client,
    pub(crate) field_manager: String,
    pub(crate) concurrency: usize,
    pub(crate) kinds: Arc<RwLock<KindCache>>,
    pub(crate) seen: Arc<Mutex<HashMap<Key, Seen>>>,
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

    /// The API resource of `r`'s kind and whether it is namespaced (discovery, cached).
    pub async fn kind_of(&self, r: &ObjectRef) -> Result<(ApiResource, bool), Error> {
        let res = self.resolve(r).await?;
        Ok((res.ar, res.namespaced))
    }

    pub(crate) async fn api_for(
        &self,
        r: &ObjectRef,
    ) -> Result<(Api<DynamicObject>, Resolved), Error> {
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
}

pub(crate) fn is_not_found(e: &KubeError) -> bool {
    matches!(e, KubeError::Api(ae) if ae.code == 404)
}

pub(crate) fn api_message(e: &KubeError) -> String {
    match e {
        KubeError::Api(ae) => ae.message.clone(),
        other => other.to_string(),
    }
}

/// The API server's ways of saying a field cannot be changed in place.
pub(crate) fn is_immutable(e: &KubeError) -> bool {
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
