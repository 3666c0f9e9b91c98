//! Cross-cutting layers: error `instance`, request metrics, request ids.

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use tower_http::request_id::{MakeRequestId, RequestId};

use crate::error::{RenderedError, render};
use mailroom_core::ErrorKind;

/// Re-renders API errors with `instance` set to the request path, and turns any other error
/// answer (a rejection from a framework extractor, say) into the JSON error body: clients
/// branch on `type`, so no error may be plain text.
pub async fn error_instance(req: Request, next: Next) -> Response {
    let path = req.uri().path().to_owned();
    let resp = next.run(req).await;
    // Pages (HTML) keep their own error pages; plain-text framework answers become JSON.
    let plain = resp
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|ct| ct.starts_with("text/plain"));
    if resp.status().as_u16() >= 400 && resp.extensions().get::<RenderedError>().is_none() && plain
    {
        let status = resp.status();
        let text = axum::body::to_bytes(resp.into_body(), 4096)
            .await
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        let kind = match status.as_u16() {
            404 | 405 => ErrorKind::ResourceNotFound,
            413 => ErrorKind::ContentTooLarge,
            408 | 504 => ErrorKind::RequestTimeout,
            503 => ErrorKind::ServiceUnavailable,
            500..=599 => ErrorKind::UnexpectedError,
            _ => ErrorKind::InvalidRequest,
        };
        let detail = if text.trim().is_empty() {
            status.to_string()
        } else {
            text.trim().to_owned()
        };
        return render(&mailroom_core::ApiError::new(kind, detail), &path);
    }
    match resp.extensions().get::<RenderedError>() {
        Some(RenderedError(e)) => {
            let mut fresh = render(e, &path);
            for (name, value) in resp.headers() {
                if name != axum::http::header::CONTENT_LENGTH
                    && name != axum::http::header::CONTENT_TYPE
                {
                    fresh.headers_mut().insert(name.clone(), value.clone());
                }
            }
            fresh
        }
        None => resp,
    }
}

/// Counts requests and their latency by route template (never by raw path, so ids do not
/// explode the label set).
pub async fn record_metrics(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = req.method().to_string();
    let started = Instant::now();
    let resp = next.run(req).await;
    let status = resp.status().as_u16().to_string();
    metrics::counter!("mailroom_http_requests_total", "method" => method.clone(), "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("mailroom_http_request_duration_seconds", "method" => method, "route" => route)
        .record(started.elapsed().as_secs_f64());
    resp
}

/// Request ids in our id format.
#[derive(Clone, Default)]
pub struct MakeId;

impl MakeRequestId for MakeId {
    fn make_request_id<B>(&mut self, _req: &axum::http::Request<B>) -> Option<RequestId> {
        HeaderValue::from_str(&mailroom_core::new_id())
            .ok()
            .map(RequestId::new)
    }
}
