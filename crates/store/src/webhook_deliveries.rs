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
use crate::tx::{Db, TxInner, WriteTx, with_conn};
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

/// The unsettled deliveries of a queue: its head is the first of them (`seq` order). The
/// partial index `webhook_deliveries_unsettled (queue, seq)` holds exactly these rows.
const UNSETTLED: &str = "status IN ('pending', 'delivering')";

/// A row of the claim's own conditions: due (pending and its time has come, or its lease ran
/// out: a process died mid-attempt) and of an enabled webhook (or a `notify_url` call).
/// `$now` is the current time's placeholder.
fn due_and_enabled(row: &str, now: &str) -> String {
    format!(
        "(({row}.status = 'pending' AND {row}.run_after <= {now}) \
         OR ({row}.status = 'delivering' AND {row}.locked_until < {now})) \
         AND ({row}.webhook_id IS NULL OR EXISTS \
              (SELECT 1 FROM webhooks w WHERE w.id = {row}.webhook_id AND w.enabled))"
    )
}

/// A queue head that can be claimed now, as the dispatcher sees it before claiming: where it
/// goes (the webhook's URL, or the `notify_url`), so it can be picked within its destination's
/// free slots.
#[derive(Debug, Clone, PartialEq)]
pub struct Head {
    pub seq: i64,
    pub url: Option<String>,
}

/// Up to `limit` queue heads that are due now (see [`claim`]), oldest first, after head
/// `after_seq` (0: from the first; the next page starts after the last head read). Read-only, and
/// its cost grows with the number of queues that have unsettled deliveries, not with the
/// backlog: the queues are found by skipping through the partial index
/// `webhook_deliveries_unsettled` (a recursive query, one probe per queue), and each queue's
/// head is the first entry of its queue there.
pub async fn due_heads(
    store: &Store,
    now_ms: i64,
    after_seq: i64,
    limit: i64,
) -> Result<Vec<Head>> {
    // The planners are told how: PostgreSQL through LATERAL (a fresh database has no
    // statistics, and a hash join over every unsettled row was its choice without it), SQLite
    // through INDEXED BY (its MIN() would otherwise scan every unsettled row).
    let sql = match store {
        Store::Postgres(_) => format!(
            "WITH RECURSIVE q(queue) AS ( \
                   SELECT (SELECT queue FROM webhook_deliveries WHERE {UNSETTLED} ORDER BY queue LIMIT 1) \
                   UNION ALL \
                   SELECT (SELECT u.queue FROM webhook_deliveries u WHERE u.{UNSETTLED} AND u.queue > q.queue \
                           ORDER BY u.queue LIMIT 1) FROM q WHERE q.queue IS NOT NULL) \
                 SELECT d.seq, COALESCE(w.request_url, d.target_url) FROM q CROSS JOIN LATERAL \
                   (SELECT x.seq, x.status, x.run_after, x.locked_until, x.webhook_id, x.target_url \
                    FROM webhook_deliveries x WHERE x.queue = q.queue AND x.{UNSETTLED} ORDER BY x.seq LIMIT 1) d \
                 LEFT JOIN webhooks w ON w.id = d.webhook_id \
                 WHERE {} AND d.seq > $3 ORDER BY d.seq LIMIT $2",
            due_and_enabled("d", "$1")
        ),
        Store::Sqlite(_) => format!(
            "WITH RECURSIVE q(queue) AS ( \
                   SELECT (SELECT queue FROM webhook_deliveries INDEXED BY webhook_deliveries_unsettled \
                           WHERE {UNSETTLED} ORDER BY queue LIMIT 1) \
                   UNION ALL \
                   SELECT (SELECT u.queue FROM webhook_deliveries u INDEXED BY webhook_deliveries_unsettled \
                           WHERE u.{UNSETTLED} AND u.queue > q.queue ORDER BY u.queue LIMIT 1) \
                   FROM q WHERE q.queue IS NOT NULL) \
                 SELECT d.seq, COALESCE(w.request_url, d.target_url) FROM q CROSS JOIN webhook_deliveries d \
                   ON d.seq = (SELECT x.seq FROM webhook_deliveries x INDEXED BY webhook_deliveries_unsettled \
                               WHERE x.queue = q.queue AND x.{UNSETTLED} ORDER BY x.seq LIMIT 1) \
                 LEFT JOIN webhooks w ON w.id = d.webhook_id \
                 WHERE {} AND d.seq > $3 ORDER BY d.seq LIMIT $2",
            due_and_enabled("d", "$1")
        ),
    };
    let rows = with_pool!(store, pool => {
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(now_ms)
            .bind(limit)
            .bind(after_seq)
            .fetch_all(pool)
            .await?
            .into_iter()
            .map(|r| Head { seq: r.get(0), url: r.get(1) })
            .collect()
    });
    Ok(rows)
}

/// A delivery leased for one attempt: its id, the claim `node:id:nonce` that settles it, and
/// the number of the attempt (counted by the claim).
#[derive(Debug, Clone, PartialEq)]
pub struct Claim {
    pub seq: i64,
    pub id: String,
    pub token: String,
    pub attempt: i64,
    /// When the lease ends (Unix ms): the attempt must be over, and settled, by then.
    pub lease_until: i64,
}

fn decode_claim<R: Row>(r: &R) -> Result<Claim>
where
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    usize: sqlx::ColumnIndex<R>,
{
    Ok(Claim {
        seq: r.try_get(0)?,
        id: r.try_get(1)?,
        token: r.try_get(2)?,
        attempt: r.try_get(3)?,
        lease_until: 0,
    })
}

/// The SET clause of a claim: `$1` node, `$2` nonce, `$3` lease end, `$4` now. The claim is
/// `node:id:nonce` (a fresh nonce per claim call, so a claim taken again after its lease ran
/// out never equals the old one), and it counts the attempt: a delivery is only claimed when
/// its destination has a free slot, so an attempt follows at once.
const CLAIM_SET: &str = "UPDATE webhook_deliveries SET status = 'delivering', \
     locked_by = $1 || ':' || id || ':' || $2, locked_until = $3, attempts = attempts + 1, updated_at = $4";

/// Claims the deliveries `seqs` (picked from [`due_heads`]) for one attempt each, leased until
/// `lease_until`, for those still due, of an enabled webhook and heading their queue: nothing
/// earlier of the queue is unsettled (checked here again, per row, with one index probe, so a
/// delivery replayed meanwhile still goes first). Rows another process is claiming are skipped,
/// not waited for. Answers the claims made (some of `seqs` may have gone elsewhere).
pub async fn claim(
    store: &Store,
    seqs: &[i64],
    node: &str,
    now_ms: i64,
    lease_until: i64,
) -> Result<Vec<Claim>> {
    if seqs.is_empty() {
        return Ok(vec![]);
    }
    // Integers of our own, so inlined rather than bound one by one.
    let list = seqs
        .iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let head = |row: &str| {
        format!(
            "NOT EXISTS (SELECT 1 FROM webhook_deliveries p WHERE p.queue = {row}.queue \
             AND p.seq < {row}.seq AND p.{UNSETTLED})"
        )
    };
    let nonce = mailroom_core::id::new_id();
    let returning = "RETURNING seq, id, locked_by, attempts";
    let sql = match store {
        Store::Postgres(_) => format!(
            "{CLAIM_SET} WHERE seq IN (SELECT c.seq FROM webhook_deliveries c WHERE c.seq IN ({list}) \
                 AND {} AND {} FOR UPDATE SKIP LOCKED) {returning}",
            due_and_enabled("c", "$4"),
            head("c"),
        ),
        // SQLite has one writer at a time, so the UPDATE … RETURNING is the claim.
        Store::Sqlite(_) => format!(
            "{CLAIM_SET} WHERE seq IN ({list}) AND {} AND {} {returning}",
            due_and_enabled("webhook_deliveries", "$4"),
            head("webhook_deliveries"),
        ),
    };
    let claims = with_pool!(store, pool => {
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(node)
            .bind(&nonce)
            .bind(lease_until)
            .bind(now_ms)
            .fetch_all(pool)
            .await?
            .iter()
            .map(|r| decode_claim(r).map(|c| Claim { lease_until, ..c }))
            .collect::<Result<Vec<_>>>()?
    });
    Ok(claims)
}

/// Gives claim `token` back uncounted (its destination turned out to be busy): pending again
/// at its place in its queue, due at once.
pub async fn unclaim(store: &Store, id: &str, token: &str, now_ms: i64) -> Result<bool> {
    let n = with_pool!(store, pool => {
        sqlx::query(
            "UPDATE webhook_deliveries SET status = 'pending', locked_by = NULL, locked_until = NULL, \
             attempts = attempts - 1, run_after = $1, updated_at = $1 \
             WHERE id = $2 AND locked_by = $3 AND status = 'delivering'",
        )
        .bind(now_ms).bind(id).bind(token).execute(pool).await?.rows_affected()
    });
    Ok(n == 1)
}

/// What an attempt came to.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Delivered,
    /// Try again at `run_after` (the queue waits for it).
    Retry {
        run_after: i64,
        error: String,
    },
    /// Give up; `disable_webhook` also disables the webhook (410 Gone), with this reason.
    Failed {
        error: String,
        disable_webhook: Option<String>,
    },
}

/// One finished attempt to record.
#[derive(Debug, Clone)]
pub struct Finished {
    pub id: String,
    /// The claim it ran under.
    pub token: String,
    pub attempt: Attempt,
    pub outcome: Outcome,
    /// Claim the next delivery of the same queue in the same transaction, if it is due.
    pub claim_next: bool,
}

/// What [`settle`] did with one [`Finished`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Settled {
    /// false: the claim was no longer current (another process holds the delivery now and
    /// reports its own outcome); nothing was recorded.
    pub recorded: bool,
    /// The next delivery of the queue, claimed for this process (it keeps the slot).
    pub next: Option<Claim>,
}

/// Records finished attempts and their outcomes, each only if its claim is still current,
/// in **one** transaction (one commit for a batch: on SQLite one turn of its single writer).
/// For a settled delivery (delivered or given up) with `claim_next`, the next delivery of its
/// queue is claimed in the same transaction when it is due and of an enabled webhook, leased
/// until `lease_until` like a [`claim`]: the queue's order holds (the next one becomes the head
/// exactly when this one is settled) and no sweep is needed between them.
///
/// On PostgreSQL the commit does not wait for its WAL flush (`synchronous_commit = off` for
/// this transaction only). Losing it, which only a crash of the database server can, loses
/// the record of attempts already made: those deliveries are claimed again when their lease
/// runs out and sent again, which at-least-once allows; the log is a prefix of what happened,
/// so a queue's order holds.
pub async fn settle(
    store: &Store,
    batch: &[Finished],
    node: &str,
    now_ms: i64,
    lease_until: i64,
) -> Result<Vec<Settled>> {
    let mut out = Vec::with_capacity(batch.len());
    if batch.is_empty() {
        return Ok(out);
    }
    let nonce = mailroom_core::id::new_id();
    let mut tx = store.begin_write().await?;
    if let TxInner::Postgres(t) = &mut tx.0 {
        sqlx::query("SET LOCAL synchronous_commit = off")
            .execute(&mut **t)
            .await?;
    }
    for f in batch {
        out.push(settle_one(&mut tx, f, node, &nonce, now_ms, lease_until).await?);
    }
    tx.commit().await?;
    Ok(out)
}

async fn settle_one(
    tx: &mut WriteTx,
    f: &Finished,
    node: &str,
    nonce: &str,
    now_ms: i64,
    lease_until: i64,
) -> Result<Settled> {
    let (status, run_after, error, delivered_at) = match &f.outcome {
        Outcome::Delivered => (DeliveryStatus::Delivered, now_ms, None, Some(now_ms)),
        Outcome::Retry { run_after, error } => {
            (DeliveryStatus::Pending, *run_after, Some(error), None)
        }
        Outcome::Failed { error, .. } => (DeliveryStatus::Failed, now_ms, Some(error), None),
    };
    let queue: Option<String> = with_conn!(Db::Tx(&mut *tx), c => {
        sqlx::query_scalar(
            "UPDATE webhook_deliveries SET status = $1, run_after = $2, last_error = $3, \
             delivered_at = COALESCE($4, delivered_at), locked_by = NULL, locked_until = NULL, updated_at = $5 \
             WHERE id = $6 AND locked_by = $7 AND status = 'delivering' RETURNING queue",
        )
        .bind(status.as_str()).bind(run_after).bind(error).bind(delivered_at).bind(now_ms).bind(&f.id).bind(&f.token)
        .fetch_optional(&mut *c).await?
    });
    let Some(queue) = queue else {
        return Ok(Settled::default());
    };
    let a = &f.attempt;
    with_conn!(Db::Tx(&mut *tx), c => {
        sqlx::query(
            "INSERT INTO webhook_attempts (delivery_id, attempt, started_at, status_code, latency_ms, error) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
        )
        .bind(&f.id).bind(a.attempt).bind(a.started_at).bind(a.status_code).bind(a.latency_ms).bind(&a.error)
        .execute(&mut *c).await?;
    });
    if let Outcome::Failed {
        disable_webhook: Some(reason),
        ..
    } = &f.outcome
    {
        with_conn!(Db::Tx(&mut *tx), c => {
            sqlx::query(
                "UPDATE webhooks SET enabled = FALSE, disabled_reason = $1, updated_at = $2 \
                 WHERE id = (SELECT webhook_id FROM webhook_deliveries WHERE id = $3)",
            )
            .bind(reason).bind(now_ms).bind(&f.id)
            .execute(&mut *c).await?;
        });
    }
    let settled = status != DeliveryStatus::Pending;
    let next = if settled && f.claim_next {
        claim_next(tx, &queue, node, nonce, now_ms, lease_until).await?
    } else {
        None
    };
    Ok(Settled {
        recorded: true,
        next,
    })
}

/// Claims the head of `queue` if it is due and of an enabled webhook (inside the transaction
/// that settled the previous head).
async fn claim_next(
    tx: &mut WriteTx,
    queue: &str,
    node: &str,
    nonce: &str,
    now_ms: i64,
    lease_until: i64,
) -> Result<Option<Claim>> {
    let sql = sqlx::AssertSqlSafe(format!(
        "{CLAIM_SET} WHERE seq = (SELECT x.seq FROM webhook_deliveries x WHERE x.queue = $5 AND x.{UNSETTLED} \
                                  ORDER BY x.seq LIMIT 1) \
         AND status = 'pending' AND run_after <= $4 \
         AND (webhook_id IS NULL OR EXISTS (SELECT 1 FROM webhooks w WHERE w.id = webhook_id AND w.enabled)) \
         RETURNING seq, id, locked_by, attempts"
    ));
    let claim = with_conn!(Db::Tx(&mut *tx), c => {
        sqlx::query(sql)
            .bind(node).bind(nonce).bind(lease_until).bind(now_ms).bind(queue)
            .fetch_optional(&mut *c).await?.as_ref().map(|r| decode_claim(r).map(|c| Claim { lease_until, ..c })).transpose()?
    });
    Ok(claim)
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

/// A claimed delivery and its event's payload, in one read (the dispatcher's view).
pub async fn get_with_payload(
    store: &Store,
    id: &str,
) -> Result<Option<(Delivery, serde_json::Value)>> {
    let sql = sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS}, e.payload FROM webhook_deliveries d JOIN events e ON e.id = d.event_id WHERE d.id = $1"
    ));
    with_pool!(store, pool => {
        match sqlx::query(sql).bind(id).fetch_optional(pool).await? {
            Some(r) => {
                let d = decode(&r)?;
                let payload: String = r.try_get(16)?;
                Ok(Some((d, serde_json::from_str(&payload).unwrap_or(serde_json::Value::Null))))
            }
            None => Ok(None),
        }
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
