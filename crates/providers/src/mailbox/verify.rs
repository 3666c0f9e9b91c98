//! Verifying a mailbox before it is linked (or reconnected): IMAP login and SMTP AUTH for
//! password accounts; for OAuth grants, the access granted and the mailbox's identity.

use secrecy::SecretString;

use mailroom_core::ErrorKind;
use mailroom_core::account::{
    AccountMode, AccountSettings, AccountType, MailSettings, OAuthSettings,
};

use super::Providers;
use super::imap::{imap_login, smtp_login};
use crate::apps::{self, IdP, TokenSet};
use crate::failure::{MailError, Protocol};
use crate::gmail::GmailClient;
use crate::graph::GraphClient;
use crate::imap_smtp::smtp;

/// A mailbox about to be linked.
pub enum Prospect<'a> {
    /// IMAP/SMTP settings with their passwords.
    Mail {
        settings: &'a MailSettings,
        imap_password: &'a SecretString,
        smtp_password: &'a SecretString,
    },
    /// Tokens from a sign-in. `asked` is the access the hosted flow asked for (a person may
    /// untick boxes on the consent screen); `None` for tokens an integrator brings, whose
    /// granted scopes decide the account's mode.
    OAuth {
        idp: IdP,
        tokens: &'a TokenSet,
        asked: Option<AccountMode>,
    },
}

/// A verified mailbox: what to save.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub account_type: AccountType,
    pub settings: AccountSettings,
    /// The account's display name: the mailbox address.
    pub name: String,
}

impl Providers {
    /// Proves the prospect works: both logins of a password account (at once, each within the
    /// connect timeout; a failure names its protocol), or an OAuth grant's access and identity
    /// (Gmail `users.getProfile`, Graph `/me`, or the ID token of a send-only Google grant).
    pub async fn verify(&self, prospect: Prospect<'_>) -> Result<Verified, MailError> {
        match prospect {
            Prospect::Mail {
                settings,
                imap_password,
                smtp_password,
            } => {
                let imap_login = imap_login(settings, imap_password);
                let smtp_login = smtp_login(settings, smtp_password);
                let net = &self.inner.net;
                let (i, s) = tokio::join!(
                    self.inner.imap.verify(&imap_login),
                    smtp::verify(&smtp_login, net)
                );
                // IMAP is reported first: it is what people most often get wrong.
                i.and(s)?;
                Ok(Verified {
                    account_type: AccountType::Mail,
                    name: settings.imap_user.clone(),
                    settings: AccountSettings::Mail(settings.clone()),
                })
            }
            Prospect::OAuth { idp, tokens, asked } => self.verify_grant(idp, tokens, asked).await,
        }
    }

    async fn verify_grant(
        &self,
        idp: IdP,
        tokens: &TokenSet,
        asked: Option<AccountMode>,
    ) -> Result<Verified, MailError> {
        let refused =
            |kind: ErrorKind, detail: String| MailError::rejected(Protocol::OAuth, kind, detail);
        if tokens.refresh_token.is_none() {
            return Err(refused(
                ErrorKind::InvalidCredentials,
                "the provider returned no refresh token (offline access was not granted)".into(),
            ));
        }
        let granted = tokens.scope.as_deref();
        if let Some(mode) = asked {
            let missing = apps::missing_access(idp, mode, granted);
            if !missing.is_empty() {
                return Err(refused(
                    ErrorKind::InsufficientPermissions,
                    format!(
                        "the {} sign-in did not grant all the access mailroom asked for; missing: {}. Sign in again and allow it",
                        idp.display_name(),
                        missing.join("; ")
                    ),
                )
                .with_code("missing_access"));
            }
        }
        let mode = asked.unwrap_or_else(|| apps::mode_of(idp, granted));
        let app = self.inner.apps.get(idp).ok_or_else(|| {
            refused(
                ErrorKind::InvalidParameters,
                format!(
                    "the {} app is not configured on this server ({})",
                    idp.display_name(),
                    idp.client_id_var()
                ),
            )
        })?;
        let http = self.inner.http.clone();
        let (email, provider_user_id) = match (idp, mode) {
            // `gmail.send` cannot read the profile: the ID token names the mailbox.
            (IdP::Google, AccountMode::Send) => {
                let email = tokens.id_token_email().ok_or_else(|| {
                    refused(
                        ErrorKind::InvalidCredentials,
                        "the Google sign-in returned no email address (no ID token with an email claim): allow mailroom to see your email address (email)".into(),
                    )
                })?;
                (email.clone(), email)
            }
            (IdP::Google, AccountMode::Full) => {
                let p = GmailClient::new(http, app.api_base.clone())
                    .profile(&tokens.access_token)
                    .await?;
                (p.email_address.clone(), p.email_address)
            }
            (IdP::Microsoft, _) => {
                let me = GraphClient::new(http, app.api_base.clone())
                    .me(&tokens.access_token)
                    .await?;
                let email = me
                    .mail
                    .clone()
                    .filter(|m| !m.is_empty())
                    .unwrap_or_else(|| me.user_principal_name.clone());
                (email, me.id)
            }
        };
        let scopes = match granted {
            Some(s) => s.split_whitespace().map(str::to_owned).collect(),
            None => apps::scopes_for(idp, mode)
                .iter()
                .map(|s| s.to_string())
                .collect(),
        };
        Ok(Verified {
            account_type: idp.account_type(),
            name: email.clone(),
            settings: AccountSettings::OAuth(OAuthSettings {
                email,
                provider_user_id,
                scopes,
                mode,
            }),
        })
    }
}
