//! Reading a send request: `multipart/form-data` exactly as the SDK sends it (JSON inside
//! the `to`/`cc`/`bcc`/`from`/`custom_headers`/`tracking_options` text fields, files named
//! `attachments`) or `application/json` with real arrays and base64 attachments. Sizes are
//! checked while reading, so an oversized upload is refused before it is held in memory.

use axum::extract::{FromRequest, Multipart, Request};
use axum::http::header::CONTENT_TYPE;
use base64::Engine as _;
use serde_json::{Map, Value};

use crate::error::{Error, err};
use crate::extract::body_rejection;
use mailroom_core::ErrorKind;
use mailroom_core::email::OutgoingAttachment;

/// The fields of a send, before validation.
#[derive(Debug, Default)]
pub struct RawSend {
    /// Text fields by name (JSON values for the JSON body; strings for forms).
    pub fields: Map<String, Value>,
    pub attachments: Vec<OutgoingAttachment>,
}

pub struct Limits {
    pub attachment_max: usize,
    pub message_max: usize,
}

fn too_large(what: String) -> Error {
    err(ErrorKind::ContentTooLarge, what)
}

fn mib(n: usize) -> String {
    format!("{:.1} MiB", n as f64 / 1024.0 / 1024.0)
}

/// Fields whose form value is JSON text.
const JSON_FIELDS: &[&str] = &[
    "to",
    "cc",
    "bcc",
    "from",
    "custom_headers",
    "tracking_options",
];

pub async fn read(req: Request, limits: &Limits) -> Result<RawSend, Error> {
    let ct = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    if ct.starts_with("multipart/form-data") {
        read_multipart(req, limits).await
    } else if ct.starts_with("application/json") {
        read_json(req, limits).await
    } else {
        Err(err(
            ErrorKind::InvalidRequest,
            "send with Content-Type multipart/form-data (as the SDK does) or application/json",
        ))
    }
}

async fn read_multipart(req: Request, limits: &Limits) -> Result<RawSend, Error> {
    let mut form = Multipart::from_request(req, &()).await.map_err(|e| {
        err(
            ErrorKind::MalformedRequest,
            format!("the multipart body cannot be read: {e}"),
        )
    })?;
    let mut out = RawSend::default();
    let mut total = 0usize;
    loop {
        let field = match form.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => return Err(multipart_error(e)),
        };
        let name = field.name().unwrap_or("").to_owned();
        let filename = field.file_name().map(str::to_owned);
        let content_type = field.content_type().map(str::to_owned);
        let mut field = field;
        let mut buf = Vec::new();
        let cap = if filename.is_some() {
            limits.attachment_max
        } else {
            limits.message_max
        };
        loop {
            match field.chunk().await {
                Ok(Some(chunk)) => {
                    buf.extend_from_slice(&chunk);
                    total += chunk.len();
                    if buf.len() > cap {
                        return Err(too_large(match &filename {
                            Some(f) => format!(
                                "attachment {f} is larger than the {} allowed per attachment",
                                mib(cap)
                            ),
                            None => format!("field {name} is larger than {}", mib(cap)),
                        }));
                    }
                    if total > limits.message_max {
                        return Err(too_large(format!(
                            "the message is larger than the {} allowed",
                            mib(limits.message_max)
                        )));
                    }
                }
                Ok(None) => break,
                Err(e) => return Err(multipart_error(e)),
            }
        }
        match (name.as_str(), filename) {
            ("attachments", Some(filename)) => out.attachments.push(OutgoingAttachment {
                filename,
                content_type: content_type.filter(|c| c != "application/octet-stream"),
                content: buf,
                cid: None,
            }),
            (_, Some(_)) => {
                return Err(err(
                    ErrorKind::InvalidParameters,
                    format!("unexpected file in field {name}; files go in `attachments`"),
                ));
            }
            (_, None) => {
                let text = String::from_utf8(buf).map_err(|_| {
                    err(
                        ErrorKind::InvalidParameters,
                        format!("field {name} is not UTF-8 text"),
                    )
                })?;
                let value = if JSON_FIELDS.contains(&name.as_str()) {
                    form_json(&name, &text)?
                } else {
                    Value::String(text)
                };
                if out.fields.insert(name.clone(), value).is_some() {
                    return Err(err(
                        ErrorKind::InvalidParameters,
                        format!("field {name} is given twice"),
                    ));
                }
            }
        }
    }
    Ok(out)
}

/// A JSON-valued form field. A bare address (`to=a@b.c`) is accepted as one recipient; text
/// that looks like JSON but is not is refused with the parser's message.
fn form_json(name: &str, text: &str) -> Result<Value, Error> {
    let t = text.trim();
    if t.starts_with('[') || t.starts_with('{') || t == "null" {
        serde_json::from_str(t).map_err(|e| {
            err(
                ErrorKind::InvalidParameters,
                format!("field {name} is not valid JSON: {e}"),
            )
        })
    } else if matches!(name, "to" | "cc" | "bcc") {
        Ok(Value::Array(
            t.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|a| serde_json::json!({"identifier": a}))
                .collect(),
        ))
    } else if name == "from" {
        Ok(serde_json::json!({"identifier": t}))
    } else {
        Err(err(
            ErrorKind::InvalidParameters,
            format!("field {name} must be JSON"),
        ))
    }
}

fn multipart_error(e: axum::extract::multipart::MultipartError) -> Error {
    if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        err(
            ErrorKind::ContentTooLarge,
            "the request body is larger than this server accepts",
        )
    } else {
        err(
            ErrorKind::MalformedRequest,
            format!("the multipart body cannot be read: {e}"),
        )
    }
}

async fn read_json(req: Request, limits: &Limits) -> Result<RawSend, Error> {
    let bytes = axum::body::Bytes::from_request(req, &())
        .await
        .map_err(body_rejection)?;
    let value: Value = serde_json::from_slice(&bytes).map_err(|e| {
        err(
            ErrorKind::MalformedRequest,
            format!("the body is not valid JSON: {e}"),
        )
    })?;
    let Value::Object(mut fields) = value else {
        return Err(err(
            ErrorKind::InvalidRequest,
            "the body must be a JSON object",
        ));
    };
    let mut out = RawSend::default();
    let mut total = 0usize;
    if let Some(list) = fields.remove("attachments") {
        let Value::Array(items) = list else {
            return Err(err(
                ErrorKind::InvalidParameters,
                "attachments must be an array of {filename, content_type?, content, cid?}",
            ));
        };
        for (i, item) in items.into_iter().enumerate() {
            let field = |k: &str| item.get(k).and_then(Value::as_str).map(str::to_owned);
            let filename = field("filename").filter(|f| !f.is_empty()).ok_or_else(|| {
                err(
                    ErrorKind::MissingParameters,
                    format!("attachments[{i}].filename is required"),
                )
            })?;
            let encoded = field("content").ok_or_else(|| {
                err(
                    ErrorKind::MissingParameters,
                    format!("attachments[{i}].content (base64) is required"),
                )
            })?;
            if encoded.len() / 4 * 3 > limits.attachment_max + 3 {
                return Err(too_large(format!(
                    "attachment {filename} is larger than the {} allowed per attachment",
                    mib(limits.attachment_max)
                )));
            }
            let content = base64::engine::general_purpose::STANDARD
                // Line-wrapped base64 (MIME style) is fine too.
                .decode(
                    encoded
                        .bytes()
                        .filter(|b| !b.is_ascii_whitespace())
                        .collect::<Vec<u8>>(),
                )
                .map_err(|e| {
                    err(
                        ErrorKind::InvalidParameters,
                        format!("attachments[{i}].content is not standard base64: {e}"),
                    )
                })?;
            if content.len() > limits.attachment_max {
                return Err(too_large(format!(
                    "attachment {filename} is larger than the {} allowed per attachment",
                    mib(limits.attachment_max)
                )));
            }
            total += content.len();
            if total > limits.message_max {
                return Err(too_large(format!(
                    "the message is larger than the {} allowed",
                    mib(limits.message_max)
                )));
            }
            out.attachments.push(OutgoingAttachment {
                filename,
                content_type: field("content_type")
                    .filter(|c| !c.is_empty() && c != "application/octet-stream"),
                content,
                cid: field("cid").filter(|c| !c.is_empty()),
            });
        }
    }
    out.fields = fields;
    Ok(out)
}
