//! OAuth grants through the seam: the code exchange of a hosted sign-in and the refresh of an
//! account's grant, with the scopes of the account's mode, answering [`MailError`] like every
//! other provider call.

use secrecy::SecretString;

use mailroom_core::ErrorKind;
use mailroom_core::account::{AccountMode, AccountType};

use super::Providers;
use crate::apps::{self, IdP, ProviderApp, TokenSet};
use crate::failure::{FailureKind, MailError, Protocol};
use crate::oauth::{self, OAuthError, OAuthErrorKind};
use crate::provider::Provider;

impl From<OAuthError> for MailError {
    fn from(e: OAuthError) -> Self {
        let kind = match e.kind {
            // invalid_grant, AADSTS revocation codes: the person must consent again.
            OAuthErrorKind::Revoked => FailureKind::Auth,
            OAuthErrorKind::Transient if e.status == Some(429) => {
                FailureKind::Quota { retry_after: None }
            }
            OAuthErrorKind::Transient => FailureKind::Transient { retry_after: None },
            // The operator's app is misconfigured (client id/secret, redirect URI).
            OAuthErrorKind::Client => FailureKind::Rejected(ErrorKind::InvalidAccount),
            // A bad code, a PKCE mismatch, a refresh token of another app.
            OAuthErrorKind::Refused => FailureKind::Rejected(ErrorKind::InvalidCredentials),
        };
        let mut m = MailError::new(Protocol::OAuth, kind, e.to_string()).with_code(e.error.clone());
        m.status = e.status;
        m
    }
}

impl Providers {
    /// The identity provider of an OAuth account type, with its app configured here.
    pub fn oauth_provider(&self, t: AccountType) -> Result<IdP, MailError> {
        let idp = Provider::of(t).idp().ok_or_else(|| {
            MailError::rejected(
                Protocol::OAuth,
                ErrorKind::InvalidParameters,
                format!("{} accounts link with passwords, not tokens", t.as_str()),
            )
        })?;
        self.configured(idp)?;
        Ok(idp)
    }

    pub(super) fn configured(&self, idp: IdP) -> Result<&ProviderApp, MailError> {
        self.inner.apps.get(idp).ok_or_else(|| {
            MailError::rejected(
                Protocol::OAuth,
                ErrorKind::InvalidParameters,
                format!(
                    "provider {} needs the operator's app, which is not configured on this server ({})",
                    idp.account_type().as_str(),
                    idp.client_id_var()
                ),
            )
        })
    }

    /// The largest message the account's provider accepts for sending, when it has a fixed one.
    pub fn max_message_bytes(&self, t: AccountType) -> Option<usize> {
        Provider::of(t).max_message_bytes()
    }

    /// The sending limits an account of type `t` at `address` gets from its provider (see
    /// [`Provider::default_send_limits`]).
    pub fn default_send_limits(
        &self,
        t: AccountType,
        address: &str,
    ) -> mailroom_core::send_limits::SendLimits {
        Provider::of(t).default_send_limits(address)
    }

    /// Exchanges the code of a hosted sign-in for tokens, naming the scopes the sign-in asked
    /// for (`mode`): Microsoft refuses an exchange that asks for more than was consented.
    pub async fn exchange_code(
        &self,
        idp: IdP,
        mode: AccountMode,
        code: &str,
        verifier: &SecretString,
        now_ms: i64,
    ) -> Result<TokenSet, MailError> {
        let app = self.configured(idp)?;
        oauth::exchange_code(
            &self.inner.http,
            &app.oauth,
            code,
            verifier,
            apps::scopes_for(idp, mode),
            now_ms,
        )
        .await
        .map_err(MailError::from)
    }

    /// Refreshes the grant of an account of type `t` linked for `mode` (Microsoft wants the
    /// scopes on every refresh, `offline_access` included; Google ignores them). A refused
    /// grant is [`MailError::is_auth`].
    pub async fn refresh_grant(
        &self,
        t: AccountType,
        mode: AccountMode,
        refresh_token: &SecretString,
        now_ms: i64,
    ) -> Result<TokenSet, MailError> {
        let idp = self.oauth_provider(t)?;
        let app = self.configured(idp)?;
        oauth::refresh(
            &self.inner.http,
            &app.oauth,
            refresh_token,
            apps::scopes_for(idp, mode),
            now_ms,
        )
        .await
        .map_err(MailError::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oauth_error(kind: OAuthErrorKind, status: Option<u16>) -> OAuthError {
        OAuthError {
            kind,
            status,
            error: "invalid_grant".into(),
            description: None,
            error_codes: vec![],
        }
    }

    #[test]
    fn token_endpoint_failures_are_mail_errors() {
        let revoked = MailError::from(oauth_error(OAuthErrorKind::Revoked, Some(400)));
        assert!(revoked.is_auth());
        assert_eq!(revoked.code.as_deref(), Some("invalid_grant"));
        assert_eq!(revoked.protocol, Protocol::OAuth);
        let slow = MailError::from(oauth_error(OAuthErrorKind::Transient, Some(429)));
        assert!(slow.is_quota());
        let down = MailError::from(oauth_error(OAuthErrorKind::Transient, Some(503)));
        assert!(down.is_transient() && !down.is_quota());
        let client = MailError::from(oauth_error(OAuthErrorKind::Client, Some(401)));
        assert_eq!(
            client.kind,
            FailureKind::Rejected(ErrorKind::InvalidAccount)
        );
        let refused = MailError::from(oauth_error(OAuthErrorKind::Refused, Some(400)));
        assert_eq!(
            refused.kind,
            FailureKind::Rejected(ErrorKind::InvalidCredentials)
        );
    }
}
