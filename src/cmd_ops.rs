//! Operations CLI on Flux-compatible objects, like `flux get|reconcile|suspend|resume|tree|events`:
//! works through KUBECONFIG or the in-cluster config against plumb or Flux controllers alike.
//!
//! Objects are handled as JSON ([`DynamicObject`]) so one code path serves every kind; the
//! kinds and their status fields are Flux's GA API.

use std::collections::BTreeSet;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Event;
use kube::api::{Api, ApiResource, DynamicObject, ListParams, Patch, PatchParams};
use plumb_api::consts::annotation::{
    RECONCILE_FORCE_AT, RECONCILE_REQUESTED_AT, RECONCILE_RESET_AT,
};
use serde_json::{Value, json};

/// A Flux kind the operations commands know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FluxKind {
    /// `source.toolkit.fluxcd.io/v1` GitRepository.
    GitRepository,
    /// `source.toolkit.fluxcd.io/v1` HelmRepository.
    HelmRepository,
    /// `kustomize.toolkit.fluxcd.io/v1` Kustomization.
    Kustomization,
    /// `helm.toolkit.fluxcd.io/v2` HelmRelease.
    HelmRelease,
    /// `notification.toolkit.fluxcd.io/v1` Receiver.
    Receiver,
}

impl FluxKind {
    fn parts(self) -> (&'static str, &'static str, &'static str, &'static str) {
        match self {
            FluxKind::GitRepository => (
                "source.toolkit.fluxcd.io",
                "v1",
                "GitRepository",
                "gitrepositories",
            ),
            FluxKind::HelmRepository => (
                "source.toolkit.fluxcd.io",
                "v1",
                "HelmRepository",
                "helmrepositories",
            ),
            FluxKind::Kustomization => (
                "kustomize.toolkit.fluxcd.io",
                "v1",
                "Kustomization",
                "kustomizations",
            ),
            FluxKind::HelmRelease => (
                "helm.toolkit.fluxcd.io",
                "v2",
                "HelmRelease",
                "helmreleases",
            ),
            FluxKind::Receiver => (
                "notification.toolkit.fluxcd.io",
                "v1",
                "Receiver",
                "receivers",
            ),
        }
    }

    /// The kind name, e.g. `Kustomization`.
    pub fn kind(self) -> &'static str {
        self.parts().2
    }

    fn resource(self) -> ApiResource {
        let (group, version, kind, plural) = self.parts();
        ApiResource {
            group: group.into(),
            version: version.into(),
            api_version: format!("{group}/{version}"),
            kind: kind.into(),
            plural: plural.into(),
        }
    }

    fn from_kind(kind: &str) -> Option<FluxKind> {
        [
            FluxKind::GitRepository,
            FluxKind::HelmRepository,
            FluxKind::Kustomization,
            FluxKind::HelmRelease,
            FluxKind::Receiver,
        ]
        .into_iter()
        .find(|k| k.kind().eq_ignore_ascii_case(kind))
    }

    fn api(self, client: &kube::Client, ns: &str) -> Api<DynamicObject> {
        Api::namespaced_with(client.clone(), ns, &self.resource())
    }
}

/// What `plumb get` lists.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum GetWhat {
    /// GitRepositories and HelmRepositories.
    #[value(alias = "source")]
    Sources,
    /// Kustomizations.
    #[value(alias = "kustomization", alias = "kustomizations")]
    Ks,
    /// HelmReleases.
    #[value(alias = "helmrelease", alias = "helmreleases")]
    Hr,
    /// Receivers.
    #[value(alias = "receiver")]
    Receivers,
}

/// `plumb get`.
#[derive(Debug, clap::Args)]
pub struct GetArgs {
    /// What to list.
    pub what: GetWhat,
    /// Namespace of the objects.
    #[arg(short = 'n', long, default_value = "flux-system")]
    pub namespace: String,
    /// List objects in all namespaces.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
}

/// The object a reconcile, suspend or resume acts on.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Target {
    /// A Kustomization.
    #[command(alias = "kustomization")]
    Ks {
        /// Name of the Kustomization.
        name: String,
    },
    /// A source.
    #[command(subcommand)]
    Source(SourceTarget),
    /// A HelmRelease.
    #[command(alias = "helmrelease")]
    Hr {
        /// Name of the HelmRelease.
        name: String,
    },
    /// A Receiver.
    Receiver {
        /// Name of the Receiver.
        name: String,
    },
}

/// A source kind and name.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum SourceTarget {
    /// A GitRepository.
    Git {
        /// Name of the GitRepository.
        name: String,
    },
    /// A HelmRepository.
    Helm {
        /// Name of the HelmRepository.
        name: String,
    },
}

impl Target {
    fn kind_name(&self) -> (FluxKind, &str) {
        match self {
            Target::Ks { name } => (FluxKind::Kustomization, name),
            Target::Source(SourceTarget::Git { name }) => (FluxKind::GitRepository, name),
            Target::Source(SourceTarget::Helm { name }) => (FluxKind::HelmRepository, name),
            Target::Hr { name } => (FluxKind::HelmRelease, name),
            Target::Receiver { name } => (FluxKind::Receiver, name),
        }
    }
}

fn parse_timeout(s: &str) -> Result<Duration, String> {
    plumb_api::duration::parse(s).map_err(|e| e.to_string())
}

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

/// `plumb tree`.
#[derive(Debug, clap::Args)]
pub struct TreeArgs {
    /// What to show (only `ks`).
    #[arg(value_parser = ["ks", "kustomization"])]
    pub what: String,
    /// Name of the Kustomization.
    pub name: String,
    /// Namespace of the Kustomization.
    #[arg(short = 'n', long, default_value = "flux-system")]
    pub namespace: String,
}

/// `plumb events`.
#[derive(Debug, clap::Args)]
pub struct EventsArgs {
    /// Namespace of the events.
    #[arg(short = 'n', long, default_value = "flux-system")]
    pub namespace: String,
    /// Events of all namespaces.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// Only events about this object, `Kind/name` (e.g. `Kustomization/apps`).
    #[arg(long = "for")]
    pub for_object: Option<String>,
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")
}

async fn client() -> Result<kube::Client> {
    let cfg = kube::Config::infer()
        .await
        .context("loading Kubernetes configuration (KUBECONFIG or in-cluster)")?;
    kube::Client::try_from(cfg).context("creating the Kubernetes client")
}

// ---------------------------------------------------------------------------------------------
// Reading status

fn condition<'a>(obj: &'a Value, type_: &str) -> Option<&'a Value> {
    obj["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}

fn ready_of(obj: &Value) -> (String, String) {
    match condition(obj, "Ready") {
        Some(c) => (
            c["status"].as_str().unwrap_or("Unknown").to_string(),
            c["message"].as_str().unwrap_or("").to_string(),
        ),
        None => ("Unknown".into(), "waiting to be reconciled".into()),
    }
}

fn revision_of(kind: FluxKind, obj: &Value) -> String {
    let s = &obj["status"];
    let v = match kind {
        FluxKind::Kustomization => s["lastAppliedRevision"].as_str(),
        FluxKind::GitRepository | FluxKind::HelmRepository => s["artifact"]["revision"].as_str(),
        FluxKind::HelmRelease => s["history"][0]["chartVersion"]
            .as_str()
            .or_else(|| s["lastAttemptedRevision"].as_str()),
        FluxKind::Receiver => s["webhookPath"].as_str(),
    };
    v.unwrap_or("").to_string()
}

fn suspended_of(obj: &Value) -> bool {
    obj["spec"]["suspend"].as_bool().unwrap_or(false)
}

fn age_of(obj: &Value, now: chrono::DateTime<chrono::Utc>) -> String {
    obj["metadata"]["creationTimestamp"]
        .as_str()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| short_duration(now.signed_duration_since(t)))
        .unwrap_or_default()
}

/// `kubectl`-style short age: `45s`, `12m`, `3h`, `5d`.
fn short_duration(d: chrono::TimeDelta) -> String {
    let s = d.num_seconds().max(0);
    match s {
        0..=119 => format!("{s}s"),
        120..=7199 => format!("{}m", s / 60),
        7200..=172_799 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    }
}

/// Prints rows as aligned columns (the last column is not padded).
fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let n = cells.len();
        let mut out = String::new();
        for (i, c) in cells.into_iter().enumerate() {
            if i + 1 == n {
                out.push_str(c);
            } else {
                out.push_str(&format!("{c:<w$}   ", w = widths[i]));
            }
        }
        println!("{}", out.trim_end());
    };
    line(header.to_vec());
    for r in rows {
        line(r.iter().map(String::as_str).collect());
    }
}

// ---------------------------------------------------------------------------------------------
// get

/// Runs `plumb get`.
pub fn get(args: GetArgs) -> Result<ExitCode> {
    runtime()?.block_on(get_async(args))
}

async fn get_async(args: GetArgs) -> Result<ExitCode> {
    let client = client().await?;
    let kinds: &[FluxKind] = match args.what {
        GetWhat::Sources => &[FluxKind::GitRepository, FluxKind::HelmRepository],
        GetWhat::Ks => &[FluxKind::Kustomization],
        GetWhat::Hr => &[FluxKind::HelmRelease],
        GetWhat::Receivers => &[FluxKind::Receiver],
    };
    let prefix_kind = kinds.len() > 1;
    let now = chrono::Utc::now();
    let mut rows = Vec::new();
    for &kind in kinds {
        let api: Api<DynamicObject> = if args.all_namespaces {
            Api::all_with(client.clone(), &kind.resource())
        } else {
            kind.api(&client, &args.namespace)
        };
        let list = match api.list(&ListParams::default()).await {
            Ok(l) => l,
            // A kind whose CRD is not installed lists as empty.
            Err(kube::Error::Api(e)) if e.code == 404 => continue,
            Err(e) => return Err(anyhow!(e).context(format!("listing {}s", kind.kind()))),
        };
        let mut objs: Vec<Value> = list
            .items
            .into_iter()
            .filter_map(|o| serde_json::to_value(o).ok())
            .collect();
        objs.sort_by(|a, b| {
            let key = |v: &Value| {
                (
                    v["metadata"]["namespace"]
                        .as_str()
                        .unwrap_or("")
                        .to_string(),
                    v["metadata"]["name"].as_str().unwrap_or("").to_string(),
                )
            };
            key(a).cmp(&key(b))
        });
        for o in objs {
            let name = o["metadata"]["name"].as_str().unwrap_or("").to_string();
            let name = if prefix_kind {
                format!("{}/{name}", kind.kind().to_lowercase())
            } else {
                name
            };
            let (ready, message) = ready_of(&o);
            let mut row = Vec::new();
            if args.all_namespaces {
                row.push(
                    o["metadata"]["namespace"]
                        .as_str()
                        .unwrap_or("")
                        .to_string(),
                );
            }
            row.extend([
                name,
                ready,
                revision_of(kind, &o),
                if suspended_of(&o) { "True" } else { "False" }.to_string(),
                age_of(&o, now),
                message.replace('\n', " "),
            ]);
            rows.push(row);
        }
    }
    if rows.is_empty() {
        let scope = if args.all_namespaces {
            "any namespace".to_string()
        } else {
            format!("namespace {}", args.namespace)
        };
        eprintln!("no objects found in {scope}");
        return Ok(ExitCode::SUCCESS);
    }
    let mut header = vec![];
    if args.all_namespaces {
        header.push("NAMESPACE");
    }
    header.extend(["NAME", "READY", "REVISION", "SUSPENDED", "AGE", "MESSAGE"]);
    print_table(&header, &rows);
    Ok(ExitCode::SUCCESS)
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

/// The source an object reads from: (kind, namespace, name).
fn source_of(kind: FluxKind, obj: &Value, ns: &str) -> Option<(FluxKind, String, String)> {
    let r = match kind {
        FluxKind::Kustomization => &obj["spec"]["sourceRef"],
        FluxKind::HelmRelease => {
            let chart_src = &obj["spec"]["chart"]["spec"]["sourceRef"];
            if chart_src.is_object() {
                chart_src
            } else {
                &obj["spec"]["chartRef"]
            }
        }
        _ => return None,
    };
    let skind = FluxKind::from_kind(r["kind"].as_str()?)?;
    let sns = r["namespace"].as_str().unwrap_or(ns).to_string();
    Some((skind, sns, r["name"].as_str()?.to_string()))
}

async fn get_obj(client: &kube::Client, kind: FluxKind, ns: &str, name: &str) -> Result<Value> {
    let o = kind
        .api(client, ns)
        .get(name)
        .await
        .with_context(|| format!("getting {} {ns}/{name}", kind.kind()))?;
    Ok(serde_json::to_value(o)?)
}

/// Requests a reconcile of one object and waits for the outcome; `Ok(false)` on failure.
async fn reconcile_one(
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
    let stamp = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    let mut annotations = serde_json::Map::new();
    annotations.insert(RECONCILE_REQUESTED_AT.into(), json!(stamp));
    for key in extra {
        annotations.insert((*key).into(), json!(stamp));
    }
    let patch = json!({"metadata": {"annotations": annotations}});
    kind.api(client, ns)
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .with_context(|| format!("annotating {} {ns}/{name}", kind.kind()))?;
    Ok(stamp)
}

/// Waits until the controller handled `stamp` and decided Ready; prints the outcome.
async fn wait_handled(
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
    let patch = json!({"spec": {"suspend": suspend}});
    kind.api(client, ns)
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .with_context(|| {
            let verb = if suspend { "suspending" } else { "resuming" };
            format!("{verb} {} {ns}/{name}", kind.kind())
        })?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// tree

/// Runs `plumb tree ks NAME`.
pub fn tree(args: TreeArgs) -> Result<ExitCode> {
    runtime()?.block_on(async {
        let client = client().await?;
        let mut out = format!("Kustomization/{}/{}\n", args.namespace, args.name);
        let mut seen = BTreeSet::new();
        tree_children(
            &client,
            &args.namespace,
            &args.name,
            "",
            &mut seen,
            &mut out,
        )
        .await?;
        print!("{out}");
        Ok(ExitCode::SUCCESS)
    })
}

/// Appends the inventory of Kustomization `ns/name` under `prefix`, expanding nested
/// Kustomizations (each at most once, so a cycle cannot loop).
fn tree_children<'a>(
    client: &'a kube::Client,
    ns: &'a str,
    name: &'a str,
    prefix: &'a str,
    seen: &'a mut BTreeSet<(String, String)>,
    out: &'a mut String,
) -> futures::future::BoxFuture<'a, Result<()>> {
    Box::pin(async move {
        seen.insert((ns.to_string(), name.to_string()));
        let obj = get_obj(client, FluxKind::Kustomization, ns, name).await?;
        let entries = obj["status"]["inventory"]["entries"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let mut ids = Vec::new();
        for e in &entries {
            let id = e["id"].as_str().unwrap_or("");
            match id.parse::<plumb_api::inventory::ObjMetadata>() {
                Ok(m) => ids.push(m),
                Err(err) => {
                    eprintln!("skipping inventory entry of Kustomization {ns}/{name}: {err}")
                }
            }
        }
        let n = ids.len();
        for (i, m) in ids.into_iter().enumerate() {
            let last = i + 1 == n;
            let label = if m.namespace.is_empty() {
                format!("{}/{}", m.kind, m.name)
            } else {
                format!("{}/{}/{}", m.kind, m.namespace, m.name)
            };
            out.push_str(&format!(
                "{prefix}{}{label}\n",
                if last { "└── " } else { "├── " }
            ));
            let nested = m.kind == "Kustomization" && m.group == "kustomize.toolkit.fluxcd.io";
            if nested && !seen.contains(&(m.namespace.clone(), m.name.clone())) {
                let child_prefix = format!("{prefix}{}", if last { "    " } else { "│   " });
                tree_children(client, &m.namespace, &m.name, &child_prefix, seen, out).await?;
            }
        }
        Ok(())
    })
}

// ---------------------------------------------------------------------------------------------
// events

const FLUX_GROUP_SUFFIX: &str = ".toolkit.fluxcd.io";

/// Runs `plumb events`.
pub fn events(args: EventsArgs) -> Result<ExitCode> {
    runtime()?.block_on(async {
        let client = client().await?;
        let api: Api<Event> = if args.all_namespaces {
            Api::all(client)
        } else {
            Api::namespaced(client, &args.namespace)
        };
        let filter = match &args.for_object {
            Some(f) => {
                let (k, n) = f
                    .split_once('/')
                    .ok_or_else(|| anyhow!("--for {f:?}: expected Kind/name"))?;
                Some((k.to_string(), n.to_string()))
            }
            None => None,
        };
        let list = api
            .list(&ListParams::default())
            .await
            .context("listing events")?;
        let now = chrono::Utc::now();
        let mut evs: Vec<(chrono::DateTime<chrono::Utc>, Vec<String>)> = Vec::new();
        for e in list.items {
            let io = &e.involved_object;
            let ours = io.api_version.as_deref().is_some_and(|v| {
                v.split('/')
                    .next()
                    .unwrap_or("")
                    .ends_with(FLUX_GROUP_SUFFIX)
            });
            if !ours {
                continue;
            }
            let kind = io.kind.clone().unwrap_or_default();
            let name = io.name.clone().unwrap_or_default();
            if let Some((fk, fname)) = &filter
                && (!fk.eq_ignore_ascii_case(&kind) || fname != &name)
            {
                continue;
            }
            let when = e
                .last_timestamp
                .as_ref()
                .map(|t| t.0)
                .or_else(|| {
                    e.series
                        .as_ref()
                        .and_then(|s| s.last_observed_time.as_ref())
                        .map(|t| t.0)
                })
                .or_else(|| e.event_time.as_ref().map(|t| t.0))
                .or_else(|| e.metadata.creation_timestamp.as_ref().map(|t| t.0));
            let when = when.map(|t| {
                chrono::DateTime::<chrono::Utc>::from_timestamp(t.as_second(), 0).unwrap_or(now)
            });
            let when = when.unwrap_or(now);
            let mut row = Vec::new();
            if args.all_namespaces {
                row.push(e.metadata.namespace.clone().unwrap_or_default());
            }
            row.extend([
                short_duration(now.signed_duration_since(when)),
                e.type_.clone().unwrap_or_default(),
                e.reason.clone().unwrap_or_default(),
                format!("{kind}/{name}"),
                e.message.clone().unwrap_or_default().replace('\n', " "),
            ]);
            evs.push((when, row));
        }
        evs.sort_by_key(|(t, _)| *t);
        if evs.is_empty() {
            eprintln!("no events found");
            return Ok(ExitCode::SUCCESS);
        }
        let mut header = vec![];
        if args.all_namespaces {
            header.push("NAMESPACE");
        }
        header.extend(["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]);
        let rows: Vec<Vec<String>> = evs.into_iter().map(|(_, r)| r).collect();
        print_table(&header, &rows);
        Ok(ExitCode::SUCCESS)
    })
}

// ---------------------------------------------------------------------------------------------
// version

/// Label on plumb's Deployment (set by its Helm chart) that names the component.
pub const NAME_LABEL_SELECTOR: &str = "app.kubernetes.io/name=plumb";

/// Runs `plumb version`: the client's version and, when a cluster is reachable within a few
/// seconds, that of every plumb Deployment (label `app.kubernetes.io/name=plumb`; version from
/// `app.kubernetes.io/version`, else the image tag).
pub fn version() -> Result<ExitCode> {
    println!("client: plumb {}", env!("CARGO_PKG_VERSION"));
    let rt = runtime()?;
    let found = rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(5), controller_versions()).await
    });
    match found {
        Ok(Ok(v)) if v.is_empty() => println!("controller: no plumb Deployment found"),
        Ok(Ok(v)) => {
            for line in v {
                println!("controller: {line}");
            }
        }
        Ok(Err(e)) => println!("controller: unknown ({e:#})"),
        Err(_) => println!("controller: unknown (cluster not reachable within 5s)"),
    }
    Ok(ExitCode::SUCCESS)
}

async fn controller_versions() -> Result<Vec<String>> {
    let client = client().await?;
    let api: Api<Deployment> = Api::all(client);
    let list = api
        .list(&ListParams::default().labels(NAME_LABEL_SELECTOR))
        .await
        .context("listing plumb Deployments")?;
    Ok(list.items.iter().map(deployment_version).collect())
}

fn deployment_version(d: &Deployment) -> String {
    let ns = d.metadata.namespace.as_deref().unwrap_or("");
    let name = d.metadata.name.as_deref().unwrap_or("");
    let image = d
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|p| p.containers.first())
        .and_then(|c| c.image.clone())
        .unwrap_or_default();
    let label = d
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get("app.kubernetes.io/version"))
        .cloned();
    let version = label.unwrap_or_else(|| image_tag(&image).to_string());
    format!("plumb {version} (deployment {ns}/{name}, image {image})")
}

/// The tag of an image reference (`repo:tag`, `repo:tag@sha256:...`), or `latest`.
fn image_tag(image: &str) -> &str {
    let no_digest = image.split('@').next().unwrap_or(image);
    let last = no_digest.rsplit('/').next().unwrap_or(no_digest);
    last.split_once(':').map(|(_, t)| t).unwrap_or("latest")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_tags() {
        assert_eq!(image_tag("ghcr.io/x/plumb:0.1.0"), "0.1.0");
        assert_eq!(image_tag("localhost:5000/plumb:v2@sha256:ab"), "v2");
        assert_eq!(image_tag("localhost:5000/plumb"), "latest");
    }

    #[test]
    fn ages() {
        assert_eq!(short_duration(chrono::TimeDelta::seconds(5)), "5s");
        assert_eq!(short_duration(chrono::TimeDelta::seconds(600)), "10m");
        assert_eq!(short_duration(chrono::TimeDelta::seconds(3 * 3600)), "3h");
        assert_eq!(short_duration(chrono::TimeDelta::seconds(3 * 86400)), "3d");
    }

    #[test]
    fn sources() {
        let ks = json!({"spec": {"sourceRef": {"kind": "GitRepository", "name": "fleet"}}});
        assert_eq!(
            source_of(FluxKind::Kustomization, &ks, "ns"),
            Some((FluxKind::GitRepository, "ns".into(), "fleet".into()))
        );
        let hr = json!({"spec": {"chart": {"spec": {"sourceRef": {"kind": "HelmRepository", "name": "r", "namespace": "o"}}}}});
        assert_eq!(
            source_of(FluxKind::HelmRelease, &hr, "ns"),
            Some((FluxKind::HelmRepository, "o".into(), "r".into()))
        );
    }
}
