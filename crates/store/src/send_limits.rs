//! Send limits per account: the account's own settings of its limits, the pause a provider's
//! quota answer put on its sends, and what the outbox counts against them (its sent rows in
//! the rolling windows, its sends in flight, its jobs held for the window). Decisions are
//! taken under [`lock_in`], so two processes never both take an account's last slot.

use sqlx::Row;

use crate::Backend;
use crate::error::Result;
use crate::tx::{Db, WriteTx, with_conn};
use mailroom_core::send_limits::{LimitSetting, SendLimitSettings};

/// An account's limit settings and pause (all defaults and no pause when it has no row).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccountLimits {
    pub settings: SendLimitSettings,
    /// Until when (Unix ms) a provider's quota answer paused its sends.
    pub paused_until: Option<i64>,
    /// The provider's words that paused it.
    pub pause_reason: Option<String>,
}

pub async fn get(db: Db<'_>, account_id: &str) -> Result<AccountLimits> {
    let row = with_conn!(db, c => {
        sqlx::query(
            "SELECT per_minute, per_day, recipients_per_day, paused_until, pause_reason \
             FROM send_limits WHERE account_id = $1",
        )
        .bind(account_id)
        .fetch_optional(&mut *c)
        .await?
        .map(|r| -> Result<AccountLimits> {
            Ok(AccountLimits {
                settings: SendLimitSettings {
                    per_minute: LimitSetting::from_stored(r.try_get(0)?),
                    per_day: LimitSetting::from_stored(r.try_get(1)?),
                    recipients_per_day: LimitSetting::from_stored(r.try_get(2)?),
                },
                paused_until: r.try_get(3)?,
                pause_reason: r.try_get(4)?,
            })
        })
        .transpose()?
    });
    Ok(row.unwrap_or_default())
}

/// Replaces the account's limit settings (its pause stays).
pub async fn set_in(
    db: Db<'_>,
    account_id: &str,
    s: &SendLimitSettings,
    now_ms: i64,
) -> Result<()> {
    with_conn!(db, c => {
        sqlx::query(
            "INSERT INTO send_limits (account_id, per_minute, per_day, recipients_per_day, updated_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (account_id) DO UPDATE SET \
             per_minute = excluded.per_minute, per_day = excluded.per_day, \
             recipients_per_day = excluded.recipients_per_day, updated_at = excluded.updated_at",
        )
        .bind(account_id)
        .bind(s.per_minute.to_stored())
        .bind(s.per_day.to_stored())
        .bind(s.recipients_per_day.to_stored())
        .bind(now_ms)
        .execute(&mut *c)
        .await?;
    });
    Ok(())
}

/// Pauses the account's sends until `until` (a later pause already set stands).
pub async fn pause_in(
    db: Db<'_>,
    account_id: &str,
    until: i64,
    reason: &str,
    now_ms: i64,
) -> Result<()> {
    with_conn!(db, c => {
        sqlx::query(
            "INSERT INTO send_limits (account_id, paused_until, pause_reason, updated_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (account_id) DO UPDATE SET \
             paused_until = CASE WHEN send_limits.paused_until IS NULL OR send_limits.paused_until < excluded.paused_until \
               THEN excluded.paused_until ELSE send_limits.paused_until END, \
             pause_reason = excluded.pause_reason, updated_at = excluded.updated_at",
        )
        .bind(account_id)
        .bind(until)
        .bind(reason)
        .bind(now_ms)
        .execute(&mut *c)
        .await?;
    });
    Ok(())
}

/// Serialises the send decisions of one account across processes for the rest of `tx`:
/// PostgreSQL takes a transaction-scoped advisory lock on the account; SQLite's write
/// transaction (`BEGIN IMMEDIATE`) already holds the database's one write lock.
pub async fn lock_in(tx: &mut WriteTx, account_id: &str) -> Result<()> {
    if tx.backend() == Backend::Postgres {
        with_conn!(Db::Tx(&mut *tx), c => {
            sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('send_limits:' || $1, 0))")
                .bind(account_id)
                .execute(&mut *c)
                .await?;
        });
    }
    Ok(())
}

/// A send counted in a window: when, and to how many envelope recipients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counted {
    pub at: i64,
    pub recipients: i64,
}

/// A job admitted under its account's limits and under way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InFlight {
    pub id: String,
    pub created_at: i64,
    pub recipients: i64,
}

/// A job waiting for its account's window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    pub id: String,
    pub created_at: i64,
    pub run_after: i64,
    pub recipients: i64,
}

/// What counts against an account's limits now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Usage {
    /// Sent since the start of the longest window, oldest first.
    pub sent: Vec<Counted>,
    /// Admitted and under way: they count as sent now.
    pub in_flight: Vec<InFlight>,
    /// Held for the window, in acceptance order (including any claimed for an attempt and not
    /// yet admitted).
    pub held: Vec<Held>,
}

/// The account's usage: sends since `since` (Unix ms), sends in flight, jobs held. One
/// statement, so one snapshot on PostgreSQL: a job that goes from in flight to sent meanwhile
/// is counted once, never in neither list (separate reads could miss it and let one send past
/// the limit).
pub async fn usage_in(db: Db<'_>, account_id: &str, since: i64) -> Result<Usage> {
    // part 0: sent; 1: in flight; 2: held. `at` is sent_at for sent rows, else run_after.
    let sql = "SELECT CAST(0 AS BIGINT) AS part, id, created_at, sent_at AS at, recipient_count FROM outbox \
               WHERE account_id = $1 AND status = 'sent' AND sent_at > $2 \
               UNION ALL \
               SELECT CAST(1 AS BIGINT), id, created_at, run_after, recipient_count FROM outbox \
               WHERE account_id = $1 AND status = 'sending' AND send_gate = 'admitted' \
               UNION ALL \
               SELECT CAST(2 AS BIGINT), id, created_at, run_after, recipient_count FROM outbox \
               WHERE account_id = $1 AND status IN ('scheduled', 'queued', 'sending') AND send_gate = 'held'";
    let rows: Vec<(i64, String, i64, i64, i64)> = with_conn!(db, c => {
        sqlx::query(sql)
            .bind(account_id)
            .bind(since)
            .fetch_all(&mut *c)
            .await?
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?, r.try_get(4)?)))
            .collect::<Result<Vec<_>>>()?
    });
    let mut usage = Usage::default();
    for (part, id, created_at, at, recipients) in rows {
        match part {
            0 => usage.sent.push(Counted { at, recipients }),
            1 => usage.in_flight.push(InFlight {
                id,
                created_at,
                recipients,
            }),
            _ => usage.held.push(Held {
                id,
                created_at,
                run_after: at,
                recipients,
            }),
        }
    }
    usage.sent.sort_by_key(|c| c.at);
    usage
        .held
        .sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
    Ok(usage)
}

/// The account's limits changed: its held jobs are due again now, to be gated afresh.
pub async fn release_held_in(db: Db<'_>, account_id: &str, now_ms: i64) -> Result<u64> {
    Ok(with_conn!(db, c => {
        sqlx::query(
            "UPDATE outbox SET run_after = $1 WHERE account_id = $2 AND send_gate = 'held' \
             AND status IN ('scheduled', 'queued')",
        )
        .bind(now_ms)
        .bind(account_id)
        .execute(&mut *c)
        .await?
        .rows_affected()
    }))
}
