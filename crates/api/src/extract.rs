//! Request decoding with our error body instead of axum's plain-text rejections.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;

use crate::error::{Error, err};
use mailroom_core::ErrorKind;

/// A JSON object body, kept as a `serde_json::Value` so each handler can say precisely
/// which field is missing or wrong.
pub struct JsonObject(pub serde_json::Map<String, serde_json::Value>);

impl<S: Send + Sync> FromRequest<S> for JsonObject {
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let content_type = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        if !content_type.starts_with("application/json") {
            return Err(err(
                ErrorKind::InvalidRequest,
                format!(
                    "expected a JSON body with Content-Type: application/json, got {}",
                    if content_type.is_empty() {
                        "no Content-Type"
                    } else {
                        content_type.as_str()
                    }
                ),
            ));
        }
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(body_rejection)?;
        let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
            err(
                ErrorKind::MalformedRequest,
                format!("the body is not valid JSON: {e}"),
            )
        })?;
        match value {
            serde_json::Value::Object(map) => Ok(JsonObject(map)),
            _ => Err(err(
                ErrorKind::InvalidRequest,
                "the body must be a JSON object",
            )),
        }
    }
}

pub(crate) fn body_rejection(e: axum::extract::rejection::BytesRejection) -> Error {
    if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        err(
            ErrorKind::ContentTooLarge,
            "the request body is larger than this server accepts",
        )
    } else {
        err(
            ErrorKind::MalformedRequest,
            format!("could not read the request body: {e}"),
        )
    }
}

/// Query parameters in order, decoded the way the SDK encodes them (form encoding: `+` is
/// a space).
pub struct QueryPairs(pub Vec<(String, String)>);

impl QueryPairs {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

impl<S: Send + Sync> FromRequestParts<S> for QueryPairs {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Query::<Vec<(String, String)>>::from_request_parts(parts, state)
            .await
            .map(|Query(q)| QueryPairs(q))
            .map_err(|e| {
                err(
                    ErrorKind::InvalidParameters,
                    format!("bad query string: {e}"),
                )
            })
    }
}
