//! `plumb-test-env up`: start the local control plane once for a whole test run or the
//! quickstart, write its connection facts to an env file, and keep it up until
//! SIGINT/SIGTERM.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use plumb_testing::{ControlPlane, StartOptions};

#[derive(Parser)]
#[command(about = "Local Kubernetes control plane for plumb's tests and quickstart")]
struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Start etcd, kube-apiserver and kube-controller-manager and stay in the foreground.
    Up {
        /// Where to write the JSON env file that tests read through PLUMB_TEST_ENV.
        #[arg(long)]
        env_file: PathBuf,
        /// Directory for certificates, data and logs (default: a temporary directory).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Serve the git repositories under ROOT over smart HTTP (`git http-backend`) on
    /// loopback, write the base URL to --url-file and stay in the foreground.
    GitServe {
        /// Directory whose subdirectories are repositories.
        root: PathBuf,
        /// Where to write `http://127.0.0.1:<port>`.
        #[arg(long)]
        url_file: PathBuf,
    },
}

fn wait_for_signal() {
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    rt.block_on(async {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
        }
    });
}

fn main() -> ExitCode {
    let args = Args::parse();
    let (env_file, dir) = match args.cmd {
        Cmd::Up { env_file, dir } => (env_file, dir),
        Cmd::GitServe { root, url_file } => {
            let server = plumb_testing::git::GitHttpServer::start(
                &root,
                plumb_testing::git::HttpAuth::Anonymous,
            );
            let base = server.url("");
            if let Err(e) = std::fs::write(&url_file, base.trim_end_matches('/')) {
                eprintln!("plumb-test-env: writing {}: {e}", url_file.display());
                return ExitCode::FAILURE;
            }
            wait_for_signal();
            return ExitCode::SUCCESS;
        }
    };
    let mut cp = match ControlPlane::start(StartOptions {
        dir,
        ..Default::default()
    }) {
        Ok(cp) => cp,
        Err(e) => {
            eprintln!("plumb-test-env: {e}");
            return ExitCode::FAILURE;
        }
    };
    let info = cp.info().clone();
    let json = match serde_json::to_string_pretty(&info) {
        Ok(j) => j,
        Err(e) => {
            eprintln!("plumb-test-env: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Write then rename, so a reader polling for the file never sees half of it.
    let tmp = env_file.with_extension("tmp");
    if let Err(e) = std::fs::write(&tmp, json).and_then(|_| std::fs::rename(&tmp, &env_file)) {
        eprintln!("plumb-test-env: writing {}: {e}", env_file.display());
        return ExitCode::FAILURE;
    }
    eprintln!(
        "plumb-test-env: control plane at {} (kubeconfig {})",
        info.server,
        info.kubeconfig.display()
    );
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("plumb-test-env: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
        }
    });
    let _ = std::fs::remove_file(&env_file);
    cp.stop();
    eprintln!("plumb-test-env: stopped");
    ExitCode::SUCCESS
}
