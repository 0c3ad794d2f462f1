//! A slowloris client: it sends a request head a byte at a time and never finishes it,
//! to prove a server closes such connections instead of keeping them forever.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Connects to `addr`, sends the start of a `POST path` head and then one header byte
/// every 200 ms without ever ending the head. Returns how long the server kept the
/// connection open, or `None` when it was still open after `give_up`.
pub async fn slowloris(addr: SocketAddr, path: &str, give_up: Duration) -> Option<Duration> {
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    let start = Instant::now();
    let head = format!("POST {path} HTTP/1.1\r\nHost: slow\r\nX-Slow: ");
    if s.write_all(head.as_bytes()).await.is_err() {
        return Some(start.elapsed());
    }
    let mut buf = [0u8; 512];
    while start.elapsed() < give_up {
        // A closed connection shows as a read of 0 bytes, an error, or a failed write.
        match tokio::time::timeout(Duration::from_millis(200), s.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return Some(start.elapsed()),
            Ok(Ok(_)) => {} // a 408 or similar: keep reading until the close
            Err(_) => {
                if s.write_all(b"a").await.is_err() {
                    return Some(start.elapsed());
                }
            }
        }
    }
    None
}
