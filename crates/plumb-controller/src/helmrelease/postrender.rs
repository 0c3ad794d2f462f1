//! `spec.postRenderStrategy`: which documents go through the post-renderers (Flux 2.9 on
//! Helm 4). `combined` (the default) sends templates and hooks as one stream, `separate`
//! as two streams, `nohooks` (Helm 3) only the templates. After post-rendering, documents
//! are classified again by their annotations, so a hook a post-renderer changed is still a
//! hook and runs at its phase (and a document a post-renderer marks as a hook becomes one).

use std::collections::{BTreeMap, HashMap};

use plumb_api::HelmRelease;
use plumb_api::consts::reason;
use plumb_helm::{Hook, Manifest, Rendered};

use super::render::post_render;
use crate::outcome::{Class, Failure};

/// How hooks meet the post-renderers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Strategy {
    /// Hooks are not post-rendered (Helm 3).
    NoHooks,
    /// Templates and hooks are post-rendered together (Helm 4's default).
    Combined,
    /// Templates and hooks are post-rendered as two streams.
    Separate,
}

impl Strategy {
    /// `spec.postRenderStrategy`, `combined` when unset (Flux 2.9's default).
    pub(super) fn of(obj: &HelmRelease) -> Self {
        match obj.spec.post_render_strategy.as_deref() {
            Some("nohooks") => Strategy::NoHooks,
            Some("separate") => Strategy::Separate,
            _ => Strategy::Combined,
        }
    }
}

/// The post-renderers of a release and how hooks meet them.
pub(super) struct PostRender {
    pub(super) overlays: Vec<plumb_kustomize::Overlay>,
    pub(super) strategy: Strategy,
}

impl PostRender {
    /// The post-rendering `obj` asks for (see [`super::render::post_overlays`]).
    pub(super) fn of(obj: &HelmRelease) -> Self {
        PostRender {
            overlays: super::render::post_overlays(obj),
            strategy: Strategy::of(obj),
        }
    }

    /// Runs the post-renderers over `rendered` as the strategy says.
    pub(super) fn run(&self, rendered: &mut Rendered) -> Result<(), Failure> {
        if self.overlays.is_empty() {
            return Ok(());
        }
        match self.strategy {
            Strategy::NoHooks => {
                rendered.manifests = self.stream(&rendered.manifests)?;
            }
            Strategy::Combined => {
                let mut all = std::mem::take(&mut rendered.manifests);
                all.extend(rendered.hooks.drain(..).map(|h| h.manifest));
                let (manifests, hooks) = classify(&all, self.stream(&all)?)?;
                rendered.manifests = manifests;
                rendered.hooks = hooks;
            }
            Strategy::Separate => {
                let templates = std::mem::take(&mut rendered.manifests);
                let hooks: Vec<Manifest> = rendered.hooks.drain(..).map(|h| h.manifest).collect();
                let mut out = self.stream(&templates)?;
                out.extend(self.stream(&hooks)?);
                let mut originals = templates;
                originals.extend(hooks);
                let (manifests, hooks) = classify(&originals, out)?;
                rendered.manifests = manifests;
                rendered.hooks = hooks;
            }
        }
        Ok(())
    }

    /// One stream through every post-renderer in order (an empty stream stays empty).
    fn stream(&self, docs: &[Manifest]) -> Result<Vec<Manifest>, Failure> {
        let mut docs = docs.to_vec();
        if docs.is_empty() {
            return Ok(docs);
        }
        for overlay in &self.overlays {
            docs = post_render(&docs, overlay)?;
        }
        Ok(docs)
    }
}

/// Sorts post-rendered documents into templates and hooks by their annotations, as Helm
/// does after post-rendering. A document keeps the template path of the original with the
/// same kind and name (hook records name their template).
fn classify(
    originals: &[Manifest],
    out: Vec<Manifest>,
) -> Result<(Vec<Manifest>, Vec<Hook>), Failure> {
    let paths: HashMap<(&str, &str), &str> = originals
        .iter()
        .map(|m| ((m.kind.as_str(), m.name.as_str()), m.path.as_str()))
        .collect();
    let mut files: BTreeMap<String, String> = BTreeMap::new();
    for m in &out {
        let path = paths
            .get(&(m.kind.as_str(), m.name.as_str()))
            .map_or_else(|| m.path.clone(), |p| p.to_string());
        let text = files.entry(path).or_default();
        text.push_str("---\n");
        text.push_str(&m.content);
        text.push('\n');
    }
    plumb_helm::render::sort_manifests(&files).map_err(|e| {
        Failure::new(
            Class::Stalled,
            reason::INSTALL_FAILED,
            format!("post-renderer output: {e}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc(kind: &str, name: &str, hook: Option<&str>) -> Manifest {
        let ann = hook.map_or(String::new(), |h| {
            format!("\n  annotations:\n    helm.sh/hook: {h}")
        });
        Manifest {
            path: format!("c/templates/{name}.yaml"),
            content: format!("apiVersion: v1\nkind: {kind}\nmetadata:\n  name: {name}{ann}"),
            api_version: "v1".into(),
            kind: kind.into(),
            name: name.into(),
        }
    }

    fn rendered() -> Rendered {
        Rendered {
            manifests: vec![doc("ConfigMap", "app", None)],
            hooks: vec![Hook {
                manifest: doc("ConfigMap", "pre", Some("pre-install")),
                events: vec!["pre-install".into()],
                weight: 0,
                delete_policies: vec![],
            }],
            ..Default::default()
        }
    }

    /// A post-renderer labelling every ConfigMap.
    fn label_all(strategy: Strategy) -> PostRender {
        let patch: plumb_api::kustomize::Patch = serde_json::from_value(json!({
            "patch": "- op: add\n  path: /metadata/labels\n  value: {patched: \"yes\"}",
            "target": {"kind": "ConfigMap"}
        }))
        .unwrap();
        PostRender {
            overlays: vec![plumb_kustomize::Overlay {
                patches: crate::overlay::patches(&[patch]),
                ..Default::default()
            }],
            strategy,
        }
    }

    #[test]
    fn default_is_combined() {
        let hr: HelmRelease = serde_json::from_value(json!({
            "apiVersion": "helm.toolkit.fluxcd.io/v2", "kind": "HelmRelease",
            "metadata": {"name": "x"}, "spec": {"interval": "1m"}
        }))
        .unwrap();
        assert_eq!(Strategy::of(&hr), Strategy::Combined);
    }

    #[test]
    fn hooks_are_post_rendered_unless_nohooks() {
        for (strategy, hook_patched) in [
            (Strategy::NoHooks, false),
            (Strategy::Combined, true),
            (Strategy::Separate, true),
        ] {
            let mut r = rendered();
            label_all(strategy).run(&mut r).unwrap();
            assert_eq!(r.manifests.len(), 1, "{strategy:?}");
            assert!(r.manifests[0].content.contains("patched"), "{strategy:?}");
            assert_eq!(r.hooks.len(), 1, "{strategy:?}: the hook is still a hook");
            let h = &r.hooks[0];
            assert_eq!(h.events, vec!["pre-install".to_string()]);
            assert_eq!(h.manifest.path, "c/templates/pre.yaml");
            assert_eq!(
                h.manifest.content.contains("patched"),
                hook_patched,
                "{strategy:?}"
            );
        }
    }
}
