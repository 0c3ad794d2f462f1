//! `--set` parsing (Helm's `strvals`): `a.b=c,d[0]=e,f={x,y}`, with ints,
//! booleans and `null` typed and everything else a string.
//!
//! Error messages never quote the input: the controller feeds Secret values
//! through here (`valuesFrom.targetPath`) and a comma in a value makes part of
//! it parse as a key. They name the assignment by its position instead.

use std::collections::BTreeMap;

use crate::value::Value;

fn typed(s: &str) -> Value {
    match s {
        "true" => Value::Bool(true),
        "false" => Value::Bool(false),
        "null" => Value::Nil,
        _ => match s.parse::<i64>() {
            Ok(i) if !(s.len() > 1 && s.starts_with('0')) => Value::I64(i),
            _ => Value::str(s),
        },
    }
}

/// Splits on `sep` outside braces, honouring `\` escapes.
fn split_top(s: &str, sep: char) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut depth = 0i32;
    let mut esc = false;
    for c in s.chars() {
        if esc {
            cur.push('\\');
            cur.push(c);
            esc = false;
            continue;
        }
        match c {
            '\\' => esc = true,
            '{' => {
                depth += 1;
                cur.push(c);
            }
            '}' => {
                depth -= 1;
                cur.push(c);
            }
            c if c == sep && depth == 0 => out.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    out.push(cur);
    out
}

fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut esc = false;
    for c in s.chars() {
        if esc {
            out.push(c);
            esc = false;
        } else if c == '\\' {
            esc = true;
        } else {
            out.push(c);
        }
    }
    out
}

fn parse_value(s: &str) -> Value {
    if let Some(inner) = s.strip_prefix('{').and_then(|r| r.strip_suffix('}')) {
        if inner.is_empty() {
            return Value::list(Vec::new());
        }
        return Value::list(
            split_top(inner, ',')
                .iter()
                .map(|x| typed(&unescape(x)))
                .collect(),
        );
    }
    typed(&unescape(s))
}

enum Seg {
    Key(String),
    Index(usize),
}

/// Deepest key accepted (`a.b.c...`): paths nest maps, and nesting is walked
/// recursively here and when values coalesce.
pub const MAX_SEGMENTS: usize = 128;

fn parse_key(k: &str, n: usize) -> Result<Vec<Seg>, String> {
    let mut segs = Vec::new();
    for part in split_top(k, '.') {
        let part = part.as_str();
        let (name, mut rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !name.is_empty() {
            segs.push(Seg::Key(unescape(name)));
        }
        while let Some(r) = rest.strip_prefix('[') {
            let end = r
                .find(']')
                .ok_or_else(|| format!("the key of assignment {n} has no closing bracket"))?;
            let idx: usize = r[..end]
                .parse()
                .map_err(|_| format!("the key of assignment {n} has an invalid index"))?;
            if idx > 65536 {
                return Err(format!(
                    "the key of assignment {n} has an index above 65536"
                ));
            }
            segs.push(Seg::Index(idx));
            rest = &r[end + 1..];
        }
    }
    if segs.is_empty() {
        return Err(format!("the key of assignment {n} is empty"));
    }
    if segs.len() > MAX_SEGMENTS {
        return Err(format!(
            "the key of assignment {n} is deeper than {MAX_SEGMENTS} levels"
        ));
    }
    Ok(segs)
}

fn set_path(cur: Value, segs: &[Seg], val: Value) -> Value {
    let Some((first, rest)) = segs.split_first() else {
        return val;
    };
    match first {
        Seg::Key(k) => {
            let map = match cur {
                Value::Map(_) => cur,
                _ => Value::map(BTreeMap::new()),
            };
            if let Value::Map(m) = &map {
                let existing = m.borrow().get(k).cloned().unwrap_or_default();
                let nv = set_path(existing, rest, val);
                m.borrow_mut().insert(k.clone(), nv);
            }
            map
        }
        Seg::Index(i) => {
            let mut l = match cur {
                Value::List(l) => l.as_ref().clone(),
                _ => Vec::new(),
            };
            while l.len() <= *i {
                l.push(Value::Nil);
            }
            let existing = std::mem::take(&mut l[*i]);
            l[*i] = set_path(existing, rest, val);
            Value::list(l)
        }
    }
}

/// Applies one `--set` argument to `target`. Errors name the failing
/// assignment by its 1-based position, never its text.
pub fn parse_into(s: &str, target: &Value) -> Result<(), String> {
    for (i, assign) in split_top(s, ',').iter().enumerate() {
        let n = i + 1;
        if assign.is_empty() {
            continue;
        }
        let Some((k, v)) = assign.split_once('=') else {
            return Err(format!("assignment {n} has no '=' and no value"));
        };
        let segs = parse_key(k, n)?;
        let updated = set_path(target.clone(), &segs, parse_value(v));
        if let (Value::Map(t), Value::Map(u)) = (target, &updated)
            && !std::rc::Rc::ptr_eq(t, u)
        {
            let copy = u.borrow().clone();
            *t.borrow_mut() = copy;
        }
    }
    Ok(())
}

/// Applies one `--set-literal` assignment to `target`: `key` is a path as for
/// [`parse_into`] and `value` is set verbatim as a string (no commas, braces, escapes or
/// typing). Errors never quote the input.
pub fn parse_literal_into(key: &str, value: &str, target: &Value) -> Result<(), String> {
    let segs = parse_key(key, 1)?;
    let updated = set_path(target.clone(), &segs, Value::str(value));
    if let (Value::Map(t), Value::Map(u)) = (target, &updated)
        && !std::rc::Rc::ptr_eq(t, u)
    {
        let copy = u.borrow().clone();
        *t.borrow_mut() = copy;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_values_keep_set_syntax() {
        let t = Value::empty_map();
        parse_literal_into("a.b[1]", "x,y={1,2}\\n=true", &t).unwrap();
        assert_eq!(
            t.to_json(),
            serde_json::json!({"a": {"b": [null, "x,y={1,2}\\n=true"]}})
        );
        parse_literal_into("n", "1", &t).unwrap();
        assert_eq!(t.to_json()["n"], "1");
        assert!(parse_literal_into("", "v", &t).is_err());
    }

    #[test]
    fn errors_never_quote_the_input() {
        let secret = "s3cr3t";
        for input in [
            format!("a={secret},{secret}"),
            format!("a.{secret}[x]=1"),
            format!("a.{secret}[1=2"),
            format!("{secret}[99999999]=1"),
            format!("{}=1", vec![secret; 200].join(".")),
            format!("a=1,=,[{secret}]=2"),
        ] {
            let err = parse_into(&input, &Value::empty_map()).unwrap_err();
            assert!(!err.contains(secret), "{err}");
            assert!(err.contains("assignment"), "{err}");
        }
    }

    #[test]
    fn sets_nested_keys() {
        let t = Value::empty_map();
        parse_into("a.b=1,c[1]=x,d={p,q}", &t).unwrap();
        assert_eq!(
            t.to_json().to_string(),
            r#"{"a":{"b":1},"c":[null,"x"],"d":["p","q"]}"#
        );
    }
}
