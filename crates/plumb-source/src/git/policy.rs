//! What a fetch may cost and where credentials may go.
//!
//! [`FetchLimits`] bounds one pack download (bytes and objects, checked from libgit2's
//! transfer progress, so a hostile server is cut off while it sends). Submodule URLs come
//! from the repository's own `.gitmodules`, i.e. from whoever can push: only network
//! transports are accepted ([`check_submodule_url`]: `https://`, `http://`, `ssh://` and
//! scp-like), never `file://` or a local path, and the parent's credentials go only to a
//! submodule on the same origin (scheme class, host, port: [`same_origin`]).

use crate::{Result, SourceError};

/// Caps on one fetch (per remote, submodules included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchLimits {
    /// Most bytes of pack data received.
    pub max_bytes: u64,
    /// Most objects in the pack.
    pub max_objects: u64,
}

impl Default for FetchLimits {
    fn default() -> FetchLimits {
        FetchLimits {
            max_bytes: 1 << 30,
            max_objects: 2_000_000,
        }
    }
}

/// The origin credentials are scoped to: (`ssh` or the URL scheme, lower-cased host, port).
fn origin(url: &str) -> Option<(String, String, u16)> {
    if !url.contains("://") && url.contains("::") {
        return None; // `ext::` and other remote helpers, not an scp-like host
    }
    if let Some((host, port)) = super::ssh_host_port(url).filter(|_| super::is_ssh(url)) {
        return Some(("ssh".to_string(), host.to_ascii_lowercase(), port));
    }
    let (scheme, rest) = url.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "http" => 80,
        "https" => 443,
        _ => return None,
    };
    let authority = rest.split(['/', '?', '#']).next()?;
    let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (host, port) = if let Some(h) = hostport.strip_prefix('[') {
        let (h, tail) = h.split_once(']')?;
        (h, tail.strip_prefix(':'))
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    let port = match port {
        Some(p) => p.parse().ok()?,
        None => default_port,
    };
    (!host.is_empty()).then(|| (scheme, host.to_ascii_lowercase(), port))
}

/// Whether `a` and `b` are on the same origin (credentials may be shared).
pub(crate) fn same_origin(a: &str, b: &str) -> bool {
    matches!((origin(a), origin(b)), (Some(x), Some(y)) if x == y)
}

/// Refuses a submodule URL that is not a network transport (`file://`, local paths, `ext::`).
pub(crate) fn check_submodule_url(rel: &str, url: &str) -> Result<()> {
    if origin(url).is_some() {
        return Ok(());
    }
    Err(SourceError::Invalid {
        what: format!("submodule '{rel}' URL '{}'", super::redact_url(url)),
        detail:
            "only https://, http:// and ssh:// submodules are allowed (no file:// or local paths)"
                .to_string(),
    })
}

/// The error for a pack over `limits`.
pub(crate) fn too_large(url: &str, what: &str, size: u64, limit: u64) -> SourceError {
    SourceError::TooLarge {
        op: "fetch",
        path: format!("{what} from {url}"),
        size,
        limit,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_and_transports() {
        assert!(same_origin(
            "https://h.example/a.git",
            "https://H.example:443/b"
        ));
        assert!(same_origin("ssh://git@h:22/a", "git@h:b.git"));
        assert!(!same_origin("https://h/a", "http://h/a"));
        assert!(!same_origin("https://h/a", "https://h:8443/a"));
        assert!(!same_origin("https://h/a", "https://other/a"));
        assert!(!same_origin("https://u:p@h/a", "https://evil/?h"));
        assert!(same_origin("http://[::1]:81/a", "http://[::1]:81/b"));
        for bad in [
            "file:///srv/x",
            "/srv/x",
            "./x",
            "ext::sh -c id",
            "git://h/x",
            "https:///x",
        ] {
            assert!(check_submodule_url("m", bad).is_err(), "{bad}");
        }
        for good in [
            "https://h/x",
            "http://h:8080/x",
            "ssh://git@h/x",
            "git@h:x.git",
        ] {
            check_submodule_url("m", good).unwrap();
        }
    }
}
