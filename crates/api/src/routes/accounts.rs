//! `/api/v1/accounts`: link, list, show, reconnect and delete mailboxes.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use secrecy::SecretString;
use serde::Serialize;
use utoipa::ToSchema;

use super::fields::{self, Fields, sync_limit};
use crate::auth::Caller;
use crate::error::{ErrorBody, Result, err};
use crate::extract::{JsonObject, QueryPairs};
use crate::pagination::{ListEnvelope, Page};
use crate::state::AppState;
use mailroom_core::ErrorKind;
use mailroom_core::account::{
    AccountSettings, AccountType, ImapEncryption, MailSettings, SourceStatus, TlsMode,
};
use mailroom_core::cursor::Position;
use mailroom_core::id::looks_like_id;
use mailroom_core::send_limits::SendLimits;
use mailroom_core::time_fmt::format_ms;
use mailroom_engine::link::{self, LinkRequest, ReconnectRequest};
use mailroom_engine::send_limits::{self, SendLimitStatus};
use mailroom_engine::sync::control;
use mailroom_store::accounts::{self, Account};

// ---- response shapes -------------------------------------------------------------------

/// A linked mailbox.
#[derive(Debug, Serialize, ToSchema)]
pub struct AccountView {
    /// Always `Account`.
    #[schema(example = "Account")]
    pub object: &'static str,
    #[serde(rename = "type")]
    pub type_: AccountType,
    pub id: String,
    /// The mailbox address (or the name given at link time).
    pub name: String,
    /// `YYYY-MM-DDTHH:MM:SS.sssZ`.
    pub created_at: String,
    pub connection_params: ConnectionParamsView,
    pub groups: Vec<String>,
    pub sources: Vec<SourceView>,
    /// mailroom extension: the send limits in force (`null`: no limit).
    pub send_limits: SendLimitsView,
    /// mailroom extension: the provider's default limits the account's own settings apply over.
    pub provider_send_limits: SendLimitsView,
    /// mailroom extension: what counts against the limits now.
    pub send_usage: SendUsageView,
}

/// Send limits: messages per minute and per rolling 24 hours, envelope recipients per rolling
/// 24 hours; `null` is no limit.
#[derive(Debug, Serialize, ToSchema)]
pub struct SendLimitsView {
    pub per_minute: Option<u32>,
    pub per_day: Option<u32>,
    pub recipients_per_day: Option<u32>,
}

impl From<SendLimits> for SendLimitsView {
    fn from(l: SendLimits) -> Self {
        Self {
            per_minute: l.per_minute,
            per_day: l.per_day,
            recipients_per_day: l.recipients_per_day,
        }
    }
}

/// An account's sends counted against its limits.
#[derive(Debug, Serialize, ToSchema)]
pub struct SendUsageView {
    /// Messages sent in the last minute.
    pub last_minute: u64,
    /// Messages sent in the last 24 hours.
    pub last_day: u64,
    /// Envelope recipients of the messages sent in the last 24 hours.
    pub recipients_last_day: u64,
    /// Sends waiting for the window (or for the pause), to go oldest first.
    pub held: u64,
    /// While a provider's quota answer pauses the account's sends: until when
    /// (`YYYY-MM-DDTHH:MM:SS.sssZ`), and the provider's words.
    pub paused_until: Option<String>,
    pub pause_reason: Option<String>,
}

/// Request form of send limits (`POST /accounts`, hosted links, `PATCH /accounts/{id}`): each
/// field `null` (the provider's default), `0` (no limit) or a whole number up to 10,000,000;
/// a field left out is the default on creation, unchanged on `PATCH`.
#[allow(dead_code)] // documents the body; requests are read field by field for precise errors
#[derive(Debug, ToSchema)]
pub struct SendLimitsBody {
    per_minute: Option<u32>,
    per_day: Option<u32>,
    recipients_per_day: Option<u32>,
}

/// Body of `PATCH /accounts/{id}`.
#[allow(dead_code)]
#[derive(Debug, ToSchema)]
pub struct UpdateAccount {
    send_limits: SendLimitsBody,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ConnectionParamsView {
    pub mail: MailParams,
}

/// `MAIL` accounts show their IMAP/SMTP settings; Google and Microsoft accounts their
/// mailbox (`{id, username}`).
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum MailParams {
    Imap(MailParamsView),
    OAuth(OAuthParamsView),
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OAuthParamsView {
    /// The provider's id of the mailbox user.
    pub id: String,
    /// The mailbox address.
    pub username: String,
}

/// IMAP/SMTP settings of a `MAIL` account; never any secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct MailParamsView {
    pub imap_host: String,
    pub imap_port: u16,
    pub imap_user: String,
    pub imap_encryption: ImapEncryption,
    pub smtp_host: String,
    pub smtp_port: u16,
    pub smtp_user: String,
}

/// Health of one source of the account; mail accounts have one, `<id>_MAILS`.
#[derive(Debug, Serialize, ToSchema)]
pub struct SourceView {
    pub id: String,
    /// The mailbox sync's health: `CONNECTING` while a sync loop starts, `OK`, `ERROR` (see
    /// `reason`; retried with backoff), `CREDENTIALS` (the login was refused: reconnect),
    /// `STOPPED` (the server kept refusing the sync: restart or reconnect).
    pub status: SourceStatus,
    /// mailroom's extension: why the status is what it is (the error of an `ERROR`, a
    /// `CREDENTIALS` or a `STOPPED`); absent when there is nothing to say.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AccountCreated {
    #[schema(example = "AccountCreated")]
    pub object: &'static str,
    pub account_id: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AccountReconnected {
    #[schema(example = "AccountReconnected")]
    pub object: &'static str,
    pub account_id: String,
}

/// Answer of `GET /accounts/{id}/sync`: the pass was asked for (it runs in the background, in
/// whichever process syncs the account).
#[derive(Debug, Serialize, ToSchema)]
pub struct AccountResync {
    #[schema(example = "AccountResync")]
    pub object: &'static str,
    /// Always `SYNC_STARTED`.
    #[schema(example = "SYNC_STARTED")]
    pub status: &'static str,
}

/// Answer of `POST /accounts/{id}/restart` (mailroom's shape; Unipile documents none).
#[derive(Debug, Serialize, ToSchema)]
pub struct AccountRestarted {
    #[schema(example = "AccountRestarted")]
    pub object: &'static str,
    pub account_id: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AccountDeleted {
    #[schema(example = "AccountDeleted")]
    pub object: &'static str,
}

/// Body of `POST /accounts` for an IMAP/SMTP mailbox (`provider: "MAIL"`).
#[allow(dead_code)] // documents the body; requests are read field by field for precise errors
#[derive(Debug, ToSchema)]
pub struct ConnectMailAccount {
    #[schema(example = "MAIL")]
    provider: String,
    imap_host: String,
    imap_port: u16,
    imap_user: String,
    imap_password: String,
    /// `tls` / `ssl` (implicit TLS), `starttls`, or `default` (implicit TLS on 993, STARTTLS elsewhere).
    imap_encryption: ImapEncryption,
    smtp_host: String,
    /// 465 means implicit TLS; any other port uses STARTTLS (plaintext AUTH is never used).
    smtp_port: u16,
    smtp_user: String,
    smtp_password: String,
    /// Optional override of the SMTP TLS mode: `implicit` or `starttls`.
    smtp_encryption: Option<String>,
    /// How much mail already in the mailbox the first sync indexes (mail that arrives later
    /// always is): `"NO_HISTORY_SYNC"` (none), an RFC 3339 date (what arrived since), a whole
    /// number (the newest N of each folder), or `{"MAILING": <one of those>}`. Default: the
    /// last 30 days. Also accepted with the `GOOGLE_OAUTH` and `OUTLOOK` token bodies.
    #[schema(value_type = Option<Object>, example = "NO_HISTORY_SYNC")]
    sync_limit: Option<serde_json::Value>,
    /// mailroom extension: the account's own send limits over its provider's defaults (also
    /// with the `GOOGLE_OAUTH` and `OUTLOOK` token bodies).
    send_limits: Option<SendLimitsBody>,
}

/// Body of `POST /accounts/{id}`: new passwords (and optionally changed settings); fields
/// left out keep their stored values. Everything is verified again before it is saved.
#[allow(dead_code)]
#[derive(Debug, ToSchema)]
pub struct ReconnectMailAccount {
    provider: Option<String>,
    imap_password: Option<String>,
    smtp_password: Option<String>,
    imap_host: Option<String>,
    imap_port: Option<u16>,
    imap_user: Option<String>,
    imap_encryption: Option<ImapEncryption>,
    smtp_host: Option<String>,
    smtp_port: Option<u16>,
    smtp_user: Option<String>,
}

fn view(a: &Account, limits: SendLimitStatus) -> Result<AccountView> {
    let mail = match &a.settings {
        AccountSettings::Mail(settings) => MailParams::Imap(MailParamsView {
            imap_host: settings.imap_host.clone(),
            imap_port: settings.imap_port,
            imap_user: settings.imap_user.clone(),
            imap_encryption: settings.imap_encryption,
            smtp_host: settings.smtp_host.clone(),
            smtp_port: settings.smtp_port,
            smtp_user: settings.smtp_user.clone(),
        }),
        AccountSettings::OAuth(settings) => MailParams::OAuth(OAuthParamsView {
            id: settings.provider_user_id.clone(),
            username: settings.email.clone(),
        }),
    };
    Ok(AccountView {
        object: "Account",
        type_: a.account_type,
        id: a.id.to_string(),
        name: a.name.clone(),
        created_at: format_ms(a.created_at),
        connection_params: ConnectionParamsView { mail },
        groups: vec![],
        sources: vec![SourceView {
            id: format!("{}_MAILS", a.id),
            status: a.status,
            reason: a.status_detail.clone(),
        }],
        send_limits: limits.effective.into(),
        provider_send_limits: limits.defaults.into(),
        send_usage: SendUsageView {
            last_minute: limits.usage.last_minute,
            last_day: limits.usage.last_day,
            recipients_last_day: limits.usage.recipients_last_day,
            held: limits.usage.held,
            paused_until: limits.usage.paused_until.map(format_ms),
            pause_reason: limits.usage.pause_reason,
        },
    })
}

/// The account as the API shows it, with its send limits and usage.
async fn shown(state: &AppState, a: &Account) -> Result<AccountView> {
    let limits = send_limits::status(&state.engine, a).await?;
    view(a, limits)
}

async fn find(state: &AppState, caller: &Caller, id: &str) -> Result<Account> {
    let not_found = || {
        err(
            ErrorKind::ResourceNotFound,
            format!("account {id} not found"),
        )
    };
    if !looks_like_id(id) {
        return Err(not_found());
    }
    caller
        .tenant()
        .account(state.store(), id)
        .await?
        .ok_or_else(not_found)
}

// ---- request parsing ----------------------------------------------------------------------

fn parse_encryption(f: &Fields<'_>) -> Result<Option<ImapEncryption>> {
    match f.str_opt("imap_encryption")? {
        None => Ok(None),
        Some(s) => ImapEncryption::parse(&s).map(Some).ok_or_else(|| {
            err(
                ErrorKind::InvalidParameters,
                format!("imap_encryption must be one of tls, ssl, starttls, default; got `{s}`"),
            )
        }),
    }
}

fn parse_smtp_encryption(f: &Fields<'_>) -> Result<Option<TlsMode>> {
    match f
        .str_opt("smtp_encryption")?
        .map(|s| s.to_ascii_lowercase())
    {
        None => Ok(None),
        Some(s) if s == "implicit" || s == "tls" || s == "ssl" => Ok(Some(TlsMode::Implicit)),
        Some(s) if s == "starttls" => Ok(Some(TlsMode::Starttls)),
        Some(s) => Err(err(
            ErrorKind::InvalidParameters,
            format!("smtp_encryption must be implicit (also tls, ssl) or starttls; got `{s}`"),
        )),
    }
}

fn parse_new_mail(f: &Fields<'_>) -> Result<(MailSettings, SecretString, SecretString)> {
    let settings = MailSettings {
        imap_host: f.host_req("imap_host")?,
        imap_port: f.port_req("imap_port")?,
        imap_user: f.str_req("imap_user")?,
        imap_encryption: parse_encryption(f)?.unwrap_or(ImapEncryption::Default),
        smtp_host: f.host_req("smtp_host")?,
        smtp_port: f.port_req("smtp_port")?,
        smtp_user: f.str_req("smtp_user")?,
        smtp_encryption: parse_smtp_encryption(f)?,
    };
    Ok((
        settings,
        f.secret_req("imap_password")?,
        f.secret_req("smtp_password")?,
    ))
}

fn provider_of(f: &Fields<'_>) -> Result<Option<AccountType>> {
    match f.str_opt("provider")? {
        None => Ok(None),
        Some(p) => AccountType::parse(&p).map(Some).ok_or_else(|| {
            err(
                ErrorKind::InvalidParameters,
                format!("provider must be MAIL, GOOGLE_OAUTH or OUTLOOK; got `{p}`"),
            )
        }),
    }
}

// ---- handlers -----------------------------------------------------------------------------

/// List the workspace's accounts, newest first.
#[utoipa::path(
    get, path = "/api/v1/accounts", tag = "Accounts",
    params(
        ("limit" = Option<u32>, Query, description = "Page size, 1–250 (default 100)"),
        ("cursor" = Option<String>, Query, description = "Cursor of the next page; when given, other parameters are ignored"),
    ),
    responses(
        (status = 200, description = "A page of accounts", body = inline(ListEnvelope<AccountView>)),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn list_accounts(
    State(state): State<AppState>,
    caller: Caller,
    query: QueryPairs,
) -> Result<Json<ListEnvelope<AccountView>>> {
    let page = Page::from_query(&query)?;
    let rows = accounts::list(
        state.store(),
        caller.tenant(),
        page.after.as_ref(),
        page.fetch_limit(),
    )
    .await?;
    let (rows, cursor) = page.finish(rows, |a| Position {
        last_id: a.id.to_string(),
        last_date: a.created_at,
    });
    let mut items = Vec::with_capacity(rows.len());
    for a in &rows {
        items.push(shown(&state, a).await?);
    }
    Ok(Json(ListEnvelope {
        object: "AccountList",
        items,
        cursor,
    }))
}

/// Link a mailbox. For `MAIL`, mailroom logs in to IMAP and authenticates to SMTP before
/// anything is saved; the passwords are sealed and never returned.
#[utoipa::path(
    post, path = "/api/v1/accounts", tag = "Accounts",
    request_body = ConnectMailAccount,
    responses(
        (status = 201, description = "Linked", body = AccountCreated),
        (status = 400, description = "Missing or invalid field", body = ErrorBody),
        (status = 401, description = "`errors/invalid_credentials`, `errors/invalid_imap_configuration` or `errors/invalid_smtp_configuration` (with `connectionParams`), or a bad API key", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn create_account(
    State(state): State<AppState>,
    caller: Caller,
    JsonObject(body): JsonObject,
) -> Result<(StatusCode, Json<AccountCreated>)> {
    let f = Fields(&body);
    // The body's shape follows its `provider` (Unipile's contract): settings and passwords for
    // MAIL, tokens for the OAuth providers.
    let request = match provider_of(&f)? {
        Some(AccountType::Mail) => {
            let (settings, imap_password, smtp_password) = parse_new_mail(&f)?;
            LinkRequest::Mail {
                settings,
                imap_password,
                smtp_password,
            }
        }
        Some(account_type) => LinkRequest::Tokens {
            account_type,
            access_token: f.secret_opt("access_token")?,
            refresh_token: f.secret_opt("refresh_token")?,
        },
        None => return Err(err(ErrorKind::MissingParameters, "provider is required")),
    };
    let limit = sync_limit(body.get("sync_limit"))?;
    let own_limits = fields::send_limits(body.get("send_limits"))?;
    let linked = link::link(
        &state.engine,
        caller.tenant(),
        caller.origin(),
        request,
        limit,
        own_limits,
    )
    .await?;
    let id = linked.account.id.into();
    Ok((
        StatusCode::CREATED,
        Json(AccountCreated {
            object: "AccountCreated",
            account_id: id,
        }),
    ))
}

/// One account with its source status.
#[utoipa::path(
    get, path = "/api/v1/accounts/{account_id}", tag = "Accounts",
    params(("account_id" = String, Path)),
    responses((status = 200, body = AccountView), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("api_key" = []))
)]
pub async fn get_account(
    State(state): State<AppState>,
    caller: Caller,
    Path(account_id): Path<String>,
) -> Result<Json<AccountView>> {
    let account = find(&state, &caller, &account_id).await?;
    Ok(Json(shown(&state, &account).await?))
}

/// Change an account's settings (mailroom extension): its send limits. Each limit given
/// replaces the account's own (`null`: back to the provider's default, `0`: no limit); the
/// others stay. Sends held for the window are planned again under the new limits.
#[utoipa::path(
    patch, path = "/api/v1/accounts/{account_id}", tag = "Accounts",
    params(("account_id" = String, Path)),
    request_body = UpdateAccount,
    responses(
        (status = 200, description = "The account with its new limits", body = AccountView),
        (status = 400, description = "`errors/missing_parameters` (no `send_limits`) or `errors/invalid_parameters`", body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn update_account(
    State(state): State<AppState>,
    caller: Caller,
    Path(account_id): Path<String>,
    JsonObject(body): JsonObject,
) -> Result<Json<AccountView>> {
    let account = find(&state, &caller, &account_id).await?;
    if let Some(other) = body.keys().find(|k| k.as_str() != "send_limits") {
        return Err(err(
            ErrorKind::InvalidParameters,
            format!("`{other}` cannot be changed here; PATCH takes send_limits"),
        ));
    }
    let change = match body.get("send_limits") {
        Some(v) => send_limits::parse_change(v)?,
        None => return Err(err(ErrorKind::MissingParameters, "send_limits is required")),
    };
    let limits = send_limits::update(&state.engine, caller.origin(), &account, change).await?;
    Ok(Json(view(&account, limits)?))
}

/// Reconnect: new passwords (and optionally changed settings), verified before saving.
#[utoipa::path(
    post, path = "/api/v1/accounts/{account_id}", tag = "Accounts",
    params(("account_id" = String, Path)),
    request_body = ReconnectMailAccount,
    responses(
        (status = 200, body = AccountReconnected),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn reconnect_account(
    State(state): State<AppState>,
    caller: Caller,
    Path(account_id): Path<String>,
    JsonObject(body): JsonObject,
) -> Result<Json<AccountReconnected>> {
    let account = find(&state, &caller, &account_id).await?;
    let f = Fields(&body);
    // The SDK echoes account_id in the body; a different one is a client mistake.
    if let Some(body_id) = f.str_opt("account_id")?
        && body_id != account.id
    {
        return Err(err(
            ErrorKind::InvalidParameters,
            "account_id in the body differs from the one in the path",
        ));
    }
    // A reconnect keeps the account's limits (as a reconnect hosted link does): said, not
    // silently ignored.
    if body.contains_key("send_limits") {
        return Err(err(
            ErrorKind::InvalidParameters,
            "send_limits cannot be changed by a reconnect: use PATCH /api/v1/accounts/{id}",
        ));
    }
    let request = ReconnectRequest {
        provider: provider_of(&f)?,
        imap_host: f.host_opt("imap_host")?,
        imap_port: f.port_opt("imap_port")?,
        imap_user: f.str_opt("imap_user")?,
        imap_encryption: parse_encryption(&f)?,
        smtp_host: f.host_opt("smtp_host")?,
        smtp_port: f.port_opt("smtp_port")?,
        smtp_user: f.str_opt("smtp_user")?,
        smtp_encryption: parse_smtp_encryption(&f)?,
        imap_password: f.secret_opt("imap_password")?,
        smtp_password: f.secret_opt("smtp_password")?,
        access_token: f.secret_opt("access_token")?,
        refresh_token: f.secret_opt("refresh_token")?,
    };
    let linked = link::reconnect(&state.engine, caller.origin(), &account, request).await?;
    Ok(Json(AccountReconnected {
        object: "AccountReconnected",
        account_id: linked.account.id.into(),
    }))
}

/// Resync: a sync pass of the account's mailbox now, instead of at the next change or sweep.
/// Query parameters of other providers (`before`, `after`, `linkedin_product`) are ignored.
#[utoipa::path(
    get, path = "/api/v1/accounts/{account_id}/sync", tag = "Accounts",
    params(("account_id" = String, Path)),
    responses(
        (status = 200, description = "The pass is started in the background", body = AccountResync),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 422, description = "`errors/invalid_account`: this kind of account is not synced yet", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn resync_account(
    State(state): State<AppState>,
    caller: Caller,
    Path(account_id): Path<String>,
) -> Result<Json<AccountResync>> {
    let account = find(&state, &caller, &account_id).await?;
    control::resync(&state.engine, &account).await?;
    Ok(Json(AccountResync {
        object: "AccountResync",
        status: "SYNC_STARTED",
    }))
}

/// Restart the account's sync loop: its backoff is forgotten and a login refused before
/// (`CREDENTIALS`) is tried once more (the status then says how it went), then a pass runs.
#[utoipa::path(
    post, path = "/api/v1/accounts/{account_id}/restart", tag = "Accounts",
    params(("account_id" = String, Path)),
    responses(
        (status = 200, body = AccountRestarted),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 422, description = "`errors/invalid_account`: this kind of account is not synced yet", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn restart_account(
    State(state): State<AppState>,
    caller: Caller,
    Path(account_id): Path<String>,
) -> Result<Json<AccountRestarted>> {
    let account = find(&state, &caller, &account_id).await?;
    control::restart(&state.engine, &account).await?;
    Ok(Json(AccountRestarted {
        object: "AccountRestarted",
        account_id: account.id.into(),
    }))
}

/// Unlink a mailbox; its sealed credentials, mail index and undelivered events go with it.
#[utoipa::path(
    delete, path = "/api/v1/accounts/{account_id}", tag = "Accounts",
    params(("account_id" = String, Path)),
    responses((status = 200, body = AccountDeleted), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("api_key" = []))
)]
pub async fn delete_account(
    State(state): State<AppState>,
    caller: Caller,
    Path(account_id): Path<String>,
) -> Result<Json<AccountDeleted>> {
    let account = find(&state, &caller, &account_id).await?;
    link::delete(&state.engine, caller.origin(), &account).await?;
    Ok(Json(AccountDeleted {
        object: "AccountDeleted",
    }))
}
