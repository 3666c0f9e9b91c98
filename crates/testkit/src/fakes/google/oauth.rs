//! Google OAuth 2.0: the authorize step (with an optional HTML consent form), the token
//! endpoint (code exchange with PKCE, refresh without rotation) and revocation.

// Validation helpers bail out with the finished answer (`Err(Response)`), the usual axum
// shape; a test fake is not a hot path worth boxing for.
#![allow(clippy::result_large_err)]

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::errors::{error_page, html_escape, oauth_error};
use super::mailbox::{now_ms, random_token};
use super::{AccessToken, AuthCode, AuthorizeDecision, Shared, State as FakeState, next_fault};

/// How long an authorization code can be redeemed.
const CODE_LIFETIME: Duration = Duration::from_secs(600);

const USERINFO_EMAIL: &str = "https://www.googleapis.com/auth/userinfo.email";
const USERINFO_PROFILE: &str = "https://www.googleapis.com/auth/userinfo.profile";

/// Google's short scope names become URLs in grants and token answers.
pub(super) fn normalize_scope(s: &str) -> String {
    match s {
        "email" => USERINFO_EMAIL.into(),
        "profile" => USERINFO_PROFILE.into(),
        other => other.into(),
    }
}

fn known_scope(s: &str) -> bool {
    s == "openid"
        || s == USERINFO_EMAIL
        || s == USERINFO_PROFILE
        || super::contract::known_scopes().iter().any(|k| k == s)
}

fn params(raw: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for (k, v) in url::form_urlencoded::parse(raw.as_bytes()) {
        out.entry(k.into_owned()).or_insert_with(|| v.into_owned());
    }
    out
}

/// A validated authorize request.
struct AuthRequest {
    redirect_uri: url::Url,
    redirect_raw: String,
    client_id: String,
    scopes: BTreeSet<String>,
    state: String,
    challenge: String,
    offline: bool,
    prompt: Vec<String>,
    include_granted: bool,
}

fn validate(s: &FakeState, p: &HashMap<String, String>) -> Result<AuthRequest, Response> {
    let get = |k: &str| p.get(k).map(String::as_str).unwrap_or("");
    if get("client_id").is_empty() {
        return Err(error_page(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Missing required parameter: client_id",
        ));
    }
    if get("client_id") != s.config.client_id {
        return Err(error_page(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "The OAuth client was not found.",
        ));
    }
    let redirect_raw = get("redirect_uri");
    if redirect_raw.is_empty() {
        return Err(error_page(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Missing required parameter: redirect_uri",
        ));
    }
    let redirect_uri = match url::Url::parse(redirect_raw) {
        Ok(u) if s.config.redirect_uris.iter().any(|r| r == redirect_raw) => u,
        _ => {
            return Err(error_page(
                StatusCode::BAD_REQUEST,
                "redirect_uri_mismatch",
                &format!(
                    "You can't sign in to this app because it doesn't comply with Google's \
                     OAuth 2.0 policy. redirect_uri={redirect_raw}"
                ),
            ));
        }
    };
    match get("response_type") {
        "code" => {}
        "" => {
            return Err(error_page(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "Required parameter is missing: response_type",
            ));
        }
        other => {
            return Err(error_page(
                StatusCode::BAD_REQUEST,
                "unsupported_response_type",
                &format!("Invalid response_type: {other}"),
            ));
        }
    }
    let requested: Vec<&str> = get("scope").split_whitespace().collect();
    if requested.is_empty() {
        return Err(error_page(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Missing required parameter: scope",
        ));
    }
    let scopes: BTreeSet<String> = requested.iter().map(|x| normalize_scope(x)).collect();
    let invalid: Vec<&String> = scopes.iter().filter(|x| !known_scope(x)).collect();
    if !invalid.is_empty() {
        return Err(error_page(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            &format!("Some requested scopes were invalid. {{invalid={invalid:?}}}"),
        ));
    }
    // Stricter than Google, which makes both optional: mailroom must always send them.
    if get("state").is_empty() {
        return Err(error_page(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Missing required parameter: state (this fake requires it)",
        ));
    }
    let challenge = get("code_challenge");
    if challenge.is_empty() {
        return Err(error_page(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Missing required parameter: code_challenge (this fake requires PKCE)",
        ));
    }
    if get("code_challenge_method") != "S256" {
        return Err(error_page(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Invalid code_challenge_method: this fake accepts only S256",
        ));
    }
    if challenge.len() != 43
        || !challenge
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(error_page(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Invalid code_challenge: an S256 challenge is 43 base64url characters",
        ));
    }
    let offline = match get("access_type") {
        "" | "online" => false,
        "offline" => true,
        other => {
            return Err(error_page(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                &format!("Invalid access_type: {other}"),
            ));
        }
    };
    let prompt: Vec<String> = get("prompt")
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    if let Some(bad) = prompt
        .iter()
        .find(|x| !matches!(x.as_str(), "none" | "consent" | "select_account"))
    {
        return Err(error_page(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            &format!("Invalid parameter value for prompt: Invalid prompt: {bad}"),
        ));
    }
    if prompt.iter().any(|x| x == "none") && prompt.len() > 1 {
        return Err(error_page(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Invalid parameter value for prompt: none cannot be combined",
        ));
    }
    Ok(AuthRequest {
        redirect_uri,
        redirect_raw: redirect_raw.to_owned(),
        client_id: get("client_id").to_owned(),
        scopes,
        state: get("state").to_owned(),
        challenge: challenge.to_owned(),
        offline,
        prompt,
        include_granted: get("include_granted_scopes") == "true",
    })
}

fn redirect(mut to: url::Url, pairs: &[(&str, &str)]) -> Response {
    {
        let mut q = to.query_pairs_mut();
        for (k, v) in pairs {
            q.append_pair(k, v);
        }
    }
    (
        StatusCode::FOUND,
        [(header::LOCATION, to.to_string())],
        String::new(),
    )
        .into_response()
}

fn finish(s: &mut FakeState, req: AuthRequest, decision: AuthorizeDecision) -> Response {
    if decision == AuthorizeDecision::Deny {
        return redirect(
            req.redirect_uri,
            &[("error", "access_denied"), ("state", &req.state)],
        );
    }
    if req.prompt.iter().any(|p| p == "none") && !req.scopes.is_subset(&s.granted) {
        return redirect(
            req.redirect_uri,
            &[("error", "consent_required"), ("state", &req.state)],
        );
    }
    let mut scopes = req.scopes.clone();
    // Granular consent: the Gmail boxes can be unticked, the sign-in ones cannot.
    let sign_in = ["openid", "email", "profile"].map(normalize_scope);
    scopes.retain(|x| sign_in.contains(x) || !s.config.unticked.contains(x));
    if req.include_granted {
        scopes.extend(s.granted.iter().cloned());
    }
    s.granted.extend(scopes.iter().cloned());
    // Google hands out a refresh token at the consent screen of an offline request: the first
    // time, or again when `prompt=consent` forces the screen.
    let refresh = req.offline && (!s.offline_granted || req.prompt.iter().any(|p| p == "consent"));
    if req.offline {
        s.offline_granted = true;
    }
    let code = format!("4/0Afake{}", random_token(32));
    s.codes.insert(
        code.clone(),
        AuthCode {
            client_id: req.client_id,
            redirect_uri: req.redirect_raw,
            challenge: req.challenge,
            scopes: scopes.clone(),
            issued: Instant::now(),
            refresh,
            used: false,
        },
    );
    let scope = scopes.into_iter().collect::<Vec<_>>().join(" ");
    redirect(
        req.redirect_uri,
        &[
            ("state", &req.state),
            ("code", &code),
            ("scope", &scope),
            ("authuser", "0"),
            ("prompt", "consent"),
        ],
    )
}

/// `GET /o/oauth2/v2/auth`: validates, then approves or denies per configuration, or shows
/// the consent form (`ui=1` or `consent_ui`).
pub(super) async fn authorize(
    State(shared): State<Arc<Shared>>,
    RawQuery(q): RawQuery,
) -> Response {
    let p = params(q.as_deref().unwrap_or(""));
    let mut s = shared.lock();
    let req = match validate(&s, &p) {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    if p.get("ui").is_some_and(|v| v == "1") || s.config.consent_ui {
        return consent_page(&s.config.email, &req.scopes, &p);
    }
    let decision = s.config.decision;
    finish(&mut s, req, decision)
}

/// `POST /o/oauth2/v2/auth`: the consent form's Allow / Deny.
pub(super) async fn consent(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let p = params(&String::from_utf8_lossy(&body));
    let mut s = shared.lock();
    let req = match validate(&s, &p) {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let decision = match p.get("decision").map(String::as_str) {
        Some("allow") => AuthorizeDecision::Approve,
        Some("deny") => AuthorizeDecision::Deny,
        _ => {
            return error_page(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "Choose Allow or Deny.",
            );
        }
    };
    finish(&mut s, req, decision)
}

fn consent_page(email: &str, scopes: &BTreeSet<String>, p: &HashMap<String, String>) -> Response {
    let mut hidden = String::new();
    let mut keys: Vec<&String> = p
        .keys()
        .filter(|k| *k != "ui" && *k != "decision")
        .collect();
    keys.sort();
    for k in keys {
        hidden.push_str(&format!(
            "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
            html_escape(k),
            html_escape(&p[k])
        ));
    }
    let items: String = scopes
        .iter()
        .map(|s| format!("<li><code>{}</code></li>", html_escape(s)))
        .collect();
    let body = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>Sign in - Google Accounts (fake)</title></head><body><main>\
         <h1>mailroom wants to access your Google Account</h1>\
         <p id=\"account\">{email}</p>\
         <h2>This will allow mailroom to:</h2><ul>{items}</ul>\
         <form method=\"post\" action=\"/o/oauth2/v2/auth\">{hidden}\
         <button type=\"submit\" name=\"decision\" value=\"deny\" id=\"deny\">Cancel</button> \
         <button type=\"submit\" name=\"decision\" value=\"allow\" id=\"allow\">Allow</button>\
         </form></main></body></html>",
        email = html_escape(email),
    );
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        body,
    )
        .into_response()
}

pub(super) fn new_access_token(s: &mut FakeState, scopes: &BTreeSet<String>) -> (String, u64) {
    let token = format!("ya29.a0fake{}", random_token(48));
    let lifetime = s.config.access_token_lifetime_secs;
    s.access.insert(
        token.clone(),
        AccessToken {
            scopes: scopes.clone(),
            expires: Instant::now() + Duration::from_secs(lifetime),
        },
    );
    (token, lifetime)
}

pub(super) fn new_refresh_token(s: &mut FakeState, scopes: &BTreeSet<String>) -> String {
    let token = format!("1//0fake{}", random_token(48));
    s.refresh.insert(token.clone(), scopes.clone());
    token
}

pub(super) fn revoke_all(s: &mut FakeState) {
    s.access.clear();
    s.refresh.clear();
    s.granted.clear();
    s.offline_granted = false;
}

/// An OpenID Connect ID token. Its signature is not a real RS256 signature: a client that
/// received it straight from the token endpoint over TLS may rely on TLS instead (OIDC Core
/// 3.1.3.7), and mailroom must not need more.
fn id_token(s: &FakeState, scopes: &BTreeSet<String>) -> String {
    let now = now_ms() / 1000;
    let mut claims = json!({
        "iss": "https://accounts.google.com",
        "azp": s.config.client_id,
        "aud": s.config.client_id,
        "sub": format!("1{:020}", s.config.email.bytes().map(u64::from).sum::<u64>()),
        "iat": now,
        "exp": now + 3600,
    });
    if scopes.contains(USERINFO_EMAIL) {
        claims["email"] = json!(s.config.email);
        claims["email_verified"] = json!(true);
    }
    let header = json!({"alg": "RS256", "kid": "fake", "typ": "JWT"});
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        random_token(64)
    )
}

fn token_answer(
    s: &mut FakeState,
    scopes: &BTreeSet<String>,
    refresh_token: Option<String>,
) -> Response {
    let (access_token, expires_in) = new_access_token(s, scopes);
    let mut body = json!({
        "access_token": access_token,
        "expires_in": expires_in,
        "scope": scopes.iter().cloned().collect::<Vec<_>>().join(" "),
        "token_type": "Bearer",
    });
    if let Some(r) = refresh_token {
        body["refresh_token"] = json!(r);
    }
    if scopes.contains("openid") {
        body["id_token"] = json!(id_token(s, scopes));
    }
    (
        StatusCode::OK,
        [
            (header::CACHE_CONTROL, "no-store"),
            (header::PRAGMA, "no-cache"),
        ],
        axum::Json(body),
    )
        .into_response()
}

/// Client credentials from the form (`client_secret_post`) or HTTP Basic.
fn client_credentials(headers: &HeaderMap, p: &HashMap<String, String>) -> (String, String) {
    if let Some(basic) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        && let Ok(decoded) = STANDARD.decode(basic.trim())
        && let Ok(text) = String::from_utf8(decoded)
        && let Some((id, secret)) = text.split_once(':')
    {
        let dec = |x: &str| {
            url::form_urlencoded::parse(format!("v={x}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default()
        };
        return (dec(id), dec(secret));
    }
    (
        p.get("client_id").cloned().unwrap_or_default(),
        p.get("client_secret").cloned().unwrap_or_default(),
    )
}

/// `POST /token`.
pub(super) async fn token(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let p = params(&String::from_utf8_lossy(&body));
    let grant_type = p.get("grant_type").cloned().unwrap_or_default();
    let fault = {
        let mut s = shared.lock();
        *s.token_requests.entry(grant_type.clone()).or_default() += 1;
        next_fault(&mut s.token_faults)
    };
    if let Some(r) = super::apply_fault(fault, false).await {
        return r;
    }
    let mut s = shared.lock();
    let (client_id, client_secret) = client_credentials(&headers, &p);
    if client_id != s.config.client_id {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "The OAuth client was not found.",
        );
    }
    if client_secret != s.config.client_secret {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", "Unauthorized");
    }
    match grant_type.as_str() {
        "authorization_code" => {
            let Some(code) = p.get("code").filter(|c| !c.is_empty()) else {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "Missing required parameter: code",
                );
            };
            let Some(c) = s.codes.get_mut(code) else {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "Malformed auth code.",
                );
            };
            // A code is burnt by any attempt to redeem it (stricter than needed; mailroom
            // redeems once).
            let was_used = std::mem::replace(&mut c.used, true);
            if was_used || c.issued.elapsed() > CODE_LIFETIME || c.client_id != client_id {
                return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "Bad Request");
            }
            if p.get("redirect_uri").map(String::as_str) != Some(c.redirect_uri.as_str()) {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "redirect_uri_mismatch",
                    "Bad Request",
                );
            }
            let Some(verifier) = p.get("code_verifier").filter(|v| !v.is_empty()) else {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "Missing code verifier.",
                );
            };
            if URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes())) != c.challenge {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "Invalid code verifier.",
                );
            }
            let scopes = c.scopes.clone();
            let refresh = c.refresh.then(|| new_refresh_token(&mut s, &scopes));
            token_answer(&mut s, &scopes, refresh)
        }
        "refresh_token" => {
            let Some(rt) = p.get("refresh_token").filter(|r| !r.is_empty()) else {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "Missing required parameter: refresh_token",
                );
            };
            let Some(scopes) = s.refresh.get(rt).cloned() else {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "Token has been expired or revoked.",
                );
            };
            // No rotation: the answer has no refresh_token; the old one stays valid.
            token_answer(&mut s, &scopes, None)
        }
        "" => oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "Invalid grant_type: ",
        ),
        other => oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            &format!("Invalid grant_type: {other}"),
        ),
    }
}

/// `POST /revoke?token=…` (or the token in the form): revoking either token of a grant
/// revokes the grant.
pub(super) async fn revoke(
    State(shared): State<Arc<Shared>>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Response {
    let mut p = params(q.as_deref().unwrap_or(""));
    for (k, v) in params(&String::from_utf8_lossy(&body)) {
        p.entry(k).or_insert(v);
    }
    let token = p.get("token").cloned().unwrap_or_default();
    let mut s = shared.lock();
    let known = s.refresh.contains_key(&token)
        || s.access
            .get(&token)
            .is_some_and(|t| t.expires > Instant::now());
    if !known {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_token",
            "Token expired or revoked",
        );
    }
    revoke_all(&mut s);
    (StatusCode::OK, axum::Json(json!({}))).into_response()
}
