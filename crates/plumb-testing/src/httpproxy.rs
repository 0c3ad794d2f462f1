//! A real forward HTTP proxy for tests: Debian's `tinyproxy` on loopback, optionally with
//! basic authentication, logging every request it forwards (so a test proves that traffic
//! went through it). Installed by `scripts/install-deps.sh`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running tinyproxy. Dropping it stops it.
#[derive(Debug)]
pub struct HttpProxy {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl HttpProxy {
    /// Starts tinyproxy on `127.0.0.1:<free port>`, demanding `basic_auth` (user, password)
    /// when given.
    pub fn start(basic_auth: Option<(&str, &str)>) -> Result<HttpProxy, String> {
        let dir = tempfile::tempdir().map_err(|e| format!("proxy temp dir: {e}"))?;
        let port = crate::git::free_port();
        let log = dir.path().join("tinyproxy.log");
        let mut conf = format!(
            "Port {port}\nListen 127.0.0.1\nTimeout 60\nMaxClients 50\nLogLevel Info\n\
             LogFile \"{}\"\nPidFile \"{}\"\nAllow 127.0.0.1\nDisableViaHeader Yes\n",
            log.display(),
            dir.path().join("tinyproxy.pid").display()
        );
        if let Some((user, pass)) = basic_auth {
            conf.push_str(&format!("BasicAuth {user} {pass}\n"));
        }
        let conf_path = dir.path().join("tinyproxy.conf");
        std::fs::write(&conf_path, conf).map_err(|e| format!("proxy config: {e}"))?;
        // -d: stay in the foreground, so the child is the proxy and Drop stops it.
        let child = Command::new("tinyproxy")
            .arg("-d")
            .arg("-c")
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                format!(
                    "tinyproxy cannot run ({e}); run scripts/install-deps.sh \
                     (apt-get install tinyproxy)"
                )
            })?;
        let mut proxy = HttpProxy { child, port, dir };
        proxy.wait_ready(Duration::from_secs(20))?;
        Ok(proxy)
    }

    fn wait_ready(&mut self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.probe().is_ok() {
                return Ok(());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("tinyproxy exited early ({status}): {}", self.log()));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "tinyproxy did not answer on port {} within {timeout:?}: {}",
                    self.port,
                    self.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Any HTTP answer to a request for the proxy itself means it is up.
    fn probe(&self) -> Result<(), String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(Duration::from_secs(2)))
            .map_err(|e| e.to_string())?;
        s.write_all(b"GET / HTTP/1.0\r\n\r\n")
            .map_err(|e| e.to_string())?;
        let mut buf = [0u8; 12];
        s.read_exact(&mut buf).map_err(|e| e.to_string())?;
        buf.starts_with(b"HTTP/")
            .then_some(())
            .ok_or_else(|| "not HTTP".to_string())
    }

    /// `http://127.0.0.1:<port>`, the `address` of a proxy Secret.
    pub fn address(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The proxy's log (one line per connection and request).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("tinyproxy.log")).unwrap_or_default()
    }

    /// Whether the log shows `needle` within `timeout` (tinyproxy writes its log lazily).
    pub fn logged(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.log().contains(needle) {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for HttpProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
