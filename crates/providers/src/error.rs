use std::fmt;

/// Which protocol an error came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Imap,
    Smtp,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Imap => "IMAP",
            Protocol::Smtp => "SMTP",
        })
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum ProviderError {
    /// The server could not be reached or spoken to: DNS, TCP, TLS, greeting, timeout.
    #[error("{protocol} server unreachable: {detail}")]
    Connect { protocol: Protocol, detail: String },
    /// The egress guard refused the destination before any packet was sent.
    #[error("{protocol} host refused: {detail}")]
    Forbidden { protocol: Protocol, detail: String },
    /// The server refused the credentials.
    #[error("{protocol} authentication failed: {detail}")]
    Auth { protocol: Protocol, detail: String },
    /// The server throttles us (too many connections, rate limits).
    #[error("{protocol} server is throttling: {detail}")]
    Quota { protocol: Protocol, detail: String },
    /// The server answered something we did not expect.
    #[error("{protocol} protocol error: {detail}")]
    Protocol { protocol: Protocol, detail: String },
}

impl ProviderError {
    pub fn protocol(&self) -> Protocol {
        match self {
            ProviderError::Connect { protocol, .. }
            | ProviderError::Forbidden { protocol, .. }
            | ProviderError::Auth { protocol, .. }
            | ProviderError::Quota { protocol, .. }
            | ProviderError::Protocol { protocol, .. } => *protocol,
        }
    }

    /// Worth trying again later without any change by the user.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            ProviderError::Connect { .. } | ProviderError::Quota { .. }
        )
    }

    /// The credentials are refused; the account needs a reconnect.
    pub fn is_auth(&self) -> bool {
        matches!(self, ProviderError::Auth { .. })
    }

    /// The provider throttles us.
    pub fn is_quota(&self) -> bool {
        matches!(self, ProviderError::Quota { .. })
    }

    pub fn detail(&self) -> &str {
        match self {
            ProviderError::Connect { detail, .. }
            | ProviderError::Forbidden { detail, .. }
            | ProviderError::Auth { detail, .. }
            | ProviderError::Quota { detail, .. }
            | ProviderError::Protocol { detail, .. } => detail,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes() {
        let c = ProviderError::Connect {
            protocol: Protocol::Imap,
            detail: "refused".into(),
        };
        assert!(c.is_transient() && !c.is_auth() && !c.is_quota());
        let a = ProviderError::Auth {
            protocol: Protocol::Smtp,
            detail: "535".into(),
        };
        assert!(a.is_auth() && !a.is_transient());
        let q = ProviderError::Quota {
            protocol: Protocol::Imap,
            detail: "too many".into(),
        };
        assert!(q.is_quota() && q.is_transient());
        let f = ProviderError::Forbidden {
            protocol: Protocol::Imap,
            detail: "loopback".into(),
        };
        assert!(!f.is_transient() && !f.is_auth());
    }
}
