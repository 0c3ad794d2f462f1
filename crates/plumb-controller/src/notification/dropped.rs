//! Events the intake had no room for: counted in
//! `plumb_notification_events_dropped_total`, and a Warning log at most once a minute with
//! how many were dropped since the last one (a full intake drops many at once; one line per
//! event would flood the log exactly when the controller is busiest).

use std::time::{Duration, Instant};

/// The least time between two drop warnings.
pub(super) const WARN_EVERY: Duration = Duration::from_secs(60);

/// Drops since the last warning, and when that was.
#[derive(Debug, Default)]
pub(super) struct DropLog {
    last: Option<Instant>,
    since: u64,
}

impl DropLog {
    /// Notes one drop at `now`; returns the drops to report when a warning is due.
    pub(super) fn note(&mut self, now: Instant) -> Option<u64> {
        self.since += 1;
        if self
            .last
            .is_some_and(|t| now.saturating_duration_since(t) < WARN_EVERY)
        {
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.since))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warns_at_most_once_a_minute_with_the_count_since() {
        let mut log = DropLog::default();
        let t0 = Instant::now();
        assert_eq!(log.note(t0), Some(1));
        for i in 1..100 {
            assert_eq!(log.note(t0 + Duration::from_millis(i)), None);
        }
        assert_eq!(log.note(t0 + WARN_EVERY - Duration::from_millis(1)), None);
        assert_eq!(log.note(t0 + WARN_EVERY), Some(101));
        assert_eq!(log.note(t0 + WARN_EVERY + Duration::from_secs(1)), None);
    }
}
