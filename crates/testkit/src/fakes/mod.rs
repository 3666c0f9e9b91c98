//! Faithful fakes of the hosted providers, built from their published formats (the Gmail
//! discovery document, the Microsoft Graph and identity platform docs), including their
//! errors, limits and throttling. Usable in-process by tests and standalone through the
//! `mailroom-fakes` binary.

pub mod google;
pub mod microsoft;

use std::time::Duration;

/// A fault to inject into the next matching requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Answer 429 with `Retry-After: secs` (and the provider's throttling error body).
    Throttle { retry_after_secs: u64 },
    /// Google only: 403 with reason `rateLimitExceeded`.
    RateLimit403,
    /// Answer 500 (Google `backendError`) / 503 (Graph `ServiceUnavailable`).
    ServerError,
    /// Wait this long before answering normally.
    Latency(Duration),
}
