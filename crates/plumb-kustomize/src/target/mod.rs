//! The build: load kustomizations recursively, accumulate resources, run generators,
//! components and transformers in kustomize's order, then hash names, fix name references,
//! resolve vars and sort.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::fieldspec::{Config, FieldSpec};
use crate::kustomization::{
    GeneratorArgs, ImageEntry, Kustomization, PatchEntry, Selector, VarEntry,
};
use crate::loader::{Loader, is_remote};
use crate::resource::{Res, value_string};
use crate::schema::Schema;
use crate::transform::{self, Patch, PatchOptions};
use crate::{BuildOptions, Overlay};

mod finish;
mod plugins;

pub(crate) use finish::parse_kustomization;
use finish::*;
use plugins::*;

/// Deepest chain of kustomizations (through resources, components, generator and transformer
/// directories). Real trees nest a dozen levels at most; a level costs up to ~50 KiB of stack
/// in a debug build (far less optimised), so 32 levels fit a 2 MiB thread stack either way.
pub(crate) const MAX_NESTING: usize = 32;

const KUSTOMIZATION_FILES: &[&str] = &["kustomization.yaml", "kustomization.yml", "Kustomization"];

/// What a kustomization level hands to its parent.
#[derive(Default)]
pub(crate) struct Acc {
    pub resources: Vec<Res>,
    pub config: Config,
    pub vars: Vec<VarEntry>,
}

pub(crate) struct Builder<'o> {
    pub loader: Loader,
    custom_schema: Option<Schema>,
    top: PathBuf,
    stack: Vec<PathBuf>,
    opts: &'o BuildOptions,
    resource_count: usize,
    transformer_anno: bool,
}

fn kerr(file: &str, msg: impl Into<String>) -> Error {
    Error::invalid(file, msg)
}

impl<'o> Builder<'o> {
    pub(crate) fn new(dir: &Path, root: &Path, opts: &'o BuildOptions) -> Result<Self> {
        let loader = Loader::new(
            root,
            opts.max_file_bytes,
            opts.file_transform.clone(),
            opts.read_log.clone(),
        )?;
        let top = loader.resolve(
            &std::env::current_dir().map_err(|source| Error::Io {
                path: ".".into(),
                source,
            })?,
            &dir.to_string_lossy(),
        )?;
        Ok(Builder {
            loader,
            custom_schema: None,
            top,
            stack: Vec::new(),
            opts,
            resource_count: 0,
            transformer_anno: false,
        })
    }

    fn schema(&self) -> &Schema {
        self.custom_schema
            .as_ref()
            .unwrap_or_else(|| crate::schema::builtin())
    }

    /// Finds and parses the kustomization file of `dir`.
    fn load_kustomization(&self, dir: &Path) -> Result<Option<(Kustomization, String)>> {
        let found: Vec<&str> = KUSTOMIZATION_FILES
            .iter()
            .copied()
            .filter(|f| self.loader.is_file(&dir.join(f)))
            .collect();
        if found.len() > 1 {
            return Err(kerr(
                &self.loader.display(dir),
                format!("found multiple kustomization files: {}", found.join(", ")),
            ));
        }
        let Some(f) = found.first() else {
            return Ok(None);
        };
        let path = self.loader.resolve(dir, f)?;
        let file = self.loader.display(&path);
        let text = self.loader.read(&path)?;
        let v = crate::yaml::parse_lenient(&text, &file)?;
        let v = if v.is_null() {
            Value::Object(Map::new())
        } else {
            v
        };
        let k = parse_kustomization(v, &file)?;
        Ok(Some((k, file)))
    }

    /// A kustomization listing every YAML file below `dir` (Flux's behaviour for plain dirs).
    fn generated_kustomization(&self, dir: &Path) -> Result<Kustomization> {
        let mut resources = Vec::new();
        self.scan_dir(dir, dir, &mut resources)?;
        Ok(Kustomization {
            resources,
            ..Kustomization::default()
        })
    }

    fn scan_dir(&self, base: &Path, dir: &Path, out: &mut Vec<String>) -> Result<()> {
        for p in self.loader.list_dir(dir)? {
            let rel = crate::loader::relative(base, &p);
            if self.loader.is_dir(&p) {
                if p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'))
                {
                    continue;
                }
                if KUSTOMIZATION_FILES
                    .iter()
                    .any(|f| self.loader.is_file(&p.join(f)))
                {
                    out.push(rel);
                } else {
                    self.scan_dir(base, &p, out)?;
                }
            } else if p.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                out.push(rel);
            }
        }
        Ok(())
    }

    /// Builds the top-level directory.
    pub(crate) fn build(&mut self, overlay: Option<&Overlay>) -> Result<Vec<Res>> {
        let top = self.top.clone();
        let (mut kust, file) = match self.load_kustomization(&top)? {
            Some(k) => k,
            None if self.opts.generate_missing_kustomization || overlay.is_some() => (
                self.generated_kustomization(&top)?,
                self.loader.display(&top.join("kustomization.yaml")),
            ),
            None => {
                return Err(kerr(
                    &self.loader.display(&top),
                    "unable to find one of 'kustomization.yaml', 'kustomization.yml' or 'Kustomization' in directory",
                ));
            }
        };
        if let Some(o) = overlay {
            kust = o.wrap(kust);
            if o.ignore_missing_components {
                kust.components
                    .retain(|c| is_remote(c) || self.loader.is_dir(&top.join(c)));
            }
        }
        self.transformer_anno = kust
            .build_metadata
            .iter()
            .any(|b| b == "transformerAnnotations");
        self.stack.push(top.clone());
        let mut acc = self.accumulate(&top, &kust, &file, Acc::default())?;
        self.stack.pop();
        // Hash suffixes.
        for r in acc.resources.iter_mut() {
            let wants = r
                .meta_value("annotations", "kustomize.config.k8s.io/needs-hash")
                .map(value_string);
            if r.needs_hash || wants.as_deref() == Some("true") {
                let h = crate::generate::content_hash(&r.obj);
                let n = format!("{}-{h}", r.name());
                r.set_name(&n);
            }
        }
        let cfg = Config::effective(&acc.config);
        crate::nameref::fix(&mut acc.resources, &cfg.name_reference)?;
        crate::replace::resolve_vars(&mut acc.resources, &acc.vars, &cfg.var_reference)?;
        acc.resources.retain(|r| {
            r.meta_value("annotations", "config.kubernetes.io/local-config")
                .map(value_string)
                .as_deref()
                != Some("true")
        });
        let bm = &kust.build_metadata;
        for r in acc.resources.iter_mut() {
            finish_metadata(
                r,
                bm.iter().any(|b| b == "originAnnotations"),
                bm.iter().any(|b| b == "managedByLabel"),
                self.transformer_anno,
            );
        }
        let order = kust.sort_options.as_ref().and_then(|s| s.order.clone());
        match order.as_deref() {
            None | Some("legacy") => {
                let (first, last) = kust
                    .sort_options
                    .as_ref()
                    .and_then(|s| s.legacy_sort_options.as_ref())
                    .map(|l| (l.order_first.clone(), l.order_last.clone()))
                    .unwrap_or_default();
                crate::sort::legacy(&mut acc.resources, &first, &last);
            }
            Some("fifo") => {}
            Some(other) => return Err(kerr(&file, format!("unknown sortOptions.order {other:?}"))),
        }
        Ok(acc.resources)
    }

    /// `file` (root-relative) as a path relative to the top-level build directory.
    fn rel_to_top(&self, file: &str) -> String {
        crate::loader::relative(&self.top, &self.loader.root().join(file))
    }

    /// Records a transformer run on every object (transformer annotations).
    fn note(&self, acc: &mut Acc, configured_in: &str, by: Value) {
        if !self.transformer_anno {
            return;
        }
        let t =
            serde_json::json!({"configuredIn": self.rel_to_top(configured_in), "configuredBy": by});
        for r in acc.resources.iter_mut() {
            r.transformations.push(t.clone());
        }
    }

    /// Appends objects, rejecting ids already present (one hash set per batch, not a scan per
    /// object).
    fn append_all(&mut self, acc: &mut Acc, items: Vec<Res>, ctx: &str) -> Result<()> {
        // The items are appended first so the set can borrow every id; on error the whole
        // build fails and `acc` is dropped.
        let start = acc.resources.len();
        acc.resources.extend(items);
        let mut seen: rustc_hash::FxHashSet<IdKey<'_>> = rustc_hash::FxHashSet::default();
        seen.reserve(acc.resources.len());
        for (i, r) in acc.resources.iter().enumerate() {
            let id = r.id_ref();
            if !seen.insert(id_key(&id)) && i >= start {
                return Err(Error::build(
                    ctx,
                    format!(
                        "may not add resource with an already registered id: {}",
                        id.to_owned_id()
                    ),
                ));
            }
            if i >= start {
                self.resource_count += 1;
                if self.resource_count > self.opts.max_resources {
                    return Err(Error::build(
                        ctx,
                        format!("more than {} resources", self.opts.max_resources),
                    ));
                }
            }
        }
        Ok(())
    }

    fn load_resource_file(&self, path: &Path) -> Result<Vec<Res>> {
        let file = self.loader.display(path);
        let text = self.loader.read(path)?;
        let docs = crate::yaml::parse_documents(&text, &file)?;
        let origin = crate::loader::relative(&self.top, path);
        let mut out = Vec::new();
        for d in docs {
            let Value::Object(m) = d else {
                return Err(kerr(&file, "a resource document must be a YAML mapping"));
            };
            let is_list = m
                .get("kind")
                .and_then(Value::as_str)
                .is_some_and(|k| k.ends_with("List"))
                && m.get("items").is_some_and(Value::is_array);
            let objs: Vec<Map<String, Value>> = if is_list {
                m.get("items")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|i| i.as_object().cloned())
                    .collect()
            } else {
                vec![m]
            };
            for o in objs {
                use crate::resource::map_get;
                let kind = map_get(&o, "kind").and_then(Value::as_str).unwrap_or("");
                if kind.is_empty() {
                    return Err(kerr(&file, "missing kind in resource"));
                }
                if kind == "Kustomization"
                    && map_get(&o, "apiVersion")
                        .and_then(Value::as_str)
                        .is_some_and(|a| a.starts_with("kustomize.config.k8s.io"))
                {
                    return Err(kerr(
                        &file,
                        "a kustomization file cannot be listed as a resource file; list its directory",
                    ));
                }
                let mut o = o;
                stringify_annotations(&mut o);
                let mut r = Res::new(o);
                r.origin = Some(Value::String(origin.clone()));
                out.push(r);
            }
        }
        Ok(out)
    }

    fn resolve_entry(&self, dir: &Path, entry: &str, file: &str) -> Result<PathBuf> {
        if is_remote(entry) {
            return Err(Error::Remote {
                file: file.to_string(),
                reference: entry.to_string(),
            });
        }
        self.loader.resolve(dir, entry).map_err(|e| match e {
            Error::Io { path, source } => Error::build(
                format!("{file}: accumulating resources"),
                format!("{}: {source}", path.display()),
            ),
            other => other,
        })
    }

    fn accumulate_dir(
        &mut self,
        path: &Path,
        file: &str,
        as_component: bool,
    ) -> Result<(Kustomization, String)> {
        if self.stack.iter().any(|p| p == path) {
            let chain: Vec<String> = self.stack.iter().map(|p| self.loader.display(p)).collect();
            return Err(Error::Cycle {
                path: path.to_path_buf(),
                chain: chain.join(" -> "),
            });
        }
        // Each level recurses; a hostile chain of directories must not exhaust the stack.
        if self.stack.len() >= MAX_NESTING {
            return Err(Error::build(
                format!("{file}: accumulating {}", self.loader.display(path)),
                format!(
                    "kustomizations nest more than {MAX_NESTING} levels deep (resources, components and generator or transformer directories)"
                ),
            ));
        }
        let Some((k, kfile)) = self.load_kustomization(path)? else {
            return Err(Error::build(
                format!("{file}: accumulating resources"),
                format!("{} has no kustomization.yaml", self.loader.display(path)),
            ));
        };
        let is_component = k.kind.as_deref() == Some("Component");
        if as_component && !is_component {
            return Err(kerr(
                &kfile,
                "expected kind 'Component' for a path listed in components",
            ));
        }
        if !as_component && is_component {
            return Err(kerr(
                &kfile,
                "expected kind 'Kustomization' for a path listed in resources, found 'Component'",
            ));
        }
        Ok((k, kfile))
    }

    /// Accumulates one kustomization (or component) into `acc`.
    fn accumulate(
        &mut self,
        dir: &Path,
        k: &Kustomization,
        file: &str,
        mut acc: Acc,
    ) -> Result<Acc> {
        if let Some(o) = &k.openapi {
            self.load_openapi(dir, o, file)?;
        }
        for entry in k.resources.iter().chain(k.bases.iter()) {
            let path = self.resolve_entry(dir, entry, file)?;
            if self.loader.is_dir(&path) {
                let (sub, subfile) = self.accumulate_dir(&path, file, false)?;
                self.stack.push(path.clone());
                let sub_acc = self.accumulate(&path, &sub, &subfile, Acc::default())?;
                self.stack.pop();
                self.append_all(
                    &mut acc,
                    sub_acc.resources,
                    &format!("{file}: accumulating resources from {entry}"),
                )?;
                acc.config.merge(&sub_acc.config);
                merge_vars(&mut acc.vars, sub_acc.vars, file)?;
            } else {
                let items = self.load_resource_file(&path)?;
                self.append_all(&mut acc, items, &format!("{file}: accumulating resources"))?;
            }
        }
        for c in &k.configurations {
            let path = self.resolve_entry(dir, c, file)?;
            let cf = self.loader.display(&path);
            let v = crate::yaml::parse_one(&self.loader.read(&path)?, &cf)?;
            acc.config.merge(&Config::parse(&v, &cf)?);
        }
        for c in &k.crds {
            let path = self.resolve_entry(dir, c, file)?;
            let cf = self.loader.display(&path);
            for doc in crate::yaml::parse_documents(&self.loader.read(&path)?, &cf)? {
                acc.config.merge(&crd_name_references(&doc));
            }
        }
        // Generators.
        let gopts = k.generator_options.as_ref();
        let mut generated = Vec::new();
        let top = self.top.clone();
        let root = self.loader.root().to_path_buf();
        let gen_origin = |kind: &str, cin: &str, md: Option<&Value>| -> Value {
            let mut by = Map::new();
            by.insert("apiVersion".into(), Value::String("builtin".into()));
            by.insert("kind".into(), Value::String(kind.into()));
            for k in ["name", "namespace"] {
                if let Some(v) = md.and_then(|m| m.get(k)).filter(|v| v.is_string()) {
                    by.insert(k.into(), v.clone());
                }
            }
            let rel = crate::loader::relative(&top, &root.join(cin));
            serde_json::json!({"configuredIn": rel, "configuredBy": by})
        };
        for g in &k.config_map_generator {
            let mut r = crate::generate::generate(g, false, gopts, dir, &self.loader, file)?;
            r.origin = Some(gen_origin("ConfigMapGenerator", file, None));
            generated.push(r);
        }
        for g in &k.secret_generator {
            let mut r = crate::generate::generate(g, true, gopts, dir, &self.loader, file)?;
            r.origin = Some(gen_origin("SecretGenerator", file, None));
            generated.push(r);
        }
        for entry in &k.generators {
            let (cfgs, cin) = self.plugin_configs(dir, entry, file)?;
            for cfg in cfgs {
                let kind = cfg.get("kind").and_then(Value::as_str).unwrap_or("");
                let secret = match kind {
                    "ConfigMapGenerator" => false,
                    "SecretGenerator" => true,
                    "IAMPolicyGenerator" => {
                        let mut r = iam_policy_service_account(&cfg, file)?;
                        r.origin = Some(gen_origin(kind, &cin, cfg.get("metadata")));
                        generated.push(r);
                        continue;
                    }
                    _ => {
                        // Any other object listed under generators is emitted as is.
                        if let Value::Object(m) = cfg {
                            generated.push(Res::new(m));
                        }
                        continue;
                    }
                };
                let mut c = cfg.clone();
                if let Value::Object(m) = &mut c {
                    if let Some(Value::Object(md)) = m.get("metadata") {
                        let md = md.clone();
                        m.entry("name")
                            .or_insert(md.get("name").cloned().unwrap_or(Value::Null));
                        if let Some(ns) = md.get("namespace") {
                            m.entry("namespace").or_insert(ns.clone());
                        }
                    }
                    m.retain(|k, _| GENERATOR_KEYS.contains(&k.as_str()));
                }
                let args: GeneratorArgs = serde_json::from_value(c)
                    .map_err(|e| kerr(file, format!("generator {entry}: {e}")))?;
                let mut r =
                    crate::generate::generate(&args, secret, gopts, dir, &self.loader, file)?;
                r.origin = Some(gen_origin(kind, &cin, cfg.get("metadata")));
                generated.push(r);
            }
        }
        if !generated.is_empty() {
            // Index existing objects by (kind, any name they have had) once.
            let mut index: rustc_hash::FxHashMap<(String, String), Vec<usize>> = Default::default();
            for (i, r) in acc.resources.iter().enumerate() {
                for id in r.all_id_refs() {
                    let e = index
                        .entry((id.gvk.kind.to_string(), id.name.to_string()))
                        .or_default();
                    if !e.contains(&i) {
                        e.push(i);
                    }
                }
            }
            for g in generated {
                absorb(&mut acc, g, file, &mut index)?;
            }
        }
        // Components run before this level's transformers.
        for c in &k.components {
            let path = self.resolve_entry(dir, c, file)?;
            if !self.loader.is_dir(&path) {
                return Err(kerr(file, format!("component {c:?} must be a directory")));
            }
            let (ck, cfile) = self.accumulate_dir(&path, file, true)?;
            self.stack.push(path.clone());
            acc = self.accumulate(&path, &ck, &cfile, acc)?;
            self.stack.pop();
        }
        self.run_transformers(dir, k, file, &mut acc)?;
        for v in &k.vars {
            crate::replace::bind_var(&mut acc.resources, v, file)?;
        }
        merge_vars(&mut acc.vars, k.vars.clone(), file)?;
        Ok(acc)
    }

    fn load_openapi(&mut self, dir: &Path, o: &Map<String, Value>, file: &str) -> Result<()> {
        let path = o.get("path").and_then(Value::as_str);
        let version = o.get("version").and_then(Value::as_str);
        if path.is_some() && version.is_some() {
            return Err(kerr(
                file,
                "openapi: specify either path or version, not both",
            ));
        }
        if let Some(v) = version {
            if v != "v1.21.2" {
                return Err(kerr(
                    file,
                    format!("openapi: unknown builtin schema version {v:?}"),
                ));
            }
            return Ok(());
        }
        let Some(p) = path else { return Ok(()) };
        let pp = self.resolve_entry(dir, p, file)?;
        let pf = self.loader.display(&pp);
        let v = crate::yaml::parse_one(&self.loader.read(&pp)?, &pf)?;
        let compact = crate::schema_convert::compact_schema(&v);
        let text = include_str!(concat!(env!("OUT_DIR"), "/k8s_schema.json"));
        let base: Value = serde_json::from_str(text).unwrap_or(Value::Null);
        let mut s = Schema::from_compact(&base);
        s.merge_compact(&compact);
        self.custom_schema = Some(s);
        Ok(())
    }
}

/// Name references declared in a `crds:` OpenAPI file through `x-kubernetes-object-ref-kind`
/// (and `-api-version`, `-name-key`) on properties of custom kinds.
fn crd_name_references(doc: &Value) -> Config {
    let defs = doc
        .get("definitions")
        .and_then(Value::as_object)
        .or_else(|| doc.as_object());
    let mut cfg = Config::default();
    let Some(defs) = defs else { return cfg };
    let schema_of = |d: &Value| d.get("Schema").cloned().unwrap_or_else(|| d.clone());
    fn walk(
        defs: &Map<String, Value>,
        schema: &Value,
        kind: &str,
        path: &str,
        depth: usize,
        cfg: &mut Config,
    ) {
        if depth > 12 {
            return;
        }
        let Some(props) = schema.get("properties").and_then(Value::as_object) else {
            return;
        };
        for (name, p) in props {
            let sub = if path.is_empty() {
                name.clone()
            } else {
                format!("{path}/{name}")
            };
            if let Some(ref_kind) = p
                .get("x-kubernetes-object-ref-kind")
                .and_then(Value::as_str)
            {
                let av = p
                    .get("x-kubernetes-object-ref-api-version")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                let key = p
                    .get("x-kubernetes-object-ref-name-key")
                    .and_then(Value::as_str)
                    .unwrap_or("name");
                let referral = crate::resource::Gvk::from_api_version(av, ref_kind);
                let spec = FieldSpec::new(kind, "", "", &format!("{sub}/{key}"), false);
                let mut c = Config::default();
                c.name_reference.push(crate::fieldspec::NameBackRef {
                    referral,
                    specs: vec![spec],
                });
                cfg.merge(&c);
                continue;
            }
            if let Some(r) = p.get("$ref").and_then(Value::as_str) {
                let r = r.trim_start_matches("#/definitions/");
                if let Some(d) = defs.get(r) {
                    let s = d.get("Schema").cloned().unwrap_or_else(|| d.clone());
                    walk(defs, &s, kind, &sub, depth + 1, cfg);
                }
            }
        }
    }
    for (name, d) in defs {
        let schema = schema_of(d);
        let props = schema.get("properties");
        let top = props.is_some_and(|p| p.get("kind").is_some() && p.get("metadata").is_some());
        if !top {
            continue;
        }
        let kind = name.rsplit('.').next().unwrap_or(name);
        walk(defs, &schema, kind, "", 0, &mut cfg);
    }
    cfg
}
