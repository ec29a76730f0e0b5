//! A token bucket per API token: each call takes one token; buckets refill at the
//! sustained rate up to the burst size. Kept in memory: a restart forgets them.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

/// Per-key token buckets.
#[derive(Debug)]
pub struct RateLimiter {
    per_s: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl RateLimiter {
    /// `per_s` calls per second sustained, `burst` at most at once.
    pub fn new(per_s: u32, burst: u32) -> RateLimiter {
        RateLimiter {
            per_s: f64::from(per_s.max(1)),
            burst: f64::from(burst.max(per_s).max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// The sustained rate.
    pub fn per_s(&self) -> u32 {
        self.per_s as u32
    }

    /// Takes one call from `key`'s bucket; `false` when it is empty.
    pub fn allow(&self, key: &str) -> bool {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        let (level, at) = buckets.entry(key.to_owned()).or_insert((self.burst, now));
        *level = (*level + now.duration_since(*at).as_secs_f64() * self.per_s).min(self.burst);
        *at = now;
        if *level >= 1.0 {
            *level -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_allowed_then_refused() {
        let r = RateLimiter::new(1, 3);
        assert!((0..3).all(|_| r.allow("a")));
        assert!(!r.allow("a"));
        assert!(r.allow("b"), "buckets are per key");
    }
}
