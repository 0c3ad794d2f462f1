//! A token webhook authenticator for the test apiserver that accepts EKS IAM tokens, the way
//! aws-iam-authenticator's server does: the apiserver POSTs a `TokenReview`; a token
//! `k8s-aws-v1.<base64url URL>` is decoded to its presigned STS `GetCallerIdentity` URL, the
//! URL's parameters are checked (action, version, `x-k8s-aws-id` among the signed headers,
//! `X-Amz-Date` not older than the 15 minutes a token lives and not in the future), the GET
//! is performed with the `x-k8s-aws-id` header naming [`EKS_TEST_CLUSTER`], and the returned
//! ARN becomes the username, in group [`EKS_TEST_GROUP`].
//!
//! Test-only differences from the real authenticator: the STS endpoint must be on loopback
//! (a moto server the test runs; real STS hosts are refused), the GET also carries the
//! credential scope in an `Authorization` header so moto routes it to STS, and since moto
//! does not verify signatures, a token signed for another cluster name is not detected here.
//!
//! Plain std threads and hand-written HTTP/1.1 (one request per connection, `Connection:
//! close`): the server must run inside whatever process owns the control plane, with or
//! without a tokio runtime, and it only ever talks to the apiserver and a loopback moto.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::Error;

/// The cluster name the webhook expects in tokens (`x-k8s-aws-id`).
pub const EKS_TEST_CLUSTER: &str = "plumb-test";
/// The group every authenticated EKS identity is put in (grant RBAC to it).
pub const EKS_TEST_GROUP: &str = "plumb:eks-users";

const PREFIX: &str = "k8s-aws-v1.";
const TOKEN_LIFETIME_SECS: i64 = 15 * 60;

/// A running webhook; stops accepting when dropped.
#[derive(Debug)]
pub struct EksTokenWebhook {
    port: u16,
    stop: Arc<AtomicBool>,
}

impl EksTokenWebhook {
    /// Starts the webhook on a free loopback port.
    pub fn start() -> Result<Self, Error> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .map_err(|e| Error::io("binding the EKS webhook", Path::new("127.0.0.1:0"), e))?;
        let port = listener
            .local_addr()
            .map_err(|e| Error::io("reading the EKS webhook address", Path::new(""), e))?
            .port();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if flag.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(stream) = conn {
                    std::thread::spawn(move || serve(stream));
                }
            }
        });
        Ok(Self { port, stop })
    }

    /// Writes the kubeconfig-format file kube-apiserver's
    /// `--authentication-token-webhook-config-file` reads.
    pub fn write_config(&self, path: &Path) -> Result<(), Error> {
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: eks-webhook\n  cluster:\n    server: http://127.0.0.1:{}/authenticate\n\
             users:\n- name: apiserver\n  user: {{}}\ncontexts:\n- name: webhook\n  context:\n    cluster: eks-webhook\n    user: apiserver\n\
             current-context: webhook\n",
            self.port
        );
        std::fs::write(path, text).map_err(|e| Error::io("writing", path, e))
    }

    /// The kube-apiserver flags that enable the webhook (config written to `path`).
    pub fn apiserver_args(&self, path: &Path) -> Result<Vec<String>, Error> {
        self.write_config(path)?;
        Ok(vec![
            format!(
                "--authentication-token-webhook-config-file={}",
                path.display()
            ),
            "--authentication-token-webhook-version=v1".into(),
            "--authentication-token-webhook-cache-ttl=10s".into(),
        ])
    }
}

impl Drop for EksTokenWebhook {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn serve(stream: TcpStream) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut reader = BufReader::new(match stream.try_clone() {
        Ok(s) => s,
        Err(_) => return,
    });
    let mut len = 0usize;
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':')
            && k.eq_ignore_ascii_case("content-length")
        {
            len = v.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0u8; len.min(1 << 20)];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let review: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let token = review["spec"]["token"].as_str().unwrap_or_default();
    let status = match authenticate(token) {
        Ok(arn) => serde_json::json!({
            "authenticated": true,
            "user": {"username": arn, "uid": format!("aws-iam-authenticator:{arn}"), "groups": [EKS_TEST_GROUP]},
        }),
        Err(why) => serde_json::json!({"authenticated": false, "error": why}),
    };
    let reply = serde_json::json!({
        "apiVersion": review["apiVersion"].as_str().unwrap_or("authentication.k8s.io/v1"),
        "kind": "TokenReview",
        "status": status,
    })
    .to_string();
    let mut out = stream;
    let _ = write!(
        out,
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{reply}",
        reply.len()
    );
}

/// Verifies an EKS token; the ARN of the caller, or why the token is refused.
pub fn authenticate(token: &str) -> Result<String, String> {
    authenticate_at(token, chrono::Utc::now())
}

fn authenticate_at(token: &str, now: chrono::DateTime<chrono::Utc>) -> Result<String, String> {
    let encoded = token
        .strip_prefix(PREFIX)
        .ok_or("not an EKS token (no k8s-aws-v1. prefix)")?;
    let url = URL_SAFE_NO_PAD
        .decode(encoded.trim_end_matches('='))
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or("the token is not base64url of a URL")?;
    let rest = url
        .strip_prefix("http://")
        .ok_or("the STS URL is not a loopback http:// URL (test webhook)")?;
    let (hostport, path_query) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let port: u16 = match hostport.split_once(':') {
        Some(("127.0.0.1" | "localhost", p)) => p.parse().map_err(|_| "bad STS port")?,
        _ => return Err("the STS host is not loopback (test webhook)".into()),
    };
    if port == 0 {
        return Err("bad STS port".into());
    }
    let query = path_query.split_once('?').map(|(_, q)| q).unwrap_or("");
    let param = |k: &str| {
        query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(key, _)| *key == k)
            .map(|(_, v)| v.to_string())
    };
    if param("Action").as_deref() != Some("GetCallerIdentity")
        || param("Version").as_deref() != Some("2011-06-15")
    {
        return Err("the URL is not an STS GetCallerIdentity call".into());
    }
    let signed = param("X-Amz-SignedHeaders").unwrap_or_default();
    if !signed.split("%3B").any(|h| h == "x-k8s-aws-id") {
        return Err("x-k8s-aws-id is not a signed header".into());
    }
    let date = param("X-Amz-Date").ok_or("X-Amz-Date is missing")?;
    let signed_at = chrono::NaiveDateTime::parse_from_str(&date, "%Y%m%dT%H%M%SZ")
        .map_err(|_| "X-Amz-Date is invalid")?
        .and_utc();
    let age = (now - signed_at).num_seconds();
    if age > TOKEN_LIFETIME_SECS {
        return Err(format!("the token expired ({age}s old)"));
    }
    if age < -60 {
        return Err("the token is signed in the future".into());
    }
    if !query.contains("X-Amz-Credential=") {
        return Err("X-Amz-Credential is missing".into());
    }
    let response = crate::moto::replay_presigned(&url, EKS_TEST_CLUSTER)?;
    let (status, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    if !status.starts_with("HTTP/1.1 200") && !status.starts_with("HTTP/1.0 200") {
        return Err(format!(
            "STS refused the call: {}",
            status.lines().next().unwrap_or_default()
        ));
    }
    let arn = body
        .split_once("<Arn>")
        .and_then(|(_, r)| r.split_once("</Arn>"))
        .map(|(a, _)| a.trim().to_string())
        .ok_or("the STS answer has no Arn")?;
    Ok(arn)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(date: &str, signed: &str) -> String {
        let url = format!(
            "http://127.0.0.1:1/?Action=GetCallerIdentity&Version=2011-06-15&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AK%2F20260101%2Fus-east-1%2Fsts%2Faws4_request&X-Amz-Date={date}&X-Amz-Expires=60&X-Amz-SignedHeaders={signed}&X-Amz-Signature=00"
        );
        format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(url))
    }

    #[test]
    fn refuses_bad_tokens_before_calling_sts() {
        let now = chrono::NaiveDateTime::parse_from_str("20260101T001000Z", "%Y%m%dT%H%M%SZ")
            .unwrap()
            .and_utc();
        assert!(authenticate_at("abc", now).unwrap_err().contains("prefix"));
        let e =
            authenticate_at(&token("20251231T230000Z", "host%3Bx-k8s-aws-id"), now).unwrap_err();
        assert!(e.contains("expired"), "{e}");
        let e = authenticate_at(&token("20260101T001000Z", "host"), now).unwrap_err();
        assert!(e.contains("x-k8s-aws-id"), "{e}");
        let real = format!(
            "{PREFIX}{}",
            URL_SAFE_NO_PAD.encode("https://sts.amazonaws.com/?Action=GetCallerIdentity")
        );
        assert!(
            authenticate_at(&real, now)
                .unwrap_err()
                .contains("loopback")
        );
        // A fresh, well-formed token gets as far as the (closed) STS port.
        let e =
            authenticate_at(&token("20260101T000900Z", "host%3Bx-k8s-aws-id"), now).unwrap_err();
        assert!(e.starts_with("connect 127.0.0.1:1"), "{e}");
    }
}
