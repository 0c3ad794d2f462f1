//! Semantic versions and constraints with the rules of Masterminds/semver v3
//! (what Sprig's `semverCompare` and Helm's dependency/kubeVersion checks use):
//! lenient versions (`v1`, `1.2`), `||`/`,` constraint groups, `~`, `^`,
//! wildcards, hyphen ranges, and pre-releases excluded unless asked for.
//! The `semver` crate implements Cargo's rules, which differ in all of these.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use crate::value::Value;

/// A parsed version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    /// Major.
    pub major: u64,
    /// Minor.
    pub minor: u64,
    /// Patch.
    pub patch: u64,
    /// Pre-release (without `-`).
    pub pre: String,
    /// Build metadata (without `+`).
    pub meta: String,
}

impl Version {
    /// Parses a version the lenient way (`NewVersion`).
    pub fn parse(s: &str) -> Option<Version> {
        let s = s.trim();
        let s = s.strip_prefix('v').unwrap_or(s);
        let (s, meta) = match s.split_once('+') {
            Some((a, b)) => (a, b.to_string()),
            None => (s, String::new()),
        };
        let (core, pre) = match s.split_once('-') {
            Some((a, b)) => (a, b.to_string()),
            None => (s, String::new()),
        };
        let parts: Vec<&str> = core.split('.').collect();
        if parts.is_empty() || parts.len() > 3 {
            return None;
        }
        let num = |p: &str| -> Option<u64> {
            if p.is_empty() || !p.bytes().all(|c| c.is_ascii_digit()) {
                return None;
            }
            p.parse().ok()
        };
        let major = num(parts[0])?;
        let minor = match parts.get(1) {
            Some(p) => num(p)?,
            None => 0,
        };
        let patch = match parts.get(2) {
            Some(p) => num(p)?,
            None => 0,
        };
        let ok_ident = |x: &str| {
            x.split('.')
                .all(|i| !i.is_empty() && i.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-'))
        };
        if (!pre.is_empty() && !ok_ident(&pre)) || (!meta.is_empty() && !ok_ident(&meta)) {
            return None;
        }
        Some(Version {
            major,
            minor,
            patch,
            pre,
            meta,
        })
    }

    /// Semver precedence.
    pub fn cmp_prec(&self, o: &Version) -> Ordering {
        (self.major, self.minor, self.patch)
            .cmp(&(o.major, o.minor, o.patch))
            .then_with(|| cmp_pre(&self.pre, &o.pre))
    }
}

fn cmp_pre(a: &str, b: &str) -> Ordering {
    match (a.is_empty(), b.is_empty()) {
        (true, true) => return Ordering::Equal,
        (true, false) => return Ordering::Greater,
        (false, true) => return Ordering::Less,
        _ => {}
    }
    let (ap, bp): (Vec<&str>, Vec<&str>) = (a.split('.').collect(), b.split('.').collect());
    for (x, y) in ap.iter().zip(bp.iter()) {
        let o = match (x.parse::<u64>(), y.parse::<u64>()) {
            (Ok(p), Ok(q)) => p.cmp(&q),
            (Ok(_), Err(_)) => Ordering::Less,
            (Err(_), Ok(_)) => Ordering::Greater,
            _ => x.cmp(y),
        };
        if o != Ordering::Equal {
            return o;
        }
    }
    ap.len().cmp(&bp.len())
}

#[derive(Debug)]
struct Con {
    op: String,
    v: Version,
    /// Number of specified numeric parts before a wildcard (3 = none).
    fixed: usize,
}

fn parse_con(op: &str, ver: &str) -> Result<Con, String> {
    let ver = ver.trim();
    let ver = ver.strip_prefix('v').unwrap_or(ver);
    let (core, rest) = match ver.find(['-', '+']) {
        Some(i) => (&ver[..i], &ver[i..]),
        None => (ver, ""),
    };
    let mut parts: Vec<String> = core.split('.').map(str::to_string).collect();
    let mut fixed = parts.len().min(3);
    for (i, p) in parts.iter_mut().enumerate() {
        if p == "x" || p == "X" || p == "*" {
            fixed = fixed.min(i);
            *p = "0".into();
        }
    }
    let full = format!("{}{rest}", parts.join("."));
    let v = Version::parse(&full).ok_or_else(|| format!("improper constraint: {op}{ver}"))?;
    Ok(Con {
        op: op.to_string(),
        v,
        fixed,
    })
}

fn check(c: &Con, v: &Version) -> bool {
    if !v.pre.is_empty() && c.v.pre.is_empty() {
        return false;
    }
    let cmp = v.cmp_prec(&c.v);
    let bump = |level: usize| -> Version {
        let mut u = c.v.clone();
        u.pre.clear();
        match level {
            0 => {
                u.major += 1;
                u.minor = 0;
                u.patch = 0;
            }
            1 => {
                u.minor += 1;
                u.patch = 0;
            }
            _ => u.patch += 1,
        }
        u
    };
    match c.op.as_str() {
        "" | "=" => {
            if c.fixed < 3 {
                let lo = &c.v;
                if c.fixed == 0 {
                    return true;
                }
                let hi = bump(c.fixed - 1);
                v.cmp_prec(lo) != Ordering::Less && v.cmp_prec(&hi) == Ordering::Less
            } else {
                cmp == Ordering::Equal
            }
        }
        "!=" => cmp != Ordering::Equal,
        ">" => {
            if c.fixed < 3 && c.fixed > 0 {
                v.cmp_prec(&bump(c.fixed - 1)) != Ordering::Less
            } else {
                cmp == Ordering::Greater
            }
        }
        "<" => cmp == Ordering::Less,
        ">=" | "=>" => cmp != Ordering::Less,
        "<=" | "=<" => {
            if c.fixed < 3 && c.fixed > 0 {
                v.cmp_prec(&bump(c.fixed - 1)) == Ordering::Less
            } else {
                cmp != Ordering::Greater
            }
        }
        "~" | "~>" => {
            if cmp == Ordering::Less {
                return false;
            }
            let level = if c.fixed <= 1 { 0 } else { 1 };
            v.cmp_prec(&bump(level)) == Ordering::Less
        }
        "^" => {
            if cmp == Ordering::Less {
                return false;
            }
            let level = if c.v.major > 0 || c.fixed <= 1 {
                0
            } else if c.v.minor > 0 || c.fixed <= 2 {
                1
            } else {
                2
            };
            v.cmp_prec(&bump(level)) == Ordering::Less
        }
        _ => false,
    }
}

fn parse_group(g: &str) -> Result<Vec<Con>, String> {
    let g = g.trim();
    // Hyphen ranges: "1.2 - 1.4".
    if let Some((a, b)) = g.split_once(" - ") {
        return Ok(vec![parse_con(">=", a)?, parse_con("<=", b)?]);
    }
    let mut out = Vec::new();
    let mut toks: Vec<String> = Vec::new();
    for t in g.split([',', ' ']).filter(|t| !t.is_empty()) {
        // Join a bare operator with the version after it (">= 1.2").
        if let Some(last) = toks.last_mut()
            && last.chars().all(|c| "<>=!~^".contains(c))
        {
            last.push_str(t);
            continue;
        }
        toks.push(t.to_string());
    }
    for t in toks {
        let opl = t.chars().take_while(|c| "<>=!~^".contains(*c)).count();
        let (op, ver) = t.split_at(opl);
        out.push(parse_con(op, ver)?);
    }
    if out.is_empty() {
        return Err(format!("improper constraint: {g}"));
    }
    Ok(out)
}

/// Does `version` satisfy `constraint`?
pub fn constraint_matches(constraint: &str, version: &str) -> Result<bool, String> {
    let v = Version::parse(version).ok_or_else(|| "Invalid Semantic Version".to_string())?;
    let mut any = false;
    for g in constraint.split("||") {
        let cons = parse_group(g)?;
        if cons.iter().all(|c| check(c, &v)) {
            any = true;
        }
    }
    Ok(any)
}

/// Sprig's `semver`: a map with the parts (fields named as Go's methods).
pub fn semver_value(s: &str) -> Result<Value, String> {
    let v = Version::parse(s).ok_or_else(|| "Invalid Semantic Version".to_string())?;
    let mut m = BTreeMap::new();
    m.insert("Major".to_string(), Value::I64(v.major as i64));
    m.insert("Minor".to_string(), Value::I64(v.minor as i64));
    m.insert("Patch".to_string(), Value::I64(v.patch as i64));
    m.insert("Prerelease".to_string(), Value::str(v.pre.as_str()));
    m.insert("Metadata".to_string(), Value::str(v.meta.as_str()));
    m.insert("Original".to_string(), Value::str(s));
    Ok(Value::map(m))
}

#[cfg(test)]
mod tests {
    use super::constraint_matches as m;

    #[test]
    fn masterminds_rules() {
        assert!(m(">=1.21-0", "v1.30.0").unwrap());
        assert!(m(">=1.19-0", "1.19.3-eks.1").unwrap());
        assert!(!m(">=1.19", "1.19.3-eks.1").unwrap());
        assert!(m("<1.25.0-0", "1.24.9").unwrap());
        assert!(m("~1.2.3", "1.2.9").unwrap());
        assert!(!m("~1.2.3", "1.3.0").unwrap());
        assert!(m("^1.2", "1.9.0").unwrap());
        assert!(m("1.2.x", "1.2.7").unwrap());
        assert!(m(">= 1.2, < 2", "1.5.0").unwrap());
        assert!(m("<1.0 || >=1.30", "1.30.0").unwrap());
        assert!(m("1.0 - 2.0", "1.5.0").unwrap());
    }
}
