//! Webhook subscriptions of a workspace: where to POST which events, in which shape, signed
//! with which (sealed) secret. Deliveries live in [`crate::webhook_deliveries`].

use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::error::{Result, StoreError};
use crate::tx::{Db, with_conn};
use crate::{Store, with_pool};
use mailroom_core::cursor::Position;

/// An account a webhook is limited to, as it was when the webhook was created (so the list
/// still names an account deleted since).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountRef {
    pub id: String,
    /// mailroom's account type (`MAIL`, `GOOGLE_OAUTH`, `OUTLOOK`).
    #[serde(rename = "type")]
    pub account_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// A custom header sent with every delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    pub key: String,
    pub value: String,
}

/// A rename of a payload field: field `key` is sent as `name`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rename {
    pub name: String,
    pub key: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Webhook {
    pub id: String,
    pub workspace_id: String,
    pub name: Option<String>,
    /// `email`, `email_tracking` or `account_status`.
    pub source: String,
    pub request_url: String,
    /// `json` or `form`.
    pub format: String,
    pub events: Vec<String>,
    pub account_ids: Vec<AccountRef>,
    pub headers: Vec<Header>,
    pub data: Vec<Rename>,
    pub enabled: bool,
    /// The sealed signing secret.
    pub secret: Vec<u8>,
    /// The sealed previous secret, which still signs until `old_secret_until` (rotation).
    pub old_secret: Option<Vec<u8>>,
    pub old_secret_until: Option<i64>,
    /// Why the server disabled it (e.g. the receiver answered 410 Gone).
    pub disabled_reason: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

const COLUMNS: &str = "id, workspace_id, name, source, request_url, format, events, account_ids, headers, data, \
     enabled, secret, old_secret, old_secret_until, disabled_reason, created_at, updated_at";

fn json<T: serde::de::DeserializeOwned>(what: &str, s: &str) -> Result<T> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt(format!("webhook {what}: {e}")))
}

fn to_json<T: Serialize + ?Sized>(v: &T) -> String {
    serde_json::to_string(v).expect("plain data serializes")
}

fn decode<R: Row>(r: &R) -> Result<Webhook>
where
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> Option<String>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> Option<i64>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> bool: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> Vec<u8>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> Option<Vec<u8>>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    usize: sqlx::ColumnIndex<R>,
{
    Ok(Webhook {
        id: r.try_get(0)?,
        workspace_id: r.try_get(1)?,
        name: r.try_get(2)?,
        source: r.try_get(3)?,
        request_url: r.try_get(4)?,
        format: r.try_get(5)?,
        events: json("events", &r.try_get::<String, _>(6)?)?,
        account_ids: json("account_ids", &r.try_get::<String, _>(7)?)?,
        headers: json("headers", &r.try_get::<String, _>(8)?)?,
        data: json("data", &r.try_get::<String, _>(9)?)?,
        enabled: r.try_get(10)?,
        secret: r.try_get(11)?,
        old_secret: r.try_get(12)?,
        old_secret_until: r.try_get(13)?,
        disabled_reason: r.try_get(14)?,
        created_at: r.try_get(15)?,
        updated_at: r.try_get(16)?,
    })
}

/// Stores a new webhook, on the pool or in a transaction (with its audit entry).
pub async fn insert<'a>(db: impl Into<Db<'a>>, w: &Webhook) -> Result<()> {
    let db: Db<'_> = db.into();
    with_conn!(db, c => {
        sqlx::query(
            "INSERT INTO webhooks (id, workspace_id, name, source, request_url, format, events, account_ids, \
             headers, data, enabled, secret, old_secret, old_secret_until, disabled_reason, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)",
        )
        .bind(&w.id).bind(&w.workspace_id).bind(&w.name).bind(&w.source).bind(&w.request_url)
        .bind(&w.format).bind(to_json(&w.events)).bind(to_json(&w.account_ids))
        .bind(to_json(&w.headers)).bind(to_json(&w.data)).bind(w.enabled).bind(&w.secret)
        .bind(&w.old_secret).bind(w.old_secret_until).bind(&w.disabled_reason)
        .bind(w.created_at).bind(w.updated_at)
        .execute(&mut *c).await?;
    });
    Ok(())
}

/// A webhook of `workspace_id` (another workspace's is `None`).
pub async fn get(store: &Store, workspace_id: &str, id: &str) -> Result<Option<Webhook>> {
    let sql = sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM webhooks WHERE workspace_id = $1 AND id = $2"
    ));
    with_pool!(store, pool => {
        sqlx::query(sql).bind(workspace_id).bind(id).fetch_optional(pool).await?.as_ref().map(decode).transpose()
    })
}

/// The webhook by id, whatever its workspace (the dispatcher's view).
pub async fn get_any(store: &Store, id: &str) -> Result<Option<Webhook>> {
    let sql = sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM webhooks WHERE id = $1"));
    with_pool!(store, pool => {
        sqlx::query(sql).bind(id).fetch_optional(pool).await?.as_ref().map(decode).transpose()
    })
}

/// One page of a workspace's webhooks, oldest first.
pub async fn list(
    store: &Store,
    workspace_id: &str,
    after: Option<&Position>,
    limit: u32,
) -> Result<Vec<Webhook>> {
    let (date, id) = match after {
        Some(p) => (p.last_date, p.last_id.as_str()),
        None => (i64::MIN, ""),
    };
    let sql = sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM webhooks WHERE workspace_id = $1 \
         AND (created_at > $2 OR (created_at = $2 AND id > $3)) \
         ORDER BY created_at, id LIMIT $4"
    ));
    with_pool!(store, pool => {
        sqlx::query(sql).bind(workspace_id).bind(date).bind(id).bind(i64::from(limit))
            .fetch_all(pool).await?.iter().map(decode).collect()
    })
}

/// Deletes a webhook of the workspace (its deliveries go with it); false when there is none.
pub async fn delete<'a>(db: impl Into<Db<'a>>, workspace_id: &str, id: &str) -> Result<bool> {
    let db: Db<'_> = db.into();
    let n = with_conn!(db, c => {
        sqlx::query("DELETE FROM webhooks WHERE workspace_id = $1 AND id = $2")
            .bind(workspace_id).bind(id).execute(&mut *c).await?.rows_affected()
    });
    Ok(n == 1)
}

/// The fields a `PATCH` may change; `None` leaves one as it is.
#[derive(Debug, Clone, Default)]
pub struct Patch<'a> {
    pub request_url: Option<&'a str>,
    pub events: Option<&'a [String]>,
    pub headers: Option<&'a [Header]>,
    pub enabled: Option<bool>,
}

/// Saves what `patch` names and nothing else, in one statement (re-enabling clears the reason
/// it was disabled): a field the request did not name keeps what a concurrent change, e.g. a
/// 410 disabling the webhook, wrote. False when the webhook is gone.
pub async fn update<'a>(
    db: impl Into<Db<'a>>,
    workspace_id: &str,
    id: &str,
    patch: Patch<'_>,
    now_ms: i64,
) -> Result<bool> {
    let db: Db<'_> = db.into();
    let n = with_conn!(db, c => {
        sqlx::query(
            "UPDATE webhooks SET request_url = COALESCE($1, request_url), \
             events = COALESCE($2, events), headers = COALESCE($3, headers), \
             enabled = COALESCE($4, enabled), \
             disabled_reason = CASE WHEN $4 THEN NULL ELSE disabled_reason END, updated_at = $5 \
             WHERE workspace_id = $6 AND id = $7",
        )
        .bind(patch.request_url)
        .bind(patch.events.map(to_json))
        .bind(patch.headers.map(to_json))
        .bind(patch.enabled)
        .bind(now_ms).bind(workspace_id).bind(id)
        .execute(&mut *c).await?.rows_affected()
    });
    Ok(n == 1)
}

/// Replaces the secret; the one current at that moment keeps signing until `old_until` (taken
/// in the same statement: two rotations at once cannot lose a secret). False when the webhook
/// is gone.
pub async fn rotate_secret<'a>(
    db: impl Into<Db<'a>>,
    workspace_id: &str,
    id: &str,
    new_sealed: &[u8],
    old_until: i64,
    now_ms: i64,
) -> Result<bool> {
    let db: Db<'_> = db.into();
    let n = with_conn!(db, c => {
        sqlx::query(
            "UPDATE webhooks SET old_secret = secret, secret = $1, old_secret_until = $2, updated_at = $3 \
             WHERE workspace_id = $4 AND id = $5",
        )
        .bind(new_sealed).bind(old_until).bind(now_ms).bind(workspace_id).bind(id)
        .execute(&mut *c).await?.rows_affected()
    });
    Ok(n == 1)
}

/// Which webhooks of a workspace an event goes to, as the fan-out reads them.
pub(crate) struct Subscription {
    pub id: String,
    pub source: String,
    pub events: Vec<String>,
    pub account_ids: Vec<AccountRef>,
}

impl Subscription {
    /// Whether an event of `kind` about `account_id` is for this webhook.
    pub fn wants(&self, kind: &str, account_id: Option<&str>) -> bool {
        let source_ok = match source_of(kind) {
            Some("account_status") => self.source == "account_status",
            Some(s) => self.source == s && self.events.iter().any(|e| e == kind),
            None => false,
        };
        source_ok
            && (self.account_ids.is_empty()
                || account_id.is_some_and(|a| self.account_ids.iter().any(|r| r.id == a)))
    }
}

/// The webhook source an event kind belongs to (`None`: no webhook receives it, e.g. the
/// hosted-auth `notify_url` calls).
pub fn source_of(kind: &str) -> Option<&'static str> {
    match kind {
        "account_status" => Some("account_status"),
        "mail_opened" | "mail_link_clicked" => Some("email_tracking"),
        "mail_received" | "mail_sent" | "mail_moved" | "mail_read" | "mail_deleted"
        | "send_failed" | "send_paused" => Some("email"),
        _ => None,
    }
}

pub(crate) fn decode_subscription(
    id: String,
    source: String,
    events: &str,
    account_ids: &str,
) -> Result<Subscription> {
    Ok(Subscription {
        id,
        source,
        events: json("events", events)?,
        account_ids: json("account_ids", account_ids)?,
    })
}
