//! Linking a mailbox, whatever the way in (`POST /accounts`, the hosted page): verify it,
//! then create the account or, for a reconnect, update the existing one and set it `OK`.

use secrecy::SecretString;

use crate::Engine;
use crate::connect::verify_mail;
use mailroom_core::account::{AccountMode, AccountType, MailSettings, OAuthSettings, SourceStatus};
use mailroom_core::{ApiError, ErrorKind, new_id};
use mailroom_providers::gmail::GmailClient;
use mailroom_providers::graph::GraphClient;
use mailroom_providers::http_api::HttpApiError;
use mailroom_providers::oauth::{IdP, TokenSet};
use mailroom_store::StoreError;
use mailroom_store::accounts::{self, Account, Credentials, NewAccount};

/// The account a linking produced.
pub struct Linked {
    pub account: Account,
    /// A reconnect of an existing account rather than a new one.
    pub reconnected: bool,
}

pub(crate) fn store_error(e: StoreError) -> ApiError {
    tracing::error!(error = %e, "store error while linking an account");
    ApiError::unexpected("an internal error occurred; it has been logged")
}

/// Saves a verified account: a new one, or new settings and credentials for `reconnect`.
pub(crate) async fn save(
    engine: &Engine,
    workspace: &str,
    account_type: AccountType,
    name: &str,
    settings: serde_json::Value,
    credentials: Credentials,
    reconnect: Option<&Account>,
) -> Result<Linked, ApiError> {
    let now = engine.clock.now_ms();
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
            let updated = accounts::reconnect(
                &engine.store,
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
            let account = accounts::create(
                &engine.store,
                &engine.vault,
                NewAccount {
                    id: &id,
                    workspace_id: workspace,
                    account_type,
                    name,
                    status: SourceStatus::Ok,
                    settings: &settings,
                    credentials: &credentials,
                    now_ms: now,
                },
            )
            .await
            .map_err(store_error)?;
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
    reconnect: Option<&Account>,
) -> Result<Linked, ApiError> {
    verify_mail(&settings, &imap_password, &smtp_password, &engine.net).await?;
    let json = serde_json::to_value(&settings).map_err(|e| ApiError::unexpected(e.to_string()))?;
    let name = settings.imap_user.clone();
    save(
        engine,
        workspace,
        AccountType::Mail,
        &name,
        json,
        Credentials::Mail {
            imap_password,
            smtp_password,
        },
        reconnect,
    )
    .await
}

/// The mailbox behind an access token: (address, provider user id).
pub async fn identify(
    engine: &Engine,
    idp: IdP,
    token: &SecretString,
) -> Result<(String, String), ApiError> {
    let app = engine.apps.get(idp).ok_or_else(|| {
        ApiError::new(
            ErrorKind::InvalidParameters,
            format!("the {idp:?} app is not configured on this server"),
        )
    })?;
    let refused = |e: HttpApiError| {
        let kind = if e.is_auth() {
            ErrorKind::InvalidCredentials
        } else {
            ErrorKind::ProviderUnreachable
        };
        ApiError::new(
            kind,
            format!("the provider refused to identify the mailbox: {e}"),
        )
    };
    match idp {
        IdP::Google => {
            let p = GmailClient::new(engine.http.clone(), app.api_base.clone())
                .profile(token)
                .await
                .map_err(refused)?;
            Ok((p.email_address.clone(), p.email_address))
        }
        IdP::Microsoft => {
            let me = GraphClient::new(engine.http.clone(), app.api_base.clone())
                .me(token)
                .await
                .map_err(refused)?;
            let email = me
                .mail
                .clone()
                .filter(|m| !m.is_empty())
                .unwrap_or_else(|| me.user_principal_name.clone());
            Ok((email, me.id))
        }
    }
}

/// Links a Google or Microsoft mailbox from fresh tokens: identifies it (Gmail
/// `users.getProfile`, Graph `/me`), then saves the sealed tokens. A reconnect must be the same
/// mailbox.
pub async fn link_oauth(
    engine: &Engine,
    workspace: &str,
    idp: IdP,
    tokens: TokenSet,
    reconnect: Option<&Account>,
) -> Result<Linked, ApiError> {
    let refresh_token = tokens.refresh_token.clone().ok_or_else(|| {
        ApiError::new(
            ErrorKind::InvalidCredentials,
            "the provider returned no refresh token (offline access was not granted)",
        )
    })?;
    let mode = mode_of(idp, tokens.scope.as_deref());
    let (email, provider_user_id) = match (idp, mode) {
        // `gmail.send` cannot read the profile: the ID token names the mailbox.
        (IdP::Google, AccountMode::Send) => {
            let email = tokens.id_token_email().ok_or_else(|| {
                ApiError::new(ErrorKind::InvalidCredentials, "a send-only Google sign-in must include openid email (no ID token with an email came back)")
            })?;
            (email.clone(), email)
        }
        _ => identify(engine, idp, &tokens.access_token).await?,
    };
    if let Some(existing) = reconnect
        && let Ok(old) = serde_json::from_value::<OAuthSettings>(existing.settings.clone())
        && !old.email.eq_ignore_ascii_case(&email)
    {
        return Err(ApiError::new(
            ErrorKind::InvalidParameters,
            format!(
                "signed in as {email}, but the account to reconnect is {}",
                old.email
            ),
        ));
    }
    let scopes = match &tokens.scope {
        Some(s) => s.split_whitespace().map(str::to_owned).collect(),
        None => crate::apps::scopes(idp)
            .iter()
            .map(|s| s.to_string())
            .collect(),
    };
    let settings = OAuthSettings {
        email: email.clone(),
        provider_user_id,
        scopes,
        mode,
    };
    let json = serde_json::to_value(&settings).map_err(|e| ApiError::unexpected(e.to_string()))?;
    let account_type = match idp {
        IdP::Google => AccountType::GoogleOauth,
        IdP::Microsoft => AccountType::Outlook,
    };
    let credentials = Credentials::OAuth {
        access_token: tokens.access_token,
        refresh_token,
        expires_at_ms: tokens.expires_at_ms,
    };
    save(
        engine,
        workspace,
        account_type,
        &email,
        json,
        credentials,
        reconnect,
    )
    .await
}

/// Links a mailbox from tokens the integrator obtained itself (`POST /accounts` with
/// `GOOGLE_OAUTH` / `OUTLOOK`). The refresh token is what mailroom lives on, so it is proven
/// first: one refresh (which also yields a fresh access token of known lifetime), then the
/// mailbox is identified with it.
pub async fn link_with_tokens(
    engine: &Engine,
    workspace: &str,
    idp: IdP,
    _access_token: SecretString,
    refresh_token: SecretString,
    reconnect: Option<&Account>,
) -> Result<Linked, ApiError> {
    let app = engine.apps.get(idp).ok_or_else(|| {
        ApiError::new(
            ErrorKind::InvalidParameters,
            "the provider's app is not configured on this server",
        )
    })?;
    let now = engine.clock.now_ms();
    let fresh = mailroom_providers::oauth::refresh(
        &engine.http,
        &app.oauth,
        &refresh_token,
        crate::apps::scopes(idp),
        now,
    )
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
    link_oauth(engine, workspace, idp, tokens, reconnect).await
}

/// What the granted scopes allow: full access when a read scope was granted, else send-only.
pub fn mode_of(idp: IdP, granted: Option<&str>) -> AccountMode {
    let Some(granted) = granted else {
        return AccountMode::Full;
    };
    let read = match idp {
        IdP::Google => ["gmail.modify", "gmail.readonly", "https://mail.google.com/"]
            .iter()
            .any(|s| granted.contains(s)),
        IdP::Microsoft => granted.contains("Mail.ReadWrite") || granted.contains("Mail.Read"),
    };
    if read {
        AccountMode::Full
    } else {
        AccountMode::Send
    }
}
