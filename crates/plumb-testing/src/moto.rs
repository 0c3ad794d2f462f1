//! A `moto_server` (PyPI `moto[server]`) on a free loopback port: a local AWS API for the EKS
//! tests. The process is killed when the [`MotoServer`] is dropped.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running moto server.
#[derive(Debug)]
pub struct MotoServer {
    child: Child,
    port: u16,
}

impl MotoServer {
    /// Starts `moto_server` on 127.0.0.1 and waits (up to 60 s) until it accepts connections.
    ///
    /// A missing `moto_server` is an error, never a skip (`scripts/install-deps.sh`
    /// installs it).
    pub fn start() -> Result<Self, String> {
        let port = free_port()?;
        let child = match Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
        {
            Ok(c) => c,
            Err(e) => {
                return Err(format!(
                    "moto_server cannot run ({e}); run scripts/install-deps.sh (pip install 'moto[server]')"
                ));
            }
        };
        let mut server = Self { child, port };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(server);
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                return Err(format!("moto_server exited early: {status}"));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "moto_server did not listen on port {port} within 60s"
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The base URL (`http://127.0.0.1:<port>`), for `AWS_ENDPOINT_URL`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Replays a presigned STS URL (an EKS token's) as the EKS authenticator does; see
    /// [`replay_presigned`].
    pub fn replay_presigned(&self, url: &str, cluster: &str) -> Result<String, String> {
        replay_presigned(url, cluster)
    }
}

/// Replays a presigned STS URL (an EKS token's) as the EKS authenticator does: a GET with
/// the `x-k8s-aws-id` header. Returns the whole HTTP response.
///
/// moto picks the service of a request from its `Authorization` header only, never from
/// `X-Amz-Credential` in the query, so an `Authorization` header naming the same credential
/// scope is added for routing; moto does not verify signatures either way (the botocore
/// known-answer test covers the signature).
pub fn replay_presigned(url: &str, cluster: &str) -> Result<String, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("not an http URL: {url}"))?;
    let slash = rest.find('/').ok_or_else(|| format!("no path in {url}"))?;
    let (host, path) = rest.split_at(slash);
    let credential = path
        .split(['?', '&'])
        .find_map(|p| p.strip_prefix("X-Amz-Credential="))
        .ok_or_else(|| format!("no X-Amz-Credential in {url}"))?
        .replace("%2F", "/");
    let mut stream = TcpStream::connect(host).map_err(|e| format!("connect {host}: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nx-k8s-aws-id: {cluster}\r\n\
         Authorization: AWS4-HMAC-SHA256 Credential={credential}, SignedHeaders=host;x-k8s-aws-id, Signature=routing-only\r\n\
         Connection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("send to {host}: {e}"))?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .map_err(|e| format!("read from {host}: {e}"))?;
    Ok(response)
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> Result<u16, String> {
    let l = TcpListener::bind(("127.0.0.1", 0)).map_err(|e| format!("binding a free port: {e}"))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("reading the free port: {e}"))
}
