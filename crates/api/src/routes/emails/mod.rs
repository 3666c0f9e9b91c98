//! `POST /api/v1/emails` (send) and `GET /api/v1/outbox[/{id}]` (what became of a send).
//!
//! A send is validated, built into its exact MIME bytes and stored in the outbox (with its
//! `Idempotency-Key`) before the first attempt. The attempt runs at once, in its own task so
//! a client that hangs up does not cancel it: 201 when the server took the message, 202 when
//! it will be retried (or was scheduled), 422 when the server refused it for good.

pub mod attachments;
mod decode;
pub mod drafts;
pub(crate) mod read;
mod request;
pub mod update;

use axum::Json;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use self::decode::Limits;
use self::request::SendRequest;
use crate::auth::Caller;
use crate::error::{ErrorBody, Result, err};
use crate::extract::QueryPairs;
use crate::pagination::{ListEnvelope, Page};
use crate::state::AppState;
use mailroom_core::cursor::Position;
use mailroom_core::id::looks_like_id;
use mailroom_core::time_fmt::format_ms;
use mailroom_core::{ApiError, ErrorKind};
use mailroom_engine::send::Answer;
use mailroom_store::outbox::{self, Job, JobStatus};

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
    /// `sent`, `queued` (will be retried) or `scheduled` (`send_at`, or held for the
    /// account's send limits).
    pub status: &'static str,
    /// The Message-ID the email carries.
    pub message_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<String>,
    /// When a `scheduled` send goes: its `send_at`, or the time the account's send limits
    /// (or a provider's quota pause) let it go, behind the account's earlier held sends.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scheduled_for: Option<String>,
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
    /// `{opens?: bool, links?: bool, label?: string, custom_domain?: string}`: an HTML body gets a
    /// 1×1 image (`/t/o/…`) and its links go through `/t/c/…`; the recipient's opens and clicks
    /// become `mail_opened` / `mail_link_clicked` events (docs/webhooks.md). Plain-text bodies are
    /// not tracked.
    tracking_options: Option<Object>,
    /// RFC 3339; a future date schedules the send.
    send_at: Option<String>,
    /// Sends this draft (`POST /drafts`): the fields given here win, the ones left out
    /// (to, cc, bcc, subject, body, attachments, reply_to) come from the draft, which is removed
    /// from Drafts once the send is accepted. `to` and `body` are then optional.
    draft_id: Option<String>,
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

fn reply(answer: Answer) -> Response {
    let Answer { status, body } = answer;
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
    let send = SendRequest::parse(&raw, &state.config.public_url)?;
    let fingerprint = send.fingerprint();
    let answer = mailroom_engine::send::accept(
        &state.engine,
        caller.tenant(),
        caller.origin(),
        send.input,
        key,
        fingerprint,
        state.config.message_max_bytes,
    )
    .await?;
    Ok(reply(answer))
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
    /// When a `scheduled` send is planned to go (`send_at`, or its account's send window).
    pub scheduled_for: Option<String>,
    /// Whether it waits for its account's send limits (or a provider's quota pause).
    pub held_for_limits: bool,
    pub last_error: Option<LastError>,
    /// Copy to the Sent folder: `none`, `pending`, `done` or `failed`.
    pub sent_copy: String,
    pub created_at: String,
    pub sent_at: Option<String>,
}

fn outbox_item(j: Job) -> OutboxItem {
    let waiting = matches!(j.status, JobStatus::Queued | JobStatus::Scheduled);
    let held = j.is_held() && waiting;
    OutboxItem {
        object: "OutboxEmail",
        id: j.id.into(),
        account_id: j.account_id.into(),
        status: j.status.as_str().to_owned(),
        attempts: j.attempts,
        max_attempts: j.max_attempts,
        message_id: j.message_id,
        provider_id: j.provider_id,
        subject: j.subject,
        recipients: j.recipients,
        idempotency_key: j.idempotency_key,
        next_attempt_at: waiting.then(|| format_ms(j.run_after)),
        scheduled_for: (j.status == JobStatus::Scheduled).then(|| format_ms(j.run_after)),
        held_for_limits: held,
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
        caller.tenant(),
        page.after.as_ref(),
        page.fetch_limit(),
    )
    .await?;
    let (rows, cursor) = page.finish(rows, |j| Position {
        last_id: j.id.to_string(),
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
    let job = outbox::get(state.store(), caller.tenant(), &id)
        .await?
        .ok_or_else(not_found)?;
    Ok(Json(outbox_item(job)))
}
