//! One event per chat and incident type through a real local HTTP server: a minimal blocking
//! HTTP/1.1 transport (std sockets) sends what each notifier builds, a `TcpListener` stands
//! in for the services and records the request line, headers and body it received. The
//! request line is checked against the path each service documents, the rest against what
//! the notifier built (the unit tests check those bodies field by field).

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::Duration;

use crate::chat::testutil::{event, header, settings};
use crate::recorder::Recorder;
use crate::{
    Delivery, HttpRequest, HttpResponse, Method, NotifyError, Settings, Severity, Transport,
};

const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// What the stand-in server received.
#[derive(Debug)]
struct Received {
    request_line: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

/// Reads one request (head, then `Content-Length` bytes of body) and answers `status`.
fn serve_one(stream: TcpStream, status: u16) -> std::io::Result<Received> {
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let len = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    reader.read_exact(&mut body)?;
    let mut out = stream;
    write!(
        out,
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}"
    )?;
    Ok(Received {
        request_line: request_line.trim_end().to_string(),
        headers,
        body,
    })
}

/// A server on a free loopback port answering one connection per status in `statuses`;
/// returns its base URL and the channel its records arrive on.
fn serve(statuses: Vec<u16>) -> (String, mpsc::Receiver<Received>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for status in statuses {
            let Ok((stream, _)) = listener.accept() else {
                return;
            };
            let Ok(r) = serve_one(stream, status) else {
                return;
            };
            if tx.send(r).is_err() {
                return;
            }
        }
    });
    (base, rx)
}

/// A blocking HTTP/1.1 client over plain TCP: enough to put the built requests on the wire.
struct TcpTransport;

impl Transport for TcpTransport {
    fn send(&self, req: &HttpRequest) -> Result<HttpResponse, NotifyError> {
        let fail = |e: std::io::Error| NotifyError::Transport {
            host: req.host(),
            message: e.to_string(),
        };
        let rest = req.url.strip_prefix("http://").unwrap_or(&req.url);
        let split = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(split);
        let path = if path.is_empty() { "/" } else { path };
        let mut stream = TcpStream::connect(authority).map_err(fail)?;
        stream.set_read_timeout(Some(IO_TIMEOUT)).map_err(fail)?;
        let method = match req.method {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
        };
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {authority}\r\n");
        for (k, v) in &req.headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str(&format!(
            "Content-Length: {}\r\nConnection: close\r\n\r\n",
            req.body.len()
        ));
        stream.write_all(head.as_bytes()).map_err(fail)?;
        stream.write_all(&req.body).map_err(fail)?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).map_err(fail)?;
        let text = String::from_utf8_lossy(&raw);
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.as_bytes().to_vec())
            .unwrap_or_default();
        Ok(HttpResponse { status, body })
    }
}

/// Settings of each type against `base`, with the request line the service documents
/// (`{txn}` stands for Matrix's 40-hex transaction id).
fn cases(base: &str) -> Vec<(Settings, &'static str)> {
    let with = |t: &str, address: String, channel: &str, token: &str| {
        let mut s = settings(t, &address);
        s.channel = channel.into();
        s.token = token.into();
        s
    };
    vec![
        (
            with(
                "msteams",
                format!("{base}/workflows/w1/invoke?sig=s"),
                "",
                "",
            ),
            "POST /workflows/w1/invoke?sig=s HTTP/1.1",
        ),
        (
            with("discord", format!("{base}/api/webhooks/1/tok"), "", ""),
            "POST /api/webhooks/1/tok/slack HTTP/1.1",
        ),
        (
            with(
                "googlechat",
                format!("{base}/v1/spaces/S/messages?key=k"),
                "",
                "",
            ),
            "POST /v1/spaces/S/messages?key=k HTTP/1.1",
        ),
        (
            with("rocket", format!("{base}/hooks/a/b"), "#ops", ""),
            "POST /hooks/a/b HTTP/1.1",
        ),
        (
            with("matrix", base.to_string(), "!room:local", "syt"),
            "PUT /_matrix/client/r0/rooms/!room:local/send/m.room.message/{txn} HTTP/1.1",
        ),
        (
            with("webex", format!("{base}/v1/messages"), "room1", "bot"),
            "POST /v1/messages HTTP/1.1",
        ),
        (
            with("telegram", base.to_string(), "@chan", "123:ABC"),
            "POST /bot123:ABC/sendMessage HTTP/1.1",
        ),
        (
            with("lark", format!("{base}/open-apis/bot/v2/hook/x"), "", ""),
            "POST /open-apis/bot/v2/hook/x HTTP/1.1",
        ),
        (
            with("alertmanager", format!("{base}/api/v2/alerts"), "", ""),
            "POST /api/v2/alerts HTTP/1.1",
        ),
        (
            with("grafana", format!("{base}/api/annotations"), "", "glsa"),
            "POST /api/annotations HTTP/1.1",
        ),
        (
            with("opsgenie", format!("{base}/v2/alerts"), "", "genie"),
            "POST /v2/alerts HTTP/1.1",
        ),
        (
            with("pagerduty", format!("{base}/x"), "routing", ""),
            "POST /v2/enqueue HTTP/1.1",
        ),
        (
            with("datadog", base.to_string(), "", "ddkey"),
            "POST /api/v1/events HTTP/1.1",
        ),
    ]
}

#[test]
fn every_type_sends_its_documented_request_over_http() {
    let e = event(Severity::Error);
    let (base, rx) = serve(vec![200; 13]);
    let cases = cases(&base);
    assert_eq!(cases.len(), 13);
    for (s, line) in &cases {
        let t = s.provider_type.as_str();
        let n = crate::notifier_for(t).unwrap_or_else(|| panic!("{t} has no notifier"));
        let d = Delivery {
            settings: s,
            event: &e,
            commit_status_key: None,
        };
        let rec = Recorder::default();
        n.send(&d, &rec).unwrap_or_else(|err| panic!("{t}: {err}"));
        let built = rec.sent();
        assert_eq!(built.len(), 1, "{t}");
        n.send(&d, &TcpTransport)
            .unwrap_or_else(|err| panic!("{t}: {err}"));
        let got = rx.recv_timeout(IO_TIMEOUT).expect("request received");
        let txn = built[0].url.rsplit('/').next().unwrap_or("");
        if line.contains("{txn}") {
            assert!(
                txn.len() == 40 && txn.bytes().all(|b| b.is_ascii_hexdigit()),
                "{txn}"
            );
        }
        let want = line.replace("{txn}", txn);
        assert_eq!(got.request_line, want, "{t}");
        for (k, v) in &built[0].headers {
            let sent = got
                .headers
                .iter()
                .find(|(gk, _)| gk.eq_ignore_ascii_case(k));
            assert_eq!(sent.map(|(_, gv)| gv.as_str()), Some(v.as_str()), "{t} {k}");
        }
        assert_eq!(
            header(&built[0], "Content-Type"),
            Some("application/json"),
            "{t}"
        );
        let body: serde_json::Value = serde_json::from_slice(&got.body).expect("JSON body");
        assert_eq!(body, rec.json(0), "{t}");
        assert!(!body.is_null(), "{t}");
    }
}

#[test]
fn server_errors_are_retryable_client_errors_are_not() {
    let e = event(Severity::Info);
    let (base, rx) = serve(vec![500, 429, 400, 404]);
    let s = settings("lark", &format!("{base}/hook/secret-part"));
    let d = Delivery {
        settings: &s,
        event: &e,
        commit_status_key: None,
    };
    let n = crate::notifier_for("lark").expect("lark");
    for (status, retryable) in [(500, true), (429, true), (400, false), (404, false)] {
        let err = n.send(&d, &TcpTransport).expect_err("non-2xx fails");
        assert_eq!(err.is_retryable(), retryable, "{status}: {err}");
        assert!(err.to_string().contains(&format!("HTTP {status}")), "{err}");
        assert!(!err.to_string().contains("secret-part"), "{err}");
        rx.recv_timeout(IO_TIMEOUT).expect("request received");
    }
}

#[test]
fn commit_status_updates_are_not_sent() {
    let mut e = event(Severity::Info);
    e.metadata.insert("commit_status".into(), "update".into());
    for (s, _) in cases("http://127.0.0.1:9") {
        let t = s.provider_type.as_str();
        let n = crate::notifier_for(t).unwrap_or_else(|| panic!("{t} has no notifier"));
        let rec = Recorder::default();
        let d = Delivery {
            settings: &s,
            event: &e,
            commit_status_key: None,
        };
        n.send(&d, &rec).unwrap_or_else(|err| panic!("{t}: {err}"));
        assert!(rec.sent().is_empty(), "{t} sent a commit-status update");
    }
}
