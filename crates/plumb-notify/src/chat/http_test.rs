//! One event per chat and incident type through a real local HTTP server: a minimal blocking
//! HTTP/1.1 transport (std sockets) sends what each notifier builds, a `TcpListener` stands
//! in for the services and records the request line, headers and body it received. The
//! request line is checked against the path each service documents, the rest against what
//! the notifier built (the unit tests check those bodies field by field).

use crate::chat::testutil::{event, header, settings};
use crate::recorder::Recorder;
use crate::testserver::{PlainHttp, Server};
use crate::{Delivery, HttpResponse, Settings, Severity};

/// `n` answers of `status` with an empty JSON object.
fn answers(statuses: &[u16]) -> Vec<HttpResponse> {
    statuses
        .iter()
        .map(|&status| HttpResponse {
            status,
            body: b"{}".to_vec(),
        })
        .collect()
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
    let server = Server::start(answers(&[200; 13]));
    let cases = cases(&server.base);
    assert_eq!(cases.len(), 13);
    let mut sent = Vec::new();
    for (s, _) in &cases {
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
        n.send(&d, &PlainHttp)
            .unwrap_or_else(|err| panic!("{t}: {err}"));
        sent.push((built, rec.json(0)));
    }
    let received = server.finish();
    assert_eq!(received.len(), cases.len());
    for (((s, line), (built, json)), got) in cases.iter().zip(sent).zip(received) {
        let t = s.provider_type.as_str();
        let txn = built[0].url.rsplit('/').next().unwrap_or("");
        if line.contains("{txn}") {
            assert!(
                txn.len() == 40 && txn.bytes().all(|b| b.is_ascii_hexdigit()),
                "{txn}"
            );
        }
        let want = line.replace("{txn}", txn);
        assert_eq!(got.request_line(), want, "{t}");
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
        assert_eq!(body, json, "{t}");
        assert!(!body.is_null(), "{t}");
    }
}

#[test]
fn server_errors_are_retryable_client_errors_are_not() {
    let e = event(Severity::Info);
    let server = Server::start(answers(&[500, 429, 400, 404]));
    let s = settings("lark", &format!("{}/hook/secret-part", server.base));
    let d = Delivery {
        settings: &s,
        event: &e,
        commit_status_key: None,
    };
    let n = crate::notifier_for("lark").expect("lark");
    for (status, retryable) in [(500, true), (429, true), (400, false), (404, false)] {
        let err = n.send(&d, &PlainHttp).expect_err("non-2xx fails");
        assert_eq!(err.is_retryable(), retryable, "{status}: {err}");
        assert!(err.to_string().contains(&format!("HTTP {status}")), "{err}");
        assert!(!err.to_string().contains("secret-part"), "{err}");
    }
    assert_eq!(server.finish().len(), 4);
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
