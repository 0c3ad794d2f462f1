//! The per-operation state libgit2's callbacks share: deadline, credentials, certificate
//! checks, limits, and the precise error a callback recorded.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use git2::{AutotagOption, CertificateCheckStatus, Cred, CredentialType, FetchPrune};

use super::{
    FetchLimits, FetchOptions, GitAuth, GitProxy, is_ssh, policy, redact_url, ssh_host_port,
};
use crate::knownhosts::HostKeyCheck;
use crate::{Result, SourceError};

/// Per-operation state shared with libgit2 callbacks.
pub(super) struct Session {
    pub(super) op: &'static str,
    pub(super) url: String,
    pub(super) redacted: String,
    pub(super) deadline: Instant,
    pub(super) timeout: Duration,
    pub(super) auth: GitAuth,
    pub(super) secrets: Vec<String>,
    pub(super) limits: FetchLimits,
    /// A precise error recorded by a callback, preferred over libgit2's generic one.
    pub(super) recorded: Rc<RefCell<Option<SourceError>>>,
}

impl Session {
    pub(super) fn new(o: &FetchOptions, deadline: Instant, op: &'static str) -> Session {
        Session {
            op,
            url: o.url.clone(),
            redacted: redact_url(&o.url),
            deadline,
            timeout: o.timeout,
            auth: o.auth.clone(),
            secrets: o.auth.secret_values(),
            limits: o.limits,
            recorded: Rc::new(RefCell::new(None)),
        }
    }

    /// The session for submodule `rel` at `url`: refused unless a network transport; the
    /// credentials (not the trust material) stay behind unless `url` is on this origin.
    pub(super) fn for_submodule(&self, rel: &str, url: &str) -> Result<Session> {
        policy::check_submodule_url(rel, url)?;
        let auth = if policy::same_origin(&self.url, url) {
            self.auth.clone()
        } else {
            self.auth.trust_only()
        };
        Ok(Session {
            op: self.op,
            url: url.to_string(),
            redacted: redact_url(url),
            deadline: self.deadline,
            timeout: self.timeout,
            auth,
            secrets: self.secrets.clone(),
            limits: self.limits,
            recorded: Rc::new(RefCell::new(None)),
        })
    }

    pub(super) fn scrub(&self, msg: &str) -> String {
        let mut m = msg.replace(&self.url, &self.redacted);
        for s in &self.secrets {
            m = m.replace(s.as_str(), "***");
            for line in s.lines().filter(|l| l.len() >= 8) {
                m = m.replace(line, "***");
            }
        }
        m
    }

    pub(super) fn git_err(&self, e: git2::Error) -> SourceError {
        if let Some(rec) = self.recorded.borrow_mut().take() {
            return rec;
        }
        let op = self.op;
        let url = self.redacted.clone();
        if Instant::now() >= self.deadline {
            return SourceError::Timeout {
                op,
                url,
                after: self.timeout,
            };
        }
        let detail = self.scrub(e.message());
        let lower = detail.to_ascii_lowercase();
        use git2::{ErrorClass as C, ErrorCode as E};
        if lower.contains("timed out") || lower.contains("timeout") {
            SourceError::Timeout {
                op,
                url,
                after: self.timeout,
            }
        } else if e.code() == E::Auth
            || lower.contains("authenticat")
            || lower.contains("private key")
            || lower.contains("401")
            || lower.contains("403")
            || lower.contains("unauthorized")
            || lower.contains("credentials")
        {
            SourceError::AuthFailed { op, url, detail }
        } else if e.code() == E::Certificate || lower.contains("certificate") {
            SourceError::HostUntrusted { op, url, detail }
        } else if matches!(e.class(), C::Net | C::Os | C::Ssh | C::Http)
            || lower.contains("failed to connect")
            || lower.contains("failed to resolve")
            || lower.contains("connection")
        {
            SourceError::Unreachable { op, url, detail }
        } else {
            SourceError::Git { op, url, detail }
        }
    }

    /// Final pass: a deadline that passed wins over whatever libgit2 said.
    pub(super) fn classify_final(&self, e: SourceError) -> SourceError {
        match e {
            SourceError::Git { .. } | SourceError::Unreachable { .. }
                if Instant::now() >= self.deadline =>
            {
                SourceError::Timeout {
                    op: self.op,
                    url: self.redacted.clone(),
                    after: self.timeout,
                }
            }
            e => e,
        }
    }

    pub(super) fn fetch_options(&self) -> Result<git2::FetchOptions<'static>> {
        let mut cb = git2::RemoteCallbacks::new();
        let deadline = self.deadline;
        let (limits, rec, url) = (self.limits, self.recorded.clone(), self.redacted.clone());
        cb.transfer_progress(move |p| {
            // `total_objects` comes from the pack header, so an oversized pack stops early.
            let objects = p.total_objects().max(p.received_objects()) as u64;
            let over = if p.received_bytes() as u64 > limits.max_bytes {
                Some(("pack bytes", p.received_bytes() as u64, limits.max_bytes))
            } else if objects > limits.max_objects {
                Some(("pack objects", objects, limits.max_objects))
            } else {
                None
            };
            if let Some((what, size, limit)) = over {
                *rec.borrow_mut() = Some(policy::too_large(&url, what, size, limit));
                return false;
            }
            Instant::now() < deadline
        });
        cb.sideband_progress(move |_| Instant::now() < deadline);
        self.add_auth_callbacks(&mut cb);
        let mut fo = git2::FetchOptions::new();
        fo.remote_callbacks(cb)
            .proxy_options(self.proxy_options()?)
            .download_tags(AutotagOption::None)
            .prune(FetchPrune::Off)
            .update_fetchhead(false);
        if let Some(header) = self.auth_header()? {
            fo.custom_headers(&[&header]);
        }
        Ok(fo)
    }

    /// Credentials and host trust, shared by fetch and push.
    pub(super) fn add_auth_callbacks(&self, cb: &mut git2::RemoteCallbacks<'static>) {
        // Credentials: offer each kind once; libgit2 retries forever on rejection otherwise.
        let auth = self.auth.clone();
        let rec = self.recorded.clone();
        let (op, url) = (self.op, self.redacted.clone());
        let mut attempts = 0u32;
        cb.credentials(move |_u, user_from_url, allowed| {
            attempts += 1;
            let fail = |detail: &str| {
                let e = SourceError::AuthFailed { op, url: url.clone(), detail: detail.to_string() };
                let msg = e.to_string();
                *rec.borrow_mut() = Some(e);
                git2::Error::from_str(&msg)
            };
            if attempts > 2 {
                return Err(fail("credentials rejected"));
            }
            let user = auth
                .username
                .as_deref()
                .or(user_from_url)
                .unwrap_or("git")
                .to_string();
            if allowed.contains(CredentialType::SSH_KEY) {
                let Some(key) = auth.identity.as_deref() else {
                    return Err(fail("the server requires an SSH key and the secret has no 'identity'"));
                };
                return Cred::ssh_key_from_memory(&user, None, key, auth.identity_passphrase.as_deref())
                    .map_err(|_| fail("the SSH identity could not be loaded (wrong passphrase or unsupported key)"));
            }
            if allowed.contains(CredentialType::USER_PASS_PLAINTEXT) {
                return match (&auth.username, &auth.password) {
                    (Some(u), Some(p)) => Cred::userpass_plaintext(u, p),
                    _ if auth.bearer_token.is_some() => Err(fail("bearer token rejected")),
                    _ => Err(fail("the server requires credentials and none are configured")),
                };
            }
            if allowed.contains(CredentialType::USERNAME) {
                return Cred::username(&user);
            }
            Err(fail("no supported authentication method"))
        });
        // Host trust: SSH host keys strictly against known_hosts. TLS: a certificate issued
        // (directly or via intermediates in the bundle) by the secret's `ca.crt` for this host
        // is accepted; anything else is left to libgit2's verification against system roots,
        // as Flux adds `ca.crt` to the system pool.
        let known = self.auth.known_hosts.clone();
        let ca = self.auth.ca.clone();
        let hostport = ssh_host_port(&self.url);
        let rec = self.recorded.clone();
        let (op, url) = (self.op, self.redacted.clone());
        cb.certificate_check(move |cert, host| {
            let untrusted = |detail: String| {
                let e = SourceError::HostUntrusted {
                    op,
                    url: url.clone(),
                    detail,
                };
                let msg = e.to_string();
                *rec.borrow_mut() = Some(e);
                git2::Error::from_str(&msg)
            };
            if let Some(x509) = cert.as_x509() {
                return Ok(match &ca {
                    Some(ca) if verify_with_ca(ca, x509.data(), host) => {
                        CertificateCheckStatus::CertificateOk
                    }
                    _ => CertificateCheckStatus::CertificatePassthrough,
                });
            }
            let Some(hk) = cert.as_hostkey() else {
                return Ok(CertificateCheckStatus::CertificatePassthrough);
            };
            let Some(known) = known.as_ref() else {
                return Err(untrusted(
                    "no 'known_hosts' in the secret: SSH host keys are verified strictly"
                        .to_string(),
                ));
            };
            let (Some(key), Some((host, port))) = (hk.hostkey(), hostport.as_ref()) else {
                return Err(untrusted(
                    "the server presented no raw host key".to_string(),
                ));
            };
            match known.check(host, *port, key) {
                HostKeyCheck::Match => Ok(CertificateCheckStatus::CertificateOk),
                HostKeyCheck::Mismatch => Err(untrusted(format!(
                    "host key for {host}:{port} does not match known_hosts"
                ))),
                HostKeyCheck::Unknown => Err(untrusted(format!(
                    "host {host}:{port} is not in known_hosts"
                ))),
            }
        });
    }

    /// Proxy settings: git config and the environment unless `proxySecretRef` is set (then
    /// the session's own HTTP transport carries it); SSH cannot be proxied.
    pub(super) fn proxy_options(&self) -> Result<git2::ProxyOptions<'static>> {
        let mut po = git2::ProxyOptions::new();
        match &self.auth.proxy {
            // A proxied fetch runs on plumb's own HTTP transport (`client_tls_scope`); SSH
            // cannot be proxied: refuse what would silently bypass the proxy.
            Some(_) if !self.url.starts_with("https://") && !self.url.starts_with("http://") => {
                return Err(SourceError::Invalid {
                    what: "proxySecretRef".to_string(),
                    detail: "a proxy applies to http(s) Git URLs only, not SSH".to_string(),
                });
            }
            Some(_) => {}
            // As Go's clients (Flux): git config `http.proxy` and HTTPS_PROXY/NO_PROXY.
            None => {
                po.auto();
            }
        }
        Ok(po)
    }

    /// The `Authorization: Bearer` header of a `bearerToken` Secret.
    pub(super) fn auth_header(&self) -> Result<Option<String>> {
        let Some(token) = &self.auth.bearer_token else {
            return Ok(None);
        };
        if token.contains(['\r', '\n']) {
            return Err(SourceError::Invalid {
                what: "secret field 'bearerToken'".to_string(),
                detail: "contains a line break".to_string(),
            });
        }
        Ok(Some(format!("Authorization: Bearer {token}")))
    }

    /// The client-certificate transport settings for this session, entered on this thread.
    pub(super) fn client_tls_scope(&self) -> Result<Option<crate::mtls::Scope>> {
        let proxy = self.auth.proxy.as_ref().map(GitProxy::url);
        if self.auth.client_cert.is_none() && proxy.is_none() {
            return Ok(None);
        }
        let authorization = match (
            &self.auth.bearer_token,
            &self.auth.username,
            &self.auth.password,
        ) {
            (Some(t), _, _) => Some(format!("Bearer {t}")),
            (None, Some(u), Some(p)) => {
                use base64::Engine as _;
                let b = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
                Some(format!("Basic {b}"))
            }
            _ => None,
        };
        let remaining = self.deadline.saturating_duration_since(Instant::now());
        let tls = crate::mtls::ClientTls::new(
            self.auth
                .client_cert
                .as_ref()
                .map(|(c, k)| (c.as_slice(), k.as_slice())),
            self.auth.ca_pem.as_deref(),
            authorization,
            proxy,
            remaining.max(Duration::from_millis(1)),
        )?;
        crate::mtls::Scope::enter(std::sync::Arc::new(tls)).map(Some)
    }

    pub(super) fn preflight(&self) -> Result<()> {
        if self.auth.client_cert.is_some() && !self.url.starts_with("https://") {
            return Err(SourceError::Invalid {
                what: "secret fields 'tls.crt'/'tls.key'".to_string(),
                detail: "a TLS client certificate needs an https:// URL".to_string(),
            });
        }
        if is_ssh(&self.url) && ssh_host_port(&self.url).is_none() {
            return Err(SourceError::Invalid {
                what: format!("URL '{}'", self.redacted),
                detail: "cannot parse the SSH host".to_string(),
            });
        }
        Ok(())
    }
}

/// Whether the leaf certificate `der` chains to one of `cas` and names `host`.
fn verify_with_ca(cas: &[openssl::x509::X509], der: &[u8], host: &str) -> bool {
    use openssl::x509::store::X509StoreBuilder;
    use openssl::x509::verify::X509VerifyParam;
    let check = || -> std::result::Result<bool, openssl::error::ErrorStack> {
        let leaf = openssl::x509::X509::from_der(der)?;
        let mut store = X509StoreBuilder::new()?;
        for ca in cas {
            store.add_cert(ca.clone())?;
        }
        let mut param = X509VerifyParam::new()?;
        match host.trim_matches(['[', ']']).parse::<std::net::IpAddr>() {
            Ok(ip) => param.set_ip(ip)?,
            Err(_) => param.set_host(host)?,
        }
        store.set_param(&param)?;
        let store = store.build();
        let chain = openssl::stack::Stack::new()?;
        let mut ctx = openssl::x509::X509StoreContext::new()?;
        ctx.init(&store, &leaf, &chain, |c| c.verify_cert())
    };
    check().unwrap_or(false)
}
