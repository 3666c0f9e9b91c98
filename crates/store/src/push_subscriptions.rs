//! Push subscriptions a provider holds for an account's mailbox (Graph change notifications;
//! migration 0016): the subscription id → account map that lets any process check a
//! notification and pass it on to the account's sync loop, the subscription's secret as a
//! SHA-256 only (a notification carries the secret; it is hashed and compared in constant
//! time), its expiry as the provider last confirmed it, and what a lifecycle notification
//! asked of the loop.

use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::Result;
use crate::{Store, with_pool};

/// What a lifecycle notification asked of the account's sync loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requested {
    /// Renew the subscription now (Graph's `reauthorizationRequired`).
    Renew,
    /// The provider ended it: make a new one (Graph's `subscriptionRemoved`).
    Replace,
}

impl Requested {
    fn as_stored(self) -> &'static str {
        match self {
            Requested::Renew => "renew",
            Requested::Replace => "replace",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "renew" => Some(Requested::Renew),
            "replace" => Some(Requested::Replace),
            _ => None,
        }
    }
}

/// A stored subscription (its secret stays in the table).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushSubscription {
    pub id: String,
    pub account_id: String,
    /// Unix ms, as the provider last confirmed it.
    pub expires_at: i64,
    pub requested: Option<Requested>,
}

/// How a notification's subscription id and secret compare with what is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checked {
    /// No such subscription (ended, replaced, or never ours).
    Unknown,
    /// The subscription exists but the secret is not its own.
    WrongSecret,
    Valid(PushSubscription),
}

fn hash_secret(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

type Row = (String, String, i64, Option<String>);
/// A [`Row`] with the secret's hash.
type CheckedRow = (String, String, i64, Option<String>, Vec<u8>);

fn from_row((id, account_id, expires_at, requested): Row) -> PushSubscription {
    PushSubscription {
        id,
        account_id,
        expires_at,
        requested: requested.as_deref().and_then(Requested::parse),
    }
}

/// Stores a subscription just made for `account_id` (the same id stored again is replaced).
pub async fn insert(
    store: &Store,
    id: &str,
    account_id: &str,
    secret: &SecretString,
    expires_at: i64,
    now_ms: i64,
) -> Result<()> {
    let hash = hash_secret(secret.expose_secret());
    with_pool!(store, pool => {
        sqlx::query(
            "INSERT INTO push_subscriptions (id, account_id, secret_hash, expires_at, created_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO UPDATE SET \
             account_id = excluded.account_id, secret_hash = excluded.secret_hash, \
             expires_at = excluded.expires_at, requested = NULL, requested_at = NULL",
        )
        .bind(id)
        .bind(account_id)
        .bind(&hash)
        .bind(expires_at)
        .bind(now_ms)
        .execute(pool)
        .await?;
    });
    Ok(())
}

/// The account's stored subscriptions, oldest first.
pub async fn of_account(store: &Store, account_id: &str) -> Result<Vec<PushSubscription>> {
    let rows: Vec<Row> = with_pool!(store, pool => {
        sqlx::query_as(
            "SELECT id, account_id, expires_at, requested FROM push_subscriptions \
             WHERE account_id = $1 ORDER BY created_at, id",
        )
        .bind(account_id)
        .fetch_all(pool)
        .await?
    });
    Ok(rows.into_iter().map(from_row).collect())
}

/// Checks a notification's subscription id and the secret it carries (`None`: it carried
/// none, which never matches).
pub async fn check(store: &Store, id: &str, presented: Option<&str>) -> Result<Checked> {
    let row: Option<CheckedRow> = with_pool!(store, pool => {
        sqlx::query_as(
            "SELECT id, account_id, expires_at, requested, secret_hash FROM push_subscriptions \
             WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(pool)
        .await?
    });
    let Some((id, account_id, expires_at, requested, stored)) = row else {
        return Ok(Checked::Unknown);
    };
    // Hashed even when absent, so a missing secret costs what a wrong one does.
    let presented = hash_secret(presented.unwrap_or(""));
    let matches = bool::from(presented.ct_eq(&stored));
    if !matches || stored.is_empty() {
        return Ok(Checked::WrongSecret);
    }
    Ok(Checked::Valid(from_row((
        id, account_id, expires_at, requested,
    ))))
}

/// The provider confirmed the subscription until `expires_at` (made or renewed): stored, and
/// a renewal asked for is done.
pub async fn confirm(store: &Store, id: &str, expires_at: i64) -> Result<()> {
    with_pool!(store, pool => {
        sqlx::query(
            "UPDATE push_subscriptions SET expires_at = $1, \
             requested = CASE WHEN requested = 'renew' THEN NULL ELSE requested END, \
             requested_at = CASE WHEN requested = 'renew' THEN NULL ELSE requested_at END \
             WHERE id = $2",
        )
        .bind(expires_at)
        .bind(id)
        .execute(pool)
        .await?;
    });
    Ok(())
}

/// Records what a lifecycle notification asks of the account's loop. A replacement asked for
/// is not downgraded to a renewal. Answers whether the subscription is still stored.
pub async fn request(store: &Store, id: &str, what: Requested, now_ms: i64) -> Result<bool> {
    let n = with_pool!(store, pool => {
        sqlx::query(
            "UPDATE push_subscriptions SET \
             requested = CASE WHEN requested = 'replace' THEN requested ELSE $1 END, \
             requested_at = $2 WHERE id = $3",
        )
        .bind(what.as_stored())
        .bind(now_ms)
        .bind(id)
        .execute(pool)
        .await?
        .rows_affected()
    });
    Ok(n == 1)
}

/// Forgets subscriptions (ended at the provider, or replaced).
pub async fn delete(store: &Store, ids: &[String]) -> Result<()> {
    for id in ids {
        with_pool!(store, pool => {
            sqlx::query("DELETE FROM push_subscriptions WHERE id = $1")
                .bind(id)
                .execute(pool)
                .await?;
        });
    }
    Ok(())
}
