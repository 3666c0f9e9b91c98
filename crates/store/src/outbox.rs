//! The outbox: durable send jobs. A row is written (with its idempotency key) before any
//! attempt; attempts hold a lease (`locked_by`, `locked_until`) so exactly one node works on
//! a job at a time, and an expired lease (a crashed node) makes the job claimable again.
//! Every state change is conditional on holding the lease, so a node that lost its lease
//! cannot overwrite another's result.

use sqlx::Row;

use crate::error::{Result, StoreError};
use crate::tenant::Tenant;
use crate::tx::{Db, with_conn};
use crate::{Store, with_pool};
use mailroom_core::cursor::Position;
use mailroom_core::{AccountId, TrackingId};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobStatus {
    /// Waiting for `send_at`.
    Scheduled,
    /// Waiting for its next attempt.
    Queued,
    /// An attempt is under way (leased).
    Sending,
    Sent,
    /// Permanently failed, or out of attempts.
    Failed,
}

impl JobStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Scheduled => "scheduled",
            JobStatus::Queued => "queued",
            JobStatus::Sending => "sending",
            JobStatus::Sent => "sent",
            JobStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Scheduled,
            Self::Queued,
            Self::Sending,
            Self::Sent,
            Self::Failed,
        ]
        .into_iter()
        .find(|v| v.as_str() == s)
    }
}

/// A job without its MIME bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub id: TrackingId,
    pub workspace_id: String,
    pub account_id: AccountId,
    pub idempotency_key: Option<String>,
    pub request_hash: Vec<u8>,
    pub status: JobStatus,
    pub message_id: String,
    pub thread_refs: Vec<String>,
    pub subject: String,
    pub recipients: Vec<String>,
    pub envelope_from: String,
    pub attempts: i64,
    pub max_attempts: i64,
    pub run_after: i64,
    pub give_up_at: i64,
    pub last_error: Option<String>,
    pub last_error_type: Option<String>,
    pub provider_id: Option<String>,
    pub sent_copy: String,
    pub response: Option<(u16, serde_json::Value)>,
    pub created_at: i64,
    pub updated_at: i64,
    pub sent_at: Option<i64>,
    /// The claim holding the job (`node:id:attempt`), while an attempt is under way.
    pub locked_by: Option<String>,
    /// Where the job stands with its account's send limits: `held` (waiting for the window),
    /// `admitted` (counted in flight), `None` (not gated).
    pub send_gate: Option<String>,
}

impl Job {
    /// Waiting for its account's send window (`run_after` is when it is planned to go).
    pub fn is_held(&self) -> bool {
        self.send_gate.as_deref() == Some(GATE_HELD)
    }
}

/// [`Job::send_gate`] of a job waiting for its account's window.
pub const GATE_HELD: &str = "held";
/// [`Job::send_gate`] of a job let through its account's limits, in flight.
pub const GATE_ADMITTED: &str = "admitted";

pub struct NewJob<'a> {
    pub id: &'a str,
    pub workspace_id: &'a str,
    pub account_id: &'a str,
    pub idempotency_key: Option<&'a str>,
    pub request_hash: &'a [u8],
    pub message_id: &'a str,
    pub thread_refs: &'a [String],
    pub subject: &'a str,
    pub recipients: &'a [String],
    pub envelope_from: &'a str,
    pub raw: &'a [u8],
    pub max_attempts: i64,
    pub give_up_at: i64,
    pub now_ms: i64,
    /// `Some(send_at)` schedules the job; `None` leases it to `lease` (a claim token, see
    /// [`claim_token`], and its end) for an immediate attempt.
    pub send_at: Option<i64>,
    pub lease: (&'a str, i64),
    /// Its gate under the account's send limits ([`GATE_HELD`] with `send_at`: waiting for the
    /// window; [`GATE_ADMITTED`] with a lease: admitted for the immediate attempt).
    pub send_gate: Option<&'a str>,
}

const COLUMNS: &str = "id, workspace_id, account_id, idempotency_key, request_hash, status, message_id, \
     thread_refs, subject, recipients, envelope_from, attempts, max_attempts, run_after, give_up_at, \
     last_error, last_error_type, provider_id, sent_copy, response_status, response_body, created_at, \
     updated_at, sent_at, locked_by, send_gate";

fn decode<R: Row>(r: &R) -> Result<Job>
where
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> Option<String>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> Option<i64>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> Vec<u8>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    usize: sqlx::ColumnIndex<R>,
{
    let json_list = |s: String| -> Result<Vec<String>> {
        serde_json::from_str(&s).map_err(|e| StoreError::Corrupt(format!("outbox list: {e}")))
    };
    let status: String = r.try_get(5)?;
    let response_status: Option<i64> = r.try_get(19)?;
    let response_body: Option<String> = r.try_get(20)?;
    let response = match (response_status, response_body) {
        (Some(s), Some(b)) => Some((
            s as u16,
            serde_json::from_str(&b)
                .map_err(|e| StoreError::Corrupt(format!("outbox response: {e}")))?,
        )),
        _ => None,
    };
    Ok(Job {
        id: TrackingId::from(r.try_get::<String, _>(0)?),
        workspace_id: r.try_get(1)?,
        account_id: AccountId::from(r.try_get::<String, _>(2)?),
        idempotency_key: r.try_get(3)?,
        request_hash: r.try_get(4)?,
        status: JobStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("outbox status {status}")))?,
        message_id: r.try_get(6)?,
        thread_refs: json_list(r.try_get(7)?)?,
        subject: r.try_get(8)?,
        recipients: json_list(r.try_get(9)?)?,
        envelope_from: r.try_get(10)?,
        attempts: r.try_get(11)?,
        max_attempts: r.try_get(12)?,
        run_after: r.try_get(13)?,
        give_up_at: r.try_get(14)?,
        last_error: r.try_get(15)?,
        last_error_type: r.try_get(16)?,
        provider_id: r.try_get(17)?,
        sent_copy: r.try_get(18)?,
        response,
        created_at: r.try_get(21)?,
        updated_at: r.try_get(22)?,
        sent_at: r.try_get(23)?,
        locked_by: r.try_get(24)?,
        send_gate: r.try_get(25)?,
    })
}

/// Stores a new job and answers it as stored. A duplicate idempotency key is a unique
/// violation ([`StoreError::is_unique_violation`]).
pub async fn insert(store: &Store, j: NewJob<'_>) -> Result<Job> {
    insert_in(Db::Pool(store), j).await
}

/// [`insert`] on the pool or inside a transaction (the send-limit decision, the job and the
/// audit entry of its acceptance commit together).
pub async fn insert_in(db: Db<'_>, j: NewJob<'_>) -> Result<Job> {
    let (status, run_after, locked_by, locked_until, attempts) = match j.send_at {
        Some(at) => (JobStatus::Scheduled, at, None, None, 0i64),
        None => (
            JobStatus::Sending,
            j.now_ms,
            Some(j.lease.0),
            Some(j.lease.1),
            1i64,
        ),
    };
    let refs = serde_json::to_string(j.thread_refs).expect("strings serialize");
    let rcpts = serde_json::to_string(j.recipients).expect("strings serialize");
    with_conn!(db, c => {
        sqlx::query(
            "INSERT INTO outbox (id, workspace_id, account_id, idempotency_key, request_hash, status, \
             message_id, thread_refs, subject, recipients, envelope_from, raw, attempts, max_attempts, \
             run_after, give_up_at, locked_by, locked_until, sent_copy, copy_attempts, created_at, updated_at, \
             recipient_count, send_gate) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, 'none', 0, $19, $19, $20, $21)",
        )
        .bind(j.id)
        .bind(j.workspace_id)
        .bind(j.account_id)
        .bind(j.idempotency_key)
        .bind(j.request_hash)
        .bind(status.as_str())
        .bind(j.message_id)
        .bind(&refs)
        .bind(j.subject)
        .bind(&rcpts)
        .bind(j.envelope_from)
        .bind(j.raw)
        .bind(attempts)
        .bind(j.max_attempts)
        .bind(run_after)
        .bind(j.give_up_at)
        .bind(locked_by)
        .bind(locked_until)
        .bind(j.now_ms)
        .bind(j.recipients.len() as i64)
        .bind(j.send_gate)
        .execute(&mut *c)
        .await?;
    });
    Ok(Job {
        id: TrackingId::from(j.id),
        workspace_id: j.workspace_id.to_owned(),
        account_id: AccountId::from(j.account_id),
        idempotency_key: j.idempotency_key.map(str::to_owned),
        request_hash: j.request_hash.to_vec(),
        status,
        message_id: j.message_id.to_owned(),
        thread_refs: j.thread_refs.to_vec(),
        subject: j.subject.to_owned(),
        recipients: j.recipients.to_vec(),
        envelope_from: j.envelope_from.to_owned(),
        attempts,
        max_attempts: j.max_attempts,
        run_after,
        give_up_at: j.give_up_at,
        last_error: None,
        last_error_type: None,
        provider_id: None,
        sent_copy: "none".to_owned(),
        response: None,
        created_at: j.now_ms,
        updated_at: j.now_ms,
        sent_at: None,
        locked_by: locked_by.map(str::to_owned),
        send_gate: j.send_gate.map(str::to_owned),
    })
}

/// The job `id` if `tenant` sees it (its workspace, and its account for a bound key).
pub async fn get(store: &Store, tenant: &Tenant, id: &str) -> Result<Option<Job>> {
    let (bound, ids) = tenant.sql_filter("account_id", 3);
    let sql = sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM outbox WHERE workspace_id = $1 AND id = $2{bound}"
    ));
    with_pool!(store, pool => {
        let mut q = sqlx::query(sql).bind(tenant.workspace_id()).bind(id);
        for a in &ids {
            q = q.bind(a.as_str());
        }
        q.fetch_optional(pool).await?.as_ref().map(decode).transpose()
    })
}

/// The job by id, whatever its workspace (the engine's view).
pub async fn get_any(store: &Store, id: &str) -> Result<Option<Job>> {
    let sql = sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM outbox WHERE id = $1"));
    with_pool!(store, pool => {
        sqlx::query(sql).bind(id).fetch_optional(pool).await?.as_ref().map(decode).transpose()
    })
}

pub async fn get_by_key(store: &Store, workspace_id: &str, key: &str) -> Result<Option<Job>> {
    let sql = sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM outbox WHERE workspace_id = $1 AND idempotency_key = $2"
    ));
    with_pool!(store, pool => {
        sqlx::query(sql).bind(workspace_id).bind(key).fetch_optional(pool).await?.as_ref().map(decode).transpose()
    })
}

/// A job of the workspace by the Message-ID it was sent with (to answer our own mail).
pub async fn get_by_message_id(
    store: &Store,
    workspace_id: &str,
    message_id: &str,
) -> Result<Option<Job>> {
    get_by_message_id_in(Db::Pool(store), workspace_id, message_id).await
}

/// [`get_by_message_id`] on the pool or inside a transaction (a sync batch asks on its own
/// connection: a second one per pass could exhaust the pool when many passes hold a batch).
pub async fn get_by_message_id_in(
    db: Db<'_>,
    workspace_id: &str,
    message_id: &str,
) -> Result<Option<Job>> {
    let sql = sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM outbox WHERE workspace_id = $1 AND message_id = $2 ORDER BY created_at LIMIT 1"
    ));
    with_conn!(db, c => {
        sqlx::query(sql).bind(workspace_id).bind(message_id).fetch_optional(&mut *c).await?.as_ref().map(decode).transpose()
    })
}

/// The exact bytes to send.
pub async fn raw(store: &Store, id: &str) -> Result<Option<Vec<u8>>> {
    Ok(with_pool!(store, pool => {
        sqlx::query("SELECT raw FROM outbox WHERE id = $1").bind(id).fetch_optional(pool).await?.map(|r| r.get(0))
    }))
}

/// One page of the jobs `tenant` sees, newest first.
pub async fn list(
    store: &Store,
    tenant: &Tenant,
    after: Option<&Position>,
    limit: u32,
) -> Result<Vec<Job>> {
    let (date, id) = match after {
        Some(p) => (p.last_date, p.last_id.as_str()),
        None => (i64::MAX, ""),
    };
    let (bound, ids) = tenant.sql_filter("account_id", 5);
    let sql = sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM outbox WHERE workspace_id = $1 \
         AND (created_at < $2 OR (created_at = $2 AND id < $3)){bound} \
         ORDER BY created_at DESC, id DESC LIMIT $4"
    ));
    with_pool!(store, pool => {
        let mut q = sqlx::query(sql).bind(tenant.workspace_id()).bind(date).bind(id).bind(i64::from(limit));
        for a in &ids {
            q = q.bind(a.as_str());
        }
        q.fetch_all(pool).await?.iter().map(decode).collect()
    })
}

/// Whether the read-only `sql` (`SELECT EXISTS …`, `$1` = now) finds anything due. Asked before
/// a claim because an UPDATE takes SQLite's one write lock even when it matches nothing: the
/// workers' idle polls would otherwise contend with every other writer (a sync pass's
/// transactions) for nothing.
async fn any_due(store: &Store, sql: &'static str, now_ms: i64) -> Result<bool> {
    Ok(with_pool!(store, pool => {
        sqlx::query_scalar::<_, bool>(sql).bind(now_ms).fetch_one(pool).await?
    }))
}

/// Leases up to `limit` due jobs to `node` until `lease_until`: queued or scheduled jobs whose
/// time has come, and jobs whose previous lease expired (a node died mid-attempt).
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
    let due = "SELECT EXISTS (SELECT 1 FROM outbox WHERE \
               (status IN ('queued', 'scheduled') AND run_after <= $1) OR (status = 'sending' AND locked_until < $1))";
    if !any_due(store, due, now_ms).await? {
        return Ok(vec![]);
    }
    let ids: Vec<(String, String)> = match store {
        Store::Postgres(pool) => sqlx::query(
            "UPDATE outbox SET status = 'sending', locked_by = $1 || ':' || id || ':' || CAST(attempts + 1 AS TEXT), \
             locked_until = $2, attempts = attempts + 1, updated_at = $3 \
             WHERE id IN (SELECT id FROM outbox WHERE \
               (status IN ('queued', 'scheduled') AND run_after <= $3) OR (status = 'sending' AND locked_until < $3) \
               ORDER BY run_after LIMIT $4 FOR UPDATE SKIP LOCKED) \
             RETURNING id, locked_by",
        )
        .bind(node)
        .bind(lease_until)
        .bind(now_ms)
        .bind(limit)
        .fetch_all(pool)
        .await?
        .into_iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect(),
        // SQLite has one writer at a time, so the UPDATE … RETURNING is the claim.
        Store::Sqlite(pool) => sqlx::query(
            "UPDATE outbox SET status = 'sending', locked_by = $1 || ':' || id || ':' || CAST(attempts + 1 AS TEXT), \
             locked_until = $2, attempts = attempts + 1, updated_at = $3 \
             WHERE id IN (SELECT id FROM outbox WHERE \
               (status IN ('queued', 'scheduled') AND run_after <= $3) OR (status = 'sending' AND locked_until < $3) \
               ORDER BY run_after LIMIT $4) \
             RETURNING id, locked_by",
        )
        .bind(node)
        .bind(lease_until)
        .bind(now_ms)
        .bind(limit)
        .fetch_all(pool)
        .await?
        .into_iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect(),
    };
    Ok(ids)
}

/// The token of one claim of a job: unique per claim, because every claim counts an attempt.
/// A node whose claim went stale (its lease expired and the job was claimed again, even by
/// the same node) no longer matches, so it cannot record an outcome.
pub fn claim_token(node: &str, id: &str, attempt: i64) -> String {
    format!("{node}:{id}:{attempt}")
}

/// Extends the lease of claim `token` to `until`; false when the claim is no longer current.
pub async fn renew_lease(store: &Store, id: &str, token: &str, until: i64) -> Result<bool> {
    let n = with_pool!(store, pool => {
        sqlx::query("UPDATE outbox SET locked_until = $1 WHERE id = $2 AND locked_by = $3 AND status = 'sending'")
            .bind(until)
            .bind(id)
            .bind(token)
            .execute(pool)
            .await?
            .rows_affected()
    });
    Ok(n == 1)
}

/// The attempt succeeded: the job is sent and its Sent copy is due. `answer` is recorded as
/// the request's answer for idempotent replays when none was yet (one statement for both).
#[allow(clippy::too_many_arguments)]
pub async fn mark_sent(
    db: Db<'_>,
    id: &str,
    node: &str,
    now_ms: i64,
    provider_id: &str,
    copy: bool,
    answer: Option<(u16, &serde_json::Value)>,
) -> Result<bool> {
    let copy_state = if copy { "pending" } else { "none" };
    let (status, body) = match answer {
        Some((status, body)) => (Some(i64::from(status)), Some(body.to_string())),
        None => (None, None),
    };
    let n = with_conn!(db, c => {
        sqlx::query(
            "UPDATE outbox SET status = 'sent', provider_id = $1, sent_at = $2, updated_at = $2, locked_by = NULL, \
             locked_until = NULL, last_error = NULL, last_error_type = NULL, sent_copy = $3, run_after = $2, \
             response_status = COALESCE(response_status, $6), response_body = COALESCE(response_body, $7) \
             WHERE id = $4 AND locked_by = $5 AND status = 'sending'",
        )
        .bind(provider_id).bind(now_ms).bind(copy_state).bind(id).bind(node).bind(status).bind(body)
        .execute(&mut *c).await?.rows_affected()
    });
    Ok(n == 1)
}

/// Why and when a job is tried again.
pub struct Retry<'a> {
    pub run_after: i64,
    pub error_type: &'a str,
    pub error: &'a str,
    /// Give the attempt back: it never reached the provider (e.g. the account is disconnected).
    pub refund: bool,
}

/// The attempt failed transiently: try again at `retry.run_after`.
pub async fn mark_retry(
    store: &Store,
    id: &str,
    node: &str,
    now_ms: i64,
    retry: Retry<'_>,
) -> Result<bool> {
    let n = with_pool!(store, pool => {
        sqlx::query(
            "UPDATE outbox SET status = 'queued', run_after = $1, updated_at = $2, locked_by = NULL, locked_until = NULL, \
             last_error = $3, last_error_type = $4, attempts = attempts - $5, send_gate = NULL \
             WHERE id = $6 AND locked_by = $7 AND status = 'sending'",
        )
        .bind(retry.run_after)
        .bind(now_ms)
        .bind(retry.error)
        .bind(retry.error_type)
        .bind(i64::from(retry.refund))
        .bind(id)
        .bind(node)
        .execute(pool)
        .await?
        .rows_affected()
    });
    Ok(n == 1)
}

/// The claimed job waits for its account's send window (or pause) until `run_after`: back to
/// `scheduled`, held, its attempt given back (it never reached the provider, or the provider
/// refused the mailbox's quota, not the message).
/// Waiting is no failure: the retry horizon (`horizon_ms`) counts from `run_after` again.
pub async fn hold_in(
    db: Db<'_>,
    id: &str,
    token: &str,
    run_after: i64,
    horizon_ms: i64,
    now_ms: i64,
) -> Result<bool> {
    let n = with_conn!(db, c => {
        sqlx::query(
            "UPDATE outbox SET status = 'scheduled', send_gate = 'held', run_after = $1, updated_at = $2, \
             locked_by = NULL, locked_until = NULL, attempts = attempts - 1, \
             give_up_at = CASE WHEN give_up_at < $1 + $5 THEN $1 + $5 ELSE give_up_at END \
             WHERE id = $3 AND locked_by = $4 AND status = 'sending'",
        )
        .bind(run_after).bind(now_ms).bind(id).bind(token).bind(horizon_ms)
        .execute(&mut *c).await?.rows_affected()
    });
    Ok(n == 1)
}

/// The claimed job goes now under its account's limits: counted in flight until it ends.
pub async fn admit_in(db: Db<'_>, id: &str, token: &str) -> Result<bool> {
    let n = with_conn!(db, c => {
        sqlx::query(
            "UPDATE outbox SET send_gate = 'admitted' WHERE id = $1 AND locked_by = $2 AND status = 'sending'",
        )
        .bind(id).bind(token)
        .execute(&mut *c).await?.rows_affected()
    });
    Ok(n == 1)
}

/// The job failed for good (in `db`: the caller stores its event and audit entry with it).
pub async fn mark_failed(
    db: Db<'_>,
    id: &str,
    node: &str,
    now_ms: i64,
    error_type: &str,
    error: &str,
) -> Result<bool> {
    let n = with_conn!(db, c => {
        sqlx::query(
            "UPDATE outbox SET status = 'failed', updated_at = $1, locked_by = NULL, locked_until = NULL, \
             last_error = $2, last_error_type = $3 WHERE id = $4 AND locked_by = $5 AND status = 'sending'",
        )
        .bind(now_ms).bind(error).bind(error_type).bind(id).bind(node)
        .execute(&mut *c).await?.rows_affected()
    });
    Ok(n == 1)
}

/// Records the answer given to the request that created the job (replayed to duplicates).
pub async fn set_response(
    store: &Store,
    id: &str,
    status: u16,
    body: &serde_json::Value,
) -> Result<()> {
    let body = body.to_string();
    with_pool!(store, pool => {
        sqlx::query("UPDATE outbox SET response_status = $1, response_body = $2 WHERE id = $3 AND response_status IS NULL")
            .bind(i64::from(status)).bind(&body).bind(id)
            .execute(pool).await?;
    });
    Ok(())
}

/// Leases sent jobs whose copy to the Sent folder is due.
pub async fn claim_copies(
    store: &Store,
    node: &str,
    now_ms: i64,
    lease_until: i64,
    limit: i64,
) -> Result<Vec<String>> {
    let due = "SELECT EXISTS (SELECT 1 FROM outbox WHERE status = 'sent' AND sent_copy = 'pending' \
               AND run_after <= $1 AND (locked_until IS NULL OR locked_until < $1))";
    if !any_due(store, due, now_ms).await? {
        return Ok(vec![]);
    }
    // The copy's lease reuses the job's lock columns: a sent job has no other lease.
    let sql = "UPDATE outbox SET locked_by = $1, locked_until = $2, copy_attempts = copy_attempts + 1 \
               WHERE id IN (SELECT id FROM outbox WHERE status = 'sent' AND sent_copy = 'pending' AND run_after <= $3 \
                 AND (locked_until IS NULL OR locked_until < $3) ORDER BY run_after LIMIT $4) RETURNING id";
    Ok(with_pool!(store, pool => {
        sqlx::query(sql).bind(node).bind(lease_until).bind(now_ms).bind(limit)
            .fetch_all(pool).await?.into_iter().map(|r| r.get(0)).collect()
    }))
}

/// Takes the copy of a just-sent job for the sender itself (no wait for the worker).
pub async fn take_copy(store: &Store, id: &str, node: &str, lease_until: i64) -> Result<bool> {
    let n = with_pool!(store, pool => {
        sqlx::query(
            "UPDATE outbox SET locked_by = $1, locked_until = $2, copy_attempts = copy_attempts + 1 \
             WHERE id = $3 AND status = 'sent' AND sent_copy = 'pending' AND locked_until IS NULL",
        )
        .bind(node).bind(lease_until).bind(id)
        .execute(pool).await?.rows_affected()
    });
    Ok(n == 1)
}

/// Records the outcome of a Sent copy: `done`, `failed`, or back to `pending` at `run_after`.
pub async fn mark_copy(
    store: &Store,
    id: &str,
    node: &str,
    state: &str,
    run_after: i64,
    error: Option<&str>,
) -> Result<()> {
    with_pool!(store, pool => {
        sqlx::query(
            "UPDATE outbox SET sent_copy = $1, run_after = $2, locked_by = NULL, locked_until = NULL, \
             last_error = COALESCE($3, last_error), last_error_type = COALESCE($4, last_error_type) \
             WHERE id = $5 AND locked_by = $6",
        )
        // The mail went out; its copy failed because the IMAP server did not take it.
        .bind(state).bind(run_after).bind(error).bind(error.map(|_| "errors/provider_unreachable")).bind(id).bind(node)
        .execute(pool).await?;
    });
    Ok(())
}

pub async fn copy_attempts(store: &Store, id: &str) -> Result<i64> {
    Ok(with_pool!(store, pool => {
        sqlx::query("SELECT copy_attempts FROM outbox WHERE id = $1").bind(id).fetch_one(pool).await?.get(0)
    }))
}
