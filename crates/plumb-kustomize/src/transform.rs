//! Built-in transformers: namespace, name prefix/suffix, labels, annotations, images,
//! replicas and patches (strategic merge and JSON 6902).

use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::fieldspec::{FieldSpec, applicable, visit};
use crate::kustomization::{ImageEntry, Selector};
use crate::resource::{Matcher, Res, value_string};
use crate::schema::Schema;

/// Sets the namespace of every namespaced object (and of `default` service-account subjects
/// of role bindings).
pub(crate) fn namespace(
    resources: &mut [Res],
    ns: &str,
    specs: &[FieldSpec],
    unset_only: bool,
    subjects_mode: &str,
) -> Result<()> {
    each_res(resources, |r| {
        // kustomize records the id of every object the namespace transformer visits, which
        // makes even unchanged objects candidates for name-reference fix-up.
        r.record_prev();
        let here = applicable(specs, r);
        let (is_namespace, is_binding) = {
            let g = r.gvk_ref();
            (
                g.kind == "Namespace" && g.group.is_empty() && g.version == "v1",
                g.kind == "RoleBinding" || g.kind == "ClusterRoleBinding",
            )
        };
        let cluster = r.is_cluster_scoped();
        for fs in here {
            let is_md = fs.raw_path == "metadata/namespace";
            if is_md {
                if cluster {
                    continue;
                }
                if unset_only && !r.namespace().is_empty() {
                    continue;
                }
                r.set_namespace(ns);
                continue;
            }
            if fs.raw_path == "metadata/name" {
                // kustomize renames core Namespace objects to the target namespace.
                if is_namespace {
                    r.set_name(ns);
                }
                continue;
            }
            with_obj(r, |obj| {
                visit(obj, &fs.path, fs.create, &mut |v| {
                    if !(unset_only && v.as_str().is_some_and(|s| !s.is_empty())) {
                        *v = Value::String(ns.to_string());
                    }
                    Ok(())
                })
            })?;
        }
        if is_binding
            && subjects_mode != "none"
            && let Some(Value::Array(subjects)) = r.obj.get_mut("subjects")
        {
            for s in subjects.iter_mut() {
                let Some(m) = s.as_object_mut() else { continue };
                let is_sa = m.get("kind").and_then(Value::as_str) == Some("ServiceAccount");
                let name_default = m.get("name").and_then(Value::as_str) == Some("default");
                let update = match subjects_mode {
                    "allServiceAccounts" => is_sa,
                    _ => name_default,
                };
                if update {
                    m.insert("namespace".into(), Value::String(ns.to_string()));
                }
            }
        }
        Ok(())
    })
}

fn prefix_skipped(r: &Res) -> bool {
    let g = r.gvk_ref();
    g.kind == "CustomResourceDefinition"
        || g.kind == "Namespace"
        || (g.kind == "APIService" && g.group == "apiregistration.k8s.io")
}

/// Adds a name prefix and/or suffix.
pub(crate) fn prefix_suffix(
    resources: &mut [Res],
    prefix: &str,
    suffix: &str,
    specs: &[FieldSpec],
) -> Result<()> {
    if prefix.is_empty() && suffix.is_empty() {
        return Ok(());
    }
    each_res(resources, |r| {
        if prefix_skipped(r) {
            return Ok(());
        }
        for fs in applicable(specs, r) {
            if fs.raw_path == "metadata/name" {
                let n = format!("{prefix}{}{suffix}", r.name());
                r.set_name(&n);
                if !prefix.is_empty() {
                    r.prefixes.push(prefix.to_string());
                }
                if !suffix.is_empty() {
                    r.suffixes.push(suffix.to_string());
                }
            } else {
                with_obj(r, |obj| {
                    visit(obj, &fs.path, fs.create, &mut |v| {
                        if let Some(s) = v.as_str() {
                            *v = Value::String(format!("{prefix}{s}{suffix}"));
                        }
                        Ok(())
                    })
                })?;
            }
        }
        Ok(())
    })
}

/// Objects per parallel task; fewer objects than this are transformed on the calling thread.
const PAR_CHUNK: usize = 128;

/// Runs `f` on every resource (independently, so large sets are split across threads). The
/// error reported is the one of the first failing resource in order, as a sequential loop would.
pub(crate) fn each_res<F>(resources: &mut [Res], f: F) -> Result<()>
where
    F: Fn(&mut Res) -> Result<()> + Sync + Send,
{
    if resources.len() < 2 * PAR_CHUNK {
        return resources.iter_mut().try_for_each(f);
    }
    use rayon::prelude::*;
    resources
        .par_iter_mut()
        .with_min_len(PAR_CHUNK)
        .map(f)
        .find_first(Result::is_err)
        .unwrap_or(Ok(()))
}

/// Runs `f` on the object as a `Value`.
pub(crate) fn with_obj<T>(r: &mut Res, f: impl FnOnce(&mut Value) -> Result<T>) -> Result<T> {
    let mut obj = Value::Object(std::mem::take(&mut r.obj));
    let out = f(&mut obj);
    r.obj = match obj {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    out
}

/// Adds key/value pairs to the map fields named by `specs` (labels, annotations, selectors).
pub(crate) fn add_map_entries(
    resources: &mut [Res],
    pairs: &Map<String, Value>,
    specs: &[FieldSpec],
) -> Result<()> {
    if pairs.is_empty() {
        return Ok(());
    }
    each_res(resources, |r| {
        for fs in applicable(specs, r) {
            with_obj(r, |obj| {
                visit(obj, &fs.path, fs.create, &mut |v| {
                    if v.is_null() {
                        *v = Value::Object(Map::new());
                    }
                    if let Value::Object(m) = v {
                        for (k, val) in pairs {
                            m.insert(k.clone(), Value::String(value_string(val)));
                        }
                    }
                    Ok(())
                })
            })?;
        }
        Ok(())
    })
}

/// Splits an image reference into name, tag and digest.
fn split_image(s: &str) -> (&str, Option<&str>, Option<&str>) {
    let (rest, digest) = match s.split_once('@') {
        Some((r, d)) => (r, Some(d)),
        None => (s, None),
    };
    let slash = rest.rfind('/').map(|i| i + 1).unwrap_or(0);
    match rest[slash..].rfind(':') {
        Some(i) => (&rest[..slash + i], Some(&rest[slash + i + 1..]), digest),
        None => (rest, None, digest),
    }
}

fn update_image(img: &str, e: &ImageEntry) -> Option<String> {
    let (name, tag, digest) = split_image(img);
    if name != e.name {
        return None;
    }
    let new_name = e
        .new_name
        .as_deref()
        .filter(|n| !n.is_empty())
        .unwrap_or(name);
    let new_tag = e
        .new_tag
        .as_ref()
        .map(value_string)
        .filter(|t| !t.is_empty());
    let new_digest = e.digest.as_deref().filter(|d| !d.is_empty());
    let mut out = new_name.to_string();
    if let Some(d) = new_digest {
        out.push('@');
        out.push_str(d);
        return Some(out);
    }
    let tag = new_tag.or_else(|| tag.map(String::from));
    let tag = match (&tag, e.tag_suffix.as_deref().filter(|s| !s.is_empty())) {
        (Some(t), Some(s)) => Some(format!("{t}{s}")),
        (None, Some(s)) => Some(s.to_string()),
        (t, None) => t.clone(),
    };
    if let Some(t) = tag {
        out.push(':');
        out.push_str(&t);
        if e.new_tag.is_none()
            && let Some(d) = digest
        {
            out.push('@');
            out.push_str(d);
        }
    } else if let Some(d) = digest {
        out.push('@');
        out.push_str(d);
    }
    Some(out)
}

fn walk_containers(v: &mut Value, e: &ImageEntry) {
    match v {
        Value::Object(m) => {
            for (k, child) in m.iter_mut() {
                if (k == "containers" || k == "initContainers" || k == "ephemeralContainers")
                    && child.is_array()
                    && let Value::Array(items) = child
                {
                    for c in items.iter_mut() {
                        if let Some(Value::String(img)) = c.get_mut("image")
                            && let Some(n) = update_image(img, e)
                        {
                            *img = n;
                        }
                    }
                }
                walk_containers(child, e);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| walk_containers(x, e)),
        _ => {}
    }
}

/// Rewrites container images.
pub(crate) fn images(
    resources: &mut [Res],
    entries: &[ImageEntry],
    specs: &[FieldSpec],
) -> Result<()> {
    each_res(resources, |r| {
        let here = applicable(specs, r);
        for e in entries {
            with_obj(r, |obj| {
                walk_containers(obj, e);
                for fs in &here {
                    visit(obj, &fs.path, false, &mut |v| {
                        if let Some(n) = v.as_str().and_then(|s| update_image(s, e)) {
                            *v = Value::String(n);
                        }
                        Ok(())
                    })?;
                }
                Ok(())
            })?;
        }
        Ok(())
    })
}

/// Sets replica counts on objects with the given name.
pub(crate) fn replicas(
    resources: &mut [Res],
    name: &str,
    count: i64,
    specs: &[FieldSpec],
) -> Result<()> {
    for r in resources.iter_mut() {
        if !r.all_id_refs().any(|id| id.name == name) {
            continue;
        }
        for fs in applicable(specs, r) {
            with_obj(r, |obj| {
                visit(obj, &fs.path, fs.create, &mut |v| {
                    *v = Value::from(count);
                    Ok(())
                })
            })?;
        }
    }
    Ok(())
}

/// A parsed patch: strategic merge documents or JSON 6902 operations.
pub(crate) enum Patch {
    Smp(Vec<Map<String, Value>>),
    Json(Vec<Value>),
}

/// Parses patch text: a YAML/JSON list is JSON 6902; maps are strategic merge patches.
pub(crate) fn parse_patch(text: &str, file: &str) -> Result<Patch> {
    let docs = crate::yaml::parse_documents(text, file)?;
    if docs.len() == 1
        && let Value::Array(ops) = &docs[0]
    {
        return Ok(Patch::Json(ops.clone()));
    }
    let mut smp = Vec::new();
    for d in docs {
        match d {
            Value::Object(m) => smp.push(m),
            Value::Array(_) => {
                return Err(Error::invalid(
                    file,
                    "a JSON 6902 patch must be the only document",
                ));
            }
            _ => {
                return Err(Error::invalid(
                    file,
                    "a patch must be a YAML mapping or a list of JSON 6902 operations",
                ));
            }
        }
    }
    Ok(Patch::Smp(smp))
}

/// Patch options.
#[derive(Default, Clone, Copy)]
pub(crate) struct PatchOptions {
    pub allow_name_change: bool,
    pub allow_kind_change: bool,
}

/// Applies one strategic merge patch document to `r`, keeping its identity unless the options
/// allow changing it. Returns false when the patch deletes the object.
fn smp_one(r: &mut Res, doc: &Map<String, Value>, opts: PatchOptions, schema: &Schema) -> bool {
    let (n, ns, k, av) = (
        r.name().to_string(),
        r.namespace().to_string(),
        r.kind().to_string(),
        r.api_version().to_string(),
    );
    let gvk = r.gvk();
    let builtin = crate::schema::builtin();
    let (sch, def) = match schema.def_for(&gvk) {
        Some(d) => (schema, Some(d)),
        None => (builtin, builtin.def_for(&gvk)),
    };
    let mut p = doc.clone();
    // The patch's identity fields are not content.
    p.remove("apiVersion");
    if !opts.allow_kind_change {
        p.remove("kind");
    }
    if opts.allow_name_change || opts.allow_kind_change {
        r.record_prev();
    }
    if !crate::smp::apply(&mut r.obj, &p, sch, def) {
        return false;
    }
    r.obj.insert("apiVersion".into(), Value::String(av));
    if !opts.allow_kind_change {
        r.obj.insert("kind".into(), Value::String(k));
    }
    if !opts.allow_name_change {
        r.metadata_mut().insert("name".into(), Value::String(n));
    }
    let md = r.metadata_mut();
    if ns.is_empty() {
        md.remove("namespace");
    } else {
        md.insert("namespace".into(), Value::String(ns));
    }
    true
}

/// Applies a patch to the selected objects (or, for strategic merge without a target, to the
/// object the patch names). Deleted objects are removed.
pub(crate) fn apply_patch(
    resources: &mut Vec<Res>,
    patch: &Patch,
    target: Option<&Selector>,
    opts: PatchOptions,
    schema: &Schema,
    ctx: &str,
) -> Result<()> {
    match patch {
        Patch::Json(ops) => {
            let sel =
                target.ok_or_else(|| Error::build(ctx, "a JSON 6902 patch needs a target"))?;
            let m = Matcher::new(sel, ctx)?;
            each_res(resources, |r| {
                if !m.matches(r) {
                    return Ok(());
                }
                let id = r.id();
                let old_name = r.name().to_string();
                let old_kind = r.kind().to_string();
                with_obj(r, |obj| {
                    crate::jsonpatch::apply(obj, ops)
                        .map_err(|e| Error::build(ctx, format!("JSON patch on {id}: {e}")))
                })?;
                if r.name() != old_name || r.kind() != old_kind {
                    let new_name = r.name().to_string();
                    let new_kind = r.kind().to_string();
                    r.metadata_mut()
                        .insert("name".into(), Value::String(old_name));
                    r.obj.insert("kind".into(), Value::String(old_kind));
                    r.record_prev();
                    r.metadata_mut()
                        .insert("name".into(), Value::String(new_name));
                    r.obj.insert("kind".into(), Value::String(new_kind));
                }
                Ok(())
            })?;
        }
        Patch::Smp(docs) => {
            for doc in docs {
                let mut deleted: Vec<usize> = Vec::new();
                match target {
                    Some(sel) => {
                        // Whether an object is selected depends on that object alone, so
                        // selecting and patching are done per object (in parallel on large
                        // sets).
                        let m = Matcher::new(sel, ctx)?;
                        let patch_one =
                            |r: &mut Res| m.matches(r) && !smp_one(r, doc, opts, schema);
                        let gone: Vec<bool> = if resources.len() >= 2 * PAR_CHUNK {
                            use rayon::prelude::*;
                            resources
                                .par_iter_mut()
                                .with_min_len(PAR_CHUNK)
                                .map(patch_one)
                                .collect()
                        } else {
                            resources.iter_mut().map(patch_one).collect()
                        };
                        deleted
                            .extend(gone.iter().enumerate().filter(|(_, g)| **g).map(|(i, _)| i));
                    }
                    None => {
                        let pr = Res::new(doc.clone());
                        let pid = pr.id();
                        let want = pid.as_ref();
                        let want_ns = want.effective_namespace();
                        let any_group = want.gvk.group.is_empty() && want.gvk.version.is_empty();
                        let hits: Vec<usize> = (0..resources.len())
                            .filter(|&i| {
                                resources[i].all_id_refs().any(|id| {
                                    id.gvk.kind == want.gvk.kind
                                        && (any_group || id.gvk.group == want.gvk.group)
                                        && id.name == want.name
                                        && id.effective_namespace() == want_ns
                                })
                            })
                            .collect();
                        if hits.is_empty() {
                            return Err(Error::build(
                                ctx,
                                format!("no resource matches strategic merge patch for {pid}"),
                            ));
                        }
                        if hits.len() > 1 {
                            return Err(Error::build(
                                ctx,
                                format!("multiple resources match strategic merge patch for {pid}"),
                            ));
                        }
                        for i in hits {
                            if !smp_one(&mut resources[i], doc, opts, schema) {
                                deleted.push(i);
                            }
                        }
                    }
                }
                for i in deleted.into_iter().rev() {
                    resources.remove(i);
                }
            }
        }
    }
    Ok(())
}
