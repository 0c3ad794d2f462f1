//! Replacements (copy a field of one object into fields of others) and legacy vars
//! (`$(NAME)` substitution).

use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::fieldspec::FieldSpec;
use crate::kustomization::{Selector, VarEntry};
use crate::resource::{Matcher, Res, value_string};

/// One step of a dotted field path (`spec.containers.[name=app].image`, `ports[0]`).
#[derive(Debug, Clone)]
enum Step {
    Field(String),
    Index(usize),
    Match(String, String),
    Any,
}

fn parse_dotted(path: &str) -> Vec<Step> {
    let mut steps = Vec::new();
    let mut cur = String::new();
    let mut depth = 0;
    let mut raw = Vec::new();
    let mut chars = path.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            // `\.` is a dot inside a field name (`metadata.labels.a\.b/c`).
            '\\' if depth == 0 && chars.peek() == Some(&'.') => {
                chars.next();
                cur.push('.');
            }
            '[' => {
                if depth == 0 && !cur.is_empty() {
                    raw.push(std::mem::take(&mut cur));
                }
                depth += 1;
                cur.push(c);
            }
            ']' => {
                depth -= 1;
                cur.push(c);
                if depth == 0 {
                    raw.push(std::mem::take(&mut cur));
                }
            }
            '.' if depth == 0 => {
                if !cur.is_empty() {
                    raw.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        raw.push(cur);
    }
    for r in raw {
        if let Some(inner) = r.strip_prefix('[').and_then(|x| x.strip_suffix(']')) {
            if let Some((k, v)) = inner.split_once('=') {
                steps.push(Step::Match(k.to_string(), v.to_string()));
            } else if let Ok(i) = inner.parse() {
                steps.push(Step::Index(i));
            } else {
                steps.push(Step::Field(inner.to_string()));
            }
        } else if r == "*" {
            steps.push(Step::Any);
        } else if let Ok(i) = r.parse::<usize>() {
            steps.push(Step::Index(i));
        } else {
            steps.push(Step::Field(r));
        }
    }
    steps
}

fn get<'a>(v: &'a Value, steps: &[Step]) -> Option<&'a Value> {
    let mut cur = v;
    for s in steps {
        cur = match (s, cur) {
            (Step::Field(f), Value::Object(m)) => m.get(f)?,
            (Step::Index(i), Value::Array(a)) => a.get(*i)?,
            (Step::Match(k, val), Value::Array(a)) => a.iter().find(|e| matches_elem(e, k, val))?,
            _ => return None,
        };
    }
    Some(cur)
}

fn matches_elem(e: &Value, k: &str, val: &str) -> bool {
    if k.is_empty() {
        return value_string(e) == val;
    }
    e.get(k).map(value_string).as_deref() == Some(val)
}

/// Visits every node at `steps`, creating missing map fields when `create` is set.
fn visit_mut(
    v: &mut Value,
    steps: &[Step],
    create: bool,
    f: &mut dyn FnMut(&mut Value) -> Result<()>,
) -> Result<usize> {
    let Some((s, rest)) = steps.split_first() else {
        f(v)?;
        return Ok(1);
    };
    let mut n = 0;
    match (s, v) {
        (Step::Field(name), Value::Object(m)) => {
            if !m.contains_key(name) && create {
                let init = match rest.first() {
                    None => Value::Null,
                    Some(Step::Index(_)) | Some(Step::Match(..)) => Value::Array(Vec::new()),
                    _ => Value::Object(Map::new()),
                };
                m.insert(name.clone(), init);
            }
            if let Some(c) = m.get_mut(name) {
                n += visit_mut(c, rest, create, f)?;
            }
        }
        (Step::Field(name), v @ Value::Null) if create => {
            let mut m = Map::new();
            m.insert(name.clone(), Value::Null);
            *v = Value::Object(m);
            n += visit_mut(v, steps, create, f)?;
        }
        (Step::Index(i), Value::Array(a)) => {
            if let Some(c) = a.get_mut(*i) {
                n += visit_mut(c, rest, create, f)?;
            }
        }
        (Step::Match(k, val), Value::Array(a)) => {
            let mut found = false;
            for e in a.iter_mut() {
                if matches_elem(e, k, val) {
                    found = true;
                    n += visit_mut(e, rest, create, f)?;
                }
            }
            if !found && create && !k.is_empty() {
                let mut m = Map::new();
                m.insert(k.clone(), Value::String(val.clone()));
                a.push(Value::Object(m));
                if let Some(e) = a.last_mut() {
                    n += visit_mut(e, rest, create, f)?;
                }
            }
        }
        (Step::Any, Value::Object(m)) => {
            for (_, c) in m.iter_mut() {
                n += visit_mut(c, rest, create, f)?;
            }
        }
        (Step::Any, Value::Array(a)) => {
            for c in a.iter_mut() {
                n += visit_mut(c, rest, create, f)?;
            }
        }
        _ => {}
    }
    Ok(n)
}

fn sel_from(v: Option<&Value>, ctx: &str) -> Result<Option<Selector>> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(v) => {
            let mut v = v.clone();
            // A source may carry fieldPath/options next to the selector fields.
            if let Value::Object(m) = &mut v {
                m.remove("fieldPath");
                m.remove("options");
                if let Some(Value::String(av)) = m.remove("apiVersion") {
                    let (g, ver) = match av.rsplit_once('/') {
                        Some((g, ver)) => (g.to_string(), ver.to_string()),
                        None => (String::new(), av),
                    };
                    m.entry("group").or_insert(Value::String(g));
                    m.entry("version").or_insert(Value::String(ver));
                }
            }
            serde_json::from_value(v)
                .map(Some)
                .map_err(|e| Error::build(ctx, format!("invalid replacement selector: {e}")))
        }
    }
}

fn opt_str(v: Option<&Value>, k: &str) -> Option<String> {
    v.and_then(|o| o.get(k))
        .and_then(Value::as_str)
        .map(String::from)
}

/// Applies one replacement (already loaded from a file if it was given by path).
pub(crate) fn replacement(resources: &mut [Res], rep: &Value, ctx: &str) -> Result<()> {
    let src = rep
        .get("source")
        .ok_or_else(|| Error::build(ctx, "replacement without a source"))?;
    let sel = sel_from(Some(src), ctx)?.unwrap_or_default();
    let m = Matcher::new(&sel, ctx)?;
    let hits: Vec<&Res> = resources.iter().filter(|r| m.matches(r)).collect();
    if hits.len() != 1 {
        return Err(Error::build(
            ctx,
            format!(
                "replacement source {:?} matches {} resources, need exactly one",
                sel.name.as_deref().unwrap_or(""),
                hits.len()
            ),
        ));
    }
    let fp = opt_str(Some(src), "fieldPath").unwrap_or_else(|| "metadata.name".into());
    let src_obj = Value::Object(hits[0].obj.clone());
    let mut value = get(&src_obj, &parse_dotted(&fp))
        .cloned()
        .ok_or_else(|| Error::build(ctx, format!("replacement source field {fp:?} not found")))?;
    let sopts = src.get("options");
    if let Some(d) = opt_str(sopts, "delimiter") {
        let idx = sopts
            .and_then(|o| o.get("index"))
            .and_then(Value::as_i64)
            .unwrap_or(0);
        let s = value_string(&value);
        let parts: Vec<&str> = s.split(d.as_str()).collect();
        if idx < 0 || idx as usize >= parts.len() {
            return Err(Error::build(
                ctx,
                format!("options.index {idx} is out of bounds for value {s:?}"),
            ));
        }
        value = Value::String(parts[idx as usize].to_string());
    }
    for t in rep
        .get("targets")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let sel = sel_from(t.get("select"), ctx)?.unwrap_or_default();
        let m = Matcher::new(&sel, ctx)?;
        let rejects: Vec<Matcher> = t
            .get("reject")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|r| sel_from(Some(r), ctx).and_then(|s| Matcher::new(&s.unwrap_or_default(), ctx)))
            .collect::<Result<_>>()?;
        let topts = t.get("options");
        let create = topts
            .and_then(|o| o.get("create"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let delim = opt_str(topts, "delimiter");
        let index = topts
            .and_then(|o| o.get("index"))
            .and_then(Value::as_i64)
            .unwrap_or(0);
        let paths: Vec<String> = t
            .get("fieldPaths")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(String::from)
            .collect();
        let paths = if paths.is_empty() {
            vec!["metadata.name".to_string()]
        } else {
            paths
        };
        for r in resources.iter_mut() {
            if !m.matches(r) || rejects.iter().any(|x| x.matches(r)) {
                continue;
            }
            // An unnamed reject with no fields would match everything; kustomize ignores it.
            let rid = r.id();
            for p in &paths {
                let steps = parse_dotted(p);
                let mut obj = Value::Object(std::mem::take(&mut r.obj));
                let res = visit_mut(&mut obj, &steps, create, &mut |slot| {
                    match &delim {
                        Some(d) => {
                            let cur = value_string(slot);
                            let mut parts: Vec<String> =
                                cur.split(d.as_str()).map(String::from).collect();
                            let v = value_string(&value);
                            if index < 0 {
                                parts.insert(0, v);
                            } else if index as usize >= parts.len() {
                                parts.push(v);
                            } else {
                                parts[index as usize] = v;
                            }
                            *slot = Value::String(parts.join(d));
                        }
                        None => *slot = value.clone(),
                    }
                    Ok(())
                });
                r.obj = match obj {
                    Value::Object(m) => m,
                    _ => Map::new(),
                };
                let n = res?;
                if n == 0 && !create {
                    return Err(Error::build(
                        ctx,
                        format!("unable to find field {p:?} in replacement target {rid}"),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Binds a var to the one object it names, as kustomize does where the var is declared.
pub(crate) fn bind_var(resources: &mut [Res], v: &VarEntry, file: &str) -> Result<()> {
    let kind = v.obj_ref.get("kind").and_then(Value::as_str).unwrap_or("");
    let name = v.obj_ref.get("name").and_then(Value::as_str).unwrap_or("");
    let ns = v
        .obj_ref
        .get("namespace")
        .and_then(Value::as_str)
        .unwrap_or("");
    let api = v
        .obj_ref
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("");
    let want = crate::resource::Gvk::from_api_version(api, kind);
    let hits: Vec<usize> = (0..resources.len())
        .filter(|&i| {
            resources[i].all_id_refs().any(|id| {
                id.gvk.selected_by(&want.group, &want.version, &want.kind)
                    && id.name == name
                    && (ns.is_empty() || id.effective_namespace() == ns)
            })
        })
        .collect();
    if hits.len() > 1 {
        return Err(Error::build(
            file,
            format!(
                "found {} objects for var {} ({kind} {name:?}); unable to disambiguate",
                hits.len(),
                v.name
            ),
        ));
    }
    if let Some(&i) = hits.first() {
        resources[i].var_names.push(v.name.clone());
    }
    Ok(())
}

/// Resolves vars and substitutes `$(NAME)` in the var-reference fields.
pub(crate) fn resolve_vars(
    resources: &mut [Res],
    vars: &[VarEntry],
    specs: &[FieldSpec],
) -> Result<()> {
    if vars.is_empty() {
        return Ok(());
    }
    let mut values: Vec<(String, Value)> = Vec::new();
    for v in vars {
        let ctx = format!("var {}", v.name);
        let hits: Vec<&Res> = resources
            .iter()
            .filter(|r| r.var_names.contains(&v.name))
            .collect();
        let kind = v.obj_ref.get("kind").and_then(Value::as_str).unwrap_or("");
        let name = v.obj_ref.get("name").and_then(Value::as_str).unwrap_or("");
        if hits.is_empty() {
            return Err(Error::build(
                ctx,
                format!("no {kind} named {name:?} to take the value from"),
            ));
        }
        let fp = v
            .field_ref
            .as_ref()
            .and_then(|f| f.get("fieldPath"))
            .and_then(Value::as_str)
            .unwrap_or("metadata.name");
        let obj = Value::Object(hits[0].obj.clone());
        let val = get(&obj, &parse_dotted(fp)).cloned().ok_or_else(|| {
            Error::build(&ctx, format!("field {fp:?} not found in {kind} {name:?}"))
        })?;
        values.push((v.name.clone(), val));
    }
    for r in resources.iter_mut() {
        for fs in crate::fieldspec::applicable(specs, r) {
            crate::transform::with_obj(r, |obj| {
                crate::fieldspec::visit(obj, &fs.path, false, &mut |v| {
                    substitute(v, &values);
                    Ok(())
                })
            })?;
        }
    }
    Ok(())
}

fn substitute(v: &mut Value, values: &[(String, Value)]) {
    match v {
        Value::String(s) => {
            for (n, val) in values {
                if *s == format!("$({n})") && !val.is_string() {
                    *v = val.clone();
                    return;
                }
            }
            *s = expand(s, values);
        }
        Value::Array(a) => a.iter_mut().for_each(|x| substitute(x, values)),
        Value::Object(m) => m.iter_mut().for_each(|(_, x)| substitute(x, values)),
        _ => {}
    }
}

/// Expands `$(NAME)`; `$$` escapes a dollar; unknown names are left as they are.
fn expand(s: &str, values: &[(String, Value)]) -> String {
    let mut out = String::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'$' && i + 1 < b.len() {
            if b[i + 1] == b'$' {
                out.push('$');
                i += 2;
                continue;
            }
            if b[i + 1] == b'('
                && let Some(end) = s[i + 2..].find(')')
            {
                let name = &s[i + 2..i + 2 + end];
                if let Some((_, val)) = values.iter().find(|(n, _)| n == name) {
                    out.push_str(&value_string(val));
                    i += 3 + end;
                    continue;
                }
            }
        }
        let ch = s[i..].chars().next().unwrap_or('$');
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_vars() {
        let v = vec![("A".to_string(), Value::from("x"))];
        assert_eq!(expand("$(A)-$(B)-$$(A)", &v), "x-$(B)-$(A)");
    }

    #[test]
    fn dotted_paths() {
        let doc = serde_json::json!({"spec": {"c": [{"name": "a", "image": "i"}]}});
        assert_eq!(
            get(&doc, &parse_dotted("spec.c.[name=a].image")),
            Some(&Value::from("i"))
        );
        assert_eq!(
            get(&doc, &parse_dotted("spec.c[0].name")),
            Some(&Value::from("a"))
        );
        let doc = serde_json::json!({"metadata": {"labels": {"a.b/c": "x"}}});
        assert_eq!(
            get(&doc, &parse_dotted("metadata.labels.a\\.b/c")),
            Some(&Value::from("x"))
        );
    }
}
