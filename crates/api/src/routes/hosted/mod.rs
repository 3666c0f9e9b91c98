//! Hosted auth: `POST /api/v1/hosted/accounts/link` makes a link; the end user opens it, picks
//! Google, Microsoft or IMAP, and mailroom links the mailbox without the integrator ever
//! seeing a password or a token. Links are random, stored hashed, expire, and are consumed by
//! the first completed linking; OAuth uses `state` bound to the link plus PKCE S256.

mod pages;
mod presets;

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use secrecy::SecretString;
use serde::Serialize;
use utoipa::ToSchema;

use self::pages::ImapValues;
use super::accounts::SendLimitsBody;
use super::fields::{Fields, send_limits, sync_limit};
use crate::auth::Caller;
use crate::error::{ErrorBody, Result, err};
use crate::extract::JsonObject;
use crate::origin::HostedOrigin;
use crate::state::AppState;
use mailroom_core::account::{AccountMode, ImapEncryption, MailSettings};
use mailroom_core::time_fmt::parse_ms;
use mailroom_core::{ApiError, ErrorKind};
use mailroom_engine::apps::IdP;
use mailroom_engine::hosted::{self, Refusal};
use mailroom_engine::link::Linked;
use mailroom_store::hosted_links::{self, HostedLink};

/// The longest a link may live.

#[derive(Debug, Serialize, ToSchema)]
pub struct HostedAuthUrl {
    #[schema(example = "HostedAuthUrl")]
    pub object: &'static str,
    /// The page to send the end user to.
    pub url: String,
}

/// Body of `POST /hosted/accounts/link`.
#[allow(dead_code)]
#[derive(Debug, ToSchema)]
pub struct HostedLinkRequest {
    /// `create` or `reconnect`.
    #[schema(example = "create")]
    r#type: String,
    /// `"*"` or a list of `GOOGLE`, `OUTLOOK`, `MAIL` (`IMAP` is an alias of `MAIL`).
    providers: Vec<String>,
    /// When the link stops working (at most 30 days ahead), e.g. `2030-01-01T00:00:00.000Z`.
    #[serde(rename = "expiresOn")]
    expires_on: String,
    /// Your mailroom URL (kept for Unipile compatibility).
    api_url: String,
    /// Returned to `notify_url`.
    name: Option<String>,
    success_redirect_url: Option<String>,
    failure_redirect_url: Option<String>,
    /// POSTed `{status: "CREATION_SUCCESS"|"RECONNECTED", account_id, name}` when the mailbox is linked.
    notify_url: Option<String>,
    /// The account to reconnect (`type: reconnect`).
    reconnect_account: Option<String>,
    /// mailroom extension: `full` (default; read and send) or `send` (send only, least scopes:
    /// `gmail.send`, `Mail.Send`).
    mode: Option<String>,
    /// How much mail already in the mailbox its first sync indexes (create links): Unipile's
    /// `{"MAILING": "NO_HISTORY_SYNC"}`, or as on `POST /accounts`: `"NO_HISTORY_SYNC"`, an RFC 3339
    /// date, a count per folder; absent: the last 30 days.
    #[schema(value_type = Option<Object>)]
    sync_limit: Option<serde_json::Value>,
    /// mailroom extension: the linked mailbox's send limits (create links), as on
    /// `POST /accounts`.
    send_limits: Option<SendLimitsBody>,
}

fn http_url(f: &Fields<'_>, name: &str) -> Result<Option<String>> {
    match f.str_opt(name)? {
        None => Ok(None),
        Some(u) => match url::Url::parse(&u) {
            Ok(p) if p.scheme() == "http" || p.scheme() == "https" => Ok(Some(p.to_string())),
            _ => Err(err(
                ErrorKind::InvalidParameters,
                format!("{name} must be an http(s) URL"),
            )),
        },
    }
}

fn parse_providers(value: Option<&serde_json::Value>) -> Result<Vec<String>> {
    let all = || vec!["GOOGLE".to_owned(), "OUTLOOK".to_owned(), "MAIL".to_owned()];
    match value {
        None | Some(serde_json::Value::Null) => {
            Err(err(ErrorKind::MissingParameters, "providers is required"))
        }
        Some(serde_json::Value::String(s)) if s == "*" || s == "*:MAILING" => Ok(all()),
        Some(serde_json::Value::Array(items)) if !items.is_empty() => {
            let mut out: Vec<String> = vec![];
            for item in items {
                let p = match item.as_str() {
                    Some("GOOGLE") => "GOOGLE",
                    Some("OUTLOOK") => "OUTLOOK",
                    Some("MAIL") | Some("IMAP") => "MAIL",
                    other => {
                        return Err(err(
                            ErrorKind::InvalidParameters,
                            format!(
                                "providers: {} is not an email provider this server links (GOOGLE, OUTLOOK, MAIL)",
                                other.map(str::to_owned).unwrap_or_else(|| item.to_string())
                            ),
                        ));
                    }
                };
                if !out.iter().any(|o| o == p) {
                    out.push(p.to_owned());
                }
            }
            Ok(out)
        }
        Some(_) => Err(err(
            ErrorKind::InvalidParameters,
            "providers must be \"*\" or a non-empty array",
        )),
    }
}

/// Create a hosted auth link.
#[utoipa::path(
    post, path = "/api/v1/hosted/accounts/link", tag = "Hosted auth",
    request_body = HostedLinkRequest,
    responses(
        (status = 201, body = HostedAuthUrl),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, description = "reconnect_account not found", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn create_link(
    State(state): State<AppState>,
    caller: Caller,
    JsonObject(body): JsonObject,
) -> Result<(StatusCode, Json<HostedAuthUrl>)> {
    let f = Fields(&body);
    let reconnect_account = match f.str_req("type")?.as_str() {
        "create" => None,
        "reconnect" => Some(f.str_req("reconnect_account")?),
        other => {
            return Err(err(
                ErrorKind::InvalidParameters,
                format!("type must be create or reconnect, got `{other}`"),
            ));
        }
    };
    let providers = match reconnect_account {
        Some(_) => None,
        None => Some(parse_providers(body.get("providers"))?),
    };
    let expires_on = f.str_req("expiresOn")?;
    let expires_at = parse_ms(&expires_on).ok_or_else(|| {
        err(
            ErrorKind::InvalidParameters,
            format!("expiresOn must be a date like 2030-01-01T00:00:00.000Z, got `{expires_on}`"),
        )
    })?;
    http_url(&f, "api_url")?
        .ok_or_else(|| err(ErrorKind::MissingParameters, "api_url is required"))?;
    let mode = match f.str_opt("mode")? {
        None => None,
        Some(m) => Some(AccountMode::parse(&m).ok_or_else(|| {
            err(
                ErrorKind::InvalidParameters,
                format!("mode must be full or send, got `{m}`"),
            )
        })?),
    };
    let name = f.str_opt("name")?;
    if name.as_ref().is_some_and(|n| n.len() > 255) {
        return Err(err(
            ErrorKind::InvalidParameters,
            "name is longer than 255 bytes",
        ));
    }
    let token = hosted::create_link(
        &state.engine,
        caller.tenant(),
        hosted::NewLinkRequest {
            reconnect_account,
            providers,
            expires_at,
            mode,
            name,
            success_redirect_url: http_url(&f, "success_redirect_url")?,
            failure_redirect_url: http_url(&f, "failure_redirect_url")?,
            notify_url: http_url(&f, "notify_url")?,
            sync_limit: sync_limit(body.get("sync_limit"))?,
            send_limits: send_limits(body.get("send_limits"))?,
        },
    )
    .await?;
    let url = state
        .config
        .public_url
        .join(&format!("hosted/{token}"))
        .map_err(|e| ApiError::unexpected(e.to_string()))?;
    Ok((
        StatusCode::CREATED,
        Json(HostedAuthUrl {
            object: "HostedAuthUrl",
            url: url.to_string(),
        }),
    ))
}

// ---- the pages ------------------------------------------------------------------------------

fn page(status: StatusCode, html: String) -> Response {
    let mut r = (status, Html(html)).into_response();
    let headers = r.headers_mut();
    headers.insert("cache-control", "no-store".parse().expect("valid"));
    headers.insert("x-frame-options", "DENY".parse().expect("valid"));
    headers.insert(
        "content-security-policy",
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self' https: http:; frame-ancestors 'none'".parse().expect("valid"),
    );
    r
}

/// The link if it can still be used, or the page saying why not.
async fn usable(state: &AppState, token: &str) -> std::result::Result<HostedLink, Response> {
    let link = match hosted_links::by_token(state.store(), token).await {
        Ok(Some(l)) => l,
        Ok(None) => {
            return Err(page(
                StatusCode::NOT_FOUND,
                pages::message(
                    "Link not found",
                    "This link is not valid. Ask the application that sent it for a new one.",
                ),
            ));
        }
        Err(e) => {
            tracing::error!(error = %e, "hosted link lookup failed");
            return Err(page(
                StatusCode::INTERNAL_SERVER_ERROR,
                pages::message("Something went wrong", "Please try again in a moment."),
            ));
        }
    };
    if link.used_at.is_some() {
        return Err(page(
            StatusCode::GONE,
            pages::message(
                "Link already used",
                "This link was already used to connect a mailbox. Ask the application for a new one.",
            ),
        ));
    }
    if link.expires_at <= state.clock().now_ms() {
        return Err(page(
            StatusCode::GONE,
            pages::message(
                "Link expired",
                "This link has expired. Ask the application that sent it for a new one.",
            ),
        ));
    }
    Ok(link)
}

/// Whether the link offers signing in with `idp` and the operator configured its app.
fn offers_idp(state: &AppState, link: &HostedLink, idp: IdP) -> bool {
    let name = idp.account_type().source_name();
    link.providers.iter().any(|x| x == name) && state.engine.apps.get(idp).is_some()
}

/// (Google, Microsoft, IMAP) as the choice page shows them.
fn offers(state: &AppState, link: &HostedLink) -> (bool, bool, bool) {
    let [google, microsoft] = IdP::ALL.map(|idp| offers_idp(state, link, idp));
    (
        google,
        microsoft,
        link.providers.iter().any(|x| x == "MAIL"),
    )
}

fn something_went_wrong() -> Response {
    page(
        StatusCode::INTERNAL_SERVER_ERROR,
        pages::message("Something went wrong", "Please try again in a moment."),
    )
}

fn invalid_sign_in() -> Response {
    page(
        StatusCode::BAD_REQUEST,
        pages::message(
            "Sign-in not valid",
            "This sign-in is not valid or was already completed. Start again from the link you were given.",
        ),
    )
}

/// The page or redirect a refusal of the flow makes.
fn refused(link: Option<&HostedLink>, refusal: Refusal) -> Response {
    match (refusal, link) {
        (Refusal::Failed { reason, text }, Some(link)) => fail(link, &reason, &text),
        (Refusal::Gone, _) => page(
            StatusCode::GONE,
            pages::message("Link expired", "This link can no longer be used."),
        ),
        (Refusal::Internal, _) => something_went_wrong(),
        _ => invalid_sign_in(),
    }
}

pub async fn show(State(state): State<AppState>, Path(token): Path<String>) -> Response {
    let link = match usable(&state, &token).await {
        Ok(l) => l,
        Err(r) => return r,
    };
    let (google, microsoft, mail) = offers(&state, &link);
    page(
        StatusCode::OK,
        pages::choose(
            &token,
            link.name.as_deref(),
            link.kind == "reconnect",
            google,
            microsoft,
            mail,
            None,
        ),
    )
}

/// Starts the OAuth round trip: a fresh `state` and PKCE verifier bound to the link.
pub async fn start_oauth(
    State(state): State<AppState>,
    Path((token, provider)): Path<(String, String)>,
) -> Response {
    let link = match usable(&state, &token).await {
        Ok(l) => l,
        Err(r) => return r,
    };
    let Some(idp) = IdP::parse(&provider) else {
        return page(
            StatusCode::NOT_FOUND,
            pages::message("Not found", "Unknown provider."),
        );
    };
    if !offers_idp(&state, &link, idp) {
        let (g, m, i) = offers(&state, &link);
        return page(
            StatusCode::BAD_REQUEST,
            pages::choose(
                &token,
                link.name.as_deref(),
                link.kind == "reconnect",
                g,
                m,
                i,
                Some(&format!(
                    "{} is not available for this link.",
                    idp.account_type().source_name()
                )),
            ),
        );
    }
    match hosted::begin_oauth(&state.engine, &link, idp).await {
        Ok(url) => Redirect::to(url.as_str()).into_response(),
        Err(refusal) => refused(Some(&link), refusal),
    }
}

/// Where the provider sends the user back.
pub async fn oauth_callback(
    State(state): State<AppState>,
    Path(provider): Path<String>,
    HostedOrigin(origin): HostedOrigin,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let Some(idp) = IdP::parse(&provider) else {
        return page(
            StatusCode::NOT_FOUND,
            pages::message("Not found", "Unknown provider."),
        );
    };
    match hosted::finish_oauth(&state.engine, idp, &q, &origin).await {
        Ok((link, linked)) => finish(&state, &link, linked).await,
        Err((link, refusal)) => refused(link.as_ref(), refusal),
    }
}

/// Redirects to `failure_redirect_url` with `error=<reason>`, or shows why.
fn fail(link: &HostedLink, reason: &str, text: &str) -> Response {
    match link
        .failure_redirect_url
        .as_deref()
        .and_then(|u| url::Url::parse(u).ok())
    {
        Some(mut u) => {
            u.query_pairs_mut().append_pair("error", reason);
            // Access the person did not grant is named, so the integrator can tell them.
            if reason == "missing_access" {
                u.query_pairs_mut().append_pair("error_description", text);
            }
            Redirect::to(u.as_str()).into_response()
        }
        None => page(
            StatusCode::OK,
            pages::message("Mailbox not connected", text),
        ),
    }
}

/// The mailbox is linked: tell the integrator (`notify_url`) and send the user on.
async fn finish(state: &AppState, link: &HostedLink, linked: Linked) -> Response {
    let account = &linked.account;
    let status = hosted::linked(&state.engine, link, &linked).await;
    match link
        .success_redirect_url
        .as_deref()
        .and_then(|u| url::Url::parse(u).ok())
    {
        Some(mut u) => {
            u.query_pairs_mut()
                .append_pair("account_id", &account.id)
                .append_pair("status", status);
            Redirect::to(u.as_str()).into_response()
        }
        None => page(
            StatusCode::OK,
            pages::message(
                "Mailbox connected",
                &format!("{} is connected. You can close this window.", account.name),
            ),
        ),
    }
}

#[derive(serde::Deserialize, Default)]
pub struct EmailQuery {
    email: Option<String>,
}

/// The IMAP form: first the address, then the settings (prefilled from presets).
pub async fn imap_page(
    State(state): State<AppState>,
    Path(token): Path<String>,
    Query(q): Query<EmailQuery>,
) -> Response {
    let link = match usable(&state, &token).await {
        Ok(l) => l,
        Err(r) => return r,
    };
    if !offers(&state, &link).2 {
        return page(
            StatusCode::NOT_FOUND,
            pages::message("Not available", "IMAP is not available for this link."),
        );
    }
    match q
        .email
        .map(|e| e.trim().to_owned())
        .filter(|e| e.contains('@'))
    {
        None => page(StatusCode::OK, pages::imap_email(&token, None)),
        Some(email) => {
            let preset = presets::for_address(&email);
            let values = match preset {
                Some(p) => ImapValues::from_preset(&email, p),
                None => {
                    let domain = email.rsplit_once('@').map(|(_, d)| d).unwrap_or_default();
                    ImapValues {
                        email: email.clone(),
                        username: email.clone(),
                        imap_host: format!("imap.{domain}"),
                        imap_port: "993".into(),
                        smtp_host: format!("smtp.{domain}"),
                        smtp_port: "465".into(),
                    }
                }
            };
            page(
                StatusCode::OK,
                pages::imap_form(&token, &values, preset, None),
            )
        }
    }
}

/// The IMAP form's submission: the same verification as `POST /accounts`.
pub async fn imap_submit(
    State(state): State<AppState>,
    Path(token): Path<String>,
    HostedOrigin(origin): HostedOrigin,
    axum::Form(form): axum::Form<HashMap<String, String>>,
) -> Response {
    let link = match usable(&state, &token).await {
        Ok(l) => l,
        Err(r) => return r,
    };
    if !offers(&state, &link).2 {
        return page(
            StatusCode::NOT_FOUND,
            pages::message("Not available", "IMAP is not available for this link."),
        );
    }
    let get = |k: &str| form.get(k).map(|v| v.trim().to_owned()).unwrap_or_default();
    let values = ImapValues {
        email: get("email"),
        username: get("username"),
        imap_host: get("imap_host"),
        imap_port: get("imap_port"),
        smtp_host: get("smtp_host"),
        smtp_port: get("smtp_port"),
    };
    let preset = presets::for_address(&values.email);
    let again = |msg: &str| {
        page(
            StatusCode::OK,
            pages::imap_form(&token, &values, preset, Some(msg)),
        )
    };
    let password = form.get("password").cloned().unwrap_or_default();
    let port = |s: &str| s.parse::<u16>().ok().filter(|p| *p > 0);
    let (Some(imap_port), Some(smtp_port)) = (port(&values.imap_port), port(&values.smtp_port))
    else {
        return again("Ports must be numbers from 1 to 65535.");
    };
    let bad = |s: &str| s.is_empty() || s.chars().any(|c| c.is_control() || c.is_whitespace());
    if bad(&values.imap_host)
        || bad(&values.smtp_host)
        || bad(&values.username)
        || password.is_empty()
        || password
            .chars()
            .any(|c| c == '\r' || c == '\n' || c == '\0')
    {
        return again("Please fill in every field.");
    }
    let settings = MailSettings {
        imap_host: values.imap_host.clone(),
        imap_port,
        imap_user: values.username.clone(),
        imap_encryption: ImapEncryption::Default,
        smtp_host: values.smtp_host.clone(),
        smtp_port,
        smtp_user: values.username.clone(),
        smtp_encryption: None,
    };
    match hosted::link_imap(
        &state.engine,
        &link,
        settings,
        SecretString::from(password),
        &origin,
    )
    .await
    {
        Ok(linked) => finish(&state, &link, linked).await,
        Err(Err(Refusal::Gone)) => page(
            StatusCode::GONE,
            pages::message("Link already used", "This link was already used."),
        ),
        Err(Err(refusal)) => refused(Some(&link), refusal),
        Err(Ok(e)) => {
            let msg = match e.kind {
                ErrorKind::InvalidCredentials => {
                    "The server refused this username or password.".to_owned()
                }
                _ => format!("Could not connect: {}", e.detail),
            };
            again(&msg)
        }
    }
}
