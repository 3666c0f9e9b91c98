//! Hosted-auth links: random, stored hashed, expiring, single-use.

use sha2::{Digest, Sha256};
use sqlx::Row;

use crate::error::{Result, StoreError};
use crate::{Store, with_pool};

pub fn hash_token(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

#[derive(Debug, Clone, PartialEq)]
pub struct HostedLink {
    pub id: String,
    pub workspace_id: String,
    /// `create` or `reconnect`.
    pub kind: String,
    /// `full` or `send`: which scopes the OAuth consent asks for.
    pub mode: String,
    pub providers: Vec<String>,
    pub reconnect_account: Option<String>,
    pub name: Option<String>,
    pub success_redirect_url: Option<String>,
    pub failure_redirect_url: Option<String>,
    pub notify_url: Option<String>,
    pub expires_at: i64,
    pub used_at: Option<i64>,
    pub account_id: Option<String>,
    pub oauth_provider: Option<String>,
    pub created_at: i64,
    /// The link's `sync_limit` as stored (`SyncLimit::as_stored`); `None`: the default.
    pub sync_limit: Option<String>,
    /// The link's `send_limits` as stored (`SendLimitSettings::to_stored_json`); `None`: the
    /// provider's defaults.
    pub send_limits: Option<String>,
}

pub struct NewLink<'a> {
    pub id: &'a str,
    pub token: &'a str,
    pub workspace_id: &'a str,
    pub kind: &'a str,
    pub mode: &'a str,
    pub providers: &'a [String],
    pub reconnect_account: Option<&'a str>,
    pub name: Option<&'a str>,
    pub success_redirect_url: Option<&'a str>,
    pub failure_redirect_url: Option<&'a str>,
    pub notify_url: Option<&'a str>,
    pub expires_at: i64,
    pub now_ms: i64,
    pub sync_limit: Option<&'a str>,
    pub send_limits: Option<&'a str>,
}

const COLUMNS: &str = "id, workspace_id, kind, providers, reconnect_account, name, success_redirect_url, \
     failure_redirect_url, notify_url, expires_at, used_at, account_id, oauth_provider, created_at, mode, sync_limit, send_limits";

fn decode<R: Row>(r: &R) -> Result<HostedLink>
where
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> Option<String>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> Option<i64>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    usize: sqlx::ColumnIndex<R>,
{
    let providers: String = r.try_get(3)?;
    Ok(HostedLink {
        id: r.try_get(0)?,
        workspace_id: r.try_get(1)?,
        kind: r.try_get(2)?,
        providers: serde_json::from_str(&providers)
            .map_err(|e| StoreError::Corrupt(format!("link providers: {e}")))?,
        reconnect_account: r.try_get(4)?,
        name: r.try_get(5)?,
        success_redirect_url: r.try_get(6)?,
        failure_redirect_url: r.try_get(7)?,
        notify_url: r.try_get(8)?,
        expires_at: r.try_get(9)?,
        used_at: r.try_get(10)?,
        account_id: r.try_get(11)?,
        oauth_provider: r.try_get(12)?,
        created_at: r.try_get(13)?,
        mode: r.try_get(14)?,
        sync_limit: r.try_get(15)?,
        send_limits: r.try_get(16)?,
    })
}

pub async fn insert(store: &Store, l: NewLink<'_>) -> Result<()> {
    let providers = serde_json::to_string(l.providers).expect("strings serialize");
    with_pool!(store, pool => {
        sqlx::query(
            "INSERT INTO hosted_links (id, token_hash, workspace_id, kind, providers, reconnect_account, name, \
             success_redirect_url, failure_redirect_url, notify_url, expires_at, created_at, mode, sync_limit, send_limits) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
        )
        .bind(l.id)
        .bind(hash_token(l.token))
        .bind(l.workspace_id)
        .bind(l.kind)
        .bind(&providers)
        .bind(l.reconnect_account)
        .bind(l.name)
        .bind(l.success_redirect_url)
        .bind(l.failure_redirect_url)
        .bind(l.notify_url)
        .bind(l.expires_at)
        .bind(l.now_ms)
        .bind(l.mode)
        .bind(l.sync_limit)
        .bind(l.send_limits)
        .execute(pool)
        .await?;
    });
    Ok(())
}

/// The link a presented token names (whatever its state; callers check expiry and use).
pub async fn by_token(store: &Store, token: &str) -> Result<Option<HostedLink>> {
    let sql = sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM hosted_links WHERE token_hash = $1"
    ));
    with_pool!(store, pool => {
        sqlx::query(sql).bind(hash_token(token)).fetch_optional(pool).await?.as_ref().map(decode).transpose()
    })
}

/// The link whose OAuth round trip carries `state`, with its sealed PKCE verifier.
pub async fn by_oauth_state(store: &Store, state: &str) -> Result<Option<(HostedLink, Vec<u8>)>> {
    let sql = sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS}, oauth_verifier FROM hosted_links WHERE oauth_state_hash = $1"
    ));
    with_pool!(store, pool => {
        match sqlx::query(sql).bind(hash_token(state)).fetch_optional(pool).await? {
            None => Ok(None),
            Some(r) => {
                let verifier: Option<Vec<u8>> = r.try_get(17)?;
                Ok(Some((decode(&r)?, verifier.unwrap_or_default())))
            }
        }
    })
}

/// Starts an OAuth round trip for an unused, unexpired link (a new one replaces an older
/// unfinished one, so only the latest `state` can complete).
pub async fn begin_oauth(
    store: &Store,
    link_id: &str,
    provider: &str,
    state: &str,
    sealed_verifier: &[u8],
    now_ms: i64,
) -> Result<bool> {
    let n = with_pool!(store, pool => {
        sqlx::query(
            "UPDATE hosted_links SET oauth_state_hash = $1, oauth_provider = $2, oauth_verifier = $3 \
             WHERE id = $4 AND used_at IS NULL AND expires_at > $5",
        )
        .bind(hash_token(state))
        .bind(provider)
        .bind(sealed_verifier)
        .bind(link_id)
        .bind(now_ms)
        .execute(pool)
        .await?
        .rows_affected()
    });
    Ok(n == 1)
}

/// Consumes the link (single use): true for exactly one caller, and only before expiry.
pub async fn consume(store: &Store, link_id: &str, now_ms: i64) -> Result<bool> {
    let n = with_pool!(store, pool => {
        sqlx::query(
            "UPDATE hosted_links SET used_at = $1, oauth_state_hash = NULL, oauth_verifier = NULL \
             WHERE id = $2 AND used_at IS NULL AND expires_at > $1",
        )
        .bind(now_ms)
        .bind(link_id)
        .execute(pool)
        .await?
        .rows_affected()
    });
    Ok(n == 1)
}

/// Records which account a consumed link produced.
pub async fn set_account(store: &Store, link_id: &str, account_id: &str) -> Result<()> {
    with_pool!(store, pool => {
        sqlx::query("UPDATE hosted_links SET account_id = $1 WHERE id = $2")
            .bind(account_id)
            .bind(link_id)
            .execute(pool)
            .await?;
    });
    Ok(())
}

/// Gives a link back when linking failed after it was consumed (e.g. the mailbox refused
/// the login), so the user can try again with the same link before it expires.
pub async fn release(store: &Store, link_id: &str) -> Result<()> {
    with_pool!(store, pool => {
        sqlx::query("UPDATE hosted_links SET used_at = NULL WHERE id = $1 AND account_id IS NULL")
            .bind(link_id)
            .execute(pool)
            .await?;
    });
    Ok(())
}
