//! Transformers, generators and patches of a kustomization level: plugin configs,
//! builtin transformer runs, patch entries and replacements.

use super::*;

pub(super) const GENERATOR_KEYS: &[&str] = &[
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

/// The builtin IAMPolicyGenerator: a ServiceAccount bound to a GKE workload identity.
pub(super) fn iam_policy_service_account(cfg: &Value, file: &str) -> Result<Res> {
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

pub(super) const BUILTIN_KINDS: &[&str] = &[
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

impl Builder<'_> {
    /// Loads the configs of a `transformers:`/`generators:` entry (a file, inline YAML or a
    /// kustomization directory whose output objects are the configs).
    pub(super) fn plugin_configs(
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
            if self.loader.is_dir(&path) {
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

    pub(super) fn read_patch(
        &self,
        dir: &Path,
        p: &PatchEntry,
        file: &str,
    ) -> Result<(Patch, String)> {
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

    pub(super) fn run_transformers(
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

    pub(super) fn apply_patch_entry(
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

    pub(super) fn load_replacements(
        &self,
        dir: &Path,
        rep: &Value,
        file: &str,
    ) -> Result<Vec<Value>> {
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

    pub(super) fn run_plugin(
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
