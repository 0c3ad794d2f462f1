//! A real Kubernetes 1.20 control plane on loopback: etcd, kube-apiserver and
//! kube-controller-manager, started from the binaries that
//! `scripts/provision-control-plane.sh` builds and caches.
//!
//! Two ways to get one:
//! - [`ControlPlane::shared`]: when `PLUMB_TEST_ENV` names an env file written by
//!   `plumb-test-env up`, every test process of a run attaches to that one control plane
//!   (nextest runs each test in its own process, so this is what keeps the suite fast).
//!   Otherwise the first call in a process starts a private control plane, kept for the
//!   life of the process.
//! - [`ControlPlane::start`]: a dedicated instance, for tests or the quickstart.
//!
//! Every child runs under a small shell watchdog that stops it when the owning process
//! exits, so a test binary that panics or is killed leaves no etcd or apiserver behind.

use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::Error;

/// Kubernetes version the provisioning script builds.
pub const K8S_VERSION: &str = "1.20.2";
/// Build recipe revision of the cached binaries (see scripts/provision-control-plane.sh).
pub const BUILD_REV: &str = "p1";
/// Token of the `admin` user (group `system:masters`).
const ADMIN_USER: &str = "plumb-admin";
/// Name of the restricted user: authenticated, but granted nothing by default.
pub const RESTRICTED_USER: &str = "plumb-restricted";
/// Env var naming the env file of a control plane shared by a whole test run.
pub const ENV_VAR: &str = "PLUMB_TEST_ENV";
/// How long the apiserver gets to become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(90);

/// What a test needs to talk to a running control plane. Serialized to the env file.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ControlPlaneInfo {
    /// `https://127.0.0.1:<port>`.
    pub server: String,
    /// PEM of the CA that signed the serving certificate.
    pub ca_file: PathBuf,
    /// Admin kubeconfig (user in `system:masters`).
    pub kubeconfig: PathBuf,
    /// Kubeconfig of [`RESTRICTED_USER`].
    pub restricted_kubeconfig: PathBuf,
    /// Bearer token of the admin user.
    pub admin_token: String,
    /// Bearer token of [`RESTRICTED_USER`].
    pub restricted_token: String,
    /// Directory holding certificates, data and logs.
    pub dir: PathBuf,
    /// Whether the apiserver accepts EKS tokens through [`crate::eks_webhook`] (false for
    /// env files written before the webhook existed).
    #[serde(default)]
    pub eks_webhook: bool,
}

/// A running control plane. Dropping it stops the processes it started.
#[derive(Debug)]
pub struct ControlPlane {
    info: ControlPlaneInfo,
    children: Vec<Child>,
    // How the apiserver was started (binary, flags, log), to restart it in place.
    apiserver: ApiserverCmd,
    // Serves the apiserver's token webhook while the control plane runs.
    _webhook: crate::eks_webhook::EksTokenWebhook,
    // Kept for its Drop: removes data and certificates of a private instance.
    _tmp: Option<tempfile::TempDir>,
}

/// How kube-apiserver was started: binary, flags, log file.
type ApiserverCmd = (PathBuf, Vec<String>, PathBuf);

/// Options for a dedicated control plane.
#[derive(Debug, Default, Clone)]
pub struct StartOptions {
    /// Directory for certificates, data and logs; a temporary one when `None`.
    pub dir: Option<PathBuf>,
    /// Extra kube-apiserver flags (e.g. a webhook token authenticator).
    pub extra_apiserver_args: Vec<String>,
    /// Extra `token,user,uid,"groups"` lines for the static token file.
    pub extra_tokens: Vec<String>,
}

impl ControlPlane {
    /// The control plane shared by this test run (see module docs).
    pub fn shared() -> Result<&'static ControlPlaneInfo, Error> {
        static SHARED: OnceLock<Result<SharedPlane, String>> = OnceLock::new();
        let res = SHARED.get_or_init(|| {
            if let Ok(path) = std::env::var(ENV_VAR) {
                let text = fs::read_to_string(&path)
                    .map_err(|e| format!("reading {ENV_VAR}={path}: {e}"))?;
                let info: ControlPlaneInfo = serde_json::from_str(&text)
                    .map_err(|e| format!("parsing {ENV_VAR}={path}: {e}"))?;
                return Ok(SharedPlane::Attached(info));
            }
            ControlPlane::start(StartOptions::default())
                .map(|cp| SharedPlane::Owned(Box::new(cp)))
                .map_err(|e| e.to_string())
        });
        match res {
            Ok(SharedPlane::Attached(info)) => Ok(info),
            Ok(SharedPlane::Owned(cp)) => Ok(&cp.info),
            Err(msg) => Err(Error::Shared(msg.clone())),
        }
    }

    /// Starts etcd, kube-apiserver and kube-controller-manager on free loopback ports and
    /// waits until the apiserver reports ready.
    pub fn start(opts: StartOptions) -> Result<Self, Error> {
        let bins = Binaries::locate()?;
        let (tmp, dir) = match &opts.dir {
            Some(d) => {
                fs::create_dir_all(d).map_err(|e| Error::io("creating", d, e))?;
                (None, d.clone())
            }
            None => {
                // etcd fsyncs a lot: keep its data in memory when /dev/shm is there.
                let base = Path::new("/dev/shm");
                let t = if base.is_dir() {
                    tempfile::Builder::new()
                        .prefix("plumb-cp-")
                        .tempdir_in(base)
                } else {
                    tempfile::Builder::new().prefix("plumb-cp-").tempdir()
                }
                .map_err(|e| Error::io("creating temp dir", Path::new("/tmp"), e))?;
                let p = t.path().to_path_buf();
                (Some(t), p)
            }
        };
        // Every control plane accepts EKS tokens through a webhook served by this process;
        // only tokens the static token file does not know ever reach it.
        let webhook = crate::eks_webhook::EksTokenWebhook::start()?;
        let mut opts = opts;
        opts.extra_apiserver_args
            .extend(webhook.apiserver_args(&dir.join("eks-webhook.kubeconfig"))?);
        // A port picked free can be taken before the server binds it: retry a few times.
        let mut last = None;
        for _ in 0..3 {
            match Self::start_in(&bins, &dir, &opts) {
                Ok((mut info, children, apiserver)) => {
                    info.eks_webhook = true;
                    return Ok(ControlPlane {
                        info,
                        children,
                        apiserver,
                        _webhook: webhook,
                        _tmp: tmp,
                    });
                }
                Err(e @ Error::NotReady { .. }) | Err(e @ Error::Exited { .. }) => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or(Error::Shared("control plane did not start".into())))
    }

    fn start_in(
        bins: &Binaries,
        dir: &Path,
        opts: &StartOptions,
    ) -> Result<(ControlPlaneInfo, Vec<Child>, ApiserverCmd), Error> {
        let pki = dir.join("pki");
        fs::create_dir_all(&pki).map_err(|e| Error::io("creating", &pki, e))?;
        make_pki(&pki)?;

        let admin_token = random_token();
        let restricted_token = random_token();
        let mut tokens = format!(
            "{admin_token},{ADMIN_USER},uid-admin,\"system:masters\"\n\
             {restricted_token},{RESTRICTED_USER},uid-restricted\n"
        );
        for line in &opts.extra_tokens {
            tokens.push_str(line);
            tokens.push('\n');
        }
        let token_file = pki.join("tokens.csv");
        write(&token_file, &tokens)?;

        let etcd_port = free_port()?;
        let peer_port = free_port()?;
        let api_port = free_port()?;
        let data = dir.join("etcd");
        let _ = fs::remove_dir_all(&data);
        let logs = dir.join("logs");
        fs::create_dir_all(&logs).map_err(|e| Error::io("creating", &logs, e))?;

        let mut children = Vec::new();
        let etcd_url = format!("http://127.0.0.1:{etcd_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        children.push(spawn_watched(
            &bins.etcd,
            &[
                "--name=plumb".into(),
                format!("--data-dir={}", data.display()),
                format!("--listen-client-urls={etcd_url}"),
                format!("--advertise-client-urls={etcd_url}"),
                format!("--listen-peer-urls={peer_url}"),
                format!("--initial-advertise-peer-urls={peer_url}"),
                format!("--initial-cluster=plumb={peer_url}"),
                "--log-level=warn".into(),
                "--logger=zap".into(),
            ],
            &logs.join("etcd.log"),
        )?);

        let p = |f: &str| pki.join(f).display().to_string();
        let mut api_args = vec![
            format!("--etcd-servers={etcd_url}"),
            "--bind-address=127.0.0.1".into(),
            "--advertise-address=127.0.0.1".into(),
            format!("--secure-port={api_port}"),
            "--insecure-port=0".into(),
            format!("--cert-dir={}", pki.display()),
            format!("--tls-cert-file={}", p("server.crt")),
            format!("--tls-private-key-file={}", p("server.key")),
            format!("--client-ca-file={}", p("ca.crt")),
            format!("--token-auth-file={}", token_file.display()),
            "--authorization-mode=RBAC".into(),
            format!("--service-account-key-file={}", p("sa.pub")),
            format!("--service-account-signing-key-file={}", p("sa.key")),
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
            "--api-audiences=https://kubernetes.default.svc.cluster.local".into(),
            "--service-cluster-ip-range=10.96.0.0/16".into(),
            "--allow-privileged=true".into(),
            // Nothing here mints service-account tokens for pods; pods are never run anyway.
            "--disable-admission-plugins=ServiceAccount".into(),
            "--profiling=false".into(),
            "--v=0".into(),
        ];
        api_args.extend(opts.extra_apiserver_args.iter().cloned());
        let api_log = logs.join("kube-apiserver.log");
        children.push(spawn_watched(&bins.apiserver, &api_args, &api_log)?);
        let apiserver = (bins.apiserver.clone(), api_args, api_log.clone());

        let server = format!("https://127.0.0.1:{api_port}");
        let kubeconfig = dir.join("admin.kubeconfig");
        write(
            &kubeconfig,
            &kubeconfig_yaml(&server, &pki.join("ca.crt"), ADMIN_USER, &admin_token),
        )?;
        let restricted_kubeconfig = dir.join("restricted.kubeconfig");
        write(
            &restricted_kubeconfig,
            &kubeconfig_yaml(
                &server,
                &pki.join("ca.crt"),
                RESTRICTED_USER,
                &restricted_token,
            ),
        )?;

        let info = ControlPlaneInfo {
            server,
            ca_file: pki.join("ca.crt"),
            kubeconfig: kubeconfig.clone(),
            restricted_kubeconfig,
            admin_token,
            restricted_token,
            dir: dir.to_path_buf(),
            eks_webhook: false,
        };
        if let Err(e) = wait_ready(&info, &mut children, &api_log) {
            stop_children(&mut children);
            return Err(e);
        }

        children.push(spawn_watched(
            &bins.controller_manager,
            &[
                format!("--kubeconfig={}", kubeconfig.display()),
                "--controllers=namespace,garbagecollector,serviceaccount,deployment,replicaset,statefulset,daemonset,job,clusterrole-aggregation".into(),
                "--leader-elect=false".into(),
                "--port=0".into(),
                "--secure-port=0".into(),
                "--use-service-account-credentials=false".into(),
                format!("--root-ca-file={}", p("ca.crt")),
                "--v=0".into(),
            ],
            &logs.join("kube-controller-manager.log"),
        )?);
        Ok((info, children, apiserver))
    }

    /// Connection facts of this control plane.
    pub fn info(&self) -> &ControlPlaneInfo {
        &self.info
    }

    /// Stops kube-apiserver (SIGTERM, as a rolling restart does), keeps it down for `down`,
    /// starts it again with the same flags on the same port and waits until it is ready;
    /// etcd and the controller-manager keep running. For fault tests: clients see refused
    /// connections and broken watches in between.
    pub fn restart_apiserver(&mut self, down: Duration) -> Result<(), Error> {
        let (bin, args, log) = self.apiserver.clone();
        let mut old = vec![self.children.remove(1)];
        stop_children(&mut old);
        std::thread::sleep(down);
        let log = log.with_extension("restarted.log");
        let mut child = vec![spawn_watched(&bin, &args, &log)?];
        let ready = wait_ready(&self.info, &mut child, &log);
        self.children.insert(1, child.remove(0));
        ready
    }

    /// Stops the processes; also done on drop.
    pub fn stop(&mut self) {
        stop_children(&mut self.children);
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.stop();
    }
}

enum SharedPlane {
    Attached(ControlPlaneInfo),
    Owned(Box<ControlPlane>),
}

impl ControlPlaneInfo {
    /// A client authenticated as the admin user.
    pub async fn admin_client(&self) -> Result<kube::Client, Error> {
        client_from(&self.kubeconfig).await
    }

    /// A client authenticated as [`RESTRICTED_USER`], who has no RBAC grants by default.
    pub async fn restricted_client(&self) -> Result<kube::Client, Error> {
        client_from(&self.restricted_kubeconfig).await
    }

    /// Kubeconfig YAML for the admin user, with the CA inlined (for Secrets holding a
    /// kubeconfig, as Flux's `spec.kubeConfig.secretRef` expects).
    pub fn admin_kubeconfig_inline(&self) -> Result<String, Error> {
        let ca = fs::read(&self.ca_file).map_err(|e| Error::io("reading", &self.ca_file, e))?;
        Ok(kubeconfig_yaml_inline(
            &self.server,
            &ca,
            ADMIN_USER,
            &self.admin_token,
        ))
    }
}

async fn client_from(path: &Path) -> Result<kube::Client, Error> {
    let kc = Kubeconfig::read_from(path).map_err(|e| Error::Kube(e.to_string()))?;
    let cfg = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .map_err(|e| Error::Kube(e.to_string()))?;
    kube::Client::try_from(cfg).map_err(|e| Error::Kube(e.to_string()))
}

struct Binaries {
    etcd: PathBuf,
    apiserver: PathBuf,
    controller_manager: PathBuf,
}

impl Binaries {
    fn locate() -> Result<Self, Error> {
        let bin_dir = match std::env::var_os("PLUMB_K8S_BIN") {
            Some(d) => PathBuf::from(d),
            None => cache_dir()
                .join(format!("k8s-{K8S_VERSION}-{BUILD_REV}"))
                .join("bin"),
        };
        let need = |p: PathBuf| -> Result<PathBuf, Error> {
            if p.is_file() {
                Ok(p)
            } else {
                Err(Error::MissingBinary(p))
            }
        };
        Ok(Binaries {
            etcd: need(PathBuf::from(
                std::env::var_os("PLUMB_ETCD").unwrap_or_else(|| "/usr/bin/etcd".into()),
            ))?,
            apiserver: need(bin_dir.join("kube-apiserver"))?,
            controller_manager: need(bin_dir.join("kube-controller-manager"))?,
        })
    }
}

/// `$PLUMB_CACHE_DIR`, else `$XDG_CACHE_HOME/plumb`, else `~/.cache/plumb`, as the
/// provisioning script computes it.
pub fn cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("PLUMB_CACHE_DIR") {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(d).join("plumb");
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    PathBuf::from(home).join(".cache").join("plumb")
}

fn free_port() -> Result<u16, Error> {
    let l = TcpListener::bind("127.0.0.1:0")
        .map_err(|e| Error::io("binding", Path::new("127.0.0.1:0"), e))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| Error::io("binding", Path::new("127.0.0.1:0"), e))
}

fn random_token() -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..32)
        .map(|_| char::from(b"abcdefghijklmnopqrstuvwxyz0123456789"[rng.random_range(0..36)]))
        .collect()
}

fn write(path: &Path, text: &str) -> Result<(), Error> {
    fs::write(path, text).map_err(|e| Error::io("writing", path, e))
}

/// Spawns `bin args` under `sh` that kills it when this process goes away.
fn spawn_watched(bin: &Path, args: &[String], log: &Path) -> Result<Child, Error> {
    let out = fs::File::create(log).map_err(|e| Error::io("creating", log, e))?;
    let err = out.try_clone().map_err(|e| Error::io("opening", log, e))?;
    // The watchdog checks its parent once a second; on TERM it forwards and waits.
    let script = r#"p=$1; shift; "$@" & c=$!
trap 'kill $c 2>/dev/null; wait $c; exit 0' TERM INT
while kill -0 "$p" 2>/dev/null && kill -0 "$c" 2>/dev/null; do sleep 1; done
kill $c 2>/dev/null; wait $c"#;
    Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg("sh")
        .arg(std::process::id().to_string())
        .arg(bin)
        .args(args)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(|e| Error::io("spawning", bin, e))
}

fn stop_children(children: &mut Vec<Child>) {
    // Controller-manager first, etcd last.
    for c in children.iter_mut().rev() {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match c.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) if Instant::now() > deadline => {
                    let _ = c.kill();
                    let _ = c.wait();
                    break;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }
    children.clear();
}

fn wait_ready(info: &ControlPlaneInfo, children: &mut [Child], log: &Path) -> Result<(), Error> {
    let deadline = Instant::now() + READY_TIMEOUT;
    let info = info.clone();
    // The probe needs a runtime; run it on its own thread so callers inside an async
    // test do not nest runtimes.
    let probe = move || -> Result<bool, String> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        rt.block_on(async {
            let client = info.admin_client().await.map_err(|e| e.to_string())?;
            let req = http::Request::get("/readyz")
                .body(Vec::new())
                .map_err(|e| e.to_string())?;
            Ok(matches!(client.request_text(req).await, Ok(body) if body.trim() == "ok"))
        })
    };
    loop {
        for c in children.iter_mut() {
            if let Ok(Some(status)) = c.try_wait() {
                return Err(Error::Exited {
                    what: "etcd or kube-apiserver".into(),
                    status: status.to_string(),
                    log_tail: log_tail(log),
                });
            }
        }
        let probe = probe.clone();
        let ready = std::thread::spawn(probe)
            .join()
            .unwrap_or_else(|_| Err("probe panicked".into()));
        if let Ok(true) = ready {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(Error::NotReady {
                after: READY_TIMEOUT,
                log_tail: log_tail(log),
            });
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The last 30 lines of a log file, for error messages.
pub fn log_tail(path: &Path) -> String {
    let Ok(mut f) = fs::File::open(path) else {
        return format!("(no log at {})", path.display());
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(8192)));
    let mut s = String::new();
    let _ = f.read_to_string(&mut s);
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

fn make_pki(pki: &Path) -> Result<(), Error> {
    if pki.join("server.crt").is_file() && pki.join("sa.pub").is_file() {
        return Ok(());
    }
    let san = pki.join("san.ext");
    write(
        &san,
        "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc\n",
    )?;
    let steps: &[&[&str]] = &[
        &[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            "ca.key",
        ],
        &[
            "req",
            "-x509",
            "-new",
            "-key",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "3650",
            "-subj",
            "/CN=plumb-test-ca",
        ],
        &[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            "server.key",
        ],
        &[
            "req",
            "-new",
            "-key",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=kube-apiserver",
        ],
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "3650",
            "-extfile",
            "san.ext",
        ],
        &["genrsa", "-out", "sa.key", "2048"],
        &["rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub"],
    ];
    for args in steps {
        let out = Command::new("openssl")
            .args(*args)
            .current_dir(pki)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| Error::io("running openssl (apt-get install openssl)", pki, e))?;
        if !out.status.success() {
            return Err(Error::Pki(format!(
                "openssl {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
    }
    Ok(())
}

fn kubeconfig_yaml(server: &str, ca: &Path, user: &str, token: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: plumb-test\n  cluster:\n    server: {server}\n    certificate-authority: {}\nusers:\n- name: {user}\n  user:\n    token: {token}\ncontexts:\n- name: plumb-test\n  context:\n    cluster: plumb-test\n    user: {user}\n    namespace: default\ncurrent-context: plumb-test\n",
        ca.display()
    )
}

fn kubeconfig_yaml_inline(server: &str, ca_pem: &[u8], user: &str, token: &str) -> String {
    use base64::Engine;
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: plumb-test\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca}\nusers:\n- name: {user}\n  user:\n    token: {token}\ncontexts:\n- name: plumb-test\n  context:\n    cluster: plumb-test\n    user: {user}\ncurrent-context: plumb-test\n"
    )
}
