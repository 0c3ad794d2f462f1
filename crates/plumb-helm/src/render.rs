//! The render pipeline: values, schema validation and template execution; the rendered
//! files become sorted manifests and hooks in [`crate::manifests`].

use std::collections::BTreeMap;
use std::rc::Rc;

use crate::chart::Chart;
use crate::engine::{
    Capabilities, Files, HelmHost, Lookup, ReleaseInfo, capabilities_value, chart_value,
    release_value,
};
use crate::error::HelmError;
use crate::manifests::{Doc, assemble, classify_file};
pub use crate::manifests::{INSTALL_ORDER, sort_manifests, split_manifests};
use crate::template::exec::{Exec, TemplateSet};
use crate::template::parse::is_partial;
use crate::value::Value;
use crate::values;
use plumb_template::budget::Limits;

/// Options of one render.
pub struct RenderOptions<'a> {
    /// `.Release`.
    pub release: ReleaseInfo,
    /// `.Capabilities`.
    pub capabilities: Capabilities,
    /// Cluster lookups for `lookup`; `None` answers empty maps.
    pub lookup: Option<&'a dyn Lookup>,
    /// Skip `values.schema.json` validation (Helm's `--skip-schema-validation`, a
    /// HelmRelease's `disableSchemaValidation`).
    pub skip_schema_validation: bool,
}

/// One rendered document.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// Template path, e.g. `mychart/templates/deployment.yaml`.
    pub path: String,
    /// The document text (trimmed).
    pub content: String,
    /// `apiVersion`.
    pub api_version: String,
    /// `kind`.
    pub kind: String,
    /// `metadata.name`.
    pub name: String,
}

/// A hook document with its parsed annotations.
#[derive(Debug, Clone)]
pub struct Hook {
    /// The document.
    pub manifest: Manifest,
    /// `helm.sh/hook` events (e.g. `pre-install`).
    pub events: Vec<String>,
    /// `helm.sh/hook-weight`.
    pub weight: i64,
    /// `helm.sh/hook-delete-policy` entries.
    pub delete_policies: Vec<String>,
}

/// The result of rendering a chart.
#[derive(Debug, Clone, Default)]
pub struct Rendered {
    /// Non-hook documents, in install order.
    pub manifests: Vec<Manifest>,
    /// Hook documents, in kind order.
    pub hooks: Vec<Hook>,
    /// The top chart's rendered NOTES.txt.
    pub notes: String,
    /// CRD files of the chart and its subcharts (path, content).
    pub crds: Vec<(String, String)>,
    /// The final values the templates saw.
    pub values: serde_json::Value,
}

impl Rendered {
    /// The text `helm template` prints.
    pub fn to_helm_template_output(&self, include_crds: bool) -> String {
        let mut body = String::new();
        if include_crds {
            for (p, c) in &self.crds {
                body.push_str(&format!("---\n# Source: {p}\n{c}\n"));
            }
        }
        for m in &self.manifests {
            body.push_str(&format!("---\n# Source: {}\n{}\n", m.path, m.content));
        }
        let mut out = format!("{}\n", body.trim());
        for h in &self.hooks {
            out.push_str(&format!(
                "---\n# Source: {}\n{}\n",
                h.manifest.path, h.manifest.content
            ));
        }
        out
    }
}

struct Tpl<'c> {
    path: String,
    chart: &'c Chart,
    /// Path of value tables from the root (chart names).
    vpath: Vec<String>,
    base: String,
    library: bool,
}

fn collect<'c>(
    c: &'c Chart,
    prefix: &str,
    vpath: Vec<String>,
    out: &mut Vec<Tpl<'c>>,
    library: bool,
) {
    let full = if prefix.is_empty() {
        c.name.clone()
    } else {
        format!("{prefix}/charts/{}", c.name)
    };
    let lib = library || c.is_library();
    for (p, _) in c.templates.iter() {
        out.push(Tpl {
            path: format!("{full}/{p}"),
            chart: c,
            vpath: vpath.clone(),
            base: format!("{full}/templates"),
            library: lib,
        });
    }
    for s in &c.subcharts {
        let mut vp = vpath.clone();
        vp.push(s.name.clone());
        collect(s, &full, vp, out, false);
    }
}

fn table_at(v: &Value, path: &[String]) -> Value {
    let mut cur = v.clone();
    for p in path {
        let next = match &cur {
            Value::Map(m) => m.borrow().get(p).cloned(),
            _ => None,
        };
        cur = match next {
            Some(x @ Value::Map(_)) => x,
            _ => return Value::empty_map(),
        };
    }
    cur
}

/// Builds each chart's shared template context (as Helm's `recAllTpls`),
/// including `.Subcharts`.
fn build_contexts(
    c: &Chart,
    vals: &Value,
    root: bool,
    release: &Value,
    caps: &Value,
    out: &mut BTreeMap<*const Chart, Value>,
) -> Value {
    let mut ctx = BTreeMap::new();
    let mut cv = chart_value(c);
    if let Value::Map(m) = &mut cv {
        m.borrow_mut()
            .insert("IsRoot".to_string(), Value::Bool(root));
    }
    ctx.insert("Chart".to_string(), cv);
    ctx.insert(
        "Files".to_string(),
        Value::Object(Rc::new(Files(c.files.clone()))),
    );
    ctx.insert("Release".to_string(), release.clone());
    ctx.insert("Capabilities".to_string(), caps.clone());
    ctx.insert("Values".to_string(), vals.clone());
    let mut subs = BTreeMap::new();
    for s in &c.subcharts {
        let sv = table_at(vals, std::slice::from_ref(&s.name));
        subs.insert(
            s.name.clone(),
            build_contexts(s, &sv, false, release, caps, out),
        );
    }
    ctx.insert("Subcharts".to_string(), Value::map(subs));
    let v = Value::map(ctx);
    out.insert(c as *const Chart, v.clone());
    v
}

/// One chart's `values.schema.json` and the values it must accept, in a form
/// that can cross threads (the template `Value` cannot).
struct SchemaJob {
    chart: String,
    schema: Vec<u8>,
    values: serde_json::Value,
}

fn schema_jobs(c: &Chart, vals: &Value, jobs: &mut Vec<SchemaJob>) {
    if let Some(schema) = &c.schema {
        jobs.push(SchemaJob {
            chart: c.name.clone(),
            schema: schema.clone(),
            values: vals.to_json(),
        });
    }
    for s in &c.subcharts {
        let sv = match vals {
            Value::Map(m) => m.borrow().get(&s.name).cloned().unwrap_or_default(),
            _ => Value::Nil,
        };
        schema_jobs(s, &sv, jobs);
    }
}

/// Validates each chart's values against its schema; one entry per failing chart.
fn validate_schemas(jobs: Vec<SchemaJob>) -> Vec<String> {
    let mut errs = Vec::new();
    for job in jobs {
        let Ok(sj) = serde_json::from_slice::<serde_json::Value>(&job.schema) else {
            continue;
        };
        let Ok(validator) = jsonschema::validator_for(&sj) else {
            continue;
        };
        let problems: Vec<String> = validator
            .iter_errors(&job.values)
            .map(|e| {
                let path = e.instance_path().to_string();
                let p = if path.is_empty() {
                    "(root)".to_string()
                } else {
                    path.trim_start_matches('/').replace('/', ".")
                };
                format!("- {p}: {e}")
            })
            .collect();
        if !problems.is_empty() {
            errs.push(format!("{}:\n{}", job.chart, problems.join("\n")));
        }
    }
    errs
}

/// Renders a chart with user values (already merged from files and `--set`),
/// within the process's default budget ([`Limits::process_default`]).
pub fn render(
    chart: &Chart,
    user_values: &Value,
    opts: &RenderOptions<'_>,
) -> Result<Rendered, HelmError> {
    render_with_limits(chart, user_values, opts, Limits::process_default())
}

/// [`render`] within explicit limits: operations, bytes of values and output,
/// value depth and wall-clock time. A render that exceeds one fails with a
/// template error that names the chart's template and the limit.
pub fn render_with_limits(
    chart: &Chart,
    user_values: &Value,
    opts: &RenderOptions<'_>,
    limits: Limits,
) -> Result<Rendered, HelmError> {
    let _budget = limits.install();
    if chart.is_library() {
        return Err(HelmError::Render {
            chart: chart.name.clone(),
            msg: "library charts are not installable".into(),
        });
    }
    let kv = &opts.capabilities.kube_version;
    if let Value::Map(m) = &chart.meta
        && let Some(Value::Str(req)) = m.borrow().get("kubeVersion")
        && !req.is_empty()
    {
        let ok = crate::semver::constraint_matches(req, kv).unwrap_or(false);
        if !ok {
            return Err(HelmError::Render {
                chart: chart.name.clone(),
                msg: format!(
                    "chart requires kubeVersion: {req} which is incompatible with Kubernetes {kv}"
                ),
            });
        }
    }
    let missing: Vec<&str> = chart
        .dependencies
        .iter()
        .filter(|d| !chart.subcharts.iter().any(|s| s.name == d.name))
        .map(|d| d.name.as_str())
        .collect();
    if !missing.is_empty() {
        return Err(HelmError::Render {
            chart: chart.name.clone(),
            msg: format!(
                "found in Chart.yaml, but missing in charts/ directory: {}",
                missing.join(", ")
            ),
        });
    }
    let mut chart = chart.clone();
    let user = match user_values {
        Value::Map(_) => user_values.deep_copy(),
        _ => Value::empty_map(),
    };
    values::process_dependencies(&mut chart, &user).map_err(|msg| HelmError::Values {
        chart: chart.name.clone(),
        msg,
    })?;
    let vals = user.deep_copy();
    values::coalesce(&chart, &vals, false).map_err(|msg| HelmError::Values {
        chart: chart.name.clone(),
        msg,
    })?;
    let mut jobs = Vec::new();
    if !opts.skip_schema_validation {
        schema_jobs(&chart, &vals, &mut jobs);
    }
    let _keys = KeyPrefetch::start(rsa_key_calls(&chart));
    let mut tpls = Vec::new();
    collect(&chart, "", Vec::new(), &mut tpls, false);
    // Helm parses deepest paths first, and equal depths in reverse order, so
    // the top chart's definitions win.
    tpls.sort_by(|a, b| {
        let (ca, cb) = (a.path.matches('/').count(), b.path.matches('/').count());
        cb.cmp(&ca).then_with(|| b.path.cmp(&a.path))
    });
    // Schema validation and the YAML parse of rendered files run on helper
    // threads while templates execute: both work on plain strings and JSON,
    // and together they are a third to a half of a render.
    std::thread::scope(|scope| {
        let schema = (!jobs.is_empty()).then(|| scope.spawn(move || validate_schemas(jobs)));
        let (tx, rx) = std::sync::mpsc::channel::<(String, String)>();
        let classifier = scope.spawn(move || {
            rx.into_iter()
                .map(|(path, text)| {
                    let docs = classify_file(&path, &text);
                    (path, docs)
                })
                .collect::<BTreeMap<String, Result<Vec<Doc>, HelmError>>>()
        });
        let executed = execute_templates(&chart, &vals, opts, &tpls, tx);
        let errs = match schema {
            Some(h) => h
                .join()
                .unwrap_or_else(|_| vec!["schema validation panicked".into()]),
            None => Vec::new(),
        };
        // Helm validates values before it renders, so a schema error wins.
        if !errs.is_empty() {
            return Err(HelmError::Schema {
                chart: chart.name.clone(),
                msg: format!(
                    "values don't meet the specifications of the schema(s) in the following chart(s):\n{}",
                    errs.join("\n")
                ),
            });
        }
        let notes = executed?;
        let files = classifier.join().map_err(|_| HelmError::Render {
            chart: chart.name.clone(),
            msg: "manifest classification panicked".into(),
        })?;
        let (manifests, hooks) = assemble(files.into_values())?;
        let crds = chart
            .crds("")
            .into_iter()
            .map(|(p, d)| (p, String::from_utf8_lossy(&d).into_owned()))
            .collect();
        Ok(Rendered {
            manifests,
            hooks,
            notes,
            crds,
            values: vals.to_json(),
        })
    })
}

/// Calls in the chart's templates that make an RSA key, an upper bound of
/// the keys a render needs (some sit in branches not taken).
fn rsa_key_calls(c: &Chart) -> usize {
    let own: usize = c
        .templates
        .iter()
        .map(|(_, src)| {
            ["genCA", "genSelfSignedCert", "genSignedCert"]
                .iter()
                .map(|f| {
                    src.match_indices(f)
                        .filter(|(i, _)| {
                            // `genCAWithKey` & co bring their own key.
                            !src[i + f.len()..].starts_with(|ch: char| ch.is_alphanumeric())
                        })
                        .count()
                })
                .sum::<usize>()
        })
        .sum();
    own + c.subcharts.iter().map(rsa_key_calls).sum::<usize>()
}

/// Keys made ahead for one render; stops the helper when the render ends.
struct KeyPrefetch;

impl KeyPrefetch {
    fn start(calls: usize) -> Option<Self> {
        (calls > 0).then(|| {
            plumb_template::funcs::arm_prefetch(calls);
            KeyPrefetch
        })
    }
}

impl Drop for KeyPrefetch {
    fn drop(&mut self) {
        plumb_template::funcs::stop_prefetch();
    }
}

/// Parses every template and executes the renderable ones, sending each
/// rendered file to `out`; returns the top chart's NOTES.txt.
fn execute_templates(
    chart: &Chart,
    vals: &Value,
    opts: &RenderOptions<'_>,
    tpls: &[Tpl<'_>],
    out: std::sync::mpsc::Sender<(String, String)>,
) -> Result<String, HelmError> {
    let mut set = TemplateSet::default();
    fn seed(set: &mut TemplateSet, c: &Chart) {
        for p in c.preparsed.iter() {
            set.seed(p);
        }
        for s in &c.subcharts {
            seed(set, s);
        }
    }
    seed(&mut set, chart);
    for t in tpls {
        let rel = &t.path[t.base.len() - "templates".len()..];
        let src = t
            .chart
            .templates
            .iter()
            .find(|(p, _)| p == rel)
            .map(|(_, s)| s.as_str())
            .unwrap_or("");
        set.add(&t.path, src, &HelmHost::is_func)
            .map_err(|msg| HelmError::Template { msg })?;
    }
    let set = Rc::new(set);
    let host = HelmHost {
        lookup: opts.lookup.map(crate::lookup::Session::new),
    };
    let release = release_value(&opts.release);
    let caps = capabilities_value(&opts.capabilities);
    let mut contexts: BTreeMap<*const Chart, Value> = BTreeMap::new();
    build_contexts(chart, vals, true, &release, &caps, &mut contexts);
    let mut notes = String::new();
    let mut written = 0usize;
    for t in tpls {
        if is_partial(&t.path) || t.library {
            continue;
        }
        let Some(ctx) = contexts.get(&(t.chart as *const Chart)).cloned() else {
            continue;
        };
        if let Value::Map(m) = &ctx {
            let mut tm = BTreeMap::new();
            tm.insert("Name".to_string(), Value::str(t.path.as_str()));
            tm.insert("BasePath".to_string(), Value::str(t.base.as_str()));
            m.borrow_mut()
                .insert("Template".to_string(), Value::map(tm));
        }
        let mut ex = Exec::new(set.clone(), &host);
        ex.written = written;
        let mut buf = String::new();
        ex.execute(&t.path, ctx, &mut buf)
            .map_err(|msg| HelmError::Template {
                msg: clean_error(&msg),
            })?;
        written = ex.written;
        let text = buf.replace("<no value>", "");
        if t.path.ends_with("NOTES.txt") {
            if t.vpath.is_empty() {
                notes = text;
            }
            continue;
        }
        // The classifier only goes away when this scope ends.
        let _ = out.send((t.path.clone(), text));
    }
    Ok(notes)
}

/// Helm turns `fail`/`required` errors into "execution error at (LOCATION): MSG",
/// with the outermost location and the innermost message.
fn clean_error(msg: &str) -> String {
    for marker in ["error calling fail: ", "error calling required: "] {
        if let Some(i) = msg.rfind(marker) {
            let inner = &msg[i + marker.len()..];
            if let Some(rest) = msg.strip_prefix("template: ")
                && let Some(j) = rest.find(": executing ")
            {
                return format!("execution error at ({}): {inner}", &rest[..j]);
            }
        }
    }
    msg.to_string()
}
