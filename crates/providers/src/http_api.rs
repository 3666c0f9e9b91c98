//! What the HTTP mail API clients (Gmail, Microsoft Graph) share: reading `Retry-After`, and
//! refusing a message mailroom_mime would not prepare. Their failures are [`MailError`]s,
//! classified the same way as SMTP failures so the outbox treats every provider alike.

use std::time::Duration;

use mailroom_core::ErrorKind;
use mailroom_mime::MimeError;

use crate::failure::{MailError, Protocol};

/// A message mailroom_mime refused to prepare for an HTTP API: an invalid address (a Bcc) is
/// `RecipientRejected`, anything else (a Bcc header already there, unparseable MIME)
/// `CantSendMessage`. Nothing was sent.
pub(crate) fn refused(protocol: Protocol, e: MimeError) -> MailError {
    let slug = match e {
        MimeError::InvalidAddress { .. } => ErrorKind::RecipientRejected,
        _ => ErrorKind::CantSendMessage,
    };
    MailError::rejected(protocol, slug, e.to_string())
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
