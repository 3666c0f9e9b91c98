//! Keeping one mailbox's API calls within a per-user quota measured in units per second
//! (Gmail: 250 units per user per second as a moving average, `messages.get` costing 5), so a
//! first sync of a large mailbox spreads its requests instead of meeting 429s.
//!
//! A generic cell rate algorithm: each call reserves `units / rate` seconds of the budget;
//! up to `burst` units may go at once, then calls wait their turn. The wait is taken before
//! the call, outside any request slot.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One mailbox's quota budget.
#[derive(Debug)]
pub(crate) struct Pacer {
    units_per_sec: f64,
    burst: Duration,
    /// When the budget spent so far is paid back (the "theoretical arrival time").
    paid_until: Mutex<Option<Instant>>,
}

impl Pacer {
    /// `units_per_sec` on average, with bursts of `burst_units`.
    pub(crate) fn new(units_per_sec: u32, burst_units: u32) -> Self {
        let units_per_sec = f64::from(units_per_sec.max(1));
        Self {
            units_per_sec,
            burst: Duration::from_secs_f64(f64::from(burst_units) / units_per_sec),
            paid_until: Mutex::new(None),
        }
    }

    /// How long a call costing `units` must wait now (its cost is reserved).
    fn reserve(&self, units: u32, now: Instant) -> Duration {
        let cost = Duration::from_secs_f64(f64::from(units) / self.units_per_sec);
        let mut paid = self.paid_until.lock().unwrap_or_else(|p| p.into_inner());
        let from = paid.map_or(now, |t| t.max(now));
        let until = from + cost;
        *paid = Some(until);
        until.saturating_duration_since(now + self.burst)
    }

    /// Waits until a call costing `units` fits in the budget.
    pub(crate) async fn take(&self, units: u32) {
        let wait = self.reserve(units, Instant::now());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_goes_at_once_then_calls_are_spaced_by_their_cost() {
        let p = Pacer::new(250, 250);
        let t = Instant::now();
        // 250 units of burst: fifty 5-unit calls without waiting.
        for _ in 0..50 {
            assert_eq!(p.reserve(5, t), Duration::ZERO);
        }
        // Then each 5-unit call waits 20 ms more than the one before.
        let w1 = p.reserve(5, t);
        let w2 = p.reserve(5, t);
        assert!((w1.as_secs_f64() - 0.020).abs() < 1e-6, "{w1:?}");
        assert!((w2.as_secs_f64() - 0.040).abs() < 1e-6, "{w2:?}");
        // After a quiet second the budget is back.
        let later = t + Duration::from_secs(2);
        assert_eq!(p.reserve(5, later), Duration::ZERO);
    }
}
