//! The outbox sender, by job:
//!
//! - [`attempt`]: claim an attempt of a stored job, and record what came of it (sent, retried
//!   with exponential backoff and jitter, or failed with the closest error slug). The one place
//!   that turns a provider failure into an outcome.
//! - [`transmit`]: hand the stored bytes to the account's mailbox (the seam).
//! - [`copies`]: file sent mail in the Sent folder when the provider keeps no copy (IMAP), in
//!   batches over the account's pooled IMAP session.
//! - [`limits`]: the account's send limits: whether a job may go now, or when it will.
//! - [`worker`]: the background loop that picks up every due job and copy, including jobs whose
//!   process died mid-attempt, and waits for attempts under way at shutdown.

mod attempt;
mod copies;
pub mod limits;
mod transmit;
mod worker;

use std::sync::Arc;
use std::time::Duration;

use rand::Rng as _;
use tokio::sync::{Notify, Semaphore};
use tokio_util::task::TaskTracker;

use mailroom_core::{Clock, ErrorKind};
use mailroom_store::outbox::{self, Job};
use mailroom_store::{Store, StoreError};

use crate::mailboxes::Mailboxes;

/// Retry policy and timing of the outbox.
#[derive(Debug, Clone)]
pub struct OutboxConfig {
    /// Deadline of one attempt (connect, authenticate, transmit).
    pub send_timeout: Duration,
    /// Attempts before a transiently failing job is given up.
    pub max_attempts: i64,
    /// How long after acceptance a job may still be retried.
    pub retry_horizon: Duration,
    /// First retry delay; doubles per attempt (with ±25 % jitter) up to `retry_cap`.
    pub retry_base: Duration,
    pub retry_cap: Duration,
    /// How often the worker looks for due jobs when nothing woke it.
    pub poll_interval: Duration,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        Self {
            send_timeout: Duration::from_secs(30),
            max_attempts: 10,
            retry_horizon: Duration::from_secs(48 * 3600),
            retry_base: Duration::from_secs(30),
            retry_cap: Duration::from_secs(3600),
            poll_interval: Duration::from_secs(1),
        }
    }
}

/// What an attempt came to.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Sent {
        provider_id: String,
    },
    /// Will be retried at `run_after`.
    Retrying {
        kind: ErrorKind,
        detail: String,
        run_after: i64,
    },
    /// Failed for good.
    Failed {
        kind: ErrorKind,
        detail: String,
    },
    /// Waits for its account's send window, or for the pause a provider's quota answer put
    /// on the account's sends: goes at `until` (no attempt spent).
    Waiting {
        until: i64,
    },
    /// Another node holds the job now (our lease expired); it reports the outcome.
    NotOurs,
}

#[derive(Clone)]
pub struct Outbox {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    clock: Arc<dyn Clock>,
    mailboxes: Mailboxes,
    node: String,
    config: OutboxConfig,
    wake: Notify,
    slots: Semaphore,
    tasks: TaskTracker,
}

/// How many jobs one node works on at once.
const CONCURRENCY: usize = 32;
/// Slack added to an attempt's deadline for its lease.
const LEASE_MARGIN_MS: i64 = 5_000;
/// Attempts at the Sent copy before it is given up.
const MAX_COPY_ATTEMPTS: i64 = 6;

fn ms(d: Duration) -> i64 {
    d.as_millis() as i64
}

impl Outbox {
    pub fn new(
        store: Store,
        clock: Arc<dyn Clock>,
        mailboxes: Mailboxes,
        config: OutboxConfig,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                clock,
                mailboxes,
                node: mailroom_core::new_id(),
                config,
                wake: Notify::new(),
                slots: Semaphore::new(CONCURRENCY),
                tasks: TaskTracker::new(),
            }),
        }
    }

    /// The account's send limits (its settings over its provider's defaults) and pause.
    pub async fn limits_of(
        &self,
        db: mailroom_store::tx::Db<'_>,
        account: &mailroom_store::accounts::Account,
    ) -> Result<limits::Limits, StoreError> {
        limits::of(db, self.inner.mailboxes.providers(), account).await
    }

    /// [`limits::locked`] with this outbox's view of the providers.
    pub async fn locked_limits(
        &self,
        tx: &mut mailroom_store::WriteTx,
        account: &mailroom_store::accounts::Account,
        now_ms: i64,
    ) -> Result<(limits::Limits, mailroom_store::send_limits::Usage), StoreError> {
        limits::locked(tx, self.inner.mailboxes.providers(), account, now_ms).await
    }

    pub fn config(&self) -> &OutboxConfig {
        &self.inner.config
    }

    /// This process's id in leases.
    pub fn node(&self) -> &str {
        &self.inner.node
    }

    /// When a lease taken now must end: after the attempt's own deadline.
    pub fn lease_until(&self, now_ms: i64) -> i64 {
        now_ms + ms(self.inner.config.send_timeout) + LEASE_MARGIN_MS
    }

    /// Asks the worker to look for due jobs now.
    pub fn wake(&self) {
        self.inner.wake.notify_one();
    }

    /// The retry delay after `attempts` attempts: exponential, capped, ±25 % jitter.
    pub fn backoff_ms(&self, attempts: i64) -> i64 {
        backoff(&self.inner.config, attempts)
    }

    /// How long an attempt of a message of `bytes` may take: the send timeout, plus a second per
    /// 256 KiB (uploads at the floor rate the provider clients assume).
    pub fn deadline_for(&self, bytes: i64) -> Duration {
        self.inner.config.send_timeout + Duration::from_secs((bytes.max(0) as u64) / (256 * 1024))
    }

    /// The token of a claim this node makes (see [`outbox::claim_token`]).
    pub fn claim_token(&self, id: &str, attempt: i64) -> String {
        outbox::claim_token(self.node(), id, attempt)
    }

    /// Runs the first attempt of a job just stored (`job` as the insert answered it, its
    /// `account`, its bytes) as a tracked task: shutdown waits for it, and a client that hangs
    /// up does not cancel it.
    pub fn spawn_first_attempt(
        &self,
        job: Job,
        account: mailroom_store::accounts::Account,
        raw: Vec<u8>,
    ) -> tokio::task::JoinHandle<Result<Outcome, StoreError>> {
        let me = self.clone();
        self.inner
            .tasks
            .spawn(async move { me.first_attempt(&job, &account, &raw).await })
    }
}

/// Exponential backoff from `retry_base`, doubling per attempt, capped at `retry_cap`, with
/// ±25 % jitter so retries of many jobs do not arrive together.
fn backoff(c: &OutboxConfig, attempts: i64) -> i64 {
    let exp = attempts.clamp(1, 30) - 1;
    let base = ms(c.retry_base)
        .saturating_mul(1i64 << exp)
        .min(ms(c.retry_cap))
        .max(1);
    let jitter = rand::rng().random_range(-(base / 4)..=(base / 4));
    (base + jitter).max(1)
}

/// The claim a job is held under (set by the claim that started this attempt).
fn claim(job: &Job) -> &str {
    job.locked_by.as_deref().unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_bounded_jitter_and_a_cap() {
        let c = OutboxConfig {
            retry_base: Duration::from_secs(10),
            retry_cap: Duration::from_secs(60),
            ..OutboxConfig::default()
        };
        let base = ms(c.retry_base);
        let cap = ms(c.retry_cap);
        let want = |attempts: i64| (base << (attempts - 1)).min(cap);
        for attempts in 1..=8 {
            for _ in 0..200 {
                let got = backoff(&c, attempts);
                let w = want(attempts);
                assert!(
                    got >= w - w / 4 && got <= w + w / 4,
                    "attempt {attempts}: {got} not within 25% of {w}"
                );
            }
        }
    }
}
