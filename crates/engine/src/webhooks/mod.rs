//! Webhooks, by job:
//!
//! - [`manage`]: the use cases behind `/webhooks` (create with a new signing secret, list,
//!   show, change, delete, rotate the secret, the delivery log, replay).
//! - [`payload`]: a stored event → the body a webhook receives (`webhook_name`, rename map,
//!   JSON or form).
//! - [`sign`]: Standard Webhooks secrets and signatures.
//! - [`dispatch`]: the background worker that claims due deliveries (across processes, like the
//!   outbox), posts them through the SSRF guard, and records each attempt: retried with
//!   backoff and jitter, given up after the configured attempts, a 410 Gone disabling the
//!   webhook.
//!
//! The delivery rows themselves are written with the events (`mailroom_store::events`), so
//! nothing here can lose an event between "recorded" and "queued".

pub mod dispatch;
pub mod manage;
pub mod payload;
pub mod sign;

use std::time::Duration;

pub use dispatch::Webhooks;

/// Delivery policy. The defaults give 14 attempts over about 40 hours.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// Let deliveries reach loopback, private, link-local and multicast addresses
    /// (`MAILROOM_WEBHOOK_ALLOW_PRIVATE`).
    pub allow_private: bool,
    /// Deadline of one attempt (connect, send, answer).
    pub attempt_timeout: Duration,
    /// Attempts before a delivery is given up.
    pub max_attempts: i64,
    /// First retry delay; doubles per attempt (±25 % jitter) up to `retry_cap`.
    pub retry_base: Duration,
    pub retry_cap: Duration,
    /// How often the worker looks for due deliveries when nothing woke it.
    pub poll_interval: Duration,
    /// Runs claimed at once in this process (each posts one attempt at a time).
    pub concurrency: usize,
    /// Attempts under way at once to one destination host (and twice as many runs claimed
    /// for it, so runs are prepared while others post).
    pub per_host: usize,
    /// Slack on top of an attempt's deadline for its lease (it covers the wait between the
    /// claim and the POST, whose deadline is cut to what is left of the lease, and half of it
    /// is kept to record the outcome): after that, another process may take the delivery over.
    pub lease_margin: Duration,
    /// How long a rotated-out secret keeps signing by default.
    pub rotation_overlap: Duration,
    /// Settled deliveries (and their attempt logs) older than this are deleted, hourly;
    /// `None`: kept for ever.
    pub retention: Option<Duration>,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            allow_private: false,
            attempt_timeout: Duration::from_secs(30),
            max_attempts: 14,
            retry_base: Duration::from_secs(60),
            retry_cap: Duration::from_secs(8 * 3600),
            poll_interval: Duration::from_secs(1),
            concurrency: 64,
            per_host: 8,
            lease_margin: Duration::from_secs(15),
            rotation_overlap: Duration::from_secs(24 * 3600),
            retention: Some(Duration::from_secs(30 * 24 * 3600)),
        }
    }
}

fn ms(d: Duration) -> i64 {
    d.as_millis() as i64
}

/// The delay before the next attempt after `attempts`: exponential from `retry_base`, capped,
/// with ±25 % jitter so the retries of many deliveries do not arrive together.
pub fn backoff_ms(c: &WebhookConfig, attempts: i64) -> i64 {
    use rand::Rng as _;
    let exp = attempts.clamp(1, 30) - 1;
    let base = ms(c.retry_base)
        .saturating_mul(1i64 << exp)
        .min(ms(c.retry_cap))
        .max(1);
    let jitter = rand::rng().random_range(-(base / 4)..=(base / 4));
    (base + jitter).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The default policy keeps trying for at least a day, in at least 8 attempts, even with
    /// every delay at the low end of its jitter.
    #[test]
    fn the_default_policy_spans_a_day() {
        let c = WebhookConfig::default();
        assert!(c.max_attempts >= 8);
        let mut least = 0i64;
        for attempts in 1..c.max_attempts {
            let base = (ms(c.retry_base) << (attempts - 1).min(30)).min(ms(c.retry_cap));
            least += base - base / 4;
            let got = backoff_ms(&c, attempts);
            assert!(got >= base - base / 4 && got <= base + base / 4);
        }
        assert!(least >= 24 * 3600 * 1000, "{least} ms");
    }
}
