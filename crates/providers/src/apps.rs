//! The operator's Google and Microsoft apps, and the API base URLs (overridable so tests and
//! the standalone fakes can stand in for the real services).

use crate::oauth::{self, OAuthApp};
pub use crate::oauth::{IdP, OAuthError, Pkce, TokenSet};
use mailroom_core::account::AccountMode;

#[derive(Clone, Debug)]
pub struct ProviderApp {
    pub oauth: OAuthApp,
    /// Gmail: the API root (`https://gmail.googleapis.com/`); Graph: `…/v1.0`.
    pub api_base: url::Url,
    /// Gmail push through Cloud Pub/Sub, when the operator set it up (Google only).
    pub push: Option<GmailPush>,
    /// Where Microsoft Graph posts change and lifecycle notifications
    /// (`MAILROOM_PUBLIC_URL` + `/push/microsoft`; Microsoft only). `None` (no public URL):
    /// Outlook accounts are polled.
    pub notification_url: Option<url::Url>,
}

/// The operator's Cloud Pub/Sub set-up for Gmail push: the topic Gmail publishes mailbox
/// changes to (`users.watch`), and the secret that the push subscription's endpoint URL
/// carries (`…/push/google/{token}`), which is how a push request proves it comes from that
/// subscription.
#[derive(Clone)]
pub struct GmailPush {
    /// `projects/<project>/topics/<topic>`.
    pub topic: String,
    pub token: secrecy::SecretString,
}

impl std::fmt::Debug for GmailPush {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GmailPush")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
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
    oauth::authorize_url(&app.oauth, scopes_for(idp, mode), state, challenge, None)
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
    oauth::exchange_code(http, &app.oauth, code, verifier, scopes(idp), now_ms).await
}

/// What the granted scopes allow: full access when a read scope was granted, else send-only.
pub fn mode_of(idp: IdP, granted: Option<&str>) -> AccountMode {
    let Some(granted) = granted else {
        return AccountMode::Full;
    };
    let read = match idp {
        IdP::Google => ["gmail.modify", "gmail.readonly", "https://mail.google.com/"]
            .iter()
            .any(|s| granted.contains(s)),
        IdP::Microsoft => granted.contains("Mail.ReadWrite") || granted.contains("Mail.Read"),
    };
    if read {
        AccountMode::Full
    } else {
        AccountMode::Send
    }
}

/// The last segment of a scope (`https://www.googleapis.com/auth/gmail.send` → `gmail.send`),
/// with Google's report of `email` (`…/userinfo.email`) folded onto the name asked for.
fn short_scope(s: &str) -> &str {
    let last = s.rsplit('/').next().unwrap_or(s);
    match last {
        "userinfo.email" => "email",
        "userinfo.profile" => "profile",
        other => other,
    }
}

/// What a person understands a scope to be.
fn describe(scope: &str) -> String {
    let what = match scope {
        "gmail.modify" => "read, organise and send your Gmail",
        "gmail.send" => "send mail as you",
        "openid" => "sign you in",
        "email" => "see your email address",
        "User.Read" => "sign you in and read your profile",
        "Mail.ReadWrite" => "read and organise your mail",
        "Mail.Send" => "send mail as you",
        other => other,
    };
    format!("{what} ({scope})")
}

/// The access asked for an account of `mode` that the person did not grant, described for
/// them (Google's consent screen lets people untick boxes). Empty when everything was granted
/// or the provider did not report the scopes. `offline_access` is not checked here: Microsoft
/// leaves it out of the list, and a missing refresh token already says it was refused.
pub fn missing_access(idp: IdP, mode: AccountMode, granted: Option<&str>) -> Vec<String> {
    let Some(granted) = granted else {
        return vec![];
    };
    let have: Vec<&str> = granted.split_whitespace().map(short_scope).collect();
    scopes_for(idp, mode)
        .iter()
        .map(|s| short_scope(s))
        .filter(|s| *s != "offline_access" && !have.iter().any(|h| h.eq_ignore_ascii_case(s)))
        .map(describe)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unticked_scopes_are_named() {
        let full = "https://www.googleapis.com/auth/gmail.modify";
        assert!(missing_access(IdP::Google, AccountMode::Full, Some(full)).is_empty());
        assert!(missing_access(IdP::Google, AccountMode::Full, None).is_empty());
        let m = missing_access(IdP::Google, AccountMode::Full, Some("openid"));
        assert_eq!(m, vec!["read, organise and send your Gmail (gmail.modify)"]);
        let send = "openid https://www.googleapis.com/auth/userinfo.email";
        let m = missing_access(IdP::Google, AccountMode::Send, Some(send));
        assert_eq!(m, vec!["send mail as you (gmail.send)"]);
        let ms = "User.Read Mail.Send profile openid email";
        let m = missing_access(IdP::Microsoft, AccountMode::Full, Some(ms));
        assert_eq!(m, vec!["read and organise your mail (Mail.ReadWrite)"]);
        assert!(missing_access(IdP::Microsoft, AccountMode::Send, Some(ms)).is_empty());
    }

    #[test]
    fn modes_follow_the_granted_scopes() {
        assert_eq!(mode_of(IdP::Google, None), AccountMode::Full);
        assert_eq!(
            mode_of(
                IdP::Google,
                Some("https://www.googleapis.com/auth/gmail.send")
            ),
            AccountMode::Send
        );
        assert_eq!(
            mode_of(IdP::Microsoft, Some("Mail.ReadWrite Mail.Send")),
            AccountMode::Full
        );
    }
}
