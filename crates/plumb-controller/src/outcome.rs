//! Failure classification: every failure is transient (retry soon), waiting (on something
//! else; retry at a steady pace) or stalled (needs a change of the object or its inputs),
//! and carries the one reason string used for the condition, the event and the metric.

use std::time::Duration;

/// How a failure is retried and reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Another try may succeed (network, API server, timeouts).
    Transient,
    /// Blocked on something else becoming ready (a dependency, a source artifact).
    Waiting,
    /// Retrying will not help until the spec, the Secret or Git changes.
    Stalled,
}

/// A classified failure of one reconcile.
#[derive(Debug, Clone)]
pub struct Failure {
    /// Retry class.
    pub class: Class,
    /// Flux reason (condition reason, event reason, metric label).
    pub reason: &'static str,
    /// Human message; never contains a secret.
    pub message: String,
    /// A transient failure retried after this long instead of the kind's retry delay
    /// (e.g. a HelmRelease's `RetryOnFailure` strategy `retryInterval`).
    pub retry_after: Option<Duration>,
}

impl Failure {
    /// A failure of `class` with `reason`.
    pub fn new(class: Class, reason: &'static str, message: impl Into<String>) -> Self {
        Failure {
            class,
            reason,
            message: message.into(),
            retry_after: None,
        }
    }

    /// This failure, retried after `d` when transient.
    pub fn with_retry_after(mut self, d: Duration) -> Self {
        self.retry_after = Some(d);
        self
    }

    /// When to try again: transient failures back off from a few seconds, waiting ones
    /// use `retry`, stalled ones wait for the interval (or a change of the object).
    pub fn requeue_after(&self, retry: Duration, interval: Duration) -> Duration {
        match self.class {
            Class::Transient => self.retry_after.unwrap_or(retry.min(interval)),
            Class::Waiting => retry,
            Class::Stalled => interval,
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.reason, self.message)
    }
}

/// Adds ±`percent`% random jitter to `d`, so thousands of objects created together do not
/// poll in lockstep (Flux's `--interval-jitter-percentage`, default 5).
pub fn jitter(d: Duration, percent: u32) -> Duration {
    use rand::Rng;
    if percent == 0 || d.is_zero() {
        return d;
    }
    let spread = d.as_secs_f64() * f64::from(percent) / 100.0;
    let delta = rand::rng().random_range(-spread..=spread);
    Duration::from_secs_f64((d.as_secs_f64() + delta).max(0.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_bounds() {
        let d = Duration::from_secs(60);
        for _ in 0..100 {
            let j = jitter(d, 5);
            assert!(
                j >= Duration::from_secs(57) && j <= Duration::from_secs(63),
                "{j:?}"
            );
        }
        assert_eq!(jitter(d, 0), d);
    }

    #[test]
    fn requeue_by_class() {
        let retry = Duration::from_secs(10);
        let interval = Duration::from_secs(300);
        let f = |c| Failure::new(c, "X", "m").requeue_after(retry, interval);
        assert_eq!(f(Class::Transient), retry);
        assert_eq!(f(Class::Waiting), retry);
        let later = Failure::new(Class::Transient, "X", "m").with_retry_after(interval * 2);
        assert_eq!(later.requeue_after(retry, interval), interval * 2);
        assert_eq!(f(Class::Stalled), interval);
    }
}
