//! A fast path for the plain block-style YAML most manifests are written in.
//!
//! A general YAML reader parses at a few MB/s once its event stream and value building are
//! paid for; on a 2,000-object overlay that was half of the whole build. This reader handles
//! only a conservative subset (block mappings with simple keys, block sequences, one-line plain
//! and quoted scalars, `|`/`|-` literal blocks, `{}` and `[]`) and gives up on anything else
//! (anchors, aliases, tags, flow collections, folded or multi-line scalars, tabs, duplicate
//! keys, directives, odd indentation), in which case the caller parses the whole text with
//! [`crate::yamlread`]. Plain scalars that are not obviously a string or a decimal integer are
//! typed by [`crate::yamlread::resolve_plain`], and annotation values keep their text, so both
//! readers agree. It is hand-written because no crate offers "parse this subset or say you
//! cannot"; the fallback keeps every other input on the event reader, including its error
//! messages and alias budget.

use serde_json::{Map, Number, Value};

/// The input is outside the subset; parse it with the event reader instead.
#[derive(Debug)]
pub(crate) struct Fallback;

type R<T> = std::result::Result<T, Fallback>;

/// Deepest nesting handled here (deeper inputs go to the event reader and its cap).
const MAX_DEPTH: usize = 100;

struct Line<'a> {
    indent: usize,
    /// Text after the indentation, trailing spaces removed.
    text: &'a str,
    /// The whole line (for literal blocks).
    raw: &'a str,
    /// Whether the text ends with this line, without a line break.
    unterminated: bool,
}

impl Line<'_> {
    fn is_blank_or_comment(&self) -> bool {
        self.text.is_empty() || self.text.starts_with('#')
    }
    fn is_seq_item(&self) -> bool {
        self.text == "-" || self.text.starts_with("- ")
    }
}

/// Parses every document of `text`, keeping empty documents as `Null`.
pub(crate) fn parse_documents(text: &str) -> R<Vec<Value>> {
    if has_control_bytes(text.as_bytes())
        || (!text.is_ascii()
            && text.contains(['\u{85}', '\u{2028}', '\u{2029}', '\u{feff}', '\u{a0}']))
    {
        return Err(Fallback);
    }
    let mut chunks: Vec<Vec<Line<'_>>> = Vec::new();
    let mut cur: Vec<Line<'_>> = Vec::new();
    let text_end = text.as_ptr() as usize + text.len();
    for raw in text.split('\n') {
        let trimmed = trim_spaces_end(raw);
        if trimmed.starts_with("---") {
            if trimmed != "---" {
                return Err(Fallback);
            }
            chunks.push(std::mem::take(&mut cur));
            continue;
        }
        if trimmed.starts_with("...") || trimmed.starts_with('%') {
            return Err(Fallback);
        }
        let body = trim_spaces_start(trimmed);
        cur.push(Line {
            indent: trimmed.len() - body.len(),
            text: body,
            raw,
            unterminated: raw.as_ptr() as usize + raw.len() == text_end,
        });
    }
    chunks.push(cur);
    // Documents are independent: large streams are parsed on several threads.
    if chunks.len() >= PARALLEL_DOCS {
        use rayon::prelude::*;
        chunks.into_par_iter().map(parse_doc).collect()
    } else {
        chunks.into_iter().map(parse_doc).collect()
    }
}

/// Streams with at least this many documents are parsed in parallel.
const PARALLEL_DOCS: usize = 64;

/// Whether `b` holds a control byte other than newline (or DEL). Checked in blocks without
/// an early exit so the loop vectorizes.
fn has_control_bytes(b: &[u8]) -> bool {
    b.chunks(64).any(|c| {
        c.iter().fold(false, |acc, &x| {
            acc | ((x < 0x20) & (x != b'\n')) | (x == 0x7f)
        })
    })
}

/// `s` without trailing spaces (bytewise: a space is one byte, so the cut is a char boundary).
fn trim_spaces_end(s: &str) -> &str {
    let n = s.bytes().rev().take_while(|&b| b == b' ').count();
    &s[..s.len() - n]
}

/// `s` without leading spaces.
fn trim_spaces_start(s: &str) -> &str {
    let n = s.bytes().take_while(|&b| b == b' ').count();
    &s[n..]
}

fn parse_doc(lines: Vec<Line<'_>>) -> R<Value> {
    let mut p = Parser {
        lines,
        pos: 0,
        meta: Meta::Outside,
    };
    p.skip_blank();
    let Some(first) = p.lines.get(p.pos) else {
        return Ok(Value::Null);
    };
    let indent = first.indent;
    let v = p.node(indent, 0)?;
    p.skip_blank();
    if p.pos < p.lines.len() {
        return Err(Fallback);
    }
    Ok(v)
}

struct Parser<'a> {
    lines: Vec<Line<'a>>,
    pos: usize,
    /// Where the parser is relative to the document's `metadata.annotations`.
    meta: Meta,
}

/// Position relative to a document's `metadata.annotations`, whose plain values keep their
/// source text (see [`crate::yamlread`]).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Meta {
    Outside,
    Metadata,
    Annotations,
}

impl<'a> Parser<'a> {
    fn skip_blank(&mut self) {
        while self
            .lines
            .get(self.pos)
            .is_some_and(Line::is_blank_or_comment)
        {
            self.pos += 1;
        }
    }

    /// The next content line's indentation, if any.
    fn next_indent(&mut self) -> Option<usize> {
        self.skip_blank();
        self.lines.get(self.pos).map(|l| l.indent)
    }

    /// A block node whose first line is the current one, at `indent`.
    fn node(&mut self, indent: usize, depth: usize) -> R<Value> {
        if depth > MAX_DEPTH {
            return Err(Fallback);
        }
        let line = self.lines.get(self.pos).ok_or(Fallback)?;
        if line.is_seq_item() {
            self.seq(indent, depth)
        } else if split_key(line.text).is_some() {
            self.map(indent, depth)
        } else {
            Err(Fallback)
        }
    }

    fn map(&mut self, indent: usize, depth: usize) -> R<Value> {
        self.map_into(Map::new(), indent, depth).map(Value::Object)
    }

    /// Adds the keys at `indent` to `m` (a repeated key falls back).
    fn map_into(
        &mut self,
        mut m: Map<String, Value>,
        indent: usize,
        depth: usize,
    ) -> R<Map<String, Value>> {
        while let Some(ind) = self.next_indent() {
            if ind < indent {
                break;
            }
            let line = &self.lines[self.pos];
            if ind > indent || line.is_seq_item() {
                if ind == indent {
                    // `- x` at a key's indentation only follows `key:`; here it ends the map.
                    break;
                }
                return Err(Fallback);
            }
            let (key, rest) = split_key(line.text).ok_or(Fallback)?;
            self.pos += 1;
            let outer = self.meta;
            self.meta = match (depth, outer, key) {
                (0, _, "metadata") => Meta::Metadata,
                (1, Meta::Metadata, "annotations") => Meta::Annotations,
                _ => Meta::Outside,
            };
            let raw = depth == 2 && outer == Meta::Annotations;
            let v = if raw && !rest.is_empty() && !rest.starts_with(['"', '\'', '|', '#', '{', '['])
            {
                self.scalar_value(rest, indent, true)?
            } else {
                match self.value_after_key(rest, indent, depth)? {
                    // An empty annotation value is the empty string.
                    Value::Null if raw && rest.is_empty() => Value::String(String::new()),
                    v => v,
                }
            };
            self.meta = outer;
            if m.insert(key.to_string(), v).is_some() {
                return Err(Fallback);
            }
        }
        Ok(m)
    }

    fn value_after_key(&mut self, rest: &'a str, key_indent: usize, depth: usize) -> R<Value> {
        if rest.is_empty() || rest.starts_with('#') {
            return match self.next_indent() {
                Some(i) if i > key_indent => self.node(i, depth + 1),
                Some(i) if i == key_indent && self.lines[self.pos].is_seq_item() => {
                    self.seq(i, depth + 1)
                }
                _ => Ok(Value::Null),
            };
        }
        self.scalar_value(rest, key_indent, false)
    }

    /// A one-line scalar or a literal block introduced on the current (already consumed) line.
    fn scalar_value(&mut self, rest: &'a str, parent_indent: usize, raw: bool) -> R<Value> {
        match rest {
            "|" => return self.literal(parent_indent, false),
            "|-" => return self.literal(parent_indent, true),
            _ => {}
        }
        let v = if raw {
            // Checked like any plain scalar, kept as its text.
            inline_scalar(rest)?;
            Value::String(rest.to_string())
        } else {
            inline_scalar(rest)?
        };
        // A deeper line after a one-line scalar would continue it (or be an error).
        if self.next_indent().is_some_and(|i| i > parent_indent) {
            return Err(Fallback);
        }
        Ok(v)
    }

    fn seq(&mut self, indent: usize, depth: usize) -> R<Value> {
        if depth > MAX_DEPTH {
            return Err(Fallback);
        }
        let mut items = Vec::new();
        while let Some(ind) = self.next_indent() {
            if ind < indent {
                break;
            }
            let line = &self.lines[self.pos];
            if ind > indent {
                return Err(Fallback);
            }
            if !line.is_seq_item() {
                break;
            }
            let after = &line.text[1..];
            let item = after.trim_start_matches(' ');
            if item.is_empty() || item.starts_with('#') || item == "-" || item.starts_with("- ") {
                return Err(Fallback);
            }
            let col = indent + 1 + (after.len() - item.len());
            if let Some((key, rest)) = split_key(item) {
                // `- key: v` opens a mapping whose keys sit at the column of `key`.
                if depth + 1 > MAX_DEPTH {
                    return Err(Fallback);
                }
                self.pos += 1;
                let first = self.value_after_key(rest, col, depth + 1)?;
                let mut m = Map::new();
                m.insert(key.to_string(), first);
                let m = match self.next_indent() {
                    Some(i) if i == col && !self.lines[self.pos].is_seq_item() => {
                        self.map_into(m, col, depth + 1)?
                    }
                    Some(i) if i > indent && i != col => return Err(Fallback),
                    Some(i) if i == col => return Err(Fallback),
                    _ => m,
                };
                items.push(Value::Object(m));
            } else {
                self.pos += 1;
                items.push(self.scalar_value(item, indent, false)?);
            }
        }
        Ok(Value::Array(items))
    }

    /// A `|` or `|-` block: every following line indented deeper than `parent_indent`.
    fn literal(&mut self, parent_indent: usize, strip: bool) -> R<Value> {
        let start = self.pos;
        let mut content_indent = None;
        let mut i = start;
        while let Some(l) = self.lines.get(i) {
            if !l.text.is_empty() {
                if l.indent <= parent_indent {
                    break;
                }
                content_indent = Some(l.indent);
                break;
            }
            i += 1;
        }
        let Some(ci) = content_indent else {
            // No content: the block is empty; trailing blank lines belong to it.
            while self.lines.get(self.pos).is_some_and(|l| l.text.is_empty()) {
                if self.lines[self.pos].raw.len() > parent_indent + 1 {
                    return Err(Fallback);
                }
                self.pos += 1;
            }
            return Ok(Value::String(String::new()));
        };
        let mut parts: Vec<&str> = Vec::new();
        let mut end = start;
        let mut j = start;
        while let Some(l) = self.lines.get(j) {
            if l.text.is_empty() {
                if l.raw.len() > ci {
                    return Err(Fallback);
                }
                parts.push("");
            } else if l.indent >= ci {
                parts.push(&l.raw[ci..]);
                end = j + 1;
            } else if l.indent > parent_indent {
                return Err(Fallback);
            } else {
                break;
            }
            j += 1;
        }
        // Trailing blank lines are chomped; leave them for the structure parser to skip.
        parts.truncate(end - start);
        self.pos = end;
        let mut s = parts.join("\n");
        // Clipping keeps the last line break, if the text has one.
        let unterminated = end > 0 && self.lines[end - 1].unterminated;
        if !strip && !unterminated {
            s.push('\n');
        }
        Ok(Value::String(s))
    }
}

/// Words a YAML 1.1 or 1.2 reader may resolve to something other than a string.
fn is_special_word(t: &str) -> bool {
    const WORDS: [&str; 12] = [
        "null", "true", "false", "yes", "no", "on", "off", "y", "n", "nan", "inf", "infinity",
    ];
    t.len() <= 8 && WORDS.iter().any(|w| w.eq_ignore_ascii_case(t))
}

/// Splits `key: rest` where the key is a simple plain string.
fn split_key(text: &str) -> Option<(&str, &str)> {
    let end = text
        .bytes()
        .position(|b| !(b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'/' | b'-')))?;
    let key = &text[..end];
    let first = *key.as_bytes().first()?;
    if !(first.is_ascii_alphabetic() || first == b'_')
        || (matches!(first | 0x20, b'n' | b't' | b'f' | b'y' | b'o' | b'i') && is_special_word(key))
    {
        return None;
    }
    let rest = text[end..].strip_prefix(':')?;
    if !(rest.is_empty() || rest.starts_with(' ')) {
        return None;
    }
    Some((key, rest.trim_start_matches(' ')))
}

fn inline_scalar(s: &str) -> R<Value> {
    match s {
        "{}" => return Ok(Value::Object(Map::new())),
        "[]" => return Ok(Value::Array(Vec::new())),
        _ => {}
    }
    let first = s.as_bytes().first().copied().ok_or(Fallback)?;
    match first {
        b'"' => double_quoted(s),
        b'\'' => single_quoted(s),
        b'&' | b'*' | b'!' | b'|' | b'>' | b'%' | b'@' | b'`' | b'{' | b'[' | b']' | b'}'
        | b',' | b'?' | b'#' | b':' => Err(Fallback),
        b'-' if s == "-" || s.starts_with("- ") => Err(Fallback),
        _ => plain(s),
    }
}

fn plain(s: &str) -> R<Value> {
    if s.contains(": ") || s.contains(" #") || s.ends_with(':') {
        return Err(Fallback);
    }
    let b = s.as_bytes();
    let first = b[0];
    if ((first.is_ascii_alphabetic() || first == b'/') && !is_special_word(s))
        || s.starts_with("--")
    {
        return Ok(Value::String(s.to_string()));
    }
    if first.is_ascii_digit() {
        if b.iter().all(u8::is_ascii_digit) && (b.len() == 1 || first != b'0') && b.len() <= 18 {
            let n: u64 = s.parse().map_err(|_| Fallback)?;
            return Ok(Value::Number(Number::from(n)));
        }
        let numeric_ish = |c: &u8| c.is_ascii_hexdigit() || b"xXoO._+-:".contains(c);
        if !b.iter().all(numeric_ish) {
            return Ok(Value::String(s.to_string()));
        }
    }
    // Anything else (floats, signs, `~`, octal...) is typed as kustomize types it.
    Ok(crate::yamlread::resolve_plain(s))
}

fn single_quoted(s: &str) -> R<Value> {
    let body = &s[1..];
    let mut out = String::with_capacity(body.len());
    let mut chars = body.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c == '\'' {
            if chars.peek().is_some_and(|&(_, n)| n == '\'') {
                chars.next();
                out.push('\'');
                continue;
            }
            return if body[i + 1..].trim_start_matches(' ').is_empty() {
                Ok(Value::String(out))
            } else {
                Err(Fallback)
            };
        }
        out.push(c);
    }
    Err(Fallback)
}

fn double_quoted(s: &str) -> R<Value> {
    let body = &s[1..];
    let mut out = String::with_capacity(body.len());
    let mut chars = body.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => {
                return if body[i + 1..].trim_start_matches(' ').is_empty() {
                    Ok(Value::String(out))
                } else {
                    Err(Fallback)
                };
            }
            '\\' => match chars.next().map(|(_, e)| e) {
                Some('\\') => out.push('\\'),
                Some('"') => out.push('"'),
                Some('/') => out.push('/'),
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                _ => return Err(Fallback),
            },
            _ => out.push(c),
        }
    }
    Err(Fallback)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slow(text: &str) -> Vec<Value> {
        crate::yamlread::parse_documents(text, crate::yamlread::Duplicates::Reject)
            .expect("the event reader parses the sample")
    }

    fn same(text: &str) {
        let fast = parse_documents(text).expect("fast path takes the sample");
        let fast: Vec<Value> = fast.into_iter().filter(|v| !v.is_null()).collect();
        let slow: Vec<Value> = slow(text).into_iter().filter(|v| !v.is_null()).collect();
        assert_eq!(fast, slow, "input:\n{text}");
    }

    #[test]
    fn matches_the_event_reader_on_the_subset() {
        same("a: 1\nb: x\nc:\n  d: []\n");
        same(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n  labels:\n    app.kubernetes.io/name: y\ndata:\n  k: 'it''s'\n  q: \"a\\nb\"\n  nothing:\n  e: {}\n  l: []\n",
        );
        same("---\na: 1\n---\n# only a comment\n---\nb:\n- 1\n- two\n-   c: 3\n    d: 4\n- e: 5\n");
        same(
            "spec:\n  containers:\n  - name: main\n    image: r.example.com/app:1.2\n    args:\n    - --flag=1\n    - /bin/sh\n    ports:\n    - containerPort: 80\n      protocol: TCP\n",
        );
        same("a: |\n  line one\n\n    indented\n  last\nb: |-\n  x\n  y\n\nc: |\n\nd: 2\n");
        same(
            "s: 256Mi\nt: 10m\nu: 0.5\nv: -1\nw: 1e3\nx: ~\noct: 0777\nz: 12:30\nw2: True\nw3: yes\nw4: 0x1F\n",
        );
        same("  indented: top\n  other: 1\n");
        same(
            "metadata:\n  annotations:\n    a: 0755\n    b: yes\n    c:\n    d: 'q'\n  labels:\n    a: 0755\nx:\n  metadata:\n    annotations:\n      a: 0755\n",
        );
    }

    #[test]
    fn falls_back_outside_the_subset() {
        for text in [
            "a: &x 1\nb: *x\n",
            "a: !!str 1\n",
            "a: {b: 1}\n",
            "a: >\n  folded\n",
            "a: b\n  continued\n",
            "a: 1\na: 2\n",
            "a:\tb\n",
            "\"quoted\": key\n",
            "a: 'open\n  quote'\n",
            "just a scalar\n",
            "%YAML 1.2\n---\na: 1\n",
            "a: x # comment\n",
            "a: 1\n b: 2\n",
        ] {
            assert!(parse_documents(text).is_err(), "fast path took {text:?}");
        }
    }

    /// `PLUMB_FASTYAML_CORPUS=DIR cargo test -p plumb-kustomize fastyaml -- --ignored` checks
    /// that every YAML file under DIR the fast path takes parses exactly as the event reader does.
    #[test]
    #[ignore = "needs PLUMB_FASTYAML_CORPUS"]
    fn corpus_agrees_with_the_event_reader() {
        fn walk(d: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
            for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
                let p = e.path();
                if p.is_dir() {
                    walk(&p, out);
                } else if p.extension().is_some_and(|x| x == "yaml" || x == "yml") {
                    out.push(p);
                }
            }
        }
        let dir = std::env::var("PLUMB_FASTYAML_CORPUS").expect("PLUMB_FASTYAML_CORPUS");
        let mut files = Vec::new();
        walk(std::path::Path::new(&dir), &mut files);
        let (mut taken, mut bad) = (0, Vec::new());
        for f in &files {
            let Ok(text) = std::fs::read_to_string(f) else {
                continue;
            };
            let Ok(fast) = parse_documents(&text) else {
                continue;
            };
            taken += 1;
            let fast: Vec<Value> = fast.into_iter().filter(|v| !v.is_null()).collect();
            let slow = crate::yamlread::parse_documents(&text, crate::yamlread::Duplicates::Reject);
            let slow = slow.map(|v| v.into_iter().filter(|v| !v.is_null()).collect::<Vec<_>>());
            if slow.as_ref().ok() != Some(&fast) {
                bad.push(f.display().to_string());
            }
        }
        eprintln!("{taken} of {} files on the fast path", files.len());
        assert!(bad.is_empty(), "fast path disagrees on {bad:#?}");
    }

    #[test]
    fn deep_nesting_falls_back_instead_of_overflowing() {
        let mut t = String::new();
        for i in 0..5000 {
            t.push_str(&" ".repeat(i));
            t.push_str("a:\n");
        }
        assert!(parse_documents(&t).is_err());
    }
}
