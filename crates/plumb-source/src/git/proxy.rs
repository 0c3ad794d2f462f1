//! `proxySecretRef` for Git over HTTP(S): Flux's proxy Secret (`address`, `username`,
//! `password`) as a proxy URL for plumb's own smart-HTTP transport ([`crate::mtls`]), which
//! sends the credentials with the first request; they never appear in a message (the
//! password is scrubbed like the other secrets). SSH remotes cannot be proxied: a proxy on an
//! SSH URL is refused, never silently bypassed.

use std::collections::BTreeMap;

use crate::{Result, SourceError};

/// A proxy from a `proxySecretRef` Secret. `Debug` never shows the password.
#[derive(Clone, PartialEq, Eq)]
pub struct GitProxy {
    address: String,
    username: Option<String>,
    password: Option<String>,
}

impl std::fmt::Debug for GitProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitProxy")
            .field("address", &self.address)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

fn invalid(key: &str, detail: &str) -> SourceError {
    SourceError::Invalid {
        what: format!("proxy secret field '{key}'"),
        detail: detail.to_string(),
    }
}

impl GitProxy {
    /// Reads Flux's proxy Secret: `address` (`http://host:port` or `https://…`, required),
    /// `username` and `password` (optional). Errors name the key, never its value.
    pub fn from_secret(data: &BTreeMap<String, Vec<u8>>) -> Result<GitProxy> {
        let text = |key: &str| -> Result<Option<String>> {
            data.get(key)
                .map(|v| {
                    String::from_utf8(v.clone())
                        .map(|s| s.trim().to_string())
                        .map_err(|_| invalid(key, "not UTF-8"))
                })
                .transpose()
                .map(|v| v.filter(|s| !s.is_empty()))
        };
        let address = text("address")?.ok_or_else(|| invalid("address", "missing"))?;
        if address.contains(['\0', '\r', '\n', ' ']) {
            return Err(invalid("address", "holds a NUL, a space or a line break"));
        }
        let Some((scheme, rest)) = address.split_once("://") else {
            return Err(invalid("address", "not a URL (http://host:port)"));
        };
        if !matches!(scheme, "http" | "https") || rest.is_empty() {
            return Err(invalid("address", "must be an http:// or https:// URL"));
        }
        if rest
            .split('/')
            .next()
            .is_some_and(|authority| authority.contains('@'))
        {
            return Err(invalid(
                "address",
                "must not hold credentials (use 'username' and 'password')",
            ));
        }
        Ok(GitProxy {
            address,
            username: text("username")?,
            password: text("password")?,
        })
    }

    /// The proxy URL handed to libgit2, credentials percent-encoded in its userinfo.
    pub(crate) fn url(&self) -> String {
        let Some(user) = &self.username else {
            return self.address.clone();
        };
        let (scheme, rest) = self.address.split_once("://").unwrap_or(("http", ""));
        let mut userinfo = encode(user);
        if let Some(p) = &self.password {
            userinfo.push(':');
            userinfo.push_str(&encode(p));
        }
        format!("{scheme}://{userinfo}@{rest}")
    }

    /// The values to scrub from messages: the password, raw and encoded.
    pub(crate) fn secret_values(&self) -> Vec<String> {
        self.password
            .iter()
            .flat_map(|p| [p.clone(), encode(p)])
            .collect()
    }
}

/// Percent-encodes everything but unreserved characters (RFC 3986).
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, Vec<u8>> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn reads_flux_keys_and_encodes_credentials() {
        let p = GitProxy::from_secret(&data(&[
            ("address", "http://127.0.0.1:3128"),
            ("username", "u"),
            ("password", "p@ss:w/rd"),
        ]))
        .unwrap();
        assert_eq!(p.url(), "http://u:p%40ss%3Aw%2Frd@127.0.0.1:3128");
        assert!(!format!("{p:?}").contains("p@ss"));
        assert!(p.secret_values().contains(&"p%40ss%3Aw%2Frd".to_string()));
        let anon = GitProxy::from_secret(&data(&[("address", "https://proxy:8443")])).unwrap();
        assert_eq!(anon.url(), "https://proxy:8443");
    }

    #[test]
    fn bad_secrets_are_named_without_values() {
        for (pairs, says) in [
            (vec![("username", "u")], "missing"),
            (vec![("address", "proxy:3128")], "not a URL"),
            (vec![("address", "socks5://p:1")], "http://"),
            (vec![("address", "http://u:hunter2@p:1")], "credentials"),
        ] {
            let e = GitProxy::from_secret(&data(&pairs))
                .unwrap_err()
                .to_string();
            assert!(e.contains(says) && !e.contains("hunter2"), "{e}");
        }
    }
}
