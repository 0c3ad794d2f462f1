//! One file: walk the event stream, find value scalars followed on their line by a setter
//! marker comment, and splice the new values into the source text by byte span.

use std::collections::{BTreeMap, HashMap};

use granit_parser::{Event, Parser, ScalarStyle};

use super::{Change, LatestRef, ObjectId};

/// The markers of one file that were left alone.
pub(super) struct FileUnresolved {
    pub line: usize,
    pub setter: String,
    pub reason: String,
}

/// The outcome for one file.
pub(super) struct FileResult {
    /// The new text, when something changed.
    pub text: Option<String>,
    pub objects: BTreeMap<ObjectId, Vec<Change>>,
    pub unresolved: Vec<FileUnresolved>,
}

/// A collection being walked: mappings alternate between keys and values.
enum Frame {
    Map {
        expect_key: bool,
        key: Option<String>,
    },
    Seq,
}

type Policies<'a> = HashMap<(&'a str, &'a str), &'a LatestRef>;

struct Scan<'t, 'p> {
    text: &'t str,
    policies: &'p Policies<'p>,
    stack: Vec<Frame>,
    id: ObjectId,
    doc_changes: Vec<Change>,
    objects: BTreeMap<ObjectId, Vec<Change>>,
    /// Byte range and replacement source text, in document order.
    edits: Vec<(std::ops::Range<usize>, String)>,
    unresolved: Vec<FileUnresolved>,
}

/// Rewrites the marked scalars of `text`; `Err` is a parse error (the file is skipped).
pub(super) fn rewrite(text: &str, policies: &Policies<'_>) -> Result<FileResult, String> {
    let mut options = granit_parser::Options::default();
    options.set_emit_comments(false);
    let mut s = Scan {
        text,
        policies,
        stack: Vec::new(),
        id: ObjectId::default(),
        doc_changes: Vec::new(),
        objects: BTreeMap::new(),
        edits: Vec::new(),
        unresolved: Vec::new(),
    };
    for ev in Parser::new_from_str_with_options(text, options) {
        let (ev, span) = ev.map_err(|e| {
            format!(
                "YAML parse error at line {} column {}: {}",
                e.marker().line(),
                e.marker().col() + 1,
                e.info()
            )
        })?;
        s.event(ev, span);
    }
    let text = if s.edits.is_empty() {
        None
    } else {
        let mut out = String::with_capacity(text.len());
        let mut at = 0;
        for (range, new) in &s.edits {
            out.push_str(&text[at..range.start]);
            out.push_str(new);
            at = range.end;
        }
        out.push_str(&text[at..]);
        Some(out)
    };
    Ok(FileResult {
        text,
        objects: s.objects,
        unresolved: s.unresolved,
    })
}

impl Scan<'_, '_> {
    fn event(&mut self, ev: Event<'_>, span: granit_parser::Span) {
        match ev {
            Event::DocumentStart(..) => {
                self.stack.clear();
                self.id = ObjectId::default();
            }
            Event::DocumentEnd => self.end_document(),
            Event::MappingStart(..) => {
                self.begin_node();
                self.stack.push(Frame::Map {
                    expect_key: true,
                    key: None,
                });
            }
            Event::SequenceStart(..) => {
                self.begin_node();
                self.stack.push(Frame::Seq);
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
                self.end_node();
            }
            Event::Scalar(value, style, ..) => {
                if self.begin_node() {
                    if let Some(Frame::Map { key, .. }) = self.stack.last_mut() {
                        *key = Some(value.into_owned());
                    }
                } else {
                    self.note_identity(&value);
                    self.value_scalar(&value, style, span);
                    self.end_node();
                }
            }
            Event::Alias(..) => {
                let is_key = self.begin_node();
                if !is_key {
                    self.end_node();
                }
            }
            _ => {}
        }
    }

    /// Files the document's changes under its identity.
    fn end_document(&mut self) {
        if !self.doc_changes.is_empty() {
            self.objects
                .entry(std::mem::take(&mut self.id))
                .or_default()
                .append(&mut self.doc_changes);
        }
    }

    /// A node starts; returns whether it is a mapping key (the key text is then recorded).
    fn begin_node(&mut self) -> bool {
        match self.stack.last_mut() {
            Some(Frame::Map { expect_key, key }) if *expect_key => {
                *expect_key = false;
                // A collection as a key leaves no key text.
                *key = None;
                true
            }
            _ => false,
        }
    }

    /// A value node ended: its mapping expects a key next.
    fn end_node(&mut self) {
        if let Some(Frame::Map { expect_key, .. }) = self.stack.last_mut() {
            *expect_key = true;
        }
    }

    fn key_at(&self, depth: usize) -> Option<&str> {
        match self.stack.get(depth) {
            Some(Frame::Map { key, .. }) => key.as_deref(),
            _ => None,
        }
    }

    /// Records `apiVersion`, `kind`, `metadata.name`, `metadata.namespace` of the document.
    fn note_identity(&mut self, value: &str) {
        let slot = match (self.stack.len(), self.key_at(0), self.key_at(1)) {
            (1, Some("apiVersion"), _) => &mut self.id.api_version,
            (1, Some("kind"), _) => &mut self.id.kind,
            (2, Some("metadata"), Some("name")) => &mut self.id.name,
            (2, Some("metadata"), Some("namespace")) => &mut self.id.namespace,
            _ => return,
        };
        *slot = value.to_string();
    }

    fn value_scalar(&mut self, value: &str, style: ScalarStyle, span: granit_parser::Span) {
        let Some(range) = span.byte_range() else {
            return;
        };
        let Some(setter) = marker_after(self.text, range.end) else {
            return;
        };
        let line = span.start.line();
        let new_value = match self.resolve(&setter) {
            Ok(v) => v,
            Err(reason) => {
                self.unresolved.push(FileUnresolved {
                    line,
                    setter,
                    reason,
                });
                return;
            }
        };
        if new_value == value {
            return;
        }
        let Some(source) = encode(&new_value, style) else {
            self.unresolved.push(FileUnresolved {
                line,
                setter,
                reason: "block scalars are not rewritten".into(),
            });
            return;
        };
        self.edits.push((range, source));
        self.doc_changes.push(Change {
            old_value: value.to_string(),
            new_value,
            setter,
        });
    }

    /// The value a setter names: `ns:name` (the full reference) or `ns:name:{tag,name,digest}`.
    fn resolve(&self, setter: &str) -> Result<String, String> {
        let mut parts = setter.splitn(3, ':');
        let (Some(ns), Some(name)) = (parts.next(), parts.next()) else {
            return Err("not of the form <namespace>:<name>".into());
        };
        let Some(latest) = self.policies.get(&(ns, name)) else {
            return Err(format!(
                "no ImagePolicy {ns}/{name} among the automation's policies"
            ));
        };
        match parts.next() {
            None => Ok(latest.full()),
            Some("tag") => Ok(latest.tag.clone()),
            Some("name") => Ok(latest.name.clone()),
            Some("digest") if latest.digest.is_empty() => {
                Err(format!("ImagePolicy {ns}/{name} reflects no digest"))
            }
            Some("digest") => Ok(latest.digest.clone()),
            Some(other) => Err(format!(
                "unknown setter suffix {other:?} (expected tag, name or digest)"
            )),
        }
    }
}

/// The setter of a `# {"$imagepolicy": "..."}` comment right after byte `end` on its line.
fn marker_after(text: &str, end: usize) -> Option<String> {
    let rest = text.get(end..)?;
    let line = rest.split(['\n', '\r']).next().unwrap_or("");
    let comment = line.trim_start_matches([' ', '\t']).strip_prefix('#')?;
    let json: serde_json::Value = serde_json::from_str(comment.trim()).ok()?;
    json.get("$imagepolicy")?.as_str().map(str::to_string)
}

/// The source text of `value` in the scalar's original style; `None` for block scalars.
fn encode(value: &str, style: ScalarStyle) -> Option<String> {
    match style {
        ScalarStyle::Plain if plain_safe(value) => Some(value.to_string()),
        // A value plain style cannot hold is written double-quoted rather than corrupted.
        ScalarStyle::Plain | ScalarStyle::DoubleQuoted => {
            let mut out = String::with_capacity(value.len() + 2);
            out.push('"');
            for c in value.chars() {
                match c {
                    '"' => out.push_str("\\\""),
                    '\\' => out.push_str("\\\\"),
                    '\n' => out.push_str("\\n"),
                    '\t' => out.push_str("\\t"),
                    c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
                    c => out.push(c),
                }
            }
            out.push('"');
            Some(out)
        }
        ScalarStyle::SingleQuoted if !value.contains(['\n', '\r']) => {
            Some(format!("'{}'", value.replace('\'', "''")))
        }
        _ => None,
    }
}

/// Whether `value` reads back as the same string when written plain (image references do).
fn plain_safe(value: &str) -> bool {
    let first_ok = value.chars().next().is_some_and(|c| {
        c.is_ascii_alphanumeric() || matches!(c, '.' | '/' | '_' | '$' | '+' | '=' | '~')
    });
    first_ok
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "./_-:@+=~$".contains(c))
        && !value.ends_with(':')
        && !matches!(
            value,
            "true" | "false" | "null" | "True" | "False" | "Null" | "TRUE" | "FALSE" | "NULL"
        )
}
