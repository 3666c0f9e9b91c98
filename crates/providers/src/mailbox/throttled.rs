//! Waiting out a provider's throttling (Gmail 429 / 403 `rateLimitExceeded`, Graph 429
//! `ApplicationThrottled`): a throttled call is tried again after the wait the provider names
//! (`Retry-After`), else after an exponential backoff, a few times. A short throttle costs a
//! sync pass some seconds, not a failure; a long one fails it (transient) and the sync loop
//! backs off.

use std::time::Duration;

use crate::failure::MailError;

/// A throttled call is tried again at most this many times …
const QUOTA_RETRIES: u32 = 4;
/// … and only when the provider asks for no longer a wait than this (a sending quota's
/// hours-long `Retry-After` fails the call at once).
const QUOTA_WAIT_MAX: Duration = Duration::from_secs(60);

/// Runs `attempt` until it is not throttled (see the module docs). `attempt` should hold no
/// request slot between tries: the wait happens outside it.
pub(crate) async fn retrying_throttled<T, F, Fut>(mut attempt: F) -> Result<T, MailError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, MailError>>,
{
    let mut tries = 0;
    loop {
        match attempt().await {
            Err(e) if e.is_quota() && tries < QUOTA_RETRIES => {
                let wait = e
                    .retry_after()
                    .unwrap_or(Duration::from_millis(500 << tries));
                if wait > QUOTA_WAIT_MAX {
                    return Err(e);
                }
                tries += 1;
                tracing::debug!(?wait, tries, error = %e, "throttled; waiting");
                tokio::time::sleep(wait).await;
            }
            other => return other,
        }
    }
}

/// A Graph-style call (no quota pacing): in one of the mailbox's request `slots`, with a token
/// from `tokens` (replaced once when refused), tried again after the provider's throttling
/// wait with the slot given back meanwhile.
pub(crate) async fn in_slot<T, F, Fut>(
    slots: &tokio::sync::Semaphore,
    tokens: &dyn super::TokenSource,
    f: F,
) -> Result<T, MailError>
where
    F: Fn(secrecy::SecretString) -> Fut,
    Fut: std::future::Future<Output = Result<T, MailError>>,
{
    retrying_throttled(|| async {
        let _slot = slots.acquire().await.expect("never closed");
        super::with_token(tokens, &f).await
    })
    .await
}
