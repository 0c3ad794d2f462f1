//! YAML read the way kustomize reads it, from the event parser (`granit-parser`).
//!
//! kustomize parses with go-yaml v3 and, before printing, turns every object into JSON and
//! back (`RNode.MarshalJSON`, then `sigs.k8s.io/yaml.JSONToYAML`). What an object ends up
//! holding is therefore go-yaml v3's reading of each plain scalar, not YAML 1.1's or 1.2's:
//! only `true`/`True`/`TRUE` (and the same for false) are booleans, so `yes` and `on` stay
//! strings; `0755` is octal (493) while `08` is the float 8; underscores are dropped from
//! numbers; timestamps, `.inf` and `.nan` stay strings (JSON cannot hold the last two);
//! whole floats come out as integers. [`resolve_plain`] implements those rules. serde-saphyr
//! resolves scalars by its own schema, hence this reader.
//!
//! Also as kustomize: the values of an object's `metadata.annotations` keep their source
//! text (`a: 0755` is the string "0755", `b:` is ""), since kustomize reads them into a string
//! map. Aliases are expanded within a node budget, merge keys (`<<`) merge as go-yaml does
//! (keys of the mapping win, then earlier merged maps), and nesting is capped.

use granit_parser::{Event, Parser, ScalarStyle, Tag};
use rustc_hash::FxHashMap;
use serde_json::{Map, Number, Value};

/// Deepest nesting of collections accepted (aliases included).
pub(crate) const MAX_DEPTH: usize = 200;
/// Most nodes alias expansion may copy in one stream (stops alias bombs).
const MAX_ALIAS_NODES: usize = 1_000_000;

/// What to do with a key repeated in one mapping.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Duplicates {
    /// An error, as go-yaml v3 reports when decoding.
    Reject,
    /// The last value wins (kustomization files).
    LastWins,
}

/// A YAML syntax or structure error with its 1-based line and column.
#[derive(Debug)]
pub(crate) struct ReadError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// A collection being built.
enum Frame {
    Seq {
        items: Vec<Value>,
        anchor: usize,
    },
    Map {
        map: Map<String, Value>,
        anchor: usize,
        /// The key whose value comes next; `None` when a key comes next.
        key: Option<PendingKey>,
        /// Values of `<<` keys, merged when the mapping ends.
        merges: Vec<Value>,
        /// Whether this is the `annotations` map of a document's top-level `metadata`.
        annotations: bool,
    },
}

enum PendingKey {
    Key(String),
    Merge,
}

/// An anchored node: its value, node count and depth.
struct Anchored {
    value: Value,
    nodes: usize,
    depth: usize,
}

struct Reader {
    stack: Vec<Frame>,
    anchors: FxHashMap<usize, Anchored>,
    alias_nodes: usize,
    dups: Duplicates,
    docs: Vec<Value>,
    /// The current document's root, once complete.
    root: Option<Value>,
}

/// Parses every document of a YAML stream; empty documents are `Null`.
pub(crate) fn parse_documents(text: &str, dups: Duplicates) -> Result<Vec<Value>, ReadError> {
    let mut options = granit_parser::Options::default();
    options.set_emit_comments(false);
    let mut r = Reader {
        stack: Vec::new(),
        anchors: FxHashMap::default(),
        alias_nodes: 0,
        dups,
        docs: Vec::new(),
        root: None,
    };
    for ev in Parser::new_from_str_with_options(text, options) {
        let (ev, span) = ev.map_err(|e| ReadError {
            line: e.marker().line(),
            column: e.marker().col() + 1,
            message: e.info(),
        })?;
        let at = |message: String| ReadError {
            line: span.start.line(),
            column: span.start.col() + 1,
            message,
        };
        // An empty node comes as a plain `~` with an empty span.
        let empty = span.start.index() == span.end.index();
        r.event(ev, empty).map_err(at)?;
    }
    Ok(r.docs)
}

impl Reader {
    fn event(&mut self, ev: Event<'_>, empty: bool) -> Result<(), String> {
        match ev {
            Event::DocumentStart(..) => {
                self.anchors.clear();
                self.root = None;
            }
            Event::DocumentEnd => {
                self.docs.push(self.root.take().unwrap_or(Value::Null));
            }
            Event::Scalar(text, style, anchor, tag) => {
                if self.key_expected() {
                    let merge = style == ScalarStyle::Plain
                        && text == "<<"
                        && tag.as_deref().is_none_or(|t| t.suffix().ends_with("merge"));
                    return self.set_key(if merge {
                        PendingKey::Merge
                    } else {
                        PendingKey::Key(text.into_owned())
                    });
                }
                let v = if self.in_annotations() && style == ScalarStyle::Plain {
                    // kustomize reads annotations into a string map: the source text.
                    Value::String(if empty {
                        String::new()
                    } else {
                        text.into_owned()
                    })
                } else {
                    scalar(&text, style, tag.as_deref())
                };
                if anchor != 0 {
                    self.anchor(anchor, &v, 1, 0);
                }
                self.add(v)?;
            }
            Event::SequenceStart(_, anchor, _) => {
                self.open(Frame::Seq {
                    items: Vec::new(),
                    anchor,
                })?;
            }
            Event::MappingStart(_, anchor, _) => {
                let annotations = self.opening_annotations();
                self.open(Frame::Map {
                    map: Map::new(),
                    anchor,
                    key: None,
                    merges: Vec::new(),
                    annotations,
                })?;
            }
            Event::SequenceEnd | Event::MappingEnd => self.close()?,
            Event::Alias(id) => {
                let a = self
                    .anchors
                    .get(&id)
                    .ok_or_else(|| "unknown anchor".to_string())?;
                if self.stack.len() + a.depth > MAX_DEPTH {
                    return Err(format!("nesting deeper than {MAX_DEPTH} levels"));
                }
                self.alias_nodes += a.nodes;
                if self.alias_nodes > MAX_ALIAS_NODES {
                    return Err(format!(
                        "aliases expand to more than {MAX_ALIAS_NODES} nodes"
                    ));
                }
                let v = a.value.clone();
                if self.key_expected() {
                    let Value::String(s) = v else {
                        return Err("an alias to a collection used as a mapping key".into());
                    };
                    return self.set_key(PendingKey::Key(s));
                }
                self.add(v)?;
            }
            _ => {}
        }
        Ok(())
    }

    fn key_expected(&self) -> bool {
        matches!(self.stack.last(), Some(Frame::Map { key: None, .. }))
    }

    fn in_annotations(&self) -> bool {
        matches!(
            self.stack.last(),
            Some(Frame::Map {
                annotations: true,
                key: Some(PendingKey::Key(_)),
                ..
            })
        )
    }

    /// Whether the mapping about to open is `metadata.annotations` of a document's root.
    fn opening_annotations(&self) -> bool {
        let [
            Frame::Map {
                key: Some(PendingKey::Key(k0)),
                ..
            },
            Frame::Map {
                key: Some(PendingKey::Key(k1)),
                ..
            },
        ] = self.stack.as_slice()
        else {
            return false;
        };
        k0 == "metadata" && k1 == "annotations"
    }

    fn set_key(&mut self, k: PendingKey) -> Result<(), String> {
        if let Some(Frame::Map { key, .. }) = self.stack.last_mut() {
            *key = Some(k);
            return Ok(());
        }
        Err("a mapping key outside a mapping".into())
    }

    fn open(&mut self, f: Frame) -> Result<(), String> {
        if self.key_expected() {
            return Err("a collection used as a mapping key".into());
        }
        if self.stack.len() >= MAX_DEPTH {
            return Err(format!("nesting deeper than {MAX_DEPTH} levels"));
        }
        self.stack.push(f);
        Ok(())
    }

    fn close(&mut self) -> Result<(), String> {
        let (v, anchor) = match self.stack.pop() {
            Some(Frame::Seq { items, anchor }) => (Value::Array(items), anchor),
            Some(Frame::Map {
                mut map,
                anchor,
                merges,
                ..
            }) => {
                merge_into(&mut map, merges)?;
                (Value::Object(map), anchor)
            }
            None => return Err("unbalanced collection end".into()),
        };
        if anchor != 0 {
            let (nodes, depth) = measure(&v);
            self.anchor(anchor, &v, nodes, depth);
        }
        self.add(v)
    }

    fn anchor(&mut self, id: usize, v: &Value, nodes: usize, depth: usize) {
        self.anchors.insert(
            id,
            Anchored {
                value: v.clone(),
                nodes,
                depth,
            },
        );
    }

    /// Adds a complete node to its parent (or makes it the document root).
    fn add(&mut self, v: Value) -> Result<(), String> {
        let dups = self.dups;
        match self.stack.last_mut() {
            None => self.root = Some(v),
            Some(Frame::Seq { items, .. }) => items.push(v),
            Some(Frame::Map {
                map, key, merges, ..
            }) => match key.take() {
                Some(PendingKey::Merge) => merges.push(v),
                Some(PendingKey::Key(k)) => {
                    if dups == Duplicates::Reject && map.contains_key(&k) {
                        return Err(format!("mapping key {k:?} already defined"));
                    }
                    map.insert(k, v);
                }
                None => return Err("a mapping value without a key".into()),
            },
        }
        Ok(())
    }
}

/// Applies `<<` values: keys already in the mapping win, then earlier merged mappings.
fn merge_into(map: &mut Map<String, Value>, merges: Vec<Value>) -> Result<(), String> {
    for m in merges {
        let sources = match m {
            Value::Object(o) => vec![o],
            Value::Array(a) => a
                .into_iter()
                .map(|x| match x {
                    Value::Object(o) => Ok(o),
                    _ => Err("map merge requires a sequence of mappings".to_string()),
                })
                .collect::<Result<_, _>>()?,
            _ => return Err("map merge requires a mapping or a sequence of mappings".into()),
        };
        for src in sources {
            for (k, v) in src {
                map.entry(k).or_insert(v);
            }
        }
    }
    Ok(())
}

/// Node count and nesting depth of a value.
fn measure(v: &Value) -> (usize, usize) {
    match v {
        Value::Array(a) => a.iter().fold((1, 1), |(n, d), x| {
            let (xn, xd) = measure(x);
            (n + xn, d.max(xd + 1))
        }),
        Value::Object(m) => m.values().fold((1, 1), |(n, d), x| {
            let (xn, xd) = measure(x);
            (n + xn, d.max(xd + 1))
        }),
        _ => (1, 0),
    }
}

fn scalar(text: &str, style: ScalarStyle, tag: Option<&Tag>) -> Value {
    match style {
        ScalarStyle::Plain => {}
        ScalarStyle::Folded => return Value::String(reprinted_folded(text)),
        _ => return Value::String(text.to_string()),
    }
    match tag.map(|t| t.core_suffix()) {
        None => resolve_plain(text),
        // `!!str`, and any tag go-yaml does not resolve, keeps the text.
        Some(Some("int" | "float" | "bool" | "null")) => resolve_plain(text),
        Some(_) => Value::String(text.to_string()),
    }
}

/// A folded scalar after kustomize prints it folded again and reads it back. go-yaml's folded
/// writer tests the start of the whole value where it means the start of the next line, so it
/// writes a blank line even before a more-indented line, where folding keeps the line break:
/// each such break comes back doubled. Values go-yaml would not print as a block (leading
/// break, trailing or line-final spaces, control characters) print quoted, and values starting
/// with a blank get no extra breaks: both stay as they are.
fn reprinted_folded(value: &str) -> String {
    let block_allowed = !value.is_empty()
        && !value.starts_with(['\n', ' ', '\t'])
        && !value.ends_with(' ')
        && !value.contains(" \n")
        && !value
            .chars()
            .any(|c| (c < ' ' && c != '\n' && c != '\t') || c == '\u{7f}' || c == '\u{feff}');
    if !block_allowed {
        return value.to_string();
    }
    let trailing = value.len() - value.trim_end_matches('\n').len();
    let chomp = match trailing {
        0 => "-",
        1 => "",
        _ => "+",
    };
    let mut doc = format!("v: >{chomp}\n");
    let mut breaks = true;
    let mut leading_spaces = true;
    for c in value.chars() {
        if c == '\n' {
            if !breaks && !leading_spaces {
                doc.push('\n');
            }
            doc.push('\n');
            breaks = true;
        } else {
            if breaks {
                doc.push_str("  ");
                leading_spaces = c == ' ' || c == '\t';
            }
            doc.push(c);
            breaks = false;
        }
    }
    let mut options = granit_parser::Options::default();
    options.set_emit_comments(false);
    for ev in Parser::new_from_str_with_options(&doc, options) {
        match ev {
            Ok((Event::Scalar(text, ScalarStyle::Folded, ..), _)) => return text.into_owned(),
            Ok(_) => {}
            Err(_) => break,
        }
    }
    value.to_string()
}

/// What go-yaml v3 makes of an untagged plain scalar, after the JSON round trip.
pub(crate) fn resolve_plain(s: &str) -> Value {
    match s {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        _ => {}
    }
    let first = s.as_bytes()[0];
    if first == b'.' {
        return match s.parse::<f64>() {
            Ok(f) if f.is_finite() && s[1..].starts_with(|c: char| c.is_ascii_digit()) => {
                float_value(f)
            }
            _ => Value::String(s.to_string()),
        };
    }
    if !(first.is_ascii_digit() || first == b'-' || first == b'+') {
        return Value::String(s.to_string());
    }
    let plain = s.replace('_', "");
    if let Some(n) = go_parse_int(&plain) {
        return Value::Number(n);
    }
    if yaml_style_float(&plain)
        && let Ok(f) = plain.parse::<f64>()
        && f.is_finite()
    {
        return float_value(f);
    }
    Value::String(s.to_string())
}

/// A float as it comes out of JSON: whole values within the integer range are integers.
pub(crate) fn float_value(f: f64) -> Value {
    if f.fract() == 0.0 && f.abs() < 1e21 {
        if (-9.223_372_036_854_776e18..9.223_372_036_854_776e18).contains(&f) {
            return Value::Number(Number::from(f as i64));
        }
        if (0.0..1.844_674_407_370_955_2e19).contains(&f) {
            return Value::Number(Number::from(f as u64));
        }
    }
    Number::from_f64(f).map_or(Value::Null, Value::Number)
}

/// Go's `strconv.ParseInt(s, 0, 64)`, then `ParseUint(s, 0, 64)`: an optional sign, then
/// `0x`/`0o`/`0b` prefixes or a leading `0` for octal.
fn go_parse_int(s: &str) -> Option<Number> {
    let (neg, signed, body) = match s.as_bytes().first()? {
        b'-' => (true, true, &s[1..]),
        b'+' => (false, true, &s[1..]),
        _ => (false, false, s),
    };
    let (radix, digits) = match body.as_bytes() {
        [b'0', b'x' | b'X', ..] => (16, &body[2..]),
        [b'0', b'o' | b'O', ..] => (8, &body[2..]),
        [b'0', b'b' | b'B', ..] => (2, &body[2..]),
        [b'0', _, ..] => (8, &body[1..]),
        _ => (10, body),
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let mag = u64::from_str_radix(digits, radix).ok()?;
    if neg {
        if mag <= i64::MAX as u64 + 1 {
            return Some(Number::from((mag as i128).wrapping_neg() as i64));
        }
        return None;
    }
    if let Ok(i) = i64::try_from(mag) {
        return Some(Number::from(i));
    }
    // ParseUint takes no sign.
    (!signed).then(|| Number::from(mag))
}

/// go-yaml's `^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$`.
fn yaml_style_float(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    if matches!(b.first(), Some(b'-' | b'+')) {
        i += 1;
    }
    let digits = |i: &mut usize| {
        let start = *i;
        while b.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        *i - start
    };
    if b.get(i) == Some(&b'.') {
        i += 1;
        if digits(&mut i) == 0 {
            return false;
        }
    } else {
        if digits(&mut i) == 0 {
            return false;
        }
        if b.get(i) == Some(&b'.') {
            i += 1;
            digits(&mut i);
        }
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'-' | b'+')) {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return false;
        }
    }
    i == b.len()
}

/// A float as go-yaml v2 prints it (`strconv.FormatFloat(f, 'g', -1, 64)`): the shortest
/// digits, in exponent form (two exponent digits at least) below 1e-4 or from 1e6 on.
pub(crate) fn format_go_float(f: f64) -> String {
    if f.is_nan() {
        return ".nan".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { ".inf" } else { "-.inf" }.into();
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0" } else { "0" }.into();
    }
    // Rust's `{:e}` gives the shortest round-trip digits: `d[.ddd]e[-]x`.
    let e = format!("{f:e}");
    let (mant, exp) = e.split_once('e').unwrap_or((&e, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (sign, mant) = match mant.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mant),
    };
    let digits: String = mant.chars().filter(char::is_ascii_digit).collect();
    if !(-4..6).contains(&exp) {
        let (d0, rest) = digits.split_at(1);
        let frac = if rest.is_empty() {
            String::new()
        } else {
            format!(".{rest}")
        };
        let es = if exp < 0 { '-' } else { '+' };
        return format!("{sign}{d0}{frac}e{es}{:02}", exp.abs());
    }
    let n = digits.len() as i32;
    let body = if exp < 0 {
        format!("0.{}{digits}", "0".repeat((-exp - 1) as usize))
    } else if exp + 1 >= n {
        format!("{digits}{}", "0".repeat((exp + 1 - n) as usize))
    } else {
        let (a, b) = digits.split_at((exp + 1) as usize);
        format!("{a}.{b}")
    };
    format!("{sign}{body}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn one(text: &str) -> Value {
        let mut d = parse_documents(text, Duplicates::Reject).expect("parses");
        assert_eq!(d.len(), 1, "{text}");
        d.remove(0)
    }

    /// Plain scalars as go-yaml v3 types them (checked against `kubectl kustomize` v5.5).
    #[test]
    fn plain_scalars_resolve_as_go_yaml_v3() {
        for (text, want) in [
            ("0755", json!(493)),
            ("011", json!(9)),
            ("08", json!(8)),
            ("0x1F", json!(31)),
            ("0o17", json!(15)),
            ("0b101", json!(5)),
            ("1_000", json!(1000)),
            ("+12", json!(12)),
            ("-0", json!(0)),
            ("1e3", json!(1000)),
            ("100.0", json!(100)),
            (".5", json!(0.5)),
            ("2e-08", json!(2e-8)),
            ("18446744073709551615", json!(18446744073709551615u64)),
            ("yes", json!("yes")),
            ("on", json!("on")),
            ("True", json!(true)),
            ("FALSE", json!(false)),
            ("tRue", json!("tRue")),
            ("~", Value::Null),
            ("NULL", Value::Null),
            (".inf", json!(".inf")),
            (".nan", json!(".nan")),
            ("1:20", json!("1:20")),
            ("2021-01-02", json!("2021-01-02")),
            ("0x1p4", json!("0x1p4")),
            ("1.2.3", json!("1.2.3")),
            ("-", json!("-")),
            (".", json!(".")),
            ("1e400", json!("1e400")),
        ] {
            assert_eq!(resolve_plain(text), want, "{text}");
        }
    }

    #[test]
    fn floats_print_as_go() {
        for (f, want) in [
            (2e-8, "2e-08"),
            (0.5, "0.5"),
            (1234567.5, "1.2345675e+06"),
            (123456.5, "123456.5"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1e20, "1e+20"),
            (1e21, "1e+21"),
            (-1.5e-7, "-1.5e-07"),
            (1e100, "1e+100"),
        ] {
            assert_eq!(format_go_float(f), want, "{f}");
        }
    }

    #[test]
    fn quoted_and_tagged_scalars_stay_strings() {
        let v = one("a: '0755'\nb: \"true\"\nc: !!str 12\nd: !Custom 12\ne: !!int 12\n");
        assert_eq!(
            v,
            json!({"a": "0755", "b": "true", "c": "12", "d": "12", "e": 12})
        );
    }

    #[test]
    fn annotation_values_keep_their_text() {
        let v = one(
            "metadata:\n  annotations: {a: 0755, b: 1.0, c: yes, d: ~, e: true, f: 'x', g: }\n  labels:\n    a: 0755\nspec:\n  metadata:\n    annotations:\n      a: 0755\n",
        );
        assert_eq!(
            v,
            json!({"metadata": {"annotations": {"a": "0755", "b": "1.0", "c": "yes", "d": "~", "e": "true", "f": "x", "g": ""}, "labels": {"a": 493}},
                   "spec": {"metadata": {"annotations": {"a": 493}}}})
        );
    }

    #[test]
    fn merge_keys_and_aliases() {
        let v = one(
            "base: &b {x: 1, y: 2}\nother: &o {y: 3, z: 4}\nm:\n  <<: [*b, *o]\n  x: 9\nl: *b\nt:\n  !!merge <<: *o\n  z: 5\n",
        );
        assert_eq!(v["t"], json!({"y": 3, "z": 5}));
        assert_eq!(v["m"], json!({"x": 9, "y": 2, "z": 4}));
        assert_eq!(v["l"], json!({"x": 1, "y": 2}));
    }

    #[test]
    fn duplicate_keys_follow_the_policy() {
        assert!(parse_documents("a: 1\na: 2\n", Duplicates::Reject).is_err());
        let v = parse_documents("a: 1\na: 2\n", Duplicates::LastWins).expect("parses");
        assert_eq!(v, vec![json!({"a": 2})]);
    }

    #[test]
    fn alias_bombs_and_deep_nesting_are_errors() {
        let mut t = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let p = i - 1;
            t.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        let e = parse_documents(&t, Duplicates::Reject).expect_err("bomb");
        assert!(e.message.contains("aliases expand"), "{}", e.message);
        let deep = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
        assert!(parse_documents(&deep, Duplicates::Reject).is_err());
        // Aliases cannot stack nesting past the cap either.
        let mut t = String::from("a0: &a0 [[[[[[[[[[1]]]]]]]]]]\n");
        for i in 1..40 {
            t.push_str(&format!("a{i}: &a{i} [[[[[*a{}]]]]]\n", i - 1));
        }
        let e = parse_documents(&t, Duplicates::Reject).expect_err("too deep");
        assert!(e.message.contains("nesting"), "{}", e.message);
    }

    #[test]
    fn many_comments_in_a_row_parse() {
        let mut t = String::from("a:\n");
        for i in 0..500 {
            t.push_str(&format!("  # comment {i}\n"));
        }
        t.push_str("  b: {c: 1}\n");
        assert_eq!(one(&t), json!({"a": {"b": {"c": 1}}}));
    }
}
