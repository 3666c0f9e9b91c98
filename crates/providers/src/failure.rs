//! The one failure type of every provider call, whatever the provider (lettre-style: a kind,
//! the provider's own code and words). The outbox, the sync loops and the API map it to what
//! they do in one place each; nothing downstream looks at SMTP reply codes or HTTP statuses.

use std::fmt;
use std::time::Duration;

use mailroom_core::ErrorKind;

/// Which protocol or API a failure came from (for messages and for telling the user which of
/// their settings is wrong: IMAP or SMTP).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Imap,
    Smtp,
    Gmail,
    Graph,
    /// A token endpoint (refresh, code exchange).
    OAuth,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Imap => "IMAP",
            Protocol::Smtp => "SMTP",
            Protocol::Gmail => "Gmail API",
            Protocol::Graph => "Microsoft Graph",
            Protocol::OAuth => "OAuth",
        })
    }
}

/// What the caller should do about a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// Network, 5xx, 4xx SMTP replies, timeouts: try again later (after `retry_after` when
    /// the provider named a time).
    Transient { retry_after: Option<Duration> },
    /// The credentials or the grant are refused: the account needs a reconnect.
    Auth,
    /// The provider throttles us (429, `rateLimitExceeded`, SMTP "too many …"): try again,
    /// not before `retry_after`.
    Quota { retry_after: Option<Duration> },
    /// Refused for good; the closest slug of the catalogue (`RecipientRejected`,
    /// `SendAsDenied`, `CantSendMessage`, `InvalidAccount`, …).
    Rejected(ErrorKind),
    /// Over the provider's size limit.
    TooLarge,
    /// A sync cursor (Gmail `historyId`, Graph `deltaLink`, IMAP `UIDVALIDITY`) is no longer
    /// valid: resynchronise.
    CursorExpired,
}

/// A failed provider call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{detail}")]
pub struct MailError {
    pub kind: FailureKind,
    pub protocol: Protocol,
    /// The provider's code: an SMTP reply with its enhanced code (`550 5.1.1`), a Gmail reason
    /// (`rateLimitExceeded`), a Graph code (`ErrorInvalidRecipients`), an OAuth error.
    pub code: Option<String>,
    /// The HTTP status, when an HTTP API answered.
    pub status: Option<u16>,
    /// The provider's own words (or what went wrong when there was no answer); fit for the
    /// API's `detail`.
    pub detail: String,
}

impl MailError {
    pub fn new(protocol: Protocol, kind: FailureKind, detail: impl Into<String>) -> Self {
        Self {
            kind,
            protocol,
            code: None,
            status: None,
            detail: detail.into(),
        }
    }

    pub fn transient(protocol: Protocol, detail: impl Into<String>) -> Self {
        Self::new(
            protocol,
            FailureKind::Transient { retry_after: None },
            detail,
        )
    }

    pub fn auth(protocol: Protocol, detail: impl Into<String>) -> Self {
        Self::new(protocol, FailureKind::Auth, detail)
    }

    pub fn rejected(protocol: Protocol, slug: ErrorKind, detail: impl Into<String>) -> Self {
        Self::new(protocol, FailureKind::Rejected(slug), detail)
    }

    pub fn with_code(mut self, code: impl Into<String>) -> Self {
        self.code = Some(code.into());
        self
    }

    pub fn with_status(mut self, status: u16) -> Self {
        self.status = Some(status);
        self
    }

    /// Worth trying again later without any change by the user (quota included).
    pub fn is_transient(&self) -> bool {
        matches!(
            self.kind,
            FailureKind::Transient { .. } | FailureKind::Quota { .. }
        )
    }

    /// The credentials are refused; the account needs a reconnect.
    pub fn is_auth(&self) -> bool {
        self.kind == FailureKind::Auth
    }

    /// The provider throttles us.
    pub fn is_quota(&self) -> bool {
        matches!(self.kind, FailureKind::Quota { .. })
    }

    /// The sync cursor must be rebuilt.
    pub fn is_cursor_expired(&self) -> bool {
        self.kind == FailureKind::CursorExpired
    }

    /// How long the provider asked us to wait, when it said.
    pub fn retry_after(&self) -> Option<Duration> {
        match self.kind {
            FailureKind::Transient { retry_after } | FailureKind::Quota { retry_after } => {
                retry_after
            }
            _ => None,
        }
    }

    pub fn detail(&self) -> &str {
        &self.detail
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes() {
        let t = MailError::transient(Protocol::Imap, "refused");
        assert!(t.is_transient() && !t.is_auth() && !t.is_quota());
        let a = MailError::auth(Protocol::Smtp, "535");
        assert!(a.is_auth() && !a.is_transient());
        let q = MailError::new(
            Protocol::Gmail,
            FailureKind::Quota {
                retry_after: Some(Duration::from_secs(7)),
            },
            "slow down",
        );
        assert!(q.is_quota() && q.is_transient());
        assert_eq!(q.retry_after(), Some(Duration::from_secs(7)));
        let r = MailError::rejected(Protocol::Graph, ErrorKind::RecipientRejected, "no")
            .with_code("ErrorInvalidRecipients")
            .with_status(400);
        assert!(!r.is_transient() && !r.is_auth() && !r.is_quota());
        assert_eq!(r.code.as_deref(), Some("ErrorInvalidRecipients"));
        let c = MailError::new(Protocol::Gmail, FailureKind::CursorExpired, "404");
        assert!(c.is_cursor_expired() && !c.is_transient());
        assert_eq!(r.to_string(), "no");
    }
}

// ---- the protocol modules' own classifications, folded into the one type -------------------

impl From<crate::error::ProviderError> for MailError {
    fn from(e: crate::error::ProviderError) -> Self {
        use crate::error::ProviderError as P;
        let protocol = match e.protocol() {
            crate::error::Protocol::Imap => Protocol::Imap,
            crate::error::Protocol::Smtp => Protocol::Smtp,
        };
        let kind = match &e {
            P::Connect { .. } => FailureKind::Transient { retry_after: None },
            P::Quota { .. } => FailureKind::Quota { retry_after: None },
            P::Auth { .. } => FailureKind::Auth,
            // The egress guard's verdict does not change by retrying.
            P::Forbidden { .. } => FailureKind::Rejected(ErrorKind::InvalidAccount),
            P::Protocol { .. } => FailureKind::Rejected(ErrorKind::CantSendMessage),
        };
        MailError::new(protocol, kind, e.to_string())
    }
}

impl From<crate::imap_smtp::send::SendError> for MailError {
    fn from(e: crate::imap_smtp::send::SendError) -> Self {
        use crate::imap_smtp::send::SendErrorKind as K;
        let kind = match e.kind() {
            K::Transient if e.is_quota() => FailureKind::Quota { retry_after: None },
            K::Transient => FailureKind::Transient { retry_after: None },
            K::Auth => FailureKind::Auth,
            K::RecipientRejected => FailureKind::Rejected(ErrorKind::RecipientRejected),
            K::SenderRejected => FailureKind::Rejected(ErrorKind::SendAsDenied),
            K::TooLarge => FailureKind::TooLarge,
            K::Rejected => FailureKind::Rejected(ErrorKind::CantSendMessage),
        };
        MailError {
            kind,
            protocol: Protocol::Smtp,
            code: e.code().map(str::to_owned),
            status: None,
            detail: e.detail().to_owned(),
        }
    }
}

impl MailError {
    /// An HTTP API's failure (Gmail or Graph).
    pub fn from_http(protocol: Protocol, e: crate::http_api::HttpApiError) -> Self {
        use crate::http_api::HttpErrorKind as K;
        let kind = match e.kind {
            K::Transient => FailureKind::Transient {
                retry_after: e.retry_after,
            },
            K::Throttled => FailureKind::Quota {
                retry_after: e.retry_after,
            },
            K::Auth => FailureKind::Auth,
            K::RecipientRejected => FailureKind::Rejected(ErrorKind::RecipientRejected),
            K::TooLarge => FailureKind::TooLarge,
            K::Rejected => FailureKind::Rejected(ErrorKind::CantSendMessage),
        };
        MailError {
            kind,
            protocol,
            code: e.code,
            status: e.status,
            detail: e.detail,
        }
    }
}
