//! `POST /batch/gmail/v1` (the discovery document's `batchPath`): several Gmail API calls in
//! one HTTP request, as Google's "Batching requests" guide gives it. The body is
//! `multipart/mixed`; each part is `Content-Type: application/http` holding one request
//! (`GET /gmail/v1/users/me/messages/…?format=raw`, optional headers, optional body), which
//! inherits the outer request's headers (its `Authorization`) unless it sets its own. The
//! answer is `multipart/mixed` too, one `application/http` part per call in the same order,
//! `Content-ID: <response-…>` echoing the call's `Content-ID`. Each call is served by the
//! same handlers as alone: its own quota, scope checks, faults and error bodies. More than
//! 100 calls, or a body that is not a multipart of HTTP requests, is 400.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tower::ServiceExt as _;

use super::Shared;
use super::errors;

/// Google's limit of calls in one batch.
pub const MAX_CALLS: usize = 100;

/// One call of a batch.
struct Call {
    content_id: Option<String>,
    method: Method,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

pub(super) async fn handle(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let Some(boundary) = boundary_of(&headers) else {
        return errors::bad_request("Batch requests must be multipart/mixed with a boundary.");
    };
    let Some(calls) = parse_calls(&body, &boundary) else {
        return errors::bad_request("Failed to parse batch request.");
    };
    if calls.is_empty() || calls.len() > MAX_CALLS {
        return errors::bad_request(&format!(
            "A batch holds 1 to {MAX_CALLS} calls; this one has {}.",
            calls.len()
        ));
    }
    shared.lock().batch_requests += 1;
    let router = super::router(shared.clone());
    let out_boundary = format!("batch_{}", crate::token());
    let mut out = Vec::new();
    for call in calls {
        let mut req = Request::builder().method(call.method).uri(&call.target);
        // The outer request's headers apply to every call, unless the call sets its own.
        for (name, value) in headers.iter() {
            if name == header::CONTENT_TYPE || name == header::CONTENT_LENGTH {
                continue;
            }
            if !call
                .headers
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case(name.as_str()))
            {
                req = req.header(name, value);
            }
        }
        for (n, v) in &call.headers {
            if let (Ok(n), Ok(v)) = (
                HeaderName::try_from(n.as_str()),
                HeaderValue::try_from(v.as_str()),
            ) {
                req = req.header(n, v);
            }
        }
        let Ok(req) = req.body(Body::from(call.body)) else {
            return errors::bad_request("Failed to parse batch request.");
        };
        let resp = router.clone().oneshot(req).await.expect("infallible");
        let status = resp.status();
        let ctype = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("application/json; charset=UTF-8")
            .to_owned();
        let retry_after = resp
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap_or_default();
        out.extend_from_slice(
            format!("--{out_boundary}\r\nContent-Type: application/http\r\n").as_bytes(),
        );
        if let Some(id) = &call.content_id {
            out.extend_from_slice(format!("Content-ID: <response-{id}>\r\n").as_bytes());
        }
        out.extend_from_slice(
            format!(
                "\r\nHTTP/1.1 {} {}\r\nContent-Type: {ctype}\r\n",
                status.as_u16(),
                status.canonical_reason().unwrap_or("")
            )
            .as_bytes(),
        );
        if let Some(r) = retry_after {
            out.extend_from_slice(format!("Retry-After: {r}\r\n").as_bytes());
        }
        out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", bytes.len()).as_bytes());
        out.extend_from_slice(&bytes);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("--{out_boundary}--\r\n").as_bytes());
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            format!("multipart/mixed; boundary={out_boundary}"),
        )],
        out,
    )
        .into_response()
}

/// The `boundary` parameter of a `multipart/mixed` Content-Type.
fn boundary_of(headers: &HeaderMap) -> Option<String> {
    let ct = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    let (kind, params) = ct.split_once(';')?;
    if !kind.trim().eq_ignore_ascii_case("multipart/mixed") {
        return None;
    }
    params.split(';').find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| v.trim().trim_matches('"').to_owned())
    })
}

/// The calls of a batch body; `None` when it is not a multipart of HTTP requests.
fn parse_calls(body: &[u8], boundary: &str) -> Option<Vec<Call>> {
    let text = std::str::from_utf8(body).ok()?;
    let delimiter = format!("--{boundary}");
    let mut calls = vec![];
    let mut parts = text.split(delimiter.as_str());
    parts.next()?; // the preamble
    for part in parts {
        if part.starts_with("--") {
            break;
        }
        let part = part.trim_start_matches("\r\n").trim_start_matches('\n');
        let (part_headers, inner) = split_head(part)?;
        let mut content_id = None;
        let mut is_http = false;
        for line in part_headers.lines() {
            let (n, v) = line.split_once(':')?;
            if n.trim().eq_ignore_ascii_case("content-type") {
                is_http = v.trim().eq_ignore_ascii_case("application/http");
            } else if n.trim().eq_ignore_ascii_case("content-id") {
                content_id = Some(
                    v.trim()
                        .trim_start_matches('<')
                        .trim_end_matches('>')
                        .to_owned(),
                );
            }
        }
        if !is_http {
            return None;
        }
        let (head, body) = match split_head(inner) {
            Some((h, b)) => (h, b),
            None => (inner.trim_end(), ""),
        };
        let mut lines = head.lines();
        let mut request_line = lines.next()?.split_whitespace();
        let method = Method::from_bytes(request_line.next()?.as_bytes()).ok()?;
        let target = request_line.next()?.to_owned();
        if !target.starts_with('/') {
            return None;
        }
        let headers = lines
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                let (n, v) = l.split_once(':')?;
                Some((n.trim().to_owned(), v.trim().to_owned()))
            })
            .collect::<Option<Vec<_>>>()?;
        calls.push(Call {
            content_id,
            method,
            target,
            headers,
            body: body.trim_end_matches("\r\n").as_bytes().to_vec(),
        });
    }
    Some(calls)
}

/// Splits at the first blank line (CRLF or LF): the head, and what follows.
fn split_head(s: &str) -> Option<(&str, &str)> {
    if let Some(i) = s.find("\r\n\r\n") {
        return Some((&s[..i], &s[i + 4..]));
    }
    s.find("\n\n").map(|i| (&s[..i], &s[i + 2..]))
}
