//! The tracking endpoints a sent message points at (no API key: the recipient's mail client
//! and browser call them). `GET /t/o/{token}`: the 1×1 image, always served (an unknown or
//! removed token records nothing, and the message never shows a broken image). `GET
//! /t/c/{token}`: a 302 to the URL the message had there, and only to it; an unknown token is
//! a 404 page, never a redirect.

use axum::extract::{Path, State};
use axum::http::{Extensions, HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};

use crate::state::AppState;
use mailroom_engine::tracking::{self, Hit};

/// A transparent 1×1 GIF.
const PIXEL: &[u8] = &[
    0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x01, 0x00, 0x01, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00,
    0xff, 0xff, 0xff, 0x21, 0xf9, 0x04, 0x01, 0x00, 0x00, 0x00, 0x00, 0x2c, 0x00, 0x00, 0x00, 0x00,
    0x01, 0x00, 0x01, 0x00, 0x00, 0x02, 0x02, 0x44, 0x01, 0x00, 0x3b,
];

const NO_STORE: &str = "no-store, no-cache, must-revalidate, private";

fn hit(method: &Method, headers: &HeaderMap, ext: &Extensions) -> Hit {
    Hit {
        ip: crate::origin::client_ip(headers, ext),
        user_agent: headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.chars().take(512).collect()),
        head: method == Method::HEAD,
    }
}

pub async fn open(
    State(state): State<AppState>,
    Path(token): Path<String>,
    method: Method,
    headers: HeaderMap,
    ext: Extensions,
) -> Response {
    tracking::opened(&state.engine, &token, &hit(&method, &headers, &ext)).await;
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("image/gif")),
            (header::CACHE_CONTROL, HeaderValue::from_static(NO_STORE)),
        ],
        PIXEL,
    )
        .into_response()
}

pub async fn click(
    State(state): State<AppState>,
    Path(token): Path<String>,
    method: Method,
    headers: HeaderMap,
    ext: Extensions,
) -> Response {
    let target = tracking::clicked(&state.engine, &token, &hit(&method, &headers, &ext)).await;
    match target {
        Ok(Some(url)) => match HeaderValue::from_str(&url) {
            Ok(location) => (
                StatusCode::FOUND,
                [
                    (header::LOCATION, location),
                    (header::CACHE_CONTROL, HeaderValue::from_static(NO_STORE)),
                ],
            )
                .into_response(),
            Err(_) => gone(),
        },
        Ok(None) => gone(),
        Err(e) => crate::error::Error(e).into_response(),
    }
}

fn gone() -> Response {
    (
        StatusCode::NOT_FOUND,
        [(header::CACHE_CONTROL, HeaderValue::from_static(NO_STORE))],
        Html(
            "<!doctype html><meta charset=utf-8><title>Link not available</title>\
             <p>This link is not available.</p>",
        ),
    )
        .into_response()
}
