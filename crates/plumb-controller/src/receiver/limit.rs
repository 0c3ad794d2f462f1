//! Per-client rate limit of the webhook server: a token bucket per client address, so one
//! noisy or hostile client is answered 429 while every other client is still served.
//!
//! The client is the TCP peer (an IPv6 peer by its /64, which one host can rotate
//! within); `X-Forwarded-For` is not trusted, since anyone can send it. The table of
//! clients is bounded: when it is full, buckets that have refilled (idle clients, which a
//! fresh bucket would treat the same) are dropped, then the longest idle one.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Rate limit settings.
#[derive(Debug, Clone, Copy)]
pub struct RateLimit {
    /// Requests a client may make at once.
    pub burst: u32,
    /// Requests per second a client regains (0 or less: no limit).
    pub per_second: f64,
    /// Clients remembered at most.
    pub max_clients: usize,
}

impl Default for RateLimit {
    /// Burst 20, 5 requests per second, 10 000 clients.
    fn default() -> Self {
        RateLimit {
            burst: 20,
            per_second: 5.0,
            max_clients: 10_000,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// The buckets of every client seen recently.
#[derive(Debug)]
pub(super) struct ClientLimiter {
    limit: RateLimit,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

impl ClientLimiter {
    pub(super) fn new(limit: RateLimit) -> Self {
        ClientLimiter {
            limit,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a token for `peer` at `now`; `Err(wait)` when it has none left, with the time
    /// until its next token (for `Retry-After`).
    pub(super) fn check(&self, peer: IpAddr, now: Instant) -> Result<(), Duration> {
        let (burst, rate) = (f64::from(self.limit.burst.max(1)), self.limit.per_second);
        if rate <= 0.0 || !rate.is_finite() {
            return Ok(());
        }
        let key = client_key(peer);
        let Ok(mut buckets) = self.buckets.lock() else {
            // A panic elsewhere poisoned the table: serve rather than lock everyone out.
            return Ok(());
        };
        if !buckets.contains_key(&key) && buckets.len() >= self.limit.max_clients.max(1) {
            evict(&mut buckets, now, burst / rate);
        }
        let bucket = buckets.entry(key).or_insert(Bucket {
            tokens: burst,
            last: now,
        });
        let elapsed = now.saturating_duration_since(bucket.last).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate).min(burst);
        bucket.last = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / rate))
        }
    }

    #[cfg(test)]
    fn clients(&self) -> usize {
        self.buckets.lock().map(|b| b.len()).unwrap_or(0)
    }
}

/// Frees room for one client: drops refilled buckets, else the longest idle one.
fn evict(buckets: &mut HashMap<IpAddr, Bucket>, now: Instant, refill_secs: f64) {
    let full_after = Duration::from_secs_f64(refill_secs);
    let before = buckets.len();
    buckets.retain(|_, b| now.saturating_duration_since(b.last) < full_after);
    if buckets.len() < before {
        return;
    }
    if let Some(oldest) = buckets.iter().min_by_key(|(_, b)| b.last).map(|(k, _)| *k) {
        buckets.remove(&oldest);
    }
}

/// The address a client is limited by: an IPv4 address, an IPv6 /64.
fn client_key(peer: IpAddr) -> IpAddr {
    match peer {
        IpAddr::V4(_) => peer,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(burst: u32, per_second: f64, max_clients: usize) -> ClientLimiter {
        ClientLimiter::new(RateLimit {
            burst,
            per_second,
            max_clients,
        })
    }

    #[test]
    fn a_client_gets_its_burst_then_waits_for_refill() {
        let l = limiter(3, 2.0, 10);
        let (a, b) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let t = Instant::now();
        for _ in 0..3 {
            assert!(l.check(a, t).is_ok());
        }
        let wait = l.check(a, t).unwrap_err();
        assert_eq!(wait, Duration::from_millis(500));
        // Another client is unaffected.
        assert!(l.check(b, t).is_ok());
        // Half a second later a has one token again, and only one.
        let later = t + Duration::from_millis(500);
        assert!(l.check(a, later).is_ok());
        assert!(l.check(a, later).is_err());
    }

    #[test]
    fn the_client_table_stays_bounded() {
        let l = limiter(2, 1.0, 100);
        let t = Instant::now();
        for i in 0..10_000u32 {
            let ip = IpAddr::V4(std::net::Ipv4Addr::from(i));
            let _ = l.check(ip, t + Duration::from_micros(u64::from(i)));
            assert!(l.clients() <= 100);
        }
        // Idle clients are dropped first: after the refill time the table is emptied at once.
        let much_later = t + Duration::from_secs(60);
        assert!(l.check("192.0.2.1".parse().unwrap(), much_later).is_ok());
        assert_eq!(l.clients(), 1);
    }

    #[test]
    fn an_ipv6_host_cannot_escape_by_rotating_its_interface_id() {
        let l = limiter(1, 0.1, 10);
        let t = Instant::now();
        assert!(l.check("2001:db8::1".parse().unwrap(), t).is_ok());
        assert!(l.check("2001:db8::2".parse().unwrap(), t).is_err());
        assert!(l.check("2001:db8:0:1::1".parse().unwrap(), t).is_ok());
        assert!(l.check("::ffff:10.0.0.1".parse().unwrap(), t).is_ok());
        assert!(l.check("10.0.0.1".parse().unwrap(), t).is_err());
    }

    #[test]
    fn no_rate_means_no_limit() {
        let l = limiter(1, 0.0, 1);
        for _ in 0..100 {
            assert!(l.check("10.0.0.1".parse().unwrap(), Instant::now()).is_ok());
        }
    }
}
