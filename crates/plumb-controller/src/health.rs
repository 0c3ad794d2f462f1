//! The health clock: when each object's current revision was applied, so that a health
//! check can time out without a worker ever sleeping on it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Health-check bookkeeping: when the current revision was applied, so a health check
/// can time out without a worker ever sleeping on it.
#[derive(Default)]
pub struct HealthClock {
    started: Mutex<HashMap<(String, String), (String, Instant)>>,
}

impl HealthClock {
    /// How long `key` has been at `revision` (starting the clock when it changed).
    pub fn since(&self, key: &(String, String), revision: &str) -> Duration {
        let Ok(mut m) = self.started.lock() else {
            return Duration::ZERO;
        };
        let entry = m
            .entry(key.clone())
            .or_insert_with(|| (revision.to_string(), Instant::now()));
        if entry.0 != revision {
            *entry = (revision.to_string(), Instant::now());
        }
        entry.1.elapsed()
    }
}
