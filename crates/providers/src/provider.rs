//! Which provider serves an account. This is the one place that turns an account's type into
//! a way of talking to it; everything else holds a [`crate::Mailbox`] and calls it.

use mailroom_core::account::AccountType;

use crate::oauth::IdP;

/// The mail API behind an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    /// IMAP to read, SMTP submission to send.
    Imap,
    /// The Gmail API.
    Gmail,
    /// Microsoft Graph.
    Graph,
}

impl Provider {
    pub fn of(t: AccountType) -> Self {
        match t {
            AccountType::Mail => Provider::Imap,
            AccountType::GoogleOauth => Provider::Gmail,
            AccountType::Outlook => Provider::Graph,
        }
    }

    /// The identity provider that issues the account's tokens (none for passwords).
    pub fn idp(self) -> Option<IdP> {
        match self {
            Provider::Imap => None,
            Provider::Gmail => Some(IdP::Google),
            Provider::Graph => Some(IdP::Microsoft),
        }
    }

    /// Whether mailroom can read (and so sync) this provider's mailboxes: IMAP folders,
    /// Gmail's history feed and Graph's per-folder delta are all built.
    pub fn reads(self) -> bool {
        match self {
            Provider::Imap | Provider::Gmail | Provider::Graph => true,
        }
    }

    /// The largest message the provider accepts for sending, when it has a fixed one: Gmail's
    /// `messages.send` upload limit (35 MiB); Graph allows up to 150 MB through upload
    /// sessions; an SMTP server says its own (SIZE), checked at send time.
    pub fn max_message_bytes(self) -> Option<usize> {
        match self {
            Provider::Gmail => Some(36_700_160),
            Provider::Graph => Some(150 * 1024 * 1024),
            Provider::Imap => None,
        }
    }
}

/// The account type a Gmail Cloud Pub/Sub push (`POST /push/google/…`) concerns: the push
/// names a mailbox address, and only accounts read through the Gmail API are pushed by it.
pub fn gmail_push_account_type() -> AccountType {
    AccountType::GoogleOauth
}

impl IdP {
    /// Every identity provider, in the order sign-in choices are shown.
    pub const ALL: [IdP; 2] = [IdP::Google, IdP::Microsoft];

    /// The name in hosted-auth URLs (`/hosted/{token}/oauth/google`, `/oauth/microsoft/callback`).
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "google" => Some(IdP::Google),
            "microsoft" => Some(IdP::Microsoft),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            IdP::Google => "google",
            IdP::Microsoft => "microsoft",
        }
    }

    /// What people call it.
    pub fn display_name(self) -> &'static str {
        match self {
            IdP::Google => "Google",
            IdP::Microsoft => "Microsoft",
        }
    }

    /// The type of the accounts it links.
    pub fn account_type(self) -> AccountType {
        match self {
            IdP::Google => AccountType::GoogleOauth,
            IdP::Microsoft => AccountType::Outlook,
        }
    }

    /// The variable that configures the operator's app.
    pub fn client_id_var(self) -> &'static str {
        match self {
            IdP::Google => "MAILROOM_GOOGLE_CLIENT_ID",
            IdP::Microsoft => "MAILROOM_MICROSOFT_CLIENT_ID",
        }
    }
}
