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
    /// The mailbox has used up its provider's sending quota (Gmail "User-rate limit exceeded
    /// (Mail sending)" or `dailyLimitExceeded`, SMTP `5.4.5` or a "quota" reply, Graph
    /// `ErrorExceededMessageLimit` or `MailboxConcurrency`): no send of this account can go
    /// before `reopens_in` (the provider's stated time, else the seam's documented default).
    /// Not the message's fault: the outbox pauses the account's sends, it spends no attempt.
    SendQuota { reopens_in: Duration },
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
            FailureKind::Transient { .. }
                | FailureKind::Quota { .. }
                | FailureKind::SendQuota { .. }
        )
    }

    /// The credentials are refused; the account needs a reconnect.
    pub fn is_auth(&self) -> bool {
        self.kind == FailureKind::Auth
    }

    /// The provider throttles us (its sending quota included).
    pub fn is_quota(&self) -> bool {
        matches!(
            self.kind,
            FailureKind::Quota { .. } | FailureKind::SendQuota { .. }
        )
    }

    /// The mailbox's sending quota is used up: when it reopens.
    pub fn send_quota_reopens_in(&self) -> Option<Duration> {
        match self.kind {
            FailureKind::SendQuota { reopens_in } => Some(reopens_in),
            _ => None,
        }
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
            FailureKind::SendQuota { reopens_in } => Some(reopens_in),
            _ => None,
        }
    }

    pub fn detail(&self) -> &str {
        &self.detail
    }
}

// ---- failures of the IMAP and SMTP modules, worded as they always were ---------------------

impl MailError {
    /// The server could not be reached or spoken to: DNS, TCP, TLS, greeting, timeout.
    pub(crate) fn unreachable(protocol: Protocol, detail: impl fmt::Display) -> Self {
        Self::transient(protocol, format!("{protocol} server unreachable: {detail}"))
    }

    /// The egress guard refused the destination before any packet was sent; retrying does
    /// not change its verdict.
    pub(crate) fn host_refused(protocol: Protocol, detail: impl fmt::Display) -> Self {
        Self::rejected(
            protocol,
            ErrorKind::InvalidAccount,
            format!("{protocol} host refused: {detail}"),
        )
    }

    /// The server refused the credentials.
    pub(crate) fn auth_failed(protocol: Protocol, detail: impl fmt::Display) -> Self {
        Self::auth(
            protocol,
            format!("{protocol} authentication failed: {detail}"),
        )
    }

    /// The server throttles us (too many connections, rate limits).
    pub(crate) fn throttling(protocol: Protocol, detail: impl fmt::Display) -> Self {
        Self::new(
            protocol,
            FailureKind::Quota { retry_after: None },
            format!("{protocol} server is throttling: {detail}"),
        )
    }

    /// The server answered something we did not expect.
    pub(crate) fn protocol_error(protocol: Protocol, detail: impl fmt::Display) -> Self {
        Self::rejected(
            protocol,
            ErrorKind::CantSendMessage,
            format!("{protocol} protocol error: {detail}"),
        )
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

    #[test]
    fn imap_and_smtp_failures_keep_their_words() {
        let c = MailError::unreachable(Protocol::Imap, "refused");
        assert!(c.is_transient() && !c.is_auth() && !c.is_quota());
        assert_eq!(c.detail(), "IMAP server unreachable: refused");
        let a = MailError::auth_failed(Protocol::Smtp, "535");
        assert!(a.is_auth() && !a.is_transient());
        assert_eq!(a.detail(), "SMTP authentication failed: 535");
        let q = MailError::throttling(Protocol::Imap, "too many");
        assert!(q.is_quota() && q.is_transient());
        assert_eq!(q.retry_after(), None);
        let f = MailError::host_refused(Protocol::Imap, "loopback");
        assert!(!f.is_transient() && !f.is_auth());
        assert_eq!(f.kind, FailureKind::Rejected(ErrorKind::InvalidAccount));
        assert_eq!(f.detail(), "IMAP host refused: loopback");
        let p = MailError::protocol_error(Protocol::Smtp, "odd");
        assert_eq!(p.kind, FailureKind::Rejected(ErrorKind::CantSendMessage));
        assert_eq!(p.detail(), "SMTP protocol error: odd");
    }
}
