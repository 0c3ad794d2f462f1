//! Flux's rate limiting of identical events: an event with the same involved object (kind,
//! namespace, name), message, `revision` and `token` as one accepted within the interval
//! (notification-controller's `--rate-limit-interval`, 5 minutes) is dropped.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use plumb_notify::Event;
use sha2::{Digest, Sha256};

/// Flux's default interval.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(300);

/// Remembers when each distinct event was last accepted.
pub struct Limiter {
    interval: Duration,
    seen: HashMap<[u8; 32], Instant>,
}

impl Default for Limiter {
    fn default() -> Self {
        Limiter::new(DEFAULT_INTERVAL)
    }
}

/// The key of an event: the fields Flux hashes, each prefixed so that they cannot run into
/// each other.
fn key(e: &Event) -> [u8; 32] {
    let o = &e.involved_object;
    let mut parts = vec![
        "event".to_string(),
        format!("name={}", o.name),
        format!("namespace={}", o.namespace),
        format!("kind={}", o.kind),
        format!("message={}", e.message),
    ];
    if let Some(r) = e.metadata.get("revision") {
        parts.push(format!("revision={r}"));
    }
    if let Some(t) = e.metadata.get("token") {
        parts.push(format!("token={t}"));
    }
    Sha256::digest(parts.join("/").as_bytes()).into()
}

impl Limiter {
    /// A limiter with `interval` (zero turns it off).
    pub fn new(interval: Duration) -> Self {
        Limiter {
            interval,
            seen: HashMap::new(),
        }
    }

    /// Changes the interval (zero turns limiting off).
    pub fn set_interval(&mut self, interval: Duration) {
        self.interval = interval;
    }

    /// Whether `e` may go out now (and if so, remember it).
    pub fn allow(&mut self, e: &Event, now: Instant) -> bool {
        if self.interval.is_zero() {
            return true;
        }
        // Forget expired entries now and then, so memory follows the event rate.
        if self.seen.len() >= 10_000 {
            let interval = self.interval;
            self.seen.retain(|_, t| now.duration_since(*t) < interval);
        }
        let k = key(e);
        match self.seen.get(&k) {
            Some(t) if now.duration_since(*t) < self.interval => false,
            _ => {
                self.seen.insert(k, now);
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(msg: &str, rev: &str) -> Event {
        let mut e = Event {
            message: msg.into(),
            ..Default::default()
        };
        e.involved_object.kind = "Kustomization".into();
        e.involved_object.name = "a".into();
        e.metadata.insert("revision".into(), rev.into());
        e
    }

    #[test]
    fn identical_events_within_the_interval_are_dropped() {
        let mut l = Limiter::new(Duration::from_secs(60));
        let t0 = Instant::now();
        assert!(l.allow(&ev("m", "r1"), t0));
        assert!(!l.allow(&ev("m", "r1"), t0 + Duration::from_secs(30)));
        // Another revision or message is another event.
        assert!(l.allow(&ev("m", "r2"), t0 + Duration::from_secs(30)));
        assert!(l.allow(&ev("n", "r1"), t0 + Duration::from_secs(30)));
        // Metadata other than revision and token does not count.
        let mut other = ev("m", "r1");
        other.metadata.insert("summary".into(), "x".into());
        assert!(!l.allow(&other, t0 + Duration::from_secs(31)));
        assert!(l.allow(&ev("m", "r1"), t0 + Duration::from_secs(61)));
        assert!(Limiter::new(Duration::ZERO).allow(&ev("m", "r1"), t0));
    }
}
