//! Store formats: reading a document into branches + metadata, writing the plaintext back.

use crate::emit::{write_json, write_yaml_doc};
use crate::tree::Node;
use crate::{Error, Format, Limits, Result};

/// A parsed encrypted document.
pub(crate) struct Doc {
    pub branches: Vec<Node>,
    pub metadata: Node,
}

/// Parses `data`; `None` when it has no `sops` metadata.
pub(crate) fn parse(
    file: &str,
    format: Format,
    data: &[u8],
    limits: &Limits,
) -> Result<Option<Doc>> {
    let perr = |msg: String| Error::Parse {
        file: file.to_string(),
        format,
        msg,
    };
    let text = std::str::from_utf8(data).map_err(|_| perr("not UTF-8".into()));
    match format {
        Format::Yaml => {
            let opts = yaml_options(limits);
            let docs: Vec<Option<Node>> = serde_saphyr::from_multiple_with_options(text?, opts)
                .map_err(|e| perr(first_line(&e.to_string())))?;
            split_metadata(docs.into_iter().flatten().collect())
        }
        Format::Json | Format::Binary => {
            let doc: Node = match serde_json::from_slice(data) {
                Ok(d) => d,
                Err(_) if format == Format::Binary => return Ok(None),
                Err(e) => return Err(perr(format!("line {} column {}", e.line(), e.column()))),
            };
            let doc = split_metadata(vec![doc])?;
            if format == Format::Binary
                && let Some(d) = &doc
                && d.branches.first().and_then(|b| b.get("data")).is_none()
            {
                return Err(perr("binary document without 'data'".into()));
            }
            Ok(doc)
        }
        Format::Dotenv => Ok(parse_dotenv(text?).map_err(perr)?),
        Format::Ini => Ok(parse_ini(text?).map_err(perr)?),
    }
}

/// YAML as go-yaml v3 reads it for sops: only `true`/`false` are booleans, `0755` is octal.
pub(crate) fn yaml_options(limits: &Limits) -> serde_saphyr::Options {
    let mut opts = serde_saphyr::Options::default();
    opts.legacy_octal_numbers = true;
    opts.strict_booleans = true;
    opts.emit_comments = false;
    let mut budget = opts.budget.unwrap_or_default();
    budget.max_depth = limits.max_depth;
    opts.budget = Some(budget);
    opts
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("invalid").to_string()
}

/// Takes the top-level `sops` key out of every document; the first one is the metadata.
fn split_metadata(docs: Vec<Node>) -> Result<Option<Doc>> {
    let mut metadata = None;
    let mut branches = Vec::with_capacity(docs.len());
    for d in docs {
        let Node::Map(mut items) = d else {
            branches.push(d);
            continue;
        };
        if let Some(i) = items.iter().position(|(k, _)| k == "sops") {
            let (_, m) = items.remove(i);
            if metadata.is_none() && matches!(m, Node::Map(_)) {
                metadata = Some(m);
            }
        }
        branches.push(Node::Map(items));
    }
    Ok(metadata.map(|metadata| Doc { branches, metadata }))
}

fn parse_dotenv(text: &str) -> std::result::Result<Option<Doc>, String> {
    let mut items = Vec::new();
    let mut meta = Vec::new();
    for (n, line) in text.split('\n').enumerate() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (k, v) = line
            .split_once('=')
            .ok_or_else(|| format!("line {}: not KEY=VALUE", n + 1))?;
        let v = v.replace("\\n", "\n");
        match k.strip_prefix("sops_") {
            Some(mk) => meta.push((mk.to_string(), v)),
            None => items.push((k.to_string(), Node::Str(v))),
        }
    }
    if meta.is_empty() {
        return Ok(None);
    }
    Ok(Some(Doc {
        branches: vec![Node::Map(items)],
        metadata: unflatten(meta),
    }))
}

fn parse_ini(text: &str) -> std::result::Result<Option<Doc>, String> {
    let mut sections: Vec<(String, Vec<(String, Node)>)> = Vec::new();
    let mut current = "DEFAULT".to_string();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with(';') || line.starts_with('#') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            current = name.trim().to_string();
            if !sections.iter().any(|(s, _)| *s == current) {
                sections.push((current.clone(), Vec::new()));
            }
            continue;
        }
        let (k, v) = line
            .split_once('=')
            .ok_or_else(|| format!("line {}: not key = value", n + 1))?;
        if !sections.iter().any(|(s, _)| *s == current) {
            sections.push((current.clone(), Vec::new()));
        }
        if let Some((_, items)) = sections.iter_mut().find(|(s, _)| *s == current) {
            items.push((
                k.trim().to_string(),
                Node::Str(v.trim().replace("\\n", "\n")),
            ));
        }
    }
    let Some(pos) = sections.iter().position(|(s, _)| s == "sops") else {
        return Ok(None);
    };
    let (_, meta) = sections.remove(pos);
    let meta = meta
        .into_iter()
        .filter_map(|(k, v)| v.as_text().map(|v| (k, v)))
        .collect();
    let items = sections
        .into_iter()
        .filter(|(s, items)| !(s == "DEFAULT" && items.is_empty()))
        .map(|(s, items)| (s, Node::Map(items)))
        .collect();
    Ok(Some(Doc {
        branches: vec![Node::Map(items)],
        metadata: unflatten(meta),
    }))
}

/// sops' `Unflatten`: `age__list_0__map_enc` becomes `age[0].enc`.
fn unflatten(flat: Vec<(String, String)>) -> Node {
    let mut root = Node::Map(Vec::new());
    for (key, value) in flat {
        let mut steps: Vec<Step> = Vec::new();
        let mut rest = key.as_str();
        let (head, tail) = next_sep(rest);
        steps.push(Step::Key(head.to_string()));
        rest = tail;
        while !rest.is_empty() {
            if let Some(r) = rest.strip_prefix("__map_") {
                let (k, t) = next_sep(r);
                steps.push(Step::Key(k.to_string()));
                rest = t;
            } else if let Some(r) = rest.strip_prefix("__list_") {
                let (i, t) = next_sep(r);
                steps.push(Step::Index(i.parse().unwrap_or(0)));
                rest = t;
            } else {
                break;
            }
        }
        insert(&mut root, &steps, Node::Str(value));
    }
    root
}

enum Step {
    Key(String),
    Index(usize),
}

fn next_sep(s: &str) -> (&str, &str) {
    let a = s.find("__map_");
    let b = s.find("__list_");
    let cut = match (a, b) {
        (Some(a), Some(b)) => a.min(b),
        (Some(a), None) => a,
        (None, Some(b)) => b,
        (None, None) => s.len(),
    };
    s.split_at(cut)
}

fn insert(node: &mut Node, steps: &[Step], value: Node) {
    let Some((first, rest)) = steps.split_first() else {
        *node = value;
        return;
    };
    match first {
        Step::Key(k) => {
            if !matches!(node, Node::Map(_)) {
                *node = Node::Map(Vec::new());
            }
            if let Node::Map(items) = node {
                let i = match items.iter().position(|(x, _)| x == k) {
                    Some(i) => i,
                    None => {
                        items.push((k.clone(), Node::Null));
                        items.len() - 1
                    }
                };
                insert(&mut items[i].1, rest, value);
            }
        }
        Step::Index(i) => {
            // Bounded: a flattened index past 1,000 is not a sops file.
            let i = (*i).min(1000);
            if !matches!(node, Node::Seq(_)) {
                *node = Node::Seq(Vec::new());
            }
            if let Node::Seq(items) = node {
                while items.len() <= i {
                    items.push(Node::Null);
                }
                insert(&mut items[i], rest, value);
            }
        }
    }
}

/// Writes the decrypted branches back in `format`.
pub(crate) fn emit(file: &str, format: Format, branches: &[Node]) -> Result<Vec<u8>> {
    let mut out = String::new();
    match format {
        Format::Yaml => {
            for (i, b) in branches.iter().enumerate() {
                if i > 0 {
                    out.push_str("---\n");
                }
                write_yaml_doc(&mut out, b);
            }
        }
        Format::Json => {
            if let Some(b) = branches.first() {
                write_json(&mut out, b);
                out.push('\n');
            }
        }
        Format::Binary => {
            return match branches.first().and_then(|b| b.get("data")) {
                Some(Node::Str(s)) => Ok(s.clone().into_bytes()),
                Some(Node::Bytes(b)) => Ok(b.clone()),
                _ => Err(Error::Parse {
                    file: file.to_string(),
                    format,
                    msg: "binary document's data is not a string".into(),
                }),
            };
        }
        Format::Dotenv => {
            if let Some(Node::Map(items)) = branches.first() {
                for (k, v) in items {
                    let v = v.as_text().unwrap_or_default().replace('\n', "\\n");
                    out.push_str(&format!("{k}={v}\n"));
                }
            }
        }
        Format::Ini => {
            if let Some(Node::Map(sections)) = branches.first() {
                for (s, items) in sections {
                    out.push_str(&format!("[{s}]\n"));
                    if let Node::Map(items) = items {
                        for (k, v) in items {
                            let v = v.as_text().unwrap_or_default().replace('\n', "\\n");
                            out.push_str(&format!("{k} = {v}\n"));
                        }
                    }
                    out.push('\n');
                }
            }
        }
    }
    Ok(out.into_bytes())
}
