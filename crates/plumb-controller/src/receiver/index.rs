//! Receivers by `status.webhookPath`, kept current by a watch, so the webhook server
//! answers a call for an unknown path from memory: no API request, no body read. Before
//! the first list completed the index is not ready and calls wait for it briefly.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::StreamExt as _;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::{WatchStreamExt, watcher};
use plumb_api::Receiver;
use tokio::sync::watch;

/// `(namespace, name)` of a Receiver.
type Key = (String, String);

#[derive(Debug, Default)]
struct State {
    /// Receivers with a webhook path, by path.
    by_path: HashMap<String, HashMap<Key, Arc<Receiver>>>,
    /// The path each indexed Receiver is under.
    path_of: HashMap<Key, String>,
    /// Receivers listed since the watch (re)started, swapped in when the list is complete.
    listing: Option<Vec<Receiver>>,
}

/// The index; [`ReceiverIndex::maintain`] keeps it current.
#[derive(Debug)]
pub(super) struct ReceiverIndex {
    state: RwLock<State>,
    ready: watch::Sender<bool>,
}

impl ReceiverIndex {
    pub(super) fn new() -> Arc<Self> {
        Arc::new(ReceiverIndex {
            state: RwLock::new(State::default()),
            ready: watch::Sender::new(false),
        })
    }

    /// The Receivers whose status names `path`.
    pub(super) fn lookup(&self, path: &str) -> Vec<Arc<Receiver>> {
        let Ok(state) = self.state.read() else {
            return Vec::new();
        };
        state
            .by_path
            .get(path)
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Waits up to `timeout` for the first complete list; whether it came.
    pub(super) async fn ready(&self, timeout: Duration) -> bool {
        let mut rx = self.ready.subscribe();
        matches!(
            tokio::time::timeout(timeout, rx.wait_for(|r| *r)).await,
            Ok(Ok(_))
        )
    }

    /// Watches `api` and applies every change until dropped; watch errors are retried
    /// with backoff, keeping the last known index meanwhile.
    pub(super) async fn maintain(self: Arc<Self>, api: Api<Receiver>) {
        let mut events = watcher(api, watcher::Config::default())
            .default_backoff()
            .boxed();
        while let Some(event) = events.next().await {
            match event {
                Ok(e) => self.apply(e),
                Err(e) => {
                    tracing::warn!(error = %e, "watching Receivers for the webhook index failed")
                }
            }
        }
    }

    fn apply(&self, event: watcher::Event<Receiver>) {
        let Ok(mut state) = self.state.write() else {
            return;
        };
        match event {
            watcher::Event::Init => state.listing = Some(Vec::new()),
            watcher::Event::InitApply(r) => state.listing.get_or_insert_default().push(r),
            watcher::Event::InitDone => {
                let listed = state.listing.take().unwrap_or_default();
                state.by_path.clear();
                state.path_of.clear();
                for r in listed {
                    state.upsert(r);
                }
                self.ready.send_replace(true);
            }
            watcher::Event::Apply(r) => state.upsert(r),
            watcher::Event::Delete(r) => state.remove(&key(&r)),
        }
    }
}

impl State {
    fn upsert(&mut self, r: Receiver) {
        let k = key(&r);
        self.remove(&k);
        let Some(path) = r.status.as_ref().and_then(|s| s.webhook_path.clone()) else {
            return;
        };
        self.by_path
            .entry(path.clone())
            .or_default()
            .insert(k.clone(), Arc::new(r));
        self.path_of.insert(k, path);
    }

    fn remove(&mut self, k: &Key) {
        let Some(path) = self.path_of.remove(k) else {
            return;
        };
        if let Some(m) = self.by_path.get_mut(&path) {
            m.remove(k);
            if m.is_empty() {
                self.by_path.remove(&path);
            }
        }
    }
}

fn key(r: &Receiver) -> Key {
    (r.namespace().unwrap_or_default(), r.name_any())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rcv(name: &str, path: Option<&str>) -> Receiver {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "notification.toolkit.fluxcd.io/v1",
            "kind": "Receiver",
            "metadata": {"name": name, "namespace": "ns"},
            "spec": {"type": "generic", "secretRef": {"name": "t"}, "resources": []},
            "status": {"webhookPath": path},
        }))
        .unwrap()
    }

    fn names(idx: &ReceiverIndex, path: &str) -> Vec<String> {
        let mut v: Vec<_> = idx.lookup(path).iter().map(|r| r.name_any()).collect();
        v.sort();
        v
    }

    #[tokio::test]
    async fn follows_the_watch() {
        let idx = ReceiverIndex::new();
        assert!(!idx.ready(Duration::from_millis(10)).await);
        idx.apply(watcher::Event::Init);
        idx.apply(watcher::Event::InitApply(rcv("a", Some("/hook/1"))));
        idx.apply(watcher::Event::InitApply(rcv("b", Some("/hook/1"))));
        idx.apply(watcher::Event::InitApply(rcv("c", None)));
        // Not visible before the list is complete.
        assert!(idx.lookup("/hook/1").is_empty());
        idx.apply(watcher::Event::InitDone);
        assert!(idx.ready(Duration::from_millis(10)).await);
        assert_eq!(names(&idx, "/hook/1"), ["a", "b"]);
        // A rotated token moves the path; a deleted Receiver leaves it.
        idx.apply(watcher::Event::Apply(rcv("a", Some("/hook/2"))));
        assert_eq!(names(&idx, "/hook/1"), ["b"]);
        assert_eq!(names(&idx, "/hook/2"), ["a"]);
        idx.apply(watcher::Event::Delete(rcv("b", Some("/hook/1"))));
        assert!(idx.lookup("/hook/1").is_empty());
        // A relist replaces everything: what is gone from it is forgotten.
        idx.apply(watcher::Event::Init);
        idx.apply(watcher::Event::InitApply(rcv("c", Some("/hook/3"))));
        idx.apply(watcher::Event::InitDone);
        assert!(idx.lookup("/hook/2").is_empty());
        assert_eq!(names(&idx, "/hook/3"), ["c"]);
    }
}
