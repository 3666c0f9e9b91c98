//! What a failed verification of a new or reconnected mailbox means to the API's caller.

use mailroom_core::account::MailSettings;
use mailroom_core::{ApiError, ErrorKind};
use mailroom_providers::{FailureKind, MailError, Protocol};

/// Maps a failed IMAP/SMTP verification to the catalogue: refused credentials are
/// `invalid_credentials`; anything else names the protocol whose settings are wrong. Both
/// carry the `connectionParams` the user gave.
pub fn to_api_error(e: &MailError, settings: &MailSettings) -> ApiError {
    let (kind, detail) = match (e.is_auth(), e.protocol) {
        (true, Protocol::Smtp) => (
            ErrorKind::InvalidCredentials,
            format!(
                "the SMTP server refused the login of {}: {}",
                settings.smtp_user,
                e.detail()
            ),
        ),
        (true, _) => (
            ErrorKind::InvalidCredentials,
            format!(
                "the IMAP server refused the login of {}: {}",
                settings.imap_user,
                e.detail()
            ),
        ),
        (false, Protocol::Smtp) => (ErrorKind::InvalidSmtpConfiguration, e.detail().to_owned()),
        (false, _) => (ErrorKind::InvalidImapConfiguration, e.detail().to_owned()),
    };
    ApiError::new(kind, detail).with_connection_params(settings.connection_params())
}

/// Maps a failed OAuth grant verification (access, identity) to the catalogue.
/// Our own refusals of a grant (missing access, no refresh token) keep their slug; the
/// provider refusing to identify the mailbox is `invalid_credentials` when the token is
/// refused, else `provider_unreachable`.
pub fn grant_error(e: &MailError) -> ApiError {
    match (e.kind, e.protocol) {
        (FailureKind::Rejected(kind), Protocol::OAuth) => ApiError::new(kind, e.detail()),
        (kind, _) => ApiError::new(
            if kind == FailureKind::Auth {
                ErrorKind::InvalidCredentials
            } else {
                ErrorKind::ProviderUnreachable
            },
            format!("the provider refused to identify the mailbox: {e}"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mailroom_core::account::ImapEncryption;

    fn settings() -> MailSettings {
        MailSettings {
            imap_host: "imap.example.test".into(),
            imap_port: 993,
            imap_user: "a@example.test".into(),
            imap_encryption: ImapEncryption::Ssl,
            smtp_host: "smtp.example.test".into(),
            smtp_port: 465,
            smtp_user: "a@example.test".into(),
            smtp_encryption: None,
        }
    }

    #[test]
    fn provider_errors_map_to_the_catalogue_per_protocol() {
        let s = settings();
        let quota = FailureKind::Quota { retry_after: None };
        let cases = [
            (
                MailError::auth(Protocol::Imap, "NO"),
                ErrorKind::InvalidCredentials,
            ),
            (
                MailError::auth(Protocol::Smtp, "535"),
                ErrorKind::InvalidCredentials,
            ),
            (
                MailError::transient(Protocol::Imap, "refused"),
                ErrorKind::InvalidImapConfiguration,
            ),
            (
                MailError::rejected(Protocol::Smtp, ErrorKind::InvalidAccount, "loopback"),
                ErrorKind::InvalidSmtpConfiguration,
            ),
            (
                MailError::rejected(Protocol::Imap, ErrorKind::InvalidAccount, "loopback"),
                ErrorKind::InvalidImapConfiguration,
            ),
            (
                MailError::new(Protocol::Smtp, quota, "421"),
                ErrorKind::InvalidSmtpConfiguration,
            ),
        ];
        for (e, kind) in cases {
            let api = to_api_error(&e, &s);
            assert_eq!(api.kind, kind, "{e}");
            assert_eq!(
                api.connection_params.as_deref(),
                Some(&s.connection_params())
            );
        }
    }

    #[test]
    fn grant_failures_keep_their_slug() {
        let missing = MailError::rejected(
            Protocol::OAuth,
            ErrorKind::InsufficientPermissions,
            "missing: send mail as you (gmail.send)",
        );
        let api = grant_error(&missing);
        assert_eq!(api.kind, ErrorKind::InsufficientPermissions);
        assert!(api.detail.contains("gmail.send"));
        assert_eq!(
            grant_error(&MailError::auth(Protocol::Gmail, "401")).kind,
            ErrorKind::InvalidCredentials
        );
        assert_eq!(
            grant_error(&MailError::transient(Protocol::Graph, "503")).kind,
            ErrorKind::ProviderUnreachable
        );
        // Gmail refusing the profile (403) is the provider's refusal, not ours.
        let forbidden = MailError::rejected(Protocol::Gmail, ErrorKind::CantSendMessage, "403")
            .with_status(403);
        assert_eq!(grant_error(&forbidden).kind, ErrorKind::ProviderUnreachable);
    }
}
