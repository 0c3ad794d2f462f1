//! ConfigMap and Secret generators and kustomize's content hash suffix.

use std::path::Path;

use base64::Engine;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::kustomization::{GeneratorArgs, GeneratorOptions};
use crate::loader::Loader;
use crate::resource::{Res, value_string};

/// Merges global `generatorOptions` into a generator's own options (global labels and
/// annotations win, as in kustomize; the booleans are or-ed).
fn merge_options(
    local: Option<&GeneratorOptions>,
    global: Option<&GeneratorOptions>,
) -> GeneratorOptions {
    let mut o = local.cloned().unwrap_or_default();
    if let Some(g) = global {
        for (src, dst) in [
            (&g.labels, &mut o.labels),
            (&g.annotations, &mut o.annotations),
        ] {
            if let Some(src) = src {
                let d = dst.get_or_insert_with(Map::new);
                for (k, v) in src {
                    d.insert(k.clone(), v.clone());
                }
            }
        }
        if g.disable_name_suffix_hash == Some(true) {
            o.disable_name_suffix_hash = Some(true);
        }
        if g.immutable == Some(true) {
            o.immutable = Some(true);
        }
    }
    o
}

fn unquote(v: &str) -> &str {
    let b = v.as_bytes();
    if b.len() >= 2 && (b[0] == b'"' || b[0] == b'\'') && b[b.len() - 1] == b[0] {
        &v[1..v.len() - 1]
    } else {
        v
    }
}

/// Collects key/value pairs from literals, env files and files, in kustomize's order.
fn collect_pairs(
    args: &GeneratorArgs,
    dir: &Path,
    loader: &Loader,
    ctx: &str,
) -> Result<Vec<(String, Vec<u8>)>> {
    let mut pairs: Vec<(String, Vec<u8>)> = Vec::new();
    let mut add = |k: String, v: Vec<u8>| -> Result<()> {
        if pairs.iter().any(|(pk, _)| *pk == k) {
            return Err(Error::build(
                ctx,
                format!(
                    "configmap/secret {:?}: duplicate key {k:?}",
                    args.name.as_deref().unwrap_or("")
                ),
            ));
        }
        pairs.push((k, v));
        Ok(())
    };
    for lit in &args.literals {
        let (k, v) = lit.split_once('=').ok_or_else(|| {
            Error::build(ctx, format!("literal {lit:?} is not in key=value form"))
        })?;
        add(k.trim().to_string(), unquote(v).as_bytes().to_vec())?;
    }
    let envs: Vec<&String> = args.envs.iter().chain(args.env.iter()).collect();
    for env in envs {
        let path = loader.resolve(dir, env)?;
        let text = loader.read(&path)?;
        for line in text.lines() {
            let line = line.trim_start_matches('\u{feff}');
            let t = line.trim();
            if t.is_empty() || t.starts_with('#') {
                continue;
            }
            // As kustomize: leading blanks go, the key is everything up to the first `=` and
            // the value everything after it. A bare key gets the empty value (`kubectl
            // kustomize` v5.5 prints ""; a renderer must not read its own environment anyway).
            let line = line.trim_start();
            match line.split_once('=') {
                Some((k, v)) => add(k.to_string(), v.as_bytes().to_vec())?,
                None => add(line.to_string(), Vec::new())?,
            }
        }
    }
    for f in &args.files {
        let (key, rel) = match f.split_once('=') {
            Some((k, p)) => (k.trim().to_string(), p.trim()),
            None => (
                Path::new(f)
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                f.as_str(),
            ),
        };
        let path = loader.resolve(dir, rel)?;
        if loader.is_dir(&path) {
            return Err(Error::build(
                ctx,
                format!("file source {rel:?} is a directory"),
            ));
        }
        add(key, loader.read_bytes(&path)?)?;
    }
    Ok(pairs)
}

/// Runs one configMapGenerator (`secret` false) or secretGenerator entry.
pub(crate) fn generate(
    args: &GeneratorArgs,
    secret: bool,
    global: Option<&GeneratorOptions>,
    dir: &Path,
    loader: &Loader,
    ctx: &str,
) -> Result<Res> {
    let name = args
        .name
        .clone()
        .or_else(|| {
            args.metadata
                .as_ref()
                .and_then(|m| m.get("name"))
                .and_then(Value::as_str)
                .map(String::from)
        })
        .unwrap_or_default();
    if name.is_empty() {
        return Err(Error::build(ctx, "a generator needs a name"));
    }
    let opts = merge_options(args.options.as_ref(), global);
    let pairs = collect_pairs(args, dir, loader, ctx)?;
    let mut md = Map::new();
    md.insert("name".into(), Value::String(name));
    let ns = args.namespace.clone().or_else(|| {
        args.metadata
            .as_ref()
            .and_then(|m| m.get("namespace"))
            .and_then(Value::as_str)
            .map(String::from)
    });
    if let Some(ns) = ns.filter(|n| !n.is_empty()) {
        md.insert("namespace".into(), Value::String(ns));
    }
    let stringify = |m: &Map<String, Value>| -> Value {
        Value::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), Value::String(value_string(v))))
                .collect(),
        )
    };
    if let Some(l) = opts.labels.as_ref().filter(|l| !l.is_empty()) {
        md.insert("labels".into(), stringify(l));
    }
    if let Some(a) = opts.annotations.as_ref().filter(|a| !a.is_empty()) {
        md.insert("annotations".into(), stringify(a));
    }
    let mut obj = Map::new();
    obj.insert("apiVersion".into(), json!("v1"));
    obj.insert(
        "kind".into(),
        json!(if secret { "Secret" } else { "ConfigMap" }),
    );
    obj.insert("metadata".into(), Value::Object(md));
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut data = Map::new();
    let mut binary = Map::new();
    for (k, v) in pairs {
        if secret {
            data.insert(k, Value::String(wrap_base64(&b64.encode(&v))));
        } else {
            match String::from_utf8(v) {
                Ok(s) => {
                    data.insert(k, Value::String(s));
                }
                Err(e) => {
                    binary.insert(k, Value::String(b64.encode(e.as_bytes())));
                }
            }
        }
    }
    if !data.is_empty() {
        obj.insert("data".into(), Value::Object(data));
    }
    if !binary.is_empty() {
        obj.insert("binaryData".into(), Value::Object(binary));
    }
    if secret {
        obj.insert(
            "type".into(),
            Value::String(args.type_.clone().unwrap_or_else(|| "Opaque".into())),
        );
    }
    if opts.immutable == Some(true) {
        obj.insert("immutable".into(), Value::Bool(true));
    }
    let mut r = Res::new(obj);
    r.needs_hash = opts.disable_name_suffix_hash != Some(true);
    r.behavior = Some(args.behavior.clone().unwrap_or_else(|| "create".into()));
    Ok(r)
}

/// kustomize breaks base64 secret values into 70-character lines when they are longer.
fn wrap_base64(enc: &str) -> String {
    const LINE: usize = 70;
    if enc.len() / LINE == 0 {
        return enc.to_string();
    }
    let mut out = String::with_capacity(enc.len() + enc.len() / LINE + 1);
    for chunk in enc.as_bytes().chunks(LINE) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or(""));
        out.push('\n');
    }
    out
}

/// Go's `json.Marshal` string encoding (HTML-safe escapes included).
fn go_json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

fn go_json(out: &mut String, v: &Value) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                go_json_string(out, k);
                out.push(':');
                go_json(out, &m[k.as_str()]);
            }
            out.push('}');
        }
        Value::String(s) => go_json_string(out, s),
        other => out.push_str(&other.to_string()),
    }
}

/// kustomize's hash of a ConfigMap or Secret (or of any object), ten characters long.
///
/// kustomize's hasher looks the name up with a path-like key that never matches, so the name
/// is always empty in the hashed document; missing fields hash as empty strings.
pub(crate) fn content_hash(obj: &Map<String, Value>) -> String {
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
    let field = |k: &str| -> Value {
        match obj.get(k) {
            None | Some(Value::Null) => Value::String(String::new()),
            Some(v) => v.clone(),
        }
    };
    let mut m = Map::new();
    let encoded = match kind {
        "ConfigMap" | "Secret" => {
            m.insert("kind".into(), json!(kind));
            m.insert("name".into(), json!(""));
            m.insert("data".into(), field("data"));
            let extra = if kind == "ConfigMap" {
                "binaryData"
            } else {
                "stringData"
            };
            if let Some(v @ Value::Object(_)) = obj.get(extra) {
                m.insert(extra.into(), v.clone());
            }
            if kind == "Secret" {
                m.insert("type".into(), field("type"));
            }
            let mut s = String::new();
            go_json(&mut s, &Value::Object(m));
            s
        }
        _ => {
            let mut s = String::new();
            go_json(&mut s, &Value::Object(obj.clone()));
            s
        }
    };
    let hex = hex::encode(Sha256::digest(encoded.as_bytes()));
    hex[..10]
        .chars()
        .map(|c| match c {
            '0' => 'g',
            '1' => 'h',
            '3' => 'k',
            'a' => 'm',
            'e' => 't',
            c => c,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_stable_and_encoded() {
        let obj = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"}, "data": {"a": "b"}});
        let h = content_hash(obj.as_object().unwrap());
        assert_eq!(h.len(), 10);
        assert!(!h.contains(['0', '1', '3', 'a', 'e']));
    }
}
