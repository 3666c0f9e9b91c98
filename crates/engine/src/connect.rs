//! Verifying a mailbox before it is linked: log in to IMAP and authenticate to SMTP (both at
//! once, each within the connect timeout) and turn what went wrong into the API's error.

use secrecy::SecretString;

use mailroom_core::account::MailSettings;
use mailroom_core::{ApiError, ErrorKind};
use mailroom_providers::imap_smtp::{imap, smtp};
use mailroom_providers::{NetPolicy, Protocol, ProviderError};

/// Proves that `settings` with these passwords can both read (IMAP) and send (SMTP).
pub async fn verify_mail(
    settings: &MailSettings,
    imap_password: &SecretString,
    smtp_password: &SecretString,
    net: &NetPolicy,
) -> Result<(), ApiError> {
    let imap_login = imap::ImapLogin {
        host: &settings.imap_host,
        port: settings.imap_port,
        tls: settings.imap_tls(),
        user: &settings.imap_user,
        password: imap_password,
    };
    let smtp_login = smtp::SmtpLogin {
        host: &settings.smtp_host,
        port: settings.smtp_port,
        tls: settings.smtp_tls(),
        user: &settings.smtp_user,
        password: smtp_password,
        mechanisms: smtp::PASSWORD_MECHANISMS,
    };
    let (imap_result, smtp_result) = tokio::join!(
        imap::verify(&imap_login, net),
        smtp::verify(&smtp_login, net)
    );
    // IMAP is reported first: it is what the user most often gets wrong.
    imap_result
        .and(smtp_result)
        .map_err(|e| to_api_error(&e, settings))
}

/// Maps a provider failure during account verification to the API's catalogue.
pub fn to_api_error(e: &ProviderError, settings: &MailSettings) -> ApiError {
    let (kind, detail) = match (e, e.protocol()) {
        (ProviderError::Auth { .. }, Protocol::Imap) => (
            ErrorKind::InvalidCredentials,
            format!(
                "the IMAP server refused the login of {}: {}",
                settings.imap_user,
                e.detail()
            ),
        ),
        (ProviderError::Auth { .. }, Protocol::Smtp) => (
            ErrorKind::InvalidCredentials,
            format!(
                "the SMTP server refused the login of {}: {}",
                settings.smtp_user,
                e.detail()
            ),
        ),
        (_, Protocol::Imap) => (ErrorKind::InvalidImapConfiguration, e.detail().to_owned()),
        (_, Protocol::Smtp) => (ErrorKind::InvalidSmtpConfiguration, e.detail().to_owned()),
    };
    ApiError::new(kind, detail).with_connection_params(settings.connection_params())
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
        let cases = [
            (
                ProviderError::Auth {
                    protocol: Protocol::Imap,
                    detail: "NO".into(),
                },
                ErrorKind::InvalidCredentials,
            ),
            (
                ProviderError::Auth {
                    protocol: Protocol::Smtp,
                    detail: "535".into(),
                },
                ErrorKind::InvalidCredentials,
            ),
            (
                ProviderError::Connect {
                    protocol: Protocol::Imap,
                    detail: "refused".into(),
                },
                ErrorKind::InvalidImapConfiguration,
            ),
            (
                ProviderError::Forbidden {
                    protocol: Protocol::Smtp,
                    detail: "loopback".into(),
                },
                ErrorKind::InvalidSmtpConfiguration,
            ),
            (
                ProviderError::Forbidden {
                    protocol: Protocol::Imap,
                    detail: "loopback".into(),
                },
                ErrorKind::InvalidImapConfiguration,
            ),
            (
                ProviderError::Quota {
                    protocol: Protocol::Smtp,
                    detail: "421".into(),
                },
                ErrorKind::InvalidSmtpConfiguration,
            ),
            (
                ProviderError::Protocol {
                    protocol: Protocol::Smtp,
                    detail: "?".into(),
                },
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
}
