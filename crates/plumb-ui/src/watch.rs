//! Watches -> store: one watch per Flux kind feeds the [`Store`] every page reads.
//!
//! Each kind is watched cluster-wide; when the user may not list it cluster-wide, in each of
//! the fallback namespaces (`--namespace`, else the kubeconfig context's) they may list it
//! in. A kind listable nowhere is recorded as forbidden (the page says so) and the other
//! kinds keep working; a kind whose CRD is not installed is skipped quietly.
//!
//! Only summaries are kept: a watched object is reduced to its summary as it arrives, so
//! neither `managedFields` nor specs stay in memory.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use kube::api::{Api, DynamicObject, ListParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use plumb_api::kinds::FluxKind;
use serde_json::{Value, json};

use crate::model::{ObjectSummary, Rel};
use crate::refs::{Selector, policy_refs};
use crate::store::Store;
use crate::summary::summarize;

/// How long a kind whose first list failed (not 403/404) waits before trying again.
const RETRY: Duration = Duration::from_secs(10);

/// Starts one watch per Flux kind (tokio tasks that run as long as the runtime); returns at
/// once. `fallback_namespaces` are watched when a kind may not be listed cluster-wide.
pub fn spawn_watches(client: kube::Client, store: Store, fallback_namespaces: Vec<String>) {
    let links = Links::default();
    for kind in FluxKind::ALL {
        let w = KindWatch {
            client: client.clone(),
            store: store.clone(),
            kind,
            links: links.clone(),
        };
        let namespaces = fallback_namespaces.clone();
        tokio::spawn(async move { w.run(namespaces).await });
    }
}

/// Why a first list failed.
enum Probe {
    Ok,
    Forbidden,
    NoCrd,
    Other(kube::Error),
}

async fn probe(api: &Api<DynamicObject>) -> Probe {
    match api.list_metadata(&ListParams::default().limit(1)).await {
        Ok(_) => Probe::Ok,
        Err(kube::Error::Api(s)) if s.code == 403 => Probe::Forbidden,
        Err(kube::Error::Api(s)) if s.code == 404 => Probe::NoCrd,
        Err(e) => Probe::Other(e),
    }
}

struct KindWatch {
    client: kube::Client,
    store: Store,
    kind: FluxKind,
    links: Links,
}

impl KindWatch {
    async fn run(self, namespaces: Vec<String>) {
        let resource = self.kind.resource();
        let kind = self.kind.kind();
        loop {
            let all = Api::<DynamicObject>::all_with(self.client.clone(), &resource);
            match probe(&all).await {
                Probe::Ok => {
                    self.store.set_forbidden(kind, false);
                    return self.follow(all, None).await;
                }
                Probe::NoCrd => {
                    tracing::debug!(kind, "CRD not installed; not watched");
                    return;
                }
                Probe::Forbidden => return self.run_namespaced(&namespaces).await,
                Probe::Other(e) => {
                    tracing::warn!(kind, error = %e, "listing failed; retrying");
                    tokio::time::sleep(RETRY).await;
                }
            }
        }
    }

    /// Watches `kind` in each namespace of `namespaces` the user may list it in.
    async fn run_namespaced(&self, namespaces: &[String]) {
        let kind = self.kind.kind();
        let mut allowed = Vec::new();
        for ns in namespaces {
            let api = self.kind.api(&self.client, ns);
            if let Probe::Ok = probe(&api).await {
                allowed.push((api, ns.clone()));
            }
        }
        if allowed.is_empty() {
            tracing::info!(kind, "not allowed to list; shown as forbidden");
            self.store.set_forbidden(kind, true);
            return;
        }
        self.store.set_forbidden(kind, false);
        let follows = allowed
            .into_iter()
            .map(|(api, ns)| async move { self.follow(api, Some(ns)).await });
        futures::future::join_all(follows).await;
    }

    /// Follows one watch for ever (the watcher relists after errors, with backoff).
    async fn follow(&self, api: Api<DynamicObject>, ns: Option<String>) {
        let kind = self.kind.kind();
        let mut stream = watcher::watcher(api, watcher::Config::default())
            .default_backoff()
            .boxed();
        let mut initial: Vec<ObjectSummary> = Vec::new();
        while let Some(event) = stream.next().await {
            match event {
                Ok(Event::Init) => initial.clear(),
                Ok(Event::InitApply(o)) => initial.push(self.summary(o)),
                Ok(Event::InitDone) => {
                    let objects = std::mem::take(&mut initial);
                    self.store.replace_kind_in(kind, ns.as_deref(), objects);
                    self.links.after_change(&self.store, self.kind, None);
                }
                Ok(Event::Apply(o)) => {
                    let s = self.summary(o);
                    let obj_ns = s.namespace.clone();
                    self.store.upsert(s);
                    self.links
                        .after_change(&self.store, self.kind, Some(&obj_ns));
                }
                Ok(Event::Delete(o)) => {
                    let s = self.summary(o);
                    self.links.forget(&s.id);
                    self.store.delete(&s.id);
                    self.links
                        .after_change(&self.store, self.kind, Some(&s.namespace));
                }
                Err(e) => tracing::debug!(kind, error = %e, "watch interrupted; resuming"),
            }
        }
    }

    /// The summary of a watched object; the metadata is reduced to what the summary reads.
    fn summary(&self, o: DynamicObject) -> ObjectSummary {
        let DynamicObject { metadata, data, .. } = o;
        let mut obj = match data {
            Value::Object(m) => Value::Object(m),
            _ => json!({}),
        };
        obj["metadata"] = json!({
            "name": metadata.name,
            "namespace": metadata.namespace,
            "labels": metadata.labels,
        });
        let mut s = summarize(self.kind, &obj);
        if self.kind == FluxKind::ImageUpdateAutomation {
            self.links
                .resolve(&self.store, &mut s, Selector::policy_selector(&obj));
        }
        s
    }
}

/// The policy selectors of the ImageUpdateAutomations seen, by id: an automation's `policy`
/// references change when the ImagePolicies of its namespace change.
#[derive(Debug, Clone, Default)]
struct Links {
    selectors: Arc<Mutex<BTreeMap<String, Selector>>>,
}

impl Links {
    /// Records `s`'s selector and sets its `policy` references from the store.
    fn resolve(&self, store: &Store, s: &mut ObjectSummary, selector: Selector) {
        let policies = store.of_kind_in("ImagePolicy", &s.namespace);
        s.refs.retain(|r| r.rel != Rel::Policy);
        s.refs
            .extend(policy_refs(&s.namespace, &selector, policies.iter()));
        let mut map = self.selectors.lock().unwrap_or_else(|e| e.into_inner());
        map.insert(s.id.clone(), selector);
    }

    fn forget(&self, id: &str) {
        let mut map = self.selectors.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(id);
    }

    /// After ImagePolicies changed (in `ns`, or anywhere), re-resolves the automations there.
    fn after_change(&self, store: &Store, kind: FluxKind, ns: Option<&str>) {
        if kind != FluxKind::ImagePolicy {
            return;
        }
        let affected: Vec<(String, Selector)> = {
            let map = self.selectors.lock().unwrap_or_else(|e| e.into_inner());
            map.iter()
                .map(|(id, sel)| (id.clone(), sel.clone()))
                .collect()
        };
        for (id, selector) in affected {
            let Some(mut s) = store.get(&id) else {
                continue;
            };
            if ns.is_some_and(|ns| ns != s.namespace) {
                continue;
            }
            self.resolve(store, &mut s, selector);
            store.upsert(s);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture::summary_of;

    #[test]
    fn automation_policies_follow_policy_changes() {
        let store = Store::new();
        let links = Links::default();
        let mut auto = summary_of("ImageUpdateAutomation", "ns", "auto");
        links.resolve(&store, &mut auto, Selector::default());
        assert!(auto.refs.is_empty());
        store.upsert(auto);
        store.upsert(summary_of("ImagePolicy", "ns", "p"));
        store.upsert(summary_of("ImagePolicy", "other", "q"));
        links.after_change(&store, FluxKind::ImagePolicy, Some("ns"));
        let refs = store
            .get("ImageUpdateAutomation/ns/auto")
            .map(|s| s.refs)
            .unwrap_or_default();
        assert_eq!(refs.len(), 1);
        assert_eq!(refs[0].id, "ImagePolicy/ns/p");
        store.delete("ImagePolicy/ns/p");
        links.after_change(&store, FluxKind::ImagePolicy, None);
        assert!(
            store
                .get("ImageUpdateAutomation/ns/auto")
                .is_some_and(|s| s.refs.is_empty())
        );
    }
}
