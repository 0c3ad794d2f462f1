//! RFC 6902 JSON patch on `serde_json::Value`. Hand-written (about a hundred lines) because the
//! available crates pull their own JSON pointer handling and report errors we could not tie to
//! the patch file and operation index. It tolerates what kustomize's library (evanphx
//! json-patch v4) tolerates: negative array indexes, `replace` of a missing mapping key, and
//! anything before a path's first slash.

use serde_json::Value;

fn unescape(s: &str) -> String {
    s.replace("~1", "/").replace("~0", "~")
}

/// The tokens of a pointer, as kustomize's JSON patch library reads them: whatever precedes
/// the first `/` is dropped (so `spec/replicas` means `/replicas`), and a path without any `/`
/// points nowhere.
fn split(path: &str) -> Result<Vec<String>, String> {
    if path.is_empty() {
        return Ok(Vec::new());
    }
    let Some((_, rest)) = path.split_once('/') else {
        return Err(format!("path {path:?} does not exist"));
    };
    Ok(rest.split('/').map(unescape).collect())
}

/// An array index; negative ones count from the end, as the library allows.
fn index(t: &str, len: usize, path: &str) -> Result<usize, String> {
    let i: i64 = t
        .parse()
        .map_err(|_| format!("invalid array index in {path:?}"))?;
    let i = if i < 0 { i + len as i64 } else { i };
    usize::try_from(i).map_err(|_| format!("array index out of range in {path:?}"))
}

fn get_mut<'a>(v: &'a mut Value, toks: &[String], path: &str) -> Result<&'a mut Value, String> {
    let mut cur = v;
    for t in toks {
        cur = match cur {
            Value::Object(m) => m.get_mut(t),
            Value::Array(a) => {
                let n = a.len();
                index(t, n, path).ok().and_then(|i| a.get_mut(i))
            }
            _ => None,
        }
        .ok_or_else(|| format!("path {path:?} does not exist"))?;
    }
    Ok(cur)
}

fn add(doc: &mut Value, path: &str, val: Value) -> Result<(), String> {
    let toks = split(path)?;
    let Some((last, parent)) = toks.split_last() else {
        *doc = val;
        return Ok(());
    };
    match get_mut(doc, parent, path)? {
        Value::Object(m) => {
            m.insert(last.clone(), val);
        }
        Value::Array(a) => {
            if last == "-" {
                a.push(val);
            } else {
                let i = index(last, a.len(), path)?;
                if i > a.len() {
                    return Err(format!("array index out of range in {path:?}"));
                }
                a.insert(i, val);
            }
        }
        _ => return Err(format!("parent of {path:?} is not a container")),
    }
    Ok(())
}

/// Replaces the value at `path`; a missing key of a mapping is added, as kustomize's library
/// does (only array elements must exist).
fn replace(doc: &mut Value, path: &str, val: Value) -> Result<(), String> {
    let toks = split(path)?;
    let Some((last, parent)) = toks.split_last() else {
        *doc = val;
        return Ok(());
    };
    match get_mut(doc, parent, path)? {
        Value::Object(m) => {
            m.insert(last.clone(), val);
            Ok(())
        }
        Value::Array(a) => {
            let i = index(last, a.len(), path)?;
            let slot = a
                .get_mut(i)
                .ok_or_else(|| format!("path {path:?} does not exist"))?;
            *slot = val;
            Ok(())
        }
        _ => Err(format!("path {path:?} does not exist")),
    }
}

fn remove(doc: &mut Value, path: &str) -> Result<Value, String> {
    let toks = split(path)?;
    let Some((last, parent)) = toks.split_last() else {
        return Err("cannot remove the whole document".into());
    };
    match get_mut(doc, parent, path)? {
        Value::Object(m) => m
            .shift_remove(last)
            .ok_or_else(|| format!("path {path:?} does not exist")),
        Value::Array(a) => {
            let i = index(last, a.len(), path)?;
            if i >= a.len() {
                return Err(format!("path {path:?} does not exist"));
            }
            Ok(a.remove(i))
        }
        _ => Err(format!("path {path:?} does not exist")),
    }
}

/// Applies a list of operations to `doc`.
pub(crate) fn apply(doc: &mut Value, ops: &[Value]) -> Result<(), String> {
    for (i, op) in ops.iter().enumerate() {
        let s = |k: &str| op.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        let path = s("path");
        let res = match s("op").as_str() {
            "add" => add(doc, &path, op.get("value").cloned().unwrap_or(Value::Null)),
            "remove" => remove(doc, &path).map(|_| ()),
            "replace" => replace(doc, &path, op.get("value").cloned().unwrap_or(Value::Null)),
            "move" => remove(doc, &s("from")).and_then(|v| add(doc, &path, v)),
            "copy" => get_mut(doc, &split(&s("from"))?, &s("from"))
                .map(|v| v.clone())
                .and_then(|v| add(doc, &path, v)),
            "test" => {
                let want = op.get("value").cloned().unwrap_or(Value::Null);
                get_mut(doc, &split(&path)?, &path).and_then(|v| {
                    if *v == want {
                        Ok(())
                    } else {
                        Err(format!("test failed at {path:?}"))
                    }
                })
            }
            other => Err(format!("unknown operation {other:?}")),
        };
        res.map_err(|e| format!("operation {i}: {e}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ops() {
        let mut d = json!({"a": [1, 2], "b": {"c": 1}});
        apply(
            &mut d,
            &[
                json!({"op": "add", "path": "/a/-", "value": 3}),
                json!({"op": "replace", "path": "/b/c", "value": 2}),
                json!({"op": "move", "from": "/b", "path": "/m"}),
                json!({"op": "remove", "path": "/a/0"}),
            ],
        )
        .unwrap();
        assert_eq!(d, json!({"a": [2, 3], "m": {"c": 2}}));
        assert!(
            apply(
                &mut d,
                &[json!({"op": "replace", "path": "/a/5", "value": 1})]
            )
            .is_err()
        );
    }

    /// What kustomize's JSON patch library tolerates (checked with `kubectl kustomize`).
    #[test]
    fn tolerated_like_kustomize() {
        let mut d = json!({"spec": {"c": [{"i": 1}, {"i": 2}]}});
        apply(
            &mut d,
            &[
                // Negative indexes count from the end.
                json!({"op": "replace", "path": "/spec/c/-1/i", "value": 9}),
                // Replacing a missing key adds it.
                json!({"op": "replace", "path": "/spec/replicas", "value": 2}),
                // Whatever precedes the first slash is dropped.
                json!({"op": "add", "path": "spec/top", "value": true}),
            ],
        )
        .unwrap();
        assert_eq!(
            d,
            json!({"spec": {"c": [{"i": 1}, {"i": 9}], "replicas": 2}, "top": true})
        );
        for bad in [
            json!({"op": "remove", "path": "/spec/missing"}),
            json!({"op": "add", "path": "/spec/c/5", "value": 1}),
            json!({"op": "add", "path": "/spec/none/x", "value": 1}),
            json!({"op": "add", "path": "nowhere", "value": 1}),
        ] {
            assert!(apply(&mut d, std::slice::from_ref(&bad)).is_err(), "{bad}");
        }
    }
}
