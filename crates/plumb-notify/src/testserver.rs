//! A loopback HTTP/1.1 server answering from a script, and a blocking plain-HTTP transport,
//! so the provider families' tests put each request on a real socket.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::{HttpRequest, HttpResponse, Method, NotifyError, Transport};

/// One request the server received.
#[derive(Debug)]
pub struct Received {
    /// `GET`, `POST`, ...
    pub method: String,
    /// Path and query.
    pub target: String,
    /// Headers, names in lowercase.
    pub headers: Vec<(String, String)>,
    /// The body as JSON (`Null` when empty or not JSON).
    pub json: serde_json::Value,
    /// The body as sent.
    pub body: Vec<u8>,
}

impl Received {
    /// `METHOD target HTTP/1.1`.
    pub fn request_line(&self) -> String {
        format!("{} {} HTTP/1.1", self.method, self.target)
    }

    /// The value of header `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A loopback HTTP server that answers with a script, one connection per request.
pub struct Server {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    thread: JoinHandle<Vec<Received>>,
}

/// The first line a [`Server::finish`] wake-up connection sends.
const STOP: &str = "STOP";

impl Server {
    /// Starts a server answering with `script` in order, then stopping.
    pub fn start(script: Vec<HttpResponse>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let thread = std::thread::spawn(move || {
            let mut received = Vec::new();
            for resp in script {
                let Ok((stream, _)) = listener.accept() else {
                    break;
                };
                match serve(stream, &resp) {
                    Some(r) => received.push(r),
                    None => break,
                }
            }
            received
        });
        Server { base, thread }
    }

    /// Stops the server (also when fewer requests came than scripted) and returns what it got.
    pub fn finish(self) -> Vec<Received> {
        let authority = self.base.trim_start_matches("http://");
        if let Ok(mut s) = TcpStream::connect(authority) {
            let _ = s.write_all(format!("{STOP}\r\n\r\n").as_bytes());
        }
        self.thread.join().expect("server thread")
    }
}

/// Reads one request and answers it; `None` for the stop connection or a broken one.
fn serve(stream: TcpStream, resp: &HttpResponse) -> Option<Received> {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut words = line.split_whitespace();
    let method = words.next()?.to_string();
    if method == STOP {
        return None;
    }
    let target = words.next()?.to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (name, value) = h.split_once(':')?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
    }
    let len = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    reader.read_exact(&mut body).ok()?;
    let head = format!(
        "HTTP/1.1 {} Scripted\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        resp.status,
        resp.body.len()
    );
    let mut out = stream;
    out.write_all(head.as_bytes()).ok()?;
    out.write_all(&resp.body).ok()?;
    Some(Received {
        method,
        target,
        headers,
        json: serde_json::from_slice(&body).unwrap_or_default(),
        body,
    })
}

/// A blocking plain-HTTP/1.1 transport (no TLS, no chunked bodies): enough for [`Server`].
pub struct PlainHttp;

impl Transport for PlainHttp {
    fn send(&self, req: &HttpRequest) -> Result<HttpResponse, NotifyError> {
        let fail = |message: String| NotifyError::Transport {
            host: req.host(),
            message,
        };
        let rest = req
            .url
            .strip_prefix("http://")
            .ok_or_else(|| fail("not http".into()))?;
        let (authority, target) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let method = match req.method {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
        };
        let mut head = format!("{method} {target} HTTP/1.1\r\nHost: {authority}\r\n");
        for (n, v) in &req.headers {
            head.push_str(&format!("{n}: {v}\r\n"));
        }
        head.push_str(&format!(
            "Content-Length: {}\r\nConnection: close\r\n\r\n",
            req.body.len()
        ));
        let mut s = TcpStream::connect(authority).map_err(|e| fail(e.to_string()))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(|e| fail(e.to_string()))?;
        s.write_all(head.as_bytes())
            .and_then(|()| s.write_all(&req.body))
            .map_err(|e| fail(e.to_string()))?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).map_err(|e| fail(e.to_string()))?;
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or_else(|| fail("no header end".into()))?;
        let head = String::from_utf8_lossy(&raw[..split]);
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| fail("no status".into()))?;
        Ok(HttpResponse {
            status,
            body: raw[split + 4..].to_vec(),
        })
    }
}
