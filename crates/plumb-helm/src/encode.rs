//! YAML and JSON encoding and decoding with the conventions of Helm's Go
//! libraries: `sigs.k8s.io/yaml` (YAML through JSON, so every number becomes
//! `float64`, keys sorted on output, go-yaml v2 layout) and `encoding/json`
//! (sorted keys, HTML-safe escaping).

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::fmt::fmt_float_v;
use crate::value::{MapRef, Value};
use plumb_template::budget;

pub use plumb_template::json::{json_to_value, to_json};

/// A YAML value as read, before it becomes a template [`Value`]: plain owned
/// data, so a chart's `values.yaml` can be read on another thread.
#[derive(Debug, Clone, Default)]
pub enum Plain {
    /// `null`, `~` or nothing.
    #[default]
    Nil,
    /// A boolean.
    Bool(bool),
    /// Every number (`float64`, as through JSON).
    Float(f64),
    /// A string.
    Str(String),
    /// A sequence.
    List(Vec<Plain>),
    /// A mapping, keys as Go prints them.
    Map(BTreeMap<String, Plain>),
}

impl Plain {
    /// The template value.
    pub fn into_value(self) -> Value {
        match self {
            Plain::Nil => Value::Nil,
            Plain::Bool(b) => Value::Bool(b),
            Plain::Float(f) => Value::Float(f),
            Plain::Str(s) => Value::str(s),
            Plain::List(l) => Value::list(l.into_iter().map(Plain::into_value).collect()),
            Plain::Map(m) => Value::map(m.into_iter().map(|(k, v)| (k, v.into_value())).collect()),
        }
    }
}

impl<'de> Deserialize<'de> for Plain {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(PlainVisitor)
    }
}

struct PlainVisitor;

impl<'de> Visitor<'de> for PlainVisitor {
    type Value = Plain;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Plain, E> {
        Ok(Plain::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Plain, E> {
        Ok(Plain::Float(v as f64))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Plain, E> {
        Ok(Plain::Float(v as f64))
    }
    fn visit_i128<E>(self, v: i128) -> Result<Plain, E> {
        Ok(Plain::Float(v as f64))
    }
    fn visit_u128<E>(self, v: u128) -> Result<Plain, E> {
        Ok(Plain::Float(v as f64))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Plain, E> {
        Ok(Plain::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Plain, E> {
        Ok(Plain::Str(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Plain, E> {
        Ok(Plain::Str(v))
    }
    fn visit_bytes<E>(self, v: &[u8]) -> Result<Plain, E> {
        Ok(Plain::Str(String::from_utf8_lossy(v).into_owned()))
    }
    fn visit_unit<E>(self) -> Result<Plain, E> {
        Ok(Plain::Nil)
    }
    fn visit_none<E>(self) -> Result<Plain, E> {
        Ok(Plain::Nil)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Plain, D::Error> {
        Plain::deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Plain, A::Error> {
        let mut out = Vec::new();
        while let Some(x) = a.next_element()? {
            out.push(x);
        }
        Ok(Plain::List(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Plain, A::Error> {
        let mut out = BTreeMap::new();
        while let Some((k, v)) = a.next_entry::<Plain, Plain>()? {
            let key = match k {
                Plain::Str(s) => s,
                Plain::Nil => "null".to_string(),
                other => crate::fmt::sprint_one(&other.into_value()),
            };
            out.insert(key, v);
        }
        Ok(Plain::Map(out))
    }
}

fn options() -> serde_saphyr::Options {
    let mut o = serde_saphyr::Options::default();
    o.duplicate_keys = serde_saphyr::DuplicateKeyPolicy::LastWins;
    o.legacy_octal_numbers = true;
    o.strict_booleans = false;
    o.non_finite_float_policy = serde_saphyr::NonFiniteFloatPolicy::PassThrough;
    // Comments are never read back; capturing them cost a fifth of values parsing.
    o.emit_comments = false;
    o
}

/// Parses one YAML document into a value (numbers become `float64`).
/// An empty document is nil.
pub fn yaml_to_value(src: &str) -> Result<Value, String> {
    yaml_to_plain(src).map(Plain::into_value)
}

/// [`yaml_to_value`] without the template value, so it can run on any thread.
pub fn yaml_to_plain(src: &str) -> Result<Plain, String> {
    yaml_to_plain_with(src, options())
}

/// [`yaml_to_plain`] with other parser options.
pub fn yaml_to_plain_with(src: &str, opts: serde_saphyr::Options) -> Result<Plain, String> {
    if src.trim().is_empty() || is_only_comments(src) {
        return Ok(Plain::Nil);
    }
    match serde_saphyr::from_str_with_options::<Option<Plain>>(src, opts.clone()) {
        Ok(v) => Ok(v.unwrap_or_default()),
        Err(e) if e.to_string().contains("multiple YAML documents") => {
            // Go's yaml.Unmarshal reads the first document only.
            let all: Vec<Option<Plain>> =
                serde_saphyr::from_multiple_with_options(src, opts).map_err(short_err)?;
            Ok(all.into_iter().next().flatten().unwrap_or_default())
        }
        Err(e) => Err(short_err(e)),
    }
}

/// Parses every document of a YAML stream.
pub fn yaml_to_values(src: &str) -> Result<Vec<Value>, String> {
    let v: Vec<Option<Plain>> =
        serde_saphyr::from_multiple_with_options(src, options()).map_err(short_err)?;
    Ok(v.into_iter()
        .map(|x| x.map(Plain::into_value).unwrap_or_default())
        .collect())
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
            emit_scalar_inline(&mut out, other, 2);
            end_line(&mut out);
        }
    }
    out
}

fn indent(out: &mut String, n: usize) {
    for _ in 0..n {
        out.push(' ');
    }
}

/// go-yaml v2's key order: letters by code point, digit runs numerically,
/// non-letters before letters.
fn key_less(a: &str, b: &str) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    let (ar, br): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut i = 0;
    while i < ar.len() && i < br.len() {
        if ar[i] == br[i] {
            i += 1;
            continue;
        }
        let (al, bl) = (ar[i].is_alphabetic(), br[i].is_alphabetic());
        if al && bl {
            return ar[i].cmp(&br[i]);
        }
        if al || bl {
            return if bl {
                Ordering::Less
            } else {
                Ordering::Greater
            };
        }
        let (mut an, mut bn) = (0i64, 0i64);
        if ar[i] == '0' || br[i] == '0' {
            let mut j = i;
            while j > 0 && ar[j - 1].is_ascii_digit() {
                j -= 1;
                if ar[j] != '0' {
                    an = 1;
                    bn = 1;
                    break;
                }
            }
        }
        let mut ai = i;
        while ai < ar.len() && ar[ai].is_ascii_digit() {
            an = an
                .wrapping_mul(10)
                .wrapping_add(i64::from(ar[ai] as u8 - b'0'));
            ai += 1;
        }
        let mut bi = i;
        while bi < br.len() && br[bi].is_ascii_digit() {
            bn = bn
                .wrapping_mul(10)
                .wrapping_add(i64::from(br[bi] as u8 - b'0'));
            bi += 1;
        }
        if an != bn {
            return an.cmp(&bn);
        }
        if ai != bi {
            return ai.cmp(&bi);
        }
        return ar[i].cmp(&br[i]);
    }
    ar.len().cmp(&br.len())
}

fn emit_map(out: &mut String, v: &Value, ind: usize) {
    let Value::Map(m) = v else { return };
    // Values can nest without bound or be cyclic: stop at the budget's limits.
    if !budget::room(out.len()) {
        return;
    }
    budget::deeper(ind / 2, || emit_map_entries(out, m, ind));
}

fn emit_map_entries(out: &mut String, m: &MapRef, ind: usize) {
    let m = m.borrow();
    let mut entries: Vec<(&String, &Value)> = m.iter().collect();
    entries.sort_by(|a, b| key_less(a.0, b.0));
    for (k, x) in entries {
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
            end_line(out);
        }
    }
}

fn end_line(out: &mut String) {
    if !out.ends_with('\n') {
        out.push('\n');
    }
}

fn emit_list(out: &mut String, v: &Value, ind: usize) {
    let Value::List(l) = v else { return };
    if !budget::room(out.len()) {
        return;
    }
    budget::deeper(ind / 2, || emit_list_items(out, l, ind));
}

fn emit_list_items(out: &mut String, l: &[Value], ind: usize) {
    for x in l {
        indent(out, ind);
        out.push('-');
        match x {
            Value::Map(mm) if !mm.borrow().is_empty() => {
                out.push(' ');
                // First key on the dash line, the rest indented.
                let mut s = String::new();
                emit_map(&mut s, x, ind + 2);
                out.push_str(s.get(ind + 2..).unwrap_or_default());
            }
            Value::List(ll) if !ll.is_empty() => {
                out.push(' ');
                let mut s = String::new();
                emit_list(&mut s, x, ind + 2);
                out.push_str(s.get(ind + 2..).unwrap_or_default());
            }
            other => {
                out.push(' ');
                emit_scalar_inline(out, other, ind + 2);
                end_line(out);
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
        return if f > 0.0 {
            ".inf".into()
        } else {
            "-.inf".into()
        };
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
            emit_string(
                out,
                &base64::engine::general_purpose::STANDARD.encode(b),
                ind,
            );
        }
        Value::Map(_) => out.push_str("{}"),
        Value::List(_) => out.push_str("[]"),
        Value::Object(o) => emit_string(out, &o.to_text(), ind),
    }
}

fn emit_string(out: &mut String, s: &str, ind: usize) {
    write_scalar(out, s, ind, false);
}

#[derive(PartialEq, Eq, Clone, Copy)]
enum Style {
    Plain,
    Single,
    Double,
    Literal,
}

fn is_printable(c: char) -> bool {
    let u = c as u32;
    u == 0x0A
        || (0x20..=0x7E).contains(&u)
        || ((0xA0..=0xD7FF).contains(&u))
        || ((0xE000..=0xFFFD).contains(&u) && u != 0xFEFF)
        || (0x10000..=0x10FFFF).contains(&u)
}

fn is_break(c: char) -> bool {
    matches!(c, '\r' | '\n' | '\u{85}' | '\u{2028}' | '\u{2029}')
}

/// go-yaml v2's `resolve` for a plain scalar: would it read back as a non-string?
fn resolves_non_str(s: &str) -> bool {
    if matches!(
        s,
        "" | "~"
            | "null"
            | "Null"
            | "NULL"
            | "y"
            | "Y"
            | "yes"
            | "Yes"
            | "YES"
            | "n"
            | "N"
            | "no"
            | "No"
            | "NO"
            | "true"
            | "True"
            | "TRUE"
            | "false"
            | "False"
            | "FALSE"
            | "on"
            | "On"
            | "ON"
            | "off"
            | "Off"
            | "OFF"
            | ".nan"
            | ".NaN"
            | ".NAN"
            | ".inf"
            | ".Inf"
            | ".INF"
            | "+.inf"
            | "+.Inf"
            | "+.INF"
            | "-.inf"
            | "-.Inf"
            | "-.INF"
            | "<<"
    ) {
        return true;
    }
    let c0 = s.as_bytes()[0];
    if !(c0.is_ascii_digit() || c0 == b'+' || c0 == b'-' || c0 == b'.') {
        return false;
    }
    if is_timestamp(s) {
        return true;
    }
    let plain = s.replace('_', "");
    if plumb_template::funcs::parse_int_base0(&plain).is_some() {
        return true;
    }
    if let Some(u) = plain.strip_prefix('+')
        && plumb_template::funcs::parse_int_base0(u).is_some()
    {
        return true;
    }
    if is_yaml_float(&plain) {
        return true;
    }
    if let Some(b) = plain
        .strip_prefix("0b")
        .or_else(|| plain.strip_prefix("-0b"))
        && !b.is_empty()
        && b.bytes().all(|c| c == b'0' || c == b'1')
    {
        return true;
    }
    is_base60(s)
}

/// `^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$`
fn is_yaml_float(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
        i += 1;
    }
    let ds = i;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    let int_digits = i - ds;
    if i < b.len() && b[i] == b'.' {
        i += 1;
        let fs = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if int_digits == 0 && i == fs {
            return false;
        }
    } else if int_digits == 0 {
        return false;
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
            i += 1;
        }
        let es = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == es {
            return false;
        }
    }
    i == b.len()
}

/// `^[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?$`
fn is_base60(s: &str) -> bool {
    static RE: std::sync::OnceLock<Option<regex::Regex>> = std::sync::OnceLock::new();
    RE.get_or_init(|| regex::Regex::new(r"^[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?$").ok())
        .as_ref()
        .is_some_and(|r| r.is_match(s))
}

/// go-yaml v2 timestamp forms: `2006-1-2`, with `T`/`t`/space time parts.
fn is_timestamp(s: &str) -> bool {
    static RE: std::sync::OnceLock<Option<regex::Regex>> = std::sync::OnceLock::new();
    RE.get_or_init(|| {
        regex::Regex::new(
            r"^[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}(?:(?:[Tt]| )[0-9]{1,2}:[0-9]{1,2}:[0-9]{1,2}(?:\.[0-9]{1,9})?(?:Z|[-+][0-9]{2}:[0-9]{2})?)?$",
        )
        .ok()
    })
    .as_ref()
    .is_some_and(|r| r.is_match(s))
}

fn choose_style(s: &str, key: bool) -> Style {
    let multiline = s.contains('\n');
    let requested = if multiline && !key {
        Style::Literal
    } else if !resolves_non_str(s) {
        Style::Plain
    } else {
        Style::Double
    };
    if requested == Style::Double {
        return Style::Double;
    }
    // yaml_emitter_analyze_scalar.
    let chars: Vec<char> = s.chars().collect();
    let (mut block_ind, mut special) = (false, false);
    let (mut leading_space, mut leading_break, mut trailing_space, mut trailing_break) =
        (false, false, false, false);
    let (mut break_space, mut space_break, mut line_breaks) = (false, false, false);
    let (mut prev_space, mut prev_break) = (false, false);
    if s.starts_with("---") || s.starts_with("...") {
        block_ind = true;
    }
    let mut preceded_ws = true;
    for (i, &c) in chars.iter().enumerate() {
        let followed_ws = chars.get(i + 1).is_none_or(|n| *n == ' ' || *n == '\t');
        if i == 0 {
            match c {
                '#' | ',' | '[' | ']' | '{' | '}' | '&' | '*' | '!' | '|' | '>' | '\'' | '"'
                | '%' | '@' | '`' => block_ind = true,
                '?' | ':' | '-' if followed_ws => block_ind = true,
                _ => {}
            }
        } else {
            match c {
                ':' if followed_ws => block_ind = true,
                '#' if preceded_ws => block_ind = true,
                _ => {}
            }
        }
        if !is_printable(c) {
            special = true;
        }
        if c == ' ' {
            if i == 0 {
                leading_space = true;
            }
            if i + 1 == chars.len() {
                trailing_space = true;
            }
            if prev_break {
                break_space = true;
            }
            prev_space = true;
            prev_break = false;
        } else if is_break(c) {
            line_breaks = true;
            if i == 0 {
                leading_break = true;
            }
            if i + 1 == chars.len() {
                trailing_break = true;
            }
            if prev_space {
                space_break = true;
            }
            prev_space = false;
            prev_break = true;
        } else {
            prev_space = false;
            prev_break = false;
        }
        preceded_ws = c == ' ' || c == '\t' || is_break(c);
    }
    let mut plain_ok = true;
    let mut single_ok = true;
    let mut block_ok = true;
    if leading_space || leading_break || trailing_space || trailing_break {
        plain_ok = false;
    }
    if trailing_space {
        block_ok = false;
    }
    if break_space {
        plain_ok = false;
        single_ok = false;
    }
    if space_break || special {
        plain_ok = false;
        single_ok = false;
        block_ok = false;
    }
    if line_breaks {
        plain_ok = false;
    }
    if block_ind {
        plain_ok = false;
    }
    if s.is_empty() {
        plain_ok = !key;
        single_ok = true;
        block_ok = false;
    }
    let mut style = requested;
    if style == Style::Plain && (!plain_ok || (s.is_empty() && key) || (key && multiline)) {
        style = Style::Single;
    }
    if style == Style::Single && !single_ok {
        style = Style::Double;
    }
    if style == Style::Literal && (!block_ok || key) {
        style = Style::Double;
    }
    style
}

fn column(out: &str) -> usize {
    match out.rfind('\n') {
        Some(i) => out[i + 1..].chars().count(),
        None => out.chars().count(),
    }
}

fn write_indent(out: &mut String, ind: usize) {
    out.push('\n');
    indent(out, ind);
}

const BEST_WIDTH: usize = 80;

fn write_scalar(out: &mut String, s: &str, ind: usize, key: bool) {
    let style = choose_style(s, key);
    let chars: Vec<char> = s.chars().collect();
    let breaks_ok = !key;
    match style {
        Style::Plain => {
            let mut col = column(out);
            let mut spaces = false;
            for (i, &c) in chars.iter().enumerate() {
                if c == ' ' {
                    if breaks_ok && !spaces && col > BEST_WIDTH && chars.get(i + 1) != Some(&' ') {
                        write_indent(out, ind);
                        col = ind;
                    } else {
                        out.push(c);
                        col += 1;
                    }
                    spaces = true;
                } else {
                    out.push(c);
                    col += 1;
                    spaces = false;
                }
            }
        }
        Style::Single => {
            out.push('\'');
            let mut col = column(out);
            let mut spaces = false;
            let n = chars.len();
            for (i, &c) in chars.iter().enumerate() {
                if c == ' ' {
                    if breaks_ok
                        && !spaces
                        && col > BEST_WIDTH
                        && i != 0
                        && i + 1 != n
                        && chars.get(i + 1) != Some(&' ')
                    {
                        write_indent(out, ind);
                        col = ind;
                    } else {
                        out.push(c);
                        col += 1;
                    }
                    spaces = true;
                } else {
                    if c == '\'' {
                        out.push('\'');
                        col += 1;
                    }
                    out.push(c);
                    col += 1;
                    spaces = false;
                }
            }
            out.push('\'');
        }
        Style::Double => {
            out.push('"');
            let mut col = column(out);
            let mut spaces = false;
            let n = chars.len();
            for (i, &c) in chars.iter().enumerate() {
                if !is_printable(c) || c == '\u{feff}' || is_break(c) || c == '"' || c == '\\' {
                    let esc = match c {
                        '\0' => "\\0".to_string(),
                        '\x07' => "\\a".to_string(),
                        '\x08' => "\\b".to_string(),
                        '\t' => "\\t".to_string(),
                        '\n' => "\\n".to_string(),
                        '\x0b' => "\\v".to_string(),
                        '\x0c' => "\\f".to_string(),
                        '\r' => "\\r".to_string(),
                        '\x1b' => "\\e".to_string(),
                        '"' => "\\\"".to_string(),
                        '\\' => "\\\\".to_string(),
                        '\u{85}' => "\\N".to_string(),
                        '\u{a0}' => "\\_".to_string(),
                        '\u{2028}' => "\\L".to_string(),
                        '\u{2029}' => "\\P".to_string(),
                        c if (c as u32) <= 0xFF => format!("\\x{:02X}", c as u32),
                        c if (c as u32) <= 0xFFFF => format!("\\u{:04X}", c as u32),
                        c => format!("\\U{:08X}", c as u32),
                    };
                    col += esc.len();
                    out.push_str(&esc);
                    spaces = false;
                } else if c == ' ' {
                    if breaks_ok && !spaces && col > BEST_WIDTH && i > 0 && i + 1 < n {
                        write_indent(out, ind);
                        col = ind;
                        if chars.get(i + 1) == Some(&' ') {
                            out.push('\\');
                            col += 1;
                        }
                    } else {
                        out.push(c);
                        col += 1;
                    }
                    spaces = true;
                } else {
                    out.push(c);
                    col += 1;
                    spaces = false;
                }
            }
            out.push('"');
        }
        Style::Literal => {
            out.push('|');
            if chars.first().is_some_and(|c| *c == ' ' || is_break(*c)) {
                out.push('2');
            }
            let n = chars.len();
            if n == 0 || !is_break(chars[n - 1]) {
                out.push('-');
            } else if n == 1 || is_break(chars[n - 2]) {
                out.push('+');
            }
            out.push('\n');
            let mut breaks = true;
            for &c in &chars {
                if is_break(c) {
                    out.push('\n');
                    breaks = true;
                } else {
                    if breaks {
                        indent(out, ind);
                    }
                    out.push(c);
                    breaks = false;
                }
            }
        }
    }
}

/// A string as go-yaml v2 writes a mapping key.
pub fn yaml_str_inline(s: &str) -> String {
    let mut out = String::new();
    write_scalar(&mut out, s, 0, true);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_roundtrip_layout() {
        let v = yaml_to_value("b: [1, x]\na:\n  c: 'true'\n  d: |\n    l1\n    l2\n").unwrap();
        let y = to_yaml(&v);
        assert_eq!(
            y,
            "a:\n  c: \"true\"\n  d: |\n    l1\n    l2\nb:\n- 1\n- x\n"
        );
        let back = yaml_to_value(&y).unwrap();
        assert!(back.deep_equal(&v));
    }

    #[test]
    fn json_like_go() {
        let v = yaml_to_value("a: <b>\nx: 1.5\ni: 3").unwrap();
        assert_eq!(to_json(&v, false), r#"{"a":"\u003cb\u003e","i":3,"x":1.5}"#);
    }
}
