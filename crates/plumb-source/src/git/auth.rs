//! Credentials and trust material of a Git remote, read from a Flux Secret
//! ([`GitAuth::from_secret`]), plus the proxy of `proxySecretRef`.

use std::collections::BTreeMap;

use super::GitProxy;
use crate::knownhosts::KnownHosts;
use crate::{Result, SourceError};

/// Credentials and trust material from a Secret's data map.
#[derive(Clone, Default)]
pub struct GitAuth {
    pub(super) username: Option<String>,
    pub(super) password: Option<String>,
    pub(super) bearer_token: Option<String>,
    pub(super) identity: Option<String>,
    pub(super) identity_passphrase: Option<String>,
    pub(super) known_hosts: Option<KnownHosts>,
    pub(super) ca: Option<Vec<openssl::x509::X509>>,
    pub(super) ca_pem: Option<Vec<u8>>,
    /// `tls.crt` and `tls.key` PEM (HTTPS client certificate, served by [`crate::mtls`]).
    pub(super) client_cert: Option<(Vec<u8>, Vec<u8>)>,
    /// HTTP(S) proxy (`proxySecretRef`); `None` follows git config and the environment.
    pub(super) proxy: Option<GitProxy>,
}

impl std::fmt::Debug for GitAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitAuth")
            .field("username", &self.username.is_some())
            .field("password", &self.password.is_some())
            .field("bearer_token", &self.bearer_token.is_some())
            .field("identity", &self.identity.is_some())
            .field("known_hosts", &self.known_hosts.is_some())
            .field("ca", &self.ca.is_some())
            .field("client_cert", &self.client_cert.is_some())
            .field("proxy", &self.proxy)
            .finish()
    }
}

impl GitAuth {
    /// The trust material (`known_hosts`, `ca.crt`) without any credential.
    pub(super) fn trust_only(&self) -> GitAuth {
        GitAuth {
            known_hosts: self.known_hosts.clone(),
            ca: self.ca.clone(),
            ca_pem: self.ca_pem.clone(),
            proxy: self.proxy.clone(),
            ..GitAuth::default()
        }
    }

    /// These credentials, reaching the remote through `proxy`.
    pub fn with_proxy(mut self, proxy: GitProxy) -> GitAuth {
        self.proxy = Some(proxy);
        self
    }

    /// These credentials with a GitHub App installation token as the HTTPS basic-auth
    /// password of `x-access-token` (any `bearerToken` or `username`/`password` replaced).
    pub fn with_github_token(mut self, token: String) -> GitAuth {
        self.username = Some(super::github_app::TOKEN_USERNAME.to_string());
        self.password = Some(token);
        self.bearer_token = None;
        self
    }

    /// The `ca.crt` PEM of the Secret, if any.
    pub fn ca_pem(&self) -> Option<&[u8]> {
        self.ca_pem.as_deref()
    }

    /// No credentials.
    pub fn none() -> GitAuth {
        GitAuth::default()
    }

    /// Read Flux's Secret keys: `username`, `password`, `bearerToken`, `identity`, `password`
    /// (as the identity passphrase when `identity` is set), `known_hosts`, `ca.crt` (or
    /// `caFile`), `tls.crt` + `tls.key`. Errors name the key, never its value.
    pub fn from_secret(data: &BTreeMap<String, Vec<u8>>) -> Result<GitAuth> {
        let text = |key: &str| -> Result<Option<String>> {
            match data.get(key) {
                None => Ok(None),
                Some(v) => String::from_utf8(v.clone())
                    .map(|s| Some(s.trim_end_matches(['\r', '\n']).to_string()))
                    .map_err(|_| SourceError::Invalid {
                        what: format!("secret field '{key}'"),
                        detail: "not valid UTF-8".to_string(),
                    }),
            }
        };
        let identity = text("identity")?;
        let password = text("password")?;
        let known_hosts = match text("known_hosts")? {
            None => None,
            Some(kh) => Some(
                KnownHosts::parse(&kh).map_err(|detail| SourceError::Invalid {
                    what: "secret field 'known_hosts'".to_string(),
                    detail,
                })?,
            ),
        };
        let ca = match data.get("ca.crt").or_else(|| data.get("caFile")) {
            None => None,
            Some(pem) => Some(
                openssl::x509::X509::stack_from_pem(pem)
                    .ok()
                    .filter(|v| !v.is_empty())
                    .ok_or_else(|| SourceError::Invalid {
                        what: "secret field 'ca.crt'".to_string(),
                        detail: "not a PEM certificate bundle".to_string(),
                    })?,
            ),
        };
        let client_cert = match (data.get("tls.crt"), data.get("tls.key")) {
            (Some(c), Some(k)) => Some((c.clone(), k.clone())),
            (None, None) => None,
            _ => {
                return Err(SourceError::Invalid {
                    what: "secret fields 'tls.crt'/'tls.key'".to_string(),
                    detail: "both must be set for client certificate authentication".to_string(),
                });
            }
        };
        let ca_pem = data.get("ca.crt").or_else(|| data.get("caFile")).cloned();
        Ok(GitAuth {
            username: text("username")?,
            identity_passphrase: if identity.is_some() {
                password.clone()
            } else {
                None
            },
            password: if identity.is_some() { None } else { password },
            bearer_token: text("bearerToken")?,
            identity: identity.map(|mut k| {
                k.push('\n');
                k
            }),
            known_hosts,
            ca,
            ca_pem,
            client_cert,
            proxy: None,
        })
    }

    /// Every secret value held, for scrubbing messages.
    pub(super) fn secret_values(&self) -> Vec<String> {
        [
            &self.password,
            &self.bearer_token,
            &self.identity,
            &self.identity_passphrase,
        ]
        .into_iter()
        .flatten()
        .cloned()
        .chain(self.proxy.iter().flat_map(GitProxy::secret_values))
        .filter(|s| s.len() >= 3)
        .collect()
    }
}
