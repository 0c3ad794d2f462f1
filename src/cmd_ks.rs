//! `plumb build ks|hr NAME` and `plumb diff ks|hr NAME`: what a Kustomization or a
//! HelmRelease would apply, and how that differs from the cluster.
//!
//! A HelmRelease renders through its reconciler's `plan` (chart, values, post-renderers,
//! labels), is dry-run as `helm-controller` against the cluster the release targets, and
//! lists the objects of the deployed release that an upgrade would delete.
//!
//! Both render through the reconciler's own path (`plumb_controller::kustomization::
//! render_objects`): the source's artifact (fetched and digest-checked) or `--path DIR`,
//! the spec-level overlay, postBuild substitution and ownership labels. `diff` asks the API
//! server for a server-side dry-run apply of every object (plumb-ssa), prints a unified
//! diff per object with Secret values masked, lists what prune would delete, and exits 1
//! when anything would change (as `flux diff` does), 2 on an error.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context as _, Result, anyhow};
use kube::api::Api;
use plumb_api::consts::field_manager::KUSTOMIZE_CONTROLLER;
use plumb_api::{HelmRelease, Kustomization};
use plumb_controller::kustomization::{
    RenderSource, apply_item, render_objects_with_keys, source_artifact,
};
use plumb_controller::{Config, Context};
use plumb_ssa::{Applier, ObjectRef, SsaMode};
use serde_json::Value;

/// Which object to build or diff.
#[derive(Debug, clap::Subcommand)]
pub enum Target {
    /// A Kustomization (`ks` for short).
    #[command(name = "kustomization", visible_alias = "ks")]
    Kustomization(KsArgs),
    /// A HelmRelease (`hr` for short): the objects its next install or upgrade applies.
    #[command(name = "helmrelease", visible_alias = "hr")]
    HelmRelease(HrArgs),
}

/// Arguments naming a HelmRelease.
#[derive(Debug, clap::Args)]
pub struct HrArgs {
    /// Name of the HelmRelease.
    pub name: String,
    /// Its namespace.
    #[arg(short, long, default_value = "flux-system")]
    pub namespace: String,
}

/// Arguments naming a Kustomization.
#[derive(Debug, clap::Args)]
pub struct KsArgs {
    /// Name of the Kustomization.
    pub name: String,
    /// Its namespace.
    #[arg(short, long, default_value = "flux-system")]
    pub namespace: String,
    /// Build this local directory instead of the source's artifact (`spec.path` is not
    /// applied; the overlay and substitution are).
    #[arg(long)]
    pub path: Option<PathBuf>,
    /// Fail on postBuild variables without a value (as `plumb run --strict-substitution`).
    #[arg(long)]
    pub strict_substitution: bool,
    /// A SOPS key file (age identities or an armored OpenPGP secret key) to decrypt with,
    /// besides the keys of `spec.decryption.secretRef`; repeatable. Decrypted Secret values
    /// are never printed.
    #[arg(long = "decryption-key", value_name = "FILE")]
    pub decryption_keys: Vec<PathBuf>,
}

/// The key ring of `--decryption-key` files.
fn cli_keys(files: &[PathBuf]) -> Result<plumb_sops::KeyRing> {
    let mut ring = plumb_sops::KeyRing::new();
    for f in files {
        let text = std::fs::read_to_string(f)
            .with_context(|| format!("reading decryption key {}", f.display()))?;
        let name = f.display().to_string();
        if text.contains("BEGIN PGP PRIVATE KEY BLOCK") {
            ring.add_pgp_keys(&name, &text)?;
        } else {
            ring.add_age_identities(&name, &text)?;
        }
    }
    Ok(ring)
}

/// Masks every Secret's `data` and `stringData` values: decrypted values are never printed.
fn mask_secrets(objects: &mut [Value]) {
    for o in objects {
        if o.get("kind").and_then(Value::as_str) != Some("Secret") {
            continue;
        }
        for field in ["data", "stringData"] {
            if let Some(m) = o.get_mut(field).and_then(Value::as_object_mut) {
                for v in m.values_mut() {
                    *v = Value::String("***".into());
                }
            }
        }
    }
}

/// Arguments of `plumb diff`.
#[derive(Debug, clap::Args)]
pub struct DiffArgs {
    /// What to diff.
    #[command(subcommand)]
    pub target: Target,
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// `plumb build ks`: prints the rendered objects as a YAML stream.
pub fn build(target: Target) -> Result<ExitCode> {
    runtime()?.block_on(async {
        let cfg = load_config().await?;
        let objects = match target {
            Target::Kustomization(args) => {
                let (_, ks, mut objects) = render(cfg, &args).await?;
                if ks.spec.decryption.is_some() || !args.decryption_keys.is_empty() {
                    mask_secrets(&mut objects);
                }
                objects
            }
            Target::HelmRelease(args) => plan_hr(cfg, &args).await?.objects,
        };
        let text = plumb_kustomize::to_yaml_stream(&objects);
        let mut out = std::io::stdout().lock();
        out.write_all(text.as_bytes()).context("writing output")?;
        out.flush().context("writing output")?;
        Ok(ExitCode::SUCCESS)
    })
}

/// `plumb diff ks`: exit 0 when nothing would change, 1 when something would, 2 on an
/// error (as diff(1) does), so that scripts can tell "changes" from "failed".
pub fn diff(args: DiffArgs) -> Result<ExitCode> {
    match diff_inner(args) {
        Ok(code) => Ok(code),
        Err(err) => {
            eprintln!("error: {err:#}");
            Ok(ExitCode::from(2))
        }
    }
}

fn diff_inner(args: DiffArgs) -> Result<ExitCode> {
    runtime()?.block_on(async {
        let cfg = load_config().await?;
        let (text, note) = diff_text(cfg, &args.target).await?;
        let mut stdout = std::io::stdout().lock();
        stdout
            .write_all(text.as_bytes())
            .context("writing output")?;
        stdout.flush().context("writing output")?;
        if let Some(note) = note {
            eprintln!("{note}");
        }
        Ok(if text.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        })
    })
}

/// What `plumb diff` prints for `target` (empty when nothing would change), and for a
/// HelmRelease a line about the release; shared with `plumb ui`'s diff view.
pub(crate) async fn diff_text(
    cfg: kube::Config,
    target: &Target,
) -> Result<(String, Option<String>)> {
    let args = match target {
        Target::Kustomization(args) => args,
        Target::HelmRelease(args) => return diff_hr(cfg, args).await,
    };
    let (ctx, ks, objects) = render(cfg, args).await?;
    let applier = Applier::new(ctx.client.clone(), KUSTOMIZE_CONTROLLER, 8);
    let mut out = String::new();
    let mut rendered = BTreeSet::new();
    for o in objects {
        let item = apply_item(o, ks.spec.force);
        let r = ObjectRef::from_object(&item.object)?;
        rendered.insert(r.key());
        if item.mode == SsaMode::Ignore {
            continue;
        }
        describe_apply(&applier, &item, &r, &mut out).await?;
    }
    if ks.spec.prune {
        let inventory = ks.status.as_ref().and_then(|s| s.inventory.as_ref());
        for e in inventory.map(|i| i.entries.as_slice()).unwrap_or_default() {
            let Ok(m) = e.obj_metadata() else { continue };
            let key = (m.group.clone(), m.kind.clone(), m.namespace.clone(), m.name);
            if !rendered.contains(&key) {
                let r = ObjectRef {
                    group: key.0,
                    kind: key.1,
                    namespace: key.2,
                    name: key.3,
                    version: e.v.clone(),
                };
                out.push_str(&format!("► {r} deleted\n"));
            }
        }
    }
    Ok((out, None))
}

/// KUBECONFIG or the in-cluster config.
async fn load_config() -> Result<kube::Config> {
    kube::Config::infer()
        .await
        .context("loading Kubernetes configuration (KUBECONFIG or in-cluster)")
}

/// A client and a controller context from KUBECONFIG (or in-cluster), with a scratch
/// storage directory that lives as long as the returned guard.
async fn cli_context(cfg: kube::Config, strict: bool) -> Result<(Arc<Context>, tempfile::TempDir)> {
    let client = kube::Client::try_from(cfg.clone()).context("creating the Kubernetes client")?;
    let scratch = tempfile::tempdir().context("creating a scratch directory")?;
    let ctx = Context::new(
        client,
        cfg,
        Config {
            storage_path: scratch.path().to_path_buf(),
            strict_substitution: strict,
            ..Default::default()
        },
    );
    Ok((ctx, scratch))
}

/// Reads the HelmRelease and plans its next release as the controller would.
async fn plan_hr(cfg: kube::Config, args: &HrArgs) -> Result<plumb_controller::helmrelease::Plan> {
    let (ctx, _scratch) = cli_context(cfg, false).await?;
    let hr = Api::<HelmRelease>::namespaced(ctx.client.clone(), &args.namespace)
        .get(&args.name)
        .await
        .with_context(|| format!("getting HelmRelease {}/{}", args.namespace, args.name))?;
    plumb_controller::helmrelease::plan(&hr, &ctx)
        .await
        .map_err(|f| {
            anyhow!(
                "building HelmRelease {}/{}: {}",
                args.namespace,
                args.name,
                f.message
            )
        })
}

/// Appends what applying `item` would do, from a server-side dry-run: created, or
/// the diff when it drifted; nothing when it is unchanged.
async fn describe_apply(
    applier: &Applier,
    item: &plumb_ssa::ApplyItem,
    r: &ObjectRef,
    out: &mut String,
) -> Result<()> {
    match applier.dry_run(item).await {
        Ok((None, after)) => {
            out.push_str(&format!("► {r} created\n"));
            out.push_str(&unified(r, None, &after));
        }
        Ok((Some(_), _)) if item.mode == SsaMode::IfNotPresent => {}
        Ok((Some(live), after)) => {
            let text = unified(r, Some(&live), &after);
            if !text.is_empty() {
                out.push_str(&format!("► {r} drifted\n"));
                out.push_str(&text);
            }
        }
        // A custom resource whose CRD comes in the same revision.
        Err(plumb_ssa::Error::UnknownKind { .. }) => {
            out.push_str(&format!("► {r} created\n"));
        }
        Err(e) => return Err(anyhow!(e)),
    }
    Ok(())
}

/// `plumb diff hr`: a server-side dry-run of every object of the next release, and the
/// objects of the deployed release it would delete.
async fn diff_hr(cfg: kube::Config, args: &HrArgs) -> Result<(String, Option<String>)> {
    let plan = plan_hr(cfg, args).await?;
    let mut out = String::new();
    for o in plan.objects {
        let item = plumb_ssa::ApplyItem::new(o);
        let r = ObjectRef::from_object(&item.object)?;
        describe_apply(&plan.applier, &item, &r, &mut out).await?;
    }
    for r in &plan.removed {
        out.push_str(&format!("► {r} deleted\n"));
    }
    let note = format!(
        "release {} with chart {} ({})",
        plan.release,
        plan.chart,
        match plan.deployed {
            Some(v) => format!("deployed revision {v}"),
            None => "not installed".into(),
        }
    );
    Ok((out, Some(note)))
}

/// Reads the Kustomization and renders it exactly as the controller would.
async fn render(
    cfg: kube::Config,
    args: &KsArgs,
) -> Result<(Arc<Context>, Kustomization, Vec<Value>)> {
    let keys = cli_keys(&args.decryption_keys)?;
    let (ctx, _scratch) = cli_context(cfg, args.strict_substitution).await?;
    let ks = Api::<Kustomization>::namespaced(ctx.client.clone(), &args.namespace)
        .get(&args.name)
        .await
        .with_context(|| format!("getting Kustomization {}/{}", args.namespace, args.name))?;
    let objects = match &args.path {
        Some(dir) => {
            render_objects_with_keys(&ks, &ctx, RenderSource::Local(dir), Some(&keys)).await
        }
        None => {
            let artifact = source_artifact(&ks, &ctx)
                .await
                .map_err(|f| anyhow!(f.message))?;
            render_objects_with_keys(&ks, &ctx, RenderSource::Artifact(&artifact), Some(&keys))
                .await
        }
    }
    .map_err(|f| {
        anyhow!(
            "building Kustomization {}/{}: {}",
            args.namespace,
            args.name,
            f.message
        )
    })?;
    Ok((ctx, ks, objects))
}

/// A unified diff of `before` -> `after` (server fields dropped, Secret values masked);
/// empty when they are equal.
fn unified(r: &ObjectRef, before: Option<&Value>, after: &Value) -> String {
    let mut after = clean(after.clone());
    let mut before = before.map(|b| clean(b.clone()));
    if r.group.is_empty() && r.kind == "Secret" {
        mask_secret(before.as_mut(), &mut after);
    }
    let old = before
        .as_ref()
        .map(plumb_kustomize::to_yaml)
        .unwrap_or_default();
    let new = plumb_kustomize::to_yaml(&after);
    if old == new {
        return String::new();
    }
    similar::TextDiff::from_lines(&old, &new)
        .unified_diff()
        .context_radius(3)
        .header(&format!("{r} (cluster)"), &format!("{r} (plumb)"))
        .to_string()
}

/// Keys in sorted order at every level, so that the server's field order does not
/// show as a change.
fn sorted(v: Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut entries: Vec<(String, Value)> = m.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        Value::Array(a) => Value::Array(a.into_iter().map(sorted).collect()),
        other => other,
    }
}

/// Drops what the server maintains (and status): only the desired state is compared.
fn clean(v: Value) -> Value {
    sorted(plumb_controller::helmrelease::drift::comparable(&v))
}

/// Replaces Secret values with markers that say only whether they changed.
fn mask_secret(before: Option<&mut Value>, after: &mut Value) {
    let old: serde_json::Map<String, Value> = before
        .as_ref()
        .and_then(|b| b.get("data"))
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    for field in ["data", "stringData"] {
        if let Some(m) = after.get_mut(field).and_then(Value::as_object_mut) {
            for (k, v) in m.iter_mut() {
                let same = old.get(k) == Some(v);
                *v = Value::String(if same { "***" } else { "*** (after)" }.into());
            }
        }
    }
    let new = after
        .get("data")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    mask_copies(before.as_deref(), after, "*** (after)");
    if let Some(b) = before {
        mask_copies(Some(&*after), b, "*** (before)");
        for field in ["data", "stringData"] {
            if let Some(m) = b.get_mut(field).and_then(Value::as_object_mut) {
                for (k, v) in m.iter_mut() {
                    let same = new.get(k).is_some_and(|n| n == "***");
                    *v = Value::String(if same { "***" } else { "*** (before)" }.into());
                }
            }
        }
    }
}

/// Annotations that carry a copy of the whole object, data included (kubectl's client-side
/// apply record): never printed, only whether they differ from the other side.
const DATA_COPY_ANNOTATIONS: &[&str] = &["kubectl.kubernetes.io/last-applied-configuration"];

/// Masks `DATA_COPY_ANNOTATIONS` on `obj`; with `other` (the other side, raw or already
/// masked), the marker says whether they changed.
fn mask_copies(other: Option<&Value>, obj: &mut Value, changed: &str) {
    let Some(ann) = obj
        .pointer_mut("/metadata/annotations")
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    for key in DATA_COPY_ANNOTATIONS {
        if let Some(v) = ann.get_mut(*key) {
            let theirs = other
                .and_then(|o| o.pointer("/metadata/annotations"))
                .and_then(|a| a.get(*key));
            let same = other.is_none() || theirs == Some(v) || theirs.is_some_and(|t| t == "***");
            *v = Value::String(if same { "***" } else { changed }.into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn secret_ref() -> ObjectRef {
        ObjectRef {
            group: String::new(),
            kind: "Secret".into(),
            namespace: "ns".into(),
            name: "s".into(),
            version: "v1".into(),
        }
    }

    #[test]
    fn secret_values_never_appear() {
        let r = secret_ref();
        let live = json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "s", "resourceVersion": "1"},
            "data": {"same": "c2FtZQ==", "changed": "b2xk"}});
        let want = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
            "data": {"same": "c2FtZQ==", "changed": "bmV3"}});
        let d = unified(&r, Some(&live), &want);
        assert!(
            !d.contains("c2FtZQ") && !d.contains("b2xk") && !d.contains("bmV3"),
            "{d}"
        );
        assert!(
            d.contains("-  changed: '*** (before)'") || d.contains("-  changed: \"*** (before)\""),
            "{d}"
        );
        assert!(d.contains("*** (after)"), "{d}");
        assert_eq!(unified(&r, Some(&live), &live), "");
    }

    #[test]
    fn secret_last_applied_configuration_never_appears() {
        let r = secret_ref();
        let ann = |v: &str| json!({"kubectl.kubernetes.io/last-applied-configuration": v});
        let live = json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "s", "annotations": ann("{\"stringData\":{\"pw\":\"hunter2\"}}")},
            "data": {"pw": "aHVudGVyMg=="}});
        let want = json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "s", "annotations": ann("{\"stringData\":{\"pw\":\"swordfish\"}}")},
            "data": {"pw": "c3dvcmRmaXNo"}});
        let d = unified(&r, Some(&live), &want);
        assert!(!d.contains("hunter2") && !d.contains("swordfish"), "{d}");
        assert!(d.contains("last-applied-configuration"), "{d}");
        let created = unified(&r, None, &want);
        assert!(!created.contains("swordfish"), "{created}");
        assert_eq!(unified(&r, Some(&live), &live), "");
    }
}
