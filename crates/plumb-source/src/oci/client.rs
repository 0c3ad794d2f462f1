//! HTTP transport of the OCI client: TLS, timeouts, authentication (basic and the
//! distribution bearer-token flow), bounded reads and error mapping.

use std::io::Read;
use std::sync::Mutex;
use std::time::Duration;

use base64::Engine as _;

use super::Reference;
use crate::{Result, SourceError};

/// Registry credentials. `Debug` never prints the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// User name.
    pub username: String,
    /// Password or token.
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

impl Credentials {
    /// The credentials for `registry` in a `.dockerconfigjson` (`{"auths": {host: {auth |
    /// username + password}}}`); keys may carry a scheme or path (`https://host/v1/`), and
    /// Docker Hub's names are treated as one. `None` when no entry matches.
    pub fn from_docker_config(json: &[u8], registry: &str) -> Result<Option<Credentials>> {
        let bad = |detail: &str| SourceError::Invalid {
            what: "secret field '.dockerconfigjson'".to_string(),
            detail: detail.to_string(),
        };
        let v: serde_json::Value =
            serde_json::from_slice(json).map_err(|_| bad("not valid JSON"))?;
        let Some(auths) = v.get("auths").and_then(|a| a.as_object()) else {
            return Err(bad("no 'auths' object"));
        };
        let norm = |h: &str| -> String {
            let h = h
                .trim_start_matches("https://")
                .trim_start_matches("http://");
            let h = h.split('/').next().unwrap_or(h);
            match h {
                "docker.io" | "index.docker.io" | "registry-1.docker.io" => "docker.io".into(),
                h => h.to_string(),
            }
        };
        let want = norm(registry);
        for (key, entry) in auths {
            if norm(key) != want {
                continue;
            }
            if let Some(auth) = entry.get("auth").and_then(|a| a.as_str())
                && !auth.is_empty()
            {
                let raw = base64::engine::general_purpose::STANDARD
                    .decode(auth.trim())
                    .map_err(|_| bad("'auth' is not base64"))?;
                let text = String::from_utf8(raw).map_err(|_| bad("'auth' is not UTF-8"))?;
                let (u, p) = text
                    .split_once(':')
                    .ok_or_else(|| bad("'auth' is not user:password"))?;
                return Ok(Some(Credentials {
                    username: u.to_string(),
                    password: p.to_string(),
                }));
            }
            let field = |k: &str| entry.get(k).and_then(|x| x.as_str()).unwrap_or_default();
            if !field("username").is_empty() || !field("password").is_empty() {
                return Ok(Some(Credentials {
                    username: field("username").to_string(),
                    password: field("password").to_string(),
                }));
            }
        }
        Ok(None)
    }
}

/// Size caps of downloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OciLimits {
    /// Largest manifest (and config blob, and tag list page).
    pub max_manifest_bytes: u64,
    /// Largest layer blob (compressed).
    pub max_layer_bytes: u64,
}

impl Default for OciLimits {
    fn default() -> OciLimits {
        OciLimits {
            max_manifest_bytes: 4 << 20,
            max_layer_bytes: 256 << 20,
        }
    }
}

/// How to reach a registry.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Plain HTTP instead of HTTPS (`spec.insecure`).
    pub insecure: bool,
    /// PEM CA bundle to trust instead of the system roots (`ca.crt`).
    pub ca_pem: Option<Vec<u8>>,
    /// PEM client certificate chain and key (`tls.crt`, `tls.key`).
    pub client_cert: Option<(Vec<u8>, Vec<u8>)>,
    /// Registry credentials; anonymous when `None`.
    pub credentials: Option<Credentials>,
    /// Deadline of each request, connection included.
    pub timeout: Duration,
    /// Download caps.
    pub limits: OciLimits,
    /// Host names connected to at a fixed address instead of through DNS, like a hosts-file
    /// entry (or curl's `--resolve`): the URL, `Host` header, TLS name and credentials still
    /// use the name. Empty in production; tests use it to reach a loopback registry under a
    /// registry host name (an ECR one).
    pub resolve: Vec<(String, std::net::IpAddr)>,
    /// Proxy every request goes through (`proxySecretRef`); `None` keeps the environment's
    /// `HTTPS_PROXY`/`HTTP_PROXY`/`NO_PROXY`, as Go's clients do.
    pub proxy: Option<ProxyConfig>,
}

/// A proxy from a `proxySecretRef` Secret. `Debug` never shows the password.
#[derive(Clone, PartialEq, Eq)]
pub struct ProxyConfig {
    /// `http://host:port` (also `https://`, `socks5://`).
    pub address: String,
    /// Basic-auth user name.
    pub username: Option<String>,
    /// Basic-auth password.
    pub password: Option<String>,
}

impl std::fmt::Debug for ProxyConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyConfig")
            .field("address", &self.address)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

impl ProxyConfig {
    /// The ureq proxy; errors name the field, never the credentials.
    fn to_ureq(&self) -> Result<ureq::Proxy> {
        let invalid = |detail: &str| SourceError::Invalid {
            what: "proxy secret field 'address'".to_string(),
            detail: detail.to_string(),
        };
        if self.address.contains('@') {
            return Err(invalid(
                "must not hold credentials (use 'username' and 'password')",
            ));
        }
        let base = ureq::Proxy::new(&self.address)
            .map_err(|_| invalid("not a proxy URL (http://host:port)"))?;
        if self.username.is_none() {
            return Ok(base);
        }
        let mut b = ureq::Proxy::builder(base.protocol())
            .host(base.host())
            .port(base.port());
        if let Some(u) = &self.username {
            b = b.username(u);
        }
        if let Some(p) = &self.password {
            b = b.password(p);
        }
        b.build()
            .map_err(|_| invalid("not a proxy URL (http://host:port)"))
    }
}

impl Default for ClientOptions {
    fn default() -> ClientOptions {
        ClientOptions {
            insecure: false,
            ca_pem: None,
            client_cert: None,
            credentials: None,
            timeout: Duration::from_secs(60),
            limits: OciLimits::default(),
            resolve: Vec::new(),
            proxy: None,
        }
    }
}

impl ClientOptions {
    /// Take TLS material from a `certSecretRef` Secret's data: `ca.crt`, and `tls.crt` with
    /// `tls.key` (both or neither). Errors name the key, never its value.
    pub fn apply_cert_secret(
        &mut self,
        data: &std::collections::BTreeMap<String, Vec<u8>>,
    ) -> Result<()> {
        if let Some(ca) = data.get("ca.crt") {
            self.ca_pem = Some(ca.clone());
        }
        match (data.get("tls.crt"), data.get("tls.key")) {
            (Some(c), Some(k)) => self.client_cert = Some((c.clone(), k.clone())),
            (None, None) => {}
            (Some(_), None) | (None, Some(_)) => {
                return Err(SourceError::Invalid {
                    what: "secret fields 'tls.crt' and 'tls.key'".to_string(),
                    detail: "both must be set, or neither".to_string(),
                });
            }
        }
        Ok(())
    }

    /// Take the proxy from a `proxySecretRef` Secret's data: `address` (required), `username`
    /// and `password`, as Flux reads them.
    pub fn apply_proxy_secret(
        &mut self,
        data: &std::collections::BTreeMap<String, Vec<u8>>,
    ) -> Result<()> {
        let text = |key: &str| -> Result<Option<String>> {
            data.get(key)
                .map(|v| {
                    String::from_utf8(v.clone()).map_err(|_| SourceError::Invalid {
                        what: format!("proxy secret field '{key}'"),
                        detail: "not UTF-8".to_string(),
                    })
                })
                .transpose()
        };
        let address = text("address")?
            .filter(|a| !a.trim().is_empty())
            .ok_or_else(|| SourceError::Invalid {
                what: "proxy secret field 'address'".to_string(),
                detail: "missing".to_string(),
            })?;
        let proxy = ProxyConfig {
            address: address.trim().to_string(),
            username: text("username")?,
            password: text("password")?,
        };
        proxy.to_ureq()?;
        self.proxy = Some(proxy);
        Ok(())
    }

    /// Take credentials for `registry` from a `kubernetes.io/dockerconfigjson` Secret's data
    /// (`.dockerconfigjson`); a Secret without that key is an error, one without an entry
    /// for the registry leaves the client anonymous.
    pub fn apply_docker_config_secret(
        &mut self,
        data: &std::collections::BTreeMap<String, Vec<u8>>,
        registry: &str,
    ) -> Result<()> {
        let json = data
            .get(".dockerconfigjson")
            .ok_or_else(|| SourceError::Invalid {
                what: "secret field '.dockerconfigjson'".to_string(),
                detail: "missing (the secret must be of type kubernetes.io/dockerconfigjson)"
                    .to_string(),
            })?;
        if let Some(c) = Credentials::from_docker_config(json, registry)? {
            self.credentials = Some(c);
        }
        Ok(())
    }
}

/// A client for one repository of one registry. Cheap to keep; holds the last authorization
/// (bearer token or basic) so later requests skip the challenge round trip.
pub struct Client {
    pub(crate) agent: ureq::Agent,
    pub(crate) reference: Reference,
    base: String,
    credentials: Option<Credentials>,
    pub(crate) limits: OciLimits,
    timeout: Duration,
    /// `Authorization` header value that last worked, per scope (`pull` or `pull,push`).
    auth: Mutex<Vec<(String, String)>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base)
            .field("repository", &self.reference.repository)
            .finish_non_exhaustive()
    }
}

/// A response whose status was read; the body is still to be read (bounded).
pub(crate) struct Resp {
    pub(crate) status: u16,
    pub(crate) inner: ureq::http::Response<ureq::Body>,
}

impl Resp {
    pub(crate) fn header(&self, name: &str) -> Option<String> {
        self.inner
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }
}

/// HTTP method and body of one request.
pub(crate) enum Body<'a> {
    None,
    Bytes(&'a [u8], &'a str),
}

impl Client {
    /// A client for `reference`'s repository.
    pub fn new(reference: &Reference, opts: &ClientOptions) -> Result<Client> {
        use ureq::tls::{ClientCert, PrivateKey, RootCerts, TlsConfig};
        let invalid = |what: &str, detail: &str| SourceError::Invalid {
            what: format!("secret field '{what}'"),
            detail: detail.to_string(),
        };
        let mut tls = TlsConfig::builder().provider(ureq::tls::TlsProvider::NativeTls);
        if let Some(pem) = &opts.ca_pem {
            let cas = crate::mtls::certificates(pem);
            if cas.is_empty() {
                return Err(invalid("ca.crt", "not a PEM certificate bundle"));
            }
            tls = tls.root_certs(RootCerts::new_with_certs(&cas));
        } else {
            tls = tls.root_certs(RootCerts::PlatformVerifier);
        }
        if let Some((crt, key)) = &opts.client_cert {
            let chain = crate::mtls::certificates(crt);
            if chain.is_empty() {
                return Err(invalid("tls.crt", "no PEM certificate found"));
            }
            // A key parse error could quote key material: never pass it on.
            let key = PrivateKey::from_pem(key)
                .map_err(|_| invalid("tls.key", "not a PEM private key"))?;
            tls = tls.client_cert(Some(ClientCert::new_with_certs(&chain, key)));
        }
        let config = ureq::Agent::config_builder()
            .tls_config(tls.build())
            .http_status_as_error(false)
            .timeout_global(Some(opts.timeout))
            .user_agent(USER_AGENT)
            .proxy(match &opts.proxy {
                Some(p) => Some(p.to_ureq()?),
                None => ureq::Proxy::try_from_env(),
            })
            .build();
        let agent = if opts.resolve.is_empty() {
            config.into()
        } else {
            ureq::Agent::with_parts(
                config,
                ureq::unversioned::transport::DefaultConnector::default(),
                FixedResolver(opts.resolve.clone()),
            )
        };
        let scheme = if opts.insecure { "http" } else { "https" };
        Ok(Client {
            agent,
            base: format!("{scheme}://{}", reference.api_host()),
            reference: reference.clone(),
            credentials: opts.credentials.clone(),
            limits: opts.limits,
            timeout: opts.timeout,
            auth: Mutex::new(Vec::new()),
        })
    }

    /// The repository this client talks to.
    pub fn reference(&self) -> &Reference {
        &self.reference
    }

    /// `<base>/v2/<repo>/<rest>`.
    pub(crate) fn url(&self, rest: &str) -> String {
        format!("{}/v2/{}/{rest}", self.base, self.reference.repository)
    }

    /// An absolute URL for a `Location` header (absolute or relative to the registry).
    pub(crate) fn absolute(&self, location: &str) -> String {
        if location.starts_with("http://") || location.starts_with("https://") {
            location.to_string()
        } else {
            format!("{}{location}", self.base)
        }
    }

    fn cached_auth(&self, scope: &str) -> Option<String> {
        let g = self.auth.lock().ok()?;
        g.iter().find(|(s, _)| s == scope).map(|(_, v)| v.clone())
    }

    fn store_auth(&self, scope: &str, value: String) {
        if let Ok(mut g) = self.auth.lock() {
            g.retain(|(s, _)| s != scope);
            g.push((scope.to_string(), value));
        }
    }

    fn send(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: &Body<'_>,
        auth: Option<&str>,
    ) -> Result<Resp> {
        let mut b = ureq::http::Request::builder().method(method).uri(url);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        if let Some(a) = auth {
            b = b.header("Authorization", a);
        }
        let res = match body {
            Body::None => {
                let req = b
                    .body(())
                    .map_err(|e| self.http_err(method, e.to_string()))?;
                self.agent.run(req)
            }
            Body::Bytes(bytes, ct) => {
                let req = b
                    .header("Content-Type", *ct)
                    .body(bytes.to_vec())
                    .map_err(|e| self.http_err(method, e.to_string()))?;
                self.agent.run(req)
            }
        };
        let inner = res.map_err(|e| self.transport_err(method, e))?;
        Ok(Resp {
            status: inner.status().as_u16(),
            inner,
        })
    }

    /// Send a request, answering one 401 challenge (basic or bearer) for `scope`
    /// (`pull` or `pull,push`).
    pub(crate) fn request(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: Body<'_>,
        scope: &str,
    ) -> Result<Resp> {
        let cached = self.cached_auth(scope);
        let resp = self.send(method, url, headers, &body, cached.as_deref())?;
        if resp.status == 403 {
            return Err(self.auth_failed(403));
        }
        if resp.status != 401 {
            return Ok(resp);
        }
        let challenge = resp.header("www-authenticate").unwrap_or_default();
        let auth = self.answer_challenge(&challenge, scope)?;
        let resp = self.send(method, url, headers, &body, Some(&auth))?;
        if resp.status == 401 || resp.status == 403 {
            return Err(self.auth_failed(resp.status));
        }
        self.store_auth(scope, auth);
        Ok(resp)
    }

    fn auth_failed(&self, status: u16) -> SourceError {
        let detail = match (status, self.credentials.is_some()) {
            (403, _) => "access denied (403)".to_string(),
            (_, true) => "the registry rejected the credentials (401)".to_string(),
            (_, false) => "the registry requires credentials (401); none were given".to_string(),
        };
        SourceError::AuthFailed {
            op: "oci",
            url: self.reference.name(),
            detail,
        }
    }

    fn basic(&self) -> Option<String> {
        self.credentials.as_ref().map(|c| {
            let raw = format!("{}:{}", c.username, c.password);
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(raw)
            )
        })
    }

    fn answer_challenge(&self, challenge: &str, scope: &str) -> Result<String> {
        let (scheme, params) = challenge.split_once(' ').unwrap_or((challenge, ""));
        if scheme.eq_ignore_ascii_case("basic") {
            return self.basic().ok_or_else(|| self.auth_failed(401));
        }
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(self.auth_failed(401));
        }
        let params = parse_challenge(params);
        let get = |k: &str| {
            params
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(k))
                .map(|(_, v)| v.as_str())
        };
        let realm = get("realm").ok_or_else(|| SourceError::Http {
            op: "oci token",
            url: self.reference.name(),
            detail: "bearer challenge without realm".to_string(),
        })?;
        let mut url = format!(
            "{realm}{}scope={}",
            if realm.contains('?') { '&' } else { '?' },
            query_escape(&format!("repository:{}:{scope}", self.reference.repository))
        );
        if let Some(service) = get("service") {
            url.push_str(&format!("&service={}", query_escape(service)));
        }
        let basic = self.basic();
        let resp = self.send("GET", &url, &[], &Body::None, basic.as_deref())?;
        if resp.status == 401 || resp.status == 403 {
            return Err(self.auth_failed(resp.status));
        }
        if resp.status != 200 {
            return Err(self.status_err("oci token", resp.status));
        }
        let body = self.read_capped(resp, self.limits.max_manifest_bytes, "token")?;
        let v: serde_json::Value =
            serde_json::from_slice(&body).map_err(|_| SourceError::Http {
                op: "oci token",
                url: self.reference.name(),
                detail: "token response is not JSON".to_string(),
            })?;
        let token = v
            .get("token")
            .or_else(|| v.get("access_token"))
            .and_then(|t| t.as_str())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| SourceError::Http {
                op: "oci token",
                url: self.reference.name(),
                detail: "token response has no token".to_string(),
            })?;
        Ok(format!("Bearer {token}"))
    }

    /// Read at most `cap` bytes of the body; more is a `TooLarge` error naming `what`.
    pub(crate) fn read_capped(&self, mut resp: Resp, cap: u64, what: &str) -> Result<Vec<u8>> {
        if let Some(len) = resp
            .header("content-length")
            .and_then(|l| l.parse::<u64>().ok())
            && len > cap
        {
            return Err(self.too_large(what, len, cap));
        }
        let mut out = Vec::new();
        resp.inner
            .body_mut()
            .as_reader()
            .take(cap + 1)
            .read_to_end(&mut out)
            .map_err(|e| self.read_err(what, e))?;
        if out.len() as u64 > cap {
            return Err(self.too_large(what, out.len() as u64, cap));
        }
        Ok(out)
    }

    fn too_large(&self, what: &str, size: u64, limit: u64) -> SourceError {
        SourceError::TooLarge {
            op: "oci pull",
            path: format!("{} {what}", self.reference.name()),
            size,
            limit,
        }
    }

    pub(crate) fn read_err(&self, what: &str, e: std::io::Error) -> SourceError {
        if e.kind() == std::io::ErrorKind::TimedOut
            || e.to_string().to_ascii_lowercase().contains("timeout")
        {
            return SourceError::Timeout {
                op: "oci read",
                url: format!("{} {what}", self.reference.name()),
                after: self.timeout,
            };
        }
        SourceError::Unreachable {
            op: "oci read",
            url: format!("{} {what}", self.reference.name()),
            detail: e.to_string(),
        }
    }

    pub(crate) fn status_err(&self, op: &'static str, status: u16) -> SourceError {
        SourceError::Http {
            op,
            url: self.reference.name(),
            detail: format!("unexpected HTTP status {status}"),
        }
    }

    fn http_err(&self, method: &str, detail: String) -> SourceError {
        SourceError::Http {
            op: "oci request",
            url: self.reference.name(),
            detail: format!("{method}: {detail}"),
        }
    }

    fn transport_err(&self, method: &str, e: ureq::Error) -> SourceError {
        let url = self.reference.name();
        match e {
            ureq::Error::Timeout(_) => SourceError::Timeout {
                op: "oci request",
                url,
                after: self.timeout,
            },
            ureq::Error::Tls(_) | ureq::Error::NativeTls(_) => SourceError::HostUntrusted {
                op: "oci request",
                url,
                detail: e.to_string(),
            },
            ureq::Error::Io(ref io) if io.kind() == std::io::ErrorKind::TimedOut => {
                SourceError::Timeout {
                    op: "oci request",
                    url,
                    after: self.timeout,
                }
            }
            other => {
                let detail = other.to_string();
                // OpenSSL handshake failures surface as I/O errors through native-tls.
                if detail.contains("certificate") || detail.contains("SSL") {
                    SourceError::HostUntrusted {
                        op: "oci request",
                        url,
                        detail,
                    }
                } else {
                    SourceError::Unreachable {
                        op: "oci request",
                        url,
                        detail: format!("{method}: {detail}"),
                    }
                }
            }
        }
    }
}

/// [`ClientOptions::resolve`]: listed host names go to their fixed address, the rest through
/// ureq's default resolver (DNS).
#[derive(Debug)]
struct FixedResolver(Vec<(String, std::net::IpAddr)>);

impl ureq::unversioned::resolver::Resolver for FixedResolver {
    fn resolve(
        &self,
        uri: &ureq::http::Uri,
        config: &ureq::config::Config,
        timeout: ureq::unversioned::transport::NextTimeout,
    ) -> std::result::Result<ureq::unversioned::resolver::ResolvedSocketAddrs, ureq::Error> {
        let host = uri.host().unwrap_or_default();
        let fixed = self.0.iter().find(|(h, _)| h.eq_ignore_ascii_case(host));
        let Some((_, ip)) = fixed else {
            return ureq::unversioned::resolver::DefaultResolver::default()
                .resolve(uri, config, timeout);
        };
        let https = uri.scheme_str() == Some("https");
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let mut out = self.empty();
        out.push(std::net::SocketAddr::new(*ip, port));
        Ok(out)
    }
}

/// Flux's user agent: some registries (and their rate limits) key on it.
const USER_AGENT: &str = "flux/v2";

/// `key="value", key2="value2"` of a `WWW-Authenticate` header.
fn parse_challenge(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = s.trim();
    while !rest.is_empty() {
        let Some((k, after)) = rest.split_once('=') else {
            break;
        };
        let key = k.trim().trim_start_matches(',').trim().to_string();
        let after = after.trim_start();
        let (value, tail) = if let Some(q) = after.strip_prefix('"') {
            match q.find('"') {
                Some(end) => (q[..end].to_string(), &q[end + 1..]),
                None => (q.to_string(), ""),
            }
        } else {
            match after.find(',') {
                Some(end) => (after[..end].trim().to_string(), &after[end..]),
                None => (after.trim().to_string(), ""),
            }
        };
        out.push((key, value));
        rest = tail.trim_start().trim_start_matches(',').trim_start();
    }
    out
}

/// Percent-encode a query value.
pub(crate) fn query_escape(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bearer_challenges() {
        let p = parse_challenge(
            r#"realm="https://ghcr.io/token",service="ghcr.io",scope="repository:a/b:pull""#,
        );
        assert_eq!(
            p,
            vec![
                ("realm".into(), "https://ghcr.io/token".into()),
                ("service".into(), "ghcr.io".into()),
                ("scope".into(), "repository:a/b:pull".into()),
            ]
        );
        assert_eq!(
            parse_challenge("realm=x, service=y"),
            vec![("realm".into(), "x".into()), ("service".into(), "y".into())]
        );
    }

    #[test]
    fn docker_config_matches_hosts_and_hides_passwords() {
        let cfg = br#"{"auths": {
            "https://index.docker.io/v1/": {"auth": "dTpw"},
            "ghcr.io": {"username": "me", "password": "tok"},
            "127.0.0.1:5000": {"auth": "YWxpY2U6czNjcjp0"}
        }}"#;
        let c = Credentials::from_docker_config(cfg, "docker.io")
            .unwrap()
            .unwrap();
        assert_eq!((c.username.as_str(), c.password.as_str()), ("u", "p"));
        let c = Credentials::from_docker_config(cfg, "ghcr.io")
            .unwrap()
            .unwrap();
        assert_eq!(c.password, "tok");
        let c = Credentials::from_docker_config(cfg, "127.0.0.1:5000")
            .unwrap()
            .unwrap();
        assert_eq!(
            (c.username.as_str(), c.password.as_str()),
            ("alice", "s3cr:t")
        );
        assert!(!format!("{c:?}").contains("s3cr"));
        assert!(
            Credentials::from_docker_config(cfg, "quay.io")
                .unwrap()
                .is_none()
        );
        assert!(Credentials::from_docker_config(b"nope", "x").is_err());
    }

    #[test]
    fn proxy_secret_is_read_as_flux_and_hides_the_password() {
        let data = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
                .collect::<std::collections::BTreeMap<_, _>>()
        };
        let mut opts = ClientOptions::default();
        opts.apply_proxy_secret(&data(&[
            ("address", "http://127.0.0.1:3128"),
            ("username", "u"),
            ("password", "pw-secret"),
        ]))
        .unwrap();
        let p = opts.proxy.clone().unwrap();
        assert_eq!(p.address, "http://127.0.0.1:3128");
        assert!(!format!("{p:?}").contains("pw-secret"));
        assert!(Client::new(&super::super::parse_url("oci://r.io/x").unwrap(), &opts).is_ok());
        let missing = opts.apply_proxy_secret(&data(&[("username", "u")]));
        assert!(missing.unwrap_err().to_string().contains("'address'"));
        let inline = opts
            .apply_proxy_secret(&data(&[("address", "http://u:pw-secret@h:1")]))
            .unwrap_err()
            .to_string();
        assert!(!inline.contains("pw-secret"), "{inline}");
    }

    #[test]
    fn client_can_be_shared_across_threads() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Client>();
    }

    #[test]
    fn secrets_fill_options() {
        use std::collections::BTreeMap;
        let mut o = ClientOptions::default();
        let data = BTreeMap::from([(
            ".dockerconfigjson".to_string(),
            br#"{"auths":{"r.io":{"auth":"dTpw"}}}"#.to_vec(),
        )]);
        o.apply_docker_config_secret(&data, "r.io").unwrap();
        assert_eq!(o.credentials.as_ref().unwrap().username, "u");
        assert!(
            o.apply_docker_config_secret(&BTreeMap::new(), "r.io")
                .is_err()
        );
        let half = BTreeMap::from([("tls.crt".to_string(), b"x".to_vec())]);
        let e = o.apply_cert_secret(&half).unwrap_err();
        assert!(e.to_string().contains("both must be set"), "{e}");
        let ca = BTreeMap::from([("ca.crt".to_string(), b"pem".to_vec())]);
        o.apply_cert_secret(&ca).unwrap();
        assert_eq!(o.ca_pem.as_deref(), Some(&b"pem"[..]));
    }
}
