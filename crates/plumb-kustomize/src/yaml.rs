//! YAML in (a fast path for plain manifests, else [`crate::yamlread`]) and YAML out.
//!
//! The emitter is hand-written: it mimics the layout `kubectl kustomize` prints (two-space
//! indent, sequences not indented under their key, literal blocks for multi-line strings) and
//! quotes every string a YAML 1.1 or 1.2 reader could take for something else. No serializer
//! crate offers that exact layout.

use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::yamlread::Duplicates;

/// Parses every document of a YAML stream. Empty and null documents are skipped.
pub(crate) fn parse_documents(text: &str, file: &str) -> Result<Vec<Value>> {
    let docs = match crate::fastyaml::parse_documents(text) {
        Ok(docs) => docs,
        Err(_) => crate::yamlread::parse_documents(text, Duplicates::Reject)
            .map_err(|e| yaml_error(e, file))?,
    };
    Ok(docs.into_iter().filter(|d| !d.is_null()).collect())
}

/// Parses a single document where repeated keys are allowed (the last one wins), as
/// kustomize's reader of kustomization files allows.
pub(crate) fn parse_lenient(text: &str, file: &str) -> Result<Value> {
    // The fast path refuses repeated keys, so whatever it accepts reads the same here.
    let docs: Vec<Value> = match crate::fastyaml::parse_documents(text) {
        Ok(docs) => docs,
        Err(_) => crate::yamlread::parse_documents(text, Duplicates::LastWins)
            .map_err(|e| yaml_error(e, file))?,
    };
    let mut docs: Vec<Value> = docs.into_iter().filter(|d| !d.is_null()).collect();
    match docs.len() {
        0 => Ok(Value::Null),
        1 => Ok(docs.remove(0)),
        n => Err(Error::invalid(
            file,
            format!("expected one YAML document, found {n}"),
        )),
    }
}

/// Parses a single YAML (or JSON) document.
pub(crate) fn parse_one(text: &str, file: &str) -> Result<Value> {
    let mut docs = parse_documents(text, file)?;
    match docs.len() {
        0 => Ok(Value::Null),
        1 => Ok(docs.remove(0)),
        n => Err(Error::invalid(
            file,
            format!("expected one YAML document, found {n}"),
        )),
    }
}

fn yaml_error(e: crate::yamlread::ReadError, file: &str) -> Error {
    Error::Yaml {
        file: file.to_string(),
        line: e.line,
        column: e.column,
        message: e.message,
    }
}

/// Renders objects as a multi-document YAML stream separated by `---`.
pub fn to_yaml_stream(objects: &[Value]) -> String {
    let mut out = String::with_capacity(objects.len() * 512);
    for (i, o) in objects.iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        emit_document(&mut out, o);
    }
    out
}

/// Renders one value as a YAML document.
pub fn to_yaml(value: &Value) -> String {
    let mut out = String::new();
    emit_document(&mut out, value);
    out
}

fn emit_document(out: &mut String, v: &Value) {
    match v {
        Value::Object(m) if !m.is_empty() => emit_map(out, m, 0),
        Value::Array(a) if !a.is_empty() => emit_seq(out, a, 0),
        other => {
            emit_scalar(out, other, 0);
            out.push('\n');
        }
    }
}

fn indent(out: &mut String, n: usize) {
    for _ in 0..n {
        out.push(' ');
    }
}

fn emit_map(out: &mut String, m: &Map<String, Value>, ind: usize) {
    let mut first = true;
    for (k, v) in m {
        if !first {
            indent(out, ind);
        }
        first = false;
        emit_string(out, k, ind, true);
        out.push(':');
        emit_value_after_key(out, v, ind);
    }
}

fn emit_value_after_key(out: &mut String, v: &Value, ind: usize) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            out.push('\n');
            indent(out, ind + 2);
            emit_map(out, m, ind + 2);
        }
        Value::Array(a) if !a.is_empty() => {
            out.push('\n');
            indent(out, ind);
            emit_seq(out, a, ind);
        }
        other => {
            out.push(' ');
            emit_scalar(out, other, ind + 2);
            out.push('\n');
        }
    }
}

fn emit_seq(out: &mut String, a: &[Value], ind: usize) {
    let mut first = true;
    for v in a {
        if !first {
            indent(out, ind);
        }
        first = false;
        out.push_str("- ");
        match v {
            Value::Object(m) if !m.is_empty() => emit_map(out, m, ind + 2),
            Value::Array(a) if !a.is_empty() => emit_seq(out, a, ind + 2),
            other => {
                emit_scalar(out, other, ind + 2);
                out.push('\n');
            }
        }
    }
}

fn emit_scalar(out: &mut String, v: &Value, ind: usize) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&number_text(n)),
        Value::String(s) => emit_string(out, s, ind, false),
        Value::Object(_) => out.push_str("{}"),
        Value::Array(_) => out.push_str("[]"),
    }
}

/// A number as kustomize prints it: floats as Go prints them (`2e-08`; `100.0` is `100`).
pub(crate) fn number_text(n: &serde_json::Number) -> String {
    match n.as_f64().filter(|_| n.is_f64()) {
        Some(f) => match crate::yamlread::float_value(f) {
            Value::Number(i) if !i.is_f64() => i.to_string(),
            _ => crate::yamlread::format_go_float(f),
        },
        None => n.to_string(),
    }
}

fn emit_string(out: &mut String, s: &str, ind: usize, key: bool) {
    if !key && s.contains('\n') && literal_ok(s) {
        let trailing = s.len() - s.trim_end_matches('\n').len();
        out.push('|');
        match trailing {
            0 => out.push('-'),
            1 => {}
            _ => out.push('+'),
        }
        let body = if trailing == 1 { &s[..s.len() - 1] } else { s };
        let body = if trailing > 1 {
            &body[..body.len() - 1]
        } else {
            body
        };
        for line in body.split('\n') {
            out.push('\n');
            if !line.is_empty() {
                indent(out, ind);
                out.push_str(line);
            }
        }
        return;
    }
    if plain_ok(s) {
        out.push_str(s);
    } else {
        out.push('"');
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\t' => out.push_str("\\t"),
                '\r' => out.push_str("\\r"),
                c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                    out.push_str(&format!("\\x{:02x}", c as u32));
                }
                c => out.push(c),
            }
        }
        out.push('"');
    }
}

fn literal_ok(s: &str) -> bool {
    if s.starts_with(' ') || s.starts_with('\n') {
        return false;
    }
    !s.chars()
        .any(|c| (c < ' ' && c != '\n' && c != '\t') || c == '\u{7f}' || c == '\u{feff}')
        && !s.split('\n').any(|l| l.ends_with(' ') || l.ends_with('\t'))
}

/// Whether `s` can be written as a plain scalar and read back as the same string by both
/// YAML 1.1 and YAML 1.2 readers.
fn plain_ok(s: &str) -> bool {
    let Some(first) = s.chars().next() else {
        return false;
    };
    if s.starts_with(' ') || s.ends_with(' ') || s.ends_with(':') {
        return false;
    }
    if "-?:,[]{}#&*!|>'\"%@`=".contains(first)
        && !(first == '-' && s.len() > 1 && !s.starts_with("- ") && !looks_numeric(s) && s != "---")
    {
        return false;
    }
    if s.contains(": ") || s.contains(" #") || s.contains('\t') {
        return false;
    }
    if s.chars()
        .any(|c| c < ' ' || c == '\u{7f}' || c == '\u{feff}')
    {
        return false;
    }
    let lower = s.to_ascii_lowercase();
    if matches!(
        lower.as_str(),
        "true"
            | "false"
            | "yes"
            | "no"
            | "on"
            | "off"
            | "y"
            | "n"
            | "null"
            | "~"
            | ".inf"
            | "-.inf"
            | "+.inf"
            | ".nan"
            | "<<"
    ) {
        return false;
    }
    !looks_numeric(s)
}

fn looks_numeric(s: &str) -> bool {
    let t = s.trim_start_matches(['-', '+']);
    let Some(c) = t.chars().next() else {
        return false;
    };
    if c.is_ascii_digit() {
        // Numbers, octal/hex, sexagesimal and timestamps all start with a digit.
        return true;
    }
    c == '.' && t[1..].chars().next().is_some_and(|d| d.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_ambiguous_strings() {
        let v = serde_json::json!({"a": "yes", "b": "123", "c": "plain text", "d": "x: y", "e": "line1\nline2\n", "f": ""});
        let y = to_yaml(&v);
        assert_eq!(
            y,
            "a: \"yes\"\nb: \"123\"\nc: plain text\nd: \"x: y\"\ne: |\n  line1\n  line2\nf: \"\"\n"
        );
        let back = parse_one(&y, "t").unwrap();
        assert_eq!(back, v);
    }

    #[test]
    fn nested_layout() {
        let v =
            serde_json::json!({"spec": {"c": [{"name": "x", "ports": [1, 2]}], "e": {}, "l": []}});
        assert_eq!(
            to_yaml(&v),
            "spec:\n  c:\n  - name: x\n    ports:\n    - 1\n    - 2\n  e: {}\n  l: []\n"
        );
    }

    #[test]
    fn syntax_error_has_line() {
        let e = parse_documents("a: 1\nb: [\n", "f.yaml").unwrap_err();
        let m = e.to_string();
        assert!(m.starts_with("f.yaml:2:"), "{m}");
    }
}
