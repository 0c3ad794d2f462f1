//! Helpers of the build: vars, resource identity and accumulation, the final metadata
//! (origin, managed-by, transformer annotations) and parsing of kustomization files.

use super::*;

pub(super) fn merge_vars(dst: &mut Vec<VarEntry>, src: Vec<VarEntry>, file: &str) -> Result<()> {
    for v in src {
        if dst.iter().any(|d| d.name == v.name) {
            return Err(kerr(file, format!("var {:?} already encountered", v.name)));
        }
        dst.push(v);
    }
    Ok(())
}

/// group, version, kind, name and effective namespace.
pub(super) type IdKey<'a> = (&'a str, &'a str, &'a str, &'a str, &'a str);

pub(super) fn id_key<'a>(id: &crate::resource::IdRef<'a>) -> IdKey<'a> {
    (
        id.gvk.group,
        id.gvk.version,
        id.gvk.kind,
        id.name,
        id.effective_namespace(),
    )
}

/// Adds a generated object, honouring its behaviour (create, merge, replace).
pub(super) fn absorb(
    acc: &mut Acc,
    g: Res,
    file: &str,
    index: &mut rustc_hash::FxHashMap<(String, String), Vec<usize>>,
) -> Result<()> {
    let gid = g.id();
    let behavior = g.behavior.clone().unwrap_or_else(|| "create".into());
    let key = (gid.gvk.kind.clone(), gid.name.clone());
    let hits: Vec<usize> = index
        .get(&key)
        .into_iter()
        .flatten()
        .copied()
        .filter(|&i| {
            acc.resources[i].all_id_refs().any(|id| {
                id.gvk.kind == gid.gvk.kind
                    && id.name == gid.name
                    && id.effective_namespace() == gid.effective_namespace()
            })
        })
        .collect();
    match (hits.len(), behavior.as_str()) {
        (0, "create") => {
            index.entry(key).or_default().push(acc.resources.len());
            acc.resources.push(g);
            Ok(())
        }
        (0, b) => Err(Error::build(
            file,
            format!("{gid} does not exist; cannot {b} it"),
        )),
        (1, "create") => Err(Error::build(
            file,
            format!("{gid} already exists; use behavior merge or replace"),
        )),
        (1, b @ ("merge" | "replace")) => {
            let old = &mut acc.resources[hits[0]];
            let mut obj = g.obj.clone();
            let (name, ns) = (old.name().to_string(), old.namespace().to_string());
            let mut merged_md = old
                .obj
                .get("metadata")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            for key in ["labels", "annotations"] {
                let mut m = merged_md
                    .get(key)
                    .and_then(Value::as_object)
                    .cloned()
                    .unwrap_or_default();
                if let Some(Value::Object(n)) = g.obj.get("metadata").and_then(|x| x.get(key)) {
                    for (k, v) in n {
                        m.insert(k.clone(), v.clone());
                    }
                }
                if !m.is_empty() {
                    merged_md.insert(key.into(), Value::Object(m));
                }
            }
            merged_md.insert("name".into(), Value::String(name));
            if ns.is_empty() {
                merged_md.remove("namespace");
            } else {
                merged_md.insert("namespace".into(), Value::String(ns));
            }
            obj.insert("metadata".into(), Value::Object(merged_md));
            if b == "merge" {
                for key in ["data", "binaryData"] {
                    let mut m = old
                        .obj
                        .get(key)
                        .and_then(Value::as_object)
                        .cloned()
                        .unwrap_or_default();
                    if let Some(Value::Object(n)) = g.obj.get(key) {
                        for (k, v) in n {
                            m.insert(k.clone(), v.clone());
                        }
                    }
                    if !m.is_empty() {
                        obj.insert(key.into(), Value::Object(m));
                    }
                }
            }
            old.obj = obj;
            if b == "replace" {
                old.origin = g.origin.clone();
            }
            // A plain (not generated) object merged with a generator keeps its name; a
            // generated one follows the options of the latest generator.
            old.needs_hash = old.behavior.is_some() && g.needs_hash;
            Ok(())
        }
        (1, b) => Err(Error::build(
            file,
            format!("unknown generator behavior {b:?}"),
        )),
        _ => Err(Error::build(file, format!("{gid} matches several objects"))),
    }
}

/// Removes kustomize's internal annotations and adds build metadata.
pub(super) fn finish_metadata(r: &mut Res, origin: bool, managed_by: bool, transformations: bool) {
    let origin_text = if origin {
        r.origin.as_ref().map(|o| match o {
            Value::String(p) => format!("path: {p}\n"),
            other => crate::yaml::to_yaml(other),
        })
    } else {
        None
    };
    let trans_text = (transformations && !r.transformations.is_empty())
        .then(|| crate::yaml::to_yaml(&Value::Array(r.transformations.clone())));
    let md = r.metadata_mut();
    // kustomize ends by writing annotations back as a string map: values become their text
    // and an empty (or null) map goes away.
    match md.get_mut("annotations") {
        Some(Value::Object(a)) => {
            a.retain(|k, _| {
                !(k.starts_with("kustomize.config.k8s.io/")
                    || k.starts_with("internal.config.kubernetes.io/")
                    || k == "config.kubernetes.io/index"
                    || k == "config.kubernetes.io/path"
                    || k == "config.k8s.io/id")
            });
            for v in a.values_mut() {
                if !v.is_string() {
                    *v = Value::String(value_string(v));
                }
            }
            if a.is_empty() {
                md.remove("annotations");
            }
        }
        Some(Value::Null) => {
            md.remove("annotations");
        }
        _ => {}
    }
    if let Some(t) = origin_text {
        let a = md
            .entry("annotations")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(a) = a {
            a.insert("config.kubernetes.io/origin".into(), Value::String(t));
        }
    }
    if let Some(t) = trans_text {
        let a = md
            .entry("annotations")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(a) = a {
            a.insert(
                "alpha.config.kubernetes.io/transformations".into(),
                Value::String(t),
            );
        }
    }
    if managed_by {
        let l = md
            .entry("labels")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(l) = l {
            l.insert(
                "app.kubernetes.io/managed-by".into(),
                Value::String("kustomize-v5.5.0".into()),
            );
        }
    }
}

/// Parses and validates a kustomization document.
pub(crate) fn parse_kustomization(mut v: Value, file: &str) -> Result<Kustomization> {
    crate::kustomization::normalize_keys(&mut v);
    crate::kustomization::drop_nulls(&mut v);
    let k: Kustomization =
        serde_json::from_value(v).map_err(|e| kerr(file, format!("invalid kustomization: {e}")))?;
    match (k.kind.as_deref(), k.api_version.as_deref()) {
        (Some("Component"), Some(av)) if av != "kustomize.config.k8s.io/v1alpha1" => {
            return Err(kerr(
                file,
                format!(
                    "apiVersion for Component should be kustomize.config.k8s.io/v1alpha1, not {av:?}"
                ),
            ));
        }
        (None | Some("Kustomization"), Some(av)) if !av.starts_with("kustomize.config.k8s.io/") => {
            return Err(kerr(
                file,
                format!("unknown kustomization apiVersion {av:?}"),
            ));
        }
        (Some(other), _) if other != "Kustomization" && other != "Component" => {
            return Err(kerr(file, format!("unknown kustomization kind {other:?}")));
        }
        _ => {}
    }
    if k.helm_charts.is_some() || k.helm_chart_inflation_generator.is_some() {
        return Err(kerr(
            file,
            "helmCharts are not supported; use a HelmRelease",
        ));
    }
    if let Some(so) = &k.sort_options {
        match so.order.as_deref() {
            Some("fifo") if so.legacy_sort_options.is_some() => {
                return Err(kerr(
                    file,
                    "sortOptions: legacySortOptions is only allowed with order: legacy",
                ));
            }
            None if so.legacy_sort_options.is_some() => {
                return Err(kerr(file, "sortOptions: order is required"));
            }
            _ => {}
        }
    }
    Ok(k)
}

/// Annotations are a string map; YAML scalars like `true` or `8080` become strings (the
/// reader already keeps the text of plain values; this covers lists and JSON sources).
pub(super) fn stringify_annotations(o: &mut Map<String, Value>) {
    use crate::resource::map_get_mut;
    if let Some(Value::Object(md)) = map_get_mut(o, "metadata")
        && let Some(Value::Object(m)) = map_get_mut(md, "annotations")
    {
        for (_, v) in m.iter_mut() {
            if !v.is_string() && !v.is_null() {
                *v = Value::String(value_string(v));
            }
        }
    }
}
