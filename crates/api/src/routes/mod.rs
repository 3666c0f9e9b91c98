//! The router: `/api/v1/*` behind the API key, operational routes outside it.

mod accounts;
mod audit;
mod emails;
mod fields;
mod folders;
mod hosted;
mod ops;
mod push;
mod tracking;
mod webhooks;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::header::HeaderName;
use axum::response::IntoResponse;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::trace::TraceLayer;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::err;
use crate::state::AppState;
use crate::{auth, middleware, openapi};
use mailroom_core::ErrorKind;

pub(crate) const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The whole HTTP application.
pub fn router(state: AppState) -> Router {
    // Install the recorder before the first request is counted.
    crate::telemetry::prometheus();
    let (api, spec) = OpenApiRouter::with_openapi(openapi::base())
        .routes(routes!(accounts::list_accounts, accounts::create_account))
        .routes(routes!(
            accounts::get_account,
            accounts::update_account,
            accounts::reconnect_account,
            accounts::delete_account
        ))
        .routes(routes!(accounts::resync_account))
        .routes(routes!(accounts::restart_account))
        .routes(routes!(hosted::create_link))
        .routes(routes!(emails::list_outbox))
        .routes(routes!(emails::get_outbox))
        .routes(routes!(emails::read::list_emails))
        // GET, PUT and DELETE of one email are one path: utoipa-axum wants them in one
        // `routes!()`.
        .routes(routes!(
            emails::read::get_email,
            emails::update::update_email,
            emails::update::delete_email
        ))
        .routes(routes!(emails::attachments::get_attachment))
        .routes(routes!(folders::list_folders))
        .routes(routes!(folders::get_folder))
        .routes(routes!(webhooks::list_webhooks, webhooks::create_webhook))
        .routes(routes!(
            webhooks::get_webhook,
            webhooks::update_webhook,
            webhooks::delete_webhook
        ))
        .routes(routes!(webhooks::rotate_secret))
        .routes(routes!(webhooks::list_deliveries))
        .routes(routes!(webhooks::replay_delivery))
        .routes(routes!(audit::list_audit))
        .merge(
            OpenApiRouter::new()
                .routes(routes!(emails::send_email))
                .routes(routes!(emails::drafts::create_draft))
                .layer(DefaultBodyLimit::max(state.config.send_body_limit())),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_api_key,
        ))
        .split_for_parts();
    let ops = ops::router(spec);
    let hosted_pages = Router::new()
        .route("/hosted/{token}", axum::routing::get(hosted::show))
        .route(
            "/hosted/{token}/oauth/{provider}",
            axum::routing::post(hosted::start_oauth),
        )
        .route(
            "/hosted/{token}/imap",
            axum::routing::get(hosted::imap_page).post(hosted::imap_submit),
        )
        .route(
            "/oauth/{provider}/callback",
            axum::routing::get(hosted::oauth_callback),
        )
        // Outside the API key: Pub/Sub authenticates by the secret in the URL.
        .route("/push/google/{token}", axum::routing::post(push::google))
        // Outside the API key: Graph's notifications carry their subscription's clientState.
        .route("/push/microsoft", axum::routing::post(push::microsoft))
        .route("/t/o/{token}", axum::routing::get(tracking::open))
        .route("/t/c/{token}", axum::routing::get(tracking::click));
    let body_limit = state.config.body_limit;

    Router::new()
        .merge(api)
        .merge(ops)
        .merge(hosted_pages)
        .fallback(|uri: axum::http::Uri| async move {
            err(ErrorKind::ResourceNotFound, format!("no route {}", uri.path())).into_response()
        })
        .method_not_allowed_fallback(|method: axum::http::Method, uri: axum::http::Uri| async move {
            err(ErrorKind::ResourceNotFound, format!("no route {method} {}", uri.path())).into_response()
        })
        .with_state(state)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::from_fn(middleware::record_metrics))
        .layer(axum::middleware::from_fn(middleware::error_instance))
        .layer(CatchPanicLayer::custom(|_: Box<dyn std::any::Any + Send>| {
            tracing::error!("a request handler panicked");
            err(ErrorKind::UnexpectedError, "an internal error occurred; it has been logged").into_response()
        }))
        .layer(
            TraceLayer::new_for_http().make_span_with(|req: &axum::http::Request<_>| {
                let request_id = req
                    .headers()
                    .get(REQUEST_ID)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                tracing::info_span!("http", method = %req.method(), path = %loggable_path(req.uri().path()), request_id, key_id = tracing::field::Empty)
            })
            // One line per request at the default level.
            .on_response(tower_http::trace::DefaultOnResponse::new().level(tracing::Level::INFO)),
        )
        .layer(SetSensitiveRequestHeadersLayer::new([HeaderName::from_static(auth::API_KEY_HEADER)]))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(SetRequestIdLayer::new(REQUEST_ID, middleware::MakeId))
}

/// The request path as logged: hosted-link tokens are secrets, so their segment is replaced.
pub(crate) fn loggable_path(path: &str) -> std::borrow::Cow<'_, str> {
    // Tracking tokens lead to a message's pixel and links: not for the logs either.
    for prefix in ["/t/o/", "/t/c/"] {
        if path.starts_with(prefix) {
            return std::borrow::Cow::Owned(format!("{prefix}{{token}}"));
        }
    }
    if path.starts_with("/push/google/") {
        return std::borrow::Cow::Borrowed("/push/google/{token}");
    }
    match path.strip_prefix("/hosted/") {
        Some(rest) => {
            let tail = rest.split_once('/').map(|(_, t)| t).unwrap_or("");
            let tail = if tail.is_empty() {
                String::new()
            } else {
                format!("/{tail}")
            };
            std::borrow::Cow::Owned(format!("/hosted/{{token}}{tail}"))
        }
        None => std::borrow::Cow::Borrowed(path),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn hosted_tokens_are_not_logged() {
        assert_eq!(super::loggable_path("/hosted/SeCrEt"), "/hosted/{token}");
        assert_eq!(super::loggable_path("/t/c/SeCrEt"), "/t/c/{token}");
        assert_eq!(super::loggable_path("/t/o/SeCrEt"), "/t/o/{token}");
        assert_eq!(
            super::loggable_path("/hosted/SeCrEt/oauth/google"),
            "/hosted/{token}/oauth/google"
        );
        assert_eq!(super::loggable_path("/api/v1/accounts"), "/api/v1/accounts");
    }
}
