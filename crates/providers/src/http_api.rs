//! The error every HTTP mail API client (Gmail, Microsoft Graph) returns, classified the same
//! way as SMTP failures so the outbox treats every provider alike.

use std::time::Duration;

use mailroom_mime::MimeError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpErrorKind {
    /// Network failure, 5xx, timeouts: retry with backoff.
    Transient,
    /// Throttled (429, 403 `rateLimitExceeded`/`userRateLimitExceeded`, `ApplicationThrottled`):
    /// retry, honouring `retry_after`.
    Throttled,
    /// The access token was refused (401): refresh it, then (if that fails) reconnect.
    Auth,
    /// The provider refuses a recipient (Gmail `invalidArgument` on an address, Graph
    /// `ErrorInvalidRecipients`).
    RecipientRejected,
    /// The message is over the provider's size limit.
    TooLarge,
    /// Anything else refused for good (4xx).
    Rejected,
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("{detail}")]
pub struct HttpApiError {
    pub kind: HttpErrorKind,
    /// The HTTP status, when there was an answer.
    pub status: Option<u16>,
    /// The provider's error code or reason (`rateLimitExceeded`, `ErrorInvalidRecipients`, …).
    pub code: Option<String>,
    /// A sentence for the API's `detail`: the provider's own message.
    pub detail: String,
    /// The provider's `Retry-After`, when it sent one.
    pub retry_after: Option<Duration>,
}

impl HttpApiError {
    pub fn transient(detail: impl Into<String>) -> Self {
        Self {
            kind: HttpErrorKind::Transient,
            status: None,
            code: None,
            detail: detail.into(),
            retry_after: None,
        }
    }

    pub fn is_transient(&self) -> bool {
        matches!(
            self.kind,
            HttpErrorKind::Transient | HttpErrorKind::Throttled
        )
    }

    pub fn is_auth(&self) -> bool {
        self.kind == HttpErrorKind::Auth
    }

    pub fn is_quota(&self) -> bool {
        self.kind == HttpErrorKind::Throttled
    }
}

/// A message mailroom_mime refused to prepare for an HTTP API: an invalid address (a Bcc) is
/// `RecipientRejected`, anything else (a Bcc header already there, unparseable MIME) `Rejected`.
/// Nothing was sent.
pub(crate) fn refused(e: MimeError) -> HttpApiError {
    let kind = match e {
        MimeError::InvalidAddress { .. } => HttpErrorKind::RecipientRejected,
        _ => HttpErrorKind::Rejected,
    };
    HttpApiError {
        kind,
        status: None,
        code: None,
        detail: e.to_string(),
        retry_after: None,
    }
}

/// Parses a `Retry-After` header given in seconds (the form both providers use).
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}
