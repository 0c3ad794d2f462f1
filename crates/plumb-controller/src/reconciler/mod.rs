//! The reconciler skeleton every kind runs in. A kind implements [`Kind`]: its status type,
//! how it reports failures ([`Policy`]), and its pipeline of steps ([`Kind::steps`]); the
//! skeleton does the rest, the same way for every kind:
//!
//! 1. controller wiring ([`run`]): concurrency, shutdown on a signal, logging of errors;
//! 2. [`reconcile`]: a metrics timer, the finalizer (add; on deletion, [`Kind::cleanup`]);
//! 3. suspend: [`Kind::on_suspend`], metrics, no status write;
//! 4. the steps, with the status as it was read; they record their progress into it;
//! 5. the outcome ([`Done`] or a classified [`Failure`]) mapped to conditions, an event and a
//!    requeue in one place ([`status`]), then ONE status patch when anything changed (as
//!    Flux's deferred patch) and the metrics;
//! 6. [`error_policy`]: errors escaping a reconcile (status writes, finalizers) retry in 10 s.

mod controller;
mod kind;
mod refs;
pub mod status;

pub(crate) use controller::desired_state_controller;
pub use kind::{Done, Kind, KindStatus, Policy, StoredStatus, Warn};
pub use refs::watch_referenced;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use plumb_api::consts::FINALIZER;

use crate::context::Context;
use crate::{Error, Result};

/// Runs `controller` (built and wired by the kind) until a shutdown signal.
pub async fn run<K: Kind>(controller: Controller<K>, ctx: Arc<Context>, concurrency: u16) {
    controller
        .with_config(kube::runtime::controller::Config::default().concurrency(concurrency))
        .shutdown_on_signal()
        .run(reconcile::<K>, error_policy::<K>, ctx)
        .for_each(|res| async move {
            if let Err(e) = res {
                tracing::debug!(error = %e, kind = K::KIND, "reconcile error");
            }
        })
        .await;
}

/// Errors escaping a reconcile (status writes, finalizers) are retried soon.
pub fn error_policy<K: Kind>(_obj: Arc<K>, err: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(error = %err, kind = K::KIND, "reconcile failed");
    Action::requeue(Duration::from_secs(10))
}

/// One reconcile of one object (finalizer-aware when the kind has one).
pub async fn reconcile<K: Kind>(obj: Arc<K>, ctx: Arc<Context>) -> Result<Action> {
    let ns = obj.namespace().unwrap_or_default();
    let _timer = ctx.metrics.reconcile_timer(K::KIND, &ns, &obj.name_any());
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &ns);
    if !K::FINALIZER {
        return status::reconcile_once(obj, &ctx, &api).await;
    }
    finalizer(&api, FINALIZER, obj, |ev| async {
        match ev {
            Finalizer::Apply(o) => status::reconcile_once(o, &ctx, &api).await,
            Finalizer::Cleanup(o) => {
                ctx.metrics
                    .forget(K::KIND, &o.namespace().unwrap_or_default(), &o.name_any());
                K::cleanup(o, &ctx).await
            }
        }
    })
    .await
    .map_err(|e| Error::Finalizer(e.to_string()))
}
