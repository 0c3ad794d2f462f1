//! The production [`Transport`]: blocking HTTP(S) with `ureq` on OpenSSL, per Provider:
//! timeout, proxy (`proxySecretRef` or the deprecated `spec.proxy`), server CA and client
//! certificate (`certSecretRef`), and a bounded response body.

use std::io::Read;
use std::time::Duration;

use ureq::tls::{ClientCert, PemItem, PrivateKey, RootCerts, TlsConfig, TlsProvider};

use crate::{HttpRequest, HttpResponse, Method, NotifyError, Transport};

/// At most this much of a response body is read (services answer with small JSON).
pub const MAX_RESPONSE_BYTES: u64 = 64 * 1024;

/// A proxy for a Provider's requests. Holds a password: never log it.
#[derive(Clone, Default)]
pub struct ProxyOptions {
    /// `http://host:port` (no userinfo).
    pub address: String,
    /// Proxy user, if any.
    pub username: Option<String>,
    /// Proxy password, if any.
    pub password: Option<String>,
}

/// How a Provider's requests are sent.
#[derive(Clone, Default)]
pub struct TransportOptions {
    /// Whole-request timeout (connect, send, answer); Flux's default is 15s.
    pub timeout: Duration,
    /// The proxy, if any.
    pub proxy: Option<ProxyOptions>,
    /// PEM CA bundle that replaces the platform roots (`ca.crt`).
    pub ca_pem: Option<Vec<u8>>,
    /// PEM client certificate chain and key (`tls.crt`, `tls.key`) for mutual TLS.
    pub client_cert: Option<(Vec<u8>, Vec<u8>)>,
}

/// Sends requests with one `ureq` agent configured from [`TransportOptions`].
pub struct HttpTransport {
    agent: ureq::Agent,
}

fn invalid(what: &str) -> NotifyError {
    NotifyError::InvalidSettings(what.to_string())
}

fn certificates(pem: &[u8]) -> Vec<ureq::tls::Certificate<'static>> {
    ureq::tls::parse_pem(pem)
        .filter_map(|item| match item {
            Ok(PemItem::Certificate(c)) => Some(c),
            _ => None,
        })
        .collect()
}

fn proxy(p: &ProxyOptions) -> Result<ureq::Proxy, NotifyError> {
    const BAD: &str = "proxy address is not a proxy URL (http://host:port)";
    if p.address.contains('@') {
        return Err(invalid(
            "proxy address must not hold credentials (use 'username' and 'password')",
        ));
    }
    let base = ureq::Proxy::new(&p.address).map_err(|_| invalid(BAD))?;
    if p.username.is_none() && p.password.is_none() {
        return Ok(base);
    }
    let mut b = ureq::Proxy::builder(base.protocol())
        .host(base.host())
        .port(base.port());
    if let Some(u) = &p.username {
        b = b.username(u);
    }
    if let Some(pw) = &p.password {
        b = b.password(pw);
    }
    b.build().map_err(|_| invalid(BAD))
}

impl HttpTransport {
    /// A transport for one Provider. Bad TLS material or proxy settings are reported by key,
    /// never quoting their content.
    pub fn new(opts: &TransportOptions) -> Result<Self, NotifyError> {
        let client_cert = match &opts.client_cert {
            None => None,
            Some((cert, key)) => {
                let chain = certificates(cert);
                if chain.is_empty() {
                    return Err(invalid("tls.crt holds no PEM certificate"));
                }
                let key = PrivateKey::from_pem(key)
                    .map_err(|_| invalid("tls.key is not a PEM private key"))?;
                Some(ClientCert::new_with_certs(&chain, key))
            }
        };
        let roots = match &opts.ca_pem {
            Some(pem) => {
                let cas = certificates(pem);
                if cas.is_empty() {
                    return Err(invalid("ca.crt is not a PEM certificate bundle"));
                }
                RootCerts::new_with_certs(&cas)
            }
            None => RootCerts::PlatformVerifier,
        };
        let tls = TlsConfig::builder()
            .provider(TlsProvider::NativeTls)
            .client_cert(client_cert)
            .root_certs(roots)
            .build();
        let proxy = opts.proxy.as_ref().map(proxy).transpose()?;
        let timeout = if opts.timeout.is_zero() {
            plumb_default_timeout()
        } else {
            opts.timeout
        };
        let agent = ureq::Agent::config_builder()
            .tls_config(tls)
            .http_status_as_error(false)
            .timeout_global(Some(timeout))
            .user_agent("plumb-notification")
            .proxy(proxy)
            .max_redirects(0)
            .build()
            .into();
        Ok(HttpTransport { agent })
    }
}

fn plumb_default_timeout() -> Duration {
    Duration::from_secs(15)
}

/// ureq's message for `e` with the URL (which may hold a webhook secret) cut out.
fn redacted(e: &ureq::Error, url: &str) -> String {
    let msg = e.to_string();
    let mut out = msg.replace(url, "<url>");
    if let Some((_, rest)) = url.split_once("://")
        && let Some(i) = rest.find(['/', '?'])
    {
        out = out.replace(&rest[i..], "/<redacted>");
    }
    out
}

impl Transport for HttpTransport {
    fn send(&self, req: &HttpRequest) -> Result<HttpResponse, NotifyError> {
        let url = req.url.as_str();
        let result = match req.method {
            Method::Get => {
                let mut b = self.agent.get(url);
                for (k, v) in &req.headers {
                    b = b.header(k, v);
                }
                b.call()
            }
            m => {
                let mut b = match m {
                    Method::Put => self.agent.put(url),
                    Method::Patch => self.agent.patch(url),
                    _ => self.agent.post(url),
                };
                for (k, v) in &req.headers {
                    b = b.header(k, v);
                }
                b.send(&req.body[..])
            }
        };
        let resp = result.map_err(|e| NotifyError::Transport {
            host: req.host(),
            message: redacted(&e, url),
        })?;
        let status = resp.status().as_u16();
        let mut body = Vec::new();
        // A body that breaks off is still an answer: the status is what counts.
        let _ = resp
            .into_body()
            .into_reader()
            .take(MAX_RESPONSE_BYTES)
            .read_to_end(&mut body);
        Ok(HttpResponse { status, body })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_tls_material_and_proxy_are_named_not_quoted() {
        let opts = TransportOptions {
            ca_pem: Some(b"secret-garbage".to_vec()),
            ..Default::default()
        };
        let e = HttpTransport::new(&opts).err().map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some("invalid provider settings: ca.crt is not a PEM certificate bundle")
        );
        let opts = TransportOptions {
            proxy: Some(ProxyOptions {
                address: "http://u:secretpw@proxy:3128".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let e = HttpTransport::new(&opts)
            .err()
            .map(|e| e.to_string())
            .unwrap();
        assert!(!e.contains("secretpw"), "{e}");
    }

    #[test]
    fn connection_errors_do_not_quote_the_webhook_path() {
        let t = HttpTransport::new(&TransportOptions {
            timeout: Duration::from_secs(2),
            ..Default::default()
        })
        .unwrap();
        // Port 9 on loopback: nothing listens, the connection is refused at once.
        let req = HttpRequest::post_json(
            "http://127.0.0.1:9/services/T000/B000/s3cr3t",
            &serde_json::json!({}),
        );
        let e = t.send(&req).unwrap_err();
        assert!(e.is_retryable());
        let msg = e.to_string();
        assert!(!msg.contains("s3cr3t"), "{msg}");
        assert!(msg.contains("http://127.0.0.1:9"), "{msg}");
    }
}
