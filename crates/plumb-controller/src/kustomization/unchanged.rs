//! Beyond Flux: the skip of unchanged Kustomizations. In a monorepo every commit gives
//! every Kustomization on the repository a new revision; Flux re-renders and re-applies
//! them all. plumb records what each successful build read (files, directory listings,
//! existence checks; see [`plumb_kustomize::Reads`]) with a hash of it. When a new revision
//! arrives and, since that full reconcile, the hash of the same paths in the new artifact,
//! the generation, the reconcile-request annotations, the resolved `postBuild` variables
//! (including `substituteFrom` data) and the decryption Secret are all unchanged, the new
//! revision is recorded in the status without rendering, applying, dry-running or pruning.
//!
//! Only a new artifact queues a source's users ([`super::watches`]), those whose reads
//! changed first ([`split_by_change`]). Never skipped: a reconcile requested (`requestedAt`/`forceAt`/
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
//! digest and shared by every Kustomization checking or rendering it ([`super::trees`]), so a
//! check costs hashing the few files its build read.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kube::{Resource, ResourceExt};
use plumb_api::consts::{annotation, reason};
use plumb_api::{Kustomization, KustomizationStatus};
use plumb_kustomize::Reads;
use sha2::{Digest, Sha256};

use crate::context::Context;
use crate::outcome::Failure;
use crate::reconciler::{Done, Kind};

const REQUEST_ANNOTATIONS: [&str; 3] = [
    annotation::RECONCILE_REQUESTED_AT,
    annotation::RECONCILE_FORCE_AT,
    annotation::RECONCILE_RESET_AT,
];

type Key = (String, String);

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
    let mut record = record?;
    if !may_skip(obj, ctx, &record) {
        return None;
    }
    if inputs(obj, ctx).await.ok()? != record.inputs {
        return None;
    }
    let timeout = obj.timeout().unwrap_or(Duration::from_secs(300));
    let tree = super::trees::shared(ctx, artifact, timeout).await.ok()?;
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

/// The checks of [`try_skip`] that need no artifact and no request: the record is of this
/// object as it is now (generation, request annotations), no drift, no remote cluster, the
/// interval not expired, the skip not opted out.
fn may_skip(obj: &Kustomization, ctx: &Context, record: &Record) -> bool {
    let drifted = ctx
        .memo::<Unchanged>()
        .drifted
        .lock()
        .map_or(true, |d| d.contains(&key(obj)));
    let same_object = record.uid == obj.meta().uid
        && record.generation == obj.meta().generation
        && record.requests == requests(obj);
    enabled(obj)
        && obj.spec.kube_config.is_none()
        && !drifted
        && same_object
        && record.applied_at.elapsed() < obj.every()
}

/// What a record says to compare in a new artifact: the reads and their hash.
type Check = (Arc<Reads>, [u8; 32]);

/// Splits `users`, the Kustomizations a new `artifact` of their source reconciles, into
/// those that will render (no record, or what their last build read changed in the new
/// artifact) and those that will most likely only record the revision. Only an order for
/// queuing, so that the changed ones do not wait behind the status patches of the others:
/// each reconcile still decides for itself.
pub(super) async fn split_by_change(
    ctx: &Context,
    artifact: &plumb_api::meta::Artifact,
    users: Vec<Arc<Kustomization>>,
) -> (Vec<Arc<Kustomization>>, Vec<Arc<Kustomization>>) {
    let candidates: Vec<(Arc<Kustomization>, Option<Check>)> = {
        let memo = ctx.memo::<Unchanged>();
        let records = memo.records.lock();
        users
            .into_iter()
            .map(|ks| {
                let found = records.as_ref().ok().and_then(|r| r.get(&key(&ks)));
                let check = found
                    .filter(|r| may_skip(&ks, ctx, r))
                    .map(|r| (r.reads.clone(), r.content));
                (ks, check)
            })
            .collect()
    };
    if candidates.iter().all(|(_, c)| c.is_none()) {
        return (
            candidates.into_iter().map(|(ks, _)| ks).collect(),
            Vec::new(),
        );
    }
    let tree = super::trees::shared(ctx, artifact, Duration::from_secs(300)).await;
    let Ok(tree) = tree else {
        return (
            candidates.into_iter().map(|(ks, _)| ks).collect(),
            Vec::new(),
        );
    };
    let (users, checks): (Vec<_>, Vec<_>) = candidates.into_iter().unzip();
    let same = tokio::task::spawn_blocking(move || {
        checks
            .into_iter()
            .map(|c| {
                c.is_some_and(|(reads, content)| fingerprint(tree.path(), &reads) == Some(content))
            })
            .collect::<Vec<bool>>()
    })
    .await
    .unwrap_or_default();
    let (mut changed, mut unchanged) = (Vec::new(), Vec::new());
    for (i, ks) in users.into_iter().enumerate() {
        if same.get(i).copied().unwrap_or(false) {
            unchanged.push(ks);
        } else {
            changed.push(ks);
        }
    }
    (changed, unchanged)
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
