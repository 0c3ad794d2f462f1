//! RFC 6902 JSON patch on `serde_json::Value`. Hand-written (about a hundred lines) because the
//! available crates pull their own JSON pointer handling and report errors we could not tie to
//! the patch file and operation index.

use serde_json::Value;

fn unescape(s: &str) -> String {
    s.replace("~1", "/").replace("~0", "~")
}

fn split(path: &str) -> Result<Vec<String>, String> {
    if path.is_empty() {
        return Ok(Vec::new());
    }
    let rest = path
        .strip_prefix('/')
        .ok_or_else(|| format!("path {path:?} must start with '/'"))?;
    Ok(rest.split('/').map(unescape).collect())
}

fn get_mut<'a>(v: &'a mut Value, toks: &[String], path: &str) -> Result<&'a mut Value, String> {
    let mut cur = v;
    for t in toks {
        cur = match cur {
            Value::Object(m) => m.get_mut(t),
            Value::Array(a) => t.parse::<usize>().ok().and_then(|i| a.get_mut(i)),
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
                let i: usize = last
                    .parse()
                    .map_err(|_| format!("invalid array index in {path:?}"))?;
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
            let i: usize = last
                .parse()
                .map_err(|_| format!("invalid array index in {path:?}"))?;
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
            "replace" => {
                let v = op.get("value").cloned().unwrap_or(Value::Null);
                get_mut(doc, &split(&path)?, &path).map(|slot| *slot = v)
            }
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
                &[json!({"op": "replace", "path": "/zz", "value": 1})]
            )
            .is_err()
        );
    }
}
