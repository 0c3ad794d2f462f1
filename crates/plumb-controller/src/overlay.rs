//! Flux's spec-level patches and image overrides as plumb-kustomize overlays (Kustomization
//! `patches`/`images`, HelmRelease kustomize post-renderers).

use serde_json::Value;

/// Flux patches as overlay patches (Kustomization `patches`, HelmRelease post-renderers).
pub fn patches(patches: &[plumb_api::kustomize::Patch]) -> Vec<plumb_kustomize::OverlayPatch> {
    patches
        .iter()
        .map(|p| plumb_kustomize::OverlayPatch {
            patch: p.patch.clone(),
            target: p.target.as_ref().map(|t| plumb_kustomize::Selector {
                group: t.group.clone(),
                version: t.version.clone(),
                kind: t.kind.clone(),
                namespace: t.namespace.clone(),
                name: t.name.clone(),
                annotation_selector: t.annotation_selector.clone(),
                label_selector: t.label_selector.clone(),
            }),
        })
        .collect()
}

/// Flux image overrides as overlay images.
pub fn images(images: &[plumb_api::kustomize::Image]) -> Vec<plumb_kustomize::ImageEntry> {
    images
        .iter()
        .map(|i| plumb_kustomize::ImageEntry {
            name: i.name.clone(),
            new_name: i.new_name.clone(),
            new_tag: i.new_tag.clone().map(Value::String),
            digest: i.digest.clone(),
            ..Default::default()
        })
        .collect()
}
