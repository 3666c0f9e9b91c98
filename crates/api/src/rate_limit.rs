//! API rate limits per key (GCRA, `governor`): a key may make `rate` requests per second on
//! this node, in bursts of up to `rate`; past that, 429 `errors/too_many_requests` with
//! `Retry-After`. The rate is the key's own (`keys create --rate`) or the server's default
//! (`MAILROOM_API_RATE_PER_SECOND`, 0 = no limit). Each node keeps its own budget: N nodes
//! behind a load balancer let a key make up to N times the rate (docs/security.md).

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use mailroom_store::api_keys::KeyIdentity;

/// The limiters of the keys seen by this process.
pub struct KeyLimits {
    default_rate: u32,
    limiters: Mutex<HashMap<String, (u32, Arc<DefaultDirectRateLimiter>)>>,
}

impl KeyLimits {
    /// `default_rate` requests per second for keys without their own rate; 0: no limit.
    pub fn new(default_rate: u32) -> Self {
        Self {
            default_rate,
            limiters: Mutex::new(HashMap::new()),
        }
    }

    /// `Ok` when `key` may make a request now, else how long until it may.
    pub fn check(&self, key: &KeyIdentity) -> Result<(), Duration> {
        let rate = key.rate_per_second.unwrap_or(self.default_rate);
        let Some(per_second) = NonZeroU32::new(rate) else {
            return Ok(());
        };
        let limiter = {
            let mut map = self.limiters.lock().unwrap_or_else(|p| p.into_inner());
            let entry = map.entry(key.key_id.clone()).or_insert_with(|| {
                (
                    rate,
                    Arc::new(RateLimiter::direct(Quota::per_second(per_second))),
                )
            });
            // A key whose rate was changed gets a fresh budget at its new rate.
            if entry.0 != rate {
                *entry = (
                    rate,
                    Arc::new(RateLimiter::direct(Quota::per_second(per_second))),
                );
            }
            entry.1.clone()
        };
        limiter
            .check()
            .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }
}

/// `Retry-After` in whole seconds, never 0 (a client retrying at once would be refused again).
pub fn retry_after_secs(wait: Duration) -> u64 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    secs.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mailroom_store::api_keys::Scopes;

    fn key(id: &str, rate: Option<u32>) -> KeyIdentity {
        KeyIdentity {
            key_id: id.into(),
            workspace_id: "w".into(),
            scopes: Scopes::ALL,
            rate_per_second: rate,
            accounts: None,
        }
    }

    #[test]
    fn a_burst_past_the_rate_is_refused_per_key() {
        let limits = KeyLimits::new(3);
        let a = key("a", None);
        for _ in 0..3 {
            assert!(limits.check(&a).is_ok());
        }
        let wait = limits.check(&a).unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_millis(334),
            "{wait:?}"
        );
        // Another key has its own budget; a key's own rate wins over the default.
        assert!(limits.check(&key("b", None)).is_ok());
        let fast = key("c", Some(10));
        assert_eq!((0..10).filter(|_| limits.check(&fast).is_ok()).count(), 10);
        assert!(limits.check(&fast).is_err());
        // 0: no limit.
        let open = KeyLimits::new(0);
        assert!((0..1000).all(|_| open.check(&a).is_ok()));
    }

    #[test]
    fn retry_after_rounds_up_and_is_never_zero() {
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1500)), 2);
        assert_eq!(retry_after_secs(Duration::from_secs(2)), 2);
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
    }
}
