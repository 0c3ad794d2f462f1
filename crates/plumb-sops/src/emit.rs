//! Writing decrypted documents: JSON text, and block-style YAML whose every scalar is the
//! same JSON token (strings double-quoted with JSON escapes, numbers, `true`, `null`).
//!
//! Why block YAML: a decrypted file is read again by the kustomize loader, whose fast
//! reader takes plain block-style manifests and hands anything else (a JSON document is a
//! flow mapping) to the general event reader, several times slower. Keys are plain when
//! they are simple words no YAML reader types as anything but a string, else quoted; the
//! scalars are the JSON tokens, so both readers see the same values as in the JSON form.

use crate::tree::Node;

/// Keys longer than this are written as JSON (YAML caps implicit keys at 1,024 characters).
const MAX_BLOCK_KEY: usize = 1000;

/// Writes `n` as JSON text (valid YAML), keeping key order and types.
pub(crate) fn write_json(out: &mut String, n: &Node) {
    match n {
        Node::Null => out.push_str("null"),
        Node::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Node::Int(i) => out.push_str(&i.to_string()),
        Node::Uint(u) => out.push_str(&u.to_string()),
        Node::Float(f) => out.push_str(&serde_json::Value::from(*f).to_string()),
        Node::Str(s) => push_json_str(out, s),
        Node::Bytes(b) => push_json_str(out, &String::from_utf8_lossy(b)),
        Node::Seq(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json(out, v);
            }
            out.push(']');
        }
        Node::Map(items) => {
            out.push('{');
            for (i, (k, v)) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                push_json_str(out, k);
                out.push(':');
                write_json(out, v);
            }
            out.push('}');
        }
    }
}

/// Writes one YAML document: block style for maps and lists, JSON tokens for scalars.
/// Falls back to the JSON form when a key is too long for a block mapping.
pub(crate) fn write_yaml_doc(out: &mut String, n: &Node) {
    let block = match n {
        Node::Map(items) => !items.is_empty() && keys_fit(n),
        _ => false,
    };
    if !block {
        write_json(out, n);
        out.push('\n');
        return;
    }
    if let Node::Map(items) = n {
        for (k, v) in items {
            entry(out, k, v, 0);
        }
    }
}

/// Whether every key under `n` is short enough for a block mapping (the parse budget
/// bounds the depth, so the recursion too).
fn keys_fit(n: &Node) -> bool {
    match n {
        Node::Map(items) => items
            .iter()
            .all(|(k, v)| k.len() <= MAX_BLOCK_KEY && keys_fit(v)),
        Node::Seq(items) => items.iter().all(keys_fit),
        _ => true,
    }
}

fn indent(out: &mut String, n: usize) {
    out.extend(std::iter::repeat_n(' ', n));
}

/// `key: value` at `ind` (the caller wrote the indentation when `ind` is inline).
fn entry(out: &mut String, k: &str, v: &Node, ind: usize) {
    indent(out, ind);
    entry_inline(out, k, v, ind);
}

fn entry_inline(out: &mut String, k: &str, v: &Node, ind: usize) {
    push_key(out, k);
    out.push(':');
    match v {
        Node::Map(items) if !items.is_empty() => {
            out.push('\n');
            for (k2, v2) in items {
                entry(out, k2, v2, ind + 2);
            }
        }
        // Lists sit at their key's indentation, as kustomize prints them.
        Node::Seq(items) if !items.is_empty() => {
            out.push('\n');
            for item in items {
                seq_item(out, item, ind);
            }
        }
        scalar => {
            out.push(' ');
            write_json(out, scalar);
            out.push('\n');
        }
    }
}

fn seq_item(out: &mut String, item: &Node, ind: usize) {
    indent(out, ind);
    out.push_str("- ");
    match item {
        Node::Map(items) if !items.is_empty() => {
            for (i, (k, v)) in items.iter().enumerate() {
                if i == 0 {
                    entry_inline(out, k, v, ind + 2);
                } else {
                    entry(out, k, v, ind + 2);
                }
            }
        }
        // Lists of lists, and scalars, as one JSON token.
        other => {
            write_json(out, other);
            out.push('\n');
        }
    }
}

/// A key: plain when it is a simple word every YAML reader takes as that string.
fn push_key(out: &mut String, k: &str) {
    if plain_key(k) {
        out.push_str(k);
    } else {
        push_json_str(out, k);
    }
}

fn plain_key(k: &str) -> bool {
    let b = k.as_bytes();
    let Some(&first) = b.first() else {
        return false;
    };
    (first.is_ascii_alphabetic() || first == b'_')
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'/' | b'-'))
        && !is_special_word(k)
}

/// Words a YAML 1.1 or 1.2 reader may resolve to something other than a string.
fn is_special_word(t: &str) -> bool {
    const WORDS: [&str; 12] = [
        "null", "true", "false", "yes", "no", "on", "off", "y", "n", "nan", "inf", "infinity",
    ];
    t.len() <= 8 && WORDS.iter().any(|w| w.eq_ignore_ascii_case(t))
}

/// `s` as a JSON string, escaped exactly as serde_json escapes it.
pub(crate) fn push_json_str(out: &mut String, s: &str) {
    out.push('"');
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        let esc: &str = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\t' => "\\t",
            b'\r' => "\\r",
            0x08 => "\\b",
            0x0c => "\\f",
            0x00..=0x1f => "",
            _ => continue,
        };
        out.push_str(&s[start..i]);
        if esc.is_empty() {
            out.push_str(&format!("\\u{b:04x}"));
        } else {
            out.push_str(esc);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json_of(s: &str) -> String {
        let mut out = String::new();
        push_json_str(&mut out, s);
        out
    }

    #[test]
    fn strings_escape_as_serde_json_does() {
        for s in [
            "",
            "plain",
            "q\"uote\\back",
            "new\nline\ttab\rcr\u{8}\u{c}",
            "\u{0}\u{1f}\u{7f}",
            "ünï \u{2028} 😀",
        ] {
            assert_eq!(json_of(s), serde_json::Value::from(s).to_string(), "{s:?}");
        }
    }

    #[test]
    fn keys_plain_only_when_unambiguous() {
        for k in ["apiVersion", "a.b/c-d_e", "_x", "e10"] {
            assert!(plain_key(k), "{k}");
        }
        for k in [
            "", "yes", "On", "null", "1a", "-a", "a b", "a:b", "<<", "~", ".inf",
        ] {
            assert!(!plain_key(k), "{k}");
        }
    }

    #[test]
    fn long_keys_keep_the_json_form() {
        let long = "k".repeat(MAX_BLOCK_KEY + 1);
        let doc = Node::Map(vec![("a".into(), Node::Map(vec![(long, Node::Int(1))]))]);
        let mut out = String::new();
        write_yaml_doc(&mut out, &doc);
        assert!(out.starts_with("{\"a\":{"), "{out}");
    }

    #[test]
    fn block_layout() {
        let doc = Node::Map(vec![
            ("a".into(), Node::Int(1)),
            (
                "m".into(),
                Node::Map(vec![
                    ("s".into(), Node::Str("x\ny".into())),
                    ("e".into(), Node::Map(vec![])),
                ]),
            ),
            (
                "l".into(),
                Node::Seq(vec![
                    Node::Map(vec![
                        ("k".into(), Node::Bool(true)),
                        ("n".into(), Node::Seq(vec![Node::Null, Node::Float(1.5)])),
                        ("z".into(), Node::Seq(vec![])),
                    ]),
                    Node::Seq(vec![Node::Int(2)]),
                    Node::Str("v".into()),
                ]),
            ),
            ("yes".into(), Node::Str("k".into())),
        ]);
        let mut out = String::new();
        write_yaml_doc(&mut out, &doc);
        assert_eq!(
            out,
            "a: 1\nm:\n  s: \"x\\ny\"\n  e: {}\nl:\n- k: true\n  \"n\":\n  - null\n  - 1.5\n  z: []\n- [2]\n- \"v\"\n\"yes\": \"k\"\n"
        );
    }
}
