//! Webhook deliveries: one durable row per (webhook, event), written in the transaction that
//! records the event ([`crate::events::record_in`]), so an event is never stored without its
//! deliveries nor a delivery without its event. Like the outbox, an attempt holds a lease
//! (`locked_by`, `locked_until`) so one process delivers a row at a time, and an expired lease
//! (a killed process) makes it claimable again. Rows of one `queue` (a webhook and an account)
//! are claimed in `seq` order, one at a time: a later event is never delivered before an
//! earlier one is settled (delivered or given up).

use std::collections::HashMap;
use std::sync::OnceLock;

use sqlx::Row;
use tokio::sync::Notify;

use crate::error::Result;
use crate::tx::{Db, WriteTx, with_conn};
use crate::webhooks::decode_subscription;
use crate::{Store, with_pool};

/// Wakes the dispatchers of this process when a transaction that queued deliveries commits
/// (so delivery does not wait for their next poll). Other processes find the rows at theirs.
pub fn signal() -> &'static Notify {
    static SIGNAL: OnceLock<Notify> = OnceLock::new();
    SIGNAL.get_or_init(Notify::new)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryStatus {
    Pending,
    Delivering,
    Delivered,
    /// Out of attempts, or the receiver answered 410 Gone.
    Failed,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivering => "delivering",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Self {
        match s {
            "delivering" => Self::Delivering,
            "delivered" => Self::Delivered,
            "failed" => Self::Failed,
            _ => Self::Pending,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub id: String,
    pub seq: i64,
    pub workspace_id: String,
    /// `None` for a hosted-auth `notify_url` call.
    pub webhook_id: Option<String>,
    pub event_id: String,
    pub target_url: Option<String>,
    pub status: DeliveryStatus,
    pub attempts: i64,
    /// 0: the dispatcher's configured number.
    pub max_attempts: i64,
    pub run_after: i64,
    pub locked_by: Option<String>,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub delivered_at: Option<i64>,
    /// The event's type and account (joined).
    pub event_kind: String,
    pub account_id: Option<String>,
}

/// One attempt of a delivery, as the log shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Attempt {
    pub attempt: i64,
    pub started_at: i64,
    /// The receiver's HTTP status; `None` when there was no answer (refused, timed out…).
    pub status_code: Option<i64>,
    pub latency_ms: i64,
    pub error: Option<String>,
}

const COLUMNS: &str = "d.id, d.seq, d.workspace_id, d.webhook_id, d.event_id, d.target_url, d.status, d.attempts, \
     d.max_attempts, d.run_after, d.locked_by, d.last_error, d.created_at, d.delivered_at, e.type, e.account_id";

fn decode<R: Row>(r: &R) -> Result<Delivery>
where
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> Option<String>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> Option<i64>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    usize: sqlx::ColumnIndex<R>,
{
    Ok(Delivery {
        id: r.try_get(0)?,
        seq: r.try_get(1)?,
        workspace_id: r.try_get(2)?,
        webhook_id: r.try_get(3)?,
        event_id: r.try_get(4)?,
        target_url: r.try_get(5)?,
        status: DeliveryStatus::parse(&r.try_get::<String, _>(6)?),
        attempts: r.try_get(7)?,
        max_attempts: r.try_get(8)?,
        run_after: r.try_get(9)?,
        locked_by: r.try_get(10)?,
        last_error: r.try_get(11)?,
        created_at: r.try_get(12)?,
        delivered_at: r.try_get(13)?,
        event_kind: r.try_get(14)?,
        account_id: r.try_get(15)?,
    })
}

/// The queue of a webhook's deliveries about one account (or about no account).
fn queue(webhook_id: &str, account_id: Option<&str>) -> String {
    format!("{webhook_id}:{}", account_id.unwrap_or(""))
}

/// Queues a delivery of event `event_id` for every enabled webhook of the workspace that wants
/// it (source, events, account filter), inside the event's transaction.
pub(crate) async fn fan_out(
    tx: &mut WriteTx,
    workspace_id: &str,
    event_id: &str,
    kind: &str,
    account_id: Option<&str>,
    now_ms: i64,
) -> Result<usize> {
    if crate::webhooks::source_of(kind).is_none() {
        return Ok(0);
    }
    let rows: Vec<(String, String, String, String)> = with_conn!(Db::Tx(&mut *tx), c => {
        sqlx::query("SELECT id, source, events, account_ids FROM webhooks WHERE workspace_id = $1 AND enabled")
            .bind(workspace_id)
            .fetch_all(&mut *c)
            .await?
            .into_iter()
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
            .collect()
    });
    let mut queued = 0;
    for (id, source, events, accounts) in rows {
        let sub = decode_subscription(id, source, &events, &accounts)?;
        if !sub.wants(kind, account_id) {
            continue;
        }
        insert_row(
            tx,
            workspace_id,
            Some(&sub.id),
            event_id,
            &queue(&sub.id, account_id),
            None,
            now_ms,
        )
        .await?;
        queued += 1;
    }
    if queued > 0 {
        tx.1 = true;
    }
    Ok(queued)
}

async fn insert_row(
    tx: &mut WriteTx,
    workspace_id: &str,
    webhook_id: Option<&str>,
    event_id: &str,
    queue: &str,
    target_url: Option<&str>,
    now_ms: i64,
) -> Result<String> {
    let id = mailroom_core::new_id();
    with_conn!(Db::Tx(&mut *tx), c => {
        sqlx::query(
            "INSERT INTO webhook_deliveries (id, workspace_id, webhook_id, event_id, queue, target_url, status, \
             attempts, max_attempts, run_after, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, 'pending', 0, 0, $7, $7, $7) \
             ON CONFLICT DO NOTHING",
        )
        .bind(&id).bind(workspace_id).bind(webhook_id).bind(event_id).bind(queue).bind(target_url).bind(now_ms)
        .execute(&mut *c)
        .await?;
    });
    Ok(id)
}

/// Queues a call of `url` (a hosted link's `notify_url`) with event `event_id`'s payload, in the
/// transaction that recorded the event: durable like a webhook delivery, but to a URL of its
/// own and in a queue of its own.
pub async fn queue_call(
    tx: &mut WriteTx,
    workspace_id: &str,
    event_id: &str,
    url: &str,
    now_ms: i64,
) -> Result<String> {
    let q = format!("call:{event_id}:{url}");
    let id = insert_row(tx, workspace_id, None, event_id, &q, Some(url), now_ms).await?;
    tx.1 = true;
    Ok(id)
}

/// Leases up to `limit` deliveries that are due and head their queue (nothing earlier of the
/// queue is unsettled) to claims `node:id:attempt` until `lease_until`: pending ones whose time
/// has come and ones whose lease expired (a process died mid-attempt). Deliveries of a
/// disabled webhook wait.
pub async fn claim_due(
    store: &Store,
    node: &str,
    now_ms: i64,
    lease_until: i64,
    limit: i64,
) -> Result<Vec<(String, String)>> {
    if limit <= 0 {
        return Ok(vec![]);
    }
    // What can be claimed: due, of an enabled webhook (or a notify call), and heading its queue.
    let claimable = "FROM webhook_deliveries d LEFT JOIN webhooks w ON w.id = d.webhook_id \
                     WHERE ((d.status = 'pending' AND d.run_after <= $3) OR (d.status = 'delivering' AND d.locked_until < $3)) \
                     AND (d.webhook_id IS NULL OR w.enabled) \
                     AND NOT EXISTS (SELECT 1 FROM webhook_deliveries p WHERE p.queue = d.queue AND p.seq < d.seq \
                                     AND p.status IN ('pending', 'delivering'))";
    // Read-only first, with the claim's own conditions (rows of a disabled webhook, or queued
    // behind one that backs off, do not count): an UPDATE takes SQLite's one write lock even
    // when it matches nothing.
    let due = format!(
        "SELECT EXISTS (SELECT 1 {} )",
        claimable.replace("$3", "$1")
    );
    let any: bool = with_pool!(store, pool => {
        sqlx::query_scalar::<_, bool>(sqlx::AssertSqlSafe(due)).bind(now_ms).fetch_one(pool).await?
    });
    if !any {
        return Ok(vec![]);
    }
    let pick = format!("SELECT d.seq {claimable} ORDER BY d.seq LIMIT $4");
    // The claim is `node:id:nonce` (a fresh nonce per claim call, so a claim taken again after its
    // lease ran out never equals the old one). No attempt is counted here: only
    // [`start_attempt`], right before a request is sent, counts one.
    let nonce = mailroom_core::id::new_id();
    let set = "UPDATE webhook_deliveries SET status = 'delivering', \
               locked_by = $1 || ':' || id || ':' || $5, locked_until = $2, updated_at = $3 WHERE seq IN";
    let rows = match store {
        // Rows another process is claiming are skipped, not waited for.
        Store::Postgres(pool) => sqlx::query(sqlx::AssertSqlSafe(format!(
            "{set} ({pick} FOR UPDATE OF d SKIP LOCKED) RETURNING id, locked_by"
        )))
        .bind(node)
        .bind(lease_until)
        .bind(now_ms)
        .bind(limit)
        .bind(&nonce)
        .fetch_all(pool)
        .await?
        .into_iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect(),
        // SQLite has one writer at a time, so the UPDATE … RETURNING is the claim.
        Store::Sqlite(pool) => sqlx::query(sqlx::AssertSqlSafe(format!(
            "{set} ({pick}) RETURNING id, locked_by"
        )))
        .bind(node)
        .bind(lease_until)
        .bind(now_ms)
        .bind(limit)
        .bind(&nonce)
        .fetch_all(pool)
        .await?
        .into_iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect(),
    };
    Ok(rows)
}

/// Starts an attempt under claim `token`: extends the lease to `until` and counts the attempt.
/// Answers its number, or `None` when the claim is no longer current (nothing is sent then).
pub async fn start_attempt(
    store: &Store,
    id: &str,
    token: &str,
    until: i64,
) -> Result<Option<i64>> {
    let n = with_pool!(store, pool => {
        sqlx::query_scalar(
            "UPDATE webhook_deliveries SET locked_until = $1, attempts = attempts + 1 \
             WHERE id = $2 AND locked_by = $3 AND status = 'delivering' RETURNING attempts",
        )
        .bind(until).bind(id).bind(token).fetch_optional(pool).await?
    });
    Ok(n)
}

/// Gives claim `token` back without an attempt (its destination is busy): pending again from
/// `run_after`, at its place in its queue.
pub async fn unclaim(store: &Store, id: &str, token: &str, run_after: i64) -> Result<bool> {
    let n = with_pool!(store, pool => {
        sqlx::query(
            "UPDATE webhook_deliveries SET status = 'pending', locked_by = NULL, locked_until = NULL, \
             run_after = $1 WHERE id = $2 AND locked_by = $3 AND status = 'delivering'",
        )
        .bind(run_after).bind(id).bind(token).execute(pool).await?.rows_affected()
    });
    Ok(n == 1)
}

/// What an attempt came to.
pub enum Settle<'a> {
    Delivered,
    /// Try again at `run_after`.
    Retry {
        run_after: i64,
        error: &'a str,
    },
    /// Give up; `disable_webhook` also disables the webhook (410 Gone), with this reason.
    Failed {
        error: &'a str,
        disable_webhook: Option<&'a str>,
    },
}

/// Records an attempt and its outcome in one transaction, if claim `token` is still current
/// (false: another process holds the delivery now and reports its own outcome).
pub async fn settle(
    store: &Store,
    id: &str,
    token: &str,
    attempt: &Attempt,
    outcome: Settle<'_>,
    now_ms: i64,
) -> Result<bool> {
    let (status, run_after, error, delivered_at) = match &outcome {
        Settle::Delivered => (DeliveryStatus::Delivered, now_ms, None, Some(now_ms)),
        Settle::Retry { run_after, error } => {
            (DeliveryStatus::Pending, *run_after, Some(*error), None)
        }
        Settle::Failed { error, .. } => (DeliveryStatus::Failed, now_ms, Some(*error), None),
    };
    let mut tx = store.begin_write().await?;
    let n = with_conn!(Db::Tx(&mut tx), c => {
        sqlx::query(
            "UPDATE webhook_deliveries SET status = $1, run_after = $2, last_error = $3, \
             delivered_at = COALESCE($4, delivered_at), locked_by = NULL, locked_until = NULL, updated_at = $5 \
             WHERE id = $6 AND locked_by = $7 AND status = 'delivering'",
        )
        .bind(status.as_str()).bind(run_after).bind(error).bind(delivered_at).bind(now_ms).bind(id).bind(token)
        .execute(&mut *c).await?.rows_affected()
    });
    if n != 1 {
        return Ok(false);
    }
    with_conn!(Db::Tx(&mut tx), c => {
        sqlx::query(
            "INSERT INTO webhook_attempts (delivery_id, attempt, started_at, status_code, latency_ms, error) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
        )
        .bind(id).bind(attempt.attempt).bind(attempt.started_at).bind(attempt.status_code)
        .bind(attempt.latency_ms).bind(&attempt.error)
        .execute(&mut *c).await?;
    });
    if let Settle::Failed {
        disable_webhook: Some(reason),
        ..
    } = outcome
    {
        with_conn!(Db::Tx(&mut tx), c => {
            sqlx::query(
                "UPDATE webhooks SET enabled = FALSE, disabled_reason = $1, updated_at = $2 \
                 WHERE id = (SELECT webhook_id FROM webhook_deliveries WHERE id = $3)",
            )
            .bind(reason).bind(now_ms).bind(id)
            .execute(&mut *c).await?;
        });
    }
    tx.commit().await?;
    Ok(true)
}

/// A delivery by id, whatever its workspace (the dispatcher's view).
pub async fn get_any(store: &Store, id: &str) -> Result<Option<Delivery>> {
    let sql = sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM webhook_deliveries d JOIN events e ON e.id = d.event_id WHERE d.id = $1"
    ));
    with_pool!(store, pool => {
        sqlx::query(sql).bind(id).fetch_optional(pool).await?.as_ref().map(decode).transpose()
    })
}

/// One page of a webhook's deliveries, newest first (`before_seq`: the last of the previous
/// page).
pub async fn list(
    store: &Store,
    webhook_id: &str,
    before_seq: Option<i64>,
    limit: u32,
) -> Result<Vec<Delivery>> {
    let sql = sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM webhook_deliveries d JOIN events e ON e.id = d.event_id \
         WHERE d.webhook_id = $1 AND d.seq < $2 ORDER BY d.seq DESC LIMIT $3"
    ));
    with_pool!(store, pool => {
        sqlx::query(sql).bind(webhook_id).bind(before_seq.unwrap_or(i64::MAX)).bind(i64::from(limit))
            .fetch_all(pool).await?.iter().map(decode).collect()
    })
}

/// The attempts of some deliveries, by delivery, in order.
pub async fn attempts(store: &Store, ids: &[String]) -> Result<HashMap<String, Vec<Attempt>>> {
    let mut out: HashMap<String, Vec<Attempt>> = HashMap::new();
    for id in ids {
        let rows: Vec<Attempt> = with_pool!(store, pool => {
            sqlx::query(
                "SELECT attempt, started_at, status_code, latency_ms, error FROM webhook_attempts \
                 WHERE delivery_id = $1 ORDER BY attempt",
            )
            .bind(id)
            .fetch_all(pool)
            .await?
            .into_iter()
            .map(|r| Attempt {
                attempt: r.get(0),
                started_at: r.get(1),
                status_code: r.get(2),
                latency_ms: r.get(3),
                error: r.get(4),
            })
            .collect()
        });
        out.insert(id.clone(), rows);
    }
    Ok(out)
}

/// Queues a settled delivery of the webhook again, now, with `extra_attempts` more attempts
/// (a pending one is left as it is). `None` when the webhook has no such delivery.
pub async fn replay(
    store: &Store,
    webhook_id: &str,
    id: &str,
    extra_attempts: i64,
    now_ms: i64,
) -> Result<Option<Delivery>> {
    with_pool!(store, pool => {
        sqlx::query(
            "UPDATE webhook_deliveries SET status = 'pending', run_after = $1, max_attempts = attempts + $2, \
             updated_at = $1 WHERE id = $3 AND webhook_id = $4 AND status IN ('delivered', 'failed')",
        )
        .bind(now_ms).bind(extra_attempts).bind(id).bind(webhook_id)
        .execute(pool).await?;
    });
    signal().notify_waiters();
    let d = get_any(store, id).await?;
    Ok(d.filter(|d| d.webhook_id.as_deref() == Some(webhook_id)))
}

/// The deliveries of an event (tests and diagnostics).
pub async fn of_event(store: &Store, event_id: &str) -> Result<Vec<Delivery>> {
    let sql = sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM webhook_deliveries d JOIN events e ON e.id = d.event_id \
         WHERE d.event_id = $1 ORDER BY d.seq"
    ));
    with_pool!(store, pool => {
        sqlx::query(sql).bind(event_id).fetch_all(pool).await?.iter().map(decode).collect()
    })
}

/// The stored event a delivery carries: its type, account and payload.
pub async fn event_of(
    store: &Store,
    event_id: &str,
) -> Result<Option<(String, Option<String>, serde_json::Value, i64)>> {
    let row: Option<(String, Option<String>, String, i64)> = with_pool!(store, pool => {
        sqlx::query("SELECT type, account_id, payload, created_at FROM events WHERE id = $1")
            .bind(event_id)
            .fetch_optional(pool)
            .await?
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
    });
    Ok(row.map(|(t, a, p, at)| {
        (
            t,
            a,
            serde_json::from_str(&p).unwrap_or(serde_json::Value::Null),
            at,
        )
    }))
}
