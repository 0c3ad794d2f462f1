//! Rendering a chart: the template set over the chart and its subcharts, the
//! per-template context (`.Values`, `.Chart`, `.Release`, `.Capabilities`,
//! `.Files`, `.Template`), and Helm's `include`, `tpl` and `lookup`.

use std::collections::BTreeMap;
use std::rc::Rc;

use base64::Engine as _;

use crate::chart::{Chart, glob_match_files};
use crate::funcs::{self, arg, sarg};
use crate::template::exec::{Exec, Host, TemplateSet};
use crate::value::{Object, Value};

pub use crate::lookup::Lookup;
use crate::lookup::{LookupRequest, Session};

/// Release information (`.Release`).
#[derive(Debug, Clone)]
pub struct ReleaseInfo {
    /// Release name.
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// Revision (1 for installs).
    pub revision: i64,
    /// Install (true) or upgrade (false).
    pub is_install: bool,
}

/// Cluster capabilities (`.Capabilities`).
#[derive(Debug, Clone)]
pub struct Capabilities {
    /// Kubernetes version, e.g. `v1.30.0`.
    pub kube_version: String,
    /// Available API group/versions (and `group/version/Kind` entries).
    pub api_versions: Vec<String>,
}

/// Helm's default API versions (what `helm template` reports without a cluster).
pub const DEFAULT_API_VERSIONS: &[&str] = &[
    "v1",
    "admissionregistration.k8s.io/v1",
    "admissionregistration.k8s.io/v1alpha1",
    "admissionregistration.k8s.io/v1beta1",
    "internal.apiserver.k8s.io/v1alpha1",
    "apps/v1",
    "apps/v1beta1",
    "apps/v1beta2",
    "authentication.k8s.io/v1",
    "authentication.k8s.io/v1alpha1",
    "authentication.k8s.io/v1beta1",
    "authorization.k8s.io/v1",
    "authorization.k8s.io/v1beta1",
    "autoscaling/v1",
    "autoscaling/v2",
    "autoscaling/v2beta1",
    "autoscaling/v2beta2",
    "batch/v1",
    "batch/v1beta1",
    "certificates.k8s.io/v1",
    "certificates.k8s.io/v1beta1",
    "certificates.k8s.io/v1alpha1",
    "coordination.k8s.io/v1alpha2",
    "coordination.k8s.io/v1beta1",
    "coordination.k8s.io/v1",
    "discovery.k8s.io/v1",
    "discovery.k8s.io/v1beta1",
    "events.k8s.io/v1",
    "events.k8s.io/v1beta1",
    "extensions/v1beta1",
    "flowcontrol.apiserver.k8s.io/v1",
    "flowcontrol.apiserver.k8s.io/v1beta1",
    "flowcontrol.apiserver.k8s.io/v1beta2",
    "flowcontrol.apiserver.k8s.io/v1beta3",
    "networking.k8s.io/v1",
    "networking.k8s.io/v1alpha1",
    "networking.k8s.io/v1beta1",
    "node.k8s.io/v1",
    "node.k8s.io/v1alpha1",
    "node.k8s.io/v1beta1",
    "policy/v1",
    "policy/v1beta1",
    "rbac.authorization.k8s.io/v1",
    "rbac.authorization.k8s.io/v1beta1",
    "rbac.authorization.k8s.io/v1alpha1",
    "resource.k8s.io/v1beta1",
    "resource.k8s.io/v1alpha3",
    "scheduling.k8s.io/v1alpha1",
    "scheduling.k8s.io/v1beta1",
    "scheduling.k8s.io/v1",
    "storage.k8s.io/v1beta1",
    "storage.k8s.io/v1",
    "storage.k8s.io/v1alpha1",
    "storagemigration.k8s.io/v1alpha1",
    "apiextensions.k8s.io/v1beta1",
    "apiextensions.k8s.io/v1",
];

impl Default for Capabilities {
    fn default() -> Self {
        Capabilities {
            kube_version: "v1.20.0".into(),
            api_versions: DEFAULT_API_VERSIONS.iter().map(|s| s.to_string()).collect(),
        }
    }
}

#[derive(Debug)]
struct ApiVersions(Vec<String>);

impl Object for ApiVersions {
    fn type_name(&self) -> &str {
        "chartutil.VersionSet"
    }
    fn call(&self, name: &str, args: &[Value]) -> Option<Result<Value, String>> {
        match name {
            "Has" => Some(match args.first() {
                Some(Value::Str(s)) => Ok(Value::Bool(self.0.iter().any(|v| v == &**s))),
                _ => Err("Has needs a string".into()),
            }),
            _ => None,
        }
    }
    fn to_text(&self) -> String {
        format!("[{}]", self.0.join(" "))
    }
    fn as_list(&self) -> Option<Vec<Value>> {
        Some(self.0.iter().map(|s| Value::str(s.as_str())).collect())
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

#[derive(Debug)]
struct KubeVersion {
    version: String,
    major: String,
    minor: String,
}

impl Object for KubeVersion {
    fn type_name(&self) -> &str {
        "*chartutil.KubeVersion"
    }
    fn call(&self, name: &str, _args: &[Value]) -> Option<Result<Value, String>> {
        Some(Ok(match name {
            "Version" | "GitVersion" | "String" => Value::str(self.version.as_str()),
            "Major" => Value::str(self.major.as_str()),
            "Minor" => Value::str(self.minor.as_str()),
            _ => return None,
        }))
    }
    fn to_text(&self) -> String {
        self.version.clone()
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// `.Files`: the chart's non-template files.
#[derive(Debug)]
pub struct Files(pub Rc<BTreeMap<String, Vec<u8>>>);

impl Files {
    fn get(&self, p: &str) -> Option<&Vec<u8>> {
        self.0.get(p)
    }
}

impl Object for Files {
    fn type_name(&self) -> &str {
        "chart.Files"
    }
    fn call(&self, name: &str, args: &[Value]) -> Option<Result<Value, String>> {
        let a0 = || match args.first() {
            Some(Value::Str(s)) => Ok(s.to_string()),
            _ => Err(format!("{name} needs a string argument")),
        };
        Some(match name {
            "Get" => a0().map(|p| {
                Value::str(
                    self.get(&p)
                        .map(|b| String::from_utf8_lossy(b).into_owned())
                        .unwrap_or_default(),
                )
            }),
            "GetBytes" => {
                a0().map(|p| Value::Bytes(self.get(&p).cloned().unwrap_or_default().into()))
            }
            "Glob" => a0().map(|pat| {
                let m: BTreeMap<String, Vec<u8>> = self
                    .0
                    .iter()
                    .filter(|(k, _)| glob_match_files(&pat, k))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                Value::Object(Rc::new(Files(Rc::new(m))))
            }),
            "AsConfig" => Ok(Value::str(self.as_map(false))),
            "AsSecrets" => Ok(Value::str(self.as_map(true))),
            "Lines" => a0().map(|p| match self.get(&p) {
                None => Value::list(Vec::new()),
                Some(b) => {
                    let s = String::from_utf8_lossy(b);
                    let s = s.strip_suffix('\n').unwrap_or(&s);
                    Value::list(s.split('\n').map(Value::from).collect())
                }
            }),
            _ => return None,
        })
    }
    fn truthy(&self) -> bool {
        !self.0.is_empty()
    }
    fn range_entries(&self) -> Option<Vec<(Value, Value)>> {
        Some(
            self.0
                .iter()
                .map(|(k, v)| (Value::str(k.as_str()), Value::Bytes(v.clone().into())))
                .collect(),
        )
    }
    fn to_text(&self) -> String {
        let keys: Vec<String> = self.0.iter().map(|(k, v)| format!("{k}:{:?}", v)).collect();
        format!("map[{}]", keys.join(" "))
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

impl Files {
    fn as_map(&self, secret: bool) -> String {
        if self.0.is_empty() {
            return String::new();
        }
        let m: BTreeMap<String, Value> = self
            .0
            .iter()
            .map(|(k, v)| {
                let base = k.rsplit('/').next().unwrap_or(k).to_string();
                let val = if secret {
                    base64::engine::general_purpose::STANDARD.encode(v)
                } else {
                    String::from_utf8_lossy(v).into_owned()
                };
                (base, Value::str(val))
            })
            .collect();
        crate::encode::to_yaml(&Value::map(m))
            .trim_end_matches('\n')
            .to_string()
    }

    /// Entries for `range` over a `Files` value.
    pub fn entries(&self) -> Vec<(String, Vec<u8>)> {
        self.0.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }
}

/// The engine's function host.
pub struct HelmHost<'l> {
    /// Cluster lookups of this render (cached, budgeted); `None` answers empty maps.
    pub lookup: Option<Session<'l>>,
}

impl HelmHost<'_> {
    /// Is `name` a function?
    pub fn is_func(name: &str) -> bool {
        funcs::table().contains_key(name) || funcs::ENGINE_FUNCS.contains(&name)
    }
}

thread_local! {
    static TPL_COUNTER: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

impl Host for HelmHost<'_> {
    fn has(&self, name: &str) -> bool {
        Self::is_func(name)
    }

    fn call(&self, ex: &mut Exec<'_>, name: &str, args: Vec<Value>) -> Result<Value, String> {
        match name {
            "include" => {
                let n = sarg(&args, 0)?;
                let data = arg(&args, 1);
                let mut buf = String::new();
                if ex.lookup(&n).is_none() {
                    return Err(format!(
                        "template: no template {n:?} associated with template \"gotpl\""
                    ));
                }
                ex.execute(&n, data, &mut buf)?;
                Ok(Value::str(buf))
            }
            "tpl" => {
                let text = sarg(&args, 0)?;
                let data = arg(&args, 1);
                let id = TPL_COUNTER.with(|c| {
                    let v = c.get() + 1;
                    c.set(v);
                    v
                });
                let tname = format!("\u{0}tpl{id}");
                let mut set = TemplateSet::default();
                set.add(&tname, &text, &HelmHost::is_func).map_err(|e| {
                    format!("error during tpl function execution for {text:?}: {e}")
                })?;
                ex.sets.push(Rc::new(set));
                let mut buf = String::new();
                let r = ex.execute(&tname, data, &mut buf);
                ex.sets.pop();
                r.map_err(|e| format!("error during tpl function execution for {text:?}: {e}"))?;
                Ok(Value::str(buf.replace("<no value>", "")))
            }
            "lookup" => {
                if args.len() != 4 {
                    return Err(format!(
                        "wrong number of args for lookup: want 4 got {}",
                        args.len()
                    ));
                }
                let req = LookupRequest {
                    api_version: sarg(&args, 0)?,
                    kind: sarg(&args, 1)?,
                    namespace: sarg(&args, 2)?,
                    name: sarg(&args, 3)?,
                };
                match &self.lookup {
                    None => Ok(Value::empty_map()),
                    Some(session) => session.get(req).map_err(|e| e.to_string()),
                }
            }
            _ => match funcs::table().get(name) {
                Some(f) => f(&args),
                None => Err(format!("function {name:?} not defined")),
            },
        }
    }
}

/// Builds the `.Release` value.
pub fn release_value(r: &ReleaseInfo) -> Value {
    let mut m = BTreeMap::new();
    m.insert("Name".to_string(), Value::str(r.name.as_str()));
    m.insert("Namespace".to_string(), Value::str(r.namespace.as_str()));
    m.insert("Revision".to_string(), Value::Int(r.revision));
    m.insert("IsInstall".to_string(), Value::Bool(r.is_install));
    m.insert("IsUpgrade".to_string(), Value::Bool(!r.is_install));
    m.insert("Service".to_string(), Value::str("Helm"));
    Value::map(m)
}

/// Builds the `.Capabilities` value.
pub fn capabilities_value(c: &Capabilities) -> Value {
    let v = if c.kube_version.starts_with('v') {
        c.kube_version.clone()
    } else {
        format!("v{}", c.kube_version)
    };
    let parts: Vec<&str> = v.trim_start_matches('v').split('.').collect();
    let kv = KubeVersion {
        major: parts.first().unwrap_or(&"1").to_string(),
        minor: parts.get(1).unwrap_or(&"20").to_string(),
        version: v.clone(),
    };
    let mut m = BTreeMap::new();
    m.insert("KubeVersion".to_string(), Value::Object(Rc::new(kv)));
    m.insert(
        "APIVersions".to_string(),
        Value::Object(Rc::new(ApiVersions(c.api_versions.clone()))),
    );
    let mut hv = BTreeMap::new();
    hv.insert("Version".to_string(), Value::str("v3.17.3"));
    hv.insert(
        "GitCommit".to_string(),
        Value::str("e4da49785aa6e6ee2b86efd5dd9e43400318262b"),
    );
    hv.insert("GitTreeState".to_string(), Value::str("clean"));
    hv.insert("GoVersion".to_string(), Value::str("go1.23.7"));
    m.insert("HelmVersion".to_string(), Value::map(hv));
    Value::map(m)
}

/// Maps `Chart.yaml` keys to the Go field names templates use (`.Chart.Name`).
pub fn chart_value(c: &Chart) -> Value {
    let mut m = BTreeMap::new();
    let fields = [
        ("name", "Name"),
        ("home", "Home"),
        ("sources", "Sources"),
        ("version", "Version"),
        ("description", "Description"),
        ("keywords", "Keywords"),
        ("maintainers", "Maintainers"),
        ("icon", "Icon"),
        ("apiVersion", "APIVersion"),
        ("condition", "Condition"),
        ("tags", "Tags"),
        ("appVersion", "AppVersion"),
        ("deprecated", "Deprecated"),
        ("annotations", "Annotations"),
        ("kubeVersion", "KubeVersion"),
        ("dependencies", "Dependencies"),
        ("type", "Type"),
    ];
    let src = match &c.meta {
        Value::Map(mm) => mm.borrow().clone(),
        _ => BTreeMap::new(),
    };
    for (k, gk) in fields {
        let v = src.get(k).cloned().unwrap_or(Value::Nil);
        let v = match (gk, v) {
            ("Name", _) => Value::str(c.name.as_str()),
            (
                "Home" | "Version" | "Description" | "Icon" | "APIVersion" | "Condition" | "Tags"
                | "AppVersion" | "KubeVersion" | "Type",
                Value::Nil,
            ) => Value::str(""),
            ("Deprecated", Value::Nil) => Value::Bool(false),
            (_, Value::Float(f)) if gk != "Deprecated" => Value::str(crate::fmt::fmt_float_v(f)),
            (_, v) => v,
        };
        m.insert(gk.to_string(), v);
    }
    if c.api_version.is_empty() {
        m.insert("APIVersion".into(), Value::str("v1"));
    }
    Value::map(m)
}
