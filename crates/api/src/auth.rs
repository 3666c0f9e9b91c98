//! `X-API-KEY` authentication. A request without the header is 401
//! `errors/missing_credentials`; an unknown or wrong key is 401 `errors/invalid_credentials`.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use secrecy::SecretString;

use crate::error::{Error, err};
use crate::state::AppState;
use axum::http::Method;
use mailroom_core::ErrorKind;
use mailroom_store::api_keys::{self, Refused, Scopes};
use mailroom_store::audit::{Actor, Origin};
use mailroom_store::tenant::Tenant;

pub const API_KEY_HEADER: &str = "x-api-key";

/// The authenticated caller, available to handlers as an extension: what its key may see
/// (the [`Tenant`] every account-scoped use case takes) and where the request comes from (the
/// [`Origin`] the audit log records).
#[derive(Debug, Clone)]
pub struct Caller {
    tenant: Tenant,
    origin: Origin,
}

impl Caller {
    /// The workspace, or only the accounts the key is bound to.
    pub fn tenant(&self) -> &Tenant {
        &self.tenant
    }

    /// The key, the request id and the client's address.
    pub fn origin(&self) -> &Origin {
        &self.origin
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
    let now = state.engine.clock.now_ms();
    match api_keys::verify(state.store(), &presented, now).await {
        Ok(Ok(identity)) => {
            tracing::Span::current().record("key_id", identity.key_id.as_str());
            let scope = needed_scope(req.method(), req.uri().path());
            if !scope.granted(identity.scopes) {
                return err(
                    ErrorKind::InsufficientPermissions,
                    format!(
                        "this API key does not have the `{}` scope this request needs",
                        scope.name()
                    ),
                )
                .into_response();
            }
            if let Err(wait) = state.key_limits.check(&identity) {
                let secs = crate::rate_limit::retry_after_secs(wait);
                let mut resp = err(
                    ErrorKind::TooManyRequests,
                    format!("this API key made too many requests; retry in {secs}s"),
                )
                .into_response();
                resp.headers_mut().insert(
                    axum::http::header::RETRY_AFTER,
                    axum::http::HeaderValue::from(secs),
                );
                return resp;
            }
            let origin = crate::origin::of_request(
                Actor::Key(identity.key_id.clone()),
                req.headers(),
                req.extensions(),
            );
            let caller = Caller {
                tenant: identity.tenant(),
                origin,
            };
            req.extensions_mut().insert(caller);
            next.run(req).await
        }
        Ok(Err(refused)) => {
            let detail = match refused {
                Refused::Invalid => "the API key is not valid",
                Refused::Revoked => "the API key was revoked",
                Refused::Expired => "the API key has expired",
            };
            err(ErrorKind::InvalidCredentials, detail).into_response()
        }
        Err(e) => Error::from(e).into_response(),
    }
}

/// The scope a request needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    Read,
    Send,
    Manage,
}

impl Scope {
    fn granted(self, s: Scopes) -> bool {
        match self {
            Scope::Read => s.read,
            Scope::Send => s.send,
            Scope::Manage => s.manage,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Send => "send",
            Scope::Manage => "manage",
        }
    }
}

/// `read`: reading (every `GET` but the webhooks, whose list carries their settings, and the
/// audit log); `send`:
/// sending and changing mail; `manage`: accounts, hosted links, webhooks and anything else
/// that is not a read.
fn needed_scope(method: &Method, path: &str) -> Scope {
    let under = |prefix: &str| {
        path.strip_prefix(prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    };
    // The webhooks' list carries their settings; the audit log says who did what.
    if under("/api/v1/webhooks") || under("/api/v1/audit") {
        return Scope::Manage;
    }
    if method == Method::GET || method == Method::HEAD {
        return Scope::Read;
    }
    if under("/api/v1/emails") || under("/api/v1/drafts") {
        Scope::Send
    } else {
        Scope::Manage
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_route_needs_the_scope_of_what_it_does() {
        let cases = [
            (Method::GET, "/api/v1/emails", Scope::Read),
            (Method::GET, "/api/v1/accounts/x/sync", Scope::Read),
            (Method::POST, "/api/v1/emails", Scope::Send),
            (Method::PUT, "/api/v1/emails/x", Scope::Send),
            (Method::DELETE, "/api/v1/emails/x", Scope::Send),
            (Method::POST, "/api/v1/drafts", Scope::Send),
            (Method::POST, "/api/v1/accounts", Scope::Manage),
            (Method::DELETE, "/api/v1/accounts/x", Scope::Manage),
            (Method::POST, "/api/v1/hosted/accounts/link", Scope::Manage),
            (Method::GET, "/api/v1/webhooks", Scope::Manage),
            (Method::GET, "/api/v1/audit", Scope::Manage),
            (Method::POST, "/api/v1/webhooks", Scope::Manage),
            (Method::POST, "/api/v1/emailsx", Scope::Manage),
        ];
        for (m, p, want) in cases {
            assert_eq!(needed_scope(&m, p), want, "{m} {p}");
        }
    }
}
