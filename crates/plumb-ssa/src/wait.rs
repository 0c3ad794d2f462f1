//! Waiting and health: CRDs established and namespaces active before the next stage, objects
//! gone after a delete, and the kstatus health of objects read once (never blocking).

use std::time::{Duration, Instant};

use futures::{StreamExt, stream};
use kube::api::{Api, DynamicObject};

use crate::Error;
use crate::applier::Applier;
use crate::kstatus::{self, Health, Status};
use crate::legacy_ready;
use crate::object::ObjectRef;

impl Applier {
    pub(crate) async fn wait_gone(
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

    pub(crate) async fn wait_definitions(
        &self,
        refs: &[ObjectRef],
        timeout: Duration,
    ) -> Result<(), Error> {
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

    /// The kstatus health of each object, read once (never waits).
    pub async fn health(&self, objects: &[ObjectRef]) -> Result<Vec<(ObjectRef, Health)>, Error> {
        self.health_with(objects, &|_, _| None).await
    }

    /// [`Applier::health`] with a custom judge: where `judge` returns a health for an
    /// object (as JSON), that replaces kstatus (e.g. CEL health expressions for a kind).
    pub async fn health_with(
        &self,
        objects: &[ObjectRef],
        judge: &(dyn Fn(&ObjectRef, &serde_json::Value) -> Option<Health> + Sync),
    ) -> Result<Vec<(ObjectRef, Health)>, Error> {
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
                        judge(r, &v).unwrap_or_else(|| kstatus::compute(&v))
                    }
                };
                Ok((r.clone(), health))
            })
            .buffered(self.concurrency)
            .collect()
            .await;
        results.into_iter().collect()
    }
    /// Helm 3's readiness of each object ([`crate::legacy_ready`]), read once: the object
    /// and what its rule needs (a Deployment's ReplicaSets, a ReplicaSet's pods). A missing
    /// object fails, as Helm's wait does.
    pub async fn health_legacy(
        &self,
        objects: &[ObjectRef],
    ) -> Result<Vec<(ObjectRef, Health)>, Error> {
        let results: Vec<Result<(ObjectRef, Health), Error>> = stream::iter(objects.to_vec())
            .map(|r| async move {
                let (api, _) = self.api_for(&r).await?;
                let obj = api
                    .get_opt(&r.name)
                    .await
                    .map_err(|e| Error::api("reading readiness of", &r, e))?;
                let Some(obj) = obj else {
                    let h = Health {
                        status: Status::Failed,
                        message: "not found".into(),
                    };
                    return Ok((r, h));
                };
                let v = serde_json::to_value(obj)
                    .map_err(|e| Error::InvalidObject(format!("{r}: {e}")))?;
                let related = match legacy_ready::related(&v) {
                    None => Vec::new(),
                    Some(q) => self.list_related(&r, &q).await?,
                };
                Ok((r, legacy_ready::ready(&v, &related)))
            })
            .buffered(self.concurrency)
            .collect()
            .await;
        results.into_iter().collect()
    }

    async fn list_related(
        &self,
        r: &ObjectRef,
        q: &legacy_ready::Related,
    ) -> Result<Vec<serde_json::Value>, Error> {
        let (group, version) = if q.kind == "Pod" {
            ("", "v1")
        } else {
            ("apps", "v1")
        };
        let gvk = kube::api::GroupVersionKind::gvk(group, version, q.kind);
        let ar = kube::api::ApiResource::from_gvk(&gvk);
        let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), &r.namespace, &ar);
        let list = api
            .list(&kube::api::ListParams::default().labels(&q.selector))
            .await
            .map_err(|e| Error::api(&format!("listing {}s of", q.kind), r, e))?;
        list.items
            .into_iter()
            .map(|o| serde_json::to_value(o).map_err(|e| Error::InvalidObject(format!("{r}: {e}"))))
            .collect()
    }
}
