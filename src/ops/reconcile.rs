//! `plumb reconcile`, `plumb suspend` and `plumb resume`: request a reconcile (and set
//! `spec.suspend`) and wait for the controller to handle it.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use plumb_api::consts::annotation::{RECONCILE_FORCE_AT, RECONCILE_RESET_AT};

use super::common::{
    FluxKind, Target, client, get_obj, parse_timeout, ready_of, revision_of, runtime, source_of,
    suspended_of,
};

/// `plumb reconcile`.
#[derive(Debug, clap::Args)]
pub struct ReconcileArgs {
    /// The object to reconcile.
    #[command(subcommand)]
    pub target: Target,
    /// Namespace of the object.
    #[arg(short = 'n', long, default_value = "flux-system", global = true)]
    pub namespace: String,
    /// Reconcile the object's source first (Kustomization and HelmRelease).
    #[arg(long, global = true)]
    pub with_source: bool,
    /// HelmRelease: a one-off install or upgrade even when nothing changed
    /// (`reconcile.fluxcd.io/forceAt`).
    #[arg(long, global = true)]
    pub force: bool,
    /// HelmRelease: reset the failure counters, so retries start again
    /// (`reconcile.fluxcd.io/resetAt`).
    #[arg(long, global = true)]
    pub reset: bool,
    /// How long to wait for the outcome.
    #[arg(long, default_value = "5m", value_parser = parse_timeout, global = true)]
    pub timeout: Duration,
}

/// `plumb suspend` and `plumb resume`.
#[derive(Debug, clap::Args)]
pub struct SuspendArgs {
    /// The object.
    #[command(subcommand)]
    pub target: Target,
    /// Namespace of the object.
    #[arg(short = 'n', long, default_value = "flux-system", global = true)]
    pub namespace: String,
    /// How long `resume` waits for the outcome.
    #[arg(long, default_value = "5m", value_parser = parse_timeout, global = true)]
    pub timeout: Duration,
}

// ---------------------------------------------------------------------------------------------
// reconcile, suspend, resume

/// Runs `plumb reconcile`.
pub fn reconcile(args: ReconcileArgs) -> Result<ExitCode> {
    runtime()?.block_on(async {
        let client = client().await?;
        let (kind, name) = args.target.kind_name();
        let deadline = Instant::now() + args.timeout;
        if args.with_source {
            let obj = get_obj(&client, kind, &args.namespace, name).await?;
            match source_of(kind, &obj, &args.namespace) {
                Some((skind, sns, sname)) => {
                    if !reconcile_one(&client, skind, &sns, &sname, deadline).await? {
                        return Ok(ExitCode::FAILURE);
                    }
                }
                None => eprintln!(
                    "{} {}/{name} names no source plumb can reconcile; skipping --with-source",
                    kind.kind(),
                    args.namespace
                ),
            }
        }
        if (args.force || args.reset) && kind != FluxKind::HelmRelease {
            bail!("--force and --reset apply to HelmReleases only");
        }
        let extra: Vec<&str> = [
            (args.force, RECONCILE_FORCE_AT),
            (args.reset, RECONCILE_RESET_AT),
        ]
        .into_iter()
        .filter_map(|(on, key)| on.then_some(key))
        .collect();
        Ok(
            if reconcile_one_with(&client, kind, &args.namespace, name, deadline, &extra).await? {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            },
        )
    })
}

/// Requests a reconcile of one object and waits for the outcome; `Ok(false)` on failure.
pub(crate) async fn reconcile_one(
    client: &kube::Client,
    kind: FluxKind,
    ns: &str,
    name: &str,
    deadline: Instant,
) -> Result<bool> {
    reconcile_one_with(client, kind, ns, name, deadline, &[]).await
}

/// [`reconcile_one`], also setting the annotations `extra` to the request's stamp (Flux's
/// `forceAt`/`resetAt`).
async fn reconcile_one_with(
    client: &kube::Client,
    kind: FluxKind,
    ns: &str,
    name: &str,
    deadline: Instant,
    extra: &[&str],
) -> Result<bool> {
    let obj = get_obj(client, kind, ns, name).await?;
    if suspended_of(&obj) {
        bail!("{} {ns}/{name} is suspended; resume it first", kind.kind());
    }
    eprintln!("► annotating {} {ns}/{name}", kind.kind());
    let stamp = request_reconcile_with(client, kind, ns, name, extra).await?;
    wait_handled(client, kind, ns, name, &stamp, deadline).await
}

/// Sets `reconcile.fluxcd.io/requestedAt` to now; returns the value written.
pub async fn request_reconcile(
    client: &kube::Client,
    kind: FluxKind,
    ns: &str,
    name: &str,
) -> Result<String> {
    request_reconcile_with(client, kind, ns, name, &[]).await
}

/// [`request_reconcile`], with the annotations `extra` set to the same stamp.
async fn request_reconcile_with(
    client: &kube::Client,
    kind: FluxKind,
    ns: &str,
    name: &str,
    extra: &[&str],
) -> Result<String> {
    plumb_ui::actions::request_reconcile(client, kind, ns, name, extra)
        .await
        .with_context(|| format!("annotating {} {ns}/{name}", kind.kind()))
}

/// Waits until the controller handled `stamp` and decided Ready; prints the outcome.
pub(crate) async fn wait_handled(
    client: &kube::Client,
    kind: FluxKind,
    ns: &str,
    name: &str,
    stamp: &str,
    deadline: Instant,
) -> Result<bool> {
    let tty = std::io::stderr().is_terminal();
    let spinner = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
    let started = Instant::now();
    if !tty {
        eprintln!("◎ waiting for {} reconciliation", kind.kind());
    }
    let mut tick = 0usize;
    let outcome = loop {
        let obj = get_obj(client, kind, ns, name).await?;
        let handled = obj["status"]["lastHandledReconcileAt"].as_str() == Some(stamp);
        let observed =
            obj["status"]["observedGeneration"].as_i64() >= obj["metadata"]["generation"].as_i64();
        let (ready, message) = ready_of(&obj);
        if handled && observed && ready != "Unknown" {
            break Some((ready == "True", message, revision_of(kind, &obj)));
        }
        if Instant::now() >= deadline {
            break None;
        }
        if tty {
            eprint!(
                "\r{} waiting for {} reconciliation ({}s)",
                spinner[tick % spinner.len()],
                kind.kind(),
                started.elapsed().as_secs()
            );
            let _ = std::io::stderr().flush();
            tick += 1;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    if tty {
        eprint!("\r\x1b[2K");
    }
    match outcome {
        Some((true, message, revision)) => {
            eprintln!("✔ {} reconciliation completed", kind.kind());
            if revision.is_empty() {
                println!("✔ {message}");
            } else {
                println!("✔ {} {ns}/{name} ready at {revision}", kind.kind());
            }
            Ok(true)
        }
        Some((false, message, _)) => {
            println!("✗ {} {ns}/{name} failed: {message}", kind.kind());
            Ok(false)
        }
        None => {
            println!(
                "✗ {} {ns}/{name}: timed out waiting for the reconciliation",
                kind.kind()
            );
            Ok(false)
        }
    }
}

/// Runs `plumb suspend`.
pub fn suspend(args: SuspendArgs) -> Result<ExitCode> {
    runtime()?.block_on(async {
        let client = client().await?;
        let (kind, name) = args.target.kind_name();
        set_suspend(&client, kind, &args.namespace, name, true).await?;
        println!("✔ {} {}/{name} suspended", kind.kind(), args.namespace);
        Ok(ExitCode::SUCCESS)
    })
}

/// Runs `plumb resume`: clears `spec.suspend`, requests a reconcile and waits for it.
pub fn resume(args: SuspendArgs) -> Result<ExitCode> {
    runtime()?.block_on(async {
        let client = client().await?;
        let (kind, name) = args.target.kind_name();
        let ns = &args.namespace;
        set_suspend(&client, kind, ns, name, false).await?;
        eprintln!("► {} {ns}/{name} resumed", kind.kind());
        let stamp = request_reconcile(&client, kind, ns, name).await?;
        let deadline = Instant::now() + args.timeout;
        Ok(
            if wait_handled(&client, kind, ns, name, &stamp, deadline).await? {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            },
        )
    })
}

async fn set_suspend(
    client: &kube::Client,
    kind: FluxKind,
    ns: &str,
    name: &str,
    suspend: bool,
) -> Result<()> {
    plumb_ui::actions::set_suspend(client, kind, ns, name, suspend)
        .await
        .with_context(|| {
            let verb = if suspend { "suspending" } else { "resuming" };
            format!("{verb} {} {ns}/{name}", kind.kind())
        })
}
