//! Linking a mailbox, whatever the way in (`POST /accounts`, `POST /accounts/{id}`, the hosted
//! page): verify it through the seam, then create the account or, for a reconnect, update the
//! existing one and set it `OK`.

use secrecy::SecretString;

use crate::Engine;
use crate::connect::{grant_error, to_api_error};
use crate::sync::status::announce;
use mailroom_core::account::{
    AccountMode, AccountSettings, AccountType, ImapEncryption, MailSettings, SourceStatus, TlsMode,
};
use mailroom_core::mail::SyncLimit;
use mailroom_core::send_limits::SendLimitSettings;
use mailroom_core::{ApiError, ErrorKind, new_id};
use mailroom_providers::apps::{IdP, TokenSet};
use mailroom_providers::mailbox::{Prospect, Verified};
use mailroom_store::accounts::{self, Account, Credentials, NewAccount};
use mailroom_store::audit::{self, Action, NewEntry, Origin};
use mailroom_store::events;
use mailroom_store::hosted_links::HostedLink;
use mailroom_store::sync_window::SyncWindow;
use mailroom_store::tenant::Tenant;
use mailroom_store::{Db, StoreError};

/// The account a linking produced.
pub struct Linked {
    pub account: Account,
    /// A reconnect of an existing account rather than a new one.
    pub reconnected: bool,
}

/// A mailbox to link, as `POST /accounts` gives it (the body's shape follows its `provider`).
pub enum LinkRequest {
    /// `MAIL`: IMAP/SMTP settings and passwords.
    Mail {
        settings: MailSettings,
        imap_password: SecretString,
        smtp_password: SecretString,
    },
    /// `GOOGLE_OAUTH` / `OUTLOOK`: tokens the integrator obtained with its own consent flow
    /// (both required; checked after the provider's app, so an unconfigured provider says so).
    Tokens {
        account_type: AccountType,
        access_token: Option<SecretString>,
        refresh_token: Option<SecretString>,
    },
}

/// A reconnect as `POST /accounts/{id}` gives it: every field optional; what the account
/// needs is checked against its kind.
#[derive(Default)]
pub struct ReconnectRequest {
    /// The body's `provider`, when given: it must be the account's.
    pub provider: Option<AccountType>,
    pub imap_host: Option<String>,
    pub imap_port: Option<u16>,
    pub imap_user: Option<String>,
    pub imap_encryption: Option<ImapEncryption>,
    pub smtp_host: Option<String>,
    pub smtp_port: Option<u16>,
    pub smtp_user: Option<String>,
    pub smtp_encryption: Option<TlsMode>,
    pub imap_password: Option<SecretString>,
    pub smtp_password: Option<SecretString>,
    pub access_token: Option<SecretString>,
    pub refresh_token: Option<SecretString>,
}

pub(crate) fn store_error(e: StoreError) -> ApiError {
    tracing::error!(error = %e, "store error while linking an account");
    ApiError::unexpected("an internal error occurred; it has been logged")
}

/// Links a new mailbox (`POST /accounts`). A key bound to accounts may not: it could not see
/// the account it made (403 `errors/insufficient_permissions`).
pub async fn link(
    engine: &Engine,
    tenant: &Tenant,
    origin: &Origin,
    req: LinkRequest,
    limit: SyncLimit,
    send_limits: SendLimitSettings,
) -> Result<Linked, ApiError> {
    refuse_bound(tenant)?;
    let workspace = tenant.workspace_id();
    let window = Some(window_of(limit, engine.clock.now_ms()));
    match req {
        LinkRequest::Mail {
            settings,
            imap_password,
            smtp_password,
        } => {
            link_mail(
                engine,
                workspace,
                settings,
                imap_password,
                smtp_password,
                Saving {
                    window,
                    origin: Some(origin),
                    send_limits,
                    ..Saving::default()
                },
            )
            .await
        }
        LinkRequest::Tokens {
            account_type,
            access_token,
            refresh_token,
        } => {
            let idp = oauth_idp(engine, account_type)?;
            access_token.ok_or_else(|| missing("access_token"))?;
            let refresh_token = refresh_token.ok_or_else(|| missing("refresh_token"))?;
            let how = Saving {
                window,
                origin: Some(origin),
                send_limits,
                ..Saving::default()
            };
            link_with_tokens(engine, workspace, idp, refresh_token, how).await
        }
    }
}

/// Reconnects `account` (`POST /accounts/{id}`): new tokens for a Google or Microsoft account;
/// new passwords (and optionally changed settings) for an IMAP/SMTP one.
pub async fn reconnect(
    engine: &Engine,
    origin: &Origin,
    account: &Account,
    req: ReconnectRequest,
) -> Result<Linked, ApiError> {
    let workspace = account.workspace_id.as_str();
    if req.provider.is_some_and(|p| p != account.account_type) {
        return Err(ApiError::new(
            ErrorKind::InvalidParameters,
            format!("this is a {} account", account.account_type.as_str()),
        ));
    }
    let stored = match &account.settings {
        AccountSettings::OAuth(_) => {
            let idp = oauth_idp(engine, account.account_type)?;
            let refresh = req.refresh_token.ok_or_else(|| missing("refresh_token"))?;
            req.access_token.ok_or_else(|| missing("access_token"))?;
            let how = Saving {
                reconnect: Some(account),
                origin: Some(origin),
                ..Saving::default()
            };
            return link_with_tokens(engine, workspace, idp, refresh, how).await;
        }
        AccountSettings::Mail(stored) => stored.clone(),
    };
    let settings = MailSettings {
        imap_host: req.imap_host.unwrap_or(stored.imap_host),
        imap_port: req.imap_port.unwrap_or(stored.imap_port),
        imap_user: req.imap_user.unwrap_or(stored.imap_user),
        imap_encryption: req.imap_encryption.unwrap_or(stored.imap_encryption),
        smtp_host: req.smtp_host.unwrap_or(stored.smtp_host),
        smtp_port: req.smtp_port.unwrap_or(stored.smtp_port),
        smtp_user: req.smtp_user.unwrap_or(stored.smtp_user),
        smtp_encryption: req.smtp_encryption.or(stored.smtp_encryption),
    };
    if req.imap_password.is_none() && req.smtp_password.is_none() {
        return Err(ApiError::new(
            ErrorKind::MissingParameters,
            "imap_password or smtp_password is required to reconnect",
        ));
    }
    let old = accounts::credentials(&engine.store, &engine.vault, &account.id)
        .await
        .map_err(store_error)?;
    let Some(Credentials::Mail {
        imap_password: old_imap,
        smtp_password: old_smtp,
    }) = old
    else {
        return Err(ApiError::not_found("account"));
    };
    link_mail(
        engine,
        workspace,
        settings,
        req.imap_password.unwrap_or(old_imap),
        req.smtp_password.unwrap_or(old_smtp),
        Saving {
            reconnect: Some(account),
            origin: Some(origin),
            ..Saving::default()
        },
    )
    .await
}

/// The window of existing mail a first sync indexes, fixed at link time `now_ms`.
pub(crate) fn window_of(limit: SyncLimit, now_ms: i64) -> SyncWindow {
    match limit {
        SyncLimit::Default => SyncWindow::default_at(now_ms),
        SyncLimit::NoHistory => SyncWindow {
            since_ms: Some(now_ms),
            max_per_folder: None,
        },
        SyncLimit::Since(ms) => SyncWindow {
            since_ms: Some(ms),
            max_per_folder: None,
        },
        SyncLimit::Count(n) => SyncWindow {
            since_ms: None,
            max_per_folder: Some(i64::from(n)),
        },
    }
}

fn missing(field: &str) -> ApiError {
    ApiError::new(ErrorKind::MissingParameters, format!("{field} is required"))
}

/// The identity provider of an OAuth account type, with its app configured on this server.
fn oauth_idp(engine: &Engine, t: AccountType) -> Result<IdP, ApiError> {
    engine
        .providers
        .oauth_provider(t)
        .map_err(|e| ApiError::new(ErrorKind::InvalidParameters, e.detail))
}

/// Unlinks an account: its row, sealed credentials, mail index (bodies included) and sync
/// lease go with it (foreign keys), its events not yet delivered are dropped; what this
/// process pooled for it (connections, sessions, a copy of its password) is dropped, and its
/// sync loop stops (here at once; in another process at its next heartbeat, the lease row
/// being gone). Its push subscriptions at the provider (Graph) are ended first, within a few
/// seconds, while its tokens still exist (`sync::push::end_for_account`).
pub async fn delete(engine: &Engine, origin: &Origin, account: &Account) -> Result<(), ApiError> {
    crate::sync::push::end_for_account(engine, account).await;
    // The account, the purge of its events, the announcement of its deletion (recorded after
    // the purge, so the webhooks still hear it) and its audit entry: one transaction.
    let mut tx = engine.store.begin_write().await.map_err(store_error)?;
    if !accounts::delete_in(Db::Tx(&mut tx), &account.workspace_id, &account.id)
        .await
        .map_err(store_error)?
    {
        return Err(ApiError::not_found("account"));
    }
    events::delete_for_account_in(Db::Tx(&mut tx), &account.id)
        .await
        .map_err(store_error)?;
    let now = engine.clock.now_ms();
    announce(Db::Tx(&mut tx), account, "DELETED", "", now)
        .await
        .map_err(store_error)?;
    audit_account(&mut tx, Action::AccountDeleted, origin, account, now)
        .await
        .map_err(store_error)?;
    tx.commit().await.map_err(store_error)?;
    if let Some(s) = engine.sync.local(&account.id) {
        s.nudge();
    }
    engine.mailboxes().forget(&account.id);
    tracing::info!(account_id = %account.id, "account deleted");
    Ok(())
}

/// How a verified mailbox is saved.
#[derive(Clone, Copy, Default)]
pub struct Saving<'a> {
    /// The account the mailbox reconnects (`None`: a new account).
    pub reconnect: Option<&'a Account>,
    /// A new account's sync window (`None`: the default, or the reconnected account's own).
    pub window: Option<SyncWindow>,
    /// The hosted link it was linked through: its `notify_url` call is queued in the same
    /// transaction as the account (a crash cannot lose it).
    pub hosted: Option<&'a HostedLink>,
    /// Who links it, for the audit log (`None`: mailroom itself).
    pub origin: Option<&'a Origin>,
    /// A new account's own send limits (`send_limits` of the request or the hosted link),
    /// saved with it; a reconnect keeps the account's.
    pub send_limits: SendLimitSettings,
}

/// 403 for a key bound to accounts: linking makes an account such a key could not see.
pub(crate) fn refuse_bound(tenant: &Tenant) -> Result<(), ApiError> {
    match tenant.bound_accounts() {
        None => Ok(()),
        Some(_) => Err(ApiError::new(
            ErrorKind::InsufficientPermissions,
            "this API key is bound to accounts: it cannot link new ones (use a key that is not \
             bound, or reconnect one of its accounts)",
        )),
    }
}

/// The audit entry of an account's life cycle (`account.*`), in the transaction of the change.
/// The details name the provider kind; the address and the credentials stay out.
pub(crate) async fn audit_account(
    tx: &mut mailroom_store::WriteTx,
    action: Action,
    origin: &Origin,
    account: &Account,
    now_ms: i64,
) -> Result<(), StoreError> {
    audit::record_in(
        Db::Tx(tx),
        NewEntry {
            workspace_id: &account.workspace_id,
            action,
            origin,
            account_id: Some(&account.id),
            target: Some(&account.id),
            details: serde_json::json!({ "provider": account.account_type.as_str() }),
            now_ms,
        },
    )
    .await
}

/// Saves a verified account: a new one, or new settings and credentials for `reconnect`.
async fn save(
    engine: &Engine,
    workspace: &str,
    verified: Verified,
    credentials: Credentials,
    how: Saving<'_>,
) -> Result<Linked, ApiError> {
    let Saving {
        reconnect,
        window,
        hosted,
        origin,
        send_limits,
    } = how;
    let system = Origin::system();
    let origin = origin.unwrap_or(&system);
    let now = engine.clock.now_ms();
    let Verified {
        account_type,
        settings,
        name,
    } = verified;
    match reconnect {
        Some(existing) => {
            if existing.account_type != account_type {
                return Err(ApiError::new(
                    ErrorKind::InvalidParameters,
                    format!(
                        "account {} is a {} account; it cannot be reconnected as {}",
                        existing.id,
                        existing.account_type.as_str(),
                        account_type.as_str()
                    ),
                ));
            }
            if let (AccountSettings::OAuth(old), AccountSettings::OAuth(new)) =
                (&existing.settings, &settings)
                && !old.email.eq_ignore_ascii_case(&new.email)
            {
                return Err(ApiError::new(
                    ErrorKind::InvalidParameters,
                    format!(
                        "signed in as {}, but the account to reconnect is {}",
                        new.email, old.email
                    ),
                ));
            }
            // The new settings and the RECONNECTED announcement commit together.
            let mut tx = engine.store.begin_write().await.map_err(store_error)?;
            let updated = accounts::reconnect_in(
                &mut tx,
                &engine.vault,
                existing,
                &settings,
                &credentials,
                now,
            )
            .await
            .map_err(store_error)?;
            if !updated {
                return Err(ApiError::not_found("account"));
            }
            announce(
                Db::Tx(&mut tx),
                existing,
                "RECONNECTED",
                &now.to_string(),
                now,
            )
            .await
            .map_err(store_error)?;
            audit_account(&mut tx, Action::AccountReconnected, origin, existing, now)
                .await
                .map_err(store_error)?;
            if let Some(link) = hosted {
                crate::hosted::queue_notify(&mut tx, link, &existing.id, "RECONNECTED", now)
                    .await
                    .map_err(store_error)?;
            }
            tx.commit().await.map_err(store_error)?;
            // Open mailboxes and pooled connections still hold the old login; the sync loop
            // (in whichever process) starts again with the new one.
            engine.mailboxes().forget(&existing.id);
            crate::sync::control::restart_loop(engine, &existing.id)
                .await
                .map_err(store_error)?;
            let account = accounts::get(&engine.store, workspace, &existing.id)
                .await
                .map_err(store_error)?
                .ok_or_else(|| ApiError::not_found("account"))?;
            tracing::info!(account_id = %account.id, "account reconnected");
            Ok(Linked {
                account,
                reconnected: true,
            })
        }
        None => {
            let id = new_id();
            // The account and its CREATION_SUCCESS announcement commit together.
            let mut tx = engine.store.begin_write().await.map_err(store_error)?;
            let account = accounts::create_in(
                &mut tx,
                &engine.vault,
                NewAccount {
                    id: &id,
                    workspace_id: workspace,
                    account_type,
                    name: &name,
                    // A mailbox the sync will read starts CONNECTING, until its first pass.
                    status: if engine.sync.config().enabled && engine.providers.syncs(account_type)
                    {
                        SourceStatus::Connecting
                    } else {
                        SourceStatus::Ok
                    },
                    settings: &settings,
                    credentials: &credentials,
                    window,
                    now_ms: now,
                },
            )
            .await
            .map_err(store_error)?;
            announce(Db::Tx(&mut tx), &account, "CREATION_SUCCESS", "", now)
                .await
                .map_err(store_error)?;
            audit_account(&mut tx, Action::AccountLinked, origin, &account, now)
                .await
                .map_err(store_error)?;
            if !send_limits.is_default() {
                mailroom_store::send_limits::set_in(Db::Tx(&mut tx), &id, &send_limits, now)
                    .await
                    .map_err(store_error)?;
            }
            if let Some(link) = hosted {
                crate::hosted::queue_notify(&mut tx, link, &account.id, "CREATION_SUCCESS", now)
                    .await
                    .map_err(store_error)?;
            }
            tx.commit().await.map_err(store_error)?;
            tracing::info!(account_id = %id, account_type = account_type.as_str(), "account linked");
            Ok(Linked {
                account,
                reconnected: false,
            })
        }
    }
}

/// Links an IMAP/SMTP mailbox after proving both logins work.
pub async fn link_mail(
    engine: &Engine,
    workspace: &str,
    settings: MailSettings,
    imap_password: SecretString,
    smtp_password: SecretString,
    how: Saving<'_>,
) -> Result<Linked, ApiError> {
    let verified = engine
        .providers
        .verify(Prospect::Mail {
            settings: &settings,
            imap_password: &imap_password,
            smtp_password: &smtp_password,
        })
        .await
        .map_err(|e| to_api_error(&e, &settings))?;
    save(
        engine,
        workspace,
        verified,
        Credentials::Mail {
            imap_password,
            smtp_password,
        },
        how,
    )
    .await
}

/// Links a Google or Microsoft mailbox from fresh tokens: checks the access granted (`asked`,
/// in the hosted flow, names what was asked for), identifies the mailbox, then saves the
/// sealed tokens. A reconnect must be the same mailbox.
pub async fn link_oauth(
    engine: &Engine,
    workspace: &str,
    idp: IdP,
    tokens: TokenSet,
    asked: Option<AccountMode>,
    how: Saving<'_>,
) -> Result<Linked, ApiError> {
    let verified = engine
        .providers
        .verify(Prospect::OAuth {
            idp,
            tokens: &tokens,
            asked,
        })
        .await
        .map_err(|e| grant_error(&e))?;
    let refresh_token = tokens
        .refresh_token
        .ok_or_else(|| ApiError::unexpected("verified tokens lost their refresh token"))?;
    let credentials = Credentials::OAuth {
        access_token: tokens.access_token,
        refresh_token,
        expires_at_ms: tokens.expires_at_ms,
    };
    save(engine, workspace, verified, credentials, how).await
}

/// Links a mailbox from tokens the integrator obtained itself. The refresh token is what
/// mailroom lives on, so it is proven first: one refresh (which also yields a fresh access
/// token of known lifetime), then the mailbox is identified with it.
pub async fn link_with_tokens(
    engine: &Engine,
    workspace: &str,
    idp: IdP,
    refresh_token: SecretString,
    how: Saving<'_>,
) -> Result<Linked, ApiError> {
    let now = engine.clock.now_ms();
    let fresh = engine
        .providers
        .refresh_grant(idp.account_type(), AccountMode::Full, &refresh_token, now)
        .await
        .map_err(|e| {
            let kind = if e.is_transient() {
                ErrorKind::ServiceUnavailable
            } else {
                ErrorKind::InvalidCredentials
            };
            ApiError::new(
                kind,
                format!("the refresh token does not work for this server's app: {e}"),
            )
        })?;
    let tokens = TokenSet {
        refresh_token: fresh.refresh_token.or(Some(refresh_token)),
        ..fresh
    };
    link_oauth(engine, workspace, idp, tokens, None, how).await
}
