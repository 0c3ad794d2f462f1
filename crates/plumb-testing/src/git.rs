//! Real git servers on loopback and repository builders for source tests.
//!
//! - [`GitHttpServer`]: git's own smart-HTTP server (`git http-backend`, run as a CGI program per
//!   request) behind a small hyper server, anonymous or with basic auth or a bearer token. It
//!   records every request so tests can assert that no pack was transferred.
//! - [`StallServer`]: accepts TCP connections and never answers (timeout tests).
//! - [`SshServer`]: Debian's `/usr/sbin/sshd` on a free loopback port with a generated host key,
//!   one authorized client key (plain and passphrase-protected variants) and a `known_hosts` line.
//! - [`TestRepo`]: a non-bare repository driven with the `git` CLI (commits, branches, tags,
//!   force-push equivalents, moved tags, deleted branches, symlinks) and [`TestRepo::big`], a
//!   many-commit, many-file repository written with `git fast-import`.
//!
//! The CGI gateway is hand-written: no maintained Rust crate wraps `git http-backend`, and the
//! CGI contract it needs is twenty lines.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

pub use crate::ssh::SshServer;
pub use crate::tls::TlsMaterial;

/// Identity used for all fixture commits, so commit ids are reproducible per content and time.
const GIT_IDENTITY: [(&str, &str); 4] = [
    ("GIT_AUTHOR_NAME", "Plumb Test"),
    ("GIT_AUTHOR_EMAIL", "test@plumb.invalid"),
    ("GIT_COMMITTER_NAME", "Plumb Test"),
    ("GIT_COMMITTER_EMAIL", "test@plumb.invalid"),
];

/// Run `git` with a clean configuration in `dir`; panics with stderr on failure (fixtures only).
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .envs(GIT_IDENTITY)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_TERMINAL_PROMPT", "0")
        .output()
        .unwrap_or_else(|e| panic!("spawn git {args:?}: {e}"));
    assert!(
        out.status.success(),
        "git {args:?} in {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A non-bare repository served as-is by the HTTP and SSH fixtures.
#[derive(Debug, Clone)]
pub struct TestRepo {
    /// Work tree path; servers address it by its name under their root.
    pub path: PathBuf,
}

impl TestRepo {
    /// `git init` a repository named `name` under `root` with initial branch `master`.
    pub fn init(root: &Path, name: &str) -> TestRepo {
        let path = root.join(name);
        std::fs::create_dir_all(&path).expect("create repo dir");
        git(&path, &["init", "-q", "-b", "master"]);
        git(
            &path,
            &["config", "uploadpack.allowReachableSHA1InWant", "true"],
        );
        TestRepo { path }
    }

    /// Write `files` (relative path, content), stage everything and commit; returns the commit id.
    pub fn commit(&self, files: &[(&str, &str)], message: &str) -> String {
        for (rel, content) in files {
            let p = self.path.join(rel);
            if let Some(parent) = p.parent() {
                std::fs::create_dir_all(parent).expect("create parent dir");
            }
            std::fs::write(&p, content).expect("write file");
        }
        git(&self.path, &["add", "-A"]);
        git(
            &self.path,
            &["commit", "-q", "--allow-empty", "-m", message],
        );
        self.head()
    }

    /// Write raw bytes to `rel` without committing.
    pub fn write_bytes(&self, rel: &str, content: &[u8]) {
        let p = self.path.join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).expect("create parent dir");
        }
        std::fs::write(p, content).expect("write file");
    }

    /// Create a symlink `rel` pointing at `target` (not committed).
    pub fn symlink(&self, rel: &str, target: &str) {
        std::os::unix::fs::symlink(target, self.path.join(rel)).expect("symlink");
    }

    /// The commit id of `HEAD`.
    pub fn head(&self) -> String {
        git(&self.path, &["rev-parse", "HEAD"])
    }

    /// `git rev-parse <rev>`.
    pub fn rev_parse(&self, rev: &str) -> String {
        git(&self.path, &["rev-parse", rev])
    }

    /// Create `branch` at HEAD and switch to it.
    pub fn checkout_new_branch(&self, branch: &str) {
        git(&self.path, &["checkout", "-q", "-b", branch]);
    }

    /// Switch to an existing branch.
    pub fn checkout(&self, branch: &str) {
        git(&self.path, &["checkout", "-q", branch]);
    }

    /// Lightweight tag at HEAD.
    pub fn tag(&self, tag: &str) {
        git(&self.path, &["tag", tag]);
    }

    /// Annotated tag at HEAD.
    pub fn tag_annotated(&self, tag: &str, message: &str) {
        git(&self.path, &["tag", "-a", tag, "-m", message]);
    }

    /// Move an existing tag to `rev` (what a `git push --force` of a tag does on the server).
    pub fn move_tag(&self, tag: &str, rev: &str) {
        git(&self.path, &["tag", "-f", tag, rev]);
    }

    /// Delete a branch (must not be the checked-out one).
    pub fn delete_branch(&self, branch: &str) {
        git(&self.path, &["branch", "-D", branch]);
    }

    /// Rewrite the current branch: reset it to `rev` and commit `files` on top (a force-push).
    pub fn force_push(&self, rev: &str, files: &[(&str, &str)], message: &str) -> String {
        git(&self.path, &["reset", "-q", "--hard", rev]);
        self.commit(files, message)
    }

    /// A repository with `commits` commits on `master`; the first writes `files` files spread over
    /// directories, every later commit changes one of them. Written with `git fast-import`.
    pub fn big(root: &Path, name: &str, commits: usize, files: usize) -> TestRepo {
        let repo = TestRepo::init(root, name);
        let mut stream = Vec::with_capacity(files * 64 + commits * 160);
        let mut mark = 0usize;
        let mut blob = |stream: &mut Vec<u8>, data: &str| -> usize {
            mark += 1;
            let _ = write!(stream, "blob\nmark :{mark}\ndata {}\n{data}\n", data.len());
            mark
        };
        let mut first_marks = Vec::with_capacity(files);
        for i in 0..files {
            let content = format!("file {i}\n{}\n", "lorem ipsum dolor sit amet ".repeat(8));
            first_marks.push(blob(&mut stream, &content));
        }
        let mut change_marks = Vec::with_capacity(commits);
        for c in 1..commits {
            change_marks.push(blob(&mut stream, &format!("changed in commit {c}\n")));
        }
        let base = 1_700_000_000u64;
        for c in 0..commits {
            let msg = format!("commit {c}");
            let _ = write!(
                stream,
                "commit refs/heads/master\ncommitter Plumb Test <test@plumb.invalid> {} +0000\ndata {}\n{msg}\n",
                base + c as u64,
                msg.len()
            );
            if c == 0 {
                for (i, m) in first_marks.iter().enumerate() {
                    let _ = writeln!(stream, "M 100644 :{m} dir{:03}/file{i}.txt", i % 100);
                }
            } else {
                let i = c % files.max(1);
                let _ = writeln!(
                    stream,
                    "M 100644 :{} dir{:03}/file{i}.txt",
                    change_marks[c - 1],
                    i % 100
                );
            }
            stream.push(b'\n');
        }
        let mut child = Command::new("git")
            .args(["fast-import", "--quiet"])
            .current_dir(&repo.path)
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .stdin(Stdio::piped())
            .spawn()
            .expect("spawn git fast-import");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(&stream)
            .expect("feed fast-import");
        assert!(
            child.wait().expect("fast-import").success(),
            "fast-import failed"
        );
        git(&repo.path, &["reset", "-q", "--hard", "master"]);
        repo
    }
}

/// Authentication the HTTP fixture demands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpAuth {
    /// Anyone may read.
    Anonymous,
    /// HTTP basic auth with this user and password.
    Basic {
        /// User name.
        username: String,
        /// Password.
        password: String,
    },
    /// `Authorization: Bearer <token>`.
    Bearer(String),
}

impl HttpAuth {
    /// `Ok(user)` when `req` carries the credentials this demands, else the 401 answer.
    pub(crate) fn check(
        &self,
        req: &Request<Incoming>,
    ) -> Result<String, Box<Response<FixtureBody>>> {
        let header = req
            .headers()
            .get(hyper::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let denied = |challenge: &str| {
            let mut resp = plain(StatusCode::UNAUTHORIZED, "authentication required");
            resp.headers_mut().insert(
                hyper::header::WWW_AUTHENTICATE,
                hyper::header::HeaderValue::from_str(challenge).expect("header"),
            );
            Box::new(resp)
        };
        match self {
            HttpAuth::Anonymous => Ok(String::new()),
            HttpAuth::Basic { username, password } => {
                let want = base64::engine::general_purpose::STANDARD
                    .encode(format!("{username}:{password}"));
                if header.strip_prefix("Basic ") == Some(want.as_str()) {
                    Ok(username.clone())
                } else {
                    Err(denied("Basic realm=\"git\""))
                }
            }
            HttpAuth::Bearer(token) => {
                if header.strip_prefix("Bearer ") == Some(token.as_str()) {
                    Ok("bearer".to_string())
                } else {
                    Err(denied("Bearer realm=\"git\""))
                }
            }
        }
    }
}

/// One request the HTTP fixture served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    /// HTTP method.
    pub method: String,
    /// Request path.
    pub path: String,
    /// Response status code.
    pub status: u16,
}

/// A smart-HTTP git server (`git http-backend` as CGI) on a free loopback port.
pub struct GitHttpServer {
    /// Listening address.
    pub addr: SocketAddr,
    scheme: &'static str,
    requests: Arc<Mutex<Vec<RequestRecord>>>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl std::fmt::Debug for GitHttpServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitHttpServer")
            .field("addr", &self.addr)
            .finish()
    }
}

impl GitHttpServer {
    /// Serve every repository under `root` (`http://addr/<name>`), demanding `auth`.
    pub fn start(root: &Path, auth: HttpAuth) -> GitHttpServer {
        Self::start_inner(root, auth, None)
    }

    /// Like [`GitHttpServer::start`] but over HTTPS with `tls`'s server certificate
    /// (`https://127.0.0.1:port/<name>`; the certificate names `127.0.0.1` and `localhost`).
    pub fn start_tls(root: &Path, auth: HttpAuth, tls: &TlsMaterial) -> GitHttpServer {
        Self::start_inner(root, auth, Some(tls.acceptor(false)))
    }

    /// Like [`GitHttpServer::start_tls`], but the TLS handshake demands a client certificate
    /// signed by `tls`'s CA.
    pub fn start_mtls(root: &Path, auth: HttpAuth, tls: &TlsMaterial) -> GitHttpServer {
        Self::start_inner(root, auth, Some(tls.acceptor(true)))
    }

    fn start_inner(
        root: &Path,
        auth: HttpAuth,
        tls: Option<Arc<openssl::ssl::SslAcceptor>>,
    ) -> GitHttpServer {
        let requests = Arc::new(Mutex::new(Vec::new()));
        let state = Arc::new(CgiState {
            root: root.to_path_buf(),
            auth,
            requests: requests.clone(),
        });
        let scheme = if tls.is_some() { "https" } else { "http" };
        let (runtime, addr) = spawn_http_server(tls, move |req| {
            let state = state.clone();
            async move { state.handle(req).await }
        });
        GitHttpServer {
            addr,
            scheme,
            requests,
            runtime: Some(runtime),
        }
    }

    /// URL of repository `name` (a directory under the server root).
    pub fn url(&self, name: &str) -> String {
        format!("{}://{}/{name}", self.scheme, self.addr)
    }

    /// Every request served so far.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.requests.lock().expect("requests lock").clone()
    }

    /// Forget recorded requests.
    pub fn clear_requests(&self) {
        self.requests.lock().expect("requests lock").clear();
    }

    /// Number of pack negotiations (`POST .../git-upload-pack`) served so far.
    pub fn upload_pack_posts(&self) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.method == "POST" && r.path.ends_with("/git-upload-pack"))
            .count()
    }
}

impl Drop for GitHttpServer {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// Serves `handler` over HTTP/1.1 (or HTTPS with `tls`) on a free loopback port, on a
/// runtime of its own (so fixtures work from sync and async tests alike). Dropping the
/// runtime stops the server.
pub(crate) fn spawn_http_server<H, F>(
    tls: Option<Arc<openssl::ssl::SslAcceptor>>,
    handler: H,
) -> (tokio::runtime::Runtime, SocketAddr)
where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: std::future::Future<Output = Response<FixtureBody>> + Send + 'static,
{
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("tokio runtime");
    // Bound with std and handed to the runtime: `block_on` would panic when the
    // server is started from inside another runtime (an async test).
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    std_listener.set_nonblocking(true).expect("nonblocking");
    let addr = std_listener.local_addr().expect("local addr");
    runtime.spawn(async move {
        let Ok(listener) = tokio::net::TcpListener::from_std(std_listener) else {
            return;
        };
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let handler = handler.clone();
            let tls = tls.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| {
                    let fut = handler(req);
                    async move { Ok::<_, std::convert::Infallible>(fut.await) }
                });
                let http = hyper::server::conn::http1::Builder::new();
                match tls {
                    None => {
                        let _ = http
                            .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                            .await;
                    }
                    Some(acceptor) => {
                        let Ok(ssl) = openssl::ssl::Ssl::new(acceptor.context()) else {
                            return;
                        };
                        let Ok(mut tls_stream) = tokio_openssl::SslStream::new(ssl, stream) else {
                            return;
                        };
                        if std::pin::Pin::new(&mut tls_stream).accept().await.is_err() {
                            return;
                        }
                        let _ = http
                            .serve_connection(hyper_util::rt::TokioIo::new(tls_stream), svc)
                            .await;
                    }
                }
            });
        }
    });
    (runtime, addr)
}

struct CgiState {
    root: PathBuf,
    auth: HttpAuth,
    requests: Arc<Mutex<Vec<RequestRecord>>>,
}

pub(crate) type FixtureBody = Full<Bytes>;

pub(crate) fn plain(status: StatusCode, msg: &str) -> Response<FixtureBody> {
    let mut resp = Response::new(Full::new(Bytes::from(msg.to_string())));
    *resp.status_mut() = status;
    resp
}

impl CgiState {
    async fn handle(&self, req: Request<Incoming>) -> Response<FixtureBody> {
        let method = req.method().to_string();
        let path = req.uri().path().to_string();
        let resp = match self.auth.check(&req) {
            Err(resp) => *resp,
            Ok(user) => self
                .cgi(req, user)
                .await
                .unwrap_or_else(|e| plain(StatusCode::INTERNAL_SERVER_ERROR, &e)),
        };
        self.requests
            .lock()
            .expect("requests lock")
            .push(RequestRecord {
                method,
                path,
                status: resp.status().as_u16(),
            });
        resp
    }

    async fn cgi(
        &self,
        req: Request<Incoming>,
        user: String,
    ) -> Result<Response<FixtureBody>, String> {
        let header = |name: &str| {
            req.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string()
        };
        let mut cmd = tokio::process::Command::new("git");
        cmd.arg("http-backend")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_PROJECT_ROOT", &self.root)
            .env("GIT_HTTP_EXPORT_ALL", "1")
            .env("PATH_INFO", req.uri().path())
            .env("QUERY_STRING", req.uri().query().unwrap_or(""))
            .env("REQUEST_METHOD", req.method().as_str())
            .env("CONTENT_TYPE", header("content-type"))
            .env("REMOTE_USER", &user)
            .env("REMOTE_ADDR", "127.0.0.1")
            .env("SERVER_PROTOCOL", "HTTP/1.1")
            .env("HTTP_CONTENT_ENCODING", header("content-encoding"))
            .env("GIT_PROTOCOL", header("git-protocol"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        let length = header("content-length");
        if !length.is_empty() {
            cmd.env("CONTENT_LENGTH", length);
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("spawn http-backend: {e}"))?;
        let mut stdin = child.stdin.take().ok_or("no stdin")?;
        let mut body = req.into_body();
        // Stream the request body into the CGI program while its output is read.
        let writer = tokio::spawn(async move {
            while let Some(frame) = body.frame().await {
                let Ok(frame) = frame else { break };
                if let Some(data) = frame.data_ref()
                    && stdin.write_all(data).await.is_err()
                {
                    break;
                }
            }
            drop(stdin);
        });
        let mut out = Vec::new();
        child
            .stdout
            .take()
            .ok_or("no stdout")?
            .read_to_end(&mut out)
            .await
            .map_err(|e| format!("read http-backend: {e}"))?;
        let _ = writer.await;
        let _ = child.wait().await;
        parse_cgi(&out)
    }
}

/// Split CGI output into headers (with `Status:`) and body.
fn parse_cgi(out: &[u8]) -> Result<Response<FixtureBody>, String> {
    let (head_len, sep) = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| (p, 4))
        .or_else(|| out.windows(2).position(|w| w == b"\n\n").map(|p| (p, 2)))
        .ok_or("CGI output without header terminator")?;
    let head = String::from_utf8_lossy(&out[..head_len]);
    let mut resp = Response::new(Full::new(Bytes::copy_from_slice(&out[head_len + sep..])));
    for line in head.lines() {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            let code: u16 = value
                .split_whitespace()
                .next()
                .and_then(|c| c.parse().ok())
                .ok_or("bad CGI status")?;
            *resp.status_mut() = StatusCode::from_u16(code).map_err(|e| e.to_string())?;
        } else if let (Ok(n), Ok(v)) = (
            hyper::header::HeaderName::from_bytes(name.trim().as_bytes()),
            hyper::header::HeaderValue::from_str(value),
        ) {
            resp.headers_mut().append(n, v);
        }
    }
    Ok(resp)
}

/// A TCP server on loopback that accepts connections and never answers.
#[derive(Debug)]
pub struct StallServer {
    /// Listening address.
    pub addr: SocketAddr,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl StallServer {
    /// Start accepting; connections are held open until the server is dropped.
    pub fn start() -> StallServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        listener.set_nonblocking(true).expect("nonblocking");
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                match listener.accept() {
                    Ok((s, _)) => held.push(s),
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        StallServer { addr, stop }
    }

    /// An HTTP URL on this server.
    pub fn http_url(&self) -> String {
        format!("http://{}/repo", self.addr)
    }
}

impl Drop for StallServer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// An unused loopback port (bound then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind loopback")
        .port()
}

/// Secret data maps as a Kubernetes Secret's `data` would hold them.
pub fn secret(pairs: &[(&str, &str)]) -> BTreeMap<String, Vec<u8>> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
        .collect()
}
