//! Helm's own template functions over plumb-template's value model:
//! `required`, the YAML/JSON/TOML conversions Helm adds to Sprig (`toYaml`,
//! `fromYaml`, `fromJson`, `toToml`...) and Sprig's `semver`/`semverCompare`
//! (on Helm's Masterminds semver). `include`, `tpl` and `lookup` need the
//! engine and live in [`crate::engine`].

use std::collections::BTreeMap;
use std::sync::OnceLock;

use rustc_hash::FxHashMap;

pub use plumb_template::funcs::{
    Func, arg, as_list, iarg, is_empty, parse_int_base0, sarg, strval, to_f64, to_i64, want,
    want_min,
};

use crate::encode;
use crate::value::Value;
use plumb_template::budget;

fn s(v: impl Into<String>) -> Result<Value, String> {
    Ok(Value::str(v.into()))
}

/// Go's builtins and Sprig (from plumb-template) plus Helm's functions.
pub fn table() -> &'static FxHashMap<&'static str, Func> {
    static T: OnceLock<FxHashMap<&'static str, Func>> = OnceLock::new();
    T.get_or_init(|| {
        let mut m = plumb_template::funcs::table().clone();
        register(&mut m);
        m
    })
}

/// Names handled by the engine itself (they need access to it).
pub const ENGINE_FUNCS: &[&str] = &["include", "tpl", "lookup", "and", "or"];

fn register(m: &mut FxHashMap<&'static str, Func>) {
    m.insert("required", |a| {
        want(a, 2, "required")?;
        let msg = sarg(a, 0)?;
        match &a[1] {
            Value::Nil => Err(msg),
            Value::Str(x) if x.is_empty() => Err(msg),
            v => Ok(v.clone()),
        }
    });

    m.insert("toYaml", |a| {
        want(a, 1, "toYaml")?;
        s(encode::to_yaml(&a[0]).trim_end_matches('\n'))
    });
    m.insert("mustToYaml", |a| {
        want(a, 1, "mustToYaml")?;
        s(encode::to_yaml(&a[0]).trim_end_matches('\n'))
    });
    m.insert("toYamlPretty", |a| {
        want(a, 1, "toYamlPretty")?;
        s(encode::to_yaml(&a[0]).trim_end_matches('\n'))
    });
    m.insert("fromYaml", |a| {
        let x = sarg(a, 0)?;
        Ok(match encode::yaml_to_value(&x) {
            Ok(Value::Map(mm)) => Value::Map(mm),
            Ok(Value::Nil) => Value::empty_map(),
            Ok(other) => error_map(&format!(
                "error unmarshaling JSON: while decoding JSON: json: cannot unmarshal {} into Go value of type map[string]interface {{}}",
                json_kind(&other)
            )),
            Err(e) => error_map(&format!("error converting YAML to JSON: {e}")),
        })
    });
    m.insert("fromYamlArray", |a| {
        let x = sarg(a, 0)?;
        Ok(match encode::yaml_to_value(&x) {
            Ok(Value::List(l)) => Value::List(l),
            Ok(Value::Nil) => Value::list(Vec::new()),
            Ok(other) => Value::list(vec![Value::str(format!(
                "error unmarshaling JSON: while decoding JSON: json: cannot unmarshal {} into Go value of type []interface {{}}",
                json_kind(&other)
            ))]),
            Err(e) => Value::list(vec![Value::str(format!("error converting YAML to JSON: {e}"))]),
        })
    });
    m.insert("fromJson", |a| {
        let x = sarg(a, 0)?;
        Ok(match encode::json_to_value(&x) {
            Ok(Value::Map(mm)) => Value::Map(mm),
            Ok(_) => {
                error_map("json: cannot unmarshal into Go value of type map[string]interface {}")
            }
            Err(e) => error_map(&e),
        })
    });
    m.insert("mustFromJson", |a| encode::json_to_value(&sarg(a, 0)?));
    m.insert("fromJsonArray", |a| {
        let x = sarg(a, 0)?;
        Ok(match encode::json_to_value(&x) {
            Ok(Value::List(l)) => Value::List(l),
            Ok(_) => Value::list(vec![Value::str(
                "json: cannot unmarshal into Go value of type []interface {}",
            )]),
            Err(e) => Value::list(vec![Value::str(e)]),
        })
    });
    m.insert("toToml", |a| {
        want(a, 1, "toToml")?;
        s(to_toml(&a[0]))
    });
    // Helm's fromToml: a table, or `{"Error": message}` for bad TOML.
    m.insert("fromToml", |a| {
        let src = sarg(a, 0)?;
        budget::charge_bytes(src.len() as u64 * 4)?;
        Ok(match toml::from_str::<toml::value::Table>(&src) {
            Ok(t) => from_toml(&toml::Value::Table(t)),
            Err(e) => error_map(&format!("toml: {e}")),
        })
    });

    // ---- semver ----
    m.insert("semverCompare", |a| {
        let c = sarg(a, 0)?;
        let v = sarg(a, 1)?;
        crate::semver::constraint_matches(&c, &v).map(Value::Bool)
    });
    m.insert("semver", |a| crate::semver::semver_value(&sarg(a, 0)?));
}

fn error_map(msg: &str) -> Value {
    let mut d = BTreeMap::new();
    d.insert("Error".to_string(), Value::str(msg));
    Value::map(d)
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::List(_) => "array",
        Value::Str(_) => "string",
        Value::Bool(_) => "bool",
        Value::Map(_) => "object",
        _ => "number",
    }
}

fn toml_key(k: &str) -> String {
    if !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        k.to_string()
    } else {
        crate::fmt::go_quote(k)
    }
}

fn toml_scalar(v: &Value) -> String {
    toml_scalar_at(v, 0)
}

fn toml_scalar_at(v: &Value, d: usize) -> String {
    if v.is_container() && !budget::room(0) {
        return String::new();
    }
    match v {
        Value::Str(s) => crate::fmt::go_quote(s),
        Value::Bool(b) => b.to_string(),
        Value::Int(i) | Value::I64(i) => i.to_string(),
        Value::Float(f) => {
            if f.fract() == 0.0 {
                format!("{f:.1}")
            } else {
                f.to_string()
            }
        }
        Value::List(l) => budget::deeper(d, || {
            let parts: Vec<String> = l.iter().map(|x| toml_scalar_at(x, d + 1)).collect();
            format!("[{}]", parts.join(", "))
        })
        .unwrap_or_default(),
        Value::Map(m) => budget::deeper(d, || {
            let parts: Vec<String> = m
                .borrow()
                .iter()
                .map(|(k, v)| format!("{} = {}", toml_key(k), toml_scalar_at(v, d + 1)))
                .collect();
            format!("{{{}}}", parts.join(", "))
        })
        .unwrap_or_default(),
        other => crate::fmt::go_quote(&strval(other)),
    }
}

/// A parsed TOML value as Go's TOML decoder gives it to templates (integers are `int64`,
/// date-times their TOML text).
fn from_toml(v: &toml::Value) -> Value {
    match v {
        toml::Value::String(x) => Value::str(x.as_str()),
        toml::Value::Integer(i) => Value::I64(*i),
        toml::Value::Float(f) => Value::Float(*f),
        toml::Value::Boolean(b) => Value::Bool(*b),
        toml::Value::Datetime(d) => Value::str(d.to_string()),
        toml::Value::Array(a) => Value::list(a.iter().map(from_toml).collect()),
        toml::Value::Table(t) => Value::map(
            t.iter()
                .map(|(k, v)| (k.clone(), from_toml(v)))
                .collect::<BTreeMap<_, _>>(),
        ),
    }
}

fn to_toml(v: &Value) -> String {
    fn table(out: &mut String, prefix: &str, m: &BTreeMap<String, Value>, d: usize) {
        for (k, x) in m {
            if !matches!(x, Value::Map(_) | Value::Nil) {
                out.push_str(&format!("{} = {}\n", toml_key(k), toml_scalar(x)));
            }
        }
        for (k, x) in m {
            if let Value::Map(sub) = x {
                let name = if prefix.is_empty() {
                    toml_key(k)
                } else {
                    format!("{prefix}.{}", toml_key(k))
                };
                out.push_str(&format!("\n[{name}]\n"));
                if budget::room(out.len()) {
                    budget::deeper(d, || table(out, &name, &sub.borrow(), d + 1));
                }
            }
        }
    }
    let mut out = String::new();
    if let Value::Map(m) = v {
        table(&mut out, "", &m.borrow(), 0);
    }
    out
}
