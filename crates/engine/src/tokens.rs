//! OAuth access tokens: refreshed ahead of expiry, one refresh per account at a time — in this
//! process (a mutex per account) and across processes sharing the database (a lease row) —
//! with Microsoft's rotated refresh token saved. A refused grant (`invalid_grant`, the AADSTS
//! revocation codes) sets the account's status to `CREDENTIALS` and records an
//! `account_status` event.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use secrecy::{ExposeSecret, SecretString};
use serde_json::json;

use futures_util::future::BoxFuture;

use mailroom_core::Clock;
use mailroom_core::ErrorKind;
use mailroom_core::account::SourceStatus;
use mailroom_providers::{FailureKind, MailError, Protocol, Providers, TokenSource};
use mailroom_store::accounts::{self, Account, Credentials};
use mailroom_store::events::{self, NewEvent, event_id};
use mailroom_store::{Db, Store, StoreError, Vault};

/// Refresh this long before the access token expires.
pub const REFRESH_AHEAD_MS: i64 = 5 * 60 * 1000;
/// How long one node may hold an account's refresh lease.
const LEASE_MS: i64 = 60_000;

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The grant is gone: the account needs a reconnect.
    #[error("the provider refused the account's grant: {0}")]
    Revoked(String),
    /// The token endpoint could not be reached or answered 5xx/429.
    #[error("token refresh failed: {0}")]
    Transient(String),
    /// The operator's app is not configured or is misconfigured.
    #[error("{0}")]
    NotConfigured(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<TokenError> for MailError {
    fn from(e: TokenError) -> Self {
        match e {
            TokenError::Revoked(d) => MailError::auth(
                Protocol::OAuth,
                format!("the provider refused the account's grant: {d}"),
            ),
            TokenError::Transient(d) => MailError::transient(Protocol::OAuth, d),
            TokenError::NotConfigured(d) => {
                MailError::rejected(Protocol::OAuth, ErrorKind::InvalidAccount, d)
            }
            TokenError::Store(e) => {
                tracing::warn!(error = %e, "store error while reading tokens");
                MailError::transient(Protocol::OAuth, "the token store is unavailable")
            }
        }
    }
}

/// One account's tokens, as the mailbox seam asks for them.
pub struct AccountTokens {
    tokens: Arc<Tokens>,
    account: Account,
}

impl AccountTokens {
    pub fn new(tokens: Arc<Tokens>, account: Account) -> Self {
        Self { tokens, account }
    }
}

impl TokenSource for AccountTokens {
    fn access_token<'a>(
        &'a self,
        stale: Option<&'a SecretString>,
    ) -> BoxFuture<'a, Result<SecretString, MailError>> {
        Box::pin(async move {
            self.tokens
                .access_token(&self.account, stale)
                .await
                .map_err(MailError::from)
        })
    }
}

pub struct Tokens {
    store: Store,
    vault: Vault,
    clock: Arc<dyn Clock>,
    providers: Providers,
    node: String,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl Tokens {
    pub fn new(store: Store, vault: Vault, clock: Arc<dyn Clock>, providers: Providers) -> Self {
        Self {
            store,
            vault,
            clock,
            providers,
            node: mailroom_core::new_id(),
            locks: Mutex::new(HashMap::new()),
        }
    }

    fn lock_for(&self, account_id: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.locks
            .lock()
            .expect("token locks poisoned")
            .entry(account_id.to_owned())
            .or_default()
            .clone()
    }

    async fn current(
        &self,
        account_id: &str,
    ) -> Result<(SecretString, SecretString, i64), TokenError> {
        match accounts::credentials(&self.store, &self.vault, account_id).await? {
            Some(Credentials::OAuth {
                access_token,
                refresh_token,
                expires_at_ms,
            }) => Ok((access_token, refresh_token, expires_at_ms)),
            _ => Err(TokenError::NotConfigured(format!(
                "account {account_id} has no OAuth tokens"
            ))),
        }
    }

    /// A usable access token. With `stale` (the provider just refused this token), a token
    /// other than `stale` is returned, refreshing if nobody else already did.
    pub async fn access_token(
        &self,
        account: &Account,
        stale: Option<&SecretString>,
    ) -> Result<SecretString, TokenError> {
        let is_fresh = |token: &SecretString, expires: i64, now: i64| {
            expires - REFRESH_AHEAD_MS > now
                && stale.is_none_or(|s| s.expose_secret() != token.expose_secret())
        };
        let (token, _, expires) = self.current(&account.id).await?;
        if is_fresh(&token, expires, self.clock.now_ms()) {
            return Ok(token);
        }
        let lock = self.lock_for(&account.id);
        let _guard = lock.lock().await;
        let deadline = Instant::now() + Duration::from_millis(LEASE_MS as u64 + 5_000);
        loop {
            let (token, _, expires) = self.current(&account.id).await?;
            let now = self.clock.now_ms();
            if is_fresh(&token, expires, now) {
                return Ok(token);
            }
            if accounts::take_refresh_lease(
                &self.store,
                &account.id,
                &self.node,
                now,
                now + LEASE_MS,
            )
            .await?
            {
                // Another node may have refreshed and released the lease between our read and
                // our taking it: read again under the lease, so one expiry makes one refresh.
                let (token, refresh_token, expires) = self.current(&account.id).await?;
                let result = if is_fresh(&token, expires, self.clock.now_ms()) {
                    Ok(token)
                } else {
                    self.refresh(account, &refresh_token).await
                };
                accounts::release_refresh_lease(&self.store, &account.id, &self.node).await?;
                return result;
            }
            // Another node is refreshing: wait for its token (or for its lease to lapse).
            if Instant::now() > deadline {
                return Err(TokenError::Transient(
                    "another node's token refresh did not finish".into(),
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn refresh(
        &self,
        account: &Account,
        refresh_token: &SecretString,
    ) -> Result<SecretString, TokenError> {
        let now = self.clock.now_ms();
        metrics::counter!("mailroom_token_refreshes_total").increment(1);
        let refreshed = self
            .providers
            .refresh_grant(
                account.account_type,
                account.settings.mode(),
                refresh_token,
                now,
            )
            .await;
        match refreshed {
            Ok(set) => {
                let creds = Credentials::OAuth {
                    access_token: set.access_token.clone(),
                    // Google does not rotate; Microsoft does, and the newest must be kept.
                    refresh_token: set.refresh_token.unwrap_or_else(|| refresh_token.clone()),
                    expires_at_ms: set.expires_at_ms,
                };
                if !accounts::store_refreshed(
                    &self.store,
                    &self.vault,
                    &account.id,
                    &self.node,
                    &creds,
                )
                .await?
                {
                    tracing::warn!(account_id = %account.id, "refresh lease lost before the new token was saved");
                }
                tracing::info!(account_id = %account.id, "access token refreshed");
                Ok(set.access_token)
            }
            Err(e) if e.is_auth() => {
                self.mark_credentials(account).await?;
                Err(TokenError::Revoked(e.detail().to_owned()))
            }
            Err(e) if e.kind == FailureKind::Rejected(ErrorKind::InvalidAccount) => {
                tracing::error!(account_id = %account.id, error = %e, "the OAuth app is misconfigured");
                Err(TokenError::NotConfigured(e.detail().to_owned()))
            }
            Err(e) if e.kind == FailureKind::Rejected(ErrorKind::InvalidParameters) => {
                Err(TokenError::NotConfigured(e.detail().to_owned()))
            }
            Err(e) => {
                if !e.is_transient() {
                    tracing::error!(account_id = %account.id, error = %e, "the token endpoint refused the refresh request");
                }
                Err(TokenError::Transient(e.detail().to_owned()))
            }
        }
    }

    /// Status `CREDENTIALS` and an `account_status` event (once per change).
    pub async fn mark_credentials(&self, account: &Account) -> Result<(), StoreError> {
        mark_credentials(&self.store, account, self.clock.now_ms()).await
    }
}

/// Sets an account's status to `CREDENTIALS` and records the `account_status` event, once per
/// transition.
pub async fn mark_credentials(
    store: &Store,
    account: &Account,
    now: i64,
) -> Result<(), StoreError> {
    // The change and its event commit together.
    let mut tx = store.begin_write().await?;
    if accounts::set_status_in(Db::Tx(&mut tx), &account.id, SourceStatus::Credentials, now).await?
    {
        events::record_in(
            Db::Tx(&mut tx),
            NewEvent {
                id: event_id(&["account_status", &account.id, "CREDENTIALS", &now.to_string()]),
                workspace_id: &account.workspace_id,
                account_id: Some(&account.id),
                kind: "account_status",
                payload: json!({"AccountStatus": {"account_id": account.id, "account_type": account.account_type.as_str(), "message": "CREDENTIALS"}}),
                now_ms: now,
            },
        )
        .await?;
        crate::link::audit_account(
            &mut tx,
            mailroom_store::audit::Action::AccountCredentialsRefused,
            &mailroom_store::audit::Origin::system(),
            account,
            now,
        )
        .await?;
        tx.commit().await?;
        tracing::warn!(account_id = %account.id, "the provider refused the account's credentials; status CREDENTIALS");
    }
    Ok(())
}
