//! `POST /api/v1/drafts`: the same fields as a send, built into the same MIME message, filed
//! in the account's Drafts folder and indexed. Its `draft_id` is our email id; `draft_id` on
//! `POST /emails` sends it.

use axum::Json;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;

use super::SendEmailBody;
use super::decode::{self, Limits};
use super::request::SendRequest;
use crate::auth::Caller;
use crate::error::{ErrorBody, Result, err};
use crate::state::AppState;
use mailroom_core::ErrorKind;

/// The answer to `POST /drafts`.
#[derive(Debug, Serialize, ToSchema)]
pub struct DraftCreated {
    #[schema(example = "DraftCreated")]
    pub object: &'static str,
    /// Our id of the draft (an email id: `GET /emails/{email_id}` shows it;
    /// `draft_id` on `POST /emails` sends it).
    pub draft_id: String,
}

/// Save a draft in the account's Drafts folder.
#[utoipa::path(
    post, path = "/api/v1/drafts", tag = "Emails",
    request_body(content = SendEmailBody, content_type = "multipart/form-data", description = "The fields of `POST /emails` (also as JSON); `send_at` and `draft_id` do not apply"),
    responses(
        (status = 200, description = "Filed in Drafts (flagged `\\Draft`) and indexed", body = DraftCreated),
        (status = 400, description = "Invalid input; nothing filed", body = ErrorBody),
        (status = 401, description = "Bad API key, or `errors/disconnected_account`", body = ErrorBody),
        (status = 404, description = "Unknown account", body = ErrorBody),
        (status = 422, description = "The account has no Drafts folder, or its provider cannot file drafts through mailroom yet (Outlook)", body = ErrorBody),
        (status = 503, description = "The mailbox could not be reached; try again", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn create_draft(
    State(state): State<AppState>,
    caller: Caller,
    req: Request,
) -> Result<(StatusCode, Json<DraftCreated>)> {
    let limits = Limits {
        attachment_max: state.config.attachment_max_bytes,
        message_max: state.config.message_max_bytes,
    };
    let raw = decode::read(req, &limits).await?;
    let draft = SendRequest::parse(&raw, &state.config.public_url)?;
    if draft.input.draft_id.is_some() {
        return Err(err(
            ErrorKind::InvalidParameters,
            "draft_id does not apply to a new draft",
        ));
    }
    let draft_id = mailroom_engine::mutate::create_draft(
        &state.engine,
        caller.workspace(),
        draft.input,
        state.config.message_max_bytes,
    )
    .await?;
    Ok((
        StatusCode::OK,
        Json(DraftCreated {
            object: "DraftCreated",
            draft_id,
        }),
    ))
}
