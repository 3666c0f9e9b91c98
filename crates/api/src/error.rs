//! The JSON error body every failure is answered with:
//! `{title, detail, instance, type: "errors/<slug>", status}` (plus `connectionParams` on
//! IMAP/SMTP account errors). `instance` is the request path, filled in by
//! [`crate::middleware::error_instance`].

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use mailroom_core::error::ConnectionParams;
use mailroom_core::{ApiError, ErrorKind};
use mailroom_store::StoreError;

/// A handler error: an [`ApiError`] that renders as the JSON error body.
#[derive(Debug)]
pub struct Error(pub ApiError);

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<ApiError> for Error {
    fn from(e: ApiError) -> Self {
        Error(e)
    }
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        // Details of database failures are for the logs, not for API clients.
        tracing::error!(error = %e, "store error");
        Error(ApiError::unexpected(
            "an internal error occurred; it has been logged",
        ))
    }
}

/// The error body, as documented in the OpenAPI.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// Short summary of the error class.
    pub title: String,
    /// What exactly was wrong, for a human.
    pub detail: String,
    /// The request path.
    pub instance: String,
    /// `errors/<slug>`; branch on this.
    #[serde(rename = "type")]
    #[schema(example = "errors/invalid_parameters")]
    pub type_: String,
    /// Equals the HTTP status.
    pub status: u16,
    /// The IMAP/SMTP settings that were tried (401 account errors only).
    #[serde(rename = "connectionParams", skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub connection_params: Option<ConnectionParams>,
}

impl ErrorBody {
    pub fn new(e: &ApiError, instance: &str) -> Self {
        Self {
            title: e.kind.title().to_owned(),
            detail: e.detail.clone(),
            instance: instance.to_owned(),
            type_: e.kind.type_slug().to_owned(),
            status: e.kind.status(),
            connection_params: e.connection_params.as_deref().cloned(),
        }
    }
}

pub(crate) fn render(e: &ApiError, instance: &str) -> Response {
    let status = StatusCode::from_u16(e.kind.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = (status, Json(ErrorBody::new(e, instance))).into_response();
    resp.extensions_mut().insert(RenderedError(e.clone()));
    resp
}

/// Marks a response as an API error so the outer middleware can add `instance`.
#[derive(Clone)]
pub(crate) struct RenderedError(pub ApiError);

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        render(&self.0, "")
    }
}

pub(crate) fn err(kind: ErrorKind, detail: impl Into<String>) -> Error {
    Error(ApiError::new(kind, detail))
}
