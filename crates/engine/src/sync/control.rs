//! What the API asks of an account's sync loop: a pass now (`GET /accounts/{id}/sync`) or a
//! restart (`POST /accounts/{id}/restart`, a reconnect). The owning process may be another
//! one, so a request is written on the account's lease row, where the owner's heartbeat reads
//! it; a loop of this process is also woken at once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use mailroom_core::{ApiError, ErrorKind};
use mailroom_store::accounts::Account;
use mailroom_store::sync_leases;

use super::SyncConfig;
use crate::Engine;
use crate::link::store_error;

/// Wakes one account's loop.
#[derive(Default)]
pub struct AccountSignals {
    nudge: Notify,
    restart: AtomicBool,
    /// The time stamps of the last requests this process passed on directly, so the
    /// heartbeat does not pass them on a second time when it reads them from the lease.
    resync_at: AtomicI64,
    restart_at: AtomicI64,
}

impl AccountSignals {
    /// A pass now (a stored permit if the loop is busy: it passes again when done).
    pub fn nudge(&self) {
        self.nudge.notify_one();
    }

    /// Restart the loop: backoff forgotten, `CREDENTIALS` tried again, then a pass.
    pub fn restart(&self) {
        self.restart.store(true, Ordering::SeqCst);
        self.nudge.notify_one();
    }

    /// Whether a request read from the lease (at `at`) was already passed on directly.
    pub(crate) fn already_resynced(&self, at: i64) -> bool {
        self.resync_at.load(Ordering::SeqCst) == at
    }

    pub(crate) fn already_restarted(&self, at: i64) -> bool {
        self.restart_at.load(Ordering::SeqCst) == at
    }

    pub(crate) async fn nudged(&self) {
        self.nudge.notified().await
    }

    pub(crate) fn restart_pending(&self) -> bool {
        self.restart.load(Ordering::SeqCst)
    }

    pub(crate) fn take_restart(&self) -> bool {
        self.restart.swap(false, Ordering::SeqCst)
    }
}

/// This process's side of sync ownership: its owner id in the lease table, the supervisor's
/// configuration, and the signals of the loops it runs. Cheap to clone.
#[derive(Clone)]
pub struct SyncControl {
    inner: Arc<Inner>,
}

struct Inner {
    owner: String,
    config: SyncConfig,
    loops: Mutex<HashMap<String, Arc<AccountSignals>>>,
}

impl SyncControl {
    pub fn new(config: SyncConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                owner: mailroom_core::new_id(),
                config,
                loops: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// This process's random id in the lease table (logged when the supervisor starts).
    pub fn owner(&self) -> &str {
        &self.inner.owner
    }

    pub fn config(&self) -> &SyncConfig {
        &self.inner.config
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<AccountSignals>>> {
        self.inner.loops.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The signals of a loop this process is starting for `account_id`.
    pub(crate) fn register(&self, account_id: &str) -> Arc<AccountSignals> {
        self.lock()
            .entry(account_id.to_owned())
            .or_default()
            .clone()
    }

    pub(crate) fn unregister(&self, account_id: &str) {
        self.lock().remove(account_id);
    }

    /// The signals of this process's loop for `account_id`, if it runs one.
    pub fn local(&self, account_id: &str) -> Option<Arc<AccountSignals>> {
        self.lock().get(account_id).cloned()
    }

    /// Whether this process runs a loop for `account_id`.
    pub fn runs(&self, account_id: &str) -> bool {
        self.lock().contains_key(account_id)
    }
}

/// Why a sync request cannot be taken.
fn not_synced(account: &Account) -> ApiError {
    ApiError::new(
        ErrorKind::InvalidAccount,
        format!(
            "account {} is a {} account, whose mailbox sync is not built yet",
            account.id,
            account.account_type.as_str()
        ),
    )
}

/// `GET /accounts/{id}/sync`: a sync pass now, by whichever process owns the account.
pub async fn resync(engine: &Engine, account: &Account) -> Result<(), ApiError> {
    if !engine.providers.syncs(account.account_type) {
        return Err(not_synced(account));
    }
    let now = engine.clock.now_ms();
    sync_leases::request_resync(&engine.store, &account.id, now)
        .await
        .map_err(store_error)?;
    if let Some(s) = engine.sync.local(&account.id) {
        s.resync_at.store(now, Ordering::SeqCst);
        s.nudge();
    }
    Ok(())
}

/// `POST /accounts/{id}/restart` (and every reconnect): the account's loop starts afresh.
pub async fn restart(engine: &Engine, account: &Account) -> Result<(), ApiError> {
    if !engine.providers.syncs(account.account_type) {
        return Err(not_synced(account));
    }
    restart_loop(engine, &account.id).await.map_err(store_error)
}

/// Asks the owner of `account_id`'s loop to restart it (no-op when no process syncs it).
pub(crate) async fn restart_loop(
    engine: &Engine,
    account_id: &str,
) -> Result<(), mailroom_store::StoreError> {
    let now = engine.clock.now_ms();
    sync_leases::request_restart(&engine.store, account_id, now).await?;
    if let Some(s) = engine.sync.local(account_id) {
        s.restart_at.store(now, Ordering::SeqCst);
        s.restart();
    }
    Ok(())
}

/// A Gmail push (Cloud Pub/Sub) said the mailbox `email` changed: every Gmail account of that
/// address (in any workspace) gets a pass now, by whichever process syncs it, exactly as
/// `GET /accounts/{id}/sync` does. The pass reads the history from the *stored* history id,
/// not the pushed one (a push is a hint; pushes may be lost, repeated or out of order, and
/// a push and a poll that see the same change announce it once). Answers how many accounts
/// were nudged.
pub async fn gmail_pushed(
    engine: &Engine,
    email: &str,
) -> Result<usize, mailroom_store::StoreError> {
    // Which accounts a Gmail push can concern is the seam's knowledge.
    let pushed = mailroom_providers::provider::gmail_push_account_type();
    let accounts = mailroom_store::accounts::of_type(&engine.store, pushed).await?;
    let now = engine.clock.now_ms();
    let mut n = 0;
    for a in accounts {
        if !a.settings.address().eq_ignore_ascii_case(email.trim()) {
            continue;
        }
        request_pass(engine, &a.id, now).await?;
        n += 1;
    }
    Ok(n)
}

/// A pass of `account_id` now, by whichever process syncs it: a request stored on its lease
/// row (read by the owner's heartbeat), and this process's loop woken at once if it runs it.
/// What a push does: the pass reads from the stored cursor, so a push is only a hint.
pub(crate) async fn request_pass(
    engine: &Engine,
    account_id: &str,
    now_ms: i64,
) -> Result<(), mailroom_store::StoreError> {
    sync_leases::request_resync(&engine.store, account_id, now_ms).await?;
    if let Some(local) = engine.sync.local(account_id) {
        local.resync_at.store(now_ms, Ordering::SeqCst);
        local.nudge();
    }
    Ok(())
}
