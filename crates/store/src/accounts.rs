//! Accounts: a linked mailbox. Settings are plain JSON; credentials are sealed by the vault
//! before they are written and opened only when a provider needs them.

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use zeroize::Zeroizing;

use crate::error::{Result, StoreError};
use crate::sync_window::SyncWindow;
use crate::tenant::Tenant;
use crate::tx::{Db, WriteTx, with_conn};
use crate::vault::Vault;
use crate::{Store, with_pool};
use mailroom_core::AccountId;
use mailroom_core::account::{AccountSettings, AccountType, SourceStatus};
use mailroom_core::cursor::Position;

/// An account row without its secrets.
#[derive(Debug, Clone, PartialEq)]
pub struct Account {
    pub id: AccountId,
    pub workspace_id: String,
    pub account_type: AccountType,
    pub name: String,
    pub status: SourceStatus,
    /// Why the status is what it is (the reason of an `ERROR`), when there is one.
    pub status_detail: Option<String>,
    /// Provider settings, decoded from the row by the account's type.
    pub settings: AccountSettings,
    pub created_at: i64,
    pub updated_at: i64,
}

/// An account's secrets, as the providers need them.
pub enum Credentials {
    Mail {
        imap_password: SecretString,
        smtp_password: SecretString,
    },
    /// Google or Microsoft: the current access token and the refresh token.
    OAuth {
        access_token: SecretString,
        refresh_token: SecretString,
        /// When the access token expires (Unix ms).
        expires_at_ms: i64,
    },
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Mail { .. } => f.write_str("Credentials::Mail { .. }"),
            Credentials::OAuth { expires_at_ms, .. } => {
                write!(
                    f,
                    "Credentials::OAuth {{ expires_at_ms: {expires_at_ms}, .. }}"
                )
            }
        }
    }
}

/// The sealed plaintext form. Never logged; the buffers are zeroized after use.
#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum SealedForm {
    Mail {
        imap_password: Zeroizing<String>,
        smtp_password: Zeroizing<String>,
    },
    Oauth {
        access_token: Zeroizing<String>,
        refresh_token: Zeroizing<String>,
        expires_at_ms: i64,
    },
}

impl Credentials {
    fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let z = |s: &SecretString| Zeroizing::new(s.expose_secret().to_owned());
        let form = match self {
            Credentials::Mail {
                imap_password,
                smtp_password,
            } => SealedForm::Mail {
                imap_password: z(imap_password),
                smtp_password: z(smtp_password),
            },
            Credentials::OAuth {
                access_token,
                refresh_token,
                expires_at_ms,
            } => SealedForm::Oauth {
                access_token: z(access_token),
                refresh_token: z(refresh_token),
                expires_at_ms: *expires_at_ms,
            },
        };
        Zeroizing::new(serde_json::to_vec(&form).expect("credentials serialize"))
    }

    fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let form: SealedForm = serde_json::from_slice(bytes)
            .map_err(|e| StoreError::Corrupt(format!("sealed credentials: {e}")))?;
        let s = |z: Zeroizing<String>| SecretString::from(z.as_str().to_owned());
        Ok(match form {
            SealedForm::Mail {
                imap_password,
                smtp_password,
            } => Credentials::Mail {
                imap_password: s(imap_password),
                smtp_password: s(smtp_password),
            },
            SealedForm::Oauth {
                access_token,
                refresh_token,
                expires_at_ms,
            } => Credentials::OAuth {
                access_token: s(access_token),
                refresh_token: s(refresh_token),
                expires_at_ms,
            },
        })
    }
}

/// The associated data binding a sealed blob to its account row.
fn credentials_aad(account_id: &str) -> String {
    format!("accounts.credentials:{account_id}")
}

pub struct NewAccount<'a> {
    pub id: &'a str,
    pub workspace_id: &'a str,
    pub account_type: AccountType,
    pub name: &'a str,
    pub status: SourceStatus,
    pub settings: &'a AccountSettings,
    pub credentials: &'a Credentials,
    /// How much existing mail the first sync indexes; `None`: the default window.
    pub window: Option<SyncWindow>,
    pub now_ms: i64,
}

const COLUMNS: &str =
    "id, workspace_id, type, name, status, settings, created_at, updated_at, status_detail";

fn decode<R: Row>(row: &R) -> Result<Account>
where
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    usize: sqlx::ColumnIndex<R>,
{
    let account_type: String = row.try_get(2)?;
    let status: String = row.try_get(4)?;
    let settings: String = row.try_get(5)?;
    let account_type = AccountType::parse(&account_type)
        .ok_or_else(|| StoreError::Corrupt(format!("account type {account_type}")))?;
    Ok(Account {
        id: AccountId::from(row.try_get::<String, _>(0)?),
        workspace_id: row.try_get(1)?,
        account_type,
        name: row.try_get(3)?,
        status: SourceStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("account status {status}")))?,
        status_detail: row.try_get(8)?,
        settings: AccountSettings::decode(account_type, &settings)
            .map_err(|e| StoreError::Corrupt(format!("account settings: {e}")))?,
        created_at: row.try_get(6)?,
        updated_at: row.try_get(7)?,
    })
}

/// Inserts an account with its credentials sealed.
pub async fn create(store: &Store, vault: &Vault, new: NewAccount<'_>) -> Result<Account> {
    let mut tx = store.begin_write().await?;
    let account = create_in(&mut tx, vault, new).await?;
    tx.commit().await?;
    Ok(account)
}

/// [`create`] inside a transaction (the account, its sync window and the event announcing it,
/// together or not at all).
pub async fn create_in(tx: &mut WriteTx, vault: &Vault, new: NewAccount<'_>) -> Result<Account> {
    let sealed = vault
        .seal(&credentials_aad(new.id), &new.credentials.to_bytes())
        .await?;
    let settings = new.settings.to_json();
    with_conn!(Db::Tx(&mut *tx), c => {
        sqlx::query(
            "INSERT INTO accounts (id, workspace_id, type, name, status, settings, credentials, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)",
        )
        .bind(new.id)
        .bind(new.workspace_id)
        .bind(new.account_type.as_str())
        .bind(new.name)
        .bind(new.status.as_str())
        .bind(&settings)
        .bind(&sealed)
        .bind(new.now_ms)
        .execute(&mut *c)
        .await?;
        if let Some(w) = new.window {
            sqlx::query(
                "INSERT INTO sync_windows (account_id, since_ms, max_per_folder, created_at) \
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(new.id)
            .bind(w.since_ms)
            .bind(w.max_per_folder)
            .bind(new.now_ms)
            .execute(&mut *c)
            .await?;
        }
    });
    Ok(Account {
        id: AccountId::from(new.id),
        workspace_id: new.workspace_id.to_owned(),
        account_type: new.account_type,
        name: new.name.to_owned(),
        status: new.status,
        status_detail: None,
        settings: new.settings.clone(),
        created_at: new.now_ms,
        updated_at: new.now_ms,
    })
}

/// The account `id` if it belongs to `workspace_id`.
pub async fn get(store: &Store, workspace_id: &str, id: &str) -> Result<Option<Account>> {
    let sql = sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM accounts WHERE workspace_id = $1 AND id = $2"
    ));
    with_pool!(store, pool => {
        sqlx::query(sql)
            .bind(workspace_id)
            .bind(id)
            .fetch_optional(pool)
            .await?
            .as_ref()
            .map(decode)
            .transpose()
    })
}

/// One page of the accounts `tenant` sees, newest first, starting after `after`.
pub async fn list(
    store: &Store,
    tenant: &Tenant,
    after: Option<&Position>,
    limit: u32,
) -> Result<Vec<Account>> {
    let (date, id) = match after {
        Some(p) => (p.last_date, p.last_id.as_str()),
        None => (i64::MAX, ""),
    };
    let (bound, ids) = tenant.sql_filter("id", 5);
    let sql = sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM accounts WHERE workspace_id = $1 \
         AND (created_at < $2 OR (created_at = $2 AND id < $3)){bound} \
         ORDER BY created_at DESC, id DESC LIMIT $4"
    ));
    with_pool!(store, pool => {
        let mut q = sqlx::query(sql)
            .bind(tenant.workspace_id())
            .bind(date)
            .bind(id)
            .bind(i64::from(limit));
        for a in &ids {
            q = q.bind(a.as_str());
        }
        q.fetch_all(pool).await?.iter().map(decode).collect()
    })
}

/// Replaces settings and credentials after a successful reconnect.
pub async fn reconnect(
    store: &Store,
    vault: &Vault,
    account: &Account,
    settings: &AccountSettings,
    credentials: &Credentials,
    now_ms: i64,
) -> Result<bool> {
    let mut tx = store.begin_write().await?;
    let done = reconnect_in(&mut tx, vault, account, settings, credentials, now_ms).await?;
    tx.commit().await?;
    Ok(done)
}

/// [`reconnect`] inside a transaction (with the event announcing it).
pub async fn reconnect_in(
    tx: &mut WriteTx,
    vault: &Vault,
    account: &Account,
    settings: &AccountSettings,
    credentials: &Credentials,
    now_ms: i64,
) -> Result<bool> {
    let sealed = vault
        .seal(&credentials_aad(&account.id), &credentials.to_bytes())
        .await?;
    let settings = settings.to_json();
    let n = with_conn!(Db::Tx(&mut *tx), c => {
        sqlx::query(
            "UPDATE accounts SET settings = $1, credentials = $2, status = $3, status_detail = NULL, updated_at = $4 \
             WHERE workspace_id = $5 AND id = $6",
        )
        .bind(&settings)
        .bind(&sealed)
        .bind(SourceStatus::Ok.as_str())
        .bind(now_ms)
        .bind(&account.workspace_id)
        .bind(account.id.as_str())
        .execute(&mut *c)
        .await?
        .rows_affected()
    });
    Ok(n == 1)
}

/// Opens the credentials of account `id`.
pub async fn credentials(store: &Store, vault: &Vault, id: &str) -> Result<Option<Credentials>> {
    let blob: Option<Vec<u8>> = with_pool!(store, pool => {
        sqlx::query("SELECT credentials FROM accounts WHERE id = $1")
            .bind(id)
            .fetch_optional(pool)
            .await?
            .map(|r| r.get(0))
    });
    match blob {
        None => Ok(None),
        Some(blob) => {
            let plain = vault.open_blob(&credentials_aad(id), &blob).await?;
            Credentials::from_bytes(&plain).map(Some)
        }
    }
}

/// Deletes the account and, with it, its sealed credentials.
pub async fn delete(store: &Store, workspace_id: &str, id: &str) -> Result<bool> {
    delete_in(Db::Pool(store), workspace_id, id).await
}

/// [`delete`] on the pool or inside a transaction (with the purge of its events and the
/// event announcing the deletion).
pub async fn delete_in(db: Db<'_>, workspace_id: &str, id: &str) -> Result<bool> {
    let n = with_conn!(db, c => {
        sqlx::query("DELETE FROM accounts WHERE workspace_id = $1 AND id = $2")
            .bind(workspace_id)
            .bind(id)
            .execute(&mut *c)
            .await?
            .rows_affected()
    });
    Ok(n == 1)
}

/// Re-seals under `key_id` every account's credentials sealed under another key. Each row is
/// swapped only if it still holds the blob that was read, so a concurrent reconnect is never
/// undone (it sealed under the new active key). Returns how many rows were re-sealed and how
/// many rows still use another key afterwards (written concurrently; the caller tries again).
pub(crate) async fn reseal_all(store: &Store, vault: &Vault, key_id: &str) -> Result<(u64, u64)> {
    let rows: Vec<(String, Vec<u8>)> = with_pool!(store, pool => {
        sqlx::query("SELECT id, credentials FROM accounts")
            .fetch_all(pool)
            .await?
            .into_iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect()
    });
    let mut resealed = 0;
    let mut left = 0;
    for (id, old) in rows {
        if Vault::blob_key_id(&old).as_deref() == Some(key_id) {
            continue;
        }
        let aad = credentials_aad(&id);
        let plain = vault.open_blob(&aad, &old).await?;
        let new = vault.seal(&aad, &plain).await?;
        if Vault::blob_key_id(&new).as_deref() != Some(key_id) {
            // Another rotation made a newer key active meanwhile; it re-seals this row.
            continue;
        }
        let n = with_pool!(store, pool => {
            sqlx::query("UPDATE accounts SET credentials = $1 WHERE id = $2 AND credentials = $3")
                .bind(&new)
                .bind(&id)
                .bind(&old)
                .execute(pool)
                .await?
                .rows_affected()
        });
        if n == 1 {
            resealed += 1;
        } else {
            left += 1;
        }
    }
    Ok((resealed, left))
}

/// The raw sealed blob (tests and diagnostics: which key sealed it).
pub async fn sealed_blob(store: &Store, id: &str) -> Result<Option<Vec<u8>>> {
    Ok(with_pool!(store, pool => {
        sqlx::query("SELECT credentials FROM accounts WHERE id = $1")
            .bind(id)
            .fetch_optional(pool)
            .await?
            .map(|r| r.get(0))
    }))
}

/// Sets an account's source status (e.g. `CREDENTIALS` when the provider refuses its
/// credentials). Returns whether the status changed.
pub async fn set_status(
    store: &Store,
    id: &str,
    status: SourceStatus,
    now_ms: i64,
) -> Result<bool> {
    set_status_in(Db::Pool(store), id, status, now_ms).await
}

/// [`set_status`] on the pool or inside a transaction (with the event announcing the change).
pub async fn set_status_in(
    db: Db<'_>,
    id: &str,
    status: SourceStatus,
    now_ms: i64,
) -> Result<bool> {
    let n = with_conn!(db, c => {
        sqlx::query("UPDATE accounts SET status = $1, status_detail = NULL, updated_at = $2 WHERE id = $3 AND status <> $1")
            .bind(status.as_str())
            .bind(now_ms)
            .bind(id)
            .execute(&mut *c)
            .await?
            .rows_affected()
    });
    Ok(n == 1)
}

/// Sets the status the account's sync found, with its reason (`detail`, e.g. the error of an
/// `ERROR`). Unlike [`set_status`] it leaves `updated_at` (the account's version) alone: a
/// status is not a new configuration, and the sync loop restarts on a new version. Returns
/// whether the status itself changed (a new reason for the same status is saved silently).
pub async fn set_sync_status(
    store: &Store,
    id: &str,
    status: SourceStatus,
    detail: Option<&str>,
) -> Result<bool> {
    set_sync_status_in(Db::Pool(store), id, status, detail).await
}

/// [`set_sync_status`] on the pool or inside a transaction (with the event announcing the
/// change).
pub async fn set_sync_status_in(
    db: Db<'_>,
    id: &str,
    status: SourceStatus,
    detail: Option<&str>,
) -> Result<bool> {
    let changed = with_conn!(db, c => {
        let changed = sqlx::query(
            "UPDATE accounts SET status = $1, status_detail = $2 WHERE id = $3 AND status <> $1",
        )
        .bind(status.as_str())
        .bind(detail)
        .bind(id)
        .execute(&mut *c)
        .await?
        .rows_affected();
        if changed == 0 {
            sqlx::query("UPDATE accounts SET status_detail = $1 WHERE id = $2 AND status = $3")
                .bind(detail)
                .bind(id)
                .bind(status.as_str())
                .execute(&mut *c)
                .await?;
        }
        changed
    });
    Ok(changed == 1)
}

/// An account as the sync supervisor sees it: which, of what type, at which version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncCandidate {
    pub id: String,
    pub account_type: AccountType,
    pub updated_at: i64,
}

/// Every account of every workspace, oldest first (the supervisor picks those it can sync).
pub async fn sync_candidates(store: &Store) -> Result<Vec<SyncCandidate>> {
    let rows: Vec<(String, String, i64)> = with_pool!(store, pool => {
        sqlx::query("SELECT id, type, updated_at FROM accounts ORDER BY created_at, id")
            .fetch_all(pool)
            .await?
            .into_iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect()
    });
    rows.into_iter()
        .map(|(id, t, updated_at)| {
            Ok(SyncCandidate {
                account_type: AccountType::parse(&t)
                    .ok_or_else(|| StoreError::Corrupt(format!("account type {t}")))?,
                id,
                updated_at,
            })
        })
        .collect()
}

/// Every account of one type, whatever its workspace, oldest first (a Gmail push names a
/// mailbox address, not an account: the engine finds its accounts among these).
pub async fn of_type(store: &Store, account_type: AccountType) -> Result<Vec<Account>> {
    let sql = sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM accounts WHERE type = $1 ORDER BY created_at, id"
    ));
    with_pool!(store, pool => {
        sqlx::query(sql)
            .bind(account_type.as_str())
            .fetch_all(pool)
            .await?
            .iter()
            .map(decode)
            .collect()
    })
}

/// The account by id, whatever its workspace (the engine's view).
pub async fn get_any(store: &Store, id: &str) -> Result<Option<Account>> {
    let sql = sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM accounts WHERE id = $1"));
    with_pool!(store, pool => {
        sqlx::query(sql).bind(id).fetch_optional(pool).await?.as_ref().map(decode).transpose()
    })
}

/// Replaces an account's credentials (a token refresh). Conditional on the lease holder, so a
/// node that lost its refresh lease cannot overwrite a newer token.
pub async fn store_refreshed(
    store: &Store,
    vault: &Vault,
    id: &str,
    node: &str,
    credentials: &Credentials,
) -> Result<bool> {
    let sealed = vault
        .seal(&credentials_aad(id), &credentials.to_bytes())
        .await?;
    let n = with_pool!(store, pool => {
        sqlx::query("UPDATE accounts SET credentials = $1 WHERE id = $2 AND refresh_lock_by = $3")
            .bind(&sealed)
            .bind(id)
            .bind(node)
            .execute(pool)
            .await?
            .rows_affected()
    });
    Ok(n == 1)
}

/// Takes the account's refresh lease until `until` unless another node holds a live one.
pub async fn take_refresh_lease(
    store: &Store,
    id: &str,
    node: &str,
    now_ms: i64,
    until: i64,
) -> Result<bool> {
    let n = with_pool!(store, pool => {
        sqlx::query(
            "UPDATE accounts SET refresh_lock_by = $1, refresh_lock_until = $2 \
             WHERE id = $3 AND (refresh_lock_until IS NULL OR refresh_lock_until < $4 OR refresh_lock_by = $1)",
        )
        .bind(node)
        .bind(until)
        .bind(id)
        .bind(now_ms)
        .execute(pool)
        .await?
        .rows_affected()
    });
    Ok(n == 1)
}

pub async fn release_refresh_lease(store: &Store, id: &str, node: &str) -> Result<()> {
    with_pool!(store, pool => {
        sqlx::query("UPDATE accounts SET refresh_lock_by = NULL, refresh_lock_until = NULL WHERE id = $1 AND refresh_lock_by = $2")
            .bind(id)
            .bind(node)
            .execute(pool)
            .await?;
    });
    Ok(())
}
