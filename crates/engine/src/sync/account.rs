//! One account's sync loop, run by the process holding its lease:
//!
//! ```text
//! CONNECTING → pass → OK → wait (change, sweep timer, nudge) → pass → …
//!                 ╰→ transient failure: ERROR (reason), jittered backoff, pass again
//!                 ╰→ refused login: CREDENTIALS, no more attempts until a reconnect/restart
//!                 ╰→ the server refused the sync itself (not the login, not "later"), three
//!                    passes in a row over at least `stop_after` (15 min): STOPPED (reason),
//!                    no more attempts until a reconnect/restart
//! ```
//!
//! Beside it a heartbeat renews the lease and reads the requests other processes wrote on it
//! (a pass now, a restart). A heartbeat that finds the lease gone (expired and taken, or the
//! account deleted) stops the loop at once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use mailroom_core::account::SourceStatus;
use mailroom_providers::mailbox::{Changes, Watch, WatchOptions};
use mailroom_store::accounts::{self, Account};
use mailroom_store::sync_leases::{self, Requests};
use mailroom_store::{Db, StoreError};

use super::backoff::Backoff;
use super::control::AccountSignals;
use super::imap::SyncError;
use super::push::{self, Tended};
use super::status;
use super::sync_once;
use crate::Engine;
use crate::mailboxes::OpenError;

/// How an account's loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The supervisor stopped it (shutdown, or a share handed to another process): the lease
    /// was released.
    Stopped,
    /// The account was deleted.
    Deleted,
    /// The lease was lost (not renewed in time and taken by another process).
    LeaseLost,
}

/// Runs `account_id`'s loop under a lease already taken, until `stop`, the account's deletion
/// or the lease's loss; releases the lease unless it was lost.
pub async fn run(engine: Engine, account_id: String, stop: CancellationToken) -> Ended {
    let signals = engine.sync.register(&account_id);
    let lost = CancellationToken::new();
    let heartbeat = tokio::spawn(heartbeat(
        engine.clone(),
        account_id.clone(),
        signals.clone(),
        stop.clone(),
        lost.clone(),
    ));
    let ended = tokio::select! {
        _ = stop.cancelled() => Ended::Stopped,
        _ = lost.cancelled() => Ended::LeaseLost,
        ended = account_loop(&engine, &account_id, &signals) => ended,
    };
    heartbeat.abort();
    let _ = heartbeat.await;
    engine.sync.unregister(&account_id);
    if ended != Ended::LeaseLost
        && let Err(e) = sync_leases::release(&engine.store, &account_id, engine.sync.owner()).await
    {
        tracing::warn!(account_id, error = %e, "could not release a sync lease; it will expire");
    }
    match ended {
        Ended::LeaseLost => {
            tracing::warn!(
                account_id,
                "sync lease lost; this process stopped syncing the account"
            )
        }
        _ => tracing::debug!(account_id, ?ended, "sync loop ended"),
    }
    ended
}

fn lease_until(engine: &Engine, now_ms: i64) -> i64 {
    now_ms + engine.sync.config().lease_ttl.as_millis() as i64
}

/// Renews the lease every heartbeat and passes on the requests found on it. Cancels `lost`
/// when the lease is gone, or when it could not be renewed before it expired.
async fn heartbeat(
    engine: Engine,
    account_id: String,
    signals: Arc<AccountSignals>,
    stop: CancellationToken,
    lost: CancellationToken,
) {
    let config = engine.sync.config().clone();
    let mut seen: Option<Requests> = None;
    let mut renewed = Instant::now();
    loop {
        let now = engine.clock.now_ms();
        match sync_leases::renew(
            &engine.store,
            &account_id,
            engine.sync.owner(),
            now,
            lease_until(&engine, now),
        )
        .await
        {
            Ok(Some(requests)) => {
                renewed = Instant::now();
                // The first reading is the baseline: what was asked before we held the lease
                // is served by the pass every loop starts with.
                // A request this process passed on directly is not passed on again.
                if let Some(before) = seen {
                    if let Some(at) = requests.restart_requested_at
                        && requests.restart_requested_at > before.restart_requested_at
                        && !signals.already_restarted(at)
                    {
                        signals.restart();
                    } else if let Some(at) = requests.resync_requested_at
                        && requests.resync_requested_at > before.resync_requested_at
                        && !signals.already_resynced(at)
                    {
                        signals.nudge();
                    }
                }
                seen = Some(requests);
            }
            Ok(None) => {
                lost.cancel();
                return;
            }
            Err(e) => {
                tracing::warn!(account_id, error = %e, "could not renew a sync lease");
                if renewed.elapsed() >= config.lease_ttl {
                    lost.cancel();
                    return;
                }
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(config.heartbeat) => {}
        }
    }
}

/// What woke a waiting loop.
enum Woken {
    /// Something may have changed (a push, a nudge, a restart).
    Change,
    /// The sweep timer: look at everything again.
    Sweep,
}

/// With push on every folder (NOTIFY) the sweep is only a safety net: this many sweep periods
/// apart (15 minutes by default) instead of one.
const SWEEP_FACTOR_WITH_NOTIFY: u32 = 15;

/// The account's push watch (IMAP NOTIFY or IDLE, Gmail's `users.watch`, a Graph
/// subscription), opened after a successful pass and kept across passes; `None` where the
/// provider has none or it failed (then sweeps alone).
struct Push {
    watch: Option<Watch>,
    /// The account version it was opened at: a reconnect opens it anew.
    version: i64,
    /// Watches that failed (to open, or later) are opened again only after a backoff of their
    /// own: a server that drops the watch's session right after its login (while passes go on
    /// over a pooled session) sees no more than one watch login per backoff.
    backoff: Backoff,
    not_before: Option<Instant>,
    /// When the current watch opened: one that lived longer than the longest backoff ends
    /// the run of failures.
    opened_at: Option<Instant>,
    max_wait: Duration,
    options: WatchOptions,
}

impl Push {
    fn new(config: &super::SyncConfig) -> Self {
        Self {
            watch: None,
            version: 0,
            backoff: Backoff::new(config.backoff_min, config.backoff_max),
            not_before: None,
            opened_at: None,
            max_wait: config.backoff_max,
            options: WatchOptions {
                subscription_lifetime: config.subscription_lifetime,
                ..WatchOptions::default()
            },
        }
    }

    /// The watch failed: drop it and wait a backoff before the next one.
    fn lost(&mut self) {
        if self
            .opened_at
            .take()
            .is_some_and(|t| t.elapsed() > self.max_wait)
        {
            self.backoff.reset();
        }
        self.watch = None;
        self.not_before = Some(Instant::now() + self.backoff.next_wait());
    }

    /// Opens the watch if there is none for this version (and no backoff runs). A failure is
    /// logged and leaves the loop on sweeps; a later successful pass tries again.
    /// A watch kept is first tended (`push::tend`: lifecycle requests of its subscription);
    /// one whose subscription must be replaced is opened anew at once, one whose subscription
    /// is no longer stored is dropped as lost.
    async fn ensure(&mut self, engine: &Engine, account: &Account) {
        if self.version == account.updated_at
            && let Some(w) = self.watch.as_mut()
        {
            match push::tend(engine, account, w).await {
                Tended::Keep => return,
                Tended::Replace => self.watch = None,
                Tended::Drop => return self.lost(),
            }
        }
        if self.version != account.updated_at {
            self.backoff.reset();
            self.not_before = None;
        }
        if self.not_before.is_some_and(|t| Instant::now() < t) {
            return;
        }
        // One watch per account: the old one (an older version) goes before the new one opens.
        self.watch = None;
        self.version = account.updated_at;
        let opened = match engine.mailboxes().open(account).await {
            Ok(mailbox) => match mailbox.watch_with(self.options).await {
                Ok(w) => push::adopt(engine, account, &mailbox, w).await,
                Err(e) => {
                    // Refused for good (not "later", not the login): what earlier watches
                    // left at the provider goes.
                    if !e.is_transient() && !e.is_auth() && !e.is_quota() {
                        push::refused(engine, account, &mailbox).await;
                    }
                    Err(e.to_string())
                }
            },
            Err(e) => Err(e.to_string()),
        };
        match opened {
            Ok(w) => {
                tracing::debug!(account_id = %account.id, all_folders = w.covers_all_folders(), "push watch open");
                self.watch = Some(w);
                self.not_before = None;
                self.opened_at = Some(Instant::now());
            }
            Err(e) => {
                tracing::debug!(account_id = %account.id, error = %e, "no push watch; sweeps only");
                self.lost();
            }
        }
    }
}

/// Waits until something may have changed in the mailbox (the push watch says so, or a nudge),
/// or the sweep is due. Without a watch covering every folder the sweep is `sweep` (new mail
/// in Sent or Archive is seen within it); with NOTIFY it is [`SWEEP_FACTOR_WITH_NOTIFY`] times
/// longer.
async fn wait_for_change(signals: &AccountSignals, sweep: Duration, push: &mut Push) -> Woken {
    let Some(watch) = push.watch.as_mut() else {
        tokio::select! {
            _ = signals.nudged() => return Woken::Change,
            _ = tokio::time::sleep(sweep) => return Woken::Sweep,
        }
    };
    let wait = if watch.covers_all_folders() {
        sweep.saturating_mul(SWEEP_FACTOR_WITH_NOTIFY)
    } else {
        sweep
    };
    // `next` is cancel-safe: a nudge that wins loses no notification.
    tokio::select! {
        _ = signals.nudged() => Woken::Change,
        r = watch.next(wait) => match r {
            Ok(Changes::Folders(_)) => Woken::Change,
            Ok(Changes::Timeout) => Woken::Sweep,
            Err(e) => {
                // A lost watch: pass now (something may have changed meanwhile); the watch is
                // opened again after that pass.
                tracing::debug!(error = %e, "push watch lost");
                push.lost();
                Woken::Change
            }
        },
    }
}

/// Waits out a backoff; only a restart cuts it short (a nudge does not: the backoff is what
/// keeps a failing server from a login storm).
async fn wait_backoff(signals: &AccountSignals, wait: Duration) {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => return,
            _ = signals.nudged() => {
                if signals.restart_pending() {
                    return;
                }
            }
        }
    }
}

/// Passes in a row that the provider refuses for good (see [`Failure::Refused`]) before the
/// account is `STOPPED`, over at least `SyncConfig::stop_after`: one odd answer or a server
/// restarting does not stop a sync, a server that keeps saying no is not asked forever.
const REFUSALS_BEFORE_STOP: u32 = 3;

/// How a pass failed, for the status.
#[derive(Debug, PartialEq, Eq)]
enum Failure {
    /// The provider refused the credentials: `CREDENTIALS`, wait for a reconnect.
    Auth(String),
    /// The provider refused the sync itself, and not as "later" (a `NO`/`BAD` to a command
    /// the sync needs, an OAuth client the provider no longer accepts): `ERROR`, then
    /// `STOPPED` after [`REFUSALS_BEFORE_STOP`] passes in a row spanning `stop_after`.
    Refused(String),
    /// Anything else (network, throttling, our own database): `ERROR`, try again after a
    /// backoff.
    Transient(String),
}

fn classify(e: &SyncError) -> Failure {
    let mail = match e {
        SyncError::Mail(m) | SyncError::Open(OpenError::Mail(m)) => Some(m),
        SyncError::Store(_) | SyncError::Open(OpenError::Store(_)) => None,
    };
    match mail {
        Some(m) if m.is_auth() => Failure::Auth(m.to_string()),
        Some(m) if !m.is_transient() && !m.is_quota() && !m.is_cursor_expired() => {
            Failure::Refused(m.to_string())
        }
        _ => Failure::Transient(e.to_string()),
    }
}

/// The loop proper (see the module docs). Returns only when the account is gone.
async fn account_loop(engine: &Engine, account_id: &str, signals: &AccountSignals) -> Ended {
    let config = engine.sync.config().clone();
    let mut backoff = Backoff::new(config.backoff_min, config.backoff_max);
    // The account version the loop runs at; a new one (a reconnect) starts it afresh.
    let mut version: Option<i64> = None;
    // Set on CREDENTIALS: no attempt until a new version or a restart.
    let mut parked = false;
    let mut synced_once = false;
    // When the last failed attempt ended: the next one starts at least `backoff_min` after
    // it, whatever woke the loop (a restart included), so logins are that far apart.
    let mut last_failure: Option<Instant> = None;
    // Passes in a row the provider refused (Failure::Refused), and when the first of them ended.
    let mut refusals = 0;
    let mut refused_since: Option<Instant> = None;
    let mut push = Push::new(&config);
    loop {
        let account = match accounts::get_any(&engine.store, account_id).await {
            Ok(Some(a)) => a,
            Ok(None) => return Ended::Deleted,
            Err(e) => {
                tracing::warn!(account_id, error = %e, "cannot read the account to sync");
                wait_backoff(signals, backoff.next_wait()).await;
                continue;
            }
        };
        let restart = signals.take_restart();
        // Refused credentials, whoever found them (this loop, the SMTP side, a token
        // refresh): no attempt until a reconnect (which sets OK) or a restart. A loop that
        // takes the account over from another process does not try the password either.
        if account.status.needs_reconnect() && !restart {
            version = Some(account.updated_at);
            parked = true;
            push.watch = None;
            wait_for_change(signals, config.sweep, &mut push).await;
            continue;
        }
        if restart || version != Some(account.updated_at) {
            version = Some(account.updated_at);
            parked = false;
            refusals = 0;
            refused_since = None;
            backoff.reset();
            set_status(engine, &account, SourceStatus::Connecting, None).await;
        }
        if parked {
            push.watch = None;
            wait_for_change(signals, config.sweep, &mut push).await;
            continue;
        }
        if let Some(at) = last_failure {
            let earliest = at + config.backoff_min;
            tokio::time::sleep_until(earliest.into()).await;
        }
        match sync_once(engine, &account).await {
            Ok(report) => {
                backoff.reset();
                last_failure = None;
                refusals = 0;
                refused_since = None;
                if !report.failed.is_empty() {
                    tracing::warn!(account_id, failed = ?report.failed, "some folders could not be synced");
                }
                set_status(engine, &account, SourceStatus::Ok, None).await;
                if !synced_once {
                    // The first complete pass, announced once in the account's life (the
                    // event id has no time in it); later loops only try again after a restart.
                    synced_once = true;
                    if let Err(e) = status::announce(
                        Db::Pool(&engine.store),
                        &account,
                        "SYNC_SUCCESS",
                        "",
                        engine.clock.now_ms(),
                    )
                    .await
                    {
                        tracing::warn!(account_id, error = %e, "cannot record SYNC_SUCCESS");
                    }
                }
                push.ensure(engine, &account).await;
                if let Woken::Sweep = wait_for_change(signals, config.sweep, &mut push).await {
                    tracing::trace!(account_id, "sweep");
                }
            }
            Err(e) => {
                last_failure = Some(Instant::now());
                push.watch = None;
                let failure = classify(&e);
                if let Failure::Refused(_) = failure {
                    refusals += 1;
                    refused_since.get_or_insert_with(Instant::now);
                } else {
                    refusals = 0;
                    refused_since = None;
                }
                let stop = refusals >= REFUSALS_BEFORE_STOP
                    && refused_since.is_some_and(|t| t.elapsed() >= config.stop_after);
                match failure {
                    Failure::Auth(reason) => {
                        set_status(engine, &account, SourceStatus::Credentials, Some(&reason))
                            .await;
                        parked = true;
                    }
                    Failure::Refused(reason) if stop => {
                        tracing::warn!(account_id, error = %reason, "the provider keeps refusing the sync; stopped until a restart or a reconnect");
                        set_status(engine, &account, SourceStatus::Stopped, Some(&reason)).await;
                        parked = true;
                    }
                    Failure::Refused(reason) | Failure::Transient(reason) => {
                        set_status(engine, &account, SourceStatus::Error, Some(&reason)).await;
                        let wait = backoff.next_wait();
                        tracing::info!(account_id, error = %reason, ?wait, "sync pass failed; trying again after a backoff");
                        wait_backoff(signals, wait).await;
                    }
                }
            }
        }
    }
}

async fn set_status(
    engine: &Engine,
    account: &Account,
    status: SourceStatus,
    detail: Option<&str>,
) {
    let result: Result<bool, StoreError> = status::set(
        &engine.store,
        account,
        status,
        detail,
        engine.clock.now_ms(),
    )
    .await;
    if let Err(e) = result {
        tracing::warn!(account_id = %account.id, error = %e, "could not save the account's status");
    }
}
