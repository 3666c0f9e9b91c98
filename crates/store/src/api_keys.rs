//! API keys: `<key id>.<secret>`, shown once. Only SHA-256 of the secret is stored; the
//! secret has 256 bits of entropy, so a fast hash is right (no password stretching needed)
//! and the comparison is constant-time.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use sqlx::Row;
use subtle::ConstantTimeEq;

use crate::audit::{self, Action, NewEntry, Origin};
use crate::error::{Result, StoreError};
use crate::tenant::Tenant;
use crate::tx::with_conn;
use crate::{Db, Store, with_pool};
use mailroom_core::id::{looks_like_id, new_id, random_bytes};

/// What a key may do. `read`: every `GET` but the webhooks; `send`: sending and changing mail
/// (`POST /emails`, drafts, `PUT`/`DELETE /emails/{id}`); `manage`: accounts, hosted links,
/// webhooks (and, from the command line, keys).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Scopes {
    pub read: bool,
    pub send: bool,
    pub manage: bool,
}

impl Scopes {
    pub const ALL: Scopes = Scopes {
        read: true,
        send: true,
        manage: true,
    };

    /// `read,send` → read and send; unknown names are an error naming them.
    pub fn parse(s: &str) -> std::result::Result<Scopes, String> {
        let mut out = Scopes::default();
        for name in s.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            match name {
                "read" => out.read = true,
                "send" => out.send = true,
                "manage" => out.manage = true,
                other => return Err(format!("unknown scope `{other}` (read, send, manage)")),
            }
        }
        if out == Scopes::default() {
            return Err("at least one scope is needed (read, send, manage)".into());
        }
        Ok(out)
    }

    pub fn as_stored(self) -> String {
        let mut names = vec![];
        for (on, name) in [
            (self.read, "read"),
            (self.send, "send"),
            (self.manage, "manage"),
        ] {
            if on {
                names.push(name);
            }
        }
        names.join(",")
    }
}

/// Who a request is: the key, its workspace and what it may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyIdentity {
    pub key_id: String,
    pub workspace_id: String,
    pub scopes: Scopes,
    /// Requests per second this key may make (per node); `None`: the server's default.
    pub rate_per_second: Option<u32>,
    /// The accounts the key is bound to; `None`: every account of its workspace.
    pub accounts: Option<Vec<String>>,
}

impl KeyIdentity {
    /// What this key may see: its workspace, or only the accounts it is bound to.
    pub fn tenant(&self) -> Tenant {
        match &self.accounts {
            None => Tenant::workspace(&self.workspace_id),
            Some(ids) => Tenant::bound(&self.workspace_id, ids.clone()),
        }
    }
}

/// Why a presented key is not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Unknown key, or a wrong secret.
    Invalid,
    Revoked,
    Expired,
}

/// A key as `mailroom keys list` shows it (never its secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    pub key_id: String,
    pub workspace_id: String,
    pub name: String,
    pub scopes: Scopes,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
    pub last_used_at: Option<i64>,
    pub rate_per_second: Option<u32>,
    /// The accounts the key is bound to; `None`: every account of its workspace.
    pub accounts: Option<Vec<String>>,
}

/// A key to create.
pub struct NewKey<'a> {
    pub workspace_id: &'a str,
    pub name: &'a str,
    pub scopes: Scopes,
    pub expires_at: Option<i64>,
    /// Requests per second (per node); `None`: the server's default.
    pub rate_per_second: Option<u32>,
    /// Bind the key to these accounts of its workspace (each must exist); `None`: every
    /// account, present and future.
    pub accounts: Option<&'a [String]>,
}

/// The last use is written when the stored one is older than this: a busy key costs one write a
/// minute, not one per request.
const LAST_USE_GRANULARITY_MS: i64 = 60_000;

/// A freshly created key; `token` is the only copy of the secret.
pub struct CreatedKey {
    pub key_id: String,
    pub workspace_id: String,
    pub token: SecretString,
}

fn hash_secret(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

/// Creates a key in `workspace_id` (which must exist) with every scope and no expiry. Keys
/// are made with the `mailroom` command only, so the audit log credits it (`cli`).
pub async fn create(
    store: &Store,
    workspace_id: &str,
    name: &str,
    now_ms: i64,
) -> Result<CreatedKey> {
    create_with(
        store,
        NewKey {
            workspace_id,
            name,
            scopes: Scopes::ALL,
            expires_at: None,
            rate_per_second: None,
            accounts: None,
        },
        now_ms,
    )
    .await
}

/// Creates a key as `new` says; the key, its accounts and the `key.created` audit entry are
/// one transaction. An account not in the workspace is [`StoreError::UnknownAccount`].
pub async fn create_with(store: &Store, new: NewKey<'_>, now_ms: i64) -> Result<CreatedKey> {
    let NewKey {
        workspace_id,
        name,
        scopes,
        expires_at,
        rate_per_second,
        accounts,
    } = new;
    let key_id = new_id();
    let secret = URL_SAFE_NO_PAD.encode(random_bytes::<32>());
    let hash = hash_secret(&secret);
    let mut tx = store.begin_write().await?;
    with_conn!(Db::Tx(&mut tx), c => {
        sqlx::query(
            "INSERT INTO api_keys (id, workspace_id, name, secret_hash, created_at, scopes, expires_at, \
             rate_per_second, account_bound) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&key_id)
        .bind(workspace_id)
        .bind(name)
        .bind(&hash)
        .bind(now_ms)
        .bind(scopes.as_stored())
        .bind(expires_at)
        .bind(rate_per_second.map(i64::from))
        .bind(accounts.is_some())
        .execute(&mut *c)
        .await?;
        for account in accounts.unwrap_or_default() {
            let known = sqlx::query("SELECT 1 FROM accounts WHERE workspace_id = $1 AND id = $2")
                .bind(workspace_id)
                .bind(account)
                .fetch_optional(&mut *c)
                .await?
                .is_some();
            if !known {
                return Err(StoreError::UnknownAccount {
                    workspace: workspace_id.to_owned(),
                    account: account.clone(),
                });
            }
            sqlx::query(
                "INSERT INTO api_key_accounts (key_id, account_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            )
            .bind(&key_id)
            .bind(account)
            .execute(&mut *c)
            .await?;
        }
    });
    let mut details = serde_json::json!({ "name": name, "scopes": scopes.as_stored() });
    if let Some(ids) = accounts {
        details["accounts"] = serde_json::json!(ids.len());
    }
    audit::record_in(
        Db::Tx(&mut tx),
        NewEntry {
            workspace_id,
            action: Action::KeyCreated,
            origin: &Origin::cli(),
            account_id: None,
            target: Some(&key_id),
            details,
            now_ms,
        },
    )
    .await?;
    tx.commit().await?;
    let token = SecretString::from(format!("{key_id}.{secret}"));
    Ok(CreatedKey {
        key_id,
        workspace_id: workspace_id.to_owned(),
        token,
    })
}

/// The accounts key `key_id` is bound to, when it is bound.
async fn bound_accounts(store: &Store, key_id: &str) -> Result<Vec<String>> {
    Ok(with_pool!(store, pool => {
        sqlx::query("SELECT account_id FROM api_key_accounts WHERE key_id = $1 ORDER BY account_id")
            .bind(key_id)
            .fetch_all(pool)
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect()
    }))
}

/// Checks a presented token at `now_ms`: the caller, or why it is refused. Every call reads the
/// key's row, so a revocation holds on every node at once. The last use is refreshed when stale.
pub async fn verify(
    store: &Store,
    token: &SecretString,
    now_ms: i64,
) -> Result<std::result::Result<KeyIdentity, Refused>> {
    let Some((key_id, secret)) = token.expose_secret().split_once('.') else {
        return Ok(Err(Refused::Invalid));
    };
    if !looks_like_id(key_id) {
        return Ok(Err(Refused::Invalid));
    }
    type KeyRow = (
        String,
        Vec<u8>,
        String,
        Option<i64>,
        Option<i64>,
        Option<i64>,
        Option<i64>,
        bool,
    );
    let row: Option<KeyRow> = with_pool!(store, pool => {
        sqlx::query(
            "SELECT workspace_id, secret_hash, scopes, expires_at, revoked_at, last_used_at, \
             rate_per_second, account_bound FROM api_keys WHERE id = $1",
        )
        .bind(key_id)
        .fetch_optional(pool)
        .await?
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5), r.get(6), r.get(7)))
    });
    let Some((workspace_id, stored, scopes, expires_at, revoked_at, last_used_at, rate, bound)) =
        row
    else {
        return Ok(Err(Refused::Invalid));
    };
    let presented = hash_secret(secret);
    if !bool::from(presented.ct_eq(&stored)) {
        return Ok(Err(Refused::Invalid));
    }
    if revoked_at.is_some() {
        return Ok(Err(Refused::Revoked));
    }
    if expires_at.is_some_and(|at| at <= now_ms) {
        return Ok(Err(Refused::Expired));
    }
    if last_used_at.is_none_or(|at| now_ms - at >= LAST_USE_GRANULARITY_MS) {
        // Best effort: a busy database must not turn an authorised request into an error;
        // the next request past the granularity tries again.
        let written: Result<()> = async {
            with_pool!(store, pool => {
                sqlx::query("UPDATE api_keys SET last_used_at = $1 WHERE id = $2")
                    .bind(now_ms)
                    .bind(key_id)
                    .execute(pool)
                    .await?;
            });
            Ok(())
        }
        .await;
        if let Err(e) = written {
            tracing::warn!(key_id, error = %e, "could not record the key's last use");
        }
    }
    Ok(Ok(KeyIdentity {
        key_id: key_id.to_owned(),
        workspace_id,
        // A stored value no version of mailroom writes: no scope rather than every scope.
        scopes: Scopes::parse(&scopes).unwrap_or_default(),
        rate_per_second: rate.and_then(|r| u32::try_from(r).ok()),
        // Read on every request like the revocation: a binding holds at once on every node.
        accounts: match bound {
            true => Some(bound_accounts(store, key_id).await?),
            false => None,
        },
    }))
}

/// The keys of `workspace_id` (every workspace's with `None`), oldest first.
pub async fn list(store: &Store, workspace_id: Option<&str>) -> Result<Vec<KeyInfo>> {
    let rows = with_pool!(store, pool => {
        sqlx::query(
            "SELECT id, workspace_id, name, scopes, created_at, expires_at, revoked_at, last_used_at, \
             rate_per_second, account_bound FROM api_keys WHERE ($1 IS NULL OR workspace_id = $1) \
             ORDER BY created_at, id",
        )
        .bind(workspace_id)
        .fetch_all(pool)
        .await?
        .iter()
        .map(|r| KeyInfo {
            key_id: r.get(0),
            workspace_id: r.get(1),
            name: r.get(2),
            scopes: Scopes::parse(&r.get::<String, _>(3)).unwrap_or_default(),
            created_at: r.get(4),
            expires_at: r.get(5),
            revoked_at: r.get(6),
            last_used_at: r.get(7),
            rate_per_second: r.get::<Option<i64>, _>(8).and_then(|r| u32::try_from(r).ok()),
            // Filled below for the bound ones.
            accounts: r.get::<bool, _>(9).then(Vec::new),
        })
        .collect::<Vec<_>>()
    });
    let mut rows = rows;
    for k in &mut rows {
        if let Some(ids) = &mut k.accounts {
            *ids = bound_accounts(store, &k.key_id).await?;
        }
    }
    Ok(rows)
}

/// Revokes key `key_id`: `Ok(false)` when there is no such key. Revoking twice keeps the first
/// time (and the one `key.revoked` audit entry, written in the same transaction; keys are
/// revoked with the `mailroom` command only, so the entry credits it).
pub async fn revoke(store: &Store, key_id: &str, now_ms: i64) -> Result<bool> {
    let mut tx = store.begin_write().await?;
    // Only the revocation that sets the time is audited: one entry however often it is asked.
    let revoked: Option<String> = with_conn!(Db::Tx(&mut tx), c => {
        sqlx::query(
            "UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL RETURNING workspace_id",
        )
        .bind(now_ms)
        .bind(key_id)
        .fetch_optional(&mut *c)
        .await?
        .map(|r| r.get(0))
    });
    let Some(workspace) = revoked else {
        drop(tx);
        let exists = with_pool!(store, pool => {
            sqlx::query("SELECT 1 FROM api_keys WHERE id = $1")
                .bind(key_id)
                .fetch_optional(pool)
                .await?
                .is_some()
        });
        return Ok(exists);
    };
    audit::record_in(
        Db::Tx(&mut tx),
        NewEntry {
            workspace_id: &workspace,
            action: Action::KeyRevoked,
            origin: &Origin::cli(),
            account_id: None,
            target: Some(key_id),
            details: serde_json::json!({}),
            now_ms,
        },
    )
    .await?;
    tx.commit().await?;
    Ok(true)
}
