//! Providers' push deliveries (outside the API key: each is authenticated its own way).
//!
//! `POST /push/google/{token}`: Cloud Pub/Sub push deliveries of Gmail's mailbox changes
//! (`users.watch` publishes `{"emailAddress", "historyId"}` to the operator's topic; its push
//! subscription posts them here). The token in the path is the operator's
//! `MAILROOM_GOOGLE_PUSH_TOKEN`: only the subscription knows the URL. A delivery nudges the
//! sync of the mailbox's accounts (`engine::sync::control::gmail_pushed`), which then reads the
//! history from its stored history id.
//!
//! Answers: 204 (acknowledged: Pub/Sub will not send it again; also for a mailbox mailroom does
//! not know, and for a message it cannot read, which a retry would not mend); 404 when push is
//! not set up or the token is wrong (nothing says which); 500 when the nudge could not be
//! stored (Pub/Sub retries).
//!
//! `POST /push/microsoft`: Microsoft Graph's change and lifecycle notifications for the
//! subscriptions the Outlook accounts' sync loops made (`engine::sync::push`).
//! `?validationToken=…` is Graph's handshake, made while a subscription is being created: the
//! token is echoed as `text/plain` with 200, at once (nothing is looked up: the subscription
//! exists nowhere yet). A notification body (`{"value": [...]}`) is checked item by item
//! against the stored subscription and its `clientState` (constant time; an unknown
//! subscription or a wrong secret is ignored and logged, never echoed); the accounts concerned
//! get a sync pass. Answers: 202 (Graph wants an answer within 3 s: only the store is asked);
//! 400 JSON error for a body that is not a notification list; 500 when the store failed (Graph
//! sends it again).

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use secrecy::ExposeSecret;
use serde::Deserialize;

use crate::error::err;
use crate::state::AppState;
use mailroom_core::ErrorKind;

#[derive(Deserialize)]
struct Envelope {
    message: PubsubMessage,
}

#[derive(Deserialize)]
struct PubsubMessage {
    /// Base64 of the JSON Gmail published.
    #[serde(default)]
    data: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Notification {
    email_address: String,
}

/// Compares without stopping at the first difference (the token is a secret).
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

pub(super) async fn google(
    State(state): State<AppState>,
    Path(token): Path<String>,
    body: Bytes,
) -> Response {
    let push = state
        .engine
        .apps
        .google
        .as_ref()
        .and_then(|g| g.push.as_ref());
    if !push.is_some_and(|p| same(p.token.expose_secret().as_bytes(), token.as_bytes())) {
        return err(ErrorKind::ResourceNotFound, "no route POST /push/google").into_response();
    }
    let email = serde_json::from_slice::<Envelope>(&body)
        .ok()
        .and_then(|e| {
            base64::engine::general_purpose::STANDARD
                .decode(e.message.data.trim())
                .ok()
        })
        .and_then(|d| serde_json::from_slice::<Notification>(&d).ok())
        .map(|n| n.email_address);
    let Some(email) = email else {
        tracing::warn!("a Gmail push delivery without a readable notification; acknowledged");
        return StatusCode::NO_CONTENT.into_response();
    };
    match mailroom_engine::sync::control::gmail_pushed(&state.engine, &email).await {
        Ok(n) => {
            tracing::debug!(accounts = n, "Gmail push");
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => {
            tracing::warn!(error = %e, "could not pass a Gmail push on; Pub/Sub will retry");
            err(ErrorKind::UnexpectedError, "could not record the push").into_response()
        }
    }
}

/// Graph's validation tokens are short texts; anything longer is not one.
const MAX_VALIDATION_TOKEN: usize = 1024;

pub(super) async fn microsoft(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let token = query.as_deref().and_then(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "validationToken")
            .map(|(_, v)| v.into_owned())
    });
    if let Some(token) = token {
        if token.is_empty() || token.len() > MAX_VALIDATION_TOKEN {
            return err(
                ErrorKind::InvalidParameters,
                "validationToken must be 1 to 1024 characters",
            )
            .into_response();
        }
        return (
            [
                (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            ],
            token,
        )
            .into_response();
    }
    let notifications =
        match serde_json::from_slice::<mailroom_engine::sync::push::Notifications>(&body) {
            Ok(n) => n,
            Err(e) => {
                return err(
                    ErrorKind::MalformedRequest,
                    format!("not a Graph notification list ({{\"value\": [...]}}): {e}"),
                )
                .into_response();
            }
        };
    match mailroom_engine::sync::push::microsoft_notified(&state.engine, notifications).await {
        Ok(n) => {
            tracing::debug!(
                accounts = n.nudged,
                ignored = n.ignored,
                "Graph notifications"
            );
            StatusCode::ACCEPTED.into_response()
        }
        Err(e) => {
            tracing::warn!(error = %e, "could not pass Graph notifications on; Graph will retry");
            err(
                ErrorKind::UnexpectedError,
                "could not record the notifications",
            )
            .into_response()
        }
    }
}
