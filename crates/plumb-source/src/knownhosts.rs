//! OpenSSH `known_hosts` matching against the raw host key libgit2 reports.
//!
//! Supported entry forms: `host`, `[host]:port`, comma-separated host lists, negated patterns
//! (`!host`), `*`/`?` wildcards, and hashed names (`|1|<salt b64>|<hmac-sha1 b64>`). Markers
//! `@revoked` reject a key; `@cert-authority` lines are skipped (libgit2 reports no certificates).

use base64::Engine as _;
use hmac::{Hmac, Mac as _};

/// One parsed `known_hosts` line.
#[derive(Debug, Clone)]
struct Entry {
    hosts: String,
    key: Vec<u8>,
    revoked: bool,
}

/// A parsed `known_hosts` file.
#[derive(Debug, Clone, Default)]
pub(crate) struct KnownHosts {
    entries: Vec<Entry>,
}

/// Outcome of a host key check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HostKeyCheck {
    /// A line names this host with this key.
    Match,
    /// Lines name this host, none with this key (or the key is revoked).
    Mismatch,
    /// No line names this host.
    Unknown,
}

impl KnownHosts {
    /// Parse; lines that do not parse are reported as an error with their line number only.
    pub(crate) fn parse(text: &str) -> Result<KnownHosts, String> {
        let mut entries = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut fields = line.split_whitespace();
            let mut first = fields.next().unwrap_or("");
            let mut revoked = false;
            if first.starts_with('@') {
                match first {
                    "@revoked" => revoked = true,
                    "@cert-authority" => continue,
                    _ => return Err(format!("line {}: unknown marker", n + 1)),
                }
                first = fields.next().unwrap_or("");
            }
            let (Some(_kind), Some(key)) = (fields.next(), fields.next()) else {
                return Err(format!(
                    "line {}: expected '<hosts> <key type> <base64 key>'",
                    n + 1
                ));
            };
            let key = base64::engine::general_purpose::STANDARD
                .decode(key)
                .map_err(|_| format!("line {}: key is not base64", n + 1))?;
            entries.push(Entry {
                hosts: first.to_string(),
                key,
                revoked,
            });
        }
        if entries.is_empty() {
            return Err("no host keys".to_string());
        }
        Ok(KnownHosts { entries })
    }

    /// Check `key` (the SSH wire-format public key blob) for `host` on `port`.
    pub(crate) fn check(&self, host: &str, port: u16, key: &[u8]) -> HostKeyCheck {
        let name = if port == 22 {
            host.to_string()
        } else {
            format!("[{host}]:{port}")
        };
        let mut named = false;
        for e in &self.entries {
            if !hosts_match(&e.hosts, &name) {
                continue;
            }
            if e.revoked {
                if e.key == key {
                    return HostKeyCheck::Mismatch;
                }
                continue;
            }
            named = true;
            if e.key == key {
                return HostKeyCheck::Match;
            }
        }
        if named {
            HostKeyCheck::Mismatch
        } else {
            HostKeyCheck::Unknown
        }
    }
}

fn hosts_match(field: &str, name: &str) -> bool {
    if let Some(hashed) = field.strip_prefix("|1|") {
        return hashed_match(hashed, name);
    }
    let mut matched = false;
    for pat in field.split(',') {
        if let Some(neg) = pat.strip_prefix('!') {
            if wildcard(neg, name) {
                return false;
            }
        } else if wildcard(pat, name) {
            matched = true;
        }
    }
    matched
}

fn hashed_match(hashed: &str, name: &str) -> bool {
    let Some((salt, hash)) = hashed.split_once('|') else {
        return false;
    };
    let b64 = base64::engine::general_purpose::STANDARD;
    let (Ok(salt), Ok(hash)) = (b64.decode(salt), b64.decode(hash)) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<sha1::Sha1>::new_from_slice(&salt) else {
        return false;
    };
    mac.update(name.as_bytes());
    mac.verify_slice(&hash).is_ok()
}

/// OpenSSH pattern match: `*` any run, `?` one character, case-insensitive.
fn wildcard(pat: &str, name: &str) -> bool {
    let p: Vec<char> = pat.to_ascii_lowercase().chars().collect();
    let n: Vec<char> = name.to_ascii_lowercase().chars().collect();
    let (mut pi, mut ni, mut star, mut mark) = (0usize, 0usize, None, 0usize);
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl";

    fn key() -> Vec<u8> {
        base64::engine::general_purpose::STANDARD
            .decode(KEY)
            .unwrap()
    }

    #[test]
    fn plain_port_and_wildcards() {
        let kh = KnownHosts::parse(&format!(
            "# comment\ngithub.com,140.82.1.1 ssh-ed25519 {KEY}\n[127.0.0.1]:2222 ssh-ed25519 {KEY}\n*.corp ssh-ed25519 {KEY}\n"
        ))
        .unwrap();
        assert_eq!(kh.check("github.com", 22, &key()), HostKeyCheck::Match);
        assert_eq!(kh.check("127.0.0.1", 2222, &key()), HostKeyCheck::Match);
        assert_eq!(kh.check("127.0.0.1", 22, &key()), HostKeyCheck::Unknown);
        assert_eq!(kh.check("git.corp", 22, &key()), HostKeyCheck::Match);
        assert_eq!(kh.check("github.com", 22, b"other"), HostKeyCheck::Mismatch);
        assert_eq!(kh.check("gitlab.com", 22, &key()), HostKeyCheck::Unknown);
    }

    #[test]
    fn hashed_entry() {
        // `ssh-keygen -H` output for "[127.0.0.1]:2222" with this salt, computed independently.
        let b64 = base64::engine::general_purpose::STANDARD;
        let salt = b"0123456789abcdefghij";
        let mut mac = Hmac::<sha1::Sha1>::new_from_slice(salt).unwrap();
        mac.update(b"[127.0.0.1]:2222");
        let hash = mac.finalize().into_bytes();
        let line = format!(
            "|1|{}|{} ssh-ed25519 {KEY}",
            b64.encode(salt),
            b64.encode(hash)
        );
        let kh = KnownHosts::parse(&line).unwrap();
        assert_eq!(kh.check("127.0.0.1", 2222, &key()), HostKeyCheck::Match);
        assert_eq!(kh.check("127.0.0.2", 2222, &key()), HostKeyCheck::Unknown);
    }

    #[test]
    fn revoked_and_garbage() {
        let kh = KnownHosts::parse(&format!(
            "@revoked * ssh-ed25519 {KEY}\nhost ssh-ed25519 {KEY}"
        ))
        .unwrap();
        assert_eq!(kh.check("host", 22, &key()), HostKeyCheck::Mismatch);
        assert!(KnownHosts::parse("host ssh-ed25519").is_err());
        assert!(KnownHosts::parse("").is_err());
        assert!(KnownHosts::parse("host ssh-ed25519 !!!").is_err());
    }
}
