//! What a change-feed sync (Gmail) stores beside the index: the account's feed cursor, and
//! the writes of a feed pass inside its transaction (a message's folder links as a whole set,
//! its read flag, its removal). Folders and messages themselves are the index's
//! ([`crate::index`]); links made here have no UID (labels have none).

use sqlx::Row;

use crate::error::Result;
use crate::tx::{Db, WriteTx, with_conn};
use crate::{Store, with_pool};

/// The account's feed cursor and when it was stored; `None` before its first complete
/// listing.
pub async fn cursor(store: &Store, account_id: &str) -> Result<Option<(String, i64)>> {
    Ok(with_pool!(store, pool => {
        sqlx::query_as("SELECT cursor, updated_at FROM feed_cursors WHERE account_id = $1")
            .bind(account_id)
            .fetch_optional(pool)
            .await?
    }))
}

/// Stores the account's feed cursor (in the transaction of the pass's last writes).
pub async fn set_cursor_in(db: Db<'_>, account_id: &str, cursor: &str, now_ms: i64) -> Result<()> {
    with_conn!(db, c => {
        sqlx::query(
            "INSERT INTO feed_cursors (account_id, cursor, updated_at) VALUES ($1, $2, $3) \
             ON CONFLICT (account_id) DO UPDATE SET cursor = excluded.cursor, updated_at = excluded.updated_at",
        )
        .bind(account_id)
        .bind(cursor)
        .bind(now_ms)
        .execute(&mut *c)
        .await?;
    });
    Ok(())
}

/// An indexed message of a feed account as the feed sync compares it: its id, read flag and
/// folders (folder ids).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedState {
    pub id: String,
    pub read: bool,
    pub folders: Vec<String>,
}

/// The indexed message with this provider id, with its read flag and folders.
pub async fn state_in(
    db: Db<'_>,
    account_id: &str,
    provider_id: &str,
) -> Result<Option<FeedState>> {
    with_conn!(db, c => {
        let row: Option<(String, bool)> = sqlx::query_as(
            "SELECT id, read FROM messages WHERE account_id = $1 AND provider_id = $2",
        )
        .bind(account_id)
        .bind(provider_id)
        .fetch_optional(&mut *c)
        .await?;
        match row {
            None => Ok(None),
            Some((id, read)) => {
                let folders = sqlx::query("SELECT folder FROM message_folders WHERE message = $1 ORDER BY folder")
                    .bind(&id)
                    .fetch_all(&mut *c)
                    .await?
                    .iter()
                    .map(|r| r.try_get(0))
                    .collect::<std::result::Result<Vec<String>, _>>()?;
                Ok(Some(FeedState { id, read, folders }))
            }
        }
    })
}

/// The provider ids of every indexed message of the account (a resync's "what do we know").
pub async fn provider_ids(store: &Store, account_id: &str) -> Result<Vec<String>> {
    let rows: Vec<(String,)> = with_pool!(store, pool => {
        sqlx::query_as("SELECT provider_id FROM messages WHERE account_id = $1")
            .bind(account_id)
            .fetch_all(pool)
            .await?
    });
    Ok(rows.into_iter().map(|(p,)| p).collect())
}

/// Makes the message's folder links exactly `folders` (folder ids, no UID).
pub async fn set_folders_in(
    tx: &mut WriteTx,
    message_id: &str,
    folders: &[String],
) -> Result<bool> {
    let mut changed = false;
    with_conn!(Db::Tx(tx), c => {
        let have = sqlx::query("SELECT folder FROM message_folders WHERE message = $1")
            .bind(message_id)
            .fetch_all(&mut *c)
            .await?
            .iter()
            .map(|r| r.try_get(0))
            .collect::<std::result::Result<Vec<String>, _>>()?;
        for f in have.iter().filter(|f| !folders.contains(f)) {
            changed = true;
            sqlx::query("DELETE FROM message_folders WHERE message = $1 AND folder = $2")
                .bind(message_id)
                .bind(f)
                .execute(&mut *c)
                .await?;
        }
        for f in folders.iter().filter(|f| !have.contains(f)) {
            changed = true;
            sqlx::query(
                "INSERT INTO message_folders (message, folder, uid) VALUES ($1, $2, NULL) \
                 ON CONFLICT (message, folder) DO NOTHING",
            )
            .bind(message_id)
            .bind(f)
            .execute(&mut *c)
            .await?;
        }
    });
    Ok(changed)
}

/// Sets the read flag; true when it changed.
pub async fn set_read_in(
    tx: &mut WriteTx,
    message_id: &str,
    read: bool,
    now_ms: i64,
) -> Result<bool> {
    let n = with_conn!(Db::Tx(tx), c => {
        sqlx::query("UPDATE messages SET read = $1, updated_at = $2 WHERE id = $3 AND read <> $1")
            .bind(read).bind(now_ms).bind(message_id)
            .execute(&mut *c).await?.rows_affected()
    });
    Ok(n == 1)
}

/// Removes a message from the index (its links go with it); true when it was there.
pub async fn delete_message_in(tx: &mut WriteTx, message_id: &str) -> Result<bool> {
    let n = with_conn!(Db::Tx(tx), c => {
        sqlx::query("DELETE FROM messages WHERE id = $1")
            .bind(message_id).execute(&mut *c).await?.rows_affected()
    });
    Ok(n == 1)
}
