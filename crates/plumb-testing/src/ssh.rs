//! Debian's sshd on a free loopback port for git-over-SSH tests: a generated host key, one
//! authorized client key (plain and passphrase-protected variants) and `known_hosts` lines.

use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::git::free_port;

/// Debian's sshd serving git over SSH on a loopback port as the current user.
pub struct SshServer {
    /// Listening port on 127.0.0.1.
    pub port: u16,
    /// `known_hosts` content naming this server's host key (`[127.0.0.1]:port ssh-ed25519 ...`).
    pub known_hosts: String,
    /// `known_hosts` content with the entry hashed (`|1|salt|hash ...`).
    pub known_hosts_hashed: String,
    /// An authorized client private key (OpenSSH format, no passphrase).
    pub identity: String,
    /// The same kind of key, authorized, protected by [`SshServer::IDENTITY_PASSPHRASE`].
    pub identity_encrypted: String,
    /// A valid key that is NOT authorized.
    pub identity_unauthorized: String,
    /// The user the server runs as and accepts.
    pub user: String,
    child: Child,
    _dir: tempfile::TempDir,
}

impl std::fmt::Debug for SshServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SshServer")
            .field("port", &self.port)
            .finish()
    }
}

fn keygen(path: &Path, kind: &str, passphrase: &str) {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", kind, "-N", passphrase, "-C", "plumb-test", "-f"])
        .arg(path)
        .output()
        .expect("spawn ssh-keygen");
    assert!(
        out.status.success(),
        "ssh-keygen: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl SshServer {
    /// Passphrase of [`SshServer::identity_encrypted`].
    pub const IDENTITY_PASSPHRASE: &'static str = "s3cret-passphrase";

    /// Start sshd; repositories are addressed by absolute path ([`SshServer::url`]).
    pub fn start() -> SshServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        keygen(&d.join("host_key"), "ed25519", "");
        keygen(&d.join("id_plain"), "ed25519", "");
        keygen(&d.join("id_enc"), "ecdsa", Self::IDENTITY_PASSPHRASE);
        keygen(&d.join("id_other"), "ed25519", "");
        let mut authorized = std::fs::read_to_string(d.join("id_plain.pub")).expect("pub key");
        authorized.push_str(&std::fs::read_to_string(d.join("id_enc.pub")).expect("pub key"));
        std::fs::write(d.join("authorized_keys"), authorized).expect("authorized_keys");
        let user = String::from_utf8_lossy(
            &Command::new("id")
                .arg("-un")
                .output()
                .expect("id -un")
                .stdout,
        )
        .trim()
        .to_string();
        let port = free_port();
        let config = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {hk}\nAuthorizedKeysFile {ak}\n\
             PidFile none\nUsePAM no\nStrictModes no\nPermitRootLogin prohibit-password\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\nPubkeyAuthentication yes\n\
             AllowUsers {user}\nLogLevel ERROR\nPrintMotd no\nSetEnv PATH=/usr/local/bin:/usr/bin:/bin\n",
            hk = d.join("host_key").display(),
            ak = d.join("authorized_keys").display(),
        );
        std::fs::write(d.join("sshd_config"), config).expect("sshd_config");
        // sshd's privilege-separation directory; present on systems where ssh ever started.
        let _ = std::fs::create_dir_all("/run/sshd");
        let child = Command::new("/usr/sbin/sshd")
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(d.join("sshd_config"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn /usr/sbin/sshd (apt-get install openssh-server)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "sshd did not listen on {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        let host_pub = std::fs::read_to_string(d.join("host_key.pub")).expect("host pub");
        let mut parts = host_pub.split_whitespace();
        let (kind, key) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        let host = format!("[127.0.0.1]:{port}");
        let known_hosts = format!("{host} {kind} {key}\n");
        std::fs::write(d.join("known_hosts"), &known_hosts).expect("known_hosts");
        let out = Command::new("ssh-keygen")
            .arg("-H")
            .arg("-f")
            .arg(d.join("known_hosts"))
            .output()
            .expect("ssh-keygen -H");
        assert!(out.status.success(), "ssh-keygen -H failed");
        let known_hosts_hashed =
            std::fs::read_to_string(d.join("known_hosts")).expect("hashed known_hosts");
        let read = |n: &str| std::fs::read_to_string(d.join(n)).expect("read key");
        SshServer {
            port,
            known_hosts,
            known_hosts_hashed,
            identity: read("id_plain"),
            identity_encrypted: read("id_enc"),
            identity_unauthorized: read("id_other"),
            user,
            child,
            _dir: dir,
        }
    }

    /// `ssh://user@127.0.0.1:port/<abs path>` for a repository on this machine.
    pub fn url(&self, repo: &Path) -> String {
        format!(
            "ssh://{}@127.0.0.1:{}{}",
            self.user,
            self.port,
            repo.display()
        )
    }
}

impl Drop for SshServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
