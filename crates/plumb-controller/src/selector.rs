//! kustomize-style object selectors (`group`, `version`, `kind`, `namespace`, `name` as
//! anchored regular expressions, `labelSelector`, `annotationSelector`), shared by the
//! HelmRelease drift-ignore rules and the Kustomization `spec.ignore` rules.

use plumb_api::kustomize::Selector;
use serde_json::Value;

/// kustomize's selector semantics: every set field matches; group, version, kind,
/// namespace and name are anchored regular expressions; label and annotation selectors
/// are Kubernetes selector expressions.
pub(crate) fn selects(s: &Selector, o: &Value) -> bool {
    let text = |p: &str| o.pointer(p).and_then(Value::as_str).unwrap_or("");
    let (group, version) = plumb_ssa::split_api_version(text("/apiVersion"));
    let fields = [
        (&s.group, group),
        (&s.version, version),
        (&s.kind, text("/kind")),
        (&s.namespace, text("/metadata/namespace")),
        (&s.name, text("/metadata/name")),
    ];
    let regex_ok = fields.iter().all(|(want, have)| {
        want.as_deref().is_none_or(|w| {
            regex::Regex::new(&format!("^(?:{w})$")).is_ok_and(|re| re.is_match(have))
        })
    });
    regex_ok
        && s.label_selector
            .as_deref()
            .is_none_or(|sel| label_selects(sel, o.pointer("/metadata/labels")))
        && s.annotation_selector
            .as_deref()
            .is_none_or(|sel| label_selects(sel, o.pointer("/metadata/annotations")))
}

/// A Kubernetes label selector expression (`a=b`, `a==b`, `a!=b`, `a`, `!a`,
/// `a in (x,y)`, `a notin (x,y)`, comma-separated) against a label map.
fn label_selects(expr: &str, labels: Option<&Value>) -> bool {
    let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
    split_requirements(expr).iter().all(|req| {
        let req = req.trim();
        if req.is_empty() {
            return true;
        }
        if let Some((k, set)) = req.split_once(" notin ") {
            return get(k.trim()).is_none_or(|v| !set_of(set).contains(&v));
        }
        if let Some((k, set)) = req.split_once(" in ") {
            return get(k.trim()).is_some_and(|v| set_of(set).contains(&v));
        }
        if let Some((k, v)) = req.split_once("!=") {
            return get(k.trim()) != Some(v.trim());
        }
        if let Some((k, v)) = req.split_once("==").or_else(|| req.split_once('=')) {
            return get(k.trim()) == Some(v.trim());
        }
        if let Some(k) = req.strip_prefix('!') {
            return get(k.trim()).is_none();
        }
        get(req).is_some()
    })
}

/// Splits on commas outside parentheses.
fn split_requirements(expr: &str) -> Vec<&str> {
    let (mut out, mut depth, mut start) = (Vec::new(), 0usize, 0usize);
    for (i, c) in expr.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                out.push(&expr[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&expr[start..]);
    out
}

fn set_of(s: &str) -> Vec<&str> {
    s.trim()
        .trim_start_matches('(')
        .trim_end_matches(')')
        .split(',')
        .map(str::trim)
        .collect()
}
