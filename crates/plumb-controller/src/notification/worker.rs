//! One worker per Provider: a bounded queue, deliveries on the blocking pool (a notifier
//! blocks on HTTP), retries with exponential backoff for retryable failures, the
//! `plumb_notifications_total{provider,result}` counts, and a Warning event on the
//! Provider when deliveries keep failing. A slow or hanging Provider only fills its own
//! queue: the intake drops its events when full and goes on with the others.

use std::sync::Arc;
use std::time::Duration;

use kube::Resource;
use plumb_notify::{Delivery, Event};
use tokio::sync::mpsc;

use super::Options;
use super::resolve::Resolved;
use crate::context::Context;

/// Reason of the Warning event on a Provider whose deliveries keep failing.
pub const REASON_NOTIFICATION_FAILED: &str = "NotificationFailed";

/// One event to deliver through one Provider.
pub(super) struct Job {
    pub(super) provider: Arc<Resolved>,
    pub(super) event: Event,
    pub(super) commit_status_key: Option<String>,
}

/// Starts the worker of one Provider; it ends when its sender is dropped.
pub(super) fn spawn(ctx: Arc<Context>, opts: Options) -> mpsc::Sender<Job> {
    let (tx, mut rx) = mpsc::channel::<Job>(opts.queue.max(1));
    tokio::spawn(async move {
        let mut failing = 0u32;
        while let Some(job) = rx.recv().await {
            if deliver(&ctx, &job, &opts).await {
                failing = 0;
            } else {
                failing += 1;
                // Once when a streak reaches the threshold, then every tenth failure.
                if failing == opts.warn_after
                    || (failing > opts.warn_after && failing.is_multiple_of(10))
                {
                    warn(&ctx, &job.provider, failing).await;
                }
            }
        }
    });
    tx
}

/// Sends `job` with retries; whether it was delivered.
async fn deliver(ctx: &Context, job: &Job, opts: &Options) -> bool {
    let key = job.provider.key.clone();
    let mut delay = opts.backoff;
    for attempt in 0..=opts.retries {
        let provider = job.provider.clone();
        let event = job.event.clone();
        let commit_status_key = job.commit_status_key.clone();
        let cache = ctx.memo::<plumb_source::git::github_app::TokenCache>();
        let result = tokio::task::spawn_blocking(move || {
            let with_token;
            let settings = match &provider.github_app {
                Some(app) => {
                    with_token = app.settings_with_token(&cache, &provider.settings)?;
                    &with_token
                }
                None => &provider.settings,
            };
            provider.notifier.send(
                &Delivery {
                    settings,
                    event: &event,
                    commit_status_key,
                },
                &*provider.transport,
            )
        })
        .await;
        match result {
            Ok(Ok(())) => {
                ctx.metrics.notification(&key, "success");
                return true;
            }
            Ok(Err(e)) if e.is_retryable() && attempt < opts.retries => {
                ctx.metrics.notification(&key, "retry");
                tracing::debug!(provider = %key, error = %e, attempt, "notification failed, retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(300));
            }
            Ok(Err(e)) => {
                ctx.metrics.notification(&key, "failure");
                // NotifyError messages name the host only, never a token or webhook path.
                tracing::warn!(provider = %key, error = %e, "notification failed");
                return false;
            }
            Err(_) => {
                ctx.metrics.notification(&key, "failure");
                tracing::warn!(provider = %key, "notification task failed");
                return false;
            }
        }
    }
    false
}

async fn warn(ctx: &Context, provider: &Resolved, failing: u32) {
    let obj = provider.provider.object_ref(&());
    let note = format!("{failing} notifications in a row failed to be delivered");
    ctx.event(&obj, true, REASON_NOTIFICATION_FAILED, &note)
        .await;
}
