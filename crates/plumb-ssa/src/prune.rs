//! Prune: delete what a previous inventory held and the new one does not, when the object
//! carries the owner labels and annotations and no skip annotation; resources before
//! definitions. Every delete carries the uid read just before it as a precondition, so an
//! object recreated by someone else in between (same name, new uid) is never deleted.

use std::collections::BTreeMap;
use std::time::Duration;

use kube::api::{DeleteParams, Preconditions, PropagationPolicy};

use crate::Error;
use crate::applier::{Applier, is_not_found};
use crate::changeset::{Action, Change, ChangeSet};
use crate::object::ObjectRef;

/// Options for [`Applier::prune`].
#[derive(Debug, Clone, Default)]
pub struct PruneOptions {
    /// Labels an object must carry to be deleted (ownership), e.g. Flux's
    /// `kustomize.toolkit.fluxcd.io/name` and `.../namespace`.
    pub owner_labels: BTreeMap<String, String>,
    /// Annotations an object must carry to be deleted (ownership), e.g. Helm's
    /// `meta.helm.sh/release-name` and `.../release-namespace`.
    pub owner_annotations: BTreeMap<String, String>,
    /// Annotations (key, value) that exempt an object from deletion, e.g.
    /// `kustomize.toolkit.fluxcd.io/prune: disabled`.
    pub skip_annotations: Vec<(String, String)>,
    /// Deletion propagation (background when `None`).
    pub propagation: Option<PropagationPolicy>,
    /// Wait this long for the deleted objects to be gone (WaitForTermination).
    pub wait: Option<Duration>,
}

impl Applier {
    /// Deletes the objects in `stale` that carry the owner labels and annotations and no
    /// skip annotation. Objects already gone, or of kinds no longer served, are skipped.
    /// Resources go before classes before definitions, so a CRD outlives its CRs.
    pub async fn prune(
        &self,
        stale: &[ObjectRef],
        opts: &PruneOptions,
    ) -> Result<ChangeSet, Error> {
        let mut order: Vec<&ObjectRef> = stale.iter().collect();
        order.sort_by_key(|r| std::cmp::Reverse(r.stage()));
        let propagation = opts
            .propagation
            .clone()
            .unwrap_or(PropagationPolicy::Background);
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
                .all(|(k, v)| labels.get(k) == Some(v))
                && opts
                    .owner_annotations
                    .iter()
                    .all(|(k, v)| annotations.get(k) == Some(v));
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
            if !self
                .delete_if(&api, r, meta.metadata.uid.as_deref(), &propagation)
                .await?
            {
                // The uid changed since the read: a new object of the same name, not ours
                // to judge in this pass.
                set.entries.push(Change {
                    object: r.clone(),
                    action: Action::Skipped,
                });
                continue;
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
}

impl Applier {
    /// Deletes `r` only if its uid is still `uid` (any object of that name when `None`).
    /// Returns false when the precondition failed (the object was replaced); an object
    /// already gone counts as deleted.
    pub async fn delete_exact(
        &self,
        r: &ObjectRef,
        uid: Option<&str>,
        propagation: &PropagationPolicy,
    ) -> Result<bool, Error> {
        let (api, _) = self.api_for(r).await?;
        self.delete_if(&api, r, uid, propagation).await
    }

    async fn delete_if(
        &self,
        api: &kube::Api<kube::api::DynamicObject>,
        r: &ObjectRef,
        uid: Option<&str>,
        propagation: &PropagationPolicy,
    ) -> Result<bool, Error> {
        let dp = DeleteParams {
            propagation_policy: Some(propagation.clone()),
            preconditions: uid.map(|u| Preconditions {
                uid: Some(u.to_string()),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match api.delete(&r.name, &dp).await {
            Ok(_) => Ok(true),
            Err(e) if is_not_found(&e) => Ok(true),
            Err(e) if is_conflict(&e) => Ok(false),
            Err(e) => Err(Error::api("deleting", r, e)),
        }
    }
}

fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(ae) if ae.code == 409)
}
