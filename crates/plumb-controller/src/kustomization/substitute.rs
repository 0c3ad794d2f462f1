//! Flux's postBuild variable substitution: `${var}`, `${var:=default}`, `${var:-default}`
//! (and the `=`/`-` forms without the colon), with `$${` as an escape for a literal `${`.
//!
//! Hand-written because Flux's syntax is a subset of shell parameter expansion (drone's
//! envsubst) and the shell-expansion crates accept far more (`$var`, `${var#...}`,
//! command substitution) than Flux does, which would change what manifests mean.

use std::collections::BTreeMap;

/// A variable without a value under strict substitution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing(pub String);

/// Substitutes variables in `text`. With `strict`, a variable without a value and without
/// a default is an error; otherwise it becomes the empty string (Flux's default).
pub fn substitute(
    text: &str,
    vars: &BTreeMap<String, String>,
    strict: bool,
) -> Result<String, Missing> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos..];
        if let Some(tail) = after.strip_prefix("$${") {
            out.push_str("${");
            rest = tail;
            continue;
        }
        let Some(body_start) = after.strip_prefix("${") else {
            out.push('$');
            rest = &after[1..];
            continue;
        };
        let Some(end) = body_start.find('}') else {
            out.push_str(after);
            rest = "";
            break;
        };
        let body = &body_start[..end];
        match expand(body, vars, strict)? {
            Some(v) => out.push_str(&v),
            // Not a variable reference Flux recognises: keep it verbatim.
            None => out.push_str(&after[..end + 3]),
        }
        rest = &body_start[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn is_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

fn expand(
    body: &str,
    vars: &BTreeMap<String, String>,
    strict: bool,
) -> Result<Option<String>, Missing> {
    // Operators, longest first: `:=` and `:-` use the default when unset or empty,
    // `=` and `-` only when unset.
    for (op, empty_too) in [(":=", true), (":-", true), ("=", false), ("-", false)] {
        if let Some((name, default)) = body.split_once(op)
            && is_name(name)
        {
            let value = vars.get(name).filter(|v| !(empty_too && v.is_empty()));
            return Ok(Some(value.cloned().unwrap_or_else(|| default.to_string())));
        }
    }
    if !is_name(body) {
        return Ok(None);
    }
    match vars.get(body) {
        Some(v) => Ok(Some(v.clone())),
        None if strict => Err(Missing(body.to_string())),
        None => Ok(Some(String::new())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> BTreeMap<String, String> {
        BTreeMap::from([
            ("cluster".to_string(), "prod".to_string()),
            ("empty".to_string(), String::new()),
        ])
    }

    #[test]
    fn forms() {
        let v = vars();
        assert_eq!(substitute("a-${cluster}-b", &v, false).unwrap(), "a-prod-b");
        assert_eq!(substitute("${nope:=x}", &v, false).unwrap(), "x");
        assert_eq!(substitute("${nope:-y}", &v, false).unwrap(), "y");
        assert_eq!(substitute("${empty:-y}", &v, false).unwrap(), "y");
        assert_eq!(substitute("${empty-y}", &v, false).unwrap(), "");
        assert_eq!(substitute("${nope}", &v, false).unwrap(), "");
        assert_eq!(
            substitute("$${cluster} $HOME $5", &v, false).unwrap(),
            "${cluster} $HOME $5"
        );
        assert_eq!(
            substitute("${not a var}", &v, false).unwrap(),
            "${not a var}"
        );
        assert_eq!(
            substitute("${unterminated", &v, false).unwrap(),
            "${unterminated"
        );
    }

    #[test]
    fn strict_reports_the_missing_variable() {
        assert_eq!(
            substitute("x: ${missing}", &vars(), true),
            Err(Missing("missing".to_string()))
        );
        assert_eq!(
            substitute("x: ${missing:=d}", &vars(), true).unwrap(),
            "x: d"
        );
    }
}
