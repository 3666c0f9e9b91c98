//! The operator's Google and Microsoft apps, and the API base URLs (overridable so tests and
//! the standalone fakes can stand in for the real services).

use mailroom_core::account::AccountMode;
use mailroom_providers::oauth::OAuthApp;
pub use mailroom_providers::oauth::{IdP, OAuthError, Pkce, TokenSet};

#[derive(Clone, Debug)]
pub struct ProviderApp {
    pub oauth: OAuthApp,
    /// Gmail: the API root (`https://gmail.googleapis.com/`); Graph: `…/v1.0`.
    pub api_base: url::Url,
}

/// What the operator configured; either may be absent.
#[derive(Clone, Debug, Default)]
pub struct ProviderApps {
    pub google: Option<ProviderApp>,
    pub microsoft: Option<ProviderApp>,
}

impl ProviderApps {
    pub fn get(&self, idp: IdP) -> Option<&ProviderApp> {
        match idp {
            IdP::Google => self.google.as_ref(),
            IdP::Microsoft => self.microsoft.as_ref(),
        }
    }
}

/// Least scopes for a full (read and send) account.
pub fn scopes(idp: IdP) -> &'static [&'static str] {
    scopes_for(idp, AccountMode::Full)
}

/// The least scopes for an account of `mode`. A send-only Google account also asks for
/// `openid email`: `gmail.send` cannot read the profile, so the mailbox is named from the ID
/// token.
pub fn scopes_for(idp: IdP, mode: AccountMode) -> &'static [&'static str] {
    match (idp, mode) {
        (IdP::Google, AccountMode::Full) => &["https://www.googleapis.com/auth/gmail.modify"],
        (IdP::Google, AccountMode::Send) => &[
            "openid",
            "email",
            "https://www.googleapis.com/auth/gmail.send",
        ],
        (IdP::Microsoft, AccountMode::Full) => &[
            "offline_access",
            "https://graph.microsoft.com/User.Read",
            "https://graph.microsoft.com/Mail.ReadWrite",
            "https://graph.microsoft.com/Mail.Send",
        ],
        (IdP::Microsoft, AccountMode::Send) => &[
            "offline_access",
            "https://graph.microsoft.com/User.Read",
            "https://graph.microsoft.com/Mail.Send",
        ],
    }
}

/// The authorize URL of the hosted flow for `idp` (PKCE S256, `state`, least scopes).
pub fn authorize_url(
    app: &ProviderApp,
    idp: IdP,
    mode: AccountMode,
    state: &str,
    challenge: &str,
) -> url::Url {
    mailroom_providers::oauth::authorize_url(
        &app.oauth,
        scopes_for(idp, mode),
        state,
        challenge,
        None,
    )
}

/// Exchanges the code the provider sent back for tokens.
pub async fn exchange_code(
    http: &reqwest::Client,
    app: &ProviderApp,
    idp: IdP,
    code: &str,
    verifier: &secrecy::SecretString,
    now_ms: i64,
) -> Result<TokenSet, OAuthError> {
    mailroom_providers::oauth::exchange_code(http, &app.oauth, code, verifier, scopes(idp), now_ms)
        .await
}

/// The largest message a provider accepts for sending, when it has a fixed one: Gmail's
/// `messages.send` upload limit (35 MiB); Graph allows up to 150 MB through upload sessions.
pub fn max_message_bytes(t: mailroom_core::account::AccountType) -> Option<usize> {
    match t {
        mailroom_core::account::AccountType::GoogleOauth => Some(36_700_160),
        mailroom_core::account::AccountType::Outlook => Some(150 * 1024 * 1024),
        mailroom_core::account::AccountType::Mail => None,
    }
}
