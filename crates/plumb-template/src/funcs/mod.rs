//! Template functions: Go's builtins and Sprig v3 (as Helm bundles it).
//!
//! Plain functions take their evaluated arguments and return a value or an
//! error message. `and`/`or` short-circuit inside the executor; functions that
//! need the engine (Helm's `include`, `tpl`) belong to a [`crate::exec::Host`].

mod builtin;
mod crypto;
mod password;
pub mod re2;

pub use crypto::{arm_prefetch, stop_prefetch};
mod sprig;

use rustc_hash::FxHashMap;
use std::sync::OnceLock;

use crate::value::Value;

/// A plain template function.
pub type Func = fn(&[Value]) -> Result<Value, String>;

/// The table of plain functions.
pub fn table() -> &'static FxHashMap<&'static str, Func> {
    static T: OnceLock<FxHashMap<&'static str, Func>> = OnceLock::new();
    T.get_or_init(|| {
        let mut m: FxHashMap<&'static str, Func> = FxHashMap::default();
        builtin::register(&mut m);
        sprig::register(&mut m);
        crypto::register(&mut m);
        password::register(&mut m);
        // Sprig's aliases.
        for (alias, name) in [
            ("trimall", "trimAll"),
            ("date_in_zone", "dateInZone"),
            ("date_modify", "dateModify"),
            ("mustDateModify", "dateModify"),
            ("must_date_modify", "dateModify"),
            ("mustRest", "rest"),
            ("mustInitial", "initial"),
            ("mustReverse", "reverse"),
            ("mustWithout", "without"),
            ("mustChunk", "chunk"),
            ("mustToRawJson", "toRawJson"),
            ("osBase", "base"),
            ("osClean", "clean"),
            ("osDir", "dir"),
            ("osExt", "ext"),
            ("osIsAbs", "isAbs"),
        ] {
            if let Some(f) = m.get(name).copied() {
                m.insert(alias, f);
            }
        }
        m.insert("hello", |_| Ok(Value::str("Hello!")));
        m.insert("abbrevboth", |a| {
            let l = iarg(a, 0)?;
            let r = iarg(a, 1)?;
            let s = sarg(a, 2)?;
            Ok(Value::str(abbrevboth(l, r, &s)))
        });
        m.insert("getHostByName", |a| {
            use std::net::ToSocketAddrs;
            let h = sarg(a, 0)?;
            let ip = (h.as_str(), 0)
                .to_socket_addrs()
                .ok()
                .and_then(|mut it| it.next())
                .map(|sa| sa.ip().to_string())
                .unwrap_or_default();
            Ok(Value::str(ip))
        });
        m.insert("durationRound", |a| {
            let v = arg(a, 0);
            let secs = match &v {
                Value::Str(s) => s.trim_end_matches('s').parse::<f64>().unwrap_or(0.0) as i64,
                other => to_i64(other) / 1_000_000_000,
            };
            let s = secs.unsigned_abs();
            let out = if s >= 365 * 86400 {
                format!("{}y", s / (365 * 86400))
            } else if s >= 30 * 86400 {
                format!("{}mo", s / (30 * 86400))
            } else if s >= 86400 {
                format!("{}d", s / 86400)
            } else if s >= 3600 {
                format!("{}h", s / 3600)
            } else if s >= 60 {
                format!("{}m", s / 60)
            } else {
                format!("{s}s")
            };
            Ok(Value::str(out))
        });
        m
    })
}

/// Names the executor evaluates itself (short-circuit).
pub const EXEC_FUNCS: &[&str] = &["and", "or"];

/// Whether `name` is a function of the standard set (builtins, Sprig, `and`/`or`).
pub fn is_std_func(name: &str) -> bool {
    table().contains_key(name) || EXEC_FUNCS.contains(&name)
}

// ---- shared conversions (Sprig's `cast`-style coercions) ----

/// Sprig's `abbrevboth` (goutils.AbbreviateFull).
fn abbrevboth(left: i64, width: i64, s: &str) -> String {
    let n = s.len() as i64;
    if width < 4 || n <= width {
        return s.to_string();
    }
    let mut offset = left.clamp(0, n);
    if n - offset < width - 3 {
        offset = n - (width - 3);
    }
    let bytes = s.as_bytes();
    let cut = |a: i64, b: i64| {
        String::from_utf8_lossy(&bytes[a.max(0) as usize..b.min(n).max(0) as usize]).into_owned()
    };
    if offset <= 4 {
        return format!("{}...", cut(0, width - 3));
    }
    if width < 7 {
        return s.to_string();
    }
    if offset + width - 3 < n {
        let inner = abbrevboth(0, width - 3, &cut(offset, n));
        return format!("...{inner}");
    }
    format!("...{}", cut(n - (width - 3), n))
}

/// Sprig's `strval`: strings as is, everything else through `%v`.
pub fn strval(v: &Value) -> String {
    match v {
        Value::Str(s) => s.to_string(),
        Value::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
        Value::Nil => "<nil>".to_string(),
        other => crate::fmt::sprint_one(other),
    }
}

/// `cast.ToInt64`-like conversion (strings parsed, floats truncated, errors as 0).
pub fn to_i64(v: &Value) -> i64 {
    match v {
        Value::Int(i) | Value::I64(i) => *i,
        Value::Float(f) => *f as i64,
        Value::Bool(b) => i64::from(*b),
        Value::Str(s) => parse_int_base0(s.trim()).unwrap_or(0),
        _ => 0,
    }
}

/// Go's `strconv.ParseInt(s, 0, 64)`.
pub fn parse_int_base0(s: &str) -> Option<i64> {
    let (neg, b) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let v = if let Some(h) = b.strip_prefix("0x").or_else(|| b.strip_prefix("0X")) {
        i64::from_str_radix(h, 16).ok()?
    } else if let Some(o) = b.strip_prefix("0o").or_else(|| b.strip_prefix("0O")) {
        i64::from_str_radix(o, 8).ok()?
    } else if let Some(bn) = b.strip_prefix("0b").or_else(|| b.strip_prefix("0B")) {
        i64::from_str_radix(bn, 2).ok()?
    } else if b.len() > 1 && b.starts_with('0') {
        i64::from_str_radix(&b[1..], 8).ok()?
    } else {
        b.parse::<i64>().ok()?
    };
    Some(if neg { -v } else { v })
}

/// `cast.ToFloat64`-like conversion.
pub fn to_f64(v: &Value) -> f64 {
    match v {
        Value::Int(i) | Value::I64(i) => *i as f64,
        Value::Float(f) => *f,
        Value::Bool(b) => f64::from(u8::from(*b)),
        Value::Str(s) => s.trim().parse().unwrap_or(0.0),
        _ => 0.0,
    }
}

/// Sprig's `empty`.
pub fn is_empty(v: &Value) -> bool {
    !v.truthy()
}

/// A list view of a value (lists as is, nil empty), or an error naming the type.
pub fn as_list(v: &Value, func: &str) -> Result<Vec<Value>, String> {
    match v {
        Value::List(l) => Ok(l.as_ref().clone()),
        Value::Nil => Ok(Vec::new()),
        Value::Object(o) if o.as_list().is_some() => Ok(o.as_list().unwrap_or_default()),
        other => Err(format!("Cannot {func} on type {}", other.type_name())),
    }
}

/// Argument `i` or nil.
pub fn arg(args: &[Value], i: usize) -> Value {
    args.get(i).cloned().unwrap_or_default()
}

/// Checks the argument count.
pub fn want(args: &[Value], n: usize, name: &str) -> Result<(), String> {
    if args.len() != n {
        return Err(format!(
            "wrong number of args for {name}: want {n} got {}",
            args.len()
        ));
    }
    Ok(())
}

/// Checks the minimum argument count.
pub fn want_min(args: &[Value], n: usize, name: &str) -> Result<(), String> {
    if args.len() < n {
        return Err(format!(
            "wrong number of args for {name}: want at least {n} got {}",
            args.len()
        ));
    }
    Ok(())
}

/// A string argument as Go would pass it to a `string` parameter.
pub fn sarg(args: &[Value], i: usize) -> Result<String, String> {
    match args.get(i) {
        Some(Value::Str(s)) => Ok(s.to_string()),
        Some(Value::Nil) | None => Err("invalid value; expected string".into()),
        Some(other) => Err(format!(
            "wrong type for value; expected string; got {}",
            other.type_name()
        )),
    }
}

/// An int argument as Go would pass it to an `int` parameter.
pub fn iarg(args: &[Value], i: usize) -> Result<i64, String> {
    match args.get(i) {
        Some(Value::Int(n) | Value::I64(n)) => Ok(*n),
        Some(Value::Nil) | None => Err("invalid value; expected int".into()),
        Some(other) => Err(format!(
            "wrong type for value; expected int; got {}",
            other.type_name()
        )),
    }
}
