//! Go `text/template` builtin functions.

use rustc_hash::FxHashMap;
use std::cmp::Ordering;

use super::{Func, want, want_min};
use crate::fmt::{sprint, sprintf, sprintln};
use crate::value::Value;

pub(super) fn register(m: &mut FxHashMap<&'static str, Func>) {
    m.insert("not", |a| {
        want(a, 1, "not")?;
        Ok(Value::Bool(!a[0].truthy()))
    });
    m.insert("len", len);
    m.insert("index", index);
    m.insert("print", |a| Ok(Value::str(sprint(a))));
    m.insert("println", |a| Ok(Value::str(sprintln(a))));
    m.insert("printf", |a| {
        want_min(a, 1, "printf")?;
        let f = super::sarg(a, 0)?;
        Ok(Value::str(sprintf(&f, &a[1..])))
    });
    m.insert("eq", eq);
    m.insert("ne", |a| {
        want(a, 2, "ne")?;
        Ok(Value::Bool(!basic_eq(&a[0], &a[1])?))
    });
    m.insert("lt", |a| cmp_fn(a, "lt", |o| o == Ordering::Less));
    m.insert("le", |a| cmp_fn(a, "le", |o| o != Ordering::Greater));
    m.insert("gt", |a| cmp_fn(a, "gt", |o| o == Ordering::Greater));
    m.insert("ge", |a| cmp_fn(a, "ge", |o| o != Ordering::Less));
    m.insert("html", |a| {
        let s = sprint(a);
        Ok(Value::str(
            s.replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;")
                .replace('"', "&#34;")
                .replace('\'', "&#39;"),
        ))
    });
    m.insert("js", |a| {
        let s = sprint(a);
        let mut o = String::new();
        for c in s.chars() {
            match c {
                '\\' => o.push_str("\\\\"),
                '\'' => o.push_str("\\'"),
                '"' => o.push_str("\\\""),
                '<' => o.push_str("\\u003C"),
                '>' => o.push_str("\\u003E"),
                '&' => o.push_str("\\u0026"),
                '=' => o.push_str("\\u003D"),
                '\n' => o.push_str("\\n"),
                '\r' => o.push_str("\\r"),
                '\t' => o.push_str("\\t"),
                c => o.push(c),
            }
        }
        Ok(Value::str(o))
    });
    m.insert("urlquery", |a| Ok(Value::str(query_escape(&sprint(a)))));
}

/// Go's `url.QueryEscape`.
pub fn query_escape(s: &str) -> String {
    let mut o = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                o.push(b as char)
            }
            b' ' => o.push('+'),
            _ => o.push_str(&format!("%{b:02X}")),
        }
    }
    o
}

fn len(a: &[Value]) -> Result<Value, String> {
    want(a, 1, "len")?;
    let n = match &a[0] {
        Value::Str(s) => s.len(),
        Value::Bytes(b) => b.len(),
        Value::List(l) => l.len(),
        Value::Map(m) => m.borrow().len(),
        Value::Nil => return Err("len of nil pointer".into()),
        other => return Err(format!("len of type {}", other.type_name())),
    };
    Ok(Value::Int(n as i64))
}

fn index(a: &[Value]) -> Result<Value, String> {
    want_min(a, 1, "index")?;
    let mut cur = a[0].clone();
    for i in &a[1..] {
        cur = match &cur {
            Value::Map(m) => match i {
                Value::Str(k) => m.borrow().get(&**k).cloned().unwrap_or(Value::Nil),
                Value::Nil => Value::Nil,
                other => {
                    return Err(format!(
                        "value has type {}; should be string",
                        other.type_name()
                    ));
                }
            },
            Value::List(_) | Value::Str(_) | Value::Bytes(_) => {
                let n = match i {
                    Value::Int(n) | Value::I64(n) => *n,
                    Value::Float(_) | Value::Str(_) | Value::Bool(_) | Value::Nil => {
                        return Err(format!(
                            "cannot index slice/array with type {}",
                            i.type_name()
                        ));
                    }
                    _ => return Err("cannot index slice/array with nil".into()),
                };
                let len = match &cur {
                    Value::List(l) => l.len(),
                    Value::Str(s) => s.len(),
                    Value::Bytes(b) => b.len(),
                    _ => 0,
                };
                if n < 0 || n as usize >= len {
                    return Err(format!("index out of range: {n}"));
                }
                match &cur {
                    Value::List(l) => l[n as usize].clone(),
                    Value::Str(s) => Value::Int(i64::from(s.as_bytes()[n as usize])),
                    Value::Bytes(b) => Value::Int(i64::from(b[n as usize])),
                    _ => Value::Nil,
                }
            }
            Value::Nil => return Err("index of untyped nil".into()),
            other => return Err(format!("can't index item of type {}", other.type_name())),
        };
    }
    Ok(cur)
}

#[derive(PartialEq, Eq, Clone, Copy, Debug)]
enum Kind {
    Invalid,
    Bool,
    Int,
    Float,
    Str,
    Other,
}

fn kind(v: &Value) -> Kind {
    match v {
        Value::Nil => Kind::Invalid,
        Value::Bool(_) => Kind::Bool,
        Value::Int(_) | Value::I64(_) => Kind::Int,
        Value::Float(_) => Kind::Float,
        Value::Str(_) => Kind::Str,
        _ => Kind::Other,
    }
}

fn basic_eq(a: &Value, b: &Value) -> Result<bool, String> {
    let (ka, kb) = (kind(a), kind(b));
    if ka != kb {
        if ka != Kind::Invalid && kb != Kind::Invalid {
            return Err("incompatible types for comparison".into());
        }
        return Ok(false);
    }
    Ok(match (a, b) {
        (Value::Nil, Value::Nil) => true,
        (Value::Bool(x), Value::Bool(y)) => x == y,
        (Value::Int(x) | Value::I64(x), Value::Int(y) | Value::I64(y)) => x == y,
        (Value::Float(x), Value::Float(y)) => x == y,
        (Value::Str(x), Value::Str(y)) => x == y,
        (Value::List(_), _) | (Value::Map(_), _) | (Value::Bytes(_), _) => {
            return Err(format!(
                "non-comparable type {}: {}",
                crate::fmt::sprint_one(a),
                a.type_name()
            ));
        }
        (x, y) => x.deep_equal(y),
    })
}

fn eq(a: &[Value]) -> Result<Value, String> {
    want_min(a, 1, "eq")?;
    if a.len() < 2 {
        return Err("missing argument for comparison".into());
    }
    for b in &a[1..] {
        if basic_eq(&a[0], b)? {
            return Ok(Value::Bool(true));
        }
    }
    Ok(Value::Bool(false))
}

fn cmp_fn(a: &[Value], name: &str, f: fn(Ordering) -> bool) -> Result<Value, String> {
    want(a, 2, name)?;
    let (x, y) = (&a[0], &a[1]);
    let (kx, ky) = (kind(x), kind(y));
    if kx != ky {
        if matches!(kx, Kind::Other | Kind::Invalid) || matches!(ky, Kind::Other | Kind::Invalid) {
            return Err("invalid type for comparison".into());
        }
        return Err("incompatible types for comparison".into());
    }
    let o = match (x, y) {
        (Value::Int(p) | Value::I64(p), Value::Int(q) | Value::I64(q)) => p.cmp(q),
        (Value::Float(p), Value::Float(q)) => p.partial_cmp(q).unwrap_or(Ordering::Equal),
        (Value::Str(p), Value::Str(q)) => p.cmp(q),
        _ => return Err("invalid type for comparison".into()),
    };
    Ok(Value::Bool(f(o)))
}
