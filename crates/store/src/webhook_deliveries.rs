//! Webhook deliveries: one durable row per (webhook, event), written in the transaction that
//! records the event ([`crate::events::record_in`]), so an event is never stored without its
//! deliveries nor a delivery without its event. Like the outbox, an attempt holds a lease
//! (`locked_by`, `locked_until`) so one process delivers a row at a time, and an expired lease
//! (a killed process) makes it claimable again. Rows of one `queue` (a webhook and an account)
//! are claimed in `seq` order, a run at a time from the queue's head ([`claim_runs`]), and the
//! dispatcher posts a run in order: a later event is never delivered before an earlier one is
//! settled (answered 2xx, or given up).

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
        // In id order, so two transactions take the queues' locks (below) in the same order.
        sqlx::query("SELECT id, source, events, account_ids FROM webhooks WHERE workspace_id = $1 AND enabled ORDER BY id")
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
        let q = queue(&sub.id, account_id);
        lock_queue(tx, &q).await?;
        insert_row(tx, workspace_id, Some(&sub.id), event_id, &q, None, now_ms).await?;
        queued += 1;
    }
    if queued > 0 {
        tx.1 = true;
    }
    Ok(queued)
}

/// On PostgreSQL, takes queue `q`'s advisory lock for the rest of the transaction (once per
/// transaction) before a delivery joins it. A delivery's place in its queue is its `seq`,
/// drawn when the row is written; two transactions queueing deliveries of one queue at once
/// (a sync batch and an API change about one account) would otherwise take their places when
/// they write but become visible when they commit, and the later place could be delivered
/// before the earlier one commits. Under the lock, the second one draws its place only after
/// the first has committed. SQLite's single writer already serializes them.
async fn lock_queue(tx: &mut WriteTx, q: &str) -> Result<()> {
    if tx.2.iter().any(|l| l == q) {
        return Ok(());
    }
    if let TxInner::Postgres(t) = &mut tx.0 {
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
            .bind(q)
            .execute(&mut **t)
            .await?;
    }
    tx.2.push(q.to_owned());
    Ok(())
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

/// Up to `limit` queue heads that are due now (see [`claim_runs`]), oldest first, after head
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

/// The SET clause of a claim: `$1` node, `$2` nonce, `$3` lease end, `$4` now. The claim is
/// `node:id:nonce` (a fresh nonce per claim call, so a claim taken again after its lease ran
/// out never equals the old one), and it counts the attempt (a claimed delivery the run does
/// not get to is given back uncounted: [`Outcome::Unclaimed`]).
const CLAIM_SET: &str = "UPDATE webhook_deliveries SET status = 'delivering', \
     locked_by = $1 || ':' || id || ':' || $2, locked_until = $3, attempts = attempts + 1, updated_at = $4";

/// Claims a **run** for each of `heads` (picked from [`due_heads`]) that is still due, of an
/// enabled webhook, and heading its queue (nothing earlier of the queue unsettled, nothing of
/// it under a live lease): the head
/// and the deliveries after it in its queue, in `seq` order, up to `run_max` in all, stopping
/// before the first that is not due (a retry waiting for its time, another process's live
/// lease). Each is leased until `lease_until` and its attempt counted. Answers the runs made,
/// each in `seq` order (some heads may have gone elsewhere meanwhile).
///
/// A run is delivered in order by one attempt loop, so a queue's order holds without a
/// database round trip between two of its deliveries. Two claimers cannot both take a
/// queue: each claims through the queue's head, which PostgreSQL locks (`FOR UPDATE SKIP
/// LOCKED`, re-checked against the newest row) for the transaction, and SQLite's single
/// writer serializes; once claimed, the head is leased, so the queue has no due head until
/// the run is settled or its lease runs out.
pub async fn claim_runs(
    store: &Store,
    heads: &[i64],
    run_max: i64,
    node: &str,
    now_ms: i64,
    lease_until: i64,
) -> Result<Vec<Vec<Claim>>> {
    let mut runs = Vec::new();
    if heads.is_empty() {
        return Ok(runs);
    }
    let (lock, indexed) = match store {
        Store::Postgres(_) => (" FOR UPDATE SKIP LOCKED", ""),
        Store::Sqlite(_) => ("", " INDEXED BY webhook_deliveries_unsettled"),
    };
    let head_sql = format!(
        "SELECT d.queue FROM webhook_deliveries d WHERE d.seq = $1 AND {}{lock}",
        due_and_enabled("d", "$2")
    );
    // PostgreSQL: the rows are locked as read (waiting for a claim of them under way in
    // another transaction, then read as it left them), so what is claimed below is what was
    // checked here.
    let row_lock = match store {
        Store::Postgres(_) => " FOR UPDATE",
        Store::Sqlite(_) => "",
    };
    let queue_sql = format!(
        "SELECT x.seq, x.status, x.run_after, x.locked_until FROM webhook_deliveries x{indexed} \
         WHERE x.queue = $1 AND x.{UNSETTLED} ORDER BY x.seq LIMIT $2{row_lock}"
    );
    // Any delivery of the queue under a live lease, however far down the queue.
    let leased_sql = format!(
        "SELECT EXISTS (SELECT 1 FROM webhook_deliveries x{indexed} WHERE x.queue = $1 \
         AND x.{UNSETTLED} AND x.status = 'delivering' AND x.locked_until >= $2)"
    );
    let nonce = mailroom_core::id::new_id();
    let mut tx = store.begin_write().await?;
    for &head in heads {
        let queue: Option<String> = with_conn!(Db::Tx(&mut tx), c => {
            sqlx::query_scalar(sqlx::AssertSqlSafe(head_sql.clone()))
                .bind(head).bind(now_ms).fetch_optional(&mut *c).await?
        });
        let Some(queue) = queue else { continue };
        let rows: Vec<(i64, String, i64, Option<i64>)> = with_conn!(Db::Tx(&mut tx), c => {
            sqlx::query(sqlx::AssertSqlSafe(queue_sql.clone()))
                .bind(&queue).bind(run_max.max(1)).fetch_all(&mut *c).await?
                .into_iter().map(|r| (r.get(0), r.get(1), r.get(2), r.get(3))).collect()
        });
        // The head must be the first unsettled delivery of its queue (a replay may have put
        // an earlier one back), and no delivery of the queue may be under another live lease
        // (a replayed delivery becomes the head while a later run is still out: it waits for
        // that run); then the run goes on while the next one is due.
        let leased = |(_, status, _, locked_until): &(i64, String, i64, Option<i64>)| {
            status == "delivering" && locked_until.is_some_and(|t| t >= now_ms)
        };
        if rows.first().map(|r| r.0) != Some(head) || rows.iter().any(leased) {
            continue;
        }
        if rows.len() as i64 >= run_max {
            let busy: bool = with_conn!(Db::Tx(&mut tx), c => {
                sqlx::query_scalar(sqlx::AssertSqlSafe(leased_sql.clone()))
                    .bind(&queue).bind(now_ms).fetch_one(&mut *c).await?
            });
            if busy {
                continue;
            }
        }
        let due =
            |(_, status, run_after, locked_until): &(i64, String, i64, Option<i64>)| match status
                .as_str()
            {
                "pending" => *run_after <= now_ms,
                _ => locked_until.is_some_and(|t| t < now_ms),
            };
        let seqs = seq_list(
            std::iter::once(head).chain(rows[1..].iter().take_while(|r| due(r)).map(|r| r.0)),
        );
        let sql = sqlx::AssertSqlSafe(format!(
            "{CLAIM_SET} WHERE seq IN ({seqs}) RETURNING seq, id, locked_by, attempts"
        ));
        let mut run: Vec<Claim> = with_conn!(Db::Tx(&mut tx), c => {
            sqlx::query(sql)
                .bind(node).bind(&nonce).bind(lease_until).bind(now_ms)
                .fetch_all(&mut *c).await?
                .iter()
                .map(|r| -> Result<Claim> {
                    Ok(Claim {
                        seq: r.try_get(0)?,
                        id: r.try_get(1)?,
                        token: r.try_get(2)?,
                        attempt: r.try_get(3)?,
                        lease_until,
                    })
                })
                .collect::<Result<Vec<_>>>()?
        });
        run.sort_by_key(|c| c.seq);
        runs.push(run);
    }
    tx.commit().await?;
    Ok(runs)
}

/// `seq`s as an SQL list: integers of our own, so inlined rather than bound one by one.
fn seq_list(seqs: impl Iterator<Item = i64>) -> String {
    seqs.map(|s| s.to_string()).collect::<Vec<_>>().join(",")
}

/// `n` placeholders from `$first` on, as an SQL list.
fn placeholders(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Extends the leases of claims `run` (still current ones only) to `lease_until`: a run that
/// waited for a posting slot renews them before it posts, so the wait does not eat its
/// attempts' time. Answers the `seq`s renewed.
pub async fn renew(
    store: &Store,
    run: &[Claim],
    now_ms: i64,
    lease_until: i64,
) -> Result<Vec<i64>> {
    if run.is_empty() {
        return Ok(vec![]);
    }
    let seqs = seq_list(run.iter().map(|c| c.seq));
    let tokens = placeholders(3, run.len());
    let sql = sqlx::AssertSqlSafe(format!(
        "UPDATE webhook_deliveries SET locked_until = $1, updated_at = $2 \
         WHERE status = 'delivering' AND seq IN ({seqs}) AND locked_by IN ({tokens}) RETURNING seq"
    ));
    let mut renewed: Vec<i64> = with_pool!(store, pool => {
        let mut q = sqlx::query_scalar(sql).bind(lease_until).bind(now_ms);
        for c in run {
            q = q.bind(&c.token);
        }
        q.fetch_all(pool).await?
    });
    renewed.sort_unstable();
    Ok(renewed)
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
    /// Not attempted (the run stopped before it): given back uncounted, pending again at its
    /// place in its queue, due at once.
    Unclaimed,
}

/// One finished attempt (or a claim given back) to record.
#[derive(Debug, Clone)]
pub struct Finished {
    pub seq: i64,
    pub id: String,
    /// The claim it ran under.
    pub token: String,
    /// `None` only for [`Outcome::Unclaimed`].
    pub attempt: Option<Attempt>,
    pub outcome: Outcome,
}

/// Deliveries one statement of [`settle`] names at most (two parameters each, far below
/// either backend's limit).
const SETTLE_CHUNK: usize = 400;

/// Attempt log rows one INSERT of [`settle`] writes at most (six parameters each).
const ATTEMPTS_CHUNK: usize = 200;

/// Records finished attempts and their outcomes, each only if its claim is still current (else
/// another process holds the delivery now and reports its own outcome), in **one**
/// transaction: one commit for a batch, on SQLite one turn of its single writer. Deliveries
/// delivered, and claims given back, are recorded a few hundred per statement; a retry or a
/// give-up one by one (rare). Answers, per item, whether it was recorded.
///
/// On PostgreSQL the commit does not wait for its WAL flush (`synchronous_commit = off` for
/// this transaction only). Losing it, which only a crash of the database server can, loses
/// the record of attempts already made: those deliveries are claimed again when their lease
/// runs out and sent again, which at-least-once allows; the log is a prefix of what happened,
/// so a queue's order holds.
pub async fn settle(store: &Store, batch: &[Finished], now_ms: i64) -> Result<Vec<bool>> {
    if batch.is_empty() {
        return Ok(vec![]);
    }
    let mut tx = store.begin_write().await?;
    if let TxInner::Postgres(t) = &mut tx.0 {
        sqlx::query("SET LOCAL synchronous_commit = off")
            .execute(&mut **t)
            .await?;
    }
    let mut recorded: std::collections::HashSet<i64> = std::collections::HashSet::new();
    let delivered: Vec<&Finished> = batch
        .iter()
        .filter(|f| f.outcome == Outcome::Delivered)
        .collect();
    let unclaimed: Vec<&Finished> = batch
        .iter()
        .filter(|f| f.outcome == Outcome::Unclaimed)
        .collect();
    for (set, items) in [
        (
            "status = 'delivered', run_after = $1, last_error = NULL, delivered_at = $1",
            &delivered,
        ),
        (
            "status = 'pending', run_after = $1, attempts = attempts - 1",
            &unclaimed,
        ),
    ] {
        for chunk in items.chunks(SETTLE_CHUNK) {
            // Rows by `seq` (the table's key), integers of our own, so inlined.
            let seqs = seq_list(chunk.iter().map(|f| f.seq));
            let tokens = placeholders(2, chunk.len());
            // A token is `node:id:nonce`, so a row's own token among `tokens` is its claim.
            let sql = sqlx::AssertSqlSafe(format!(
                "UPDATE webhook_deliveries SET {set}, locked_by = NULL, locked_until = NULL, updated_at = $1 \
                 WHERE status = 'delivering' AND seq IN ({seqs}) AND locked_by IN ({tokens}) RETURNING seq"
            ));
            let done: Vec<i64> = with_conn!(Db::Tx(&mut tx), c => {
                let mut q = sqlx::query_scalar(sql).bind(now_ms);
                for f in chunk {
                    q = q.bind(&f.token);
                }
                q.fetch_all(&mut *c).await?
            });
            recorded.extend(done);
        }
    }
    for f in batch
        .iter()
        .filter(|f| matches!(f.outcome, Outcome::Retry { .. } | Outcome::Failed { .. }))
    {
        if settle_failed(&mut tx, f, now_ms).await? {
            recorded.insert(f.seq);
        }
    }
    let log: Vec<(&str, &Attempt)> = batch
        .iter()
        .filter(|f| recorded.contains(&f.seq))
        .filter_map(|f| f.attempt.as_ref().map(|a| (f.id.as_str(), a)))
        .collect();
    for chunk in log.chunks(ATTEMPTS_CHUNK) {
        let rows = (0..chunk.len())
            .map(|i| {
                let b = i * 6;
                format!(
                    "(${}, ${}, ${}, ${}, ${}, ${})",
                    b + 1,
                    b + 2,
                    b + 3,
                    b + 4,
                    b + 5,
                    b + 6
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        let sql = sqlx::AssertSqlSafe(format!(
            "INSERT INTO webhook_attempts (delivery_id, attempt, started_at, status_code, latency_ms, error) \
             VALUES {rows} ON CONFLICT DO NOTHING"
        ));
        with_conn!(Db::Tx(&mut tx), c => {
            let mut q = sqlx::query(sql);
            for (id, a) in chunk {
                q = q.bind(*id).bind(a.attempt).bind(a.started_at).bind(a.status_code).bind(a.latency_ms).bind(&a.error);
            }
            q.execute(&mut *c).await?;
        });
    }
    tx.commit().await?;
    Ok(batch.iter().map(|f| recorded.contains(&f.seq)).collect())
}

/// Records a retry or a give-up (and a 410's disabling of the webhook); answers whether the
/// claim was still current.
async fn settle_failed(tx: &mut WriteTx, f: &Finished, now_ms: i64) -> Result<bool> {
    let (status, run_after, error) = match &f.outcome {
        Outcome::Retry { run_after, error } => (DeliveryStatus::Pending, *run_after, error),
        Outcome::Failed { error, .. } => (DeliveryStatus::Failed, now_ms, error),
        Outcome::Delivered | Outcome::Unclaimed => return Ok(false),
    };
    let n = with_conn!(Db::Tx(&mut *tx), c => {
        sqlx::query(
            "UPDATE webhook_deliveries SET status = $1, run_after = $2, last_error = $3, \
             locked_by = NULL, locked_until = NULL, updated_at = $4 \
             WHERE id = $5 AND locked_by = $6 AND status = 'delivering'",
        )
        .bind(status.as_str()).bind(run_after).bind(error).bind(now_ms).bind(&f.id).bind(&f.token)
        .execute(&mut *c).await?.rows_affected()
    });
    if n == 0 {
        return Ok(false);
    }
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
    Ok(true)
}

/// Deletes up to `batch` settled deliveries (delivered or given up) last changed before
/// `before_ms`, oldest first, with their attempt logs; answers how many went. Their events
/// stay (an event id is also what keeps an event from being recorded twice).
pub async fn prune_settled(store: &Store, before_ms: i64, batch: u32) -> Result<u64> {
    // Found outside the write transaction (a scan, on SQLite it would hold the write lock),
    // then deleted under the same conditions, checked again.
    let seqs: Vec<i64> = with_pool!(store, pool => {
        sqlx::query_scalar(
            "SELECT seq FROM webhook_deliveries WHERE status IN ('delivered', 'failed') \
             AND updated_at < $1 ORDER BY seq LIMIT $2",
        )
        .bind(before_ms).bind(i64::from(batch)).fetch_all(pool).await?
    });
    if seqs.is_empty() {
        return Ok(0);
    }
    let list = seq_list(seqs.iter().copied());
    let settled =
        format!("seq IN ({list}) AND status IN ('delivered', 'failed') AND updated_at < $1");
    let mut tx = store.begin_write().await?;
    with_conn!(Db::Tx(&mut tx), c => {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM webhook_attempts WHERE delivery_id IN \
             (SELECT id FROM webhook_deliveries WHERE {settled})"
        )))
        .bind(before_ms).execute(&mut *c).await?;
    });
    let n = with_conn!(Db::Tx(&mut tx), c => {
        sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM webhook_deliveries WHERE {settled}")))
            .bind(before_ms).execute(&mut *c).await?.rows_affected()
    });
    tx.commit().await?;
    Ok(n)
}

/// A delivery by id, whatever its workspace (replay and tests; the dispatcher reads runs with
/// [`get_with_payloads`]).
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

/// Claimed deliveries (by `seq`) with their events' payloads, in one read, in `seq` order
/// (the dispatcher's view of a run). Deliveries gone meanwhile (their webhook deleted) are
/// absent.
pub async fn get_with_payloads(
    store: &Store,
    seqs: &[i64],
) -> Result<Vec<(Delivery, serde_json::Value)>> {
    if seqs.is_empty() {
        return Ok(vec![]);
    }
    let list = seq_list(seqs.iter().copied());
    let sql = sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS}, e.payload FROM webhook_deliveries d JOIN events e ON e.id = d.event_id \
         WHERE d.seq IN ({list})"
    ));
    // Sorted here: with ORDER BY seq, SQLite walks the whole table in seq order instead of
    // looking the ids up (1.5 ms for a run of 32 in bench/webhooks).
    let mut rows: Vec<(Delivery, serde_json::Value)> = with_pool!(store, pool => {
        sqlx::query(sql).fetch_all(pool)
            .await?
            .iter()
            .map(|r| {
                let d = decode(r)?;
                let payload: String = r.try_get(16)?;
                Ok((d, serde_json::from_str(&payload).unwrap_or(serde_json::Value::Null)))
            })
            .collect::<Result<Vec<_>>>()?
    });
    rows.sort_by_key(|(d, _)| d.seq);
    Ok(rows)
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
