//! Mail providers behind one seam: [`Mailbox`] (IMAP/SMTP with async-imap and lettre over
//! rustls/aws-lc-rs, the Gmail API, Microsoft Graph), opened by [`Providers::open`] from an
//! account's typed settings and secrets, plus OAuth (authorize, code exchange, refresh) and the
//! operator's apps. Nothing outside this crate asks which provider an account is.
//!
//! Every call fails with one type, [`MailError`]: `is_transient()` (worth retrying),
//! `is_auth()` (the credentials are refused), `is_quota()` (the provider throttles us),
//! `is_cursor_expired()` (a sync cursor must be rebuilt).

pub mod apps;
pub mod egress;
pub mod failure;
pub mod gmail;
pub mod graph;
pub mod http_api;
pub mod imap_smtp;
pub mod mailbox;
pub mod oauth;
pub mod provider;
pub mod send_quota;
pub mod tls;

pub use failure::{FailureKind, MailError, Protocol};
pub use mailbox::{
    Appended, Delivered, Mailbox, Opening, Outgoing, Providers, Secrets, TokenSource, Trashed,
};
pub use provider::Provider;

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
