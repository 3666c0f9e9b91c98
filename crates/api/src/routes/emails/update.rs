//! `PUT /api/v1/emails/{id}` (read state, move) and `DELETE /api/v1/emails/{id}` (to Trash).
//!
//! The body of a PUT comes as JSON, urlencoded or multipart. The unipile SDK's
//! `email.update` sends none of these: its body is the text `[object Object]` (`unipile-api.md`
//! §1.6), from which nothing can be recovered; it is answered 400 with how to send it instead.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequest, Multipart, Path, Request, State};
use axum::http::header::CONTENT_TYPE;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::error::{Error, ErrorBody, Result, err};
use crate::extract::{QueryPairs, body_rejection};
use crate::state::AppState;
use mailroom_core::ErrorKind;
use mailroom_engine::mutate::{self, EmailRef, Update};

/// The answer to a PUT.
#[derive(Debug, Serialize, ToSchema)]
pub struct EmailUpdated {
    #[schema(example = "EmailUpdated")]
    pub object: &'static str,
}

/// The answer to a DELETE.
#[derive(Debug, Serialize, ToSchema)]
pub struct EmailDeleted {
    #[schema(example = "EmailDeleted")]
    pub object: &'static str,
}

/// Body of `PUT /emails/{id}` (JSON as here; also urlencoded or multipart fields of the same
/// names, `folders` repeated or as a JSON array string).
#[allow(dead_code)]
#[derive(Debug, ToSchema)]
pub struct UpdateEmailBody {
    /// `true` marks the email unread, `false` read. When given, `folders` is ignored.
    unread: Option<bool>,
    /// The name of the one folder to move the email to (`GET /folders` lists the names).
    folders: Option<Vec<String>>,
}

/// What to say to a body that is not one of the three encodings (the SDK's `[object Object]`).
const HOW_TO_SEND: &str = "send the update as a JSON object with Content-Type: application/json, \
     e.g. {\"unread\": false} or {\"folders\": [\"Archive\"]} (urlencoded and multipart fields \
     of the same names work too). The unipile SDK's email.update sends the text \
     `[object Object]` instead; use client.request.send({path: ['emails', id], method: 'PUT', \
     body: {unread: false}, headers: {'Content-Type': 'application/json'}})";

fn invalid(detail: impl Into<String>) -> Error {
    err(ErrorKind::InvalidParameters, detail)
}

fn parse_unread(v: &Value) -> Result<bool> {
    match v {
        Value::Bool(b) => Ok(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Ok(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Ok(false),
        _ => Err(invalid(format!("unread must be true or false, got {v}"))),
    }
}

/// A `folders` value: an array of names, a JSON array in a string, or one name.
fn push_folders(v: &Value, out: &mut Vec<String>) -> Result<()> {
    match v {
        Value::Array(items) => {
            for item in items {
                match item {
                    Value::String(s) if !s.trim().is_empty() => out.push(s.trim().to_owned()),
                    _ => return Err(invalid("folders must be an array of folder names")),
                }
            }
            Ok(())
        }
        Value::String(s) if s.trim_start().starts_with('[') => {
            let parsed: Value = serde_json::from_str(s)
                .map_err(|e| invalid(format!("folders is not a valid JSON array: {e}")))?;
            push_folders(&parsed, out)
        }
        Value::String(s) if !s.trim().is_empty() => {
            out.push(s.trim().to_owned());
            Ok(())
        }
        _ => Err(invalid("folders must be an array of folder names")),
    }
}

/// Fields of a form (urlencoded or multipart) as JSON values: `unread` once, `folders` (or
/// `folders[]`) as many times as given.
fn from_fields(fields: Vec<(String, String)>) -> Result<Update> {
    let mut update = Update::default();
    let mut folders = Vec::new();
    let mut saw_folders = false;
    for (name, value) in fields {
        match name.as_str() {
            "unread" => update.unread = Some(parse_unread(&Value::String(value))?),
            "folders" | "folders[]" => {
                saw_folders = true;
                push_folders(&Value::String(value), &mut folders)?;
            }
            _ => {}
        }
    }
    if saw_folders {
        update.folders = Some(folders);
    }
    Ok(update)
}

async fn read_update(req: Request) -> Result<Update> {
    let ct = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    if ct.starts_with("multipart/form-data") {
        let mut form = Multipart::from_request(req, &()).await.map_err(|e| {
            err(
                ErrorKind::MalformedRequest,
                format!("the multipart body cannot be read: {e}"),
            )
        })?;
        let mut fields = Vec::new();
        while let Some(field) = form.next_field().await.map_err(|e| {
            err(
                ErrorKind::MalformedRequest,
                format!("the multipart body cannot be read: {e}"),
            )
        })? {
            let name = field.name().unwrap_or("").to_owned();
            let text = field.text().await.map_err(|e| {
                err(
                    ErrorKind::MalformedRequest,
                    format!("field {name} cannot be read: {e}"),
                )
            })?;
            fields.push((name, text));
        }
        return from_fields(fields);
    }
    let bytes = Bytes::from_request(req, &())
        .await
        .map_err(body_rejection)?;
    if ct.starts_with("application/x-www-form-urlencoded") {
        let fields = url::form_urlencoded::parse(&bytes).into_owned().collect();
        return from_fields(fields);
    }
    if ct.starts_with("application/json") {
        let value: Value = serde_json::from_slice(&bytes).map_err(|e| {
            err(
                ErrorKind::MalformedRequest,
                format!("the body is not valid JSON: {e}"),
            )
        })?;
        let Value::Object(o) = value else {
            return Err(invalid(format!(
                "the body must be a JSON object; {HOW_TO_SEND}"
            )));
        };
        let mut update = Update::default();
        if let Some(v) = o.get("unread").filter(|v| !v.is_null()) {
            update.unread = Some(parse_unread(v)?);
        }
        if let Some(v) = o.get("folders").filter(|v| !v.is_null()) {
            let mut folders = Vec::new();
            push_folders(v, &mut folders)?;
            update.folders = Some(folders);
        }
        return Ok(update);
    }
    if bytes.is_empty() && ct.is_empty() {
        return Ok(Update::default());
    }
    let what = if bytes.as_ref() == b"[object Object]" {
        "the body is the text `[object Object]`, not the update".to_owned()
    } else {
        format!(
            "a body of type {} cannot carry the update",
            if ct.is_empty() { "(none)" } else { ct.as_str() }
        )
    };
    Err(invalid(format!("{what}: {HOW_TO_SEND}")))
}

fn email_ref<'a>(id: &'a str, query: &'a QueryPairs) -> EmailRef<'a> {
    EmailRef {
        id,
        account_id: query.get("account_id").filter(|a| !a.is_empty()),
    }
}

/// Mark an email read or unread, or move it to another folder.
#[utoipa::path(
    put, path = "/api/v1/emails/{email_id}", tag = "Emails",
    params(
        ("email_id" = String, Path, description = "Our email id, or the provider's id with `account_id`"),
        ("account_id" = Option<String>, Query, description = "Required when `email_id` is the provider's id"),
    ),
    request_body(content = UpdateEmailBody, content_type = "application/json", description = "Also accepted urlencoded or multipart. `unread` wins: when given, `folders` is ignored. `folders` names exactly one folder (a move). The unipile SDK's `email.update` sends `[object Object]` as text/plain: that is answered 400 with how to send it."),
    responses(
        (status = 200, description = "Changed in the mailbox, then in the index", body = EmailUpdated),
        (status = 400, description = "`errors/invalid_parameters` (several or unknown folders, a body that is not JSON/urlencoded/multipart) or `errors/missing_parameters`", body = ErrorBody),
        (status = 401, description = "Bad API key, or `errors/disconnected_account`", body = ErrorBody),
        (status = 404, description = "Unknown email", body = ErrorBody),
        (status = 422, description = "The provider refused the change, or the account's provider cannot change mail through mailroom yet (Gmail, Outlook)", body = ErrorBody),
        (status = 503, description = "The mailbox could not be reached; try again", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn update_email(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    query: QueryPairs,
    req: Request,
) -> Result<Json<EmailUpdated>> {
    let update = read_update(req).await?;
    mutate::update(
        &state.engine,
        caller.tenant(),
        email_ref(&id, &query),
        update,
    )
    .await?;
    Ok(Json(EmailUpdated {
        object: "EmailUpdated",
    }))
}

/// Delete an email: moved to the Trash, or expunged where the account has no Trash (or it is
/// in the Trash already).
#[utoipa::path(
    delete, path = "/api/v1/emails/{email_id}", tag = "Emails",
    params(
        ("email_id" = String, Path, description = "Our email id, or the provider's id with `account_id`"),
        ("account_id" = Option<String>, Query, description = "Required when `email_id` is the provider's id"),
    ),
    responses(
        (status = 200, body = EmailDeleted),
        (status = 401, description = "Bad API key, or `errors/disconnected_account`", body = ErrorBody),
        (status = 404, description = "Unknown email", body = ErrorBody),
        (status = 422, description = "The provider refused, or cannot change mail through mailroom yet (Gmail, Outlook)", body = ErrorBody),
        (status = 503, description = "The mailbox could not be reached; try again", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn delete_email(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    query: QueryPairs,
) -> Result<Json<EmailDeleted>> {
    mutate::delete(&state.engine, caller.tenant(), email_ref(&id, &query)).await?;
    Ok(Json(EmailDeleted {
        object: "EmailDeleted",
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn form_fields_carry_unread_and_folders() {
        let u = from_fields(pairs(&[("unread", "false")])).unwrap();
        assert_eq!(u.unread, Some(false));
        let u = from_fields(pairs(&[("folders", "Archive"), ("folders[]", "B")])).unwrap();
        assert_eq!(u.folders, Some(vec!["Archive".into(), "B".into()]));
        let u = from_fields(pairs(&[("folders", "[\"Archive\"]")])).unwrap();
        assert_eq!(u.folders, Some(vec!["Archive".into()]));
        assert!(from_fields(pairs(&[("unread", "maybe")])).is_err());
        assert_eq!(from_fields(vec![]).unwrap(), Update::default());
    }
}
