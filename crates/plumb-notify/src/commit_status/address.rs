//! A Provider `address` as Flux's `parseGitAddress` reads it: the web or clone URL of a
//! repository (`https://host/owner/repo`, `ssh://git@host/owner/repo.git`,
//! `git@host:owner/repo.git`) split into the API host and the repository path.

use crate::NotifyError;

/// A parsed repository address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct GitAddress {
    /// `scheme://host[:port]`; SSH addresses become `https` (the API is served over HTTPS).
    pub host: String,
    /// The path without leading `/` and trailing `.git`, e.g. `owner/repo` or
    /// `group/sub/project`.
    pub path: String,
}

impl GitAddress {
    /// The host name and port, without the scheme.
    pub fn authority(&self) -> &str {
        self.host.split_once("://").map_or("", |(_, a)| a)
    }

    /// The path's segments; fails unless there are exactly `n`, all non-empty.
    pub fn segments(&self, n: usize, shape: &str) -> Result<Vec<&str>, NotifyError> {
        let parts: Vec<&str> = self.path.split('/').collect();
        if parts.len() != n || parts.iter().any(|p| p.is_empty()) {
            return Err(NotifyError::InvalidSettings(format!(
                "invalid repository id '{}' in the address, expected {shape}",
                self.path
            )));
        }
        Ok(parts)
    }
}

/// Parses `address`. Only `http`, `https` and `ssh` (URL or scp form) are accepted: any other
/// scheme names no API to post to.
pub(crate) fn parse_git_address(address: &str) -> Result<GitAddress, NotifyError> {
    let bad = |why: &str| NotifyError::InvalidSettings(format!("address: {why}"));
    let address = address.trim();
    if address.is_empty() {
        return Err(bad("empty; set spec.address or the Secret's 'address'"));
    }
    let (scheme, authority, path) = match address.split_once("://") {
        Some((scheme, rest)) => {
            let scheme = scheme.to_ascii_lowercase();
            if !matches!(scheme.as_str(), "http" | "https" | "ssh") {
                return Err(bad(&format!(
                    "unsupported scheme '{scheme}', expected http, https or ssh"
                )));
            }
            let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
            (scheme, authority, path)
        }
        // scp-like `[user@]host:path`.
        None => match address.split_once(':') {
            Some((authority, path)) if !authority.contains('/') => ("ssh".into(), authority, path),
            _ => return Err(bad("not a URL nor an scp-style git address")),
        },
    };
    let host = authority.rsplit('@').next().unwrap_or(authority);
    if host.is_empty() || host.contains(['?', '#', ' ']) {
        return Err(bad("no host"));
    }
    let path = path.split(['?', '#']).next().unwrap_or_default();
    let path = path.trim_start_matches('/');
    let path = path.strip_suffix(".git").unwrap_or(path);
    let scheme = if scheme == "ssh" { "https" } else { &scheme };
    Ok(GitAddress {
        host: format!("{scheme}://{host}"),
        path: path.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_as_flux_does() {
        for (address, host, path) in [
            (
                "https://github.com/org/repo",
                "https://github.com",
                "org/repo",
            ),
            (
                "https://github.com/org/repo.git",
                "https://github.com",
                "org/repo",
            ),
            (
                "https://token@github.com/org/repo",
                "https://github.com",
                "org/repo",
            ),
            (
                "ssh://git@github.com/org/repo.git",
                "https://github.com",
                "org/repo",
            ),
            (
                "git@github.com:org/repo.git",
                "https://github.com",
                "org/repo",
            ),
            (
                "https://ghe.example.com:8443/org/repo",
                "https://ghe.example.com:8443",
                "org/repo",
            ),
            (
                "http://127.0.0.1:3000/org/repo/",
                "http://127.0.0.1:3000",
                "org/repo/",
            ),
            (
                "https://gitlab.com/group/sub/project.git",
                "https://gitlab.com",
                "group/sub/project",
            ),
            (
                "https://dev.azure.com/org/proj/_git/repo",
                "https://dev.azure.com",
                "org/proj/_git/repo",
            ),
            (
                "https://github.com/org/repo?x=1#f",
                "https://github.com",
                "org/repo",
            ),
        ] {
            let a = parse_git_address(address).expect(address);
            assert_eq!(
                (a.host.as_str(), a.path.as_str()),
                (host, path),
                "{address}"
            );
        }
    }

    #[test]
    fn bad_addresses_are_clear_errors() {
        for address in [
            "",
            "   ",
            "ftp://h/o/r",
            "https:///o/r",
            "just-a-word",
            "/a:b",
        ] {
            let err = parse_git_address(address).expect_err(address);
            assert!(matches!(err, NotifyError::InvalidSettings(_)), "{address}");
        }
    }

    #[test]
    fn segments_checks_the_shape() {
        let a = parse_git_address("https://github.com/org/repo").expect("parse");
        assert_eq!(a.segments(2, "owner/repo").expect("2"), ["org", "repo"]);
        assert_eq!(a.authority(), "github.com");
        for address in [
            "https://github.com/org",
            "https://github.com/org/repo/extra",
            "https://github.com/org/repo/",
            "https://github.com//repo",
        ] {
            let a = parse_git_address(address).expect(address);
            assert!(a.segments(2, "owner/repo").is_err(), "{address}");
        }
    }
}
