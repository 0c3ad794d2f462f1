//! Smart-HTTP transport for HTTP(S) remotes that need a TLS client certificate or a proxy.
//!
//! libgit2 has no API for client certificates (Flux's `tls.crt`/`tls.key`), and its proxy
//! support fails against proxies that close the connection after a 407 and sends plain-HTTP
//! requests past the proxy, so plumb registers its own smart subtransport under the private
//! schemes [`SCHEME`] and [`SCHEME_PLAIN`]: libgit2 still speaks the git protocol
//! (negotiation, shallow, packs), this module only moves its bytes over HTTP(S) with `ureq`
//! on OpenSSL (native-tls), presenting the client certificate and going through the proxy
//! (credentials sent with the first request). The
//! protocol is git's stateless smart HTTP: `GET <url>/info/refs?service=git-upload-pack`, then
//! one `POST <url>/git-upload-pack` per negotiation round.
//!
//! The per-fetch TLS settings reach the transport factory through a thread-local set by
//! [`Scope`]: libgit2 creates the transport on the thread that runs the fetch.

use std::cell::RefCell;
use std::io::{Read, Write};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use git2::transport::{Service, SmartSubtransport, SmartSubtransportStream, Transport};

use crate::{Result, SourceError};

/// URL scheme prefix (before `://`) routed to this transport.
pub const SCHEME: &str = "plumb+https";
/// The same for plain-HTTP remotes (taken only through a proxy).
pub const SCHEME_PLAIN: &str = "plumb+http";

/// Client TLS settings of one fetch.
pub(crate) struct ClientTls {
    agent: ureq::Agent,
    authorization: Option<String>,
}

impl ClientTls {
    /// A client presenting `cert_pem` (+ chain) with `key_pem`, trusting `ca_pem` when given
    /// (instead of the system roots) or the system roots otherwise.
    pub(crate) fn new(
        cert: Option<(&[u8], &[u8])>,
        ca_pem: Option<&[u8]>,
        authorization: Option<String>,
        proxy: Option<String>,
        timeout: Duration,
    ) -> Result<ClientTls> {
        use ureq::tls::{ClientCert, PrivateKey, RootCerts, TlsConfig};
        let invalid = |what: &str, detail: &str| SourceError::Invalid {
            what: format!("secret field '{what}'"),
            detail: detail.to_string(),
        };
        let client_cert = match cert {
            None => None,
            Some((cert_pem, key_pem)) => {
                let chain = certificates(cert_pem);
                if chain.is_empty() {
                    return Err(invalid("tls.crt", "no PEM certificate found"));
                }
                // A key parse error could quote key material: never pass it on.
                let key = PrivateKey::from_pem(key_pem).map_err(|_| {
                    invalid("tls.key", "not a PEM private key (PKCS#8, PKCS#1 or SEC1)")
                })?;
                Some(ClientCert::new_with_certs(&chain, key))
            }
        };
        let roots = match ca_pem {
            Some(pem) => {
                let cas = certificates(pem);
                if cas.is_empty() {
                    return Err(invalid("ca.crt", "not a PEM certificate bundle"));
                }
                RootCerts::new_with_certs(&cas)
            }
            None => RootCerts::PlatformVerifier,
        };
        let tls = TlsConfig::builder()
            .provider(ureq::tls::TlsProvider::NativeTls)
            .client_cert(client_cert)
            .root_certs(roots)
            .build();
        let agent = ureq::Agent::config_builder()
            .tls_config(tls)
            .http_status_as_error(false)
            .timeout_global(Some(timeout))
            .user_agent("git/2.0 (plumb)")
            .proxy(match proxy {
                Some(url) => Some(ureq::Proxy::new(&url).map_err(|_| SourceError::Invalid {
                    what: "proxy secret field 'address'".to_string(),
                    detail: "not a proxy URL".to_string(),
                })?),
                None => ureq::Proxy::try_from_env(),
            })
            .build()
            .into();
        Ok(ClientTls {
            agent,
            authorization,
        })
    }
}

/// Every certificate in a PEM bundle (other items skipped).
pub(crate) fn certificates(pem: &[u8]) -> Vec<ureq::tls::Certificate<'static>> {
    ureq::tls::parse_pem(pem)
        .filter_map(|item| match item {
            Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
            _ => None,
        })
        .collect()
}

thread_local! {
    static CURRENT: RefCell<Option<Arc<ClientTls>>> = const { RefCell::new(None) };
}

/// While alive, transports created on this thread use `tls`.
pub(crate) struct Scope(());

impl Scope {
    pub(crate) fn enter(tls: Arc<ClientTls>) -> Result<Scope> {
        register()?;
        CURRENT.with(|c| *c.borrow_mut() = Some(tls));
        Ok(Scope(()))
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        CURRENT.with(|c| *c.borrow_mut() = None);
    }
}

/// `https://...` (and `http://...`) as routed to this transport.
pub(crate) fn transport_url(url: &str) -> String {
    if let Some(rest) = url.strip_prefix("https://") {
        format!("{SCHEME}://{rest}")
    } else if let Some(rest) = url.strip_prefix("http://") {
        format!("{SCHEME_PLAIN}://{rest}")
    } else {
        url.to_string()
    }
}

static REGISTERED: OnceLock<bool> = OnceLock::new();

#[allow(unsafe_code)]
fn register() -> Result<()> {
    let ok = *REGISTERED.get_or_init(|| {
        // SAFETY: `git2::transport::register` must not race other transport creation. It
        // runs once, under `OnceLock`, before the first client-certificate fetch; plumb
        // registers nothing else, and libgit2's built-in transports are looked up by scheme,
        // not mutated.
        [SCHEME, SCHEME_PLAIN].into_iter().all(|scheme| unsafe {
            git2::transport::register(scheme, |remote| {
                let tls = CURRENT.with(|c| c.borrow().clone()).ok_or_else(|| {
                    git2::Error::from_str("plumb+http(s) used without transport settings")
                })?;
                Transport::smart(remote, true, Subtransport { tls })
            })
            .is_ok()
        })
    });
    if ok {
        Ok(())
    } else {
        Err(SourceError::Invalid {
            what: "client certificate transport".to_string(),
            detail: "registering the transport with libgit2 failed".to_string(),
        })
    }
}

struct Subtransport {
    tls: Arc<ClientTls>,
}

impl SmartSubtransport for Subtransport {
    fn action(
        &self,
        url: &str,
        action: Service,
    ) -> std::result::Result<Box<dyn SmartSubtransportStream>, git2::Error> {
        let base = url
            .strip_prefix("plumb+")
            .unwrap_or(url)
            .trim_end_matches('/')
            .to_string();
        let (post, url) = match action {
            Service::UploadPackLs => (false, format!("{base}/info/refs?service=git-upload-pack")),
            Service::UploadPack => (true, format!("{base}/git-upload-pack")),
            Service::ReceivePackLs | Service::ReceivePack => {
                return Err(git2::Error::from_str("push is not supported"));
            }
        };
        Ok(Box::new(Stream {
            tls: self.tls.clone(),
            post,
            url,
            body: Vec::new(),
            response: None,
        }))
    }

    fn close(&self) -> std::result::Result<(), git2::Error> {
        Ok(())
    }
}

struct Stream {
    tls: Arc<ClientTls>,
    post: bool,
    url: String,
    body: Vec<u8>,
    response: Option<Box<dyn Read + Send>>,
}

fn io_err(msg: String) -> std::io::Error {
    std::io::Error::other(msg)
}

impl Stream {
    fn send(&mut self) -> std::io::Result<Box<dyn Read + Send>> {
        let agent = &self.tls.agent;
        let result = if self.post {
            let mut req = agent
                .post(&self.url)
                .header("Content-Type", "application/x-git-upload-pack-request")
                .header("Accept", "application/x-git-upload-pack-result");
            if let Some(a) = &self.tls.authorization {
                req = req.header("Authorization", a);
            }
            req.send(&self.body[..])
        } else {
            let mut req = agent.get(&self.url);
            if let Some(a) = &self.tls.authorization {
                req = req.header("Authorization", a);
            }
            req.call()
        };
        // ureq's errors name the URL, which carries no userinfo here (libgit2 strips it and
        // credentials travel in the Authorization header); the status is what matters.
        let resp = result.map_err(|e| {
            let msg = e.to_string();
            // A TLS alert from the server after our certificate went out means it refused the
            // certificate; our own verification failure reads "certificate verify failed".
            if msg.contains("alert") && !msg.contains("verify failed") {
                io_err(format!(
                    "authentication failed: the server rejected the client certificate ({msg})"
                ))
            } else if msg.contains("reset by peer") || msg.contains("unexpected eof") {
                // TLS 1.3: the server verifies the certificate after the handshake and may
                // just drop the connection.
                io_err(format!(
                    "authentication failed: the server closed the connection, most likely rejecting the client certificate ({msg})"
                ))
            } else {
                io_err(format!("request failed: {msg}"))
            }
        })?;
        let status = resp.status().as_u16();
        if status == 401 || status == 403 {
            return Err(io_err(format!(
                "authentication failed: unauthorized (HTTP {status})"
            )));
        }
        if status != 200 {
            return Err(io_err(format!("unexpected HTTP status {status}")));
        }
        let expected = if self.post {
            "application/x-git-upload-pack-result"
        } else {
            "application/x-git-upload-pack-advertisement"
        };
        let ctype = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !ctype.starts_with(expected) {
            return Err(io_err(format!(
                "not a smart HTTP git server (content-type '{ctype}')"
            )));
        }
        Ok(Box::new(resp.into_body().into_reader()))
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.response.is_none() {
            self.response = Some(self.send()?);
        }
        match self.response.as_mut() {
            Some(r) => r.read(buf),
            None => Ok(0),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.response.is_some() {
            return Err(io_err("write after the response started".to_string()));
        }
        self.body.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn transport_url_rewrites_https_only() {
        assert_eq!(
            super::transport_url("https://h:1/r.git"),
            "plumb+https://h:1/r.git"
        );
        assert_eq!(super::transport_url("ssh://h/r"), "ssh://h/r");
    }
}
