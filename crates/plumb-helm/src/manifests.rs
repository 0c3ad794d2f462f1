//! Rendered files to manifests: Helm's document split, the head of each document
//! (apiVersion, kind, name, annotations), hook classification and the install-order sort.

use std::collections::BTreeMap;

use crate::encode::Plain;
use crate::error::HelmError;
use crate::render::{Hook, Manifest};
use crate::template::parse::is_partial;

/// Helm's install order of kinds.
pub const INSTALL_ORDER: &[&str] = &[
    "PriorityClass",
    "Namespace",
    "NetworkPolicy",
    "ResourceQuota",
    "LimitRange",
    "PodSecurityPolicy",
    "PodDisruptionBudget",
    "ServiceAccount",
    "Secret",
    "SecretList",
    "ConfigMap",
    "StorageClass",
    "PersistentVolume",
    "PersistentVolumeClaim",
    "CustomResourceDefinition",
    "ClusterRole",
    "ClusterRoleList",
    "ClusterRoleBinding",
    "ClusterRoleBindingList",
    "Role",
    "RoleList",
    "RoleBinding",
    "RoleBindingList",
    "Service",
    "DaemonSet",
    "Pod",
    "ReplicationController",
    "ReplicaSet",
    "Deployment",
    "HorizontalPodAutoscaler",
    "StatefulSet",
    "Job",
    "CronJob",
    "IngressClass",
    "Ingress",
    "APIService",
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
];

/// Splits rendered files into documents as Helm's `SplitManifests`
/// (separator regex `(?:^|\s*\n)---\s*`), matched by hand: compiling that
/// regex cost more than splitting every document of a large chart.
pub fn split_manifests(s: &str) -> Vec<String> {
    let t = s.trim();
    let skip_ws = |mut i: usize| {
        while let Some(c) = t[i..].chars().next().filter(|c| c.is_whitespace()) {
            i += c.len_utf8();
        }
        i
    };
    let mut pieces: Vec<&str> = Vec::new();
    // Start of the current piece, and where the search resumes.
    let (mut last, mut i) = (0, 0);
    if t.starts_with("---") {
        pieces.push("");
        last = skip_ws(3);
        i = last;
    }
    // A separator starts a whitespace run that ends in '\n' right before "---"
    // (searches resume after a separator's trailing whitespace, so runs never
    // straddle a previous match).
    while let Some(off) = t[i..].find(char::is_whitespace) {
        let run = i + off;
        let end = skip_ws(run);
        if t[..end].ends_with('\n') && t[end..].starts_with("---") {
            pieces.push(&t[last..run]);
            last = skip_ws(end + 3);
            i = last;
        } else if end >= t.len() {
            break;
        } else {
            i = end;
        }
    }
    pieces.push(&t[last..]);
    pieces
        .into_iter()
        .filter(|d| !d.is_empty())
        .map(|d| d.trim().to_string())
        .collect()
}

/// What Helm's `SimpleHead` reads: apiVersion, kind, name, annotations.
type Head = (String, String, String, BTreeMap<String, String>);

/// Reads a document's head as Helm's `SimpleHead` does. The document is parsed
/// whole (any YAML error is Helm's error too) into plain values: reading it
/// straight into a struct made serde-saphyr buffer every skipped subtree,
/// three times the cost.
fn head(doc: &str, path: &str) -> Result<Head, HelmError> {
    match head_from_events(doc) {
        Some(h) => Ok(h),
        None => head_from_values(doc, path),
    }
}

/// [`head`] through a full parse into values.
fn head_from_values(doc: &str, path: &str) -> Result<Head, HelmError> {
    let yaml_err = |msg: String| HelmError::Yaml {
        path: path.to_string(),
        msg,
    };
    let mut o = serde_saphyr::Options::default();
    o.duplicate_keys = serde_saphyr::DuplicateKeyPolicy::LastWins;
    o.emit_comments = false;
    let v = crate::encode::yaml_to_plain_with(doc, o).map_err(yaml_err)?;
    // JSON decoding into the struct's string fields: null leaves them empty,
    // any other non-string is an error, as in Go.
    let text = |v: Option<&Plain>, field: &str| -> Result<String, HelmError> {
        match v {
            None | Some(Plain::Nil) => Ok(String::new()),
            Some(Plain::Str(s)) => Ok(s.clone()),
            Some(other) => Err(yaml_err(format!(
                "error unmarshaling JSON: while decoding JSON: json: cannot unmarshal {} into Go struct field {field} of type string",
                json_kind(other)
            ))),
        }
    };
    let Plain::Map(top) = &v else {
        return match v {
            Plain::Nil => Ok(Default::default()),
            other => Err(yaml_err(format!(
                "error unmarshaling JSON: while decoding JSON: json: cannot unmarshal {} into Go value of type releaseutil.SimpleHead",
                json_kind(&other)
            ))),
        };
    };
    let api_version = text(top.get("apiVersion"), "SimpleHead.apiVersion")?;
    let kind = text(top.get("kind"), "SimpleHead.kind")?;
    let (mut name, mut ann) = (String::new(), BTreeMap::new());
    match top.get("metadata") {
        None | Some(Plain::Nil) => {}
        Some(Plain::Map(md)) => {
            name = text(md.get("name"), "SimpleHead.metadata.name")?;
            match md.get("annotations") {
                None | Some(Plain::Nil) => {}
                Some(Plain::Map(a)) => {
                    for (k, v) in a {
                        ann.insert(k.clone(), text(Some(v), "SimpleHead.metadata.annotations")?);
                    }
                }
                Some(other) => {
                    return Err(yaml_err(format!(
                        "error unmarshaling JSON: while decoding JSON: json: cannot unmarshal {} into Go struct field SimpleHead.metadata.annotations of type map[string]string",
                        json_kind(other)
                    )));
                }
            }
        }
        Some(other) => {
            return Err(yaml_err(format!(
                "error unmarshaling JSON: while decoding JSON: json: cannot unmarshal {} into Go struct field SimpleHead.metadata of type struct",
                json_kind(other)
            )));
        }
    }
    Ok((api_version, kind, name, ann))
}

/// Where a mapping sits, for the fields [`head`] reads.
#[derive(Clone, Copy, PartialEq)]
enum Role {
    Top,
    Metadata,
    Annotations,
    Other,
}

enum Frame {
    /// A mapping and, in value position, the key whose value comes next.
    Map(Role, Option<String>),
    Seq,
}

/// The common case of [`head`] straight from the parser's events, without
/// building any value: about half the cost. `None` hands the document to the
/// full reader: parse errors (for Helm's message), anything but a mapping at
/// the root, and wanted fields that are not clearly strings (plain scalars
/// YAML could type otherwise, tags, aliases, collections).
fn head_from_events(doc: &str) -> Option<Head> {
    use granit_parser::{Event, Parser, ScalarStyle};
    let mut head: Head = Default::default();
    let mut stack: Vec<Frame> = Vec::new();
    let mut docs = 0;
    let mut root_seen = false;
    for ev in Parser::new_from_str(doc) {
        let (ev, _) = ev.ok()?;
        // The wanted field this node is the value of, if any.
        let want = match stack.last() {
            Some(Frame::Map(role, Some(k))) => match (role, k.as_str()) {
                (Role::Top, "apiVersion" | "kind" | "metadata")
                | (Role::Metadata, "name" | "annotations")
                | (Role::Annotations, _) => Some((*role, k.clone())),
                _ => None,
            },
            _ => None,
        };
        let is_key = matches!(stack.last(), Some(Frame::Map(_, None)));
        match ev {
            Event::StreamStart | Event::StreamEnd | Event::DocumentEnd => {}
            Event::DocumentStart(..) => {
                docs += 1;
                if docs > 1 {
                    return None;
                }
            }
            Event::Scalar(text, style, _, tag) => {
                if stack.is_empty() || tag.is_some() {
                    // A scalar document: the full reader decides.
                    return None;
                }
                if is_key {
                    if text == "<<" {
                        return None;
                    }
                    if let Some(Frame::Map(_, k)) = stack.last_mut() {
                        *k = Some(text.into_owned());
                    }
                    continue;
                }
                if let Some((role, key)) = want {
                    let clear = style != ScalarStyle::Plain
                        || (text.starts_with(|c: char| c.is_ascii_alphabetic() || c == '/')
                            && !is_special_word(&text));
                    if !clear || (role, key.as_str()) == (Role::Top, "metadata") {
                        return None;
                    }
                    match (role, key.as_str()) {
                        (Role::Top, "apiVersion") => head.0 = text.into_owned(),
                        (Role::Top, "kind") => head.1 = text.into_owned(),
                        (Role::Metadata, "name") => head.2 = text.into_owned(),
                        (Role::Annotations, _) => {
                            head.3.insert(key, text.into_owned());
                        }
                        _ => return None,
                    }
                }
                if let Some(Frame::Map(_, k)) = stack.last_mut() {
                    *k = None;
                }
            }
            Event::MappingStart(_, _, tag) => {
                if is_key {
                    return None;
                }
                let role = match (stack.is_empty(), want) {
                    (true, _) => {
                        if root_seen {
                            return None;
                        }
                        root_seen = true;
                        Role::Top
                    }
                    (false, None) => Role::Other,
                    (false, Some((Role::Top, k))) if k == "metadata" => Role::Metadata,
                    (false, Some((Role::Metadata, k))) if k == "annotations" => Role::Annotations,
                    (false, Some(_)) => return None,
                };
                if tag.is_some() {
                    return None;
                }
                // A repeated key replaces the whole earlier value.
                if role == Role::Metadata {
                    head.2.clear();
                }
                if matches!(role, Role::Metadata | Role::Annotations) {
                    head.3.clear();
                }
                stack.push(Frame::Map(role, None));
            }
            Event::SequenceStart(_, _, tag) => {
                if is_key || want.is_some() || stack.is_empty() || tag.is_some() {
                    return None;
                }
                stack.push(Frame::Seq);
            }
            Event::MappingEnd | Event::SequenceEnd => {
                stack.pop();
                if let Some(Frame::Map(_, k)) = stack.last_mut() {
                    *k = None;
                }
            }
            Event::Alias(_) => {
                if is_key || want.is_some() || stack.is_empty() {
                    return None;
                }
                if let Some(Frame::Map(_, k)) = stack.last_mut() {
                    *k = None;
                }
            }
            #[allow(unreachable_patterns)]
            _ => {}
        }
    }
    (docs <= 1).then_some(head)
}

/// Plain words YAML may read as something other than a string.
fn is_special_word(t: &str) -> bool {
    const WORDS: [&str; 12] = [
        "null", "true", "false", "yes", "no", "on", "off", "y", "n", "nan", "inf", "infinity",
    ];
    t.len() <= 8 && WORDS.iter().any(|w| w.eq_ignore_ascii_case(t))
}

/// The JSON type name Go's decoder reports.
fn json_kind(v: &Plain) -> &'static str {
    match v {
        Plain::Nil => "null",
        Plain::Bool(_) => "bool",
        Plain::Float(_) => "number",
        Plain::Str(_) => "string",
        Plain::List(_) => "array",
        Plain::Map(_) => "object",
    }
}

fn kind_rank(k: &str) -> Option<usize> {
    INSTALL_ORDER.iter().position(|x| *x == k)
}

fn kind_less(a: &str, b: &str) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    match (kind_rank(a), kind_rank(b)) {
        (Some(x), Some(y)) => x.cmp(&y),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => a.cmp(b),
    }
}

/// A classified document of a rendered file.
pub(crate) enum Doc {
    Manifest(Manifest),
    Hook(Hook),
}

/// Splits one rendered file into documents and reads each one's head, as
/// Helm's `SortManifests` does per file.
pub(crate) fn classify_file(path: &str, content: &str) -> Result<Vec<Doc>, HelmError> {
    let mut docs = Vec::new();
    if is_partial(path) || content.trim().is_empty() {
        return Ok(docs);
    }
    for doc in split_manifests(content) {
        let (api_version, kind, name, ann) = head(&doc, path)?;
        let m = Manifest {
            path: path.to_string(),
            content: doc,
            api_version,
            kind,
            name,
        };
        docs.push(match ann.get("helm.sh/hook") {
            None => Doc::Manifest(m),
            Some(h) => {
                let events: Vec<String> = h
                    .split(',')
                    .map(|e| e.trim().to_string())
                    .filter(|e| !e.is_empty())
                    .collect();
                let weight = ann
                    .get("helm.sh/hook-weight")
                    .and_then(|w| w.trim().parse().ok())
                    .unwrap_or(0);
                let delete_policies = ann
                    .get("helm.sh/hook-delete-policy")
                    .map(|p| {
                        p.split(',')
                            .map(|e| e.trim().to_string())
                            .filter(|e| !e.is_empty())
                            .collect()
                    })
                    .unwrap_or_default();
                Doc::Hook(Hook {
                    manifest: m,
                    events,
                    weight,
                    delete_policies,
                })
            }
        });
    }
    Ok(docs)
}

/// Joins classified files (in path order; the first error wins) and sorts
/// manifests and hooks into install order.
pub(crate) fn assemble(
    files: impl Iterator<Item = Result<Vec<Doc>, HelmError>>,
) -> Result<(Vec<Manifest>, Vec<Hook>), HelmError> {
    let mut manifests = Vec::new();
    let mut hooks = Vec::new();
    for file in files {
        for doc in file? {
            match doc {
                Doc::Manifest(m) => manifests.push(m),
                Doc::Hook(h) => hooks.push(h),
            }
        }
    }
    manifests.sort_by(|a, b| kind_less(&a.kind, &b.kind));
    hooks.sort_by(|a, b| kind_less(&a.manifest.kind, &b.manifest.kind));
    Ok((manifests, hooks))
}

/// Splits, classifies and sorts rendered files into manifests and hooks.
pub fn sort_manifests(
    files: &BTreeMap<String, String>,
) -> Result<(Vec<Manifest>, Vec<Hook>), HelmError> {
    assemble(
        files
            .iter()
            .map(|(path, content)| classify_file(path, content)),
    )
}

#[cfg(test)]
mod tests {
    use super::split_manifests;

    /// The separator as Helm writes it, for comparing the hand-written split.
    fn split_by_regex(re: &regex::Regex, s: &str) -> Vec<String> {
        re.split(s.trim())
            .filter(|d| !d.is_empty())
            .map(|d| d.trim().to_string())
            .collect()
    }

    #[test]
    fn event_heads_match_full_parses() {
        let docs = [
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n  annotations:\n    helm.sh/hook: pre-install\n    helm.sh/hook-weight: \"-5\"\ndata:\n  k: [1, 2]\n",
            "kind: Secret\napiVersion: v1\nstringData: {a: b}\nmetadata: {name: 'q', labels: {x: y}}\n",
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: d\nspec:\n  template:\n    metadata:\n      name: inner\n      annotations: {x: y}\n",
            "metadata:\n  name: a\n  annotations:\n    w: x\nmetadata:\n  labels: {}\n",
            "kind: A\nkind: B\n",
            "# only a comment\n",
            "apiVersion: v1\nkind: List\nitems:\n  - &x {kind: Pod}\n  - *x\n",
            "metadata:\n  name: >-\n    folded\n    name\n",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n  annotations:\n    helm.sh/hook-weight: 5\n",
            "kind: 5\n",
            "kind: true\n",
            "kind: null\n",
            "metadata: x\n",
            "metadata:\n  annotations: [a]\n",
            "- a\n- b\n",
            "just text\n",
            "kind: [unclosed\n",
            "kind: Pod\nx: *undefined\n",
            "kind: !!str 5\n",
            "? complex\n: value\nkind: Pod\n",
        ];
        for d in docs {
            let full = super::head_from_values(d, "t.yaml");
            if let Some(fast) = super::head_from_events(d) {
                let full = full.unwrap_or_else(|e| panic!("fast path accepted {d:?}: {e}"));
                assert_eq!(fast, full, "{d:?}");
            }
        }
        // The usual shapes take the fast path.
        assert!(super::head_from_events(docs[0]).is_some());
        assert!(super::head_from_events(docs[2]).is_some());
        assert_eq!(super::head_from_events(docs[2]).unwrap().2, "d");
        assert_eq!(super::head_from_events(docs[3]).unwrap().3.len(), 0);
        // Values YAML could type otherwise go to the full reader.
        assert!(super::head_from_events(docs[8]).is_none());
    }

    #[test]
    fn split_matches_the_separator_regex() {
        let re = regex::Regex::new(r"(?:^|\s*\n)---\s*").unwrap();
        let fixed = [
            "",
            "---",
            "a",
            "---\na: 1\n---\nb: 2\n",
            "a: 1\n---\n---\nb: 2",
            "a: 1\n  ---  \nb",
            "a: 1\n---b\n--- c\n \n\t---\n",
            "a\u{a0}\n---\u{85}x\n\u{a0}---y",
            "x: |\n  ---\n  y\n---",
            "a\r\n---\r\nb",
        ];
        for s in fixed {
            assert_eq!(split_manifests(s), split_by_regex(&re, s), "{s:?}");
        }
        // Every short string over an alphabet of separator pieces.
        let alphabet = ['a', '-', '\n', ' ', '\t', '\u{a0}', '#'];
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..20_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let len = (seed % 14) as usize;
            let s: String = (0..len)
                .map(|k| alphabet[((seed >> (4 * k)) % alphabet.len() as u64) as usize])
                .collect();
            assert_eq!(split_manifests(&s), split_by_regex(&re, &s), "{s:?}");
        }
    }
}
