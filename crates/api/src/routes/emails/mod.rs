//! `POST /api/v1/emails` (send) and `GET /api/v1/outbox[/{id}]` (what became of a send).
//!
//! A send is validated, built into its exact MIME bytes and stored in the outbox (with its
//! `Idempotency-Key`) before the first attempt. The attempt runs at once, in its own task so
//! a client that hangs up does not cancel it: 201 when the server took the message, 202 when
//! it will be retried (or was scheduled), 422 when the server refused it for good.

mod decode;
mod request;

use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Value, json};
use utoipa::ToSchema;

use self::decode::Limits;
use self::request::{SendRequest, mime_error};
use crate::auth::Caller;
use crate::error::{ErrorBody, Result, err};
use crate::extract::QueryPairs;
use crate::pagination::{ListEnvelope, Page};
use crate::state::AppState;
use mailroom_core::account::{AccountType, MailSettings, OAuthSettings, SourceStatus};
use mailroom_core::cursor::Position;
use mailroom_core::email::{Attendee, OutgoingEmail};
use mailroom_core::id::{looks_like_id, new_id};
use mailroom_core::time_fmt::format_ms;
use mailroom_core::{ApiError, ErrorKind};
use mailroom_engine::outbox::Outcome;
use mailroom_engine::{compose, replies};
use mailroom_store::accounts;
use mailroom_store::outbox::{self, Job, JobStatus, NewJob};

pub const IDEMPOTENCY_HEADER: &str = "idempotency-key";

/// The answer to a send (201 and 202 alike; `status` tells them apart).
#[derive(Debug, Serialize, ToSchema)]
pub struct EmailSent {
    #[schema(example = "EmailSent")]
    pub object: &'static str,
    /// Our id of this send; `GET /api/v1/outbox/{tracking_id}` shows its progress.
    pub tracking_id: String,
    /// The provider's id of the sent message (for IMAP/SMTP accounts, its Message-ID). Absent until sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider_id: Option<String>,
    /// `sent`, `queued` (will be retried) or `scheduled` (`send_at`).
    pub status: &'static str,
    /// The Message-ID the email carries.
    pub message_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<LastError>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LastError {
    #[serde(rename = "type")]
    pub type_: String,
    pub detail: String,
}

/// Body of `POST /emails` (multipart as the SDK sends it, or JSON as here).
#[allow(dead_code)]
#[derive(Debug, ToSchema)]
pub struct SendEmailBody {
    account_id: String,
    /// `[{identifier, display_name?}]`; in multipart, the same as a JSON string.
    to: Vec<AttendeeInput>,
    cc: Option<Vec<AttendeeInput>>,
    bcc: Option<Vec<AttendeeInput>>,
    /// `{identifier?, display_name?}`; the identifier defaults to the account's address.
    from: Option<AttendeeInput>,
    subject: Option<String>,
    /// HTML (a plain-text alternative is derived) or plain text.
    body: String,
    /// JSON: `[{filename, content_type?, content (standard base64), cid?}]`; multipart: file parts named `attachments`.
    attachments: Option<Vec<AttachmentInput>>,
    /// The id of the email answered: a `tracking_id` of ours, or the provider's id (for IMAP, the Message-ID).
    reply_to: Option<String>,
    /// `[{name, value}]`: `X-*`, `Reply-To`, `List-Unsubscribe`, `List-Unsubscribe-Post`.
    custom_headers: Option<Vec<HeaderInput>>,
    /// Accepted; open and click tracking is not implemented yet.
    tracking_options: Option<Object>,
    /// RFC 3339; a future date schedules the send.
    send_at: Option<String>,
}

#[allow(dead_code)]
#[derive(Debug, ToSchema)]
pub struct AttendeeInput {
    identifier: String,
    display_name: Option<String>,
}

#[allow(dead_code)]
#[derive(Debug, ToSchema)]
pub struct AttachmentInput {
    filename: String,
    content_type: Option<String>,
    content: String,
    cid: Option<String>,
}

#[allow(dead_code)]
#[derive(Debug, ToSchema)]
pub struct HeaderInput {
    name: String,
    value: String,
}

#[allow(dead_code)]
#[derive(Debug, ToSchema)]
pub struct Object {}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>> {
    let Some(v) = headers.get(IDEMPOTENCY_HEADER) else {
        return Ok(None);
    };
    let s = v.to_str().map_err(|_| {
        err(
            ErrorKind::InvalidParameters,
            "Idempotency-Key must be visible ASCII",
        )
    })?;
    if s.is_empty() || s.len() > 255 || !s.bytes().all(|b| (0x21..0x7f).contains(&b)) {
        return Err(err(
            ErrorKind::InvalidParameters,
            "Idempotency-Key must be 1 to 255 visible ASCII characters",
        ));
    }
    Ok(Some(s.to_owned()))
}

fn reply((status, body): (u16, Value)) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    if status.is_success() {
        (status, Json(body)).into_response()
    } else {
        // Stored failures are error bodies; render them as errors (with `instance`).
        let kind = ErrorKind::ALL
            .iter()
            .copied()
            .find(|k| k.type_slug() == body["type"] && k.status() == status.as_u16())
            .unwrap_or(ErrorKind::UnexpectedError);
        crate::error::Error(ApiError::new(kind, body["detail"].as_str().unwrap_or("")))
            .into_response()
    }
}

fn sent_answer(job_id: &str, message_id: &str, outcome: &Outcome) -> (u16, Value) {
    let body = |status,
                provider_id: Option<String>,
                next: Option<i64>,
                last: Option<(ErrorKind, &str)>| {
        json!(EmailSent {
            object: "EmailSent",
            tracking_id: job_id.to_owned(),
            provider_id,
            status,
            message_id: message_id.to_owned(),
            next_attempt_at: next.map(format_ms),
            last_error: last.map(|(k, d)| LastError {
                type_: k.type_slug().to_owned(),
                detail: d.to_owned()
            }),
        })
    };
    match outcome {
        Outcome::Sent { provider_id } => (201, body("sent", Some(provider_id.clone()), None, None)),
        Outcome::Retrying {
            kind,
            detail,
            run_after,
        } => (
            202,
            body("queued", None, Some(*run_after), Some((*kind, detail))),
        ),
        Outcome::NotOurs => (202, body("queued", None, None, None)),
        Outcome::Failed { kind, detail } => {
            let e = ApiError::new(*kind, detail.clone());
            (kind.status(), json!(ErrorBody::new(&e, "/api/v1/emails")))
        }
    }
}

/// Send an email from a linked account.
#[utoipa::path(
    post, path = "/api/v1/emails", tag = "Emails",
    params(("Idempotency-Key" = Option<String>, Header, description = "1–255 characters; a retry with the same key and body gets the first answer, with another body 409")),
    request_body(content = SendEmailBody, content_type = "application/json", description = "Also accepted as multipart/form-data, as the Unipile SDK sends it"),
    responses(
        (status = 201, description = "The provider took the message", body = EmailSent),
        (status = 202, description = "Accepted and stored; it will be retried (`status: queued`) or sent at `send_at` (`status: scheduled`)", body = EmailSent),
        (status = 400, description = "Invalid input; nothing stored", body = ErrorBody),
        (status = 401, description = "Bad API key, or `errors/disconnected_account`", body = ErrorBody),
        (status = 404, description = "Unknown account", body = ErrorBody),
        (status = 409, description = "The Idempotency-Key was used for another request", body = ErrorBody),
        (status = 422, description = "Refused for good: `errors/recipient_rejected`, `errors/send_as_denied`, `errors/content_too_large`, `errors/cant_send_message`, `errors/parent_mail_not_found`, `errors/invalid_headers`", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn send_email(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    req: Request,
) -> Result<Response> {
    let key = idempotency_key(&headers)?;
    let limits = Limits {
        attachment_max: state.config.attachment_max_bytes,
        message_max: state.config.message_max_bytes,
    };
    let raw = decode::read(req, &limits).await?;
    let send = SendRequest::parse(&raw)?;
    let fingerprint = send.fingerprint();
    let store = state.store();
    if let Some(key) = &key
        && let Some(job) = outbox::get_by_key(store, caller.workspace(), key).await?
    {
        return replay(&state, caller.workspace(), key, job, &fingerprint).await;
    }

    let not_found = || {
        err(
            ErrorKind::ResourceNotFound,
            format!("account {} not found", send.account_id),
        )
    };
    if !looks_like_id(&send.account_id) {
        return Err(not_found());
    }
    let account = accounts::get(store, caller.workspace(), &send.account_id)
        .await?
        .ok_or_else(not_found)?;
    if account.status != SourceStatus::Ok {
        return Err(err(
            ErrorKind::DisconnectedAccount,
            format!(
                "account {} is {}: reconnect it before sending",
                account.id,
                account.status.as_str()
            ),
        ));
    }
    let account_address = account_address(&account)?;
    let from_address = send
        .from_identifier
        .clone()
        .unwrap_or_else(|| account_address.clone());

    let parent = match &send.reply_to {
        Some(r) => {
            Some(replies::resolve_parent(&state.engine, caller.workspace(), &account, r).await?)
        }
        None => None,
    };
    let id = new_id();
    let domain = from_address
        .rsplit_once('@')
        .map(|(_, d)| d)
        .unwrap_or("mailroom.invalid");
    let domain = idna::domain_to_ascii(domain).unwrap_or_else(|_| "mailroom.invalid".to_owned());
    let message_id = format!("<{id}@{domain}>");
    let subject = match &parent {
        Some(p) => compose::reply_subject(&send.subject, p.subject.as_deref()),
        None => send.subject.clone(),
    };
    let (html, text) = if compose::looks_like_html(&send.body) {
        (Some(send.body.clone()), compose::derive_text(&send.body))
    } else {
        (None, send.body.clone())
    };
    let email = OutgoingEmail {
        from: Attendee {
            identifier: from_address,
            display_name: send.from_name.clone(),
        },
        to: send.to.clone(),
        cc: send.cc.clone(),
        bcc: send.bcc.clone(),
        subject: subject.clone(),
        html,
        text,
        attachments: send.attachments.clone(),
        custom_headers: send.custom_headers.clone(),
        reply: parent.clone(),
    };
    let now = state.clock().now_ms();
    let built = compose::build_message(&email, &message_id, now).map_err(mime_error)?;
    if let Some(max) = mailroom_engine::apps::max_message_bytes(account.account_type)
        && built.bytes.len() > max
    {
        return Err(err(
            ErrorKind::ContentTooLarge,
            format!(
                "the encoded message is {} bytes; {} accepts at most {max}",
                built.bytes.len(),
                account.account_type.as_str()
            ),
        ));
    }
    if built.bytes.len() > state.config.message_max_bytes {
        return Err(err(
            ErrorKind::ContentTooLarge,
            format!(
                "the encoded message is {} bytes; at most {} are allowed",
                built.bytes.len(),
                state.config.message_max_bytes
            ),
        ));
    }
    let thread_refs: Vec<String> = match &parent {
        Some(p) => p
            .references
            .iter()
            .cloned()
            .chain([p.message_id.clone()])
            .collect(),
        None => vec![],
    };
    let scheduled = send.send_at.filter(|at| *at > now);
    let outbox = &state.engine.outbox;
    let claim = outbox.claim_token(&id, 1);
    let config = outbox.config();
    let inserted = outbox::insert(
        store,
        NewJob {
            id: &id,
            workspace_id: caller.workspace(),
            account_id: &account.id,
            idempotency_key: key.as_deref(),
            request_hash: &fingerprint,
            message_id: &message_id,
            thread_refs: &thread_refs,
            subject: &subject,
            recipients: &built.envelope_to,
            envelope_from: &built.envelope_from,
            raw: &built.bytes,
            max_attempts: config.max_attempts,
            give_up_at: scheduled.unwrap_or(now) + config.retry_horizon.as_millis() as i64,
            now_ms: now,
            send_at: scheduled,
            lease: (&claim, outbox.lease_until(now)),
        },
    )
    .await;
    match inserted {
        Ok(()) => {}
        // The same key raced in from another request: answer as its duplicate.
        Err(e) if e.is_unique_violation() && key.is_some() => {
            let key = key.as_deref().unwrap_or_default();
            if let Some(job) = outbox::get_by_key(store, caller.workspace(), key).await? {
                return replay(&state, caller.workspace(), key, job, &fingerprint).await;
            }
            return Err(e.into());
        }
        Err(e) => return Err(e.into()),
    }
    tracing::info!(tracking_id = %id, account_id = %account.id, scheduled = scheduled.is_some(), "email accepted");

    let answer = match scheduled {
        Some(at) => {
            let body = json!(EmailSent {
                object: "EmailSent",
                tracking_id: id.clone(),
                provider_id: None,
                status: "scheduled",
                message_id: message_id.clone(),
                next_attempt_at: Some(format_ms(at)),
                last_error: None,
            });
            (202, body)
        }
        None => {
            // A tracked task of its own: a client that disconnects does not cancel it.
            match outbox.spawn_attempt(id.clone(), claim.clone()).await {
                Ok(Ok(outcome)) => sent_answer(&id, &message_id, &outcome),
                // The message is stored: whatever went wrong here, the worker sends it. Never
                // answer 500 for an accepted send (a client would send it again).
                other => {
                    tracing::warn!(tracking_id = %id, outcome = ?other.map(|r| r.map(|_| ())), "the first attempt did not report; the worker will send");
                    sent_answer(&id, &message_id, &Outcome::NotOurs)
                }
            }
        }
    };
    if let Err(e) = outbox::set_response(store, &id, answer.0, &answer.1).await {
        tracing::warn!(tracking_id = %id, error = %e, "cannot record the answer for idempotent replays");
    }
    Ok(reply(answer))
}

/// A duplicate of an earlier request with the same key: 409 if it asks for something else,
/// else the first request's answer, waiting for it while the first attempt is under way.
async fn replay(
    state: &AppState,
    workspace: &str,
    key: &str,
    mut job: Job,
    fingerprint: &[u8],
) -> Result<Response> {
    if job.request_hash != fingerprint {
        return Err(err(
            ErrorKind::Conflict,
            format!(
                "Idempotency-Key {key} was already used for a different request (tracking_id {})",
                job.id
            ),
        ));
    }
    let deadline =
        Instant::now() + state.engine.outbox.config().send_timeout + Duration::from_secs(10);
    let mut pause = Duration::from_millis(20);
    while job.response.is_none() && Instant::now() < deadline {
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(500));
        match outbox::get_by_key(state.store(), workspace, key).await? {
            Some(j) => job = j,
            None => break,
        }
    }
    match job.response.take() {
        Some(answer) => Ok(reply(answer)),
        // The first request never answered (its node stopped): say where the job is now.
        None => Ok(reply(current_answer(&job))),
    }
}

fn current_answer(job: &Job) -> (u16, Value) {
    let outcome = match job.status {
        JobStatus::Sent => Outcome::Sent {
            provider_id: job.provider_id.clone().unwrap_or_default(),
        },
        JobStatus::Failed => Outcome::Failed {
            kind: error_kind(job.last_error_type.as_deref()),
            detail: job.last_error.clone().unwrap_or_default(),
        },
        _ => Outcome::NotOurs,
    };
    sent_answer(&job.id, &job.message_id, &outcome)
}

fn error_kind(slug: Option<&str>) -> ErrorKind {
    ErrorKind::ALL
        .iter()
        .copied()
        .filter(|k| {
            k.status() == 422
                || *k == ErrorKind::RequestTimeout
                || *k == ErrorKind::DisconnectedAccount
        })
        .find(|k| Some(k.type_slug()) == slug)
        .unwrap_or(ErrorKind::CantSendMessage)
}

// ---- the outbox -----------------------------------------------------------------------------

/// A send and what became of it.
#[derive(Debug, Serialize, ToSchema)]
pub struct OutboxItem {
    #[schema(example = "OutboxEmail")]
    pub object: &'static str,
    /// The `tracking_id` of the send.
    pub id: String,
    pub account_id: String,
    /// `scheduled`, `queued`, `sending`, `sent` or `failed`.
    pub status: String,
    pub attempts: i64,
    pub max_attempts: i64,
    pub message_id: String,
    pub provider_id: Option<String>,
    pub subject: String,
    pub recipients: Vec<String>,
    pub idempotency_key: Option<String>,
    pub next_attempt_at: Option<String>,
    pub last_error: Option<LastError>,
    /// Copy to the Sent folder: `none`, `pending`, `done` or `failed`.
    pub sent_copy: String,
    pub created_at: String,
    pub sent_at: Option<String>,
}

fn outbox_item(j: Job) -> OutboxItem {
    let waiting = matches!(j.status, JobStatus::Queued | JobStatus::Scheduled);
    OutboxItem {
        object: "OutboxEmail",
        id: j.id,
        account_id: j.account_id,
        status: j.status.as_str().to_owned(),
        attempts: j.attempts,
        max_attempts: j.max_attempts,
        message_id: j.message_id,
        provider_id: j.provider_id,
        subject: j.subject,
        recipients: j.recipients,
        idempotency_key: j.idempotency_key,
        next_attempt_at: waiting.then(|| format_ms(j.run_after)),
        last_error: j.last_error.map(|detail| LastError {
            type_: j.last_error_type.unwrap_or_default(),
            detail,
        }),
        sent_copy: j.sent_copy,
        created_at: format_ms(j.created_at),
        sent_at: j.sent_at.map(format_ms),
    }
}

/// The workspace's sends, newest first.
#[utoipa::path(
    get, path = "/api/v1/outbox", tag = "Emails",
    params(("limit" = Option<u32>, Query), ("cursor" = Option<String>, Query)),
    responses((status = 200, body = inline(ListEnvelope<OutboxItem>)), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("api_key" = []))
)]
pub async fn list_outbox(
    State(state): State<AppState>,
    caller: Caller,
    query: QueryPairs,
) -> Result<Json<ListEnvelope<OutboxItem>>> {
    let page = Page::from_query(&query)?;
    let rows = outbox::list(
        state.store(),
        caller.workspace(),
        page.after.as_ref(),
        page.fetch_limit(),
    )
    .await?;
    let (rows, cursor) = page.finish(rows, |j| Position {
        last_id: j.id.clone(),
        last_date: j.created_at,
    });
    Ok(Json(ListEnvelope {
        object: "OutboxList",
        items: rows.into_iter().map(outbox_item).collect(),
        cursor,
    }))
}

/// One send: status, attempts, last error.
#[utoipa::path(
    get, path = "/api/v1/outbox/{tracking_id}", tag = "Emails",
    params(("tracking_id" = String, Path)),
    responses((status = 200, body = OutboxItem), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("api_key" = []))
)]
pub async fn get_outbox(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<OutboxItem>> {
    let not_found = || err(ErrorKind::ResourceNotFound, format!("send {id} not found"));
    if !looks_like_id(&id) {
        return Err(not_found());
    }
    let job = outbox::get(state.store(), caller.workspace(), &id)
        .await?
        .ok_or_else(not_found)?;
    Ok(Json(outbox_item(job)))
}

/// The address an account sends from by default.
fn account_address(account: &mailroom_store::accounts::Account) -> Result<String> {
    let unreadable = |e: serde_json::Error| ApiError::unexpected(format!("account settings: {e}"));
    Ok(match account.account_type {
        AccountType::Mail => {
            let s: MailSettings =
                serde_json::from_value(account.settings.clone()).map_err(unreadable)?;
            if s.smtp_user.contains('@') {
                s.smtp_user
            } else {
                s.imap_user
            }
        }
        AccountType::GoogleOauth | AccountType::Outlook => {
            let s: OAuthSettings =
                serde_json::from_value(account.settings.clone()).map_err(unreadable)?;
            s.email
        }
    })
}
