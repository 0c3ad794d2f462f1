//! `sparseCheckout`: only the listed directories of the commit are written (as go-git's
//! sparse checkout, which Flux uses): an entry is kept when it lies inside one of them, or is
//! a directory on the way to one. Files at the root and elsewhere are left out.

use crate::{Result, SourceError};

/// Normalised sparse directories (`./a/b/` -> `a/b`); `..`, absolute-looking or empty
/// entries that would select the whole tree or escape it are refused.
pub fn normalize(dirs: &[String]) -> Result<Vec<String>> {
    dirs.iter()
        .map(|d| {
            let t = d.trim().trim_start_matches("./").trim_matches('/');
            let bad = t.is_empty()
                || t == "."
                || t.split('/')
                    .any(|seg| seg.is_empty() || seg == "." || seg == "..");
            if bad {
                return Err(SourceError::Invalid {
                    what: "spec.sparseCheckout".to_string(),
                    detail: format!("'{d}' is not a directory path inside the repository"),
                });
            }
            Ok(t.to_string())
        })
        .collect()
}

/// Whether the entry at `rel` (a path from the repository root) is checked out.
pub(crate) fn wanted(dirs: &[String], rel: &str, is_dir: bool) -> bool {
    dirs.is_empty()
        || dirs.iter().any(|d| {
            rel == d
                || rel
                    .strip_prefix(d.as_str())
                    .is_some_and(|r| r.starts_with('/'))
                || (is_dir && d.strip_prefix(rel).is_some_and(|r| r.starts_with('/')))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_directories_and_the_way_to_them() {
        let dirs = normalize(&["./apps/prod/".into(), "infra".into()]).unwrap();
        assert_eq!(dirs, vec!["apps/prod", "infra"]);
        for (rel, is_dir, want) in [
            ("apps", true, true),
            ("apps/prod", true, true),
            ("apps/prod/a.yaml", false, true),
            ("apps/prod/x/b.yaml", false, true),
            ("apps/dev", true, false),
            ("apps/a.yaml", false, false),
            ("apps/production", true, false),
            ("infra/c.yaml", false, true),
            ("README.md", false, false),
            ("apps", false, false),
        ] {
            assert_eq!(wanted(&dirs, rel, is_dir), want, "{rel}");
        }
        assert!(wanted(&[], "anything", false));
    }

    #[test]
    fn refuses_paths_that_escape_or_select_everything() {
        for bad in ["..", "a/../b", "", "./", "a//b"] {
            assert!(normalize(&[bad.into()]).is_err(), "{bad}");
        }
    }
}
