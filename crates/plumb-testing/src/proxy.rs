//! A TCP proxy a test can cut, to take the API server away from one client while others
//! keep it. Bytes pass through unchanged (TLS included), so a client pointed at
//! `https://127.0.0.1:<proxy port>` verifies the API server's certificate as usual.

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A running proxy to one upstream address. Dropping it cuts it.
#[derive(Debug)]
pub struct TcpProxy {
    addr: SocketAddr,
    cut: watch::Sender<bool>,
}

impl TcpProxy {
    /// Listens on `127.0.0.1:<free port>` and forwards every connection to `upstream`.
    pub async fn start(upstream: SocketAddr) -> std::io::Result<TcpProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (cut, cut_rx) = watch::channel(false);
        tokio::spawn(accept_loop(listener, upstream, cut_rx));
        Ok(TcpProxy { addr, cut })
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting (the port is closed: connects are refused) and drops every open
    /// connection, both ways.
    pub fn cut(&self) {
        self.cut.send_replace(true);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.cut();
    }
}

async fn accept_loop(listener: TcpListener, upstream: SocketAddr, cut: watch::Receiver<bool>) {
    loop {
        let mut stop = cut.clone();
        let accepted = tokio::select! {
            _ = stop.wait_for(|c| *c) => return,
            a = listener.accept() => a,
        };
        let Ok((client, _)) = accepted else {
            continue;
        };
        tokio::spawn(forward(client, upstream, cut.clone()));
    }
}

async fn forward(mut client: TcpStream, upstream: SocketAddr, mut cut: watch::Receiver<bool>) {
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        return;
    };
    // Dropping both streams on a cut closes them: the client sees its connection reset.
    tokio::select! {
        _ = cut.wait_for(|c| *c) => {}
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
    }
}
