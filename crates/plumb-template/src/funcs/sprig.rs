//! Sprig v3 functions (strings, lists, dicts, math, types, regex, encoding,
//! dates). Helm's own (`toYaml`, `fromYaml`, `required`...) and the semver
//! functions live in plumb-helm.

use rustc_hash::FxHashMap;
use std::collections::{BTreeMap, HashMap};

use base64::Engine;
use sha2::Digest;

use super::{Func, arg, as_list, iarg, is_empty, sarg, strval, to_f64, to_i64, want, want_min};
use crate::json;
use crate::value::Value;

fn s(v: impl Into<String>) -> Result<Value, String> {
    Ok(Value::str(v.into()))
}

fn str_fn(m: &mut FxHashMap<&'static str, Func>, name: &'static str, f: Func) {
    m.insert(name, f);
}

pub(super) fn register(m: &mut FxHashMap<&'static str, Func>) {
    // ---- strings ----
    str_fn(m, "upper", |a| s(sarg(a, 0)?.to_uppercase()));
    str_fn(m, "lower", |a| s(sarg(a, 0)?.to_lowercase()));
    str_fn(m, "title", |a| s(title(&sarg(a, 0)?)));
    str_fn(m, "untitle", |a| {
        let x = sarg(a, 0)?;
        let mut out = String::new();
        let mut prev_space = true;
        for c in x.chars() {
            if prev_space {
                out.extend(c.to_lowercase());
            } else {
                out.push(c);
            }
            prev_space = c.is_whitespace();
        }
        s(out)
    });
    str_fn(m, "trim", |a| s(sarg(a, 0)?.trim()));
    str_fn(m, "trimAll", |a| {
        let cut = sarg(a, 0)?;
        let x = sarg(a, 1)?;
        s(x.trim_matches(|c| cut.contains(c)))
    });
    str_fn(m, "trimPrefix", |a| {
        let p = sarg(a, 0)?;
        let x = sarg(a, 1)?;
        s(x.strip_prefix(p.as_str()).unwrap_or(&x))
    });
    str_fn(m, "trimSuffix", |a| {
        let p = sarg(a, 0)?;
        let x = sarg(a, 1)?;
        s(x.strip_suffix(p.as_str()).unwrap_or(&x))
    });
    str_fn(m, "trunc", |a| {
        let c = iarg(a, 0)?;
        let x = sarg(a, 1)?;
        let l = x.len() as i64;
        if c < 0 && l + c > 0 {
            return s(byte_slice(&x, (l + c) as usize, x.len()));
        }
        if c >= 0 && l > c {
            return s(byte_slice(&x, 0, c as usize));
        }
        s(x)
    });
    str_fn(m, "substr", |a| {
        let st = iarg(a, 0)?;
        let en = iarg(a, 1)?;
        let x = sarg(a, 2)?;
        let l = x.len() as i64;
        if st < 0 {
            return s(byte_slice(&x, 0, en.clamp(0, l) as usize));
        }
        if en < 0 || en > l {
            return s(byte_slice(&x, st.min(l) as usize, x.len()));
        }
        s(byte_slice(&x, st.min(en) as usize, en as usize))
    });
    str_fn(m, "replace", |a| {
        let o = sarg(a, 0)?;
        let n = sarg(a, 1)?;
        let x = sarg(a, 2)?;
        // Charged before it is made: an empty `o` inserts `n` at every char.
        let hits = if o.is_empty() {
            x.chars().count() as u64 + 1
        } else {
            x.matches(o.as_str()).count() as u64
        };
        crate::budget::charge_items(hits, n.len() as u64)?;
        s(x.replace(&o, &n))
    });
    str_fn(m, "repeat", |a| {
        let c = iarg(a, 0)?;
        let x = sarg(a, 1)?;
        if c < 0 {
            return Err("strings: negative Repeat count".into());
        }
        if x.len().saturating_mul(c as usize) > 64 << 20 {
            return Err("repeat: result too large".into());
        }
        s(x.repeat(c as usize))
    });
    str_fn(m, "contains", |a| {
        let sub = sarg(a, 0)?;
        let x = sarg(a, 1)?;
        Ok(Value::Bool(x.contains(&sub)))
    });
    str_fn(m, "hasPrefix", |a| {
        let p = sarg(a, 0)?;
        Ok(Value::Bool(sarg(a, 1)?.starts_with(&p)))
    });
    str_fn(m, "hasSuffix", |a| {
        let p = sarg(a, 0)?;
        Ok(Value::Bool(sarg(a, 1)?.ends_with(&p)))
    });
    str_fn(m, "quote", |a| {
        let parts: Vec<String> = a
            .iter()
            .filter(|v| !matches!(v, Value::Nil))
            .map(|v| crate::fmt::go_quote(&strval(v)))
            .collect();
        s(parts.join(" "))
    });
    str_fn(m, "squote", |a| {
        let parts: Vec<String> = a
            .iter()
            .filter(|v| !matches!(v, Value::Nil))
            .map(|v| format!("'{}'", strval(v)))
            .collect();
        s(parts.join(" "))
    });
    str_fn(m, "cat", |a| {
        let parts: Vec<String> = a
            .iter()
            .filter(|v| !matches!(v, Value::Nil))
            .map(strval)
            .collect();
        s(parts.join(" "))
    });
    str_fn(m, "indent", |a| {
        let n = iarg(a, 0)?;
        let x = sarg(a, 1)?;
        s(indent(n, &x)?)
    });
    str_fn(m, "nindent", |a| {
        let n = iarg(a, 0)?;
        let x = sarg(a, 1)?;
        s(format!("\n{}", indent(n, &x)?))
    });
    str_fn(m, "nospace", |a| {
        s(sarg(a, 0)?
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect::<String>())
    });
    str_fn(m, "initials", |a| {
        s(sarg(a, 0)?
            .split_whitespace()
            .filter_map(|w| w.chars().next())
            .collect::<String>())
    });
    str_fn(m, "abbrev", |a| {
        let w = iarg(a, 0)?;
        let x = sarg(a, 1)?;
        if w < 4 || x.len() as i64 <= w {
            return s(x);
        }
        s(format!("{}...", byte_slice(&x, 0, (w - 3) as usize)))
    });
    str_fn(m, "camelcase", |a| {
        s(sarg(a, 0)?
            .split(['_', '-', ' '])
            .filter(|p| !p.is_empty())
            .map(|p| {
                let mut c = p.chars();
                c.next().map_or(String::new(), |f| {
                    f.to_uppercase().collect::<String>() + c.as_str()
                })
            })
            .collect::<String>())
    });
    str_fn(m, "snakecase", |a| s(case_words(&sarg(a, 0)?, '_')));
    str_fn(m, "kebabcase", |a| s(case_words(&sarg(a, 0)?, '-')));
    str_fn(m, "swapcase", |a| {
        s(sarg(a, 0)?
            .chars()
            .map(|c| {
                if c.is_uppercase() {
                    c.to_lowercase().collect::<String>()
                } else {
                    c.to_uppercase().collect::<String>()
                }
            })
            .collect::<String>())
    });
    str_fn(m, "wrap", |a| {
        let w = iarg(a, 0)?;
        s(wrap(&sarg(a, 1)?, w.max(1) as usize, "\n"))
    });
    str_fn(m, "wrapWith", |a| {
        let w = iarg(a, 0)?;
        let sep = sarg(a, 1)?;
        s(wrap(&sarg(a, 2)?, w.max(1) as usize, &sep))
    });
    str_fn(m, "plural", |a| {
        let one = sarg(a, 0)?;
        let many = sarg(a, 1)?;
        let n = iarg(a, 2)?;
        s(if n == 1 { one } else { many })
    });
    str_fn(m, "toString", |a| {
        want(a, 1, "toString")?;
        s(strval(&a[0]))
    });
    str_fn(m, "toStrings", |a| {
        Ok(Value::list(
            strslice(&arg(a, 0)).into_iter().map(Value::from).collect(),
        ))
    });
    str_fn(m, "splitList", |a| {
        let sep = sarg(a, 0)?;
        let x = sarg(a, 1)?;
        Ok(Value::list(
            go_split(&x, &sep, -1)
                .into_iter()
                .map(Value::from)
                .collect(),
        ))
    });
    str_fn(m, "split", |a| {
        let sep = sarg(a, 0)?;
        let x = sarg(a, 1)?;
        Ok(split_map(go_split(&x, &sep, -1)))
    });
    str_fn(m, "splitn", |a| {
        let sep = sarg(a, 0)?;
        let n = iarg(a, 1)?;
        let x = sarg(a, 2)?;
        Ok(split_map(go_split(&x, &sep, n)))
    });
    str_fn(m, "join", |a| {
        let sep = sarg(a, 0)?;
        s(strslice(&arg(a, 1)).join(&sep))
    });
    str_fn(m, "sortAlpha", |a| {
        let mut v = strslice(&arg(a, 0));
        v.sort();
        Ok(Value::list(v.into_iter().map(Value::from).collect()))
    });
    str_fn(m, "shuffle", |a| {
        use rand::seq::SliceRandom;
        let mut c: Vec<char> = sarg(a, 0)?.chars().collect();
        c.shuffle(&mut rand::rng());
        s(c.into_iter().collect::<String>())
    });
    str_fn(m, "b64enc", |a| {
        s(base64::engine::general_purpose::STANDARD.encode(sarg(a, 0)?.as_bytes()))
    });
    str_fn(
        m,
        "b64dec",
        |a| match base64::engine::general_purpose::STANDARD.decode(sarg(a, 0)?.as_bytes()) {
            Ok(b) => s(String::from_utf8_lossy(&b).into_owned()),
            Err(e) => s(e.to_string()),
        },
    );
    str_fn(m, "b32enc", |a| s(b32enc(sarg(a, 0)?.as_bytes())));
    str_fn(m, "b32dec", |a| match b32dec(&sarg(a, 0)?) {
        Some(b) => s(String::from_utf8_lossy(&b).into_owned()),
        None => s("illegal base32 data"),
    });
    str_fn(m, "sha256sum", |a| {
        s(hex::encode(sha2::Sha256::digest(sarg(a, 0)?.as_bytes())))
    });
    str_fn(m, "sha512sum", |a| {
        s(hex::encode(sha2::Sha512::digest(sarg(a, 0)?.as_bytes())))
    });
    str_fn(m, "sha1sum", |a| {
        use sha1::Digest as _;
        s(hex::encode(sha1::Sha1::digest(sarg(a, 0)?.as_bytes())))
    });
    str_fn(m, "adler32sum", |a| {
        let x = sarg(a, 0)?;
        let (mut p, mut q) = (1u32, 0u32);
        for b in x.bytes() {
            p = (p + u32::from(b)) % 65521;
            q = (q + p) % 65521;
        }
        s(((q << 16) | p).to_string())
    });

    // ---- regex ----
    str_fn(m, "regexMatch", |a| regex_match(a, false));
    str_fn(m, "mustRegexMatch", |a| regex_match(a, true));
    str_fn(m, "regexFind", |a| regex_find(a, false));
    str_fn(m, "mustRegexFind", |a| regex_find(a, true));
    str_fn(m, "regexFindAll", |a| regex_find_all(a, false));
    str_fn(m, "mustRegexFindAll", |a| regex_find_all(a, true));
    str_fn(m, "regexReplaceAll", |a| regex_replace(a, false, false));
    str_fn(m, "mustRegexReplaceAll", |a| regex_replace(a, false, true));
    str_fn(m, "regexReplaceAllLiteral", |a| {
        regex_replace(a, true, false)
    });
    str_fn(m, "mustRegexReplaceAllLiteral", |a| {
        regex_replace(a, true, true)
    });
    str_fn(m, "regexSplit", |a| regex_split(a, false));
    str_fn(m, "mustRegexSplit", |a| regex_split(a, true));
    str_fn(m, "regexQuoteMeta", |a| s(regex::escape(&sarg(a, 0)?)));

    // ---- defaults, flow ----
    m.insert("default", |a| {
        want_min(a, 1, "default")?;
        if a.len() == 1 {
            return Ok(a[0].clone());
        }
        let given = &a[1];
        Ok(if is_empty(given) {
            a[0].clone()
        } else {
            given.clone()
        })
    });
    m.insert("empty", |a| {
        want(a, 1, "empty")?;
        Ok(Value::Bool(is_empty(&a[0])))
    });
    m.insert("coalesce", |a| {
        Ok(a.iter().find(|v| !is_empty(v)).cloned().unwrap_or_default())
    });
    m.insert("all", |a| Ok(Value::Bool(a.iter().all(|v| !is_empty(v)))));
    m.insert("any", |a| Ok(Value::Bool(a.iter().any(|v| !is_empty(v)))));
    m.insert("ternary", |a| {
        want(a, 3, "ternary")?;
        match &a[2] {
            Value::Bool(b) => Ok(if *b { a[0].clone() } else { a[1].clone() }),
            other => Err(format!(
                "wrong type for value; expected bool; got {}",
                other.type_name()
            )),
        }
    });
    m.insert("fail", |a| Err(sarg(a, 0)?));
    // ---- encoding ----
    m.insert("toJson", |a| {
        want(a, 1, "toJson")?;
        s(json::to_json(&a[0], false))
    });
    m.insert("mustToJson", |a| {
        want(a, 1, "mustToJson")?;
        s(json::to_json(&a[0], false))
    });
    m.insert("toRawJson", |a| {
        want(a, 1, "toRawJson")?;
        s(json::to_json(&a[0], false)
            .replace("\\u003c", "<")
            .replace("\\u003e", ">")
            .replace("\\u0026", "&"))
    });
    m.insert("toPrettyJson", |a| {
        want(a, 1, "toPrettyJson")?;
        s(json::to_json(&a[0], true))
    });
    m.insert("mustToPrettyJson", |a| {
        want(a, 1, "mustToPrettyJson")?;
        s(json::to_json(&a[0], true))
    });
    // ---- lists ----
    m.insert("list", |a| Ok(Value::list(a.to_vec())));
    m.insert("tuple", |a| Ok(Value::list(a.to_vec())));
    m.insert("append", push);
    m.insert("push", push);
    m.insert("mustAppend", push);
    m.insert("mustPush", push);
    m.insert("prepend", |a| {
        want(a, 2, "prepend")?;
        let mut l = as_list(&a[0], "prepend")?;
        l.insert(0, a[1].clone());
        Ok(Value::list(l))
    });
    m.insert("mustPrepend", |a| {
        want(a, 2, "mustPrepend")?;
        let mut l = as_list(&a[0], "prepend")?;
        l.insert(0, a[1].clone());
        Ok(Value::list(l))
    });
    m.insert("first", |a| {
        Ok(as_list(&arg(a, 0), "first")?
            .first()
            .cloned()
            .unwrap_or_default())
    });
    m.insert("mustFirst", |a| {
        Ok(as_list(&arg(a, 0), "first")?
            .first()
            .cloned()
            .unwrap_or_default())
    });
    m.insert("last", |a| {
        Ok(as_list(&arg(a, 0), "last")?
            .last()
            .cloned()
            .unwrap_or_default())
    });
    m.insert("mustLast", |a| {
        Ok(as_list(&arg(a, 0), "last")?
            .last()
            .cloned()
            .unwrap_or_default())
    });
    m.insert("rest", |a| {
        let l = as_list(&arg(a, 0), "rest")?;
        if l.is_empty() {
            return Ok(Value::Nil);
        }
        Ok(Value::list(l[1..].to_vec()))
    });
    m.insert("initial", |a| {
        let l = as_list(&arg(a, 0), "initial")?;
        if l.is_empty() {
            return Ok(Value::Nil);
        }
        Ok(Value::list(l[..l.len() - 1].to_vec()))
    });
    m.insert("reverse", |a| {
        let mut l = as_list(&arg(a, 0), "reverse")?;
        l.reverse();
        Ok(Value::list(l))
    });
    m.insert("uniq", uniq);
    m.insert("mustUniq", uniq);
    m.insert("without", |a| {
        want_min(a, 1, "without")?;
        let l = as_list(&a[0], "without")?;
        Ok(Value::list(
            l.into_iter()
                .filter(|x| !a[1..].iter().any(|y| y.deep_equal(x)))
                .collect(),
        ))
    });
    m.insert("has", |a| {
        want(a, 2, "has")?;
        let found = match &a[1] {
            Value::List(l) => l.iter().any(|x| x.deep_equal(&a[0])),
            Value::Nil => false,
            // Typed slices such as `.Capabilities.APIVersions`.
            Value::Object(o) if o.as_list().is_some() => o
                .as_list()
                .unwrap_or_default()
                .iter()
                .any(|x| x.deep_equal(&a[0])),
            other => return Err(format!("Cannot find has on type {}", other.type_name())),
        };
        Ok(Value::Bool(found))
    });
    m.insert("mustHas", |a| {
        want(a, 2, "has")?;
        let l = as_list(&a[1], "has")?;
        Ok(Value::Bool(l.iter().any(|x| x.deep_equal(&a[0]))))
    });
    m.insert("compact", |a| {
        let l = as_list(&arg(a, 0), "compact")?;
        Ok(Value::list(
            l.into_iter().filter(|x| !is_empty(x)).collect(),
        ))
    });
    m.insert("mustCompact", |a| {
        let l = as_list(&arg(a, 0), "compact")?;
        Ok(Value::list(
            l.into_iter().filter(|x| !is_empty(x)).collect(),
        ))
    });
    m.insert("concat", |a| {
        let mut out = Vec::new();
        for l in a {
            out.extend(as_list(l, "concat")?);
        }
        Ok(Value::list(out))
    });
    m.insert("slice", slice);
    m.insert("mustSlice", slice);
    m.insert("chunk", |a| {
        let n = iarg(a, 0)?.max(1) as usize;
        let l = as_list(&arg(a, 1), "chunk")?;
        Ok(Value::list(
            l.chunks(n).map(|c| Value::list(c.to_vec())).collect(),
        ))
    });
    m.insert("until", |a| {
        let n = iarg(a, 0)?;
        until_step(0, n, if n < 0 { -1 } else { 1 })
    });
    m.insert("untilStep", |a| {
        until_step(iarg(a, 0)?, iarg(a, 1)?, iarg(a, 2)?)
    });
    m.insert("seq", seq);

    // ---- dicts ----
    m.insert("dict", |a| {
        let mut d = BTreeMap::new();
        let mut i = 0;
        while i < a.len() {
            let k = strval(&a[i]);
            let v = a.get(i + 1).cloned().unwrap_or_default();
            d.insert(k, v);
            i += 2;
        }
        Ok(Value::map(d))
    });
    m.insert("get", |a| {
        want(a, 2, "get")?;
        let Value::Map(d) = &a[0] else {
            return Err(format!(
                "wrong type for value; expected map[string]interface {{}}; got {}",
                a[0].type_name()
            ));
        };
        let k = sarg(a, 1)?;
        Ok(d.borrow()
            .get(&k)
            .cloned()
            .unwrap_or_else(|| Value::str("")))
    });
    m.insert("set", |a| {
        want(a, 3, "set")?;
        let Value::Map(d) = &a[0] else {
            return Err(format!(
                "wrong type for value; expected map[string]interface {{}}; got {}",
                a[0].type_name()
            ));
        };
        let k = sarg(a, 1)?;
        d.borrow_mut().insert(k, a[2].clone());
        Ok(a[0].clone())
    });
    m.insert("unset", |a| {
        want(a, 2, "unset")?;
        let Value::Map(d) = &a[0] else {
            return Err(format!(
                "wrong type for value; expected map[string]interface {{}}; got {}",
                a[0].type_name()
            ));
        };
        let k = sarg(a, 1)?;
        d.borrow_mut().remove(&k);
        Ok(a[0].clone())
    });
    m.insert("hasKey", |a| {
        want(a, 2, "hasKey")?;
        let Value::Map(d) = &a[0] else {
            if matches!(a[0], Value::Nil) {
                // An untyped nil becomes a nil map in Go: no keys.
                return Ok(Value::Bool(false));
            }
            return Err(format!(
                "wrong type for value; expected map[string]interface {{}}; got {}",
                a[0].type_name()
            ));
        };
        let k = sarg(a, 1)?;
        Ok(Value::Bool(d.borrow().contains_key(&k)))
    });
    m.insert("keys", |a| {
        let mut out = Vec::new();
        for d in a {
            if let Value::Map(d) = d {
                out.extend(d.borrow().keys().map(|k| Value::str(k.as_str())));
            }
        }
        Ok(Value::list(out))
    });
    m.insert("values", |a| {
        let Value::Map(d) = &arg(a, 0) else {
            return Ok(Value::list(Vec::new()));
        };
        Ok(Value::list(d.borrow().values().cloned().collect()))
    });
    m.insert("pluck", |a| {
        want_min(a, 1, "pluck")?;
        let k = sarg(a, 0)?;
        let mut out = Vec::new();
        for d in &a[1..] {
            if let Value::Map(d) = d
                && let Some(v) = d.borrow().get(&k)
            {
                out.push(v.clone());
            }
        }
        Ok(Value::list(out))
    });
    m.insert("pick", |a| {
        want_min(a, 1, "pick")?;
        let Value::Map(d) = &a[0] else {
            return Err("pick: expected a dict".into());
        };
        let d = d.borrow();
        let mut out = BTreeMap::new();
        for k in &a[1..] {
            let k = strval(k);
            if let Some(v) = d.get(&k) {
                out.insert(k, v.clone());
            }
        }
        Ok(Value::map(out))
    });
    m.insert("omit", |a| {
        want_min(a, 1, "omit")?;
        let Value::Map(d) = &a[0] else {
            return Err("omit: expected a dict".into());
        };
        let drop: Vec<String> = a[1..].iter().map(strval).collect();
        Ok(Value::map(
            d.borrow()
                .iter()
                .filter(|(k, _)| !drop.contains(k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ))
    });
    m.insert("merge", |a| merge_fn(a, false));
    m.insert("mustMerge", |a| merge_fn(a, false));
    m.insert("mergeOverwrite", |a| merge_fn(a, true));
    m.insert("mustMergeOverwrite", |a| merge_fn(a, true));
    m.insert("deepCopy", |a| {
        want(a, 1, "deepCopy")?;
        Ok(a[0].deep_copy())
    });
    m.insert("mustDeepCopy", |a| {
        want(a, 1, "deepCopy")?;
        Ok(a[0].deep_copy())
    });
    m.insert("dig", |a| {
        want_min(a, 3, "dig")?;
        let n = a.len();
        let def = a[n - 2].clone();
        let mut cur = a[n - 1].clone();
        for k in &a[..n - 2] {
            let k = sarg(std::slice::from_ref(k), 0)?;
            let next = match &cur {
                Value::Map(d) => d.borrow().get(&k).cloned(),
                _ => None,
            };
            match next {
                Some(v) => cur = v,
                None => return Ok(def),
            }
        }
        Ok(cur)
    });
    m.insert("deepEqual", |a| {
        want(a, 2, "deepEqual")?;
        Ok(Value::Bool(a[0].deep_equal(&a[1])))
    });

    // ---- math ----
    m.insert("add", |a| {
        Ok(Value::I64(
            a.iter().map(to_i64).fold(0i64, i64::wrapping_add),
        ))
    });
    m.insert("add1", |a| {
        Ok(Value::I64(to_i64(&arg(a, 0)).wrapping_add(1)))
    });
    m.insert("sub", |a| {
        want(a, 2, "sub")?;
        Ok(Value::I64(to_i64(&a[0]).wrapping_sub(to_i64(&a[1]))))
    });
    m.insert("mul", |a| {
        Ok(Value::I64(
            a.iter().map(to_i64).fold(1i64, i64::wrapping_mul),
        ))
    });
    m.insert("div", |a| {
        want(a, 2, "div")?;
        let d = to_i64(&a[1]);
        if d == 0 {
            return Err("runtime error: integer divide by zero".into());
        }
        Ok(Value::I64(to_i64(&a[0]).wrapping_div(d)))
    });
    m.insert("mod", |a| {
        want(a, 2, "mod")?;
        let d = to_i64(&a[1]);
        if d == 0 {
            return Err("runtime error: integer divide by zero".into());
        }
        Ok(Value::I64(to_i64(&a[0]).wrapping_rem(d)))
    });
    m.insert("max", |a| {
        want_min(a, 1, "max")?;
        Ok(Value::I64(a.iter().map(to_i64).max().unwrap_or(0)))
    });
    m.insert("min", |a| {
        want_min(a, 1, "min")?;
        Ok(Value::I64(a.iter().map(to_i64).min().unwrap_or(0)))
    });
    m.insert("addf", |a| Ok(Value::Float(a.iter().map(to_f64).sum())));
    m.insert("add1f", |a| Ok(Value::Float(to_f64(&arg(a, 0)) + 1.0)));
    m.insert("subf", |a| {
        want_min(a, 1, "subf")?;
        Ok(Value::Float(
            a[1..].iter().map(to_f64).fold(to_f64(&a[0]), |x, y| x - y),
        ))
    });
    m.insert("mulf", |a| Ok(Value::Float(a.iter().map(to_f64).product())));
    m.insert("divf", |a| {
        want_min(a, 1, "divf")?;
        Ok(Value::Float(
            a[1..].iter().map(to_f64).fold(to_f64(&a[0]), |x, y| x / y),
        ))
    });
    m.insert("maxf", |a| {
        Ok(Value::Float(a.iter().map(to_f64).fold(f64::MIN, f64::max)))
    });
    m.insert("minf", |a| {
        Ok(Value::Float(a.iter().map(to_f64).fold(f64::MAX, f64::min)))
    });
    m.insert("floor", |a| Ok(Value::Float(to_f64(&arg(a, 0)).floor())));
    m.insert("ceil", |a| Ok(Value::Float(to_f64(&arg(a, 0)).ceil())));
    m.insert("round", |a| {
        let x = to_f64(&arg(a, 0));
        let p = to_i64(&arg(a, 1));
        let r = if a.len() > 2 { to_f64(&a[2]) } else { 0.5 };
        let pow = 10f64.powi(p as i32);
        let digit = pow * x;
        let (int, frac) = (digit.trunc(), digit.fract());
        let rounded = if frac.abs() >= r {
            int + frac.signum()
        } else {
            int
        };
        Ok(Value::Float(rounded / pow))
    });
    m.insert("int", |a| Ok(Value::Int(to_i64(&arg(a, 0)))));
    m.insert("int64", |a| Ok(Value::I64(to_i64(&arg(a, 0)))));
    m.insert("float64", |a| Ok(Value::Float(to_f64(&arg(a, 0)))));
    m.insert("atoi", |a| {
        Ok(Value::Int(sarg(a, 0)?.trim().parse().unwrap_or(0)))
    });
    m.insert("toDecimal", |a| {
        Ok(Value::I64(
            i64::from_str_radix(&strval(&arg(a, 0)), 8).unwrap_or(0),
        ))
    });
    m.insert("biggest", |a| {
        Ok(Value::I64(a.iter().map(to_i64).max().unwrap_or(0)))
    });

    // ---- types ----
    m.insert("typeOf", |a| s(arg(a, 0).type_name()));
    m.insert("typeIs", |a| {
        let t = sarg(a, 0)?;
        Ok(Value::Bool(arg(a, 1).type_name() == t))
    });
    m.insert("typeIsLike", |a| {
        let t = sarg(a, 0)?;
        let n = arg(a, 1).type_name();
        Ok(Value::Bool(n == t || format!("*{n}") == t))
    });
    m.insert("kindOf", |a| s(arg(a, 0).kind_name()));
    m.insert("kindIs", |a| {
        let t = sarg(a, 0)?;
        Ok(Value::Bool(arg(a, 1).kind_name() == t))
    });

    // ---- paths, urls ----
    m.insert("base", |a| s(path_base(&sarg(a, 0)?)));
    m.insert("dir", |a| s(path_dir(&sarg(a, 0)?)));
    m.insert("ext", |a| {
        let b = sarg(a, 0)?;
        let base = b.rsplit('/').next().unwrap_or("");
        s(base
            .rfind('.')
            .map_or(String::new(), |i| base[i..].to_string()))
    });
    m.insert("clean", |a| s(path_clean(&sarg(a, 0)?)));
    m.insert("isAbs", |a| Ok(Value::Bool(sarg(a, 0)?.starts_with('/'))));

    m.insert("urlParse", |a| url_parse(&sarg(a, 0)?));
    m.insert("urlJoin", |a| {
        let Value::Map(d) = arg(a, 0) else {
            return Err("urlJoin needs a dict".into());
        };
        let d = d.borrow();
        let g = |k: &str| d.get(k).map(strval).unwrap_or_default();
        let mut out = String::new();
        if !g("scheme").is_empty() {
            out.push_str(&g("scheme"));
            out.push(':');
        }
        if !g("opaque").is_empty() {
            out.push_str(&g("opaque"));
        } else {
            if !g("host").is_empty() || !g("userinfo").is_empty() {
                out.push_str("//");
                if !g("userinfo").is_empty() {
                    out.push_str(&g("userinfo"));
                    out.push('@');
                }
                out.push_str(&g("host"));
            }
            out.push_str(&g("path"));
        }
        if !g("query").is_empty() {
            out.push('?');
            out.push_str(&g("query"));
        }
        if !g("fragment").is_empty() {
            out.push('#');
            out.push_str(&g("fragment"));
        }
        s(out)
    });

    // ---- dates ----
    crate::dates::register(m);
}

fn byte_slice(s: &str, a: usize, b: usize) -> String {
    let bytes = s.as_bytes();
    let b = b.min(bytes.len());
    let a = a.min(b);
    String::from_utf8_lossy(&bytes[a..b]).into_owned()
}

fn indent(n: i64, s: &str) -> Result<String, String> {
    let n = n.clamp(0, 1 << 16) as usize;
    let lines = s.bytes().filter(|b| *b == b'\n').count() as u64 + 1;
    crate::budget::charge_items(lines, n as u64)?;
    let pad = " ".repeat(n);
    Ok(format!("{pad}{}", s.replace('\n', &format!("\n{pad}"))))
}

/// Go's deprecated `strings.Title`: upper-case letters that start words.
fn title(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut prev: Option<char> = None;
    for c in s.chars() {
        let is_sep = match prev {
            None => true,
            Some(p) => !(p.is_alphanumeric() || p == '_' || p == '\''),
        };
        if is_sep {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        prev = Some(c);
    }
    out
}

fn case_words(s: &str, sep: char) -> String {
    let mut out = String::new();
    let chars: Vec<char> = s.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        if c == '_' || c == '-' || c == ' ' {
            if !out.is_empty() && !out.ends_with(sep) {
                out.push(sep);
            }
            continue;
        }
        if c.is_uppercase() {
            let prev_lower =
                i > 0 && (chars[i - 1].is_lowercase() || chars[i - 1].is_ascii_digit());
            let next_lower = chars.get(i + 1).is_some_and(|n| n.is_lowercase());
            let prev_upper = i > 0 && chars[i - 1].is_uppercase();
            if !out.is_empty() && !out.ends_with(sep) && (prev_lower || (prev_upper && next_lower))
            {
                out.push(sep);
            }
            out.extend(c.to_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

fn wrap(s: &str, width: usize, sep: &str) -> String {
    let mut out = String::new();
    let mut line_len = 0;
    for (i, w) in s.split(' ').enumerate() {
        if i > 0 {
            if line_len + 1 + w.len() > width {
                out.push_str(sep);
                line_len = 0;
            } else {
                out.push(' ');
                line_len += 1;
            }
        }
        out.push_str(w);
        line_len += w.len();
    }
    out
}

/// Sprig's `strslice`.
pub fn strslice(v: &Value) -> Vec<String> {
    match v {
        Value::List(l) => l
            .iter()
            .filter(|x| !matches!(x, Value::Nil))
            .map(strval)
            .collect(),
        Value::Nil => Vec::new(),
        other => vec![strval(other)],
    }
}

/// Go's `strings.SplitN` (n < 0: all).
fn go_split(s: &str, sep: &str, n: i64) -> Vec<String> {
    if n == 0 {
        return Vec::new();
    }
    if sep.is_empty() {
        let mut v: Vec<String> = s.chars().map(|c| c.to_string()).collect();
        if n > 0 && v.len() > n as usize {
            let rest: String = v[n as usize - 1..].concat();
            v.truncate(n as usize - 1);
            v.push(rest);
        }
        return v;
    }
    if n < 0 {
        s.split(sep).map(str::to_string).collect()
    } else {
        s.splitn(n as usize, sep).map(str::to_string).collect()
    }
}

fn split_map(parts: Vec<String>) -> Value {
    Value::map(
        parts
            .into_iter()
            .enumerate()
            .map(|(i, p)| (format!("_{i}"), Value::str(p)))
            .collect(),
    )
}

fn b32enc(b: &[u8]) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::new();
    for chunk in b.chunks(5) {
        let mut buf = [0u8; 5];
        buf[..chunk.len()].copy_from_slice(chunk);
        let n = u64::from_be_bytes([0, 0, 0, buf[0], buf[1], buf[2], buf[3], buf[4]]);
        let chars = match chunk.len() {
            1 => 2,
            2 => 4,
            3 => 5,
            4 => 7,
            _ => 8,
        };
        for i in 0..8 {
            if i < chars {
                out.push(A[((n >> (35 - i * 5)) & 31) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn b32dec(s: &str) -> Option<Vec<u8>> {
    let s = s.trim_end_matches('=');
    let mut bits = 0u64;
    let mut nbits = 0;
    let mut out = Vec::new();
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'2'..=b'7' => c - b'2' + 26,
            _ => return None,
        };
        bits = (bits << 5) | u64::from(v);
        nbits += 5;
        if nbits >= 8 {
            nbits -= 8;
            out.push((bits >> nbits) as u8);
            bits &= (1 << nbits) - 1;
        }
    }
    Some(out)
}

thread_local! {
    /// Compiled regular expressions: charts call the regex functions with a
    /// handful of patterns many times.
    /// Shared, not cloned: a cloned `Regex` starts with an empty match cache.
    static REGEXES: std::cell::RefCell<HashMap<String, std::rc::Rc<regex::Regex>>> =
        std::cell::RefCell::new(HashMap::new());
}

fn compile(re: &str) -> Result<std::rc::Rc<regex::Regex>, String> {
    if let Some(r) = REGEXES.with(|c| c.borrow().get(re).cloned()) {
        return Ok(r);
    }
    let r = std::rc::Rc::new(
        regex::Regex::new(&super::re2::to_rust(re))
            .map_err(|e| format!("error parsing regexp: {e}"))?,
    );
    REGEXES.with(|c| {
        let mut c = c.borrow_mut();
        if c.len() > 1024 {
            c.clear();
        }
        c.insert(re.to_string(), r.clone());
    });
    Ok(r)
}

fn regex_match(a: &[Value], must: bool) -> Result<Value, String> {
    let re = sarg(a, 0)?;
    let x = sarg(a, 1)?;
    match compile(&re) {
        Ok(r) => Ok(Value::Bool(r.is_match(&x))),
        Err(e) if must => Err(e),
        Err(_) => Ok(Value::Bool(false)),
    }
}

fn regex_find(a: &[Value], must: bool) -> Result<Value, String> {
    let re = sarg(a, 0)?;
    let x = sarg(a, 1)?;
    match compile(&re) {
        Ok(r) => s(r.find(&x).map_or("", |m| m.as_str())),
        Err(e) if must => Err(e),
        Err(_) => s(""),
    }
}

fn regex_find_all(a: &[Value], must: bool) -> Result<Value, String> {
    let re = sarg(a, 0)?;
    let x = sarg(a, 1)?;
    let n = iarg(a, 2)?;
    match compile(&re) {
        Ok(r) => {
            let it = r.find_iter(&x).map(|m| Value::str(m.as_str()));
            Ok(Value::list(if n < 0 {
                it.collect()
            } else {
                it.take(n as usize).collect()
            }))
        }
        Err(e) if must => Err(e),
        Err(_) => Ok(Value::list(Vec::new())),
    }
}

fn regex_replace(a: &[Value], literal: bool, must: bool) -> Result<Value, String> {
    let re = sarg(a, 0)?;
    let x = sarg(a, 1)?;
    let repl = sarg(a, 2)?;
    match compile(&re) {
        Ok(r) => {
            if literal {
                s(r.replace_all(&x, regex::NoExpand(&repl)).into_owned())
            } else {
                s(r.replace_all(&x, repl.as_str()).into_owned())
            }
        }
        Err(e) if must => Err(e),
        Err(_) => s(x),
    }
}

fn regex_split(a: &[Value], must: bool) -> Result<Value, String> {
    let re = sarg(a, 0)?;
    let x = sarg(a, 1)?;
    let n = iarg(a, 2)?;
    match compile(&re) {
        Ok(r) => {
            let v: Vec<Value> = if n < 0 {
                r.split(&x).map(Value::from).collect()
            } else {
                r.splitn(&x, n as usize).map(Value::from).collect()
            };
            Ok(Value::list(v))
        }
        Err(e) if must => Err(e),
        Err(_) => Ok(Value::list(Vec::new())),
    }
}

fn push(a: &[Value]) -> Result<Value, String> {
    want(a, 2, "append")?;
    let mut l = as_list(&a[0], "append")?;
    l.push(a[1].clone());
    Ok(Value::list(l))
}

fn uniq(a: &[Value]) -> Result<Value, String> {
    let l = as_list(&arg(a, 0), "uniq")?;
    let mut out: Vec<Value> = Vec::new();
    for x in l {
        if !out.iter().any(|y| y.deep_equal(&x)) {
            out.push(x);
        }
    }
    Ok(Value::list(out))
}

fn slice(a: &[Value]) -> Result<Value, String> {
    want_min(a, 1, "slice")?;
    let idx: Vec<i64> = a[1..].iter().map(to_i64).collect();
    match &a[0] {
        Value::Str(st) => {
            let l = st.len() as i64;
            let i = idx.first().copied().unwrap_or(0);
            let j = idx.get(1).copied().unwrap_or(l);
            if i < 0 || j < i || j > l {
                return Err(format!("slice: index out of range: {i}:{j}"));
            }
            s(byte_slice(st, i as usize, j as usize))
        }
        v => {
            let l = as_list(v, "slice")?;
            let n = l.len() as i64;
            let i = idx.first().copied().unwrap_or(0);
            let j = idx.get(1).copied().unwrap_or(n);
            if i < 0 || j < i || j > n {
                return Err(format!("slice: index out of range: {i}:{j}"));
            }
            Ok(Value::list(l[i as usize..j as usize].to_vec()))
        }
    }
}

fn until_step(start: i64, stop: i64, step: i64) -> Result<Value, String> {
    let mut v = Vec::new();
    if step == 0 {
        return Ok(Value::list(v));
    }
    // Charged before the list is made (the executor charges results after).
    let span = (i128::from(stop) - i128::from(start)) / i128::from(step);
    let count = u64::try_from(span.max(0)).unwrap_or(u64::MAX);
    crate::budget::charge_items(count, std::mem::size_of::<Value>() as u64)?;
    let mut i = start;
    while (step > 0 && i < stop) || (step < 0 && i > stop) {
        v.push(Value::Int(i));
        if v.len() > 10_000_000 {
            return Err("untilStep: too many elements".into());
        }
        match i.checked_add(step) {
            Some(n) => i = n,
            None => break,
        }
    }
    Ok(Value::list(v))
}

fn seq(a: &[Value]) -> Result<Value, String> {
    let p: Vec<i64> = a.iter().map(to_i64).collect();
    let (start, step, end) = match p.len() {
        0 => return s(""),
        1 => (1, if p[0] >= 1 { 1 } else { -1 }, p[0]),
        2 => (p[0], if p[1] >= p[0] { 1 } else { -1 }, p[1]),
        _ => (p[0], p[1], p[2]),
    };
    let mut out = Vec::new();
    if step == 0 {
        return s("");
    }
    let span = (i128::from(end) - i128::from(start)) / i128::from(step);
    let count = u64::try_from(span.max(0)).unwrap_or(u64::MAX);
    crate::budget::charge_items(count, 24)?;
    let mut i = start;
    while (step > 0 && i <= end) || (step < 0 && i >= end) {
        out.push(i.to_string());
        if out.len() > 10_000_000 {
            return Err("seq: too many elements".into());
        }
        match i.checked_add(step) {
            Some(n) => i = n,
            None => break,
        }
    }
    s(out.join(" "))
}

/// mergo-style deep merge of `src` into `dst` as Sprig's `merge`/`mergeOverwrite`.
pub fn mergo(dst: &Value, src: &Value, overwrite: bool) {
    mergo_at(dst, src, overwrite, 0);
}

fn mergo_at(dst: &Value, src: &Value, overwrite: bool, depth: usize) {
    let (Value::Map(d), Value::Map(sm)) = (dst, src) else {
        return;
    };
    if std::rc::Rc::ptr_eq(d, sm) {
        return;
    }
    let src_entries: Vec<(String, Value)> = sm
        .borrow()
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for (k, sv) in src_entries {
        let dv = d.borrow().get(&k).cloned();
        match (&sv, &dv) {
            (Value::Nil, _) => {
                if overwrite {
                    d.borrow_mut().insert(k, Value::Nil);
                }
            }
            (Value::Map(_), Some(dvm @ Value::Map(dm))) => {
                if dm.borrow().is_empty() {
                    d.borrow_mut().insert(k, sv.clone());
                } else {
                    crate::budget::deeper(depth, || mergo_at(dvm, &sv, overwrite, depth + 1));
                }
            }
            (_, None) => {
                d.borrow_mut().insert(k, sv.clone());
            }
            (_, Some(dvv)) => {
                if overwrite || is_empty(dvv) {
                    d.borrow_mut().insert(k, sv.clone());
                }
            }
        }
    }
}

fn merge_fn(a: &[Value], overwrite: bool) -> Result<Value, String> {
    want_min(a, 1, "merge")?;
    if !matches!(a[0], Value::Map(_)) {
        return Err(format!(
            "wrong type for value; expected map[string]interface {{}}; got {}",
            a[0].type_name()
        ));
    }
    for src in &a[1..] {
        mergo(&a[0], src, overwrite);
    }
    Ok(a[0].clone())
}

fn path_base(p: &str) -> String {
    if p.is_empty() {
        return ".".into();
    }
    let t = p.trim_end_matches('/');
    if t.is_empty() {
        return "/".into();
    }
    t.rsplit('/').next().unwrap_or(t).to_string()
}

fn path_dir(p: &str) -> String {
    match p.rfind('/') {
        Some(i) => path_clean(&p[..=i]),
        None => ".".into(),
    }
}

/// Go's `path.Clean`.
pub fn path_clean(p: &str) -> String {
    if p.is_empty() {
        return ".".into();
    }
    let rooted = p.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for seg in p.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|l| *l != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            s => parts.push(s),
        }
    }
    let j = parts.join("/");
    if rooted {
        format!("/{j}")
    } else if j.is_empty() {
        ".".into()
    } else {
        j
    }
}

/// Sprig's `urlParse` (Go's `url.Parse` fields).
fn url_parse(u: &str) -> Result<Value, String> {
    let mut rest = u;
    let mut m = BTreeMap::new();
    let mut put = |k: &str, v: &str| {
        m.insert(k.to_string(), Value::str(v));
    };
    let (r, frag) = match rest.split_once('#') {
        Some((a, b)) => (a, b),
        None => (rest, ""),
    };
    rest = r;
    let (r, query) = match rest.split_once('?') {
        Some((a, b)) => (a, b),
        None => (rest, ""),
    };
    rest = r;
    let mut scheme = "";
    if let Some(i) = rest.find(':') {
        let cand = &rest[..i];
        if !cand.is_empty()
            && cand.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
            && cand
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        {
            scheme = cand;
            rest = &rest[i + 1..];
        }
    }
    let (mut host, mut userinfo, mut path, mut opaque) = ("", "", rest, "");
    if let Some(r) = rest.strip_prefix("//") {
        let (auth, p) = match r.find('/') {
            Some(i) => (&r[..i], &r[i..]),
            None => (r, ""),
        };
        path = p;
        match auth.rsplit_once('@') {
            Some((ui, h)) => {
                userinfo = ui;
                host = h;
            }
            None => host = auth,
        }
    } else if !scheme.is_empty() && !rest.starts_with('/') {
        opaque = rest;
        path = "";
    }
    let hostname = if let Some(h) = host.strip_prefix('[') {
        h.split(']').next().unwrap_or("")
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
    put("scheme", &scheme.to_lowercase());
    put("host", host);
    put("hostname", hostname);
    put("path", path);
    put("query", query);
    put("opaque", opaque);
    put("fragment", frag);
    put("userinfo", userinfo);
    Ok(Value::map(m))
}
