//! A real OCI registry on loopback: Debian's `docker-registry` (CNCF distribution 2.8),
//! started with `docker-registry serve CONFIG`, plain HTTP or HTTPS with the test CA of
//! [`TlsMaterial`], anonymous or behind htpasswd (bcrypt) basic auth. Storage is a temp dir;
//! the process is killed when the [`Registry`] is dropped.
//!
//! A missing `docker-registry` binary is an error, never a skip (`scripts/install-deps.sh`
//! installs it).

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::git::TlsMaterial;
use crate::registry_token::TokenServer;

/// How to start a [`Registry`].
#[derive(Debug, Default, Clone, Copy)]
pub struct RegistryOptions<'a> {
    /// Serve HTTPS with this material's server certificate (else plain HTTP).
    pub tls: Option<&'a TlsMaterial>,
    /// Demand basic auth for this user and password (an htpasswd file with a bcrypt hash).
    pub htpasswd: Option<(&'a str, &'a str)>,
    /// Demand bearer tokens from a [`TokenServer`] that gives them for this user and password.
    pub token: Option<(&'a str, &'a str)>,
    /// With `tls`: demand a client certificate signed by the test CA.
    pub client_auth: bool,
}

/// A running registry.
#[derive(Debug)]
pub struct Registry {
    child: Child,
    port: u16,
    tls: bool,
    /// Client certificate and key (PEM) the readiness probe presents.
    probe_identity: Option<(String, String)>,
    token: Option<TokenServer>,
    dir: tempfile::TempDir,
}

impl Registry {
    /// Writes a config and starts `docker-registry serve`, waiting (up to 30 s) until `/v2/`
    /// answers (200, or 401 with htpasswd).
    pub fn start(opts: RegistryOptions<'_>) -> Result<Registry, String> {
        let dir = tempfile::tempdir().map_err(|e| format!("registry temp dir: {e}"))?;
        let port = free_port()?;
        let token = match opts.token {
            Some((user, pass)) => Some(TokenServer::start(dir.path(), user, pass)?),
            None => None,
        };
        let config = write_config(dir.path(), port, &opts, token.as_ref())?;
        let log = std::fs::File::create(dir.path().join("registry.log"))
            .map_err(|e| format!("registry log: {e}"))?;
        let log2 = log.try_clone().map_err(|e| format!("registry log: {e}"))?;
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .map_err(|e| {
                format!(
                    "docker-registry cannot run ({e}); run scripts/install-deps.sh \
                     (apt-get install docker-registry)"
                )
            })?;
        let mut reg = Registry {
            child,
            port,
            tls: opts.tls.is_some(),
            probe_identity: opts
                .tls
                .filter(|_| opts.client_auth)
                .map(|t| (t.client_crt_pem.clone(), t.client_key_pem.clone())),
            token,
            dir,
        };
        reg.wait_ready(Duration::from_secs(30))?;
        Ok(reg)
    }

    fn wait_ready(&mut self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(200 | 401) = self.probe() {
                return Ok(());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "docker-registry exited early ({status}): {}",
                    self.log_tail()
                ));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "docker-registry did not answer /v2/ on port {} within {timeout:?}: {}",
                    self.port,
                    self.log_tail()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Status code of `GET /v2/` (TLS without verification: only liveness is probed).
    fn probe(&self) -> Result<u16, String> {
        let stream = TcpStream::connect(("127.0.0.1", self.port)).map_err(|e| e.to_string())?;
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .map_err(|e| e.to_string())?;
        let req = format!(
            "GET /v2/ HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\r\n",
            self.port
        );
        let mut resp = String::new();
        if self.tls {
            let mut b = openssl::ssl::SslConnector::builder(openssl::ssl::SslMethod::tls())
                .map_err(|e| e.to_string())?;
            b.set_verify(openssl::ssl::SslVerifyMode::NONE);
            if let Some((crt, key)) = &self.probe_identity {
                let crt =
                    openssl::x509::X509::from_pem(crt.as_bytes()).map_err(|e| e.to_string())?;
                let key = openssl::pkey::PKey::private_key_from_pem(key.as_bytes())
                    .map_err(|e| e.to_string())?;
                b.set_certificate(&crt).map_err(|e| e.to_string())?;
                b.set_private_key(&key).map_err(|e| e.to_string())?;
            }
            let mut s = b
                .build()
                .connect("localhost", stream)
                .map_err(|e| e.to_string())?;
            s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
            let _ = s.read_to_string(&mut resp);
        } else {
            let mut s = stream;
            s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
            let _ = s.read_to_string(&mut resp);
        }
        resp.split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| format!("no HTTP status in {resp:?}"))
    }

    /// The token server, when started with `token`.
    pub fn token_server(&self) -> Option<&TokenServer> {
        self.token.as_ref()
    }

    /// `127.0.0.1:<port>`, the registry host of references.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `oci://127.0.0.1:<port>/<repo>`.
    pub fn oci_url(&self, repo: &str) -> String {
        format!("oci://{}/{repo}", self.host())
    }

    /// The base URL, `http(s)://127.0.0.1:<port>`.
    pub fn base_url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.host())
    }

    /// Where the registry stores blobs and manifests (for corruption tests).
    pub fn storage_dir(&self) -> PathBuf {
        self.dir.path().join("storage")
    }

    /// The registry's whole log, access log included (one line per request:
    /// `"METHOD /v2/... HTTP/1.1" status`).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// The path of a blob's data in the registry's storage (for corruption tests).
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.storage_dir()
            .join("docker/registry/v2/blobs/sha256")
            .join(&hex[..2.min(hex.len())])
            .join(hex)
            .join("data")
    }

    /// The last lines of the registry's log.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn write_config(
    dir: &Path,
    port: u16,
    opts: &RegistryOptions<'_>,
    token: Option<&TokenServer>,
) -> Result<PathBuf, String> {
    if opts.htpasswd.is_some() && token.is_some() {
        return Err("htpasswd and token auth are exclusive".to_string());
    }
    let storage = dir.join("storage");
    std::fs::create_dir_all(&storage).map_err(|e| format!("registry storage: {e}"))?;
    let mut cfg = format!(
        "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\n\
         storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
         http:\n  addr: 127.0.0.1:{port}\n",
        storage.display()
    );
    if let Some(tls) = opts.tls {
        cfg.push_str(&format!(
            "  tls:\n    certificate: {}\n    key: {}\n",
            tls.server_cert_path().display(),
            tls.server_key_path().display()
        ));
        if opts.client_auth {
            cfg.push_str(&format!(
                "    clientcas:\n      - {}\n",
                tls.ca_path().display()
            ));
        }
    }
    if let Some(t) = token {
        cfg.push_str(&format!(
            "auth:\n  token:\n    realm: {}\n    service: {}\n    issuer: {}\n    rootcertbundle: {}\n",
            t.realm(),
            crate::registry_token::SERVICE,
            crate::registry_token::ISSUER,
            t.bundle().display()
        ));
    }
    if let Some((user, pass)) = opts.htpasswd {
        // Cost 4 (bcrypt's minimum) keeps each authenticated request fast.
        let hash = bcrypt::hash_with_result(pass, 4)
            .map_err(|e| format!("bcrypt: {e}"))?
            .format_for_version(bcrypt::Version::TwoY);
        let path = dir.join("htpasswd");
        std::fs::write(&path, format!("{user}:{hash}\n")).map_err(|e| format!("htpasswd: {e}"))?;
        cfg.push_str(&format!(
            "auth:\n  htpasswd:\n    realm: plumb-test\n    path: {}\n",
            path.display()
        ));
    }
    let path = dir.join("config.yml");
    std::fs::write(&path, cfg).map_err(|e| format!("registry config: {e}"))?;
    Ok(path)
}

fn free_port() -> Result<u16, String> {
    let l = TcpListener::bind(("127.0.0.1", 0)).map_err(|e| format!("binding a free port: {e}"))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("reading the free port: {e}"))
}
