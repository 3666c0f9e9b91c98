//! How much of an account's existing mail its first sync indexes: fixed when the account is
//! linked (`sync_limit` on `POST /accounts`), read by every sync pass.

use crate::error::Result;
use crate::{Store, with_pool};

/// The window of existing mail a first sync indexes. Both bounds apply when both are set; an
/// account without a stored window has the default one ([`SyncWindow::default_at`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncWindow {
    /// Existing mail that arrived (IMAP INTERNALDATE) before this time is not indexed.
    pub since_ms: Option<i64>,
    /// At most this many of the newest messages per folder.
    pub max_per_folder: Option<i64>,
}

/// The default: the last 30 days.
pub const DEFAULT_DAYS: i64 = 30;

impl SyncWindow {
    /// The default window of an account linked at `linked_ms`.
    pub fn default_at(linked_ms: i64) -> Self {
        Self {
            since_ms: Some(linked_ms - DEFAULT_DAYS * 86_400_000),
            max_per_folder: None,
        }
    }
}

/// Stores the window of `account_id` (once; a second call replaces it).
pub async fn set(store: &Store, account_id: &str, w: SyncWindow, now_ms: i64) -> Result<()> {
    with_pool!(store, pool => {
        sqlx::query(
            "INSERT INTO sync_windows (account_id, since_ms, max_per_folder, created_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (account_id) DO UPDATE \
             SET since_ms = excluded.since_ms, max_per_folder = excluded.max_per_folder",
        )
        .bind(account_id)
        .bind(w.since_ms)
        .bind(w.max_per_folder)
        .bind(now_ms)
        .execute(pool)
        .await?;
    });
    Ok(())
}

/// The stored window of `account_id`, if any.
pub async fn get(store: &Store, account_id: &str) -> Result<Option<SyncWindow>> {
    let row: Option<(Option<i64>, Option<i64>)> = with_pool!(store, pool => {
        sqlx::query_as("SELECT since_ms, max_per_folder FROM sync_windows WHERE account_id = $1")
            .bind(account_id)
            .fetch_optional(pool)
            .await?
    });
    Ok(row.map(|(since_ms, max_per_folder)| SyncWindow {
        since_ms,
        max_per_folder,
    }))
}
