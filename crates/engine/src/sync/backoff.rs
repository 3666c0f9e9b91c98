//! Jittered exponential backoff for a failing account: never shorter than the minimum (so a
//! server that drops right after login sees at most one login per minimum wait), doubling up
//! to the cap, with up to half again of random jitter so many accounts of one server do not
//! retry in step.

use std::time::Duration;

use rand::Rng as _;

pub(crate) struct Backoff {
    min: Duration,
    max: Duration,
    failures: u32,
}

impl Backoff {
    pub(crate) fn new(min: Duration, max: Duration) -> Self {
        Self {
            min,
            max: max.max(min),
            failures: 0,
        }
    }

    pub(crate) fn reset(&mut self) {
        self.failures = 0;
    }

    /// The wait after one more failure.
    pub(crate) fn next_wait(&mut self) -> Duration {
        let base = self
            .min
            .saturating_mul(1u32 << self.failures.min(16))
            .min(self.max);
        self.failures = self.failures.saturating_add(1);
        let jitter = rand::rng().random_range(0..=base.as_millis() as u64 / 2);
        (base + Duration::from_millis(jitter)).clamp(self.min, self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_below_the_minimum_and_never_above_the_cap() {
        let mut b = Backoff::new(Duration::from_secs(2), Duration::from_secs(300));
        let waits: Vec<Duration> = (0..20).map(|_| b.next_wait()).collect();
        assert!(waits.iter().all(|w| *w >= Duration::from_secs(2)));
        assert!(waits.iter().all(|w| *w <= Duration::from_secs(300)));
        assert!(waits[0] <= Duration::from_secs(3));
        assert!(waits[4] >= Duration::from_secs(32));
        assert_eq!(waits[19], Duration::from_secs(300));
        b.reset();
        assert!(b.next_wait() <= Duration::from_secs(3));
    }
}
