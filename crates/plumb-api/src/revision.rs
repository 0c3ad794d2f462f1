//! Flux's revision format: `[<reference>@]<algorithm>:<digest>`.
//!
//! GitRepository artifacts are `main@sha1:<hex>` for a branch, `v1.0.0@sha1:<hex>` for a tag or
//! semver match, `refs/pull/1/head@sha1:<hex>` for a named reference and `sha1:<hex>` for a
//! bare commit; SHA-256 repositories and OCI artifacts use `sha256:`. Flux before v2.0 wrote
//! `<branch>/<hex>`; [`Revision::parse`] accepts that legacy form too so that status written by
//! old controllers can be compared.

use std::fmt;
use std::str::FromStr;

use crate::Error;
use crate::consts::REVISION_SHA1;

/// A parsed revision.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Revision {
    /// Branch, tag or reference name; `None` for a bare digest.
    pub reference: Option<String>,
    /// Digest algorithm, e.g. `sha1`.
    pub algorithm: String,
    /// Encoded digest (hex for Git).
    pub digest: String,
}

impl Revision {
    /// A revision of a named reference, e.g. `main@sha1:<hex>`.
    pub fn new(reference: Option<&str>, algorithm: &str, digest: &str) -> Self {
        Self {
            reference: reference.filter(|r| !r.is_empty()).map(str::to_owned),
            algorithm: algorithm.to_owned(),
            digest: digest.to_owned(),
        }
    }

    /// A Git SHA-1 revision: `<reference>@sha1:<hex>` or `sha1:<hex>` without reference.
    pub fn git_sha1(reference: Option<&str>, commit: &str) -> Self {
        Self::new(reference, REVISION_SHA1, commit)
    }

    /// Parses a revision (see the module docs).
    pub fn parse(s: &str) -> Result<Self, Error> {
        s.parse()
    }

    /// `<algorithm>:<digest>`, the part after `@`.
    pub fn digest_part(&self) -> String {
        format!("{}:{}", self.algorithm, self.digest)
    }

    /// Whether both revisions name the same content (ignoring the reference).
    pub fn same_digest(&self, other: &Revision) -> bool {
        self.algorithm == other.algorithm && self.digest.eq_ignore_ascii_case(&other.digest)
    }
}

impl fmt::Display for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.reference {
            Some(r) => write!(f, "{r}@{}:{}", self.algorithm, self.digest),
            None => write!(f, "{}:{}", self.algorithm, self.digest),
        }
    }
}

fn valid_algorithm(a: &str) -> bool {
    !a.is_empty()
        && a.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+._-".contains(&b))
}

fn valid_digest(d: &str) -> bool {
    !d.is_empty()
        && d.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"=_-".contains(&b))
}

impl FromStr for Revision {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |why: &str| Error::InvalidRevision {
            revision: s.to_owned(),
            reason: why.to_owned(),
        };
        if s.is_empty() {
            return Err(bad("empty"));
        }
        let (reference, rest) = match s.rsplit_once('@') {
            Some(("", _)) => return Err(bad("empty reference before '@'")),
            Some((r, rest)) => (Some(r), rest),
            None => (None, s),
        };
        if let Some((algorithm, digest)) = rest.split_once(':') {
            if !valid_algorithm(algorithm) {
                return Err(bad("invalid digest algorithm"));
            }
            if !valid_digest(digest) {
                return Err(bad("invalid digest"));
            }
            return Ok(Self::new(reference, algorithm, digest));
        }
        // Legacy `<branch>/<40 hex>` (Flux < 2.0).
        if reference.is_none()
            && let Some((branch, hex)) = s.rsplit_once('/')
            && !branch.is_empty()
            && hex.len() == 40
            && hex.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return Ok(Self::git_sha1(Some(branch), hex));
        }
        Err(bad("expected [<reference>@]<algorithm>:<digest>"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "5394cb7f48332b2de7c17dd8b8384bbc84b7e738";

    #[test]
    fn formats() {
        assert_eq!(
            Revision::git_sha1(Some("main"), SHA).to_string(),
            format!("main@sha1:{SHA}")
        );
        assert_eq!(
            Revision::git_sha1(None, SHA).to_string(),
            format!("sha1:{SHA}")
        );
        assert_eq!(
            Revision::git_sha1(Some(""), SHA).to_string(),
            format!("sha1:{SHA}")
        );
        assert_eq!(
            Revision::new(Some("latest"), "sha256", "abc").to_string(),
            "latest@sha256:abc"
        );
    }

    #[test]
    fn parses_and_round_trips() {
        for s in [
            format!("main@sha1:{SHA}"),
            format!("sha1:{SHA}"),
            format!("v1.2.3@sha1:{SHA}"),
            format!("refs/pull/420/head@sha1:{SHA}"),
            format!("feature/x@y@sha1:{SHA}"),
            "6.5.1@sha256:28d1b4d5b4a1e1c3b7d0f3a7c5e1e6c4a0b9b0f9e2d2c4f3a1b1c0d9e8f7a6b5"
                .to_owned(),
        ] {
            let r = Revision::parse(&s).unwrap();
            assert_eq!(r.to_string(), s);
        }
        let r = Revision::parse(&format!("feature/x@y@sha1:{SHA}")).unwrap();
        assert_eq!(r.reference.as_deref(), Some("feature/x@y"));
        assert_eq!(r.digest_part(), format!("sha1:{SHA}"));
    }

    #[test]
    fn parses_legacy_form() {
        let r = Revision::parse(&format!("main/{SHA}")).unwrap();
        assert_eq!(r, Revision::git_sha1(Some("main"), SHA));
        assert!(r.same_digest(&Revision::git_sha1(None, SHA)));
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "",
            "main",
            "@sha1:abc",
            "main@",
            "main@sha1:",
            "main@SHA1:abc",
            "main@sha1:a b",
            "main/abc",
        ] {
            let err = Revision::parse(bad).unwrap_err();
            assert!(err.to_string().contains("invalid revision"), "{bad}");
        }
    }
}
