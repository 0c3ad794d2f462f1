//! `spec.pathPattern` (Flux's directory discovery): `@<alias>/<segments>` walks the source's
//! directories; a segment `{name}` matches any one directory and captures its name, `*`
//! matches any one directory without capturing, any other segment is a literal directory.
//! Every match turns the `artifacts` templates into outputs, their `name`, `copy[].from` and
//! `copy[].to` with each `{name}` replaced by the captured value: one ExternalArtifact per
//! app directory of a monorepo without listing them.
//!
//! Bad input is a stalled failure naming the cause: an unknown alias, a segment mixing a
//! capture with other text, a placeholder the pattern does not capture, a generated name
//! that is not a valid object name, two matches giving the same name, no directory matching
//! (nothing is published or removed then, so consumers keep their artifacts), more than
//! [`MAX_OUTPUTS`] outputs.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use plumb_api::artifact_generator::OutputArtifact;
use plumb_api::consts::reason;

use crate::outcome::{Class, Failure};

/// The most outputs a pattern may produce (a hostile tree cannot make a generator write
/// millions of objects).
pub(super) const MAX_OUTPUTS: usize = 1000;

/// Captured names of one match, by placeholder.
type Captures = BTreeMap<String, String>;

fn invalid(msg: String) -> Failure {
    Failure::new(Class::Stalled, reason::VALIDATION_FAILED, msg)
}

/// The outputs of `templates` for every directory `pattern` matches in the extracted
/// sources `dirs` (by alias); `templates` as they are without a pattern.
pub(super) fn expand(
    pattern: Option<&str>,
    templates: &[OutputArtifact],
    dirs: &BTreeMap<String, PathBuf>,
) -> Result<Vec<OutputArtifact>, Failure> {
    let Some(pattern) = pattern else {
        return Ok(templates.to_vec());
    };
    let matches = walk(pattern, dirs)?;
    if matches.is_empty() {
        return Err(invalid(format!(
            "spec.pathPattern '{pattern}' matches no directory"
        )));
    }
    let mut out = Vec::new();
    let mut names = BTreeSet::new();
    for caps in &matches {
        for t in templates {
            let a = instantiate(t, caps)?;
            if !valid_name(&a.name) {
                return Err(invalid(format!(
                    "artifact name '{}' made from '{}' by spec.pathPattern is not a valid object name",
                    a.name, t.name
                )));
            }
            if !names.insert(a.name.clone()) {
                return Err(invalid(format!(
                    "spec.pathPattern makes artifact '{}' twice",
                    a.name
                )));
            }
            out.push(a);
            if out.len() > MAX_OUTPUTS {
                return Err(invalid(format!(
                    "spec.pathPattern makes more than {MAX_OUTPUTS} artifacts"
                )));
            }
        }
    }
    Ok(out)
}

/// One segment of the pattern.
#[derive(Debug, PartialEq)]
enum Segment {
    Literal(String),
    Any,
    Capture(String),
}

fn parse(pattern: &str) -> Result<(String, Vec<Segment>), Failure> {
    let bad = |why: &str| invalid(format!("spec.pathPattern '{pattern}': {why}"));
    let (alias, rest) = pattern
        .strip_prefix('@')
        .and_then(|p| p.split_once('/'))
        .ok_or_else(|| bad("must be @<alias>/<path>"))?;
    let mut segs = Vec::new();
    for s in rest.split('/').filter(|s| !s.is_empty() && *s != ".") {
        let seg = if s == "*" {
            Segment::Any
        } else if let Some(name) = s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            let ok = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            if !ok {
                return Err(bad(&format!("invalid placeholder '{s}'")));
            }
            Segment::Capture(name.to_string())
        } else if s == ".." || s.contains(['{', '}', '*', '?', '[']) {
            return Err(bad(&format!(
                "segment '{s}': a segment is a directory name, '*' or one whole '{{name}}'"
            )));
        } else {
            Segment::Literal(s.to_string())
        };
        segs.push(seg);
    }
    if !segs.iter().any(|s| matches!(s, Segment::Capture(_))) {
        return Err(bad("no '{name}' placeholder"));
    }
    Ok((alias.to_string(), segs))
}

/// Every match of `pattern`, in directory order, with its captures.
fn walk(pattern: &str, dirs: &BTreeMap<String, PathBuf>) -> Result<Vec<Captures>, Failure> {
    let (alias, segs) = parse(pattern)?;
    let root = dirs.get(&alias).ok_or_else(|| {
        invalid(format!(
            "spec.pathPattern refers to unknown source alias '{alias}'"
        ))
    })?;
    let mut states: Vec<(PathBuf, Captures)> = vec![(root.clone(), Captures::new())];
    for seg in &segs {
        let mut next = Vec::new();
        for (dir, caps) in states {
            match seg {
                Segment::Literal(name) => {
                    let d = dir.join(name);
                    if is_real_dir(&d) {
                        next.push((d, caps));
                    }
                }
                Segment::Any | Segment::Capture(_) => {
                    for name in subdirs(&dir) {
                        let mut caps = caps.clone();
                        if let Segment::Capture(k) = seg {
                            caps.insert(k.clone(), name.clone());
                        }
                        next.push((dir.join(&name), caps));
                        if next.len() > MAX_OUTPUTS {
                            return Err(invalid(format!(
                                "spec.pathPattern '{pattern}' matches more than {MAX_OUTPUTS} directories"
                            )));
                        }
                    }
                }
            }
        }
        states = next;
    }
    Ok(states.into_iter().map(|(_, c)| c).collect())
}

/// A directory itself, not a link to one (a link could lead out of the source).
fn is_real_dir(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok_and(|m| m.is_dir())
}

/// The names of `dir`'s subdirectories (not links, not hidden), sorted.
fn subdirs(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| !n.starts_with('.'))
        .collect();
    names.sort();
    names
}

/// `t` with the placeholders of `caps` filled in.
fn instantiate(t: &OutputArtifact, caps: &Captures) -> Result<OutputArtifact, Failure> {
    let mut a = t.clone();
    a.name = fill(&t.name, caps, &t.name)?;
    for c in &mut a.copy {
        c.from = fill(&c.from, caps, &t.name)?;
        c.to = fill(&c.to, caps, &t.name)?;
    }
    Ok(a)
}

/// `text` with every `{name}` of `caps` replaced; a `{...}` left that names no capture is
/// an error (a glob's `{a,b}` alternatives hold a comma and are left alone).
fn fill(text: &str, caps: &Captures, artifact: &str) -> Result<String, Failure> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else {
            out.push_str(&rest[open..]);
            return Ok(out);
        };
        let key = &after[..close];
        match caps.get(key) {
            Some(v) => out.push_str(v),
            None if key.contains(',') => out.push_str(&rest[open..open + close + 2]),
            None => {
                return Err(invalid(format!(
                    "artifact '{artifact}' uses placeholder '{{{key}}}' that spec.pathPattern does not capture"
                )));
            }
        }
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// A DNS-1123 subdomain, as object names must be.
fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 253
        && n.split('.').all(|l| {
            !l.is_empty()
                && l.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

#[cfg(test)]
#[path = "pattern_tests.rs"]
mod tests;
