//! Sync leases: which process syncs which account. A lease is taken with one atomic statement
//! when it is free or expired (or already ours), renewed by its owner's heartbeat (only while
//! it is still the owner) and released on a graceful stop. A killed process's leases expire
//! and another process takes them. `sync_nodes` lists the live processes so each can take a
//! fair share.

use sqlx::Row;

use crate::error::Result;
use crate::{Store, with_pool};

/// Takes the lease of `account_id` for `owner` until `expires_at` if nobody holds a live one
/// (or `owner` already does). Returns whether `owner` holds it now.
pub async fn acquire(
    store: &Store,
    account_id: &str,
    owner: &str,
    now_ms: i64,
    expires_at: i64,
) -> Result<bool> {
    // The conflict arm only fires for an expired lease or our own, so two processes racing
    // for one account cannot both get it: one statement, one row.
    let n = with_pool!(store, pool => {
        sqlx::query(
            "INSERT INTO sync_leases (account_id, owner, expires_at, heartbeat_at) \
             SELECT $1, $2, $3, $4 WHERE EXISTS (SELECT 1 FROM accounts WHERE id = $1) \
             ON CONFLICT (account_id) DO UPDATE SET owner = excluded.owner, \
             expires_at = excluded.expires_at, heartbeat_at = excluded.heartbeat_at \
             WHERE sync_leases.expires_at < $4 OR sync_leases.owner = excluded.owner",
        )
        .bind(account_id)
        .bind(owner)
        .bind(expires_at)
        .bind(now_ms)
        .execute(pool)
        .await?
        .rows_affected()
    });
    Ok(n == 1)
}

/// What a renewal reads back: the requests made to the account's loop.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Requests {
    pub resync_requested_at: Option<i64>,
    pub restart_requested_at: Option<i64>,
}

/// Extends `owner`'s lease to `expires_at`. `None` when `owner` no longer holds it (it expired
/// and another process took it, or the account was deleted): the loop must stop at once.
pub async fn renew(
    store: &Store,
    account_id: &str,
    owner: &str,
    now_ms: i64,
    expires_at: i64,
) -> Result<Option<Requests>> {
    let row = with_pool!(store, pool => {
        sqlx::query(
            "UPDATE sync_leases SET expires_at = $1, heartbeat_at = $2 \
             WHERE account_id = $3 AND owner = $4 \
             RETURNING resync_requested_at, restart_requested_at",
        )
        .bind(expires_at)
        .bind(now_ms)
        .bind(account_id)
        .bind(owner)
        .fetch_optional(pool)
        .await?
        .map(|r| Requests {
            resync_requested_at: r.get(0),
            restart_requested_at: r.get(1),
        })
    });
    Ok(row)
}

/// Gives the lease up (a graceful stop, or a share handed to another process).
pub async fn release(store: &Store, account_id: &str, owner: &str) -> Result<()> {
    with_pool!(store, pool => {
        sqlx::query("DELETE FROM sync_leases WHERE account_id = $1 AND owner = $2")
            .bind(account_id)
            .bind(owner)
            .execute(pool)
            .await?;
    });
    Ok(())
}

/// Asks the account's owner (whichever process) for a sync pass now. Returns whether a lease
/// row was there to carry it (no row: no process syncs the account yet).
pub async fn request_resync(store: &Store, account_id: &str, now_ms: i64) -> Result<bool> {
    request(store, "resync_requested_at", account_id, now_ms).await
}

/// Asks the account's owner to restart the account's loop (see [`request_resync`]).
pub async fn request_restart(store: &Store, account_id: &str, now_ms: i64) -> Result<bool> {
    request(store, "restart_requested_at", account_id, now_ms).await
}

async fn request(store: &Store, column: &str, account_id: &str, now_ms: i64) -> Result<bool> {
    let sql = sqlx::AssertSqlSafe(format!(
        "UPDATE sync_leases SET {column} = $1 WHERE account_id = $2"
    ));
    let n = with_pool!(store, pool => {
        sqlx::query(sql)
            .bind(now_ms)
            .bind(account_id)
            .execute(pool)
            .await?
            .rows_affected()
    });
    Ok(n == 1)
}

/// A lease as stored (tests and diagnostics).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub account_id: String,
    pub owner: String,
    pub expires_at: i64,
    pub heartbeat_at: i64,
    /// The last pass asked for (`request_resync`), Unix ms.
    pub resync_requested_at: Option<i64>,
}

/// Every lease, live or not, by account id.
pub async fn all(store: &Store) -> Result<Vec<Lease>> {
    let rows = with_pool!(store, pool => {
        sqlx::query(
            "SELECT account_id, owner, expires_at, heartbeat_at, resync_requested_at FROM sync_leases \
             ORDER BY account_id",
        )
        .fetch_all(pool)
        .await?
        .into_iter()
        .map(|r| Lease {
            account_id: r.get(0),
            owner: r.get(1),
            expires_at: r.get(2),
            heartbeat_at: r.get(3),
            resync_requested_at: r.get(4),
        })
        .collect()
    });
    Ok(rows)
}

/// Records that `owner` is alive (each supervisor round) and forgets processes silent for
/// longer than `forget_before` allows.
pub async fn node_seen(store: &Store, owner: &str, now_ms: i64, forget_before: i64) -> Result<()> {
    with_pool!(store, pool => {
        sqlx::query(
            "INSERT INTO sync_nodes (owner, started_at, seen_at) VALUES ($1, $2, $2) \
             ON CONFLICT (owner) DO UPDATE SET seen_at = excluded.seen_at",
        )
        .bind(owner)
        .bind(now_ms)
        .execute(pool)
        .await?;
        sqlx::query("DELETE FROM sync_nodes WHERE seen_at < $1")
            .bind(forget_before)
            .execute(pool)
            .await?;
    });
    Ok(())
}

/// How many processes were seen since `since` (this one included once it has been seen).
pub async fn live_nodes(store: &Store, since: i64) -> Result<i64> {
    Ok(with_pool!(store, pool => {
        sqlx::query("SELECT COUNT(*) FROM sync_nodes WHERE seen_at >= $1")
            .bind(since)
            .fetch_one(pool)
            .await?
            .get::<i64, _>(0)
    }))
}

/// A gracefully stopping process leaves the count at once.
pub async fn node_gone(store: &Store, owner: &str) -> Result<()> {
    with_pool!(store, pool => {
        sqlx::query("DELETE FROM sync_nodes WHERE owner = $1")
            .bind(owner)
            .execute(pool)
            .await?;
    });
    Ok(())
}
