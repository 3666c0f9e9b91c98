//! Account types as the API shows them.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The provider behind an account (`type` in the Account object).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum AccountType {
    #[serde(rename = "MAIL")]
    Mail,
    #[serde(rename = "GOOGLE_OAUTH")]
    GoogleOauth,
    #[serde(rename = "OUTLOOK")]
    Outlook,
}

impl AccountType {
    pub fn as_str(self) -> &'static str {
        match self {
            AccountType::Mail => "MAIL",
            AccountType::GoogleOauth => "GOOGLE_OAUTH",
            AccountType::Outlook => "OUTLOOK",
        }
    }

    /// The name of the type among an SDK webhook's or hosted link's sources (`GOOGLE` there,
    /// not `GOOGLE_OAUTH`).
    pub fn source_name(self) -> &'static str {
        match self {
            AccountType::Mail => "MAIL",
            AccountType::GoogleOauth => "GOOGLE",
            AccountType::Outlook => "OUTLOOK",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "MAIL" => Some(AccountType::Mail),
            "GOOGLE_OAUTH" => Some(AccountType::GoogleOauth),
            "OUTLOOK" => Some(AccountType::Outlook),
            _ => None,
        }
    }
}

/// Health of an account's mail source (`sources[].status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SourceStatus {
    Ok,
    Stopped,
    Error,
    Credentials,
    Permissions,
    Connecting,
}

impl SourceStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceStatus::Ok => "OK",
            SourceStatus::Stopped => "STOPPED",
            SourceStatus::Error => "ERROR",
            SourceStatus::Credentials => "CREDENTIALS",
            SourceStatus::Permissions => "PERMISSIONS",
            SourceStatus::Connecting => "CONNECTING",
        }
    }

    /// The provider refused the account's credentials or access: nothing is tried with them
    /// until the account is reconnected (or, for sync, restarted).
    pub fn needs_reconnect(self) -> bool {
        matches!(self, SourceStatus::Credentials | SourceStatus::Permissions)
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            SourceStatus::Ok,
            SourceStatus::Stopped,
            SourceStatus::Error,
            SourceStatus::Credentials,
            SourceStatus::Permissions,
            SourceStatus::Connecting,
        ]
        .into_iter()
        .find(|v| v.as_str() == s)
    }
}

/// How to reach an IMAP server. `Tls` and `Ssl` both mean implicit TLS (port 993 style);
/// `Default` picks implicit TLS on 993 and STARTTLS elsewhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ImapEncryption {
    Tls,
    Ssl,
    Starttls,
    Default,
}

impl ImapEncryption {
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "tls" => Some(Self::Tls),
            "ssl" => Some(Self::Ssl),
            "starttls" => Some(Self::Starttls),
            "default" | "" => Some(Self::Default),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tls => "tls",
            Self::Ssl => "ssl",
            Self::Starttls => "starttls",
            Self::Default => "default",
        }
    }

    /// The transport actually used on `port`.
    pub fn resolve(self, port: u16) -> TlsMode {
        match self {
            Self::Tls | Self::Ssl => TlsMode::Implicit,
            Self::Starttls => TlsMode::Starttls,
            Self::Default if port == 993 => TlsMode::Implicit,
            Self::Default => TlsMode::Starttls,
        }
    }
}

/// The wire-level TLS mode of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// TLS from the first byte (IMAPS 993, SMTPS 465).
    Implicit,
    /// Plain connect, then STARTTLS before authenticating (IMAP 143, submission 587).
    Starttls,
}

impl TlsMode {
    /// SMTP has no encryption field in the Unipile contract: 465 is implicit TLS, anything
    /// else is STARTTLS (never plaintext authentication).
    pub fn smtp_for_port(port: u16) -> Self {
        if port == 465 {
            Self::Implicit
        } else {
            Self::Starttls
        }
    }
}

/// IMAP and SMTP settings of a `MAIL` account (no secrets).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailSettings {
    pub imap_host: String,
    pub imap_port: u16,
    pub imap_user: String,
    pub imap_encryption: ImapEncryption,
    pub smtp_host: String,
    pub smtp_port: u16,
    pub smtp_user: String,
    /// Our extension; when absent the port decides (see [`TlsMode::smtp_for_port`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smtp_encryption: Option<TlsMode>,
}

impl MailSettings {
    pub fn imap_tls(&self) -> TlsMode {
        self.imap_encryption.resolve(self.imap_port)
    }

    pub fn smtp_tls(&self) -> TlsMode {
        self.smtp_encryption
            .unwrap_or_else(|| TlsMode::smtp_for_port(self.smtp_port))
    }

    pub fn connection_params(&self) -> crate::error::ConnectionParams {
        crate::error::ConnectionParams {
            imap_host: self.imap_host.clone(),
            imap_encryption: self.imap_encryption.as_str().to_owned(),
            imap_port: self.imap_port,
            imap_user: self.imap_user.clone(),
            smtp_host: self.smtp_host.clone(),
            smtp_port: self.smtp_port,
            smtp_user: self.smtp_user.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encryption_resolves_by_port_when_default() {
        assert_eq!(ImapEncryption::Default.resolve(993), TlsMode::Implicit);
        assert_eq!(ImapEncryption::Default.resolve(143), TlsMode::Starttls);
        assert_eq!(ImapEncryption::Ssl.resolve(143), TlsMode::Implicit);
        assert_eq!(
            ImapEncryption::parse("STARTTLS"),
            Some(ImapEncryption::Starttls)
        );
        assert_eq!(ImapEncryption::parse("plain"), None);
        assert_eq!(TlsMode::smtp_for_port(465), TlsMode::Implicit);
        assert_eq!(TlsMode::smtp_for_port(587), TlsMode::Starttls);
    }
}

/// Settings of a Google (`GOOGLE_OAUTH`) or Microsoft (`OUTLOOK`) account (no secrets).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OAuthSettings {
    /// The mailbox address (Gmail `emailAddress`, Graph `mail` or `userPrincipalName`).
    pub email: String,
    /// The provider's id of the user (Graph `id`; the address for Google).
    pub provider_user_id: String,
    /// The scopes granted, as the token endpoint reported them.
    pub scopes: Vec<String>,
    /// What the account was linked for.
    #[serde(default)]
    pub mode: AccountMode,
}

/// What a Google or Microsoft account may do, and so which scopes it is linked with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AccountMode {
    /// Read and send (`gmail.modify`; `Mail.ReadWrite` + `Mail.Send`).
    #[default]
    Full,
    /// Send only, with the least scopes (`gmail.send`; `Mail.Send`): no reply-parent lookup in
    /// the mailbox, and on Outlook no message over 4 MB (drafts need `Mail.ReadWrite`).
    Send,
}

impl AccountMode {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "full" => Some(Self::Full),
            "send" => Some(Self::Send),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Full => "full",
            Self::Send => "send",
        }
    }
}

/// An account's settings, typed per provider family. Decoded once, where the store reads the
/// row; everything downstream works with the struct, never with JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountSettings {
    /// `MAIL`: IMAP and SMTP.
    Mail(MailSettings),
    /// `GOOGLE_OAUTH` and `OUTLOOK`: the mailbox behind an OAuth grant.
    OAuth(OAuthSettings),
}

impl AccountSettings {
    /// Decodes the stored JSON of an account of type `t`.
    pub fn decode(t: AccountType, json: &str) -> Result<Self, serde_json::Error> {
        Ok(match t {
            AccountType::Mail => Self::Mail(serde_json::from_str(json)?),
            AccountType::GoogleOauth | AccountType::Outlook => {
                Self::OAuth(serde_json::from_str(json)?)
            }
        })
    }

    /// The JSON the store keeps.
    pub fn to_json(&self) -> String {
        match self {
            Self::Mail(s) => serde_json::to_string(s),
            Self::OAuth(s) => serde_json::to_string(s),
        }
        .expect("settings serialize")
    }

    /// The address mail is sent from by default: the SMTP login when it is an address (else
    /// the IMAP login), or the OAuth mailbox's address.
    pub fn address(&self) -> &str {
        match self {
            Self::Mail(s) if s.smtp_user.contains('@') => &s.smtp_user,
            Self::Mail(s) => &s.imap_user,
            Self::OAuth(s) => &s.email,
        }
    }

    /// What the account was linked for; IMAP/SMTP accounts always read and send.
    pub fn mode(&self) -> AccountMode {
        match self {
            Self::Mail(_) => AccountMode::Full,
            Self::OAuth(s) => s.mode,
        }
    }

    pub fn as_mail(&self) -> Option<&MailSettings> {
        match self {
            Self::Mail(s) => Some(s),
            Self::OAuth(_) => None,
        }
    }

    pub fn as_oauth(&self) -> Option<&OAuthSettings> {
        match self {
            Self::OAuth(s) => Some(s),
            Self::Mail(_) => None,
        }
    }
}

#[cfg(test)]
mod settings_tests {
    use super::*;

    #[test]
    fn settings_round_trip_per_type_and_name_the_address() {
        let mail = AccountSettings::Mail(MailSettings {
            imap_host: "imap.x.test".into(),
            imap_port: 993,
            imap_user: "login".into(),
            imap_encryption: ImapEncryption::Default,
            smtp_host: "smtp.x.test".into(),
            smtp_port: 587,
            smtp_user: "me@x.test".into(),
            smtp_encryption: None,
        });
        let back = AccountSettings::decode(AccountType::Mail, &mail.to_json()).unwrap();
        assert_eq!(back, mail);
        assert_eq!(mail.address(), "me@x.test");
        let oauth = AccountSettings::OAuth(OAuthSettings {
            email: "a@gmail.test".into(),
            provider_user_id: "a@gmail.test".into(),
            scopes: vec!["s".into()],
            mode: AccountMode::Send,
        });
        let back = AccountSettings::decode(AccountType::Outlook, &oauth.to_json()).unwrap();
        assert_eq!(back, oauth);
        assert_eq!(oauth.mode(), AccountMode::Send);
        assert!(AccountSettings::decode(AccountType::Mail, &oauth.to_json()).is_err());
    }
}
