//! The kustomization.yaml file format (kustomize v5), read strictly: unknown fields are errors.

use serde::Deserialize;
use serde_json::{Map, Value};

/// A kustomization.yaml (or a `kind: Component`) as written by the user.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(missing_docs)]
pub struct Kustomization {
    pub api_version: Option<String>,
    pub kind: Option<String>,
    pub metadata: Option<Value>,
    pub openapi: Option<Map<String, Value>>,
    pub name_prefix: Option<String>,
    pub name_suffix: Option<String>,
    pub namespace: Option<String>,
    pub common_labels: Option<Map<String, Value>>,
    #[serde(default)]
    pub labels: Vec<LabelEntry>,
    pub common_annotations: Option<Map<String, Value>>,
    #[serde(default)]
    pub patches_strategic_merge: Vec<Value>,
    #[serde(default, rename = "patchesJson6902")]
    pub patches_json6902: Vec<PatchEntry>,
    #[serde(default)]
    pub patches: Vec<PatchEntry>,
    #[serde(default)]
    pub images: Vec<ImageEntry>,
    #[serde(default)]
    pub image_tags: Vec<ImageEntry>,
    #[serde(default)]
    pub replacements: Vec<Value>,
    #[serde(default)]
    pub replicas: Vec<ReplicaEntry>,
    #[serde(default)]
    pub vars: Vec<VarEntry>,
    pub sort_options: Option<SortOptions>,
    #[serde(default)]
    pub resources: Vec<String>,
    #[serde(default)]
    pub components: Vec<String>,
    #[serde(default)]
    pub crds: Vec<String>,
    #[serde(default)]
    pub bases: Vec<String>,
    #[serde(default)]
    pub config_map_generator: Vec<GeneratorArgs>,
    #[serde(default)]
    pub secret_generator: Vec<GeneratorArgs>,
    pub generator_options: Option<GeneratorOptions>,
    #[serde(default)]
    pub configurations: Vec<String>,
    #[serde(default)]
    pub generators: Vec<String>,
    #[serde(default)]
    pub transformers: Vec<String>,
    #[serde(default)]
    pub validators: Vec<String>,
    #[serde(default)]
    pub build_metadata: Vec<String>,
    pub helm_charts: Option<Value>,
    pub helm_globals: Option<Value>,
    pub helm_chart_inflation_generator: Option<Value>,
    pub inventory: Option<Value>,
}

/// One `labels:` entry.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(missing_docs)]
pub struct LabelEntry {
    #[serde(default)]
    pub pairs: Map<String, Value>,
    #[serde(default)]
    pub include_selectors: bool,
    #[serde(default)]
    pub include_templates: bool,
    #[serde(default)]
    pub fields: Vec<Value>,
}

/// One `patches:` / `patchesJson6902:` entry.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(missing_docs)]
pub struct PatchEntry {
    pub path: Option<String>,
    pub patch: Option<String>,
    pub target: Option<Selector>,
    #[serde(default)]
    pub options: Map<String, Value>,
}

/// A resource selector (`target:` of patches, replacements and transformers).
#[derive(Debug, Default, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(missing_docs)]
pub struct Selector {
    pub group: Option<String>,
    pub version: Option<String>,
    pub kind: Option<String>,
    pub name: Option<String>,
    pub namespace: Option<String>,
    pub label_selector: Option<String>,
    pub annotation_selector: Option<String>,
}

/// One `images:` entry.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(missing_docs)]
pub struct ImageEntry {
    pub name: String,
    pub new_name: Option<String>,
    pub new_tag: Option<Value>,
    pub digest: Option<String>,
    pub tag_suffix: Option<String>,
}

/// One `replicas:` entry.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(missing_docs)]
pub struct ReplicaEntry {
    pub name: String,
    pub count: i64,
}

/// One `vars:` entry.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(missing_docs)]
pub struct VarEntry {
    pub name: String,
    pub obj_ref: Value,
    pub field_ref: Option<Value>,
}

/// `sortOptions:`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(missing_docs)]
pub struct SortOptions {
    pub order: Option<String>,
    pub legacy_sort_options: Option<LegacySortOptions>,
}

/// `sortOptions.legacySortOptions`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(missing_docs)]
pub struct LegacySortOptions {
    #[serde(default)]
    pub order_first: Vec<String>,
    #[serde(default)]
    pub order_last: Vec<String>,
}

/// A configMapGenerator / secretGenerator entry.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(missing_docs)]
pub struct GeneratorArgs {
    pub name: Option<String>,
    pub namespace: Option<String>,
    pub behavior: Option<String>,
    #[serde(default)]
    pub files: Vec<String>,
    #[serde(default)]
    pub literals: Vec<String>,
    #[serde(default)]
    pub envs: Vec<String>,
    pub env: Option<String>,
    pub options: Option<GeneratorOptions>,
    #[serde(rename = "type")]
    pub type_: Option<String>,
    // Fields of the builtin plugin config form (apiVersion/kind/metadata) are accepted there.
    #[serde(default)]
    pub api_version: Option<String>,
    #[serde(default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub metadata: Option<Value>,
}

/// `generatorOptions:` and per-generator `options:`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(missing_docs)]
pub struct GeneratorOptions {
    pub labels: Option<Map<String, Value>>,
    pub annotations: Option<Map<String, Value>>,
    pub disable_name_suffix_hash: Option<bool>,
    pub immutable: Option<bool>,
}

/// Field names of the kustomization format, for Go-style case-insensitive matching.
const FIELD_NAMES: &[&str] = &[
    "apiVersion",
    "kind",
    "metadata",
    "openapi",
    "namePrefix",
    "nameSuffix",
    "namespace",
    "commonLabels",
    "labels",
    "commonAnnotations",
    "patchesStrategicMerge",
    "patchesJson6902",
    "patches",
    "images",
    "imageTags",
    "replacements",
    "replicas",
    "vars",
    "sortOptions",
    "resources",
    "components",
    "crds",
    "bases",
    "configMapGenerator",
    "secretGenerator",
    "generatorOptions",
    "configurations",
    "generators",
    "transformers",
    "validators",
    "buildMetadata",
    "helmCharts",
    "helmGlobals",
    "helmChartInflationGenerator",
    "inventory",
    "pairs",
    "includeSelectors",
    "includeTemplates",
    "fields",
    "path",
    "patch",
    "target",
    "options",
    "group",
    "version",
    "name",
    "labelSelector",
    "annotationSelector",
    "newName",
    "newTag",
    "digest",
    "tagSuffix",
    "count",
    "objRef",
    "fieldRef",
    "fieldPath",
    "order",
    "legacySortOptions",
    "orderFirst",
    "orderLast",
    "behavior",
    "files",
    "literals",
    "envs",
    "env",
    "type",
    "disableNameSuffixHash",
    "immutable",
    "annotations",
];

fn canonical(k: &str) -> Option<&'static str> {
    FIELD_NAMES
        .iter()
        .copied()
        .find(|f| *f != k && f.eq_ignore_ascii_case(k))
}

fn normalize_map(m: &mut Map<String, Value>, depth: usize) {
    let keys: Vec<String> = m.keys().cloned().collect();
    for k in keys {
        if let Some(c) = canonical(&k)
            && !m.contains_key(c)
            && let Some(v) = m.remove(&k)
        {
            m.insert(c.to_string(), v);
        }
    }
    if depth == 0 {
        return;
    }
    for (k, v) in m.iter_mut() {
        // Never rewrite user data (label/annotation maps, literals, inline patches).
        if matches!(
            k.as_str(),
            "commonLabels" | "commonAnnotations" | "pairs" | "labels" | "annotations" | "metadata"
        ) {
            continue;
        }
        match v {
            Value::Object(o) => normalize_map(o, depth - 1),
            Value::Array(a) => {
                for it in a {
                    if let Value::Object(o) = it {
                        normalize_map(o, depth - 1);
                    }
                }
            }
            _ => {}
        }
    }
}

/// Go's JSON decoder, which kustomize reads kustomizations with, takes `null` as the zero value:
/// an empty list or map, an absent field, and `""` in a string map. Fields set to null are
/// dropped here and null values of label and annotation maps become empty strings.
pub(crate) fn drop_nulls(v: &mut Value) {
    fn walk(v: &mut Value, string_map: bool, depth: usize) {
        if depth > 64 {
            return;
        }
        match v {
            Value::Object(m) => {
                if string_map {
                    for x in m.values_mut().filter(|x| x.is_null()) {
                        *x = Value::String(String::new());
                    }
                    return;
                }
                m.retain(|_, x| !x.is_null());
                for (k, x) in m.iter_mut() {
                    let sm = matches!(
                        k.as_str(),
                        "commonLabels" | "commonAnnotations" | "pairs" | "labels" | "annotations"
                    );
                    walk(x, sm, depth + 1);
                }
            }
            Value::Array(a) => a.iter_mut().for_each(|x| walk(x, false, depth + 1)),
            _ => {}
        }
    }
    walk(v, false, 0);
}

/// Renames fields written in another letter case to their canonical names (Go's JSON decoder,
/// which kustomize uses, matches field names case-insensitively).
pub(crate) fn normalize_keys(v: &mut Value) {
    if let Value::Object(m) = v {
        normalize_map(m, 3);
    }
}
