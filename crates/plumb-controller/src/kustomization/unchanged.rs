//! Beyond Flux: the skip of unchanged Kustomizations. In a monorepo every commit gives
//! every Kustomization on the repository a new revision; Flux re-renders and re-applies
//! them all. plumb records what each successful build read (files, directory listings,
//! existence checks; see [`plumb_kustomize::Reads`]) with a hash of it. When a new revision
//! arrives and, since that full reconcile, the hash of the same paths in the new artifact,
//! the generation, the reconcile-request annotations, the resolved `postBuild` variables
//! (including `substituteFrom` data) and the decryption Secret are all unchanged, the new
//! revision is recorded in the status without rendering, applying, dry-running or pruning.
//!
//! A source that reports its artifact again (a status update with the same revision) is
//! checked the same way. Never skipped: a reconcile requested (`requestedAt`/`forceAt`/
//! `resetAt` changed) or queued by drift of an inventory object (drift stays corrected at
//! once); the last full apply older than `spec.interval` (the interval still re-applies);
//! a previous outcome that was not a success; a build that looked outside its source
//! (kustomize's remote bases and `helmCharts` fail the build, so a recorded build read
//! nothing remote); a Kustomization applying to a remote cluster (`spec.kubeConfig`: its
//! Secret may point elsewhere now); the annotation `plumb.dev/skip-unchanged: disabled`
//! (Flux's behaviour).
//!
//! The records live in memory (a [`Context::memo`]): after a restart every Kustomization
//! renders and applies once before it can be skipped. The new artifact is extracted once per
//! digest and shared by every Kustomization checking it, so a check costs hashing the few
//! files its build read.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kube::{Resource, ResourceExt};
use plumb_api::consts::{annotation, reason};
use plumb_api::{Kustomization, KustomizationStatus};
use plumb_kustomize::Reads;
use sha2::{Digest, Sha256};
use tokio::sync::OnceCell;

use crate::context::Context;
use crate::outcome::Failure;
use crate::reconciler::{Done, Kind};

/// Extracted artifacts kept for checks (a few sources updating at once).
const KEPT_TREES: usize = 8;

const REQUEST_ANNOTATIONS: [&str; 3] = [
    annotation::RECONCILE_REQUESTED_AT,
    annotation::RECONCILE_FORCE_AT,
    annotation::RECONCILE_RESET_AT,
];

type Key = (String, String);

/// An artifact extracted once for every check of its digest.
type Tree = Arc<OnceCell<Arc<tempfile::TempDir>>>;

/// How often a Kustomization was fully reconciled (rendered) and skipped as unchanged.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BuildCounts {
    /// Reconciles that went past the check to render (and, if that succeeded, apply).
    pub rendered: u64,
    /// New revisions recorded without rendering.
    pub skipped: u64,
}

/// The memo: one record per Kustomization whose last full reconcile succeeded.
#[derive(Default)]
pub(crate) struct Unchanged {
    records: Mutex<HashMap<Key, Record>>,
    drifted: Mutex<HashSet<Key>>,
    counts: Mutex<HashMap<Key, BuildCounts>>,
    trees: Mutex<Vec<(String, Tree)>>,
}

/// The record of the last reconcile, taken out for the current one: it goes back only when
/// this one succeeds, so any failure (dependencies, source, render, apply, health) leaves
/// none and the next reconcile is full.
#[derive(Clone)]
pub(super) struct Record {
    uid: Option<String>,
    generation: Option<i64>,
    requests: Vec<Option<String>>,
    revision: String,
    reads: Arc<Reads>,
    content: [u8; 32],
    inputs: [u8; 32],
    applied_at: Instant,
}

/// What a full reconcile's build read and the hash of it, kept once the reconcile succeeds.
#[derive(Debug)]
pub(super) struct Seen {
    pub reads: Reads,
    pub content: [u8; 32],
}

/// A full reconcile about to start (its record, if any, is dropped until it succeeds).
pub(super) struct Full {
    started: Instant,
    inputs: Option<[u8; 32]>,
}

fn key(obj: &Kustomization) -> Key {
    (obj.namespace().unwrap_or_default(), obj.name_any())
}

fn enabled(obj: &Kustomization) -> bool {
    obj.annotations()
        .get(annotation::SKIP_UNCHANGED)
        .map(String::as_str)
        != Some(annotation::DISABLED)
}

fn requests(obj: &Kustomization) -> Vec<Option<String>> {
    REQUEST_ANNOTATIONS
        .iter()
        .map(|a| obj.annotations().get(*a).cloned())
        .collect()
}

/// The render and skip counts of Kustomization `ns/name` in this process.
pub fn build_counts(ctx: &Context, ns: &str, name: &str) -> BuildCounts {
    let memo = ctx.memo::<Unchanged>();
    let counts = memo.counts.lock();
    counts
        .ok()
        .and_then(|c| c.get(&(ns.to_string(), name.to_string())).copied())
        .unwrap_or_default()
}

/// Notes that an object of `ns/name`'s inventory drifted: its next reconcile is full.
pub(super) fn mark_drift(ctx: &Context, ns: &str, name: &str) {
    if let Ok(mut d) = ctx.memo::<Unchanged>().drifted.lock() {
        d.insert((ns.to_string(), name.to_string()));
    }
}

/// Takes `obj`'s record out of the memo (see [`Record`]); first thing of every reconcile.
pub(super) fn take(obj: &Kustomization, ctx: &Context) -> Option<Record> {
    ctx.memo::<Unchanged>()
        .records
        .lock()
        .ok()?
        .remove(&key(obj))
}

/// Records the new revision in `status` and returns the outcome when nothing `obj`'s build
/// reads changed since its last successful full reconcile (`record`); `None` to reconcile
/// fully.
pub(super) async fn try_skip(
    obj: &Kustomization,
    ctx: &Context,
    status: &mut KustomizationStatus,
    artifact: &plumb_api::meta::Artifact,
    record: Option<Record>,
) -> Option<Done> {
    let memo = ctx.memo::<Unchanged>();
    let k = key(obj);
    let drifted = memo.drifted.lock().ok()?.contains(&k);
    let mut record = record?;
    let same_object = record.uid == obj.meta().uid
        && record.generation == obj.meta().generation
        && record.requests == requests(obj);
    if !enabled(obj)
        || obj.spec.kube_config.is_some()
        || drifted
        || !same_object
        || record.applied_at.elapsed() >= obj.every()
    {
        return None;
    }
    if inputs(obj, ctx).await.ok()? != record.inputs {
        return None;
    }
    let tree = shared_tree(ctx, artifact, obj.timeout().ok()).await?;
    let reads = record.reads.clone();
    let content = tokio::task::spawn_blocking(move || fingerprint(tree.path(), &reads))
        .await
        .ok()??;
    if content != record.content {
        return None;
    }
    let revision = artifact.revision.clone();
    record.revision = revision.clone();
    if let Ok(mut records) = memo.records.lock() {
        records.insert(k.clone(), record);
    }
    count(ctx, &k, |c| c.skipped += 1);
    status.last_applied_revision = Some(revision.clone());
    Some(Done {
        ready: Some((
            reason::RECONCILIATION_SUCCEEDED,
            format!("Applied revision: {revision}"),
        )),
        event: None,
        requeue: None,
    })
}

fn count(ctx: &Context, k: &Key, f: impl FnOnce(&mut BuildCounts)) {
    if let Ok(mut c) = ctx.memo::<Unchanged>().counts.lock() {
        f(c.entry(k.clone()).or_default());
    }
}

/// Starts a full reconcile: forgets the drift mark and reads the inputs it will be compared with later (before the render, so a change
/// racing the render shows at the next check).
pub(super) async fn begin_full(obj: &Kustomization, ctx: &Context) -> Full {
    let memo = ctx.memo::<Unchanged>();
    let k = key(obj);
    if let Ok(mut d) = memo.drifted.lock() {
        d.remove(&k);
    }
    count(ctx, &k, |c| c.rendered += 1);
    let inputs = if enabled(obj) {
        inputs(obj, ctx).await.ok()
    } else {
        None
    };
    Full {
        started: Instant::now(),
        inputs,
    }
}

/// Keeps the record of a successful full reconcile of `revision`.
pub(super) fn remember(
    obj: &Kustomization,
    ctx: &Context,
    full: Full,
    revision: &str,
    seen: Option<Seen>,
) {
    let (Some(inputs), Some(seen)) = (full.inputs, seen) else {
        return;
    };
    if !enabled(obj) || seen.reads.outside {
        return;
    }
    let record = Record {
        uid: obj.meta().uid.clone(),
        generation: obj.meta().generation,
        requests: requests(obj),
        revision: revision.to_string(),
        reads: Arc::new(seen.reads),
        content: seen.content,
        inputs,
        applied_at: full.started,
    };
    if let Ok(mut r) = ctx.memo::<Unchanged>().records.lock() {
        r.insert(key(obj), record);
    }
}

/// A hash of the resolved postBuild variables and the decryption Secret's data (never kept
/// in the clear).
async fn inputs(obj: &Kustomization, ctx: &Context) -> Result<[u8; 32], Failure> {
    let vars: Option<BTreeMap<String, String>> = super::render::substitution_vars(obj, ctx).await?;
    let mut h = Sha256::new();
    for (k, v) in vars.iter().flatten() {
        field(&mut h, k.as_bytes());
        field(&mut h, v.as_bytes());
    }
    h.update(if vars.is_some() { b"v" } else { b"-" });
    if let Some(r) = obj
        .spec
        .decryption
        .as_ref()
        .and_then(|d| d.secret_ref.as_ref())
    {
        let ns = obj.namespace().unwrap_or_default();
        for (k, v) in crate::secrets::secret_data(ctx, &ns, &r.name).await? {
            field(&mut h, k.as_bytes());
            field(&mut h, &v);
        }
    }
    Ok(h.finalize().into())
}

/// Length-prefixed, so that no two sequences of fields hash alike.
fn field(h: &mut Sha256, bytes: &[u8]) {
    h.update((bytes.len() as u64).to_le_bytes());
    h.update(bytes);
}

/// The artifact extracted once per digest for every check (`None` when it has no digest or
/// cannot be fetched: the full reconcile then reports the failure).
async fn shared_tree(
    ctx: &Context,
    artifact: &plumb_api::meta::Artifact,
    timeout: Option<Duration>,
) -> Option<Arc<tempfile::TempDir>> {
    let digest = artifact.digest.as_deref().filter(|d| !d.is_empty())?;
    let id = format!("{}#{digest}", artifact.url);
    let cell = {
        let memo = ctx.memo::<Unchanged>();
        let mut trees = memo.trees.lock().ok()?;
        match trees.iter().find(|(k, _)| *k == id) {
            Some((_, c)) => c.clone(),
            None => {
                let c = Arc::new(OnceCell::new());
                trees.push((id, c.clone()));
                if trees.len() > KEPT_TREES {
                    trees.remove(0);
                }
                c
            }
        }
    };
    let timeout = timeout.unwrap_or(Duration::from_secs(300));
    cell.get_or_try_init(|| async {
        crate::artifact::fetch_artifact(ctx, artifact, "plumb-ks-tree-", timeout)
            .await
            .map(Arc::new)
    })
    .await
    .ok()
    .cloned()
}

/// The hash of what `reads` names in the tree at `root`: each file's bytes, each listed
/// directory's entries (name and type), each probed path's kind and symlink target. `None`
/// when a path leaves the root (nothing can be concluded).
pub(super) fn fingerprint(root: &Path, reads: &Reads) -> Option<[u8; 32]> {
    if reads.outside {
        return None;
    }
    let root = std::fs::canonicalize(root).ok()?;
    let mut h = Sha256::new();
    for rel in &reads.files {
        h.update(b"f");
        field(&mut h, rel.as_bytes());
        match std::fs::read(root.join(rel)) {
            Ok(bytes) => field(&mut h, &Sha256::digest(&bytes)),
            Err(_) => h.update(b"-"),
        }
    }
    for rel in &reads.listed {
        h.update(b"d");
        field(&mut h, rel.as_bytes());
        let Ok(entries) = std::fs::read_dir(root.join(rel)) else {
            h.update(b"-");
            continue;
        };
        let mut names: Vec<(String, u8)> = entries
            .filter_map(Result::ok)
            .map(|e| {
                let kind = match e.file_type() {
                    Ok(t) if t.is_symlink() => b'l',
                    Ok(t) if t.is_dir() => b'd',
                    Ok(t) if t.is_file() => b'f',
                    _ => b'o',
                };
                (e.file_name().to_string_lossy().into_owned(), kind)
            })
            .collect();
        names.sort();
        for (name, kind) in names {
            field(&mut h, name.as_bytes());
            h.update([kind]);
        }
    }
    for rel in &reads.probed {
        h.update(b"p");
        field(&mut h, rel.as_bytes());
        match std::fs::canonicalize(root.join(rel)) {
            Ok(real) => {
                let inside = real.strip_prefix(&root).ok()?;
                field(&mut h, inside.to_string_lossy().as_bytes());
                h.update(if real.is_dir() {
                    b"d"
                } else if real.is_file() {
                    b"f"
                } else {
                    b"o"
                });
            }
            Err(_) => h.update(b"-"),
        }
    }
    Some(h.finalize().into())
}

#[cfg(test)]
#[path = "unchanged_tests.rs"]
mod tests;
