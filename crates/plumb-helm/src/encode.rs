//! YAML and JSON encoding and decoding with the conventions of Helm's Go
//! libraries: `sigs.k8s.io/yaml` (YAML through JSON, so every number becomes
//! `float64`, keys sorted on output, go-yaml v2 layout) and `encoding/json`
//! (sorted keys, HTML-safe escaping).

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::fmt::fmt_float_v;
use crate::value::Value;

struct V(Value);

impl<'de> Deserialize<'de> for V {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(VVisitor)
    }
}

struct VVisitor;

impl<'de> Visitor<'de> for VVisitor {
    type Value = V;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<V, E> {
        Ok(V(Value::Bool(v)))
    }
    fn visit_i64<E>(self, v: i64) -> Result<V, E> {
        Ok(V(Value::Float(v as f64)))
    }
    fn visit_u64<E>(self, v: u64) -> Result<V, E> {
        Ok(V(Value::Float(v as f64)))
    }
    fn visit_i128<E>(self, v: i128) -> Result<V, E> {
        Ok(V(Value::Float(v as f64)))
    }
    fn visit_u128<E>(self, v: u128) -> Result<V, E> {
        Ok(V(Value::Float(v as f64)))
    }
    fn visit_f64<E>(self, v: f64) -> Result<V, E> {
        Ok(V(Value::Float(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<V, E> {
        Ok(V(Value::str(v)))
    }
    fn visit_string<E>(self, v: String) -> Result<V, E> {
        Ok(V(Value::str(v)))
    }
    fn visit_bytes<E>(self, v: &[u8]) -> Result<V, E> {
        Ok(V(Value::str(String::from_utf8_lossy(v).as_ref())))
    }
    fn visit_unit<E>(self) -> Result<V, E> {
        Ok(V(Value::Nil))
    }
    fn visit_none<E>(self) -> Result<V, E> {
        Ok(V(Value::Nil))
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<V, D::Error> {
        V::deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<V, A::Error> {
        let mut out = Vec::new();
        while let Some(V(x)) = a.next_element()? {
            out.push(x);
        }
        Ok(V(Value::list(out)))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<V, A::Error> {
        let mut out = BTreeMap::new();
        while let Some((V(k), V(v))) = a.next_entry()? {
            let key = match k {
                Value::Str(s) => s.to_string(),
                Value::Nil => "null".to_string(),
                other => crate::fmt::sprint_one(&other),
            };
            out.insert(key, v);
        }
        Ok(V(Value::map(out)))
    }
}

fn options() -> serde_saphyr::Options {
    let mut o = serde_saphyr::Options::default();
    o.duplicate_keys = serde_saphyr::DuplicateKeyPolicy::LastWins;
    o.legacy_octal_numbers = true;
    o.strict_booleans = false;
    o.non_finite_float_policy = serde_saphyr::NonFiniteFloatPolicy::PassThrough;
    o
}

/// Parses one YAML document into a value (numbers become `float64`).
/// An empty document is nil.
pub fn yaml_to_value(src: &str) -> Result<Value, String> {
    if src.trim().is_empty() || is_only_comments(src) {
        return Ok(Value::Nil);
    }
    let v: Option<V> = serde_saphyr::from_str_with_options(src, options()).map_err(short_err)?;
    Ok(v.map(|v| v.0).unwrap_or_default())
}

/// Parses every document of a YAML stream.
pub fn yaml_to_values(src: &str) -> Result<Vec<Value>, String> {
    let v: Vec<Option<V>> =
        serde_saphyr::from_multiple_with_options(src, options()).map_err(short_err)?;
    Ok(v.into_iter().map(|x| x.map(|v| v.0).unwrap_or_default()).collect())
}

fn is_only_comments(src: &str) -> bool {
    src.lines().all(|l| {
        let t = l.trim();
        t.is_empty() || t.starts_with('#') || t == "---"
    })
}

fn short_err(e: serde_saphyr::Error) -> String {
    let s = e.to_string();
    s.lines().next().unwrap_or("invalid YAML").to_string()
}

/// Serializes as `sigs.k8s.io/yaml.Marshal` does (with the trailing newline).
pub fn to_yaml(v: &Value) -> String {
    let mut out = String::new();
    match v {
        Value::Map(m) if !m.borrow().is_empty() => emit_map(&mut out, v, 0),
        Value::List(l) if !l.is_empty() => emit_list(&mut out, v, 0),
        other => {
            emit_scalar_inline(&mut out, other, 0);
            out.push('\n');
        }
    }
    out
}

fn indent(out: &mut String, n: usize) {
    for _ in 0..n {
        out.push(' ');
    }
}

fn emit_map(out: &mut String, v: &Value, ind: usize) {
    let Value::Map(m) = v else { return };
    for (k, x) in m.borrow().iter() {
        indent(out, ind);
        out.push_str(&yaml_str_inline(k));
        out.push(':');
        emit_child(out, x, ind, true);
    }
}

fn emit_child(out: &mut String, x: &Value, ind: usize, in_map: bool) {
    match x {
        Value::Map(mm) if !mm.borrow().is_empty() => {
            out.push('\n');
            emit_map(out, x, ind + 2);
        }
        Value::List(l) if !l.is_empty() => {
            out.push('\n');
            // go-yaml v2 does not indent sequences inside mappings.
            emit_list(out, x, if in_map { ind } else { ind + 2 });
        }
        other => {
            out.push(' ');
            emit_scalar_inline(out, other, ind + 2);
            out.push('\n');
        }
    }
}

fn emit_list(out: &mut String, v: &Value, ind: usize) {
    let Value::List(l) = v else { return };
    for x in l.iter() {
        indent(out, ind);
        out.push('-');
        match x {
            Value::Map(mm) if !mm.borrow().is_empty() => {
                out.push(' ');
                // First key on the dash line, the rest indented.
                let mut s = String::new();
                emit_map(&mut s, x, ind + 2);
                out.push_str(&s[ind + 2..]);
            }
            Value::List(ll) if !ll.is_empty() => {
                out.push(' ');
                let mut s = String::new();
                emit_list(&mut s, x, ind + 2);
                out.push_str(&s[ind + 2..]);
            }
            other => {
                out.push(' ');
                emit_scalar_inline(out, other, ind + 2);
                out.push('\n');
            }
        }
    }
}

/// Formats a float as JSON then YAML would: integral values as integers.
fn yaml_float(f: f64) -> String {
    if f.is_nan() {
        return ".nan".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { ".inf".into() } else { "-.inf".into() };
    }
    if f.fract() == 0.0 && f.abs() < 1e21 {
        return format!("{}", f as i128);
    }
    fmt_float_v(f)
}

fn emit_scalar_inline(out: &mut String, v: &Value, ind: usize) {
    match v {
        Value::Nil => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Int(i) | Value::I64(i) => out.push_str(&i.to_string()),
        Value::Float(f) => out.push_str(&yaml_float(*f)),
        Value::Str(s) => emit_string(out, s, ind),
        Value::Bytes(b) => {
            use base64::Engine;
            emit_string(out, &base64::engine::general_purpose::STANDARD.encode(b), ind);
        }
        Value::Map(_) => out.push_str("{}"),
        Value::List(_) => out.push_str("[]"),
        Value::Object(o) => emit_string(out, &o.to_text(), ind),
    }
}

fn emit_string(out: &mut String, s: &str, ind: usize) {
    if s.contains('\n') && literal_ok(s) {
        let trailing = s.len() - s.trim_end_matches('\n').len();
        out.push('|');
        match trailing {
            0 => out.push('-'),
            1 => {}
            _ => out.push('+'),
        }
        out.push('\n');
        let body = if trailing == 1 { &s[..s.len() - 1] } else { s };
        let body = if trailing > 1 { &body[..body.len() - 1] } else { body };
        for line in body.split('\n') {
            if !line.is_empty() {
                indent(out, ind);
                out.push_str(line);
            }
            out.push('\n');
        }
        // Remove the final newline: the caller adds one.
        out.pop();
        return;
    }
    out.push_str(&yaml_str_inline(s));
}

fn literal_ok(s: &str) -> bool {
    let first = s.split('\n').next().unwrap_or("");
    !(first.starts_with(' ') || first.starts_with('\t') || s.starts_with('\n'))
        && s.chars()
            .all(|c| c == '\n' || c == '\t' || (!c.is_control() && c != '\u{feff}'))
        && !s.split('\n').any(|l| l.ends_with(' ') && l.trim().is_empty() && !l.is_empty())
}

/// A string as a plain scalar when that reads back as the same string,
/// otherwise double-quoted.
pub fn yaml_str_inline(s: &str) -> String {
    if plain_ok(s) {
        s.to_string()
    } else {
        double_quote(s)
    }
}

fn double_quote(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            '\t' => o.push_str("\\t"),
            '\r' => o.push_str("\\r"),
            c if c.is_control() || c == '\u{feff}' => {
                o.push_str(&format!("\\u{:04X}", c as u32));
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

fn plain_ok(s: &str) -> bool {
    if s.is_empty() || s.trim() != s {
        return false;
    }
    let first = s.as_bytes()[0];
    if b"-?:,[]{}#&*!|>'\"%@`=<~".contains(&first) {
        // "-foo" is fine as plain but "- " / "-" is not; keep it simple.
        if !(first == b'-' && s.len() > 1 && !s.as_bytes()[1].is_ascii_whitespace() && !looks_typed(s))
        {
            return false;
        }
    }
    if s.contains(": ") || s.contains(" #") || s.ends_with(':') || s.contains('\t') {
        return false;
    }
    if s.chars().any(|c| c.is_control() || c == '\u{feff}') {
        return false;
    }
    !looks_typed(s)
}

/// Would a YAML 1.1 or 1.2 parser read this plain scalar as non-string?
fn looks_typed(s: &str) -> bool {
    let l = s.to_ascii_lowercase();
    if matches!(
        l.as_str(),
        "y" | "n" | "yes" | "no" | "on" | "off" | "true" | "false" | "null" | "~" | ".nan" | ".inf"
            | "-.inf" | "+.inf"
    ) {
        return true;
    }
    let b = s.as_bytes();
    let c0 = b[0];
    if c0.is_ascii_digit() || ((c0 == b'+' || c0 == b'-' || c0 == b'.') && b.len() > 1) {
        // Anything that starts like a number and only has number-ish characters.
        if s
            .bytes()
            .all(|c| c.is_ascii_hexdigit() || b"+-._:xXoObB".contains(&c) || c == b'e' || c == b'E')
        {
            return true;
        }
        // Dates and timestamps.
        if s.len() >= 8 && b[..4].iter().all(u8::is_ascii_digit) && b.get(4) == Some(&b'-') {
            return true;
        }
    }
    false
}

/// JSON encoding as Go's `json.Marshal` (sorted keys, HTML-safe escapes).
pub fn to_json(v: &Value, pretty: bool) -> String {
    let mut out = String::new();
    json_write(&mut out, v, pretty, 0);
    out
}

fn json_float(f: f64) -> String {
    if !f.is_finite() {
        return "null".into();
    }
    if f.fract() == 0.0 && f.abs() < 1e21 {
        return format!("{}", f as i128);
    }
    let abs = f.abs();
    if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        // Go: 'e' format with a two-digit minimum exponent trimmed ("1e-07").
        let s = fmt_float_v(f);
        return s;
    }
    let s = format!("{f}");
    s
}

fn json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

fn json_write(out: &mut String, v: &Value, pretty: bool, ind: usize) {
    match v {
        Value::Nil => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Int(i) | Value::I64(i) => out.push_str(&i.to_string()),
        Value::Float(f) => out.push_str(&json_float(*f)),
        Value::Str(s) => json_str(out, s),
        Value::Bytes(b) => {
            use base64::Engine;
            json_str(out, &base64::engine::general_purpose::STANDARD.encode(b));
        }
        Value::Object(o) => json_str(out, &o.to_text()),
        Value::List(l) => {
            if l.is_empty() {
                out.push_str("[]");
                return;
            }
            out.push('[');
            for (i, x) in l.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                if pretty {
                    out.push('\n');
                    indent(out, ind + 2);
                }
                json_write(out, x, pretty, ind + 2);
            }
            if pretty {
                out.push('\n');
                indent(out, ind);
            }
            out.push(']');
        }
        Value::Map(m) => {
            let m = m.borrow();
            if m.is_empty() {
                out.push_str("{}");
                return;
            }
            out.push('{');
            for (i, (k, x)) in m.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                if pretty {
                    out.push('\n');
                    indent(out, ind + 2);
                }
                json_str(out, k);
                out.push(':');
                if pretty {
                    out.push(' ');
                }
                json_write(out, x, pretty, ind + 2);
            }
            if pretty {
                out.push('\n');
                indent(out, ind);
            }
            out.push('}');
        }
    }
}

/// Parses JSON into a value (numbers become `float64`).
pub fn json_to_value(s: &str) -> Result<Value, String> {
    let j: serde_json::Value = serde_json::from_str(s).map_err(|e| e.to_string())?;
    Ok(Value::from_json(&j))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_roundtrip_layout() {
        let v = yaml_to_value("b: [1, x]\na:\n  c: 'true'\n  d: |\n    l1\n    l2\n").unwrap();
        let y = to_yaml(&v);
        assert_eq!(y, "a:\n  c: \"true\"\n  d: |\n    l1\n    l2\nb:\n- 1\n- x\n");
        let back = yaml_to_value(&y).unwrap();
        assert!(back.deep_equal(&v));
    }

    #[test]
    fn json_like_go() {
        let v = yaml_to_value("a: <b>\nn: 1.5\ni: 3").unwrap();
        assert_eq!(to_json(&v, false), r#"{"a":"\u003cb\u003e","i":3,"n":1.5}"#);
    }
}
