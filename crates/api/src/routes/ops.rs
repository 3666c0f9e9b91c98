//! Operational routes: liveness, readiness, metrics, the OpenAPI document and its page.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use crate::error::err;
use crate::state::AppState;
use crate::{docs_page, telemetry};
use mailroom_core::ErrorKind;

pub fn router(spec: utoipa::openapi::OpenApi) -> Router<AppState> {
    let json = Arc::new(
        spec.to_pretty_json()
            .expect("the OpenAPI document serializes"),
    );
    let page = Arc::new(docs_page::render(&spec));
    Router::new()
        .route(
            "/healthz",
            get(|| async { axum::Json(json!({"status": "ok"})) }),
        )
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route(
            "/openapi.json",
            get(move || {
                let json = json.clone();
                async move {
                    (
                        [(CONTENT_TYPE, "application/json")],
                        json.as_str().to_owned(),
                    )
                }
            }),
        )
        .route(
            "/docs",
            get(move || {
                let page = page.clone();
                async move { Html(page.as_str().to_owned()) }
            }),
        )
}

/// Ready when the database answers.
async fn readyz(State(state): State<AppState>) -> Response {
    match state.store().ping().await {
        Ok(()) => axum::Json(json!({"status": "ready"})).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            err(
                ErrorKind::ServiceUnavailable,
                "the database is not reachable",
            )
            .into_response()
        }
    }
}

async fn metrics() -> Response {
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4")],
        telemetry::prometheus().render(),
    )
        .into_response()
}
