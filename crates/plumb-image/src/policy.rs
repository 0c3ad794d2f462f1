//! ImagePolicy evaluation with Flux's semantics: `filterTags` keeps the tags matching
//! `pattern` and maps each to the expansion of `extract` (Go's `Regexp.Expand`: `$name`,
//! `${name}`, `$1`); the policy compares the expanded values and the original tag of the
//! winner is the result.
//!
//! * semver: the highest version satisfying the Masterminds range; values that are not
//!   versions are skipped;
//! * alphabetical: byte order; `asc` picks the last value, `desc` the first;
//! * numerical: values parsed as floats (one that is not a number is an error, as Flux);
//!   `asc` picks the largest, `desc` the smallest.

use std::cmp::Ordering;

use regex::Regex;

use crate::Error;

/// Sort order of the alphabetical and numerical policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Order {
    /// The highest value wins.
    #[default]
    Asc,
    /// The lowest value wins.
    Desc,
}

/// Which rule picks the latest tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyKind {
    /// The highest version within a range.
    SemVer(String),
    /// Byte-wise string order.
    Alphabetical(Order),
    /// Float order.
    Numerical(Order),
}

/// The compiled `filterTags`.
#[derive(Debug, Clone)]
pub struct TagFilter {
    regex: Regex,
    extract: Option<String>,
}

impl TagFilter {
    /// Compiles `pattern` (empty matches everything); `extract` empty or unset keeps the tag.
    pub fn new(pattern: &str, extract: Option<&str>) -> Result<Self, Error> {
        let regex = Regex::new(pattern).map_err(|e| Error::Regex {
            pattern: pattern.to_owned(),
            message: e.to_string(),
        })?;
        let extract = extract.filter(|e| !e.is_empty()).map(str::to_owned);
        Ok(Self { regex, extract })
    }

    /// The value compared for `tag`, or `None` when the tag does not match.
    pub fn apply(&self, tag: &str) -> Option<String> {
        let caps = self.regex.captures(tag)?;
        Some(match &self.extract {
            Some(template) => {
                let mut out = String::new();
                caps.expand(template, &mut out);
                out
            }
            None => tag.to_owned(),
        })
    }
}

/// A compiled ImagePolicy.
#[derive(Debug, Clone)]
pub struct Policy {
    kind: PolicyKind,
    filter: Option<TagFilter>,
}

impl Policy {
    /// Validates the policy (the semver range parses) and keeps the filter.
    pub fn new(kind: PolicyKind, filter: Option<TagFilter>) -> Result<Self, Error> {
        if let PolicyKind::SemVer(range) = &kind {
            plumb_semver::Constraint::parse(range).map_err(|message| Error::Range {
                range: range.clone(),
                message,
            })?;
        }
        Ok(Self { kind, filter })
    }

    /// The latest of `tags` by the policy (the original tag, not the extracted value);
    /// `None` when no tag passes the filter and the policy.
    pub fn latest<'a>(&self, tags: &'a [String]) -> Result<Option<&'a str>, Error> {
        // (compared value, original tag); without a filter the value is the tag itself.
        let candidates: Vec<(std::borrow::Cow<'a, str>, &'a str)> = match &self.filter {
            Some(f) => tags
                .iter()
                .filter_map(|t| f.apply(t).map(|v| (v.into(), t.as_str())))
                .collect(),
            None => tags
                .iter()
                .map(|t| (t.as_str().into(), t.as_str()))
                .collect(),
        };
        match &self.kind {
            PolicyKind::SemVer(range) => semver_latest(range, &candidates),
            PolicyKind::Alphabetical(order) => Ok(pick(&candidates, *order, |a, b| a.cmp(b))),
            PolicyKind::Numerical(order) => numerical_latest(&candidates, *order),
        }
    }
}

type Candidate<'a> = (std::borrow::Cow<'a, str>, &'a str);

fn semver_latest<'a>(range: &str, candidates: &[Candidate<'a>]) -> Result<Option<&'a str>, Error> {
    let c = plumb_semver::Constraint::parse(range).map_err(|message| Error::Range {
        range: range.to_owned(),
        message,
    })?;
    let mut best: Option<(plumb_semver::Version, &'a str)> = None;
    for (value, tag) in candidates {
        let Some(v) = plumb_semver::Version::parse(value) else {
            continue;
        };
        if !c.matches(&v) {
            continue;
        }
        // Equal versions (`v1.0.0`, `1.0.0`): the tag sorting last wins, deterministically.
        let better = match &best {
            None => true,
            Some((bv, bt)) => v > *bv || (v == *bv && *tag > *bt),
        };
        if better {
            best = Some((v, tag));
        }
    }
    Ok(best.map(|(_, t)| t))
}

fn numerical_latest<'a>(
    candidates: &[Candidate<'a>],
    order: Order,
) -> Result<Option<&'a str>, Error> {
    let mut parsed = Vec::with_capacity(candidates.len());
    for (value, tag) in candidates {
        let n: f64 = value
            .parse()
            .map_err(|_| Error::NotNumeric(value.to_string()))?;
        if n.is_nan() {
            return Err(Error::NotNumeric(value.to_string()));
        }
        parsed.push((n, *tag));
    }
    let best = parsed.iter().copied().reduce(|best, cur| {
        let ord = cur.0.total_cmp(&best.0).then_with(|| cur.1.cmp(best.1));
        match (order, ord) {
            (Order::Asc, Ordering::Greater) | (Order::Desc, Ordering::Less) => cur,
            _ => best,
        }
    });
    Ok(best.map(|(_, t)| t))
}

fn pick<'a>(
    candidates: &[Candidate<'a>],
    order: Order,
    cmp: impl Fn(&str, &str) -> Ordering,
) -> Option<&'a str> {
    let by = |a: &&Candidate<'a>, b: &&Candidate<'a>| cmp(&a.0, &b.0).then_with(|| a.1.cmp(b.1));
    let best = match order {
        Order::Asc => candidates.iter().max_by(by),
        Order::Desc => candidates.iter().min_by(by),
    };
    best.map(|(_, t)| *t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(t: &[&str]) -> Vec<String> {
        t.iter().map(|s| s.to_string()).collect()
    }

    fn latest(kind: PolicyKind, filter: Option<(&str, &str)>, t: &[&str]) -> Option<String> {
        let f = filter.map(|(p, e)| TagFilter::new(p, Some(e)).unwrap());
        let list = tags(t);
        Policy::new(kind, f)
            .unwrap()
            .latest(&list)
            .unwrap()
            .map(str::to_owned)
    }

    #[test]
    fn semver_range_picks_highest_and_skips_non_versions() {
        let t = [
            "1.0.0",
            "1.2.3",
            "v1.4.0",
            "2.0.0",
            "latest",
            "1.5.0-rc.1",
            "main-abc",
        ];
        let k = |r: &str| PolicyKind::SemVer(r.to_owned());
        assert_eq!(
            latest(k(">=1.0.0 <2.0.0"), None, &t).as_deref(),
            Some("v1.4.0")
        );
        assert_eq!(latest(k("^1.x"), None, &t).as_deref(), Some("v1.4.0"));
        assert_eq!(latest(k(">=1.0.0"), None, &t).as_deref(), Some("2.0.0"));
        // A prerelease only satisfies a range with a prerelease (Masterminds).
        assert_eq!(latest(k(">=1.5.0-0"), None, &t).as_deref(), Some("2.0.0"));
        assert_eq!(
            latest(k("~1.5.0-0"), None, &t).as_deref(),
            Some("1.5.0-rc.1")
        );
        assert_eq!(latest(k(">=3"), None, &t), None);
    }

    #[test]
    fn semver_with_extracted_version() {
        // Flux's docs: `^v(?P<version>.*)-rc$` with `$version`.
        let t = ["v1.0.0-rc", "v1.1.0-rc", "v1.2.0", "v2.0.0-rc"];
        let f = Some((r"^v(?P<version>.*)-rc$", "$version"));
        let k = PolicyKind::SemVer("^1.0".to_owned());
        assert_eq!(latest(k, f, &t).as_deref(), Some("v1.1.0-rc"));
    }

    #[test]
    fn numerical_with_timestamp_extract() {
        // Flux's docs: `^main-[a-fA-F0-9]+-(?P<ts>.*)` with `$ts`.
        let t = [
            "main-abc123-1611569400",
            "main-def456-1611569500",
            "dev-1",
            "main-0a1-9",
        ];
        let f = Some(("^main-[a-fA-F0-9]+-(?P<ts>.*)", "$ts"));
        let asc = PolicyKind::Numerical(Order::Asc);
        assert_eq!(
            latest(asc, f, &t).as_deref(),
            Some("main-def456-1611569500")
        );
        let desc = PolicyKind::Numerical(Order::Desc);
        assert_eq!(latest(desc, f, &t).as_deref(), Some("main-0a1-9"));
    }

    #[test]
    fn numerical_rejects_non_numbers_as_flux() {
        let list = tags(&["1", "2", "x"]);
        let p = Policy::new(PolicyKind::Numerical(Order::Asc), None).unwrap();
        assert!(matches!(p.latest(&list), Err(Error::NotNumeric(v)) if v == "x"));
        let p = Policy::new(PolicyKind::Numerical(Order::Asc), None).unwrap();
        assert_eq!(p.latest(&tags(&["9", "10", "1.5"])).unwrap(), Some("10"));
    }

    #[test]
    fn alphabetical_orders() {
        // Flux's docs: given the letters as tags, asc selects Z and desc selects A.
        let t = ["a", "Z", "b", "A", "z"];
        let asc = PolicyKind::Alphabetical(Order::Asc);
        assert_eq!(latest(asc, None, &t).as_deref(), Some("z"));
        let desc = PolicyKind::Alphabetical(Order::Desc);
        assert_eq!(latest(desc, None, &t).as_deref(), Some("A"));
        // RFC 3339 timestamps extracted from `main-<sha>-<ts>` sort alphabetically.
        let t = ["main-a-2021-01-01T00:00:00Z", "main-b-2022-01-01T00:00:00Z"];
        let f = Some((r"^main-[a-f0-9]+-(?P<ts>.+)$", "${ts}"));
        let asc = PolicyKind::Alphabetical(Order::Asc);
        assert_eq!(
            latest(asc, f, &t).as_deref(),
            Some("main-b-2022-01-01T00:00:00Z")
        );
    }

    #[test]
    fn filter_without_extract_keeps_the_tag_and_empty_pattern_keeps_all() {
        let f = TagFilter::new("^prod-", None).unwrap();
        assert_eq!(f.apply("prod-1").as_deref(), Some("prod-1"));
        assert_eq!(f.apply("dev-1"), None);
        let all = TagFilter::new("", Some("")).unwrap();
        assert_eq!(all.apply("anything").as_deref(), Some("anything"));
    }

    #[test]
    fn invalid_input_is_a_clear_error() {
        let e = Policy::new(PolicyKind::SemVer("not a range!".into()), None).unwrap_err();
        assert!(e.to_string().contains("not a range!"), "{e}");
        let e = TagFilter::new("(?P<x", None).unwrap_err();
        assert!(e.to_string().contains("(?P<x"), "{e}");
    }

    #[test]
    fn no_candidates_is_none() {
        let p = Policy::new(PolicyKind::Alphabetical(Order::Asc), None).unwrap();
        assert_eq!(p.latest(&[]).unwrap(), None);
    }
}
