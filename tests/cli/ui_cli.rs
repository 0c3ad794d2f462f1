//! `plumb ui` as a process: it prints its URL, and its diff view answers what `plumb diff`
//! prints (the same function makes both).

use std::io::BufRead;
use std::process::{Command, Stdio};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Starts `plumb ui` on a free port with `kubeconfig`, asks for the diff of Kustomization
/// `ns/name` and stops it; returns the JSON answer.
pub(crate) async fn ui_diff(kubeconfig: &std::path::Path, ns: &str, name: &str) -> Value {
    let mut child = Command::new(env!("CARGO_BIN_EXE_plumb"))
        .args(["ui", "--addr", "127.0.0.1:0"])
        .env("KUBECONFIG", kubeconfig)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .unwrap();
        line
    })
    .await
    .unwrap();
    // "plumb ui: http://127.0.0.1:PORT/ (context ...)"
    let host = line
        .split("http://")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .unwrap_or_else(|| panic!("no URL in {line:?}"))
        .to_string();
    let mut s = tokio::net::TcpStream::connect(&host).await.unwrap();
    let req = format!(
        "GET /api/object/Kustomization/{ns}/{name}/diff HTTP/1.1\r\nhost: {host}\r\n\
         connection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).await.unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{answer}");
    serde_json::from_str(body).unwrap()
}
