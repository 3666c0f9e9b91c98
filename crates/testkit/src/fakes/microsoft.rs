//! Fake Microsoft: the identity platform v2 (`/{tenant}/oauth2/v2.0/authorize` and `/token`)
//! and Microsoft Graph v1.0 mail (`/v1.0/me/…`, plus the pre-authenticated Outlook upload URLs
//! under `/api/v2.0/…`), built from the published docs (`reference/providers.md` B) and the
//! `@microsoft/microsoft-graph-types` definitions. One axum server on `127.0.0.1:0`.
//!
//! What it enforces (a fake easier than the service proves nothing):
//!
//! - **Authorize**: tenant, `client_id`, `redirect_uri` (registered ones, or any http(s) URL when
//!   none are configured) are checked on an error page; then `response_type=code`,
//!   `response_mode=query`, a valid `scope`, PKCE `S256` with a 43–128 character challenge and a
//!   valid `prompt` are checked with an error redirect. Approve → `302 redirect_uri?code&state`;
//!   deny → `error=access_denied` with AADSTS65004. `ui=1` renders a no-JS consent form.
//! - **Token**: client id and secret (401 `invalid_client` [7000215]), single-use codes
//!   ([54005]), code lifetime 10 min ([70008]), redirect URI equality, PKCE verification
//!   ([50148] missing, [501481] mismatch), one resource per token, scopes within the consent
//!   ([65001]), refresh-token rotation (old tokens stay valid), revocation ([50173]) and
//!   expiry ([70008]); error bodies as AAD writes them.
//! - **Graph**: Bearer tokens (401 `InvalidAuthenticationToken`: missing, unknown, expired,
//!   revoked, wrong audience), permissions per route (403 `ErrorAccessDenied`), the 4 MB write
//!   limit (413 `RequestBodyTooLarge`), `Content-Length` on empty POSTs (411), JSON property
//!   names against the Message type, `x-` custom headers, recipients on send
//!   (`ErrorInvalidRecipients`), upload sessions only from 3 MB to 150 MB, the tenant's maximum
//!   message size (`ErrorMessageSizeExceeded`), ranged PUTs in order, ≤ 4 MB, with a valid
//!   `authtoken` and **no** `Authorization` header; new ids when a draft moves to Sent Items.
//! - **Throttling**: optionally more than N concurrent Graph requests → 429
//!   `ApplicationThrottled`; injected 429 / 503 with `Retry-After` and latency.

mod delta;
mod graph;
mod identity;
mod mailbox;
mod subscriptions;

pub use self::subscriptions::MAX_MESSAGE_SUBSCRIPTION_MINUTES;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::header;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{any, get, post};
use base64::Engine as _;
use serde_json::Value;
use time::OffsetDateTime;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::Fault;

/// Every Graph write request is limited to 4 MB (and each upload-session PUT too).
pub const MAX_REQUEST_BYTES: usize = 4 * 1024 * 1024;
/// `createUploadSession` refuses smaller files (`ErrorAttachmentSizeShouldNotBeLessThanMinimumSize`).
/// The docs say "3 MB"; this is the decimal reading, so every size is covered by exactly one
/// route together with the 4 MB limit on a direct attachment POST.
pub const MIN_UPLOAD_SESSION_BYTES: u64 = 3_000_000;
/// Upload sessions take files up to 150 MB.
pub const MAX_UPLOAD_SESSION_BYTES: u64 = 150 * 1024 * 1024;
/// Exchange Online's default maximum message size (35 MB), tenant-configurable up to 150 MB.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 35 * 1024 * 1024;
/// Outlook's per-app, per-mailbox concurrency limit.
pub const MAILBOX_CONCURRENCY: usize = 4;

/// How the authorize endpoint answers (changeable at runtime with
/// [`FakeMicrosoft::set_decision`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthorizeDecision {
    Approve,
    Deny,
}

/// The app registration and the signed-in user.
#[derive(Debug, Clone)]
pub struct MicrosoftConfig {
    pub client_id: String,
    pub client_secret: String,
    /// Registered redirect URIs; empty accepts any absolute http(s) URL.
    pub redirect_uris: Vec<String>,
    pub tenant_id: String,
    pub user_id: String,
    pub mail: String,
    pub user_principal_name: String,
    pub display_name: String,
    pub access_token_lifetime: Duration,
    pub decision: AuthorizeDecision,
    /// The tenant's maximum message size (body and attachments).
    pub max_message_size: usize,
    /// `Retry-After` on injected 503s.
    pub retry_after_secs_on_503: u64,
}

impl Default for MicrosoftConfig {
    fn default() -> Self {
        Self {
            client_id: "6731de76-14a6-49ae-97bc-6eba6914391e".into(),
            client_secret: "fake~microsoft~client~secret".into(),
            redirect_uris: vec![],
            tenant_id: "72aa88bf-76f0-494f-91ab-2d7cd730db47".into(),
            user_id: "a8e8e219-4931-95c1-b73d-62626fd79c32".into(),
            mail: "adele@contoso.example".into(),
            user_principal_name: "adele@contoso.example".into(),
            display_name: "Adele Vance".into(),
            access_token_lifetime: Duration::from_secs(3599),
            decision: AuthorizeDecision::Approve,
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            retry_after_secs_on_503: 1,
        }
    }
}

/// How a message reached the fake's outgoing queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SentVia {
    /// `POST /me/sendMail` (JSON or MIME).
    SendMail,
    /// `POST /me/messages/{id}/send` (a draft, possibly from `createReply`) or `…/reply`.
    Draft,
}

/// What recipients receive.
#[derive(Debug, Clone, PartialEq)]
pub enum SentContent {
    /// The MIME given to `sendMail`, with the Bcc header removed.
    Mime(Vec<u8>),
    /// The message resource as Graph renders it, without `bccRecipients`.
    Json(Value),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentAttachment {
    pub name: String,
    pub content_type: String,
    pub size: usize,
    pub bytes: Vec<u8>,
    pub is_inline: bool,
    pub content_id: Option<String>,
}

/// A message the fake accepted for delivery.
#[derive(Debug, Clone, PartialEq)]
pub struct SentItem {
    pub via: SentVia,
    pub content: SentContent,
    pub subject: String,
    pub internet_message_id: String,
    pub to: Vec<String>,
    pub cc: Vec<String>,
    pub bcc: Vec<String>,
    pub attachments: Vec<SentAttachment>,
    pub conversation_id: String,
    /// `x-` headers (JSON routes) or every top-level header but Bcc (MIME route).
    pub headers: Vec<(String, String)>,
    /// The id of the copy in Sent Items, unless `saveToSentItems` was false.
    pub sent_items_id: Option<String>,
}

/// A message placed in the inbox by [`FakeMicrosoft::deliver_inbound`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundMessage {
    /// The default id (it changes when the message moves).
    pub id: String,
    /// The id under `Prefer: IdType="ImmutableId"` (mailroom's provider id).
    pub immutable_id: String,
    pub internet_message_id: String,
    pub conversation_id: String,
}

/// One request the fake answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedRequest {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub status: u16,
    pub authorization: bool,
    pub content_range: Option<String>,
    pub content_length: Option<u64>,
}

/// A JSON body the fake emitted, with the Graph type it claims to be (`Message`,
/// `Collection(Message)`, `UploadSession`, …). `Outlook:` prefixed types come from the
/// Outlook REST upload endpoint, which capitalises some names.
#[derive(Debug, Clone, PartialEq)]
pub struct Emitted {
    pub entity: String,
    pub body: Value,
}

/// Tokens minted directly by [`FakeMicrosoft::mint_tokens`].
#[derive(Debug, Clone)]
pub struct MintedTokens {
    pub access_token: String,
    pub refresh_token: String,
}

struct Shared {
    cfg: Mutex<MicrosoftConfig>,
    base: String,
    identity: Mutex<identity::Identity>,
    mailbox: Mutex<mailbox::Mailbox>,
    graph_faults: Mutex<VecDeque<Fault>>,
    token_faults: Mutex<VecDeque<Fault>>,
    concurrency_limit: Mutex<Option<usize>>,
    /// Messages the mailbox may still submit before its sending quota is used up (`None`: no
    /// quota).
    send_allowance: Mutex<Option<usize>>,
    in_flight: AtomicUsize,
    throttled: AtomicUsize,
    gate: watch::Sender<bool>,
    log: Mutex<Vec<LoggedRequest>>,
    emitted: Mutex<Vec<Emitted>>,
    subscriptions: Mutex<subscriptions::Subscriptions>,
}

impl Shared {
    fn cfg(&self) -> MicrosoftConfig {
        self.cfg.lock().unwrap().clone()
    }

    /// Tells the subscriptions that message `m` was `change`d (`created`, `updated`,
    /// `deleted`).
    fn changed(&self, change: &str, m: &mailbox::Msg) {
        let cfg = self.cfg();
        subscriptions::notify(
            &self.subscriptions.lock().unwrap(),
            &cfg.user_id,
            &cfg.tenant_id,
            change,
            m,
        );
    }
}

/// The running fake. Dropping it stops the server.
pub struct FakeMicrosoft {
    base: url::Url,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Drop for FakeMicrosoft {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeMicrosoft {
    /// Starts on `127.0.0.1:0`.
    pub async fn start(cfg: MicrosoftConfig) -> FakeMicrosoft {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), cfg)
            .await
            .expect("bind the fake Microsoft server")
    }

    /// Starts on `addr` (the standalone `mailroom-fakes` binary picks the port).
    pub async fn start_on(
        addr: SocketAddr,
        cfg: MicrosoftConfig,
    ) -> std::io::Result<FakeMicrosoft> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        let base = format!("http://{local}");
        let (gate, _) = watch::channel(true);
        let shared = Arc::new(Shared {
            identity: Mutex::new(identity::Identity::default()),
            mailbox: Mutex::new(mailbox::Mailbox::new(&cfg)),
            cfg: Mutex::new(cfg),
            base: base.clone(),
            graph_faults: Mutex::new(VecDeque::new()),
            token_faults: Mutex::new(VecDeque::new()),
            concurrency_limit: Mutex::new(None),
            send_allowance: Mutex::new(None),
            in_flight: AtomicUsize::new(0),
            throttled: AtomicUsize::new(0),
            gate,
            log: Mutex::new(vec![]),
            emitted: Mutex::new(vec![]),
            subscriptions: Mutex::new(subscriptions::Subscriptions::default()),
        });
        let app = Router::new()
            .route("/{tenant}/oauth2/v2.0/authorize", get(identity::authorize))
            .route("/{tenant}/oauth2/v2.0/consent", post(identity::consent))
            .route("/{tenant}/oauth2/v2.0/token", post(identity::token))
            .route("/v1.0/{*rest}", any(graph::entry))
            .route("/api/v2.0/{*rest}", any(graph::upload_entry))
            .layer(middleware::from_fn_with_state(shared.clone(), log_requests))
            .layer(DefaultBodyLimit::disable())
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(FakeMicrosoft {
            base: url::Url::parse(&base).expect("base URL"),
            shared,
            task,
        })
    }

    /// `http://127.0.0.1:PORT/`.
    pub fn base_url(&self) -> url::Url {
        self.base.clone()
    }

    /// For `MAILROOM_MICROSOFT_AUTH_URL`.
    pub fn auth_url(&self) -> url::Url {
        self.base.join("common/oauth2/v2.0/authorize").unwrap()
    }

    /// For `MAILROOM_MICROSOFT_TOKEN_URL`.
    pub fn token_url(&self) -> url::Url {
        self.base.join("common/oauth2/v2.0/token").unwrap()
    }

    /// For `MAILROOM_GRAPH_API_URL`.
    pub fn graph_url(&self) -> url::Url {
        self.base.join("v1.0").unwrap()
    }

    pub fn config(&self) -> MicrosoftConfig {
        self.shared.cfg()
    }

    pub fn set_decision(&self, decision: AuthorizeDecision) {
        self.shared.cfg.lock().unwrap().decision = decision;
    }

    /// Revokes every grant issued so far (as a password reset or "revoke sessions" does):
    /// their refresh tokens answer `invalid_grant` [50173] and their access tokens 401.
    /// A new consent works again.
    pub fn revoke(&self) {
        self.shared.identity.lock().unwrap().revoke_all();
    }

    /// Every refresh token issued so far answers `invalid_grant` [70008].
    pub fn expire_refresh_tokens(&self) {
        self.shared.identity.lock().unwrap().expire_refresh_tokens();
    }

    /// Every access token issued so far answers 401 (lifetime validation failed).
    pub fn expire_access_tokens(&self) {
        self.shared.identity.lock().unwrap().expire_access_tokens();
    }

    /// How many `grant_type=refresh_token` requests reached the token endpoint (including the
    /// refused ones).
    pub fn refresh_count(&self) -> usize {
        self.shared.identity.lock().unwrap().refreshes
    }

    /// A consented grant without the browser dance: Graph tokens with `scopes` (short names such
    /// as `Mail.Send` or full URIs) and a refresh token.
    pub fn mint_tokens(&self, scopes: &[&str]) -> MintedTokens {
        let cfg = self.shared.cfg();
        let scope = scopes.join(" ");
        let (access_token, refresh_token) = self
            .shared
            .identity
            .lock()
            .unwrap()
            .mint(&cfg, &scope)
            .expect("valid scopes for mint_tokens");
        MintedTokens {
            access_token,
            refresh_token,
        }
    }

    /// Makes the next `count` Graph requests (after the Bearer check and the concurrency
    /// admission, so a delayed request counts as in flight) fail or wait as `fault`
    /// says: `Throttle` → 429 `ApplicationThrottled` with `Retry-After`; `ServerError` → 503
    /// `ServiceUnavailable` with `Retry-After`; `Latency` → answered late.
    pub fn inject(&self, fault: Fault, count: usize) {
        assert!(
            fault != Fault::RateLimit403,
            "Fault::RateLimit403 is Google's; Graph throttles with 429"
        );
        let mut q = self.shared.graph_faults.lock().unwrap();
        q.extend(std::iter::repeat_n(fault, count));
    }

    /// Same for the token endpoint (429 / 503 `temporarily_unavailable`, latency).
    pub fn inject_token(&self, fault: Fault, count: usize) {
        assert!(
            fault != Fault::RateLimit403,
            "Fault::RateLimit403 is Google's"
        );
        let mut q = self.shared.token_faults.lock().unwrap();
        q.extend(std::iter::repeat_n(fault, count));
    }

    /// With `Some(n)`, the mailbox may submit `n` more messages (`sendMail`, a draft's
    /// `send`); past that, Exchange Online's refusal of a mailbox over its sending limits:
    /// 403 `ErrorExceededMessageLimit` without `Retry-After` (Graph documents neither the
    /// status nor a time; the code is Exchange's). The fake keeps no window: the quota stays
    /// used up until the test sets it again. `None` (the default): no quota.
    pub fn set_send_allowance(&self, allowance: Option<usize>) {
        *self.shared.send_allowance.lock().unwrap() = allowance;
    }

    /// With `Some(n)`, a Graph request arriving while `n` are in flight gets 429
    /// `ApplicationThrottled` ("…MailboxConcurrency limit."). Outlook's limit is
    /// [`MAILBOX_CONCURRENCY`]. `None` (the default) turns it off.
    pub fn set_concurrency_limit(&self, limit: Option<usize>) {
        *self.shared.concurrency_limit.lock().unwrap() = limit;
    }

    /// Holds every admitted Graph request (after the concurrency check) until
    /// [`release_requests`](Self::release_requests): makes concurrency deterministic in tests.
    pub fn hold_requests(&self) {
        self.shared.gate.send_replace(false);
    }

    pub fn release_requests(&self) {
        self.shared.gate.send_replace(true);
    }

    /// Graph requests admitted and not yet answered.
    pub fn in_flight(&self) -> usize {
        self.shared.in_flight.load(Ordering::SeqCst)
    }

    /// Requests refused by the concurrency limit so far.
    pub fn throttled_count(&self) -> usize {
        self.shared.throttled.load(Ordering::SeqCst)
    }

    /// Every message accepted for delivery, in order.
    pub fn sent_items(&self) -> Vec<SentItem> {
        self.shared.mailbox.lock().unwrap().sent.clone()
    }

    /// Puts an RFC 822 message into the inbox, as if received. It joins the conversation of a
    /// message its `In-Reply-To` / `References` name.
    pub fn deliver_inbound(&self, raw: &[u8]) -> InboundMessage {
        self.insert_message(raw, "inbox", Duration::ZERO)
    }

    /// Files an RFC 822 message in `folder` (id or well-known name) as received `age` ago,
    /// as mail that was there before the account was linked, or (in `sentitems`) mail the
    /// user sent from Outlook's own apps.
    pub fn insert_message(&self, raw: &[u8], folder: &str, age: Duration) -> InboundMessage {
        let mut mb = self.shared.mailbox.lock().unwrap();
        let f = mb.folder(folder).expect("insert_message: no such folder");
        let m = mb
            .file_mime(raw, f, age)
            .expect("insert_message: unparseable message");
        let i = mb.find(&m.id).expect("just filed");
        self.shared.changed("created", &mb.messages[i]);
        m
    }

    /// A folder the user made, under `parent` (an id or well-known name, e.g. `msgfolderroot`
    /// or `inbox`); answers its id.
    pub fn create_folder(&self, name: &str, parent: &str) -> String {
        let mut mb = self.shared.mailbox.lock().unwrap();
        let p = mb.folder(parent).expect("create_folder: no such parent");
        mb.create_folder(name, p)
    }

    /// The id of a folder (id or well-known name).
    pub fn folder_id(&self, folder: &str) -> Option<String> {
        let mb = self.shared.mailbox.lock().unwrap();
        mb.folder(folder).map(|i| mb.folders[i].id.clone())
    }

    /// Marks a message (either id) read or unread, as the user does in Outlook.
    pub fn set_read(&self, id: &str, read: bool) {
        let mut mb = self.shared.mailbox.lock().unwrap();
        let i = mb.find(id).expect("set_read: no such message");
        mb.messages[i].is_read = read;
        mb.messages[i].touch();
        self.shared.changed("updated", &mb.messages[i]);
    }

    /// Moves a message (either id) to `folder` (id or well-known name), as the user does in
    /// Outlook; answers its new default id (the immutable id stays).
    pub fn move_message(&self, id: &str, folder: &str) -> String {
        let mut mb = self.shared.mailbox.lock().unwrap();
        let i = mb.find(id).expect("move_message: no such message");
        let to = mb.folder(folder).expect("move_message: no such folder");
        mb.move_to(i, to);
        self.shared.changed("updated", &mb.messages[i]);
        mb.messages[i].id.clone()
    }

    /// Deletes a message (either id) for good (Shift+Delete, or emptying Deleted Items).
    pub fn delete_message(&self, id: &str) {
        let mut mb = self.shared.mailbox.lock().unwrap();
        let i = mb.find(id).expect("delete_message: no such message");
        let m = mb.messages.remove(i);
        self.shared.changed("deleted", &m);
    }

    /// Sends lifecycle event `event` (`reauthorizationRequired`, `subscriptionRemoved`,
    /// `missed`) to every subscription's lifecycle URL; `subscriptionRemoved` also ends them.
    /// Answers how many were told.
    pub fn lifecycle(&self, event: &str) -> usize {
        let tenant = self.shared.cfg().tenant_id;
        subscriptions::lifecycle(
            &mut self.shared.subscriptions.lock().unwrap(),
            &tenant,
            event,
        )
    }

    /// The live subscriptions: (id, resource, expiration as unix seconds).
    pub fn subscriptions(&self) -> Vec<(String, String, i64)> {
        self.shared
            .subscriptions
            .lock()
            .unwrap()
            .live
            .values()
            .map(|s| (s.id.clone(), s.resource.clone(), s.expires.unix_timestamp()))
            .collect()
    }

    /// Change and lifecycle notifications answered 2xx so far, and the others.
    pub fn notifications(&self) -> (usize, usize) {
        let subs = self.shared.subscriptions.lock().unwrap();
        let d = &subs.delivered;
        (
            d.0.load(std::sync::atomic::Ordering::SeqCst),
            d.1.load(std::sync::atomic::Ordering::SeqCst),
        )
    }

    /// Whether a message is in the mailbox, and if so its folder's id and its read flag.
    pub fn message_state(&self, id: &str) -> Option<(String, bool)> {
        let mb = self.shared.mailbox.lock().unwrap();
        let i = mb.find(id)?;
        let m = &mb.messages[i];
        Some((mb.folders[m.folder].id.clone(), m.is_read))
    }

    /// Forgets every delta round: stored `deltaLink`s answer 410 `syncStateNotFound`.
    pub fn expire_delta_links(&self) {
        self.shared.mailbox.lock().unwrap().delta.expire();
    }

    /// Graph requests answered so far (the token endpoint not included).
    pub fn graph_request_count(&self) -> usize {
        self.shared
            .log
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.path.starts_with("/v1.0/"))
            .count()
    }

    /// The messages of a folder (id or well-known name), rendered as Graph renders them
    /// (with `internetMessageHeaders`), newest first.
    pub fn messages(&self, folder: &str) -> Vec<Value> {
        let mb = self.shared.mailbox.lock().unwrap();
        mb.folder_messages_json(&self.shared.base, folder)
    }

    pub fn request_log(&self) -> Vec<LoggedRequest> {
        self.shared.log.lock().unwrap().clone()
    }

    /// Every JSON body the Graph and upload endpoints answered with (for contract tests).
    pub fn emitted(&self) -> Vec<Emitted> {
        self.shared.emitted.lock().unwrap().clone()
    }
}

async fn log_requests(State(st): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    let method = req.method().to_string();
    let path = req.uri().path().to_owned();
    let query = req.uri().query().map(str::to_owned);
    let authorization = req.headers().contains_key(header::AUTHORIZATION);
    let content_range = req
        .headers()
        .get(header::CONTENT_RANGE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let content_length = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let resp = next.run(req).await;
    st.log.lock().unwrap().push(LoggedRequest {
        method,
        path,
        query,
        status: resp.status().as_u16(),
        authorization,
        content_range,
        content_length,
    });
    resp
}

// ---- small helpers shared by the submodules ----

fn random_bytes(n: usize) -> Vec<u8> {
    let mut b = vec![0u8; n];
    getrandom::fill(&mut b).expect("random");
    b
}

/// An opaque token of `n` random bytes, URL-safe.
fn random_token(n: usize) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random_bytes(n))
}

/// An Exchange-looking item id: `AAMkA…=`, URL-safe base64 with padding.
fn exchange_id(prefix: &str) -> String {
    format!(
        "{prefix}{}",
        base64::engine::general_purpose::URL_SAFE.encode(random_bytes(32))
    )
}

fn uuid() -> String {
    let h: String = random_bytes(16)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

/// `2026-11-02T10:11:12Z` (Graph's timestamps).
fn iso(t: OffsetDateTime) -> String {
    t.format(time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second]Z"
    ))
    .expect("format")
}

/// `2026-11-02T10:11:12.1234567Z` (upload-session expirations).
fn iso7(t: OffsetDateTime) -> String {
    t.format(time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:7]Z"
    ))
    .expect("format")
}

/// `2026-11-02 10:11:12Z` (AAD's timestamps).
fn aad_timestamp(t: OffsetDateTime) -> String {
    t.format(time::macros::format_description!(
        "[year]-[month]-[day] [hour]:[minute]:[second]Z"
    ))
    .expect("format")
}

fn percent_decode(s: &str) -> String {
    fn hex(b: u8) -> Option<u8> {
        (b as char).to_digit(16).map(|d| d as u8)
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push(h * 16 + l);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}
