//! Tracking tokens of sent messages (`tracking_options`): what `/t/o/{token}` and
//! `/t/c/{token}` stand for. Written when the send is accepted; a token that is not here leads
//! nowhere.

use sqlx::Row;

use crate::error::Result;
use crate::{Store, with_pool};

/// What a token is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// The message's open pixel.
    Open,
    /// One link of the message.
    Click,
}

impl TokenKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenKind::Open => "open",
            TokenKind::Click => "click",
        }
    }
}

/// A stored token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackingLink {
    pub token: String,
    pub workspace_id: String,
    pub account_id: String,
    pub tracking_id: String,
    pub kind: TokenKind,
    /// For a click token: the URL the message had there.
    pub url: Option<String>,
    pub label: Option<String>,
    pub custom_domain: Option<String>,
}

/// Stores the tokens of one message (all or none).
pub async fn insert_all(store: &Store, links: &[TrackingLink], now_ms: i64) -> Result<()> {
    if links.is_empty() {
        return Ok(());
    }
    let mut tx = store.begin_write().await?;
    for l in links {
        crate::tx::with_conn!(crate::Db::Tx(&mut tx), c => {
            sqlx::query(
                "INSERT INTO tracking_links (token, workspace_id, account_id, tracking_id, kind, url, \
                 label, custom_domain, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(&l.token)
            .bind(&l.workspace_id)
            .bind(&l.account_id)
            .bind(&l.tracking_id)
            .bind(l.kind.as_str())
            .bind(&l.url)
            .bind(&l.label)
            .bind(&l.custom_domain)
            .bind(now_ms)
            .execute(c)
            .await?;
        });
    }
    tx.commit().await
}

/// The token `token`, if it exists.
pub async fn get(store: &Store, token: &str) -> Result<Option<TrackingLink>> {
    let row = with_pool!(store, pool => {
        sqlx::query(
            "SELECT token, workspace_id, account_id, tracking_id, kind, url, label, custom_domain \
             FROM tracking_links WHERE token = $1",
        )
        .bind(token)
        .fetch_optional(pool)
        .await?
        .map(|r| -> Result<TrackingLink> {
            let kind: String = r.try_get(4)?;
            Ok(TrackingLink {
                token: r.try_get(0)?,
                workspace_id: r.try_get(1)?,
                account_id: r.try_get(2)?,
                tracking_id: r.try_get(3)?,
                kind: if kind == "click" { TokenKind::Click } else { TokenKind::Open },
                url: r.try_get(5)?,
                label: r.try_get(6)?,
                custom_domain: r.try_get(7)?,
            })
        })
        .transpose()?
    });
    Ok(row)
}

/// Our id of the indexed message that a send with `tracking_id` became (its Sent copy), if the
/// sync has indexed it.
pub async fn email_id(
    store: &Store,
    account_id: &str,
    tracking_id: &str,
) -> Result<Option<String>> {
    let id = with_pool!(store, pool => {
        sqlx::query_scalar(
            "SELECT id FROM messages WHERE account_id = $1 AND tracking_id = $2 ORDER BY created_at LIMIT 1",
        )
        .bind(account_id)
        .bind(tracking_id)
        .fetch_optional(pool)
        .await?
    });
    Ok(id)
}
