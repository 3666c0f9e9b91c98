//! Microsoft identity platform v2: authorize (with an optional consent page), token (code with
//! PKCE, refresh with rotation), and the Bearer check Graph uses.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use super::{
    AuthorizeDecision, MicrosoftConfig, Shared, aad_timestamp, html_escape, now, random_token, uuid,
};
use crate::fakes::Fault;

const GRAPH: &str = "https://graph.microsoft.com/";
const OUTLOOK: &str = "https://outlook.office.com/";
const OIDC: &[&str] = &["openid", "profile", "email", "offline_access"];
const CODE_LIFETIME: Duration = Duration::from_secs(600);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Resource {
    Graph,
    Outlook,
}

impl Resource {
    fn prefix(self) -> &'static str {
        match self {
            Resource::Graph => GRAPH,
            Resource::Outlook => OUTLOOK,
        }
    }
}

/// A parsed `scope` parameter.
#[derive(Debug, Clone, Default)]
struct Scopes {
    oidc: Vec<String>,
    /// (resource, permission name as written, e.g. `Mail.Send`).
    perms: Vec<(Resource, String)>,
}

impl Scopes {
    fn parse(s: &str) -> Result<Scopes, String> {
        let mut out = Scopes::default();
        for item in s.split_whitespace() {
            if OIDC.iter().any(|o| o.eq_ignore_ascii_case(item)) {
                out.oidc.push(item.to_ascii_lowercase());
                continue;
            }
            let (res, name) = if let Some(n) = strip_prefix_ci(item, GRAPH) {
                (Resource::Graph, n)
            } else if let Some(n) = strip_prefix_ci(item, OUTLOOK) {
                (Resource::Outlook, n)
            } else if item.contains("://") || item.contains('/') {
                return Err(item.to_owned());
            } else {
                (Resource::Graph, item)
            };
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-')
            {
                return Err(item.to_owned());
            }
            out.perms.push((res, name.to_owned()));
        }
        Ok(out)
    }

    fn has_oidc(&self, s: &str) -> bool {
        self.oidc.iter().any(|o| o == s)
    }

    fn resources(&self) -> Vec<Resource> {
        let mut r: Vec<Resource> = vec![];
        for (res, _) in &self.perms {
            if !r.contains(res) {
                r.push(*res);
            }
        }
        r
    }
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    (s.len() >= prefix.len() && s[..prefix.len()].eq_ignore_ascii_case(prefix))
        .then(|| &s[prefix.len()..])
}

struct Grant {
    /// Consented permissions.
    perms: Vec<(Resource, String)>,
    offline: bool,
    openid: bool,
    issued: OffsetDateTime,
    revoked: Option<OffsetDateTime>,
}

impl Grant {
    fn has(&self, res: Resource, name: &str) -> bool {
        self.perms
            .iter()
            .any(|(r, n)| *r == res && n.eq_ignore_ascii_case(name))
    }
}

struct Code {
    grant: usize,
    client_id: String,
    redirect_uri: String,
    challenge: Option<String>,
    issued: Instant,
    redeemed: bool,
}

struct Refresh {
    grant: usize,
    client_id: String,
    seq: u64,
}

pub(super) struct Access {
    grant: usize,
    pub(super) resource: Resource,
    /// Granted permission names (short form).
    pub(super) perms: Vec<String>,
    expires: Instant,
    seq: u64,
}

#[derive(Default)]
pub(super) struct Identity {
    grants: Vec<Grant>,
    codes: HashMap<String, Code>,
    refresh: HashMap<String, Refresh>,
    access: HashMap<String, Access>,
    /// Consent-page requests waiting for a button: id → the authorize query.
    pending: HashMap<String, Vec<(String, String)>>,
    seq: u64,
    refresh_expired_below: u64,
    access_expired_below: u64,
    pub(super) refreshes: usize,
}

/// A token-endpoint refusal.
struct AadError {
    status: StatusCode,
    error: &'static str,
    code: i64,
    text: String,
}

fn aad(status: u16, error: &'static str, code: i64, text: impl Into<String>) -> AadError {
    AadError {
        status: StatusCode::from_u16(status).expect("status"),
        error,
        code,
        text: text.into(),
    }
}

fn missing(param: &str) -> AadError {
    aad(
        400,
        "invalid_request",
        900144,
        format!("The request body must contain the following parameter: '{param}'."),
    )
}

impl AadError {
    /// `AADSTS70008: … Trace ID: … Correlation ID: … Timestamp: …`, as AAD writes it.
    fn description(&self, trace: &str, corr: &str, ts: &str) -> String {
        format!(
            "AADSTS{}: {}\r\nTrace ID: {trace}\r\nCorrelation ID: {corr}\r\nTimestamp: {ts}",
            self.code, self.text
        )
    }

    fn into_response(self) -> Response {
        let (trace, corr, ts) = (uuid(), uuid(), aad_timestamp(now()));
        let body = json!({
            "error": self.error,
            "error_description": self.description(&trace, &corr, &ts),
            "error_codes": [self.code],
            "timestamp": ts,
            "trace_id": trace,
            "correlation_id": corr,
            "error_uri": format!("https://login.microsoftonline.com/error?code={}", self.code),
        });
        let mut resp = (self.status, axum::Json(body)).into_response();
        no_store(resp.headers_mut());
        resp
    }
}

fn no_store(h: &mut HeaderMap) {
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-store, no-cache"),
    );
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}

impl Identity {
    pub(super) fn revoke_all(&mut self) {
        let t = now();
        for g in &mut self.grants {
            g.revoked.get_or_insert(t);
        }
    }

    pub(super) fn expire_refresh_tokens(&mut self) {
        self.refresh_expired_below = self.seq + 1;
    }

    pub(super) fn expire_access_tokens(&mut self) {
        self.access_expired_below = self.seq + 1;
    }

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    fn new_grant(&mut self, scopes: &Scopes) -> usize {
        let mut perms = scopes.perms.clone();
        // `User.Read` is on every app registration by default and consented with it.
        if !perms
            .iter()
            .any(|(r, n)| *r == Resource::Graph && n.eq_ignore_ascii_case("User.Read"))
        {
            perms.push((Resource::Graph, "User.Read".into()));
        }
        self.grants.push(Grant {
            perms,
            offline: scopes.has_oidc("offline_access"),
            openid: scopes.has_oidc("openid"),
            issued: now(),
            revoked: None,
        });
        self.grants.len() - 1
    }

    pub(super) fn mint(
        &mut self,
        cfg: &MicrosoftConfig,
        scope: &str,
    ) -> Result<(String, String), String> {
        let mut scopes = Scopes::parse(scope)?;
        scopes.oidc.push("offline_access".into());
        let grant = self.new_grant(&scopes);
        let client = cfg.client_id.clone();
        let t = self.issue(cfg, grant, &client, None).map_err(|e| e.text)?;
        Ok((
            t["access_token"].as_str().unwrap_or_default().to_owned(),
            t["refresh_token"].as_str().unwrap_or_default().to_owned(),
        ))
    }

    /// Tokens for `grant`, for one resource: the one `requested` names (which must be within the
    /// consent), or Graph.
    fn issue(
        &mut self,
        cfg: &MicrosoftConfig,
        grant: usize,
        client_id: &str,
        requested: Option<&Scopes>,
    ) -> Result<Value, AadError> {
        let resource = match requested {
            Some(s) => {
                let res = s.resources();
                if res.len() > 1 {
                    return Err(aad(
                        400,
                        "invalid_request",
                        28000,
                        "Provided value for the input parameter scope is not valid because it contains more than one resource.",
                    ));
                }
                let r = res.first().copied().unwrap_or(Resource::Graph);
                let g = &self.grants[grant];
                if let Some((_, n)) = s
                    .perms
                    .iter()
                    .find(|(rr, n)| !g.has(*rr, n) && n != ".default")
                {
                    return Err(aad(
                        400,
                        "invalid_grant",
                        65001,
                        format!(
                            "The user or administrator has not consented to use the application with ID '{client_id}'. Send an interactive authorization request for this user and resource. (scope '{n}')"
                        ),
                    ));
                }
                r
            }
            None => Resource::Graph,
        };
        let g = &self.grants[grant];
        let perms: Vec<String> = g
            .perms
            .iter()
            .filter(|(r, _)| *r == resource)
            .map(|(_, n)| n.clone())
            .collect();
        let scope_str = perms
            .iter()
            .map(|p| format!("{}{p}", resource.prefix()))
            .collect::<Vec<_>>()
            .join(" ");
        let (offline, openid) = (g.offline, g.openid);
        let lifetime = cfg.access_token_lifetime;
        let seq = self.next_seq();
        let access_token = format!("EwB{}", random_token(96));
        self.access.insert(
            access_token.clone(),
            Access {
                grant,
                resource,
                perms,
                expires: Instant::now() + lifetime,
                seq,
            },
        );
        let secs = lifetime.as_secs();
        let mut body = json!({
            "token_type": "Bearer",
            "scope": scope_str,
            "expires_in": secs,
            "ext_expires_in": secs,
            "access_token": access_token,
        });
        if offline {
            let rt = format!("M.C5{}", random_token(120));
            self.refresh.insert(
                rt.clone(),
                Refresh {
                    grant,
                    client_id: client_id.to_owned(),
                    seq,
                },
            );
            body["refresh_token"] = json!(rt);
        }
        if openid {
            body["id_token"] = json!(id_token(cfg));
        }
        Ok(body)
    }

    /// The Bearer check for Graph (`Ok` = granted permission names) or the 401 message.
    pub(super) fn check_bearer(
        &self,
        headers: &HeaderMap,
        want: Resource,
    ) -> Result<Vec<String>, &'static str> {
        let Some(v) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
        else {
            return Err("Access token is empty.");
        };
        let tok = match v.split_once(' ') {
            Some((scheme, t)) if scheme.eq_ignore_ascii_case("bearer") && !t.trim().is_empty() => {
                t.trim()
            }
            _ => return Err("Access token is empty."),
        };
        let Some(a) = self.access.get(tok) else {
            return Err("IDX14100: JWT is not well formed, there are no dots (.).");
        };
        if a.resource != want {
            return Err("Access token validation failure. Invalid audience.");
        }
        if Instant::now() >= a.expires || a.seq < self.access_expired_below {
            return Err("Lifetime validation failed, the token is expired.");
        }
        if self.grants[a.grant].revoked.is_some() {
            return Err("Access token has expired or is not yet valid.");
        }
        Ok(a.perms.clone())
    }
}

/// An id_token shaped like AAD's (a JWT; the signature is not a real one, and nobody should
/// verify a token received directly from the token endpoint over TLS anyway).
fn id_token(cfg: &MicrosoftConfig) -> String {
    let t = now().unix_timestamp();
    let header = json!({"typ": "JWT", "alg": "RS256", "kid": "fake-microsoft-key"});
    let claims = json!({
        "aud": cfg.client_id,
        "iss": format!("https://login.microsoftonline.com/{}/v2.0", cfg.tenant_id),
        "iat": t, "nbf": t, "exp": t + 3600,
        "name": cfg.display_name,
        "oid": cfg.user_id,
        "preferred_username": cfg.user_principal_name,
        "email": cfg.mail,
        "sub": URL_SAFE_NO_PAD.encode(Sha256::digest(cfg.user_id.as_bytes())),
        "tid": cfg.tenant_id,
        "ver": "2.0",
    });
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        random_token(64)
    )
}

fn error_page(code: i64, text: &str) -> Response {
    let body = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Sign in to your account</title></head>\
         <body><main><h1>Sorry, but we're having trouble signing you in.</h1>\
         <p id=\"error\">AADSTS{code}: {}</p></main></body></html>",
        html_escape(text)
    );
    (StatusCode::BAD_REQUEST, Html(body)).into_response()
}

fn redirect(uri: &str, params: &[(&str, &str)]) -> Response {
    let mut u = url::Url::parse(uri).expect("validated redirect URI");
    {
        let mut q = u.query_pairs_mut();
        for (k, v) in params {
            q.append_pair(k, v);
        }
    }
    let mut resp = StatusCode::FOUND.into_response();
    resp.headers_mut().insert(
        header::LOCATION,
        HeaderValue::from_str(u.as_str()).expect("location"),
    );
    no_store(resp.headers_mut());
    resp
}

fn error_redirect(
    uri: &str,
    state: Option<&str>,
    error: &str,
    code: i64,
    text: &str,
    subcode: Option<&str>,
) -> Response {
    let (trace, corr, ts) = (uuid(), uuid(), aad_timestamp(now()));
    let desc = format!(
        "AADSTS{code}: {text}\r\nTrace ID: {trace}\r\nCorrelation ID: {corr}\r\nTimestamp: {ts}"
    );
    let mut p: Vec<(&str, &str)> = vec![("error", error), ("error_description", &desc)];
    if let Some(s) = subcode {
        p.push(("error_subcode", s));
    }
    if let Some(s) = state {
        p.push(("state", s));
    }
    redirect(uri, &p)
}

fn first<'a>(q: &'a [(String, String)], k: &str) -> Option<&'a str> {
    q.iter().find(|(kk, _)| kk == k).map(|(_, v)| v.as_str())
}

fn tenant_ok(cfg: &MicrosoftConfig, tenant: &str) -> bool {
    ["common", "organizations", "consumers"].contains(&tenant)
        || tenant.eq_ignore_ascii_case(&cfg.tenant_id)
}

fn redirect_ok(cfg: &MicrosoftConfig, uri: &str) -> bool {
    let Ok(u) = url::Url::parse(uri) else {
        return false;
    };
    if cfg.redirect_uris.is_empty() {
        matches!(u.scheme(), "http" | "https") && u.fragment().is_none()
    } else {
        cfg.redirect_uris.iter().any(|r| r == uri)
    }
}

pub(super) async fn authorize(
    State(st): State<Arc<Shared>>,
    Path(tenant): Path<String>,
    RawQuery(raw): RawQuery,
) -> Response {
    let q: Vec<(String, String)> = url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
        .into_owned()
        .collect();
    let cfg = st.cfg();
    if !tenant_ok(&cfg, &tenant) {
        return error_page(
            90002,
            &format!(
                "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud."
            ),
        );
    }
    let Some(client_id) = first(&q, "client_id") else {
        return error_page(
            900144,
            "The request body must contain the following parameter: 'client_id'.",
        );
    };
    if client_id != cfg.client_id {
        return error_page(
            700016,
            &format!(
                "Application with identifier '{client_id}' was not found in the directory '{tenant}'."
            ),
        );
    }
    let Some(redirect_uri) = first(&q, "redirect_uri") else {
        return error_page(
            900144,
            "The request body must contain the following parameter: 'redirect_uri'.",
        );
    };
    if !redirect_ok(&cfg, redirect_uri) {
        return error_page(
            50011,
            &format!(
                "The redirect URI '{redirect_uri}' specified in the request does not match the redirect URIs configured for the application '{client_id}'."
            ),
        );
    }
    let state = first(&q, "state");
    let fail = |error: &str, code: i64, text: &str| {
        error_redirect(redirect_uri, state, error, code, text, None)
    };
    match first(&q, "response_type") {
        None => {
            return fail(
                "invalid_request",
                900144,
                "The request body must contain the following parameter: 'response_type'.",
            );
        }
        Some("code") => {}
        Some(other) => {
            return fail(
                "unsupported_response_type",
                70005,
                &format!(
                    "response_type '{other}' is not supported for this client (the fake implements the code flow)."
                ),
            );
        }
    }
    match first(&q, "response_mode") {
        None | Some("query") => {}
        Some(other) => {
            return fail(
                "invalid_request",
                900144,
                &format!("response_mode '{other}' is not supported here; use response_mode=query."),
            );
        }
    }
    let Some(scope) = first(&q, "scope").filter(|s| !s.trim().is_empty()) else {
        return fail(
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'scope'.",
        );
    };
    let scopes = match Scopes::parse(scope) {
        Ok(s) => s,
        Err(bad) => {
            return fail(
                "invalid_scope",
                70011,
                &format!(
                    "The provided request must include a 'scope' input parameter. The provided value for the input parameter 'scope' is not valid ('{bad}')."
                ),
            );
        }
    };
    let Some(challenge) = first(&q, "code_challenge") else {
        return fail(
            "invalid_request",
            9002325,
            "Proof Key for Code Exchange is required for cross-origin authorization code redemption.",
        );
    };
    if first(&q, "code_challenge_method") != Some("S256") {
        return fail(
            "invalid_request",
            50149,
            "Invalid Code_Challenge_method parameter.",
        );
    }
    if !(43..=128).contains(&challenge.len())
        || !challenge
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return fail(
            "invalid_request",
            501491,
            "InvalidCodeChallengeMethodInvalidSize - Invalid size of Code_Challenge parameter.",
        );
    }
    if let Some(p) = first(&q, "prompt")
        && !["login", "none", "consent", "select_account"].contains(&p)
    {
        return fail(
            "invalid_request",
            90023,
            &format!("Invalid prompt value '{p}'."),
        );
    }
    if first(&q, "ui") == Some("1") {
        let id = random_token(18);
        st.identity
            .lock()
            .unwrap()
            .pending
            .insert(id.clone(), q.clone());
        return consent_page(&cfg, &tenant, &id, &scopes);
    }
    let decision = cfg.decision;
    finish_authorize(&st, &q, &scopes, decision == AuthorizeDecision::Approve)
}

fn finish_authorize(
    st: &Shared,
    q: &[(String, String)],
    scopes: &Scopes,
    approve: bool,
) -> Response {
    let redirect_uri = first(q, "redirect_uri").unwrap_or_default();
    let state = first(q, "state");
    if !approve {
        return error_redirect(
            redirect_uri,
            state,
            "access_denied",
            65004,
            "User declined to consent to access the app.",
            Some("cancel"),
        );
    }
    let code = format!("1.A{}", random_token(96));
    {
        let mut id = st.identity.lock().unwrap();
        let grant = id.new_grant(scopes);
        id.codes.insert(
            code.clone(),
            Code {
                grant,
                client_id: first(q, "client_id").unwrap_or_default().to_owned(),
                redirect_uri: redirect_uri.to_owned(),
                challenge: first(q, "code_challenge").map(str::to_owned),
                issued: Instant::now(),
                redeemed: false,
            },
        );
    }
    let session_state = uuid();
    let mut p: Vec<(&str, &str)> = vec![("code", &code)];
    if let Some(s) = state {
        p.push(("state", s));
    }
    p.push(("session_state", &session_state));
    redirect(redirect_uri, &p)
}

fn consent_page(cfg: &MicrosoftConfig, tenant: &str, id: &str, scopes: &Scopes) -> Response {
    let mut items = String::new();
    for (res, name) in &scopes.perms {
        let what = match (res, name.to_ascii_lowercase().as_str()) {
            (Resource::Graph, "mail.send") => "Send mail as you".to_owned(),
            (Resource::Graph, "mail.readwrite") => "Read and write access to your mail".to_owned(),
            (Resource::Graph, "mail.read") => "Read your mail".to_owned(),
            (Resource::Graph, "user.read") => "Sign you in and read your profile".to_owned(),
            _ => format!("{}{name}", res.prefix()),
        };
        items.push_str(&format!("<li>{}</li>", html_escape(&what)));
    }
    if scopes.has_oidc("offline_access") {
        items.push_str("<li>Maintain access to data you have given it access to</li>");
    }
    let body = format!(
        r#"<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Permissions requested</title>
<style>body{{font-family:system-ui,sans-serif;background:#f2f2f2;margin:0}}main{{max-width:28rem;margin:3rem auto;background:#fff;padding:2rem;box-shadow:0 2px 6px rgba(0,0,0,.2)}}button{{font-size:1rem;padding:.5rem 1.5rem;margin-right:.5rem}}</style>
</head>
<body><main>
<p>{mail}</p>
<h1>Permissions requested</h1>
<p>The application <strong>{client}</strong> needs permission to:</p>
<ul>{items}</ul>
<form method="post" action="/{tenant}/oauth2/v2.0/consent">
<input type="hidden" name="request" value="{id}">
<button type="submit" name="decision" value="accept" id="idBtn_Accept">Accept</button>
<button type="submit" name="decision" value="cancel" id="idBtn_Back">Cancel</button>
</form>
</main></body></html>"#,
        mail = html_escape(&cfg.mail),
        client = html_escape(&cfg.client_id),
        tenant = html_escape(tenant),
        id = html_escape(id),
    );
    let mut resp = Html(body).into_response();
    no_store(resp.headers_mut());
    resp
}

pub(super) async fn consent(State(st): State<Arc<Shared>>, body: Bytes) -> Response {
    let f: Vec<(String, String)> = url::form_urlencoded::parse(&body).into_owned().collect();
    let pending =
        first(&f, "request").and_then(|id| st.identity.lock().unwrap().pending.remove(id));
    let Some(q) = pending else {
        return error_page(
            90014,
            "The consent request is unknown or was already answered.",
        );
    };
    let scopes = Scopes::parse(first(&q, "scope").unwrap_or_default()).unwrap_or_default();
    let approve = first(&f, "decision") == Some("accept");
    finish_authorize(&st, &q, &scopes, approve)
}

pub(super) async fn token(
    State(st): State<Arc<Shared>>,
    Path(tenant): Path<String>,
    body: Bytes,
) -> Response {
    let fault = st.token_faults.lock().unwrap().pop_front();
    match fault {
        Some(Fault::Throttle { retry_after_secs }) => {
            let mut r = aad(
                429,
                "temporarily_unavailable",
                90033,
                "A transient error has occurred. Please try again.",
            )
            .into_response();
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
            return r;
        }
        Some(Fault::ServerError) => {
            let mut r = aad(
                503,
                "temporarily_unavailable",
                90033,
                "A transient error has occurred. Please try again.",
            )
            .into_response();
            r.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(st.cfg().retry_after_secs_on_503),
            );
            return r;
        }
        Some(Fault::Latency(d)) => tokio::time::sleep(d).await,
        Some(Fault::RateLimit403) | None => {}
    }
    let cfg = st.cfg();
    let f: Vec<(String, String)> = url::form_urlencoded::parse(&body).into_owned().collect();
    let result = if !tenant_ok(&cfg, &tenant) {
        Err(aad(
            400,
            "invalid_request",
            90002,
            format!("Tenant '{tenant}' not found."),
        ))
    } else {
        token_inner(&st, &cfg, &f)
    };
    match result {
        Ok(v) => {
            let mut r = (StatusCode::OK, axum::Json(v)).into_response();
            no_store(r.headers_mut());
            r
        }
        Err(e) => e.into_response(),
    }
}

fn token_inner(
    st: &Shared,
    cfg: &MicrosoftConfig,
    f: &[(String, String)],
) -> Result<Value, AadError> {
    let grant_type = first(f, "grant_type").ok_or_else(|| missing("grant_type"))?;
    if grant_type == "refresh_token" {
        st.identity.lock().unwrap().refreshes += 1;
    }
    let client_id = first(f, "client_id").ok_or_else(|| missing("client_id"))?;
    if client_id != cfg.client_id {
        return Err(aad(
            400,
            "unauthorized_client",
            700016,
            format!("Application with identifier '{client_id}' was not found in the directory."),
        ));
    }
    let Some(secret) = first(f, "client_secret") else {
        return Err(aad(
            401,
            "invalid_client",
            7000218,
            "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
        ));
    };
    if secret != cfg.client_secret {
        return Err(aad(
            401,
            "invalid_client",
            7000215,
            format!(
                "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{client_id}'."
            ),
        ));
    }
    let requested = match first(f, "scope") {
        Some(s) => Some(Scopes::parse(s).map_err(|bad| {
            aad(
                400,
                "invalid_scope",
                70011,
                format!(
                    "The provided value for the input parameter 'scope' is not valid ('{bad}')."
                ),
            )
        })?),
        None => None,
    };
    let mut id = st.identity.lock().unwrap();
    match grant_type {
        "authorization_code" => {
            let code = first(f, "code").ok_or_else(|| missing("code"))?;
            let Some(c) = id.codes.get(code) else {
                return Err(aad(
                    400,
                    "invalid_grant",
                    9002313,
                    "Invalid request. Request is malformed or invalid.",
                ));
            };
            if c.redeemed {
                return Err(aad(
                    400,
                    "invalid_grant",
                    54005,
                    "OAuth2 Authorization code was already redeemed, please retry with a new valid code or use an existing refresh token.",
                ));
            }
            if c.issued.elapsed() > CODE_LIFETIME {
                return Err(aad(
                    400,
                    "invalid_grant",
                    70008,
                    "The provided authorization code or refresh token has expired due to inactivity. Send a new interactive authorization request for this user and resource.",
                ));
            }
            if c.client_id != client_id {
                return Err(aad(
                    400,
                    "invalid_grant",
                    70000,
                    "Provided grant is invalid or malformed.",
                ));
            }
            let redirect_uri = first(f, "redirect_uri").ok_or_else(|| missing("redirect_uri"))?;
            if redirect_uri != c.redirect_uri {
                return Err(aad(
                    400,
                    "invalid_request",
                    50011,
                    format!(
                        "The redirect URI '{redirect_uri}' specified in the request does not match the redirect URI used to obtain the authorization code."
                    ),
                ));
            }
            if let Some(ch) = &c.challenge {
                let Some(verifier) = first(f, "code_verifier") else {
                    return Err(aad(
                        400,
                        "invalid_grant",
                        50148,
                        "The code_verifier does not match the code_challenge supplied in the authorization request for PKCE.",
                    ));
                };
                if URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes())) != *ch {
                    return Err(aad(
                        400,
                        "invalid_grant",
                        501481,
                        "The Code_Verifier does not match the code_challenge supplied in the authorization request.",
                    ));
                }
            }
            let grant = c.grant;
            if let Some(at) = id.grants[grant].revoked {
                return Err(revoked(id.grants[grant].issued, at));
            }
            let body = id.issue(cfg, grant, client_id, requested.as_ref())?;
            id.codes.get_mut(code).expect("code").redeemed = true;
            Ok(body)
        }
        "refresh_token" => {
            let rt = first(f, "refresh_token").ok_or_else(|| missing("refresh_token"))?;
            let requested = requested.ok_or_else(|| missing("scope"))?;
            let Some(r) = id.refresh.get(rt) else {
                return Err(aad(
                    400,
                    "invalid_grant",
                    9002313,
                    "Invalid request. Request is malformed or invalid.",
                ));
            };
            if r.client_id != client_id {
                return Err(aad(
                    400,
                    "invalid_grant",
                    70000,
                    "Provided grant is invalid or malformed.",
                ));
            }
            let grant = r.grant;
            if let Some(at) = id.grants[grant].revoked {
                return Err(revoked(id.grants[grant].issued, at));
            }
            if r.seq < id.refresh_expired_below {
                return Err(aad(
                    400,
                    "invalid_grant",
                    70008,
                    "The provided authorization code or refresh token has expired due to inactivity. Send a new interactive authorization request for this user and resource.",
                ));
            }
            id.issue(cfg, grant, client_id, Some(&requested))
        }
        other => Err(aad(
            400,
            "unsupported_grant_type",
            70003,
            format!("The app requested an unsupported grant type '{other}'."),
        )),
    }
}

fn revoked(issued: OffsetDateTime, at: OffsetDateTime) -> AadError {
    aad(
        400,
        "invalid_grant",
        50173,
        format!(
            "The provided grant has expired due to it being revoked, a fresh auth token is needed. The user might have changed or reset their password. The grant was issued on '{}' and the TokensValidFrom date (before which tokens are not valid) for this user is '{}'.",
            super::iso7(issued),
            super::iso7(at)
        ),
    )
}
