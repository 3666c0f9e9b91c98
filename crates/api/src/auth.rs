//! `X-API-KEY` authentication. A request without the header is 401
//! `errors/missing_credentials`; an unknown or wrong key is 401 `errors/invalid_credentials`.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use secrecy::SecretString;

use crate::error::{Error, err};
use crate::state::AppState;
use mailroom_core::ErrorKind;
use mailroom_store::api_keys::{self, KeyIdentity};

pub const API_KEY_HEADER: &str = "x-api-key";

/// The authenticated caller, available to handlers as an extension.
#[derive(Debug, Clone)]
pub struct Caller(pub KeyIdentity);

impl Caller {
    pub fn workspace(&self) -> &str {
        &self.0.workspace_id
    }
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Caller {
    type Rejection = Error;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Error> {
        parts.extensions.get::<Caller>().cloned().ok_or_else(|| {
            err(
                ErrorKind::MissingCredentials,
                "this route needs an X-API-KEY header",
            )
        })
    }
}

pub async fn require_api_key(
    State(state): State<AppState>,
    mut req: Request,
    next: Next,
) -> Response {
    let presented = match req.headers().get(API_KEY_HEADER) {
        None => {
            return err(
                ErrorKind::MissingCredentials,
                "the X-API-KEY header is missing",
            )
            .into_response();
        }
        Some(v) => match v.to_str() {
            Ok(s) if !s.trim().is_empty() => SecretString::from(s.trim().to_owned()),
            Ok(_) => {
                return err(
                    ErrorKind::MissingCredentials,
                    "the X-API-KEY header is empty",
                )
                .into_response();
            }
            Err(_) => {
                return err(ErrorKind::InvalidCredentials, "the API key is not valid")
                    .into_response();
            }
        },
    };
    match api_keys::verify(state.store(), &presented).await {
        Ok(Some(identity)) => {
            tracing::Span::current().record("key_id", identity.key_id.as_str());
            req.extensions_mut().insert(Caller(identity));
            next.run(req).await
        }
        Ok(None) => err(ErrorKind::InvalidCredentials, "the API key is not valid").into_response(),
        Err(e) => Error::from(e).into_response(),
    }
}
