//! A throwaway certificate authority for TLS tests, made with the `openssl` CLI: the CA, a
//! server certificate for `127.0.0.1` and `localhost`, client certificates, and a second CA
//! that signed nothing (wrong-CA tests).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

/// A throwaway CA and a server certificate it signed for `127.0.0.1` and `localhost`, made with
/// the `openssl` CLI. PEM files live in a temp dir; `*_pem` hold their text.
pub struct TlsMaterial {
    /// CA certificate (PEM), what a Secret's `ca.crt` holds.
    pub ca_pem: String,
    /// Another CA that signed nothing here (wrong-CA tests).
    pub other_ca_pem: String,
    /// A client certificate signed by the CA (`tls.crt` of a client-certificate Secret).
    pub client_crt_pem: String,
    /// Its private key (`tls.key`).
    pub client_key_pem: String,
    /// A client certificate signed by the other CA (rejected by [`GitHttpServer::start_mtls`]).
    pub other_client_crt_pem: String,
    /// Its private key.
    pub other_client_key_pem: String,
    dir: tempfile::TempDir,
}

impl std::fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsMaterial").finish_non_exhaustive()
    }
}

fn openssl_cli(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("spawn openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl TlsMaterial {
    /// Path of the server certificate (PEM, signed by the CA, for `127.0.0.1` and `localhost`),
    /// for servers configured with files such as the OCI registry.
    pub fn server_cert_path(&self) -> PathBuf {
        self.dir.path().join("tls.crt")
    }

    /// Path of the server certificate's private key (PEM).
    pub fn server_key_path(&self) -> PathBuf {
        self.dir.path().join("tls.key")
    }

    /// Path of the CA certificate (PEM).
    pub fn ca_path(&self) -> PathBuf {
        self.dir.path().join("ca.crt")
    }

    /// A TLS acceptor presenting the server certificate; with `client_auth` the handshake
    /// demands a client certificate signed by the CA.
    pub fn acceptor(&self, client_auth: bool) -> Arc<openssl::ssl::SslAcceptor> {
        let mut b =
            openssl::ssl::SslAcceptor::mozilla_intermediate_v5(openssl::ssl::SslMethod::tls())
                .expect("ssl acceptor");
        b.set_private_key_file(
            self.dir.path().join("tls.key"),
            openssl::ssl::SslFiletype::PEM,
        )
        .expect("server key");
        b.set_certificate_chain_file(self.dir.path().join("tls.crt"))
            .expect("server cert");
        if client_auth {
            b.set_ca_file(self.dir.path().join("ca.crt"))
                .expect("client CA");
            b.set_verify(
                openssl::ssl::SslVerifyMode::PEER
                    | openssl::ssl::SslVerifyMode::FAIL_IF_NO_PEER_CERT,
            );
        }
        Arc::new(b.build())
    }

    /// Generate the CA, the server key and certificate.
    pub fn generate() -> TlsMaterial {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        for (key, crt, cn) in [
            ("ca.key", "ca.crt", "plumb-test-ca"),
            ("other.key", "other.crt", "plumb-other-ca"),
        ] {
            let mut args = vec!["req", "-x509"];
            args.extend(ec);
            args.extend(["-keyout", key, "-out", crt, "-days", "2"]);
            let subj = format!("/CN={cn}");
            args.extend(["-subj", &subj]);
            openssl_cli(d, &args);
        }
        let mut args = vec!["req"];
        args.extend(ec);
        args.extend([
            "-keyout",
            "tls.key",
            "-out",
            "tls.csr",
            "-subj",
            "/CN=localhost",
        ]);
        openssl_cli(d, &args);
        std::fs::write(
            d.join("ext.cnf"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
        )
        .expect("ext.cnf");
        openssl_cli(
            d,
            &[
                "x509",
                "-req",
                "-in",
                "tls.csr",
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                "tls.crt",
                "-days",
                "2",
                "-extfile",
                "ext.cnf",
            ],
        );
        // X.509 v3 (rustls rejects v1 client certificates), marked for client auth.
        std::fs::write(d.join("client-ext.cnf"), "extendedKeyUsage=clientAuth\n")
            .expect("client-ext.cnf");
        for (name, ca) in [("client", "ca"), ("other-client", "other")] {
            let (key, csr, crt) = (
                format!("{name}.key"),
                format!("{name}.csr"),
                format!("{name}.crt"),
            );
            let mut args = vec!["req"];
            args.extend(ec);
            args.extend(["-keyout", &key, "-out", &csr, "-subj", "/CN=plumb-client"]);
            openssl_cli(d, &args);
            let (ca_crt, ca_key) = (format!("{ca}.crt"), format!("{ca}.key"));
            openssl_cli(
                d,
                &[
                    "x509",
                    "-req",
                    "-in",
                    &csr,
                    "-CA",
                    &ca_crt,
                    "-CAkey",
                    &ca_key,
                    "-CAcreateserial",
                    "-out",
                    &crt,
                    "-days",
                    "2",
                    "-extfile",
                    "client-ext.cnf",
                ],
            );
        }
        let read = |n: &str| std::fs::read_to_string(d.join(n)).expect("read pem");
        TlsMaterial {
            ca_pem: read("ca.crt"),
            other_ca_pem: read("other.crt"),
            client_crt_pem: read("client.crt"),
            client_key_pem: read("client.key"),
            other_client_crt_pem: read("other-client.crt"),
            other_client_key_pem: read("other-client.key"),
            dir,
        }
    }
}
