//! The audit log: who did what to which account, key, webhook or send, when, from where.
//! Append-only: entries are inserted (in the transaction of the change they record, where
//! that change is a database write) and only the retention prune deletes them. An entry holds
//! ids, counts, provider names and status codes, never a secret, token, body or address.

use serde_json::Value;
use sqlx::Row;

use crate::error::{Result, StoreError};
use crate::tenant::Tenant;
use crate::tx::with_conn;
use crate::{Db, Store, with_pool};
use mailroom_core::cursor::Position;
use mailroom_core::new_id;

/// Who made a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// An API key, by its id (never its secret).
    Key(String),
    /// The end user on a hosted link's page.
    HostedLink,
    /// The operator, with the `mailroom` command.
    Cli,
    /// mailroom itself (a worker, a token refresh).
    System,
}

impl Actor {
    /// `key:<id>`, `hosted-link`, `cli` or `system`.
    pub fn as_stored(&self) -> String {
        match self {
            Actor::Key(id) => format!("key:{id}"),
            Actor::HostedLink => "hosted-link".to_owned(),
            Actor::Cli => "cli".to_owned(),
            Actor::System => "system".to_owned(),
        }
    }

    /// The actor [`Actor::as_stored`] wrote.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "hosted-link" => Some(Actor::HostedLink),
            "cli" => Some(Actor::Cli),
            "system" => Some(Actor::System),
            _ => s.strip_prefix("key:").map(|id| Actor::Key(id.to_owned())),
        }
    }
}

/// Where a change came from: the actor and, for an HTTP request, its id and source address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub actor: Actor,
    pub request_id: Option<String>,
    pub source_ip: Option<String>,
}

impl Origin {
    pub fn system() -> Self {
        Self::of(Actor::System)
    }

    pub fn cli() -> Self {
        Self::of(Actor::Cli)
    }

    pub fn of(actor: Actor) -> Self {
        Self {
            actor,
            request_id: None,
            source_ip: None,
        }
    }
}

/// What an entry records. The names are stable (filters and alerting rely on them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    AccountLinked,
    AccountReconnected,
    AccountUpdated,
    AccountDeleted,
    AccountCredentialsRefused,
    KeyCreated,
    KeyRevoked,
    WebhookCreated,
    WebhookUpdated,
    WebhookDeleted,
    SendAccepted,
    SendSent,
    SendRefused,
    SendGivenUp,
}

impl Action {
    pub const ALL: [Action; 14] = [
        Action::AccountLinked,
        Action::AccountReconnected,
        Action::AccountUpdated,
        Action::AccountDeleted,
        Action::AccountCredentialsRefused,
        Action::KeyCreated,
        Action::KeyRevoked,
        Action::WebhookCreated,
        Action::WebhookUpdated,
        Action::WebhookDeleted,
        Action::SendAccepted,
        Action::SendSent,
        Action::SendRefused,
        Action::SendGivenUp,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::AccountLinked => "account.linked",
            Action::AccountReconnected => "account.reconnected",
            Action::AccountUpdated => "account.updated",
            Action::AccountDeleted => "account.deleted",
            Action::AccountCredentialsRefused => "account.credentials_refused",
            Action::KeyCreated => "key.created",
            Action::KeyRevoked => "key.revoked",
            Action::WebhookCreated => "webhook.created",
            Action::WebhookUpdated => "webhook.updated",
            Action::WebhookDeleted => "webhook.deleted",
            Action::SendAccepted => "send.accepted",
            Action::SendSent => "send.sent",
            Action::SendRefused => "send.refused",
            Action::SendGivenUp => "send.given_up",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

/// An entry to append.
pub struct NewEntry<'a> {
    pub workspace_id: &'a str,
    pub action: Action,
    pub origin: &'a Origin,
    /// The account it concerns, if any (bound keys see the entries of their accounts only).
    pub account_id: Option<&'a str>,
    /// The id of what changed: an account, a key, a webhook or a send's tracking id.
    pub target: Option<&'a str>,
    /// Counts, provider names, status codes: never a secret, token, body or address.
    pub details: Value,
    pub now_ms: i64,
}

/// A stored entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub seq: i64,
    pub id: String,
    pub workspace_id: String,
    pub at: i64,
    pub action: String,
    pub actor: String,
    pub request_id: Option<String>,
    pub source_ip: Option<String>,
    pub account_id: Option<String>,
    pub target: Option<String>,
    pub details: Value,
}

impl Entry {
    /// Where a page ending at this entry stopped (entries with the same time are ordered by
    /// their insertion sequence).
    pub fn position(&self) -> Position {
        Position {
            last_id: self.seq.to_string(),
            last_date: self.at,
        }
    }
}

/// Appends an entry, on the pool or in the transaction of the change it records.
pub async fn record_in(db: Db<'_>, e: NewEntry<'_>) -> Result<()> {
    let details = e.details.to_string();
    with_conn!(db, c => {
        sqlx::query(
            "INSERT INTO audit_events (id, workspace_id, at, action, actor, request_id, source_ip, \
             account_id, target, details) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(new_id())
        .bind(e.workspace_id)
        .bind(e.now_ms)
        .bind(e.action.as_str())
        .bind(e.origin.actor.as_stored())
        .bind(e.origin.request_id.as_deref())
        .bind(e.origin.source_ip.as_deref())
        .bind(e.account_id)
        .bind(e.target)
        .bind(&details)
        .execute(&mut *c)
        .await?;
    });
    Ok(())
}

/// [`record_in`] on the pool.
pub async fn record(store: &Store, e: NewEntry<'_>) -> Result<()> {
    record_in(Db::Pool(store), e).await
}

/// Filters of `GET /audit`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    pub action: Option<String>,
    pub account_id: Option<String>,
    pub actor: Option<String>,
    /// Exclusive, Unix ms.
    pub after: Option<i64>,
    /// Exclusive, Unix ms.
    pub before: Option<i64>,
}

const COLUMNS: &str =
    "seq, id, workspace_id, at, action, actor, request_id, source_ip, account_id, target, details";

fn decode<R: Row>(r: &R) -> Result<Entry>
where
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> Option<String>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    usize: sqlx::ColumnIndex<R>,
{
    let details: String = r.try_get(10)?;
    Ok(Entry {
        seq: r.try_get(0)?,
        id: r.try_get(1)?,
        workspace_id: r.try_get(2)?,
        at: r.try_get(3)?,
        action: r.try_get(4)?,
        actor: r.try_get(5)?,
        request_id: r.try_get(6)?,
        source_ip: r.try_get(7)?,
        account_id: r.try_get(8)?,
        target: r.try_get(9)?,
        details: serde_json::from_str(&details)
            .map_err(|e| StoreError::Corrupt(format!("audit details: {e}")))?,
    })
}

/// One page of the entries `tenant` may see, newest first, after `after`. A key bound to
/// accounts sees only the entries about them.
pub async fn list(
    store: &Store,
    tenant: &Tenant,
    f: &Filter,
    after: Option<&Position>,
    limit: u32,
) -> Result<Vec<Entry>> {
    let (date, seq) = match after {
        Some(p) => (
            p.last_date,
            p.last_id
                .parse::<i64>()
                .map_err(|_| StoreError::Corrupt("audit cursor".into()))?,
        ),
        None => (i64::MAX, i64::MAX),
    };
    let (bound, ids) = tenant.sql_filter("account_id", 10);
    let sql = sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM audit_events WHERE workspace_id = $1 \
         AND (at < $2 OR (at = $2 AND seq < $3)) \
         AND ($4 IS NULL OR action = $4) AND ($5 IS NULL OR account_id = $5) \
         AND ($6 IS NULL OR actor = $6) AND ($7 IS NULL OR at > $7) AND ($8 IS NULL OR at < $8){bound} \
         ORDER BY at DESC, seq DESC LIMIT $9"
    ));
    with_pool!(store, pool => {
        let mut q = sqlx::query(sql)
            .bind(tenant.workspace_id())
            .bind(date)
            .bind(seq)
            .bind(f.action.as_deref())
            .bind(f.account_id.as_deref())
            .bind(f.actor.as_deref())
            .bind(f.after)
            .bind(f.before)
            .bind(i64::from(limit));
        for id in &ids {
            q = q.bind(id.as_str());
        }
        q.fetch_all(pool).await?.iter().map(decode).collect()
    })
}

/// The origin of the first entry `action` about `target`, if it is still kept: what happens
/// later to a send is credited to the request that accepted it (its key, request id and
/// address).
pub async fn origin_of(store: &Store, action: Action, target: &str) -> Result<Option<Origin>> {
    let row: Option<(String, Option<String>, Option<String>)> = with_pool!(store, pool => {
        sqlx::query(
            "SELECT actor, request_id, source_ip FROM audit_events WHERE target = $1 AND action = $2 \
             ORDER BY seq LIMIT 1",
        )
        .bind(target)
        .bind(action.as_str())
        .fetch_optional(pool)
        .await?
        .map(|r| (r.get(0), r.get(1), r.get(2)))
    });
    Ok(row.and_then(|(actor, request_id, source_ip)| {
        Some(Origin {
            actor: Actor::parse(&actor)?,
            request_id,
            source_ip,
        })
    }))
}

/// Deletes at most `batch` entries older than `before_ms` (the retention setting); answers how
/// many went. Small batches keep each delete short while the API writes on.
pub async fn prune(store: &Store, before_ms: i64, batch: u32) -> Result<u64> {
    Ok(with_pool!(store, pool => {
        sqlx::query(
            "DELETE FROM audit_events WHERE seq IN \
             (SELECT seq FROM audit_events WHERE at < $1 ORDER BY at LIMIT $2)",
        )
        .bind(before_ms)
        .bind(i64::from(batch))
        .execute(pool)
        .await?
        .rows_affected()
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn action_names_round_trip() {
        for a in Action::ALL {
            assert_eq!(Action::parse(a.as_str()), Some(a));
        }
        assert_eq!(Action::parse("account.unknown"), None);
    }

    #[test]
    fn actors_are_stored_by_kind_and_key_id() {
        assert_eq!(Actor::Key("abc".into()).as_stored(), "key:abc");
        assert_eq!(Actor::HostedLink.as_stored(), "hosted-link");
        assert_eq!(Actor::Cli.as_stored(), "cli");
        assert_eq!(Actor::System.as_stored(), "system");
        for a in [
            Actor::Key("abc".into()),
            Actor::HostedLink,
            Actor::Cli,
            Actor::System,
        ] {
            assert_eq!(Actor::parse(&a.as_stored()), Some(a));
        }
        assert_eq!(Actor::parse("someone"), None);
    }
}
