//! The policies step: the ImagePolicies of the automation's namespace that `policySelector`
//! selects (all of them when it is unset, as Flux) and that have chosen an image.

use std::collections::BTreeMap;

use kube::ResourceExt;
use kube::api::{Api, ListParams};
use plumb_api::image_reflector::ImageRef;
use plumb_api::{ImagePolicy, ImageUpdateAutomation};
use plumb_image::setters::{LatestRef, Policy};

use super::reasons::INVALID_POLICY_SELECTOR;
use crate::context::Context;
use crate::outcome::{Class, Failure};

/// The selected policies, as the Setters take them and as `observedPolicies` reports them.
pub(super) struct Selected {
    pub setters: Vec<Policy>,
    pub observed: BTreeMap<String, ImageRef>,
}

pub(super) async fn selected(
    obj: &ImageUpdateAutomation,
    ctx: &Context,
) -> Result<Selected, Failure> {
    let ns = obj.namespace().unwrap_or_default();
    let mut params = ListParams::default();
    if let Some(sel) = &obj.spec.policy_selector {
        let sel = kube::core::Selector::try_from(sel.clone()).map_err(|e| {
            Failure::new(
                Class::Stalled,
                INVALID_POLICY_SELECTOR,
                format!("spec.policySelector: {e}"),
            )
        })?;
        params = params.labels_from(&sel);
    }
    let api: Api<ImagePolicy> = Api::namespaced(ctx.client.clone(), &ns);
    let list = api.list(&params).await.map_err(|e| {
        Failure::new(
            Class::Transient,
            INVALID_POLICY_SELECTOR,
            format!("listing ImagePolicies in '{ns}': {e}"),
        )
    })?;
    let mut out = Selected {
        setters: Vec::new(),
        observed: BTreeMap::new(),
    };
    for p in list.items {
        let Some(latest) = p.status.as_ref().and_then(|s| s.latest_ref.clone()) else {
            continue;
        };
        out.setters.push(Policy {
            namespace: ns.clone(),
            name: p.name_any(),
            latest: LatestRef {
                name: latest.name.clone(),
                tag: latest.tag.clone(),
                digest: latest.digest.clone().unwrap_or_default(),
            },
        });
        out.observed.insert(p.name_any(), latest);
    }
    Ok(out)
}
