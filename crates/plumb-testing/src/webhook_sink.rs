//! A stand-in for a notification service: an HTTP(S) server on loopback that records every
//! request (method, path, headers, body) and answers each with a chosen status after a
//! chosen delay (a hanging or failing service).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::{Response, StatusCode};

use crate::git::{TlsMaterial, spawn_http_server};

/// One request the sink received.
#[derive(Clone, Debug)]
pub struct Received {
    /// The method, e.g. `POST`.
    pub method: String,
    /// Path and query.
    pub path: String,
    /// Headers, names in lower case.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Received {
    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON (`Null` when it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_default()
    }
}

/// How the sink answers.
#[derive(Clone, Copy, Debug)]
pub struct Behaviour {
    /// The status of every answer.
    pub status: u16,
    /// Wait this long before answering (after recording the request).
    pub delay: Duration,
}

impl Default for Behaviour {
    fn default() -> Self {
        Behaviour {
            status: 200,
            delay: Duration::ZERO,
        }
    }
}

/// A running sink; it stops when dropped.
pub struct WebhookSink {
    runtime: Option<tokio::runtime::Runtime>,
    addr: std::net::SocketAddr,
    tls: bool,
    received: Arc<Mutex<Vec<Received>>>,
}

impl WebhookSink {
    /// A plain HTTP sink.
    pub fn start(b: Behaviour) -> WebhookSink {
        Self::start_with(b, None)
    }

    /// An HTTPS sink presenting `tls`'s server certificate (`127.0.0.1`, `localhost`).
    pub fn start_tls(b: Behaviour, tls: &TlsMaterial) -> WebhookSink {
        Self::start_with(b, Some(tls))
    }

    fn start_with(b: Behaviour, tls: Option<&TlsMaterial>) -> WebhookSink {
        let received: Arc<Mutex<Vec<Received>>> = Arc::default();
        let log = received.clone();
        let handler = move |req: hyper::Request<hyper::body::Incoming>| {
            let log = log.clone();
            async move {
                let method = req.method().to_string();
                let path = req
                    .uri()
                    .path_and_query()
                    .map(|p| p.to_string())
                    .unwrap_or_default();
                let headers = req
                    .headers()
                    .iter()
                    .map(|(k, v)| {
                        (
                            k.as_str().to_string(),
                            v.to_str().unwrap_or_default().to_string(),
                        )
                    })
                    .collect();
                let body = req
                    .into_body()
                    .collect()
                    .await
                    .map(|c| c.to_bytes().to_vec())
                    .unwrap_or_default();
                if let Ok(mut l) = log.lock() {
                    l.push(Received {
                        method,
                        path,
                        headers,
                        body,
                    });
                }
                tokio::time::sleep(b.delay).await;
                let mut resp = Response::new(Full::new(Bytes::from_static(b"ok")));
                *resp.status_mut() = StatusCode::from_u16(b.status).unwrap_or(StatusCode::OK);
                resp
            }
        };
        let (runtime, addr) = spawn_http_server(tls.map(|t| t.acceptor(false)), handler);
        WebhookSink {
            runtime: Some(runtime),
            addr,
            tls: tls.is_some(),
            received,
        }
    }

    /// The URL of `path` on the sink (`https://localhost:<port>` for TLS, matching the
    /// certificate).
    pub fn url(&self, path: &str) -> String {
        if self.tls {
            format!("https://localhost:{}{path}", self.addr.port())
        } else {
            format!("http://{}{path}", self.addr)
        }
    }

    /// The requests received so far.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

impl Drop for WebhookSink {
    fn drop(&mut self) {
        // Dropping a runtime inside an async test would panic; let it wind down alone.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}
