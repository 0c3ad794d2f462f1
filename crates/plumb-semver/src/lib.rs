//! Masterminds/semver (v3) versions and constraints: the one implementation behind Flux's
//! `spec.ref.semver` (git tags), Helm chart versions, dependency and `kubeVersion` checks, Sprig's
//! `semverCompare`, and (soon) OCI tags. A leaf with no dependencies so that every crate that
//! needs it can use it without depending on another leaf.
//!
//! Why not the `semver` crate: its requirement grammar is Cargo's (`^0.2` and bare `1.2` mean
//! different things, no `||`, no hyphen ranges, no space-separated ANDs, no `v` prefix or
//! partial versions like `1.2`). Masterminds rules implemented here:
//! - versions: optional `v`, 1 to 3 numeric parts (missing ones are 0), `-prerelease`, `+build`;
//! - constraints: `||` separates alternatives; inside one, `,` or whitespace separates ANDs;
//!   `a - b` is `>= a, <= b`; operators `=`, `!=`, `>`, `<`, `>=`, `=>`, `<=`, `=<`, `~`, `~>`,
//!   `^`, none (= equality, honouring wildcards); `x`, `X`, `*` wildcards;
//! - `~1.2.3` is `>=1.2.3 <1.3.0`, `~1` is `>=1 <2`; `^1.2.3` is `>=1.2.3 <2`, `^0.2.3` is
//!   `>=0.2.3 <0.3.0`, `^0.0.3` is `>=0.0.3 <0.0.4`, `^0` is `<1`;
//! - a prerelease version only satisfies a constraint whose own version has a prerelease.

use std::cmp::Ordering;

/// A parsed version. Equality and order are semver precedence (build metadata is ignored).
#[derive(Debug, Clone)]
pub struct Version {
    /// Major.
    pub major: u64,
    /// Minor.
    pub minor: u64,
    /// Patch.
    pub patch: u64,
    /// Prerelease identifiers (empty when none).
    pub pre: Vec<String>,
    /// Build metadata without the `+` (empty when none); not part of precedence.
    pub build: String,
}

impl Version {
    /// Parse leniently as Masterminds `NewVersion` does (surrounding whitespace ignored, as
    /// Helm's callers did); `None` when not a version.
    pub fn parse(s: &str) -> Option<Version> {
        let s = s.trim();
        let s = s.strip_prefix('v').unwrap_or(s);
        let (s, build) = match s.split_once('+') {
            Some((v, build)) if valid_idents(build) => (v, build.to_string()),
            Some(_) => return None,
            None => (s, String::new()),
        };
        let (core, pre) = match s.split_once('-') {
            Some((c, p)) => (c, Some(p)),
            None => (s, None),
        };
        let parts: Vec<&str> = core.split('.').collect();
        if parts.is_empty() || parts.len() > 3 {
            return None;
        }
        let mut nums = [0u64; 3];
        for (i, p) in parts.iter().enumerate() {
            if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            nums[i] = p.parse().ok()?;
        }
        let pre = match pre {
            Some(p) if valid_idents(p) => p.split('.').map(str::to_string).collect(),
            Some(_) => return None,
            None => Vec::new(),
        };
        Some(Version {
            major: nums[0],
            minor: nums[1],
            patch: nums[2],
            pre,
            build,
        })
    }

    fn is_pre(&self) -> bool {
        !self.pre.is_empty()
    }

    /// The prerelease as written, without the `-` (empty when none).
    pub fn prerelease(&self) -> String {
        self.pre.join(".")
    }
}

impl PartialEq for Version {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Version {}

fn valid_idents(s: &str) -> bool {
    !s.is_empty()
        && s.split('.')
            .all(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.major, self.minor, self.patch)
            .cmp(&(other.major, other.minor, other.patch))
            .then_with(|| match (self.pre.is_empty(), other.pre.is_empty()) {
                (true, true) => Ordering::Equal,
                (true, false) => Ordering::Greater,
                (false, true) => Ordering::Less,
                (false, false) => cmp_pre(&self.pre, &other.pre),
            })
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

fn cmp_pre(a: &[String], b: &[String]) -> Ordering {
    for (x, y) in a.iter().zip(b) {
        let ord = match (x.parse::<u64>(), y.parse::<u64>()) {
            (Ok(m), Ok(n)) => m.cmp(&n),
            (Ok(_), Err(_)) => Ordering::Less,
            (Err(_), Ok(_)) => Ordering::Greater,
            (Err(_), Err(_)) => x.cmp(y),
        };
        if ord != Ordering::Equal {
            return ord;
        }
    }
    a.len().cmp(&b.len())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Gt,
    Lt,
    Ge,
    Le,
    Tilde,
    Caret,
}

/// A version with possibly wildcarded parts (`1.x`, `1`, `*`).
#[derive(Debug, Clone)]
struct Partial {
    v: Version,
    /// Number of concrete numeric parts (0 = `*`, 1 = `1.x`, 2 = `1.2.x`, 3 = full).
    known: u8,
    /// True when the missing parts were written as wildcards or omitted (Masterminds "dirty").
    dirty: bool,
}

#[derive(Debug, Clone)]
struct Single {
    op: Op,
    p: Partial,
}

/// A parsed Masterminds constraint: alternatives (`||`) of conjunctions.
#[derive(Debug, Clone)]
pub struct Constraint {
    any: Vec<Vec<Single>>,
}

impl Constraint {
    /// Parse a constraint string; the error says which part is invalid.
    pub fn parse(s: &str) -> Result<Constraint, String> {
        let mut any = Vec::new();
        for alt in s.split("||") {
            let alt = alt.trim();
            if alt.is_empty() {
                return Err(format!("empty alternative in '{s}'"));
            }
            any.push(parse_and(alt)?);
        }
        Ok(Constraint { any })
    }

    /// Whether `v` satisfies the constraint.
    pub fn matches(&self, v: &Version) -> bool {
        self.any.iter().any(|all| all.iter().all(|c| check(c, v)))
    }
}

fn parse_and(s: &str) -> Result<Vec<Single>, String> {
    // Tokenise: split on commas and whitespace, then glue operators written apart from their
    // version ("> = 1.0" is not valid, but ">= 1.0" is) and recognise hyphen ranges.
    let raw: Vec<&str> = s
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|t| !t.is_empty())
        .collect();
    let mut tokens: Vec<String> = Vec::new();
    let mut i = 0;
    while i < raw.len() {
        let t = raw[i];
        if is_op(t) {
            let next = raw
                .get(i + 1)
                .ok_or_else(|| format!("operator '{t}' without version"))?;
            tokens.push(format!("{t}{next}"));
            i += 2;
        } else {
            tokens.push(t.to_string());
            i += 1;
        }
    }
    let mut out = Vec::new();
    let mut j = 0;
    while j < tokens.len() {
        if tokens.get(j + 1).map(String::as_str) == Some("-") {
            let lo = tokens.get(j).ok_or("hyphen range without start")?;
            let hi = tokens.get(j + 2).ok_or("hyphen range without end")?;
            out.push(Single {
                op: Op::Ge,
                p: partial(lo)?,
            });
            out.push(Single {
                op: Op::Le,
                p: partial(hi)?,
            });
            j += 3;
        } else {
            out.push(single(&tokens[j])?);
            j += 1;
        }
    }
    Ok(out)
}

fn is_op(t: &str) -> bool {
    matches!(
        t,
        "=" | "!=" | ">" | "<" | ">=" | "=>" | "<=" | "=<" | "~" | "~>" | "^"
    )
}

fn single(t: &str) -> Result<Single, String> {
    const OPS: [(&str, Op); 11] = [
        ("!=", Op::Ne),
        (">=", Op::Ge),
        ("=>", Op::Ge),
        ("<=", Op::Le),
        ("=<", Op::Le),
        ("~>", Op::Tilde),
        ("=", Op::Eq),
        (">", Op::Gt),
        ("<", Op::Lt),
        ("~", Op::Tilde),
        ("^", Op::Caret),
    ];
    for (sym, op) in OPS {
        if let Some(rest) = t.strip_prefix(sym) {
            return Ok(Single {
                op,
                p: partial(rest.trim())?,
            });
        }
    }
    Ok(Single {
        op: Op::Eq,
        p: partial(t)?,
    })
}

fn partial(s: &str) -> Result<Partial, String> {
    let bad = || format!("invalid version '{s}'");
    let body = s.strip_prefix('v').unwrap_or(s);
    if body.is_empty() {
        return Err(bad());
    }
    let body = body.split_once('+').map_or(body, |(v, _)| v);
    let (core, pre) = match body.split_once('-') {
        Some((c, p)) => (c, Some(p)),
        None => (body, None),
    };
    let parts: Vec<&str> = core.split('.').collect();
    if parts.len() > 3 {
        return Err(bad());
    }
    let mut nums = [0u64; 3];
    let mut known = 0u8;
    let mut dirty = parts.len() < 3;
    for (i, p) in parts.iter().enumerate() {
        if matches!(*p, "x" | "X" | "*") {
            dirty = true;
            break;
        }
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        nums[i] = p.parse().map_err(|_| bad())?;
        known += 1;
    }
    let pre = match pre {
        Some(p) if valid_idents(p) => p.split('.').map(str::to_string).collect(),
        Some(_) => return Err(bad()),
        None => Vec::new(),
    };
    Ok(Partial {
        v: Version {
            major: nums[0],
            minor: nums[1],
            patch: nums[2],
            pre,
            build: String::new(),
        },
        known,
        dirty,
    })
}

/// Lowest version outside the wildcard range of `p` (e.g. `1.2.x` -> `1.3.0`); `None` for `*`.
fn wildcard_upper(p: &Partial) -> Option<Version> {
    let v = &p.v;
    match p.known {
        0 => None,
        1 => Some(ver(v.major + 1, 0, 0)),
        2 => Some(ver(v.major, v.minor + 1, 0)),
        _ => Some(ver(v.major, v.minor, v.patch + 1)),
    }
}

fn ver(major: u64, minor: u64, patch: u64) -> Version {
    Version {
        major,
        minor,
        patch,
        pre: Vec::new(),
        build: String::new(),
    }
}

fn check(c: &Single, v: &Version) -> bool {
    // Prerelease versions only satisfy constraints that themselves name a prerelease.
    if v.is_pre() && !c.p.v.is_pre() {
        return false;
    }
    let base = &c.p.v;
    let core = |x: &Version| ver(x.major, x.minor, x.patch);
    match c.op {
        Op::Eq | Op::Ne => {
            let eq = if c.p.dirty {
                let lo = base;
                match wildcard_upper(&c.p) {
                    None => true,
                    Some(hi) => core(v) >= core(lo) && core(v) < hi,
                }
            } else {
                v == base
            };
            if c.op == Op::Eq { eq } else { !eq }
        }
        Op::Gt => {
            if c.p.dirty {
                match wildcard_upper(&c.p) {
                    None => false,
                    Some(hi) => core(v) >= hi,
                }
            } else {
                v > base
            }
        }
        Op::Ge => v >= base,
        Op::Lt => v < base,
        Op::Le => {
            if c.p.dirty {
                match wildcard_upper(&c.p) {
                    None => true,
                    Some(hi) => core(v) < hi,
                }
            } else {
                v <= base
            }
        }
        Op::Tilde => {
            if v < base {
                return false;
            }
            let hi = match c.p.known {
                0 => return true,
                1 => ver(base.major + 1, 0, 0),
                _ => ver(base.major, base.minor + 1, 0),
            };
            core(v) < hi
        }
        Op::Caret => {
            if v < base {
                return false;
            }
            let hi = if base.major > 0 || c.p.known <= 1 {
                ver(base.major + 1, 0, 0)
            } else if base.minor > 0 || c.p.known == 2 {
                ver(0, base.minor + 1, 0)
            } else {
                ver(0, 0, base.patch + 1)
            };
            core(v) < hi
        }
    }
}

/// Among `tags`, the one whose version is the highest satisfying `range`; ties (e.g. `v1.0.0`
/// and `1.0.0`) resolve to the tag that sorts last by name, deterministically.
pub fn highest_match<'a, I>(range: &str, tags: I) -> Result<Option<&'a str>, String>
where
    I: IntoIterator<Item = &'a str>,
{
    let c = Constraint::parse(range)?;
    let mut best: Option<(Version, &'a str)> = None;
    for tag in tags {
        let Some(v) = Version::parse(tag) else {
            continue;
        };
        if !c.matches(&v) {
            continue;
        }
        let better = match &best {
            None => true,
            Some((bv, bt)) => v > *bv || (v == *bv && tag > *bt),
        };
        if better {
            best = Some((v, tag));
        }
    }
    Ok(best.map(|(_, t)| t))
}

/// Does `version` satisfy `constraint`? Helm's and Sprig's entry point (`semverCompare`,
/// chart dependencies, `kubeVersion`); the error names an invalid version or constraint.
pub fn constraint_matches(constraint: &str, version: &str) -> Result<bool, String> {
    let v = Version::parse(version).ok_or_else(|| "Invalid Semantic Version".to_string())?;
    Ok(Constraint::parse(constraint)?.matches(&v))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(c: &str, v: &str) -> bool {
        Constraint::parse(c)
            .unwrap()
            .matches(&Version::parse(v).unwrap())
    }

    #[test]
    fn versions_parse_leniently() {
        assert_eq!(Version::parse("v1.2").unwrap(), ver(1, 2, 0));
        assert_eq!(Version::parse("1").unwrap(), ver(1, 0, 0));
        assert!(Version::parse("1.2.3-rc.1+build.5").unwrap().is_pre());
        for bad in ["", "v", "1.2.3.4", "latest", "1.a", "1.2.3-", "1..2"] {
            assert!(Version::parse(bad).is_none(), "{bad}");
        }
        assert!(Version::parse("1.0.0-alpha") < Version::parse("1.0.0-alpha.1"));
        assert!(Version::parse("1.0.0-alpha.beta") < Version::parse("1.0.0-beta"));
        assert!(Version::parse("1.0.0-beta.2") < Version::parse("1.0.0-beta.11"));
        assert!(Version::parse("1.0.0-rc.1") < Version::parse("1.0.0"));
    }

    #[test]
    fn operators() {
        assert!(m(">= 1.0 < 2.0", "1.5.0"));
        assert!(!m(">= 1.0 < 2.0", "2.0.0"));
        assert!(m(">=1.0, <2.0", "1.0.0"));
        assert!(m("!=1.2.3", "1.2.4"));
        assert!(!m("!=1.2.3", "1.2.3"));
        assert!(m("=1.2.3", "v1.2.3"));
        assert!(m("1.2.3", "1.2.3"));
        assert!(m("=> 1.2", "1.2.0"));
        assert!(m("=<1.2", "1.2.0"));
        assert!(!m(">1.2", "1.2.0"));
    }

    #[test]
    fn tilde_caret() {
        assert!(m("~1.2.3", "1.2.9"));
        assert!(!m("~1.2.3", "1.3.0"));
        assert!(m("~1", "1.9.0"));
        assert!(!m("~1", "2.0.0"));
        assert!(m("~>1.2", "1.2.5"));
        assert!(m("^1.2.3", "1.9.9"));
        assert!(!m("^1.2.3", "2.0.0"));
        assert!(m("^0.2.3", "0.2.9"));
        assert!(!m("^0.2.3", "0.3.0"));
        assert!(m("^0.0.3", "0.0.3"));
        assert!(!m("^0.0.3", "0.0.4"));
        assert!(m("^0", "0.9.0"));
        assert!(!m("^0", "1.0.0"));
        assert!(m("^0.0", "0.0.9"));
        assert!(!m("^0.0", "0.1.0"));
    }

    #[test]
    fn wildcards_hyphen_or() {
        assert!(m("1.2.x", "1.2.7"));
        assert!(!m("1.2.x", "1.3.0"));
        assert!(m("*", "4.0.0"));
        assert!(m("1.x", "1.9.0"));
        assert!(m(">1.x", "2.0.0"));
        assert!(!m(">1.x", "1.9.0"));
        assert!(m("<=1.2.x", "1.2.9"));
        assert!(!m("<=1.2.x", "1.3.0"));
        assert!(m("1.2 - 1.4.5", "1.4.5"));
        assert!(!m("1.2 - 1.4.5", "1.4.6"));
        assert!(!m("1.2 - 1.4.5", "1.1.9"));
        assert!(m("<1.0 || >=3.0", "3.1.0"));
        assert!(m("<1.0 || >=3.0", "0.5.0"));
        assert!(!m("<1.0 || >=3.0", "2.0.0"));
    }

    #[test]
    fn prereleases() {
        assert!(!m(">=1.0.0", "1.5.0-beta.1"));
        assert!(m(">=1.0.0-0", "1.5.0-beta.1"));
        assert!(m(">=1.2.3-alpha", "1.2.3-beta"));
        assert!(!m("*", "1.0.0-rc.1"));
    }

    #[test]
    fn invalid_constraints() {
        for bad in ["", ">=", "1.2.3.4", "abc", ">= 1 ||"] {
            assert!(Constraint::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn picks_highest() {
        let tags = [
            "v0.9.0",
            "v1.0.0",
            "v1.2.0",
            "v1.10.0",
            "v2.0.0",
            "v1.11.0-rc.1",
            "latest",
        ];
        assert_eq!(highest_match("^1.0", tags).unwrap(), Some("v1.10.0"));
        assert_eq!(highest_match(">=3", tags).unwrap(), None);
        assert_eq!(
            highest_match(">=1.11.0-0 <2.0.0-0", tags).unwrap(),
            Some("v1.11.0-rc.1")
        );
        // Masterminds checks the prerelease rule per constraint: `<2` rejects every prerelease.
        assert_eq!(highest_match(">=1.11.0-0 <2", tags).unwrap(), None);
    }

    /// The cases Helm's copy was tested with (kubeVersion checks, Sprig's `semverCompare`).
    #[test]
    fn masterminds_rules_as_helm_uses_them() {
        let m = |c: &str, v: &str| constraint_matches(c, v).unwrap();
        assert!(m(">=1.21-0", "v1.30.0"));
        assert!(m(">=1.19-0", "1.19.3-eks.1"));
        assert!(!m(">=1.19", "1.19.3-eks.1"));
        assert!(m("<1.25.0-0", "1.24.9"));
        assert!(m("~1.2.3", "1.2.9"));
        assert!(!m("~1.2.3", "1.3.0"));
        assert!(m("^1.2", "1.9.0"));
        assert!(m("1.2.x", "1.2.7"));
        assert!(m(">= 1.2, < 2", "1.5.0"));
        assert!(m("<1.0 || >=1.30", "1.30.0"));
        assert!(m("1.0 - 2.0", "1.5.0"));
        assert!(constraint_matches(">=1", "latest").is_err());
        assert!(constraint_matches(">=abc", "1.0.0").is_err());
    }

    #[test]
    fn build_metadata_is_kept_but_not_compared() {
        let v = Version::parse(" v1.2.3-rc.1+build.5 ").unwrap();
        assert_eq!(v.build, "build.5");
        assert_eq!(v.prerelease(), "rc.1");
        assert_eq!(v, Version::parse("1.2.3-rc.1").unwrap());
    }
}
