//! A rate limit per key (a client address, a user): the generic cell rate
//! algorithm, one timestamp per key, checked and recorded in one step under
//! a lock, so a burst of concurrent requests cannot slip past it.
//!
//! It counts in one process: with several replicas each allows the rate.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// At most `burst` requests at once per key, refilled at one per `interval`.
#[derive(Debug)]
pub struct KeyedLimiter {
    interval: Duration,
    /// How far ahead of now a key's theoretical arrival time may run.
    tolerance: Duration,
    /// Per key: when its next request would be exactly on schedule.
    arrivals: Mutex<HashMap<String, Instant>>,
    /// Above this many keys, those back on schedule are forgotten.
    max_keys: usize,
}

impl KeyedLimiter {
    /// `per_minute` requests a minute per key on average, `burst` at once.
    pub fn per_minute(per_minute: u32, burst: u32) -> Self {
        let interval = Duration::from_secs(60) / per_minute.max(1);
        Self {
            interval,
            tolerance: interval * burst.max(1).saturating_sub(1),
            arrivals: Mutex::new(HashMap::new()),
            max_keys: 100_000,
        }
    }

    /// Takes one request for `key` now, or says how long until one is allowed.
    pub fn check(&self, key: &str) -> Result<(), Duration> {
        self.check_at(key, Instant::now())
    }

    fn check_at(&self, key: &str, now: Instant) -> Result<(), Duration> {
        let mut arrivals = self.arrivals.lock().unwrap_or_else(|e| e.into_inner());
        if arrivals.len() >= self.max_keys {
            arrivals.retain(|_, at| *at > now);
        }
        let at = arrivals.get(key).copied().unwrap_or(now).max(now);
        if at - now > self.tolerance {
            return Err(at - now - self.tolerance);
        }
        arrivals.insert(key.to_owned(), at + self.interval);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_rate_per_key() {
        let limiter = KeyedLimiter::per_minute(60, 3);
        let start = Instant::now();
        for _ in 0..3 {
            assert_eq!(limiter.check_at("a", start), Ok(()));
        }
        let wait = limiter.check_at("a", start).unwrap_err();
        assert_eq!(wait, Duration::from_secs(1));
        // Another key has its own allowance.
        assert_eq!(limiter.check_at("b", start), Ok(()));
        // One more a second later, and not two.
        let later = start + Duration::from_secs(1);
        assert_eq!(limiter.check_at("a", later), Ok(()));
        assert!(limiter.check_at("a", later).is_err());
        // After a quiet while the whole burst is back, no more.
        let quiet = start + Duration::from_secs(60);
        for _ in 0..3 {
            assert_eq!(limiter.check_at("a", quiet), Ok(()));
        }
        assert!(limiter.check_at("a", quiet).is_err());
    }

    #[test]
    fn concurrent_takers_get_exactly_the_burst() {
        let limiter = std::sync::Arc::new(KeyedLimiter::per_minute(1, 10));
        let taken = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    for _ in 0..10 {
                        if limiter.check("same").is_ok() {
                            taken.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        }
                    }
                });
            }
        });
        assert_eq!(taken.into_inner(), 10);
    }
}
