//! Provider (`notification.toolkit.fluxcd.io/v1beta3`): the reconciler resolves the type,
//! the Secrets (`secretRef`, `proxySecretRef`, `certSecretRef`) and the settings into what
//! the dispatcher delivers with ([`crate::notification::resolve`]), and reports it in
//! status: Ready, or Stalled with the reason (a type plumb does not serve, a bad address, a
//! bad Secret key) so that no event is silently dropped. A change of a referenced Secret
//! re-reconciles the Provider at once.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::Controller;
use kube::runtime::watcher;
use plumb_api::consts::reason;
use plumb_api::{NotificationStatus, Provider};

use crate::context::Context;
use crate::notification::Dispatcher;
use crate::outcome::{Class, Failure};
use crate::reconciler::{Done, Kind, Policy, Warn};

/// How often a Ready Provider re-reads its Secrets (besides on their changes).
const EVERY: Duration = Duration::from_secs(600);

fn key(p: &Provider) -> String {
    format!("{}/{}", p.namespace().unwrap_or_default(), p.name_any())
}

/// Whether Provider `p` references Secret `name`.
fn references(p: &Provider, name: &str) -> bool {
    let s = &p.spec;
    [&s.secret_ref, &s.cert_secret_ref, &s.proxy_secret_ref]
        .iter()
        .any(|r| r.as_ref().is_some_and(|r| r.name == name))
}

/// Runs the Provider reconciler until a shutdown signal.
pub async fn run(ctx: Arc<Context>, api: Api<Provider>, watch: watcher::Config, concurrency: u16) {
    let secrets: Api<Secret> = match api.namespace() {
        Some(ns) => Api::namespaced(ctx.client.clone(), ns),
        None => Api::all(ctx.client.clone()),
    };
    let controller = Controller::new(api, watch);
    ctx.memo::<Dispatcher>()
        .set_provider_store(controller.store());
    let controller = crate::reconciler::watch_referenced(controller, secrets, references);
    crate::reconciler::run(controller, ctx, concurrency).await;
}

impl Kind for Provider {
    const KIND: &'static str = "Provider";
    const POLICY: Policy = Policy {
        warn: Warn::OnChange,
        ..Policy::SOURCE
    };
    // Providers own nothing outside their status.
    const FINALIZER: bool = false;

    fn suspended(&self) -> bool {
        self.spec.suspend
    }

    fn every(&self) -> Duration {
        EVERY
    }

    fn revision(_status: &NotificationStatus) -> &str {
        ""
    }

    fn on_suspend(obj: &Self, ctx: &Context) {
        ctx.memo::<Dispatcher>().set_provider(&key(obj), None);
    }

    async fn steps(
        obj: &Self,
        ctx: &Context,
        _status: &mut NotificationStatus,
    ) -> std::result::Result<Done, Failure> {
        let dispatcher = ctx.memo::<Dispatcher>();
        let key = key(obj);
        let unsupported = obj.unsupported_fields();
        let resolved = if unsupported.is_empty() {
            crate::notification::resolve::resolve(ctx, Arc::new(obj.clone())).await
        } else {
            Err(Failure::new(
                Class::Stalled,
                reason::UNSUPPORTED_FIELD,
                plumb_api::unsupported::message(&unsupported),
            ))
        };
        match resolved {
            Ok(r) => {
                dispatcher.set_provider(&key, Some(Arc::new(r)));
                Ok(Done {
                    ready: Some((reason::SUCCEEDED, "Provider initialized".to_string())),
                    event: None,
                    requeue: None,
                })
            }
            Err(f) => {
                dispatcher.set_provider(&key, None);
                Err(f)
            }
        }
    }
}
