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
        let loader = Loader::new(root, opts.max_file_bytes, opts.file_transform.clone())?;
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
            .filter(|f| dir.join(f).is_file())
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
        let io = |source| Error::Io {
            path: dir.to_path_buf(),
            source,
        };
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(io)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        entries.sort();
        for p in entries {
            let rel = crate::loader::relative(base, &p);
            if p.is_dir() {
                if p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'))
                {
                    continue;
                }
                if KUSTOMIZATION_FILES.iter().any(|f| p.join(f).is_file()) {
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
                    .retain(|c| is_remote(c) || top.join(c).is_dir());
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
            if path.is_dir() {
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
            if !path.is_dir() {
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

    /// Loads the configs of a `transformers:`/`generators:` entry (a file, inline YAML or a
    /// kustomization directory whose output objects are the configs).
    fn plugin_configs(
        &mut self,
        dir: &Path,
        entry: &str,
        file: &str,
    ) -> Result<(Vec<Value>, String)> {
        let mut configured_in = file.to_string();
        let docs = if entry.contains('\n') {
            crate::yaml::parse_documents(entry, file)?
        } else {
            let path = self.resolve_entry(dir, entry, file)?;
            if path.is_dir() {
                let (sub, subfile) = self.accumulate_dir(&path, file, false)?;
                self.stack.push(path.clone());
                let acc = self.accumulate(&path, &sub, &subfile, Acc::default())?;
                self.stack.pop();
                acc.resources
                    .into_iter()
                    .map(|r| Value::Object(r.obj))
                    .collect()
            } else {
                let pf = self.loader.display(&path);
                configured_in = pf.clone();
                crate::yaml::parse_documents(&self.loader.read(&path)?, &pf)?
            }
        };
        for d in &docs {
            let av = d.get("apiVersion").and_then(Value::as_str).unwrap_or("");
            let kind = d.get("kind").and_then(Value::as_str).unwrap_or("");
            if av != "builtin" && !av.is_empty() && !BUILTIN_KINDS.contains(&kind) {
                return Err(kerr(
                    file,
                    format!(
                        "plugin {kind} ({av}) is not a builtin; external plugins are not enabled"
                    ),
                ));
            }
            if d.get("metadata")
                .and_then(|m| m.get("annotations"))
                .and_then(|a| a.get("config.kubernetes.io/function"))
                .is_some()
            {
                return Err(kerr(
                    file,
                    format!("plugin {kind}: KRM functions are not enabled"),
                ));
            }
        }
        Ok((docs, configured_in))
    }

    fn read_patch(&self, dir: &Path, p: &PatchEntry, file: &str) -> Result<(Patch, String)> {
        match (&p.path, &p.patch) {
            (Some(_), Some(_)) => Err(kerr(file, "a patch has both path and patch")),
            (Some(path), None) => {
                let pp = self.resolve_entry(dir, path, file)?;
                let pf = self.loader.display(&pp);
                Ok((transform::parse_patch(&self.loader.read(&pp)?, &pf)?, pf))
            }
            (None, Some(text)) => Ok((transform::parse_patch(text, file)?, file.to_string())),
            (None, None) => Err(kerr(file, "a patch needs path or patch")),
        }
    }

    fn run_transformers(
        &mut self,
        dir: &Path,
        k: &Kustomization,
        file: &str,
        acc: &mut Acc,
    ) -> Result<()> {
        let cfg = Config::effective(&acc.config);
        // patchesStrategicMerge
        for p in &k.patches_strategic_merge {
            let (patch, pf) = match p {
                Value::String(s) if !s.contains('\n') && !s.trim_start().starts_with('{') => {
                    let pp = self.resolve_entry(dir, s, file)?;
                    let pf = self.loader.display(&pp);
                    (transform::parse_patch(&self.loader.read(&pp)?, &pf)?, pf)
                }
                Value::String(s) => (transform::parse_patch(s, file)?, file.to_string()),
                other => (
                    transform::parse_patch(&crate::yaml::to_yaml(other), file)?,
                    file.to_string(),
                ),
            };
            if matches!(patch, Patch::Json(_)) {
                return Err(kerr(
                    &pf,
                    "patchesStrategicMerge entry is not a strategic merge patch",
                ));
            }
            transform::apply_patch(
                &mut acc.resources,
                &patch,
                None,
                PatchOptions::default(),
                self.schema(),
                &pf,
            )?;
            self.note(acc, file, serde_json::json!({"apiVersion": "builtin", "kind": "PatchStrategicMergeTransformer"}));
        }
        for p in &k.patches {
            self.apply_patch_entry(dir, p, file, acc)?;
            self.note(
                acc,
                file,
                serde_json::json!({"apiVersion": "builtin", "kind": "PatchTransformer"}),
            );
        }
        if let Some(ns) = k.namespace.as_deref().filter(|n| !n.is_empty()) {
            transform::namespace(&mut acc.resources, ns, &cfg.namespace, false, "defaultOnly")?;
            self.note(
                acc,
                file,
                serde_json::json!({"apiVersion": "builtin", "kind": "NamespaceTransformer"}),
            );
        }
        let prefix = k.name_prefix.as_deref().unwrap_or("");
        transform::prefix_suffix(&mut acc.resources, prefix, "", &cfg.name_prefix)?;
        if !prefix.is_empty() {
            self.note(
                acc,
                file,
                serde_json::json!({"apiVersion": "builtin", "kind": "PrefixTransformer"}),
            );
        }
        let suffix = k.name_suffix.as_deref().unwrap_or("");
        transform::prefix_suffix(&mut acc.resources, "", suffix, &cfg.name_suffix)?;
        if !suffix.is_empty() {
            self.note(
                acc,
                file,
                serde_json::json!({"apiVersion": "builtin", "kind": "SuffixTransformer"}),
            );
        }
        for l in &k.labels {
            let mut specs: Vec<FieldSpec> = if l.include_selectors {
                cfg.common_labels.clone()
            } else {
                let mut v = vec![FieldSpec::new("", "", "", "metadata/labels", true)];
                if l.include_templates {
                    v = cfg.template_labels.clone();
                }
                v
            };
            specs.extend(cfg.labels.iter().cloned());
            for f in &l.fields {
                let get = |k: &str| f.get(k).and_then(Value::as_str).unwrap_or("").to_string();
                specs.push(FieldSpec::new(
                    &get("kind"),
                    &get("group"),
                    &get("version"),
                    &get("path"),
                    f.get("create").and_then(Value::as_bool).unwrap_or(false),
                ));
            }
            transform::add_map_entries(&mut acc.resources, &l.pairs, &specs)?;
            self.note(
                acc,
                file,
                serde_json::json!({"apiVersion": "builtin", "kind": "LabelTransformer"}),
            );
        }
        if let Some(cl) = &k.common_labels {
            transform::add_map_entries(&mut acc.resources, cl, &cfg.common_labels)?;
            self.note(
                acc,
                file,
                serde_json::json!({"apiVersion": "builtin", "kind": "LabelTransformer"}),
            );
        }
        if let Some(ca) = &k.common_annotations {
            transform::add_map_entries(&mut acc.resources, ca, &cfg.common_annotations)?;
            self.note(
                acc,
                file,
                serde_json::json!({"apiVersion": "builtin", "kind": "AnnotationsTransformer"}),
            );
        }
        for p in &k.patches_json6902 {
            let (patch, pf) = self.read_patch(dir, p, file)?;
            let patch = match patch {
                Patch::Json(ops) => Patch::Json(ops),
                Patch::Smp(_) => {
                    return Err(kerr(
                        &pf,
                        "patchesJson6902 entry is not a list of JSON 6902 operations",
                    ));
                }
            };
            let target = p
                .target
                .as_ref()
                .ok_or_else(|| kerr(file, "patchesJson6902 entry needs a target"))?;
            transform::apply_patch(
                &mut acc.resources,
                &patch,
                Some(target),
                PatchOptions::default(),
                self.schema(),
                &pf,
            )?;
            self.note(
                acc,
                file,
                serde_json::json!({"apiVersion": "builtin", "kind": "PatchJson6902Transformer"}),
            );
        }
        for r in &k.replicas {
            transform::replicas(&mut acc.resources, &r.name, r.count, &cfg.replicas)?;
            self.note(
                acc,
                file,
                serde_json::json!({"apiVersion": "builtin", "kind": "ReplicaCountTransformer"}),
            );
        }
        let images: Vec<ImageEntry> = k
            .images
            .iter()
            .chain(k.image_tags.iter())
            .cloned()
            .collect();
        if !images.is_empty() {
            transform::images(&mut acc.resources, &images, &cfg.images)?;
            self.note(
                acc,
                file,
                serde_json::json!({"apiVersion": "builtin", "kind": "ImageTagTransformer"}),
            );
        }
        for rep in &k.replacements {
            for r in self.load_replacements(dir, rep, file)? {
                crate::replace::replacement(&mut acc.resources, &r, file)?;
            }
            self.note(
                acc,
                file,
                serde_json::json!({"apiVersion": "builtin", "kind": "ReplacementTransformer"}),
            );
        }
        for entry in &k.transformers {
            let (cfgs, cin) = self.plugin_configs(dir, entry, file)?;
            for c in cfgs {
                self.run_plugin(dir, &c, file, acc, &cfg)?;
                let mut by = Map::new();
                for key in ["apiVersion", "kind"] {
                    if let Some(v) = c.get(key) {
                        by.insert(key.into(), v.clone());
                    }
                }
                for key in ["name", "namespace"] {
                    if let Some(v) = c
                        .get("metadata")
                        .and_then(|m| m.get(key))
                        .filter(|v| v.is_string())
                    {
                        by.insert(key.into(), v.clone());
                    }
                }
                self.note(acc, &cin, Value::Object(by));
            }
        }
        Ok(())
    }

    fn apply_patch_entry(
        &self,
        dir: &Path,
        p: &PatchEntry,
        file: &str,
        acc: &mut Acc,
    ) -> Result<()> {
        let (patch, pf) = self.read_patch(dir, p, file)?;
        let opt = |k: &str| p.options.get(k).and_then(Value::as_bool).unwrap_or(false);
        let opts = PatchOptions {
            allow_name_change: opt("allowNameChange"),
            allow_kind_change: opt("allowKindChange"),
        };
        transform::apply_patch(
            &mut acc.resources,
            &patch,
            p.target.as_ref(),
            opts,
            self.schema(),
            &pf,
        )
    }

    fn load_replacements(&self, dir: &Path, rep: &Value, file: &str) -> Result<Vec<Value>> {
        if let Some(p) = rep.get("path").and_then(Value::as_str) {
            let pp = self.resolve_entry(dir, p, file)?;
            let pf = self.loader.display(&pp);
            let docs = crate::yaml::parse_documents(&self.loader.read(&pp)?, &pf)?;
            let mut out = Vec::new();
            for d in docs {
                match d {
                    Value::Array(a) => out.extend(a),
                    other => out.push(other),
                }
            }
            return Ok(out);
        }
        Ok(vec![rep.clone()])
    }

    fn run_plugin(
        &mut self,
        dir: &Path,
        c: &Value,
        file: &str,
        acc: &mut Acc,
        cfg: &Config,
    ) -> Result<()> {
        let kind = c.get("kind").and_then(Value::as_str).unwrap_or("");
        let ctx = format!("{file}: {kind}");
        let specs = |key: &str, default: &[FieldSpec]| -> Vec<FieldSpec> {
            match c.get(key).and_then(Value::as_array) {
                Some(a) => a
                    .iter()
                    .filter_map(|f| {
                        let get =
                            |k: &str| f.get(k).and_then(Value::as_str).unwrap_or("").to_string();
                        let p = get("path");
                        (!p.is_empty()).then(|| {
                            FieldSpec::new(
                                &get("kind"),
                                &get("group"),
                                &get("version"),
                                &p,
                                f.get("create").and_then(Value::as_bool).unwrap_or(false),
                            )
                        })
                    })
                    .collect(),
                None => default.to_vec(),
            }
        };
        let map = |key: &str| {
            c.get(key)
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default()
        };
        let s = |key: &str| c.get(key).and_then(Value::as_str).unwrap_or("").to_string();
        match kind {
            "LabelTransformer" => transform::add_map_entries(
                &mut acc.resources,
                &map("labels"),
                &specs("fieldSpecs", &[]),
            ),
            "AnnotationsTransformer" => transform::add_map_entries(
                &mut acc.resources,
                &map("annotations"),
                &specs("fieldSpecs", &[]),
            ),
            "NamespaceTransformer" => {
                let ns = c
                    .get("metadata")
                    .and_then(|m| m.get("namespace"))
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                let unset_only = c.get("unsetOnly").and_then(Value::as_bool).unwrap_or(false);
                let mode = c
                    .get("setRoleBindingSubjects")
                    .and_then(Value::as_str)
                    .unwrap_or("defaultOnly")
                    .to_string();
                transform::namespace(
                    &mut acc.resources,
                    &ns,
                    &specs("fieldSpecs", &cfg.namespace),
                    unset_only,
                    &mode,
                )
            }
            "PrefixSuffixTransformer" => transform::prefix_suffix(
                &mut acc.resources,
                &s("prefix"),
                &s("suffix"),
                &specs("fieldSpecs", &cfg.name_prefix),
            ),
            "PrefixTransformer" => transform::prefix_suffix(
                &mut acc.resources,
                &s("prefix"),
                "",
                &specs("fieldSpecs", &cfg.name_prefix),
            ),
            "SuffixTransformer" => transform::prefix_suffix(
                &mut acc.resources,
                "",
                &s("suffix"),
                &specs("fieldSpecs", &cfg.name_suffix),
            ),
            "ImageTagTransformer" => {
                let img: ImageEntry =
                    serde_json::from_value(c.get("imageTag").cloned().unwrap_or(Value::Null))
                        .map_err(|e| Error::build(&ctx, e.to_string()))?;
                transform::images(
                    &mut acc.resources,
                    &[img],
                    &specs("fieldSpecs", &cfg.images),
                )
            }
            "ReplicaCountTransformer" => {
                let r = c.get("replica").cloned().unwrap_or(Value::Null);
                let name = r
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                let count = r.get("count").and_then(Value::as_i64).unwrap_or(0);
                transform::replicas(
                    &mut acc.resources,
                    &name,
                    count,
                    &specs("fieldSpecs", &cfg.replicas),
                )
            }
            "PatchTransformer" => {
                let mut p = c.clone();
                if let Value::Object(m) = &mut p {
                    m.remove("apiVersion");
                    m.remove("kind");
                    m.remove("metadata");
                }
                let pe: PatchEntry =
                    serde_json::from_value(p).map_err(|e| Error::build(&ctx, e.to_string()))?;
                self.apply_patch_entry(dir, &pe, file, acc)
            }
            "PatchJson6902Transformer" => {
                let target: Selector =
                    serde_json::from_value(c.get("target").cloned().unwrap_or(Value::Null))
                        .map_err(|e| Error::build(&ctx, e.to_string()))?;
                let patch = if let Some(op) = c.get("jsonOp").and_then(Value::as_str) {
                    transform::parse_patch(op, file)?
                } else {
                    let pp = self.resolve_entry(dir, &s("path"), file)?;
                    transform::parse_patch(&self.loader.read(&pp)?, &self.loader.display(&pp))?
                };
                transform::apply_patch(
                    &mut acc.resources,
                    &patch,
                    Some(&target),
                    PatchOptions::default(),
                    self.schema(),
                    &ctx,
                )
            }
            "PatchStrategicMergeTransformer" => {
                let mut patches = Vec::new();
                for p in c
                    .get("paths")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                {
                    let pp = self.resolve_entry(dir, p, file)?;
                    patches.push(transform::parse_patch(
                        &self.loader.read(&pp)?,
                        &self.loader.display(&pp),
                    )?);
                }
                if let Some(t) = c.get("patches").and_then(Value::as_str) {
                    patches.push(transform::parse_patch(t, file)?);
                }
                for p in patches {
                    transform::apply_patch(
                        &mut acc.resources,
                        &p,
                        None,
                        PatchOptions::default(),
                        self.schema(),
                        &ctx,
                    )?;
                }
                Ok(())
            }
            "ReplacementTransformer" => {
                for rep in c
                    .get("replacements")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    for r in self.load_replacements(dir, rep, file)? {
                        crate::replace::replacement(&mut acc.resources, &r, file)?;
                    }
                }
                Ok(())
            }
            "SortOrderTransformer" => Err(Error::build(
                ctx,
                "sort order is set with sortOptions, not as a transformer",
            )),
            "HashTransformer" => Ok(()),
            other => Err(Error::build(
                ctx,
                format!("unknown builtin transformer {other:?}"),
            )),
        }
    }
}

const GENERATOR_KEYS: &[&str] = &[
    "name",
    "namespace",
    "behavior",
    "files",
    "literals",
    "envs",
    "env",
    "options",
    "type",
];

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

/// The builtin IAMPolicyGenerator: a ServiceAccount bound to a GKE workload identity.
fn iam_policy_service_account(cfg: &Value, file: &str) -> Result<Res> {
    let s = |a: &str, b: &str| {
        cfg.get(a)
            .and_then(|x| x.get(b))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    if cfg.get("cloud").and_then(Value::as_str) != Some("gke") {
        return Err(kerr(
            file,
            "IAMPolicyGenerator: only cloud: gke is supported",
        ));
    }
    let mut md = Map::new();
    md.insert(
        "annotations".into(),
        serde_json::json!({"iam.gke.io/gcp-service-account": format!("{}@{}.iam.gserviceaccount.com", s("serviceAccount", "name"), s("serviceAccount", "projectId"))}),
    );
    md.insert("name".into(), Value::String(s("kubernetesService", "name")));
    let ns = s("kubernetesService", "namespace");
    if !ns.is_empty() {
        md.insert("namespace".into(), Value::String(ns));
    }
    let mut obj = Map::new();
    obj.insert("apiVersion".into(), Value::String("v1".into()));
    obj.insert("kind".into(), Value::String("ServiceAccount".into()));
    obj.insert("metadata".into(), Value::Object(md));
    let mut r = Res::new(obj);
    r.behavior = Some("create".into());
    Ok(r)
}

const BUILTIN_KINDS: &[&str] = &[
    "IAMPolicyGenerator",
    "AnnotationsTransformer",
    "ConfigMapGenerator",
    "HashTransformer",
    "ImageTagTransformer",
    "LabelTransformer",
    "NamespaceTransformer",
    "PatchJson6902Transformer",
    "PatchStrategicMergeTransformer",
    "PatchTransformer",
    "PrefixSuffixTransformer",
    "PrefixTransformer",
    "SuffixTransformer",
    "ReplicaCountTransformer",
    "SecretGenerator",
    "ReplacementTransformer",
    "SortOrderTransformer",
];

fn merge_vars(dst: &mut Vec<VarEntry>, src: Vec<VarEntry>, file: &str) -> Result<()> {
    for v in src {
        if dst.iter().any(|d| d.name == v.name) {
            return Err(kerr(file, format!("var {:?} already encountered", v.name)));
        }
        dst.push(v);
    }
    Ok(())
}

/// group, version, kind, name and effective namespace.
type IdKey<'a> = (&'a str, &'a str, &'a str, &'a str, &'a str);

fn id_key<'a>(id: &crate::resource::IdRef<'a>) -> IdKey<'a> {
    (
        id.gvk.group,
        id.gvk.version,
        id.gvk.kind,
        id.name,
        id.effective_namespace(),
    )
}

/// Adds a generated object, honouring its behaviour (create, merge, replace).
fn absorb(
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
fn finish_metadata(r: &mut Res, origin: bool, managed_by: bool, transformations: bool) {
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
fn stringify_annotations(o: &mut Map<String, Value>) {
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
