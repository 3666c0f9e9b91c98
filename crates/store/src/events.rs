//! The event log: what happened, for the webhook dispatcher. An event's id is derived from
//! what it describes, so recording the same change twice is a no-op.

use sha2::{Digest, Sha256};

use crate::error::Result;
use crate::tx::{Db, WriteTx, with_conn};
use crate::webhook_deliveries;
use crate::{Store, with_pool};

/// A deterministic event id from its parts (e.g. `["send_failed", outbox_id]`).
pub fn event_id(parts: &[&str]) -> String {
    use base64::Engine as _;
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0u8]);
    }
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&h.finalize()[..16])
}

pub struct NewEvent<'a> {
    pub id: String,
    pub workspace_id: &'a str,
    pub account_id: Option<&'a str>,
    pub kind: &'a str,
    pub payload: serde_json::Value,
    pub now_ms: i64,
}

/// Records an event unless one with the same id exists.
pub async fn record(store: &Store, e: NewEvent<'_>) -> Result<()> {
    record_in(Db::Pool(store), e).await
}

/// [`record`] on the pool or inside a transaction (a sync pass stores a message and the event
/// announcing it together). A new event queues its webhook deliveries in the same transaction
/// (on the pool, a transaction of its own), so it is never stored without them.
pub async fn record_in(db: Db<'_>, e: NewEvent<'_>) -> Result<()> {
    match db {
        Db::Pool(store) => {
            let mut tx = store.begin_write().await?;
            record_tx(&mut tx, e).await?;
            tx.commit().await
        }
        Db::Tx(tx) => record_tx(tx, e).await,
    }
}

async fn record_tx(tx: &mut WriteTx, e: NewEvent<'_>) -> Result<()> {
    let payload = e.payload.to_string();
    let inserted = with_conn!(Db::Tx(&mut *tx), c => {
        sqlx::query(
            "INSERT INTO events (id, workspace_id, account_id, type, payload, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING",
        )
        .bind(&e.id)
        .bind(e.workspace_id)
        .bind(e.account_id)
        .bind(e.kind)
        .bind(&payload)
        .bind(e.now_ms)
        .execute(&mut *c)
        .await?
        .rows_affected()
    });
    if inserted == 1 {
        webhook_deliveries::fan_out(tx, e.workspace_id, &e.id, e.kind, e.account_id, e.now_ms)
            .await?;
    }
    Ok(())
}

/// Drops every event of a deleted account (nothing is delivered about its mail any more).
pub async fn delete_for_account(store: &Store, account_id: &str) -> Result<u64> {
    delete_for_account_in(Db::Pool(store), account_id).await
}

/// [`delete_for_account`] on the pool or inside a transaction (their deliveries go with them).
pub async fn delete_for_account_in(db: Db<'_>, account_id: &str) -> Result<u64> {
    Ok(with_conn!(db, c => {
        sqlx::query("DELETE FROM events WHERE account_id = $1")
            .bind(account_id)
            .execute(&mut *c)
            .await?
            .rows_affected()
    }))
}

/// Events of a workspace of one type, oldest first (tests and the dispatcher).
pub async fn of_type(
    store: &Store,
    workspace_id: &str,
    kind: &str,
) -> Result<Vec<(String, serde_json::Value)>> {
    use sqlx::Row;
    let rows: Vec<(String, String)> = with_pool!(store, pool => {
        sqlx::query("SELECT id, payload FROM events WHERE workspace_id = $1 AND type = $2 ORDER BY created_at, id")
            .bind(workspace_id)
            .bind(kind)
            .fetch_all(pool)
            .await?
            .into_iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect()
    });
    Ok(rows
        .into_iter()
        .map(|(id, p)| {
            (
                id,
                serde_json::from_str(&p).unwrap_or(serde_json::Value::Null),
            )
        })
        .collect())
}
