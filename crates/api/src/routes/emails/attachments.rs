//! `GET /api/v1/emails/{id}/attachments/{attachment_id}`: the bytes of one attachment,
//! fetched live from the mailbox (the index keeps only its metadata) and streamed as it is
//! fetched, with its own content type (never JSON unless the file is) and a
//! `Content-Disposition` naming the file.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use crate::auth::Caller;
use crate::error::{ErrorBody, Result};
use crate::extract::QueryPairs;
use crate::state::AppState;
use mailroom_engine::mutate::{self, EmailRef};

/// `attachment; filename="<ASCII fallback>"; filename*=UTF-8''<percent-encoded>` (RFC 6266,
/// RFC 8187): every client reads one of the two.
fn content_disposition(name: &str) -> String {
    let fallback: String = name
        .chars()
        .map(|c| {
            if c.is_ascii() && !c.is_ascii_control() && c != '"' && c != '\\' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut encoded = String::new();
    for b in name.bytes() {
        // RFC 8187 attr-char.
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            encoded.push(b as char);
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    format!("attachment; filename=\"{fallback}\"; filename*=UTF-8''{encoded}")
}

/// The attachment's MIME type as a header value; text comes back as UTF-8 (the decoder turns
/// text parts into UTF-8), anything unusable as `application/octet-stream`.
fn content_type(mime: &str) -> HeaderValue {
    let mime = mime.trim();
    let ok = mime.contains('/')
        && mime
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b';' && b != b',');
    if !ok {
        return HeaderValue::from_static("application/octet-stream");
    }
    let value = if mime.starts_with("text/") {
        format!("{mime}; charset=utf-8")
    } else {
        mime.to_owned()
    };
    HeaderValue::from_str(&value).unwrap_or(HeaderValue::from_static("application/octet-stream"))
}

/// The bytes of an attachment.
#[utoipa::path(
    get, path = "/api/v1/emails/{email_id}/attachments/{attachment_id}", tag = "Emails",
    params(
        ("email_id" = String, Path, description = "Our email id, or the provider's id with `account_id`"),
        ("attachment_id" = String, Path, description = "An `attachments[].id` of the email"),
        ("account_id" = Option<String>, Query, description = "Required when `email_id` is the provider's id"),
    ),
    responses(
        (status = 200, description = "The file, streamed as it is fetched from the mailbox (chunked, no Content-Length), with its MIME type and a Content-Disposition naming it", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 401, description = "Bad API key, or `errors/disconnected_account`", body = ErrorBody),
        (status = 404, description = "Unknown email or attachment", body = ErrorBody),
        (status = 422, description = "The account's provider cannot serve attachments through mailroom yet (Gmail, Outlook)", body = ErrorBody),
        (status = 503, description = "The mailbox could not be reached; try again", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn get_attachment(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, attachment_id)): Path<(String, String)>,
    query: QueryPairs,
) -> Result<Response> {
    let email = EmailRef {
        id: &id,
        account_id: query.get("account_id").filter(|a| !a.is_empty()),
    };
    let found = mutate::attachment(&state.engine, caller.tenant(), email, &attachment_id).await?;
    let disposition = HeaderValue::from_str(&content_disposition(&found.name))
        .unwrap_or(HeaderValue::from_static("attachment"));
    Ok((
        [
            (header::CONTENT_TYPE, content_type(&found.mime)),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        Body::from_stream(found.body),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_are_encoded_both_ways() {
        assert_eq!(
            content_disposition("Résumé café.pdf"),
            "attachment; filename=\"R_sum_ caf_.pdf\"; filename*=UTF-8''R%C3%A9sum%C3%A9%20caf%C3%A9.pdf"
        );
        assert_eq!(
            content_disposition("a\"b.txt"),
            "attachment; filename=\"a_b.txt\"; filename*=UTF-8''a%22b.txt"
        );
    }

    #[test]
    fn content_types_are_never_guessed_into_json() {
        assert_eq!(content_type("image/png"), "image/png");
        assert_eq!(content_type("text/plain"), "text/plain; charset=utf-8");
        assert_eq!(content_type("nonsense"), "application/octet-stream");
        assert_eq!(content_type("a/b\r\nX: y"), "application/octet-stream");
    }
}
