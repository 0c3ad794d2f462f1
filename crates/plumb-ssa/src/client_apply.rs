//! Client-side apply, as Helm does without server-side apply: an object that does not
//! exist is created; an existing one gets a three-way patch ([`crate::three_way`]: previous
//! manifest, new manifest, live object), strategic for built-in kinds and a JSON merge
//! patch for custom resources. Both are sent with the applier's field manager, so the API
//! server records them as `Update` operations of that manager.

use std::time::Duration;

use kube::api::{DynamicObject, Patch, PatchParams, PostParams};
use serde_json::Value;

use crate::Error;
use crate::applier::Applier;
use crate::object::ObjectRef;
use crate::three_way;

/// One object of a client-side apply.
#[derive(Debug, Clone)]
pub struct ClientSideItem {
    /// The object as the previous release had it (`None`: new in this release, or no
    /// previous release; then nothing is deleted from the live object).
    pub original: Option<Value>,
    /// The object as it should be.
    pub object: Value,
}

/// What a client-side apply did to one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientSideAction {
    /// Created.
    Created,
    /// Patched.
    Patched,
    /// The patch was empty: nothing sent.
    Unchanged,
}

impl Applier {
    /// Creates or patches `items` one after the other, in the given order; a CRD or a
    /// Namespace is waited for (up to `timeout`) before the objects after it.
    pub async fn apply_client_side(
        &self,
        items: &[ClientSideItem],
        timeout: Duration,
    ) -> Result<Vec<(ObjectRef, ClientSideAction)>, Error> {
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            let r = ObjectRef::from_object(&item.object)?;
            let action = self.apply_one_client_side(&r, item).await?;
            self.wait_definitions(std::slice::from_ref(&r), timeout)
                .await?;
            out.push((r, action));
        }
        Ok(out)
    }

    async fn apply_one_client_side(
        &self,
        r: &ObjectRef,
        item: &ClientSideItem,
    ) -> Result<ClientSideAction, Error> {
        let (api, _) = self.api_for(r).await?;
        let fm = self.field_manager().to_string();
        let live = api
            .get_opt(&r.name)
            .await
            .map_err(|e| Error::api("reading", r, e))?;
        let Some(live) = live else {
            let obj: DynamicObject = serde_json::from_value(item.object.clone())
                .map_err(|e| Error::InvalidObject(format!("{r}: {e}")))?;
            let pp = PostParams {
                field_manager: Some(fm),
                ..PostParams::default()
            };
            api.create(&pp, &obj)
                .await
                .map_err(|e| Error::api("creating", r, e))?;
            return Ok(ClientSideAction::Created);
        };
        let current =
            serde_json::to_value(live).map_err(|e| Error::InvalidObject(format!("{r}: {e}")))?;
        let original = item.original.as_ref().unwrap_or(&item.object);
        let strategic = three_way::is_strategic(&r.group);
        let patch = three_way::patch(original, &item.object, &current, strategic);
        if patch.as_object().is_none_or(|m| m.is_empty()) {
            return Ok(ClientSideAction::Unchanged);
        }
        let pp = PatchParams {
            field_manager: Some(fm),
            ..PatchParams::default()
        };
        let patch = if strategic {
            Patch::Strategic(patch)
        } else {
            Patch::Merge(patch)
        };
        api.patch(&r.name, &pp, &patch)
            .await
            .map_err(|e| Error::api("patching", r, e))?;
        Ok(ClientSideAction::Patched)
    }
}
