//! Step **render**: fetch the source artifact, build it with the spec-level overlay
//! (plumb-kustomize, in-process), substitute postBuild variables, stamp ownership labels.
//! Shared with `plumb build ks` / `plumb diff ks` through [`render_objects`].

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::Api;
use kube::{Resource, ResourceExt};
use plumb_api::Kustomization;
use plumb_api::consts::{annotation, label, reason};
use plumb_api::kustomization::{SubstituteStrategy, ValuesKind};
use plumb_ssa::ObjectRef;
use serde_json::Value;

use super::substitute::substitute;
use super::unchanged::Seen;
use crate::context::Context;
use crate::outcome::{Class, Failure};

/// Where [`render_objects`] reads the manifests from.
#[derive(Debug, Clone, Copy)]
pub enum RenderSource<'a> {
    /// The source's artifact (fetched, digest-checked, extracted); `spec.path` is applied.
    Artifact(&'a plumb_api::meta::Artifact),
    /// A local directory holding the manifests to build (`spec.path` is not applied), as
    /// `flux build ks --path` does.
    Local(&'a Path),
}

/// Renders what `obj` applies: build with the spec-level overlay, postBuild substitution,
/// ownership labels. The reconciler and `plumb build/diff ks` share this path.
pub async fn render_objects(
    obj: &Kustomization,
    ctx: &Context,
    source: RenderSource<'_>,
) -> std::result::Result<Vec<Value>, Failure> {
    render_objects_with_keys(obj, ctx, source, None).await
}

/// [`render_objects`] with extra decryption keys (`plumb build/diff ks --decryption-key`),
/// added to those of `spec.decryption`.
pub async fn render_objects_with_keys(
    obj: &Kustomization,
    ctx: &Context,
    source: RenderSource<'_>,
    extra_keys: Option<&plumb_sops::KeyRing>,
) -> std::result::Result<Vec<Value>, Failure> {
    render_with(obj, ctx, source, extra_keys, false)
        .await
        .map(|(objects, _)| objects)
}

/// The reconciler's render of `artifact`, with what the build read and its fingerprint
/// (for the skip of unchanged Kustomizations, see [`super::unchanged`]).
pub(super) async fn render_recorded(
    obj: &Kustomization,
    ctx: &Context,
    artifact: &plumb_api::meta::Artifact,
) -> std::result::Result<(Vec<Value>, Option<Seen>), Failure> {
    render_with(obj, ctx, RenderSource::Artifact(artifact), None, true).await
}

async fn render_with(
    obj: &Kustomization,
    ctx: &Context,
    source: RenderSource<'_>,
    extra_keys: Option<&plumb_sops::KeyRing>,
    record: bool,
) -> std::result::Result<(Vec<Value>, Option<Seen>), Failure> {
    let mut ring = super::decrypt::key_ring(obj, ctx).await?;
    if let Some(extra) = extra_keys.filter(|k| !k.is_empty()) {
        ring.get_or_insert_with(plumb_sops::KeyRing::new)
            .extend(extra);
    }
    let (mut objects, seen) = match source {
        RenderSource::Artifact(artifact) => {
            // Shared with every reader of this digest (see `trees`): a monorepo revision is
            // extracted once, not once per Kustomization.
            let work = super::trees::shared(
                ctx,
                artifact,
                obj.timeout().unwrap_or(Duration::from_secs(300)),
            )
            .await?;
            let dir = spec_dir(obj, work.path())?;
            let log = record.then(plumb_kustomize::ReadLog::new);
            render(obj, dir, work.path().to_path_buf(), ring.clone(), log)
                .await
                .map_err(|f| super::decrypt_identity::reclassify(ctx, obj, f))?
        }
        RenderSource::Local(dir) => {
            if !dir.is_dir() {
                return Err(Failure::new(
                    Class::Stalled,
                    reason::ARTIFACT_FAILED,
                    format!("kustomization path not found: {}", dir.display()),
                ));
            }
            render(
                obj,
                dir.to_path_buf(),
                PathBuf::from("/"),
                ring.clone(),
                None,
            )
            .await
            .map_err(|f| super::decrypt_identity::reclassify(ctx, obj, f))?
        }
    };
    refuse_encrypted(&objects)?;
    if let Some(vars) = substitution_vars(obj, ctx).await? {
        objects = substitute_objects(objects, &vars, ctx.config.strict_substitution)?;
    }
    let labels = owner_labels(obj);
    for o in &mut objects {
        stamp_labels(o, &labels);
    }
    Ok((objects, seen))
}

/// Fails the build when a document is still SOPS-encrypted (it carries SOPS's `sops`
/// metadata with a MAC): applying ciphertext would overwrite a working Secret with garbage.
/// Without `spec.decryption` (or when a document escaped the file transform) this is the
/// decryption failure of Flux's build: nothing is applied or pruned.
pub(super) fn refuse_encrypted(objects: &[Value]) -> std::result::Result<(), Failure> {
    let Some(o) = objects
        .iter()
        .find(|o| o.get("sops").and_then(|s| s.get("mac")).is_some())
    else {
        return Ok(());
    };
    let id = ObjectRef::from_object(o).map_or_else(|_| "a document".to_string(), |r| r.to_string());
    Err(Failure::new(
        Class::Stalled,
        reason::DECRYPTION_FAILED,
        format!(
            "decryption failed for {id}: the document is SOPS-encrypted and the Kustomization has no spec.decryption (or no key opened it); nothing was applied"
        ),
    ))
}

/// The drift watcher's key of `obj`.
pub(super) fn owner_key(obj: &Kustomization) -> (&str, &str) {
    (
        obj.meta().namespace.as_deref().unwrap_or_default(),
        obj.meta().name.as_deref().unwrap_or_default(),
    )
}

/// The labels that mark an object as this Kustomization's (Flux's ownership labels).
pub(super) fn owner_labels(obj: &Kustomization) -> BTreeMap<String, String> {
    BTreeMap::from([
        (label::KUSTOMIZE_NAME.to_string(), obj.name_any()),
        (
            label::KUSTOMIZE_NAMESPACE.to_string(),
            obj.namespace().unwrap_or_default(),
        ),
    ])
}

fn stamp_labels(o: &mut Value, labels: &BTreeMap<String, String>) {
    let Some(meta) = o.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    let l = meta
        .entry("labels")
        .or_insert_with(|| Value::Object(Default::default()));
    if let Some(l) = l.as_object_mut() {
        for (k, v) in labels {
            l.insert(k.clone(), Value::String(v.clone()));
        }
    }
}

/// `spec.path` inside the extracted source `root`, refused when it leaves the source.
fn spec_dir(obj: &Kustomization, root: &Path) -> std::result::Result<PathBuf, Failure> {
    let path = obj.spec.path.clone().unwrap_or_else(|| "./".into());
    let rel = PathBuf::from(path.trim_start_matches('/'));
    if !rel
        .components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(Failure::new(
            Class::Stalled,
            reason::ARTIFACT_FAILED,
            format!("invalid path '{path}': must stay inside the source"),
        ));
    }
    let dir = root.join(&rel);
    if !dir.is_dir() {
        return Err(Failure::new(
            Class::Stalled,
            reason::ARTIFACT_FAILED,
            format!("kustomization path not found: {path}"),
        ));
    }
    Ok(dir)
}

async fn render(
    obj: &Kustomization,
    dir: PathBuf,
    root: PathBuf,
    ring: Option<plumb_sops::KeyRing>,
    log: Option<plumb_kustomize::ReadLog>,
) -> std::result::Result<(Vec<Value>, Option<Seen>), Failure> {
    let overlay = overlay_of(obj);
    tokio::task::spawn_blocking(move || {
        let objects = build_logged(&dir, &root, &overlay, ring, log.clone())?;
        // Hashed now, while the tree the build read is still there.
        let seen = log.map(|l| l.take()).and_then(|reads| {
            let content = super::unchanged::fingerprint(&root, &reads)?;
            Some(Seen { reads, content })
        });
        Ok((objects, seen))
    })
    .await
    .map_err(|e| Failure::new(Class::Transient, reason::BUILD_FAILED, e.to_string()))?
}

/// The build of a Kustomization's `dir` (inside the source root `root`) with the spec-level
/// overlay, SOPS files decrypted with `ring` (those under `dir` ahead, on a few threads),
/// then Secret data values that are SOPS documents. Blocking: a KMS call blocks.
pub fn build_decrypted(
    dir: &Path,
    root: &Path,
    overlay: &plumb_kustomize::Overlay,
    ring: Option<plumb_sops::KeyRing>,
) -> std::result::Result<Vec<Value>, Failure> {
    build_logged(dir, root, overlay, ring, None)
}

fn build_logged(
    dir: &Path,
    root: &Path,
    overlay: &plumb_kustomize::Overlay,
    ring: Option<plumb_sops::KeyRing>,
    read_log: Option<plumb_kustomize::ReadLog>,
) -> std::result::Result<Vec<Value>, Failure> {
    let opts = plumb_kustomize::BuildOptions {
        read_log,
        generate_missing_kustomization: true,
        file_transform: ring
            .clone()
            .map(|r| super::decrypt::decrypting_transform(root, dir, r)),
        ..Default::default()
    };
    let mut objects =
        plumb_kustomize::build_with_overlay(dir, root, &opts, overlay).map_err(build_failure)?;
    // Secret data values that are SOPS documents (Flux's "inside" case).
    if let Some(ring) = &ring {
        super::decrypt::decrypt_secret_values(&mut objects, ring)?;
        ring.record_tree(&super::decrypt::tree_name(root, dir));
    }
    Ok(objects)
}

fn build_failure(e: plumb_kustomize::Error) -> Failure {
    match e {
        plumb_kustomize::Error::Transform { message, .. } => Failure::new(
            Class::Stalled,
            reason::DECRYPTION_FAILED,
            format!("{message}; nothing was applied"),
        ),
        e => Failure::new(Class::Stalled, reason::BUILD_FAILED, e.to_string()),
    }
}

fn overlay_of(obj: &Kustomization) -> plumb_kustomize::Overlay {
    let s = &obj.spec;
    let to_map = |m: &BTreeMap<String, String>| {
        m.iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect::<serde_json::Map<_, _>>()
    };
    plumb_kustomize::Overlay {
        target_namespace: s.target_namespace.clone(),
        name_prefix: s.name_prefix.clone(),
        name_suffix: s.name_suffix.clone(),
        common_labels: s
            .common_metadata
            .as_ref()
            .map(|c| to_map(&c.labels))
            .unwrap_or_default(),
        common_annotations: s
            .common_metadata
            .as_ref()
            .map(|c| to_map(&c.annotations))
            .unwrap_or_default(),
        patches: crate::overlay::patches(&s.patches),
        images: crate::overlay::images(&s.images),
        components: s.components.clone(),
        build_metadata: s
            .build_metadata
            .iter()
            .map(|b| b.as_str().to_string())
            .collect(),
        ignore_missing_components: s.ignore_missing_components,
    }
}

/// The postBuild variables (the controller's cluster facts, then ConfigMaps/Secrets in
/// order, later wins, then the inline ones, which win as in Flux). `None` when the
/// Kustomization has no postBuild, or when no variable is defined (cluster facts, inline
/// or from the references) and `substituteStrategy` is not `Always`: Flux then leaves `${...}` alone.
pub(super) async fn substitution_vars(
    obj: &Kustomization,
    ctx: &Context,
) -> std::result::Result<Option<BTreeMap<String, String>>, Failure> {
    let Some(pb) = &obj.spec.post_build else {
        return Ok(None);
    };
    // The cluster facts count as defined variables (the controller defines them).
    let mut vars = (*ctx.config.cluster_vars.snapshot()).clone();
    vars.extend(referenced_vars(obj, ctx).await?);
    vars.extend(pb.substitute.iter().map(|(k, v)| (k.clone(), v.clone())));
    if vars.is_empty() && pb.substitute_strategy.unwrap_or_default() != SubstituteStrategy::Always {
        return Ok(None);
    }
    Ok(Some(vars))
}

/// The variables of `postBuild.substituteFrom`, in order (later wins). A missing object is
/// empty when `optional`, else a failure that waits for it.
async fn referenced_vars(
    obj: &Kustomization,
    ctx: &Context,
) -> std::result::Result<BTreeMap<String, String>, Failure> {
    let mut vars = BTreeMap::new();
    let Some(pb) = &obj.spec.post_build else {
        return Ok(vars);
    };
    let ns = obj.namespace().unwrap_or_default();
    for from in &pb.substitute_from {
        let found: Option<BTreeMap<String, String>> = match from.kind {
            ValuesKind::ConfigMap => {
                let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &ns);
                api.get_opt(&from.name)
                    .await
                    .map_err(|e| {
                        Failure::new(
                            Class::Transient,
                            reason::BUILD_FAILED,
                            format!("getting ConfigMap '{ns}/{}': {e}", from.name),
                        )
                    })?
                    .map(|c| c.data.unwrap_or_default())
            }
            ValuesKind::Secret => {
                let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
                api.get_opt(&from.name)
                    .await
                    .map_err(|e| {
                        Failure::new(
                            Class::Transient,
                            reason::BUILD_FAILED,
                            format!("getting Secret '{ns}/{}': {e}", from.name),
                        )
                    })?
                    .map(|s| {
                        s.data
                            .unwrap_or_default()
                            .into_iter()
                            .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
                            .collect()
                    })
            }
        };
        match found {
            Some(m) => vars.extend(m),
            None if from.optional => {}
            None => {
                return Err(Failure::new(
                    Class::Waiting,
                    reason::BUILD_FAILED,
                    // Flux's message: the reference, then the API server's not-found text.
                    format!(
                        "substitute from '{kind}/{name}' error: {plural} \"{name}\" not found",
                        kind = from.kind,
                        name = from.name,
                        plural = match from.kind {
                            ValuesKind::ConfigMap => "configmaps",
                            ValuesKind::Secret => "secrets",
                        }
                    ),
                ));
            }
        }
    }
    Ok(vars)
}

fn substitute_objects(
    objects: Vec<Value>,
    vars: &BTreeMap<String, String>,
    strict: bool,
) -> std::result::Result<Vec<Value>, Failure> {
    let mut out = Vec::with_capacity(objects.len());
    for o in objects {
        let disabled = o
            .get("metadata")
            .and_then(|m| m.get("annotations"))
            .and_then(|a| a.get(annotation::KUSTOMIZE_SUBSTITUTE))
            .and_then(Value::as_str)
            == Some(annotation::DISABLED);
        if disabled {
            out.push(o);
            continue;
        }
        let id = ObjectRef::from_object(&o)
            .map(|r| r.to_string())
            .unwrap_or_default();
        let text = plumb_kustomize::to_yaml(&o);
        let replaced = substitute(&text, vars, strict).map_err(|m| {
            Failure::new(
                Class::Stalled,
                reason::BUILD_FAILED,
                format!("{id}: variable '{}' is not set (strict substitution)", m.0),
            )
        })?;
        if replaced == text {
            out.push(o);
            continue;
        }
        let mut parsed = plumb_kustomize::parse_objects(&replaced, &id).map_err(|e| {
            Failure::new(
                Class::Stalled,
                reason::BUILD_FAILED,
                format!("post-build substitution of {id}: {e}"),
            )
        })?;
        if parsed.len() != 1 {
            return Err(Failure::new(
                Class::Stalled,
                reason::BUILD_FAILED,
                format!("post-build substitution of {id} did not yield one object"),
            ));
        }
        out.append(&mut parsed);
    }
    Ok(out)
}
