//! Google's error bodies: the JSON error format of the Gmail API (`reference/providers.md`
//! A.7) and the OAuth endpoints' `{"error","error_description"}`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// `{"error":{"code","message","errors":[{message,domain,reason,…}],"status"}}`.
pub(super) fn api_error(
    code: StatusCode,
    reason: &str,
    domain: &str,
    message: &str,
    status: Option<&str>,
) -> Response {
    api_error_with(code, reason, domain, message, status, None, None)
}

fn api_error_with(
    code: StatusCode,
    reason: &str,
    domain: &str,
    message: &str,
    status: Option<&str>,
    location: Option<(&str, &str)>,
    details: Option<Value>,
) -> Response {
    let mut item = json!({"message": message, "domain": domain, "reason": reason});
    if let Some((location, location_type)) = location {
        item["location"] = json!(location);
        item["locationType"] = json!(location_type);
    }
    let mut error = json!({"code": code.as_u16(), "message": message, "errors": [item]});
    if let Some(s) = status {
        error["status"] = json!(s);
    }
    if let Some(d) = details {
        error["details"] = d;
    }
    (code, axum::Json(json!({ "error": error }))).into_response()
}

/// 401 for a refused or expired access token.
pub(super) fn auth_error() -> Response {
    let mut r = api_error_with(
        StatusCode::UNAUTHORIZED,
        "authError",
        "global",
        "Request had invalid authentication credentials. Expected OAuth 2 access token, login \
         cookie or other valid authentication credential. See \
         https://developers.google.com/identity/sign-in/web/devconsole-project.",
        Some("UNAUTHENTICATED"),
        Some(("Authorization", "header")),
        None,
    );
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(
            "Bearer realm=\"https://accounts.google.com/\", error=\"invalid_token\"",
        ),
    );
    r
}

/// 401 without any credential.
pub(super) fn login_required() -> Response {
    let mut r = api_error_with(
        StatusCode::UNAUTHORIZED,
        "required",
        "global",
        "Request is missing required authentication credential. Expected OAuth 2 access token, \
         login cookie or other valid authentication credential. See \
         https://developers.google.com/identity/sign-in/web/devconsole-project.",
        Some("UNAUTHENTICATED"),
        Some(("Authorization", "header")),
        None,
    );
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"https://accounts.google.com/\""),
    );
    r
}

/// 403 when the token lacks every scope the method accepts.
pub(super) fn insufficient_permissions(method: &str) -> Response {
    api_error_with(
        StatusCode::FORBIDDEN,
        "insufficientPermissions",
        "global",
        "Request had insufficient authentication scopes.",
        Some("PERMISSION_DENIED"),
        None,
        Some(json!([{
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": "ACCESS_TOKEN_SCOPE_INSUFFICIENT",
            "domain": "googleapis.com",
            "metadata": {"service": "gmail.googleapis.com", "method": method}
        }])),
    )
}

pub(super) fn forbidden(message: &str) -> Response {
    api_error(
        StatusCode::FORBIDDEN,
        "forbidden",
        "global",
        message,
        Some("PERMISSION_DENIED"),
    )
}

pub(super) fn not_found() -> Response {
    api_error(
        StatusCode::NOT_FOUND,
        "notFound",
        "global",
        "Requested entity was not found.",
        Some("NOT_FOUND"),
    )
}

pub(super) fn invalid_argument(message: &str) -> Response {
    api_error(
        StatusCode::BAD_REQUEST,
        "invalidArgument",
        "global",
        message,
        Some("INVALID_ARGUMENT"),
    )
}

pub(super) fn bad_request(message: &str) -> Response {
    api_error(
        StatusCode::BAD_REQUEST,
        "badRequest",
        "global",
        message,
        Some("INVALID_ARGUMENT"),
    )
}

/// 413 for media over `mediaUpload.maxSize` (Google's upload front end answers without a
/// `status`, reason `uploadTooLarge`).
pub(super) fn upload_too_large(max: usize) -> Response {
    api_error(
        StatusCode::PAYLOAD_TOO_LARGE,
        "uploadTooLarge",
        "global",
        &format!("Media is too large. Limit: {max}"),
        None,
    )
}

/// 429 `rateLimitExceeded` (usageLimits) with `Retry-After`.
pub(super) fn throttled_429(retry_after_secs: u64) -> Response {
    let message = "Too many concurrent requests for user.";
    let mut r = api_error_with(
        StatusCode::TOO_MANY_REQUESTS,
        "rateLimitExceeded",
        "usageLimits",
        message,
        Some("RESOURCE_EXHAUSTED"),
        None,
        Some(json!([{
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": "RATE_LIMIT_EXCEEDED",
            "domain": "googleapis.com",
            "metadata": {"service": "gmail.googleapis.com",
                         "quota_limit": "ConcurrentRequestsPerUser"}
        }])),
    );
    r.headers_mut().insert(
        header::RETRY_AFTER,
        HeaderValue::from_str(&retry_after_secs.to_string()).expect("digits"),
    );
    r
}

/// 429 for a mailbox past its sending quota (`reference/providers.md` A.7: "User-rate limit
/// exceeded" (Mail sending) with the time to retry, `RESOURCE_EXHAUSTED`).
pub(super) fn mail_sending_quota(reopens_ms: i64) -> Response {
    let message = format!(
        "User-rate limit exceeded.  Retry after {} (Mail sending)",
        mailroom_core::time_fmt::format_ms(reopens_ms)
    );
    api_error(
        StatusCode::TOO_MANY_REQUESTS,
        "rateLimitExceeded",
        "usageLimits",
        &message,
        Some("RESOURCE_EXHAUSTED"),
    )
}

/// 403 `rateLimitExceeded` (Google answers quota errors with 403 or 429).
pub(super) fn rate_limit_403() -> Response {
    api_error(
        StatusCode::FORBIDDEN,
        "rateLimitExceeded",
        "usageLimits",
        "Rate Limit Exceeded",
        Some("RESOURCE_EXHAUSTED"),
    )
}

pub(super) fn backend_error() -> Response {
    api_error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "backendError",
        "global",
        "Backend Error",
        Some("INTERNAL"),
    )
}

/// An OAuth endpoint error: `{"error": …, "error_description": …}`.
pub(super) fn oauth_error(code: StatusCode, error: &str, description: &str) -> Response {
    let mut r = (
        code,
        axum::Json(json!({"error": error, "error_description": description})),
    )
        .into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// The page Google shows when it cannot trust the request enough to redirect back.
pub(super) fn error_page(code: StatusCode, error: &str, detail: &str) -> Response {
    let body = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>Error {status}: {error}</title></head><body><main>\
         <h1>Access blocked: authorization error</h1>\
         <p>Error {status}: {error}</p><p>{detail}</p></main></body></html>",
        status = code.as_u16(),
        error = html_escape(error),
        detail = html_escape(detail),
    );
    (
        code,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        body,
    )
        .into_response()
}

pub(super) fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}
