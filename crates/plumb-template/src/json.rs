//! Go's `encoding/json` as Sprig's `toJson` family and `fromJson` use it:
//! sorted keys, HTML-safe escapes, Go's float forms; decoding makes every
//! number a `float64`.

use crate::fmt::fmt_float_v;
use crate::value::Value;

fn indent(out: &mut String, n: usize) {
    for _ in 0..n {
        out.push(' ');
    }
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
        // Go: 'e' format, then "e-07" cleaned up to "e-7" (positive exponents
        // keep two digits: "1e+21").
        let s = fmt_float_v(f);
        return match s.split_once("e-0") {
            Some((m, e)) if e.len() == 1 => format!("{m}e-{e}"),
            _ => s,
        };
    }
    format!("{f}")
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
    if v.is_container() && !crate::budget::room(out.len()) {
        return;
    }
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
            let d = ind / 2;
            crate::budget::deeper(d, || {
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
            });
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
            let d = ind / 2;
            crate::budget::deeper(d, || {
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
            });
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
