//! Read-only artifact HTTP server: serves files under the storage root at
//! `/<kind>/<ns>/<name>/<file>`. `GET` and `HEAD` only; `..`, `.`, empty segments, backslashes,
//! percent-encoded separators and dots, and symlinks leaving the root are rejected (404).

use std::convert::Infallible;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt as _, Full, StreamBody};
use hyper::body::Frame;
use hyper::{Method, Request, Response, StatusCode};
use tokio::io::AsyncReadExt as _;

use crate::Result;

type Body = BoxBody<Bytes, std::io::Error>;

fn text(status: StatusCode, msg: &'static str) -> Response<Body> {
    let mut r = Response::new(
        Full::new(Bytes::from_static(msg.as_bytes()))
            .map_err(|never| match never {})
            .boxed(),
    );
    *r.status_mut() = status;
    r
}

/// Map a request path to a file under `root`, or `None` when it is not a safe, existing file.
pub fn resolve(root: &Path, request_path: &str) -> Option<PathBuf> {
    let p = request_path.strip_prefix('/')?;
    let mut out = root.to_path_buf();
    for seg in p.split('/') {
        let decoded = percent_decode(seg)?;
        if decoded.is_empty()
            || decoded == "."
            || decoded == ".."
            || decoded.contains(['/', '\\', '\0'])
            || decoded.starts_with(".tmp-")
        {
            return None;
        }
        out.push(decoded);
    }
    let canon_root = root.canonicalize().ok()?;
    let canon = out.canonicalize().ok()?;
    if !canon.starts_with(&canon_root) || !canon.is_file() {
        return None;
    }
    Some(canon)
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let h = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(h, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

async fn handle(root: Arc<PathBuf>, req: Request<hyper::body::Incoming>) -> Response<Body> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
    }
    let Some(path) = resolve(&root, req.uri().path()) else {
        return text(StatusCode::NOT_FOUND, "not found\n");
    };
    let Ok(file) = tokio::fs::File::open(&path).await else {
        return text(StatusCode::NOT_FOUND, "not found\n");
    };
    let len = file.metadata().await.map(|m| m.len()).unwrap_or(0);
    let body: Body = if req.method() == Method::HEAD {
        Full::new(Bytes::new())
            .map_err(|never| match never {})
            .boxed()
    } else {
        let stream = futures::stream::unfold(Some(file), |state| async move {
            let mut f = state?;
            let mut buf = vec![0u8; 64 * 1024];
            match f.read(&mut buf).await {
                Ok(0) => None,
                Ok(n) => {
                    buf.truncate(n);
                    Some((Ok(Frame::data(Bytes::from(buf))), Some(f)))
                }
                Err(e) => Some((Err(e), None)),
            }
        });
        StreamBody::new(stream).boxed()
    };
    let mut resp = Response::new(body);
    let ct = if path.extension().is_some_and(|e| e == "gz") {
        "application/gzip"
    } else {
        "application/octet-stream"
    };
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(ct),
    );
    resp.headers_mut().insert(
        hyper::header::CONTENT_LENGTH,
        hyper::header::HeaderValue::from(len),
    );
    resp
}

/// Time a client has to send a request's line and headers before its connection is closed.
pub const HEADER_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Serve `root` read-only on `listener` until `shutdown` completes.
pub async fn serve_artifacts(
    listener: tokio::net::TcpListener,
    root: PathBuf,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    serve_artifacts_with(listener, root, HEADER_READ_TIMEOUT, shutdown).await
}

/// [`serve_artifacts`] closing connections whose request head takes longer than
/// `header_timeout` (idle keep-alive connections included), so slow clients cannot hold
/// connections open.
pub async fn serve_artifacts_with(
    listener: tokio::net::TcpListener,
    root: PathBuf,
    header_timeout: std::time::Duration,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let root = Arc::new(root);
    tokio::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            _ = &mut shutdown => return Ok(()),
            r = listener.accept() => match r {
                Ok(s) => s,
                // Out of file descriptors or a reset before accept: keep serving.
                Err(e) => {
                    tracing::warn!(error = %e, "accepting an artifact connection failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let root = root.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let root = root.clone();
                async move { Ok::<_, Infallible>(handle(root, req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(header_timeout)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_rejects_traversal() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("gitrepository/ns/n")).unwrap();
        std::fs::write(d.path().join("gitrepository/ns/n/a.tar.gz"), "x").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", d.path().join("gitrepository/ns/n/evil"))
            .unwrap();
        assert!(resolve(d.path(), "/gitrepository/ns/n/a.tar.gz").is_some());
        for bad in [
            "/gitrepository/ns/n/../n/a.tar.gz",
            "/gitrepository/ns/n/%2e%2e/n/a.tar.gz",
            "/gitrepository%2fns/n/a.tar.gz",
            "/gitrepository/ns/n/evil",
            "/gitrepository/ns/n",
            "//etc/passwd",
            "/gitrepository/ns/n/a.tar.gz%",
            "gitrepository/ns/n/a.tar.gz",
        ] {
            assert!(resolve(d.path(), bad).is_none(), "{bad}");
        }
    }

    /// A client that never finishes its request head is disconnected after the header
    /// timeout; a well-behaved one is still served.
    #[tokio::test]
    async fn slow_headers_are_cut_off() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("gitrepository/ns/n")).unwrap();
        std::fs::write(d.path().join("gitrepository/ns/n/a.tar.gz"), "x").unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let timeout = std::time::Duration::from_secs(1);
        tokio::spawn(serve_artifacts_with(
            listener,
            d.path().to_path_buf(),
            timeout,
            std::future::pending(),
        ));
        let open = plumb_testing::slow::slowloris(addr, "/x", std::time::Duration::from_secs(10))
            .await
            .expect("the slow client was never disconnected");
        assert!(open >= timeout && open < timeout * 3, "{open:?}");
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        use tokio::io::AsyncWriteExt as _;
        s.write_all(
            b"GET /gitrepository/ns/n/a.tar.gz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    }
}
