//! Helm 3 chart loading and Go `text/template` rendering, in process.
//!
//! - The Go `text/template` language, Sprig and the value model are the
//!   `plumb-template` crate; [`template`] re-exports its parser and executor.
//! - [`funcs`]: Helm's own functions (`required`, `toYaml`, `fromYaml`,
//!   `toToml`, `semverCompare`...) over Sprig; [`engine`]: `include`, `tpl`,
//!   `lookup` and the objects of a chart's context.
//! - [`chart`]: chart directories (`.helmignore`) and `.tgz` archives (hostile
//!   entries rejected), `Chart.yaml` v1/v2, subcharts in `charts/`.
//! - [`values`]: coalescing (null deletes a default), globals, conditions,
//!   tags, aliases, import-values.
//! - [`repo`]: Helm repositories: `index.yaml` parsing, chart resolution by
//!   Masterminds version range (Flux's rules), an HTTP(S) client (basic auth,
//!   custom CA, client certificates, Flux's `passCredentials`, size caps) and
//!   digest-verified chart downloads cached on disk by digest. The client is
//!   `reqwest` on rustls with aws-lc-rs (no ring).
//! - [`render()`]: one call from chart + values to ordered manifests, hooks
//!   (kind, weight, delete policy), notes and CRDs, as `helm template`.
//!
//! - [`storage`]: Helm v3 release records and the Secret driver's encoding.
//!
//! ## Why the template engine is hand-written
//! The Rust ports of Go templates (`gtmpl`, `gotmpl`) are not faithful enough
//! for real charts: `gtmpl` has no `break`/`continue`, no range over integers,
//! no `else with`, no short-circuit `and`/`or`, evaluates a different value
//! model (no shared mutable maps, which Sprig's `set`/`merge` rely on, no
//! `float64`-vs-`int` distinction that Go's `eq` and `printf` expose) and has
//! no way to re-enter the engine for Helm's `include`/`tpl`. `gotmpl` binds
//! Go itself. Helm's output depends on those details (`<no value>`, `1e+06`,
//! `%!d(float64=...)`), so plumb-template follows Go's `text/template`.
//! Likewise Sprig, `sigs.k8s.io/yaml` output and Masterminds semver rules are
//! reproduced in plumb-template, [`encode`] and the `plumb-semver` crate: no crate implements them.
//!
//! ## Speed
//! A render uses the second core where the work allows it: `values.yaml` is
//! read on a helper thread while the chart's templates parse; schema
//! validation (jsonschema) and the YAML read of every rendered document run
//! beside the template executor, which keeps the single-threaded [`Value`]
//! model. Document heads (apiVersion, kind, name, annotations) come straight
//! from the YAML event parser (`granit-parser`, what serde-saphyr is built on),
//! falling back to a full parse for anything unusual. RSA keys for `genCA` and
//! friends are made ahead on a helper thread once a chart generates its first
//! one. Outputs and errors are the same as the sequential order (schema errors
//! first, then the first failing file in path order).
//!
//! ## Bad input
//! Template errors read `template: name:line:col: ...` as Go's; `include`/
//! `tpl`/`template` nesting is bounded ([`template::exec::MAX_DEPTH`]); output
//! is capped ([`template::exec::MAX_OUTPUT`]); archives with absolute paths,
//! `..`, links or oversized entries are rejected ([`chart::MAX_FILE`],
//! [`chart::MAX_CHART`]).

pub mod chart;
pub mod encode;
pub mod engine;
pub mod error;
pub mod funcs;
pub mod lookup;
pub mod manifests;
pub mod render;
pub mod repo;
pub mod semver;
pub mod storage;
pub mod strvals;
pub mod template;
pub mod values;

/// The template language lives in plumb-template; these keep the paths
/// `plumb_helm::value` and `plumb_helm::fmt` working for embedders.
pub use plumb_template::{fmt, value};

pub use chart::{Chart, load_archive, load_dir, load_path};
pub use engine::{Capabilities, ReleaseInfo};
pub use error::{HelmError, RepoErrorKind};
pub use lookup::{Lookup, LookupLimits, LookupRequest};
pub use plumb_template::budget::Limits;
pub use render::{Hook, Manifest, RenderOptions, Rendered, render, render_with_limits};
pub use value::Value;

/// Parses a values file (YAML) into a value map, as `helm -f`.
pub fn parse_values(yaml: &str) -> Result<Value, HelmError> {
    let v = encode::yaml_to_value(yaml).map_err(|msg| HelmError::Values {
        chart: "values file".into(),
        msg,
    })?;
    match v {
        Value::Nil => Ok(Value::empty_map()),
        Value::Map(_) => Ok(v),
        _ => Err(HelmError::Values {
            chart: "values file".into(),
            msg: "values file is not a map".into(),
        }),
    }
}

/// Merges value files and `--set` assignments in order (later wins).
pub fn merge_user_values(files: &[Value], sets: &[String]) -> Result<Value, HelmError> {
    let out = Value::empty_map();
    for f in files {
        values::merge_values(&out, f);
    }
    for s in sets {
        strvals::parse_into(s, &out).map_err(|msg| HelmError::Values {
            chart: "--set".into(),
            msg,
        })?;
    }
    Ok(out)
}

/// Loads a chart archive and renders it in one call, with thread-safe inputs
/// and outputs (the controller can run it inside `spawn_blocking`). `values`
/// are the user values as JSON (numbers become `float64`, as in Helm).
pub fn render_archive(
    archive: &[u8],
    values: &serde_json::Value,
    opts: &RenderOptions<'_>,
) -> Result<Rendered, HelmError> {
    let chart = load_archive(archive)?;
    let user = match Value::from_json(values) {
        Value::Nil => Value::empty_map(),
        v @ Value::Map(_) => v,
        _ => {
            return Err(HelmError::Values {
                chart: chart.name.clone(),
                msg: "values must be a map".into(),
            });
        }
    };
    render(&chart, &user, opts)
}
