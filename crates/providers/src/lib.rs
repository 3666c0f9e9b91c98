//! Mail providers. Today: generic IMAP/SMTP (async-imap and lettre over rustls/aws-lc-rs).
//! Gmail and Microsoft Graph join behind the same error classes later.
//!
//! Every provider error answers `is_transient()` (worth retrying), `is_auth()` (the
//! account's credentials are refused) and `is_quota()` (the provider throttles us).

pub mod egress;
pub mod error;
pub mod gmail;
pub mod graph;
pub mod http_api;
pub mod imap_smtp;
pub mod oauth;
pub mod tls;

pub use error::{Protocol, ProviderError};

use std::time::Duration;

/// How mailroom may reach mail servers; set by the operator.
#[derive(Debug, Clone)]
pub struct NetPolicy {
    /// Allow hosts that resolve to loopback, private or link-local addresses
    /// (`MAILROOM_MAIL_ALLOW_PRIVATE`).
    pub allow_private: bool,
    /// Accept any server certificate (`MAILROOM_TLS_INSECURE_SKIP_VERIFY`; tests only).
    pub tls_insecure_skip_verify: bool,
    /// Deadline for connecting, TLS and authenticating, per server.
    pub connect_timeout: Duration,
}

impl Default for NetPolicy {
    fn default() -> Self {
        Self {
            allow_private: false,
            tls_insecure_skip_verify: false,
            connect_timeout: Duration::from_secs(15),
        }
    }
}
