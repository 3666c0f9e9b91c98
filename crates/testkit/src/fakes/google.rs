//! Fake Google: the OAuth 2.0 web-server flow (`/o/oauth2/v2/auth`, `/token`, `/revoke`) and
//! the Gmail API v1 (`/gmail/v1/users/{userId}/…` and the `/upload/…` media paths), built from
//! `reference/providers.md` A and the Gmail discovery document in `contracts/gmail.v1.json`.
//!
//! One account (the configured `email`) and one OAuth client. Everything a test needs to
//! check lives behind the hooks of [`FakeGoogle`]: what was sent, how many refreshes happened,
//! revoking the grant, delivering inbound mail, injecting faults.
//!
//! Where the fake is stricter than Google (documented at each place): `state` and a PKCE S256
//! `code_challenge` are required at the authorize step; the `redirect_uri` must be registered
//! (exactly, as at Google); a code is burnt by any redemption attempt; recipient domains need
//! a dot.
//!
//! Point mailroom at it with `MAILROOM_GOOGLE_AUTH_URL` = [`FakeGoogle::auth_url`],
//! `MAILROOM_GOOGLE_TOKEN_URL` = [`FakeGoogle::token_url`] and `MAILROOM_GMAIL_API_URL` =
//! [`FakeGoogle::base_url`] (the client appends `gmail/v1/…` and `upload/gmail/v1/…`).

mod api;
mod batch;
pub mod contract;
mod errors;
mod mailbox;
mod oauth;

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use axum::Router;
use axum::routing::{delete, get, post};
use tokio::sync::oneshot;

use super::Fault;

/// The `mediaUpload.maxSize` of `users.messages.send`: 36,700,160 bytes (35 MiB).
pub const SEND_MAX_SIZE: usize = 36_700_160;

/// What the authorize step answers when no consent page is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthorizeDecision {
    /// Redirect back with `code` and `state`.
    Approve,
    /// Redirect back with `error=access_denied` and `state`.
    Deny,
}

/// How the fake is set up. Everything can also be changed while it runs.
#[derive(Debug, Clone)]
pub struct GoogleConfig {
    pub client_id: String,
    pub client_secret: String,
    /// Redirect URIs registered for the client; matched exactly, as Google does.
    pub redirect_uris: Vec<String>,
    /// The one account's address (`users.getProfile`, `userId`).
    pub email: String,
    /// `expires_in` of access tokens (Google: 3599).
    pub access_token_lifetime_secs: u64,
    pub decision: AuthorizeDecision,
    /// Show an HTML consent form (Allow / Deny) instead of deciding at once. Also per request
    /// with `ui=1` in the authorize query.
    pub consent_ui: bool,
    /// Scopes the person unticks on Google's granular consent screen: the grant, and the
    /// token answer's `scope`, leave them out. Sign-in scopes (`openid`, `email`, `profile`)
    /// cannot be unticked there and are kept.
    pub unticked: Vec<String>,
    /// Largest JSON request body (`messages.send` with `raw`) the front end accepts; above it
    /// answers 400 "Request payload size exceeds the limit". Google does not publish the
    /// number; reports show 10,485,760.
    pub json_body_limit: usize,
}

impl Default for GoogleConfig {
    fn default() -> Self {
        Self {
            client_id: "fake-client-id.apps.googleusercontent.com".into(),
            client_secret: "fake-client-secret".into(),
            redirect_uris: vec![],
            email: "user@gmail.test".into(),
            access_token_lifetime_secs: 3599,
            decision: AuthorizeDecision::Approve,
            consent_ui: false,
            unticked: vec![],
            json_body_limit: 10 * 1024 * 1024,
        }
    }
}

/// How a message reached `messages.send`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadType {
    /// `POST /gmail/v1/users/{userId}/messages/send` with `{"raw": …}`.
    Json,
    /// `POST /upload/…/messages/send?uploadType=media`.
    Media,
    /// `?uploadType=multipart` (`multipart/related`: JSON metadata + `message/rfc822`).
    Multipart,
    /// `?uploadType=resumable`: a session, then `PUT` of the bytes.
    Resumable,
}

/// A message accepted by `messages.send`.
#[derive(Debug, Clone)]
pub struct SentMessage {
    pub id: String,
    pub thread_id: String,
    /// The `threadId` the request asked for (honoured only if threading rules matched).
    pub requested_thread_id: Option<String>,
    /// The bytes as uploaded (Bcc header included).
    pub raw: Vec<u8>,
    pub upload_type: UploadType,
    /// Every envelope recipient Gmail took from To, Cc and Bcc.
    pub recipients: Vec<String>,
    /// The recipients that came from the Bcc header.
    pub bcc: Vec<String>,
}

impl SentMessage {
    /// The message as its recipients receive it: Gmail removes the Bcc header.
    pub fn delivered_raw(&self) -> Vec<u8> {
        mailbox::without_bcc(&self.raw)
    }
}

/// A message put in the mailbox by [`FakeGoogle::deliver_inbound`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    pub id: String,
    pub thread_id: String,
    /// Its Message-ID, with angle brackets.
    pub message_id: String,
}

/// Tokens minted directly by [`FakeGoogle::issue_tokens`] (as if a consent had happened).
#[derive(Debug, Clone)]
pub struct IssuedTokens {
    pub access_token: String,
    pub refresh_token: String,
    pub expires_in: u64,
    pub scope: String,
}

pub(crate) struct AuthCode {
    client_id: String,
    redirect_uri: String,
    challenge: String,
    scopes: BTreeSet<String>,
    issued: Instant,
    refresh: bool,
    used: bool,
}

pub(crate) struct AccessToken {
    scopes: BTreeSet<String>,
    expires: Instant,
}

pub(crate) struct UploadSession {
    thread_id: Option<String>,
    declared_len: Option<usize>,
    received: Vec<u8>,
    /// The answer once complete (a later status query gets it again).
    result: Option<serde_json::Value>,
}

pub(crate) struct State {
    config: GoogleConfig,
    codes: HashMap<String, AuthCode>,
    access: HashMap<String, AccessToken>,
    /// Refresh token → scopes of the grant.
    refresh: HashMap<String, BTreeSet<String>>,
    /// Scopes the user granted the client so far (empty: never, or revoked).
    granted: BTreeSet<String>,
    /// Whether an offline grant (a refresh token) was handed out since the last revocation.
    offline_granted: bool,
    token_requests: HashMap<String, usize>,
    gmail_faults: VecDeque<(Fault, usize)>,
    token_faults: VecDeque<(Fault, usize)>,
    gmail_requests: usize,
    /// `POST /batch/gmail/v1` requests served.
    batch_requests: usize,
    mailbox: mailbox::Mailbox,
    /// `drafts.create`: (draft id, its message's id).
    drafts: Vec<(String, String)>,
    sent: Vec<SentMessage>,
    uploads: HashMap<String, UploadSession>,
    /// `users.watch`: the topic and when the watch ends (unix ms).
    watch: Option<(String, i64)>,
    /// Where the fake Pub/Sub push subscription of the watched topic posts.
    push_endpoint: Option<url::Url>,
    /// Push deliveries answered 2xx / otherwise.
    pushes_ok: usize,
    pushes_failed: usize,
    /// The mailbox's sending quota: messages per rolling window ([`FakeGoogle::set_send_quota`]).
    send_quota: Option<(usize, std::time::Duration)>,
    /// When (unix ms) each message was sent, for the quota's rolling window.
    send_times: VecDeque<i64>,
}

pub(crate) struct Shared {
    state: Mutex<State>,
    /// `http://127.0.0.1:port/`
    base: url::Url,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Publishes the mailbox's current history id to the watched topic, as Gmail does after a
/// change, and delivers it to the push endpoint as a Pub/Sub push subscription does (one
/// attempt, in the background; the answer is counted).
pub(crate) fn publish(shared: &Arc<Shared>) {
    let (endpoint, body) = {
        let s = shared.lock();
        let Some((topic, until)) = &s.watch else {
            return;
        };
        let Some(endpoint) = s.push_endpoint.clone() else {
            return;
        };
        if *until <= mailbox::now_ms() {
            return;
        }
        use base64::Engine as _;
        let data = serde_json::json!({
            "emailAddress": s.config.email,
            "historyId": s.mailbox.history_id(),
        });
        let project = topic.split('/').nth(1).unwrap_or("fake");
        let body = serde_json::json!({
            "message": {
                "data": base64::engine::general_purpose::STANDARD.encode(data.to_string()),
                "messageId": mailbox::random_u64().to_string(),
                "publishTime": mailroom_core::time_fmt::format_ms(mailbox::now_ms()),
            },
            "subscription": format!("projects/{project}/subscriptions/mailroom-push"),
        });
        (endpoint, body)
    };
    let shared = shared.clone();
    tokio::spawn(async move {
        let ok = reqwest::Client::new()
            .post(endpoint)
            .json(&body)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        let mut s = shared.lock();
        if ok {
            s.pushes_ok += 1;
        } else {
            s.pushes_failed += 1;
        }
    });
}

/// Pops the next fault of `queue`, if any.
fn next_fault(queue: &mut VecDeque<(Fault, usize)>) -> Option<Fault> {
    let (fault, left) = queue.front_mut()?;
    let f = fault.clone();
    *left -= 1;
    if *left == 0 {
        queue.pop_front();
    }
    Some(f)
}

/// The running fake. Dropping it stops the server.
pub struct FakeGoogle {
    shared: Arc<Shared>,
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeGoogle {
    /// Starts on `127.0.0.1:0` in the current tokio runtime.
    pub async fn start(config: GoogleConfig) -> FakeGoogle {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), config)
            .await
            .expect("bind the fake Google on 127.0.0.1:0")
    }

    /// Starts on `addr` (the standalone `mailroom-fakes` binary uses a fixed port).
    pub async fn start_on(addr: SocketAddr, config: GoogleConfig) -> std::io::Result<FakeGoogle> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let base = url::Url::parse(&format!("http://{addr}/")).expect("valid base URL");
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                config,
                codes: HashMap::new(),
                access: HashMap::new(),
                refresh: HashMap::new(),
                granted: BTreeSet::new(),
                offline_granted: false,
                token_requests: HashMap::new(),
                gmail_faults: VecDeque::new(),
                token_faults: VecDeque::new(),
                gmail_requests: 0,
                batch_requests: 0,
                mailbox: mailbox::Mailbox::new(),
                drafts: vec![],
                sent: vec![],
                uploads: HashMap::new(),
                watch: None,
                push_endpoint: None,
                pushes_ok: 0,
                pushes_failed: 0,
                send_quota: None,
                send_times: VecDeque::new(),
            }),
            base,
        });
        let router = router(shared.clone());
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = rx.await;
                })
                .await;
        });
        Ok(FakeGoogle {
            shared,
            addr,
            shutdown: Some(tx),
            task,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.shared.lock()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The fake's root, `http://127.0.0.1:port/` (`MAILROOM_GMAIL_API_URL`).
    pub fn base_url(&self) -> url::Url {
        self.shared.base.clone()
    }

    /// `…/o/oauth2/v2/auth` (`MAILROOM_GOOGLE_AUTH_URL`).
    pub fn auth_url(&self) -> url::Url {
        self.shared.base.join("o/oauth2/v2/auth").expect("url")
    }

    /// `…/token` (`MAILROOM_GOOGLE_TOKEN_URL`).
    pub fn token_url(&self) -> url::Url {
        self.shared.base.join("token").expect("url")
    }

    /// `…/revoke` (Google's `https://oauth2.googleapis.com/revoke`).
    pub fn revoke_url(&self) -> url::Url {
        self.shared.base.join("revoke").expect("url")
    }

    /// A copy of the current configuration.
    pub fn config(&self) -> GoogleConfig {
        self.lock().config.clone()
    }

    pub fn set_decision(&self, decision: AuthorizeDecision) {
        self.lock().config.decision = decision;
    }

    /// The person will untick these scopes (short or URL form) on the next consents.
    pub fn untick_scopes(&self, scopes: &[&str]) {
        self.lock().config.unticked = scopes.iter().map(|s| oauth::normalize_scope(s)).collect();
    }

    pub fn set_consent_ui(&self, on: bool) {
        self.lock().config.consent_ui = on;
    }

    /// Registers one more redirect URI (mailroom's callback is known only once it runs).
    pub fn allow_redirect_uri(&self, uri: &str) {
        let mut s = self.lock();
        if !s.config.redirect_uris.iter().any(|u| u == uri) {
            s.config.redirect_uris.push(uri.to_owned());
        }
    }

    /// `expires_in` of access tokens minted from now on.
    pub fn set_access_token_lifetime(&self, secs: u64) {
        self.lock().config.access_token_lifetime_secs = secs;
    }

    /// Makes every access token minted so far expire now (the API answers 401 to them).
    pub fn expire_access_tokens(&self) {
        let now = Instant::now();
        for t in self.lock().access.values_mut() {
            t.expires = now;
        }
    }

    /// The user revokes the app: refresh tokens give `invalid_grant` "Token has been expired
    /// or revoked.", access tokens 401, and the next consent hands out a refresh token again.
    pub fn revoke(&self) {
        oauth::revoke_all(&mut self.lock());
    }

    /// How many `grant_type=refresh_token` requests reached `/token` (failed ones included).
    pub fn refresh_count(&self) -> usize {
        self.token_requests("refresh_token")
    }

    /// How many `/token` requests carried `grant_type` (`authorization_code`, …).
    pub fn token_requests(&self, grant_type: &str) -> usize {
        self.lock()
            .token_requests
            .get(grant_type)
            .copied()
            .unwrap_or(0)
    }

    /// Mints a grant for `scopes` without the browser step (for tests that hand mailroom
    /// tokens directly, like `POST /accounts` with `GOOGLE_OAUTH`).
    pub fn issue_tokens(&self, scopes: &[&str]) -> IssuedTokens {
        let mut s = self.lock();
        let scopes: BTreeSet<String> = scopes.iter().map(|x| oauth::normalize_scope(x)).collect();
        s.granted.extend(scopes.iter().cloned());
        s.offline_granted = true;
        let refresh_token = oauth::new_refresh_token(&mut s, &scopes);
        let (access_token, expires_in) = oauth::new_access_token(&mut s, &scopes);
        IssuedTokens {
            access_token,
            refresh_token,
            expires_in,
            scope: scopes.into_iter().collect::<Vec<_>>().join(" "),
        }
    }

    /// Every message accepted by `messages.send`, oldest first.
    pub fn sent_messages(&self) -> Vec<SentMessage> {
        self.lock().sent.clone()
    }

    /// Puts `raw` in the INBOX (UNREAD), threaded the way Gmail threads incoming mail
    /// (References/In-Reply-To to a message of the thread, and the same subject).
    pub fn deliver_inbound(&self, raw: &[u8]) -> Delivered {
        let mut s = self.lock();
        let facts = mailbox::header_facts(raw);
        let thread = s.mailbox.thread_for_inbound(&facts);
        let m = s.mailbox.insert(
            raw.to_vec(),
            thread,
            &["INBOX", "UNREAD", "CATEGORY_PERSONAL"],
        );
        let d = Delivered {
            id: m.id.clone(),
            thread_id: m.thread_id.clone(),
            message_id: format!("<{}>", m.message_id.as_deref().unwrap_or("")),
        };
        drop(s);
        publish(&self.shared);
        d
    }

    /// Puts `raw` in the mailbox with exactly `labels` (system label ids, or user label ids
    /// from [`FakeGoogle::create_label`]), received `age` ago: mail already there, sent from
    /// Gmail's own apps (`SENT`), or old mail outside a sync window. Not threaded with
    /// anything. Recorded in the history like any arrival.
    pub fn insert_message(
        &self,
        raw: &[u8],
        labels: &[&str],
        age: std::time::Duration,
    ) -> Delivered {
        let mut s = self.lock();
        for l in labels {
            assert!(s.mailbox.label_exists(l), "no label {l}");
        }
        let at = mailbox::now_ms() - age.as_millis() as i64;
        let m = s.mailbox.insert_at(raw.to_vec(), None, labels, at);
        let d = Delivered {
            id: m.id.clone(),
            thread_id: m.thread_id.clone(),
            message_id: format!("<{}>", m.message_id.as_deref().unwrap_or("")),
        };
        drop(s);
        publish(&self.shared);
        d
    }

    /// Creates a user label (as `labels.create` would); answers its id (`Label_N`). A label
    /// with that name already there is answered instead.
    pub fn create_label(&self, name: &str) -> String {
        self.lock().mailbox.create_label(name)
    }

    /// Adds and removes labels of a message as the Gmail apps do (`UNREAD` removed: read;
    /// `INBOX` removed: archived; `TRASH` added: deleted to the bin), one history record per
    /// effective change. Panics on an unknown message or label.
    pub fn modify_labels(&self, id: &str, add: &[&str], remove: &[&str]) {
        let mut s = self.lock();
        for l in add.iter().chain(remove) {
            assert!(s.mailbox.label_exists(l), "no label {l}");
        }
        assert!(s.mailbox.modify(id, add, remove), "no message {id}");
        drop(s);
        publish(&self.shared);
    }

    /// Deletes a message for good (`messages.delete`, emptying the bin): a
    /// `messagesDeleted` history record. Panics on an unknown message.
    pub fn delete_message(&self, id: &str) {
        assert!(self.lock().mailbox.delete(id), "no message {id}");
        publish(&self.shared);
    }

    /// Drops the history kept so far, as Google does after about a week: `history.list` from
    /// any `startHistoryId` older than the mailbox's current one answers 404 `notFound`.
    pub fn expire_history(&self) {
        self.lock().mailbox.expire_history();
    }

    /// Where the Pub/Sub push subscription of the watched topic posts (mailroom's
    /// `…/push/google/{token}`). From then on, while a `users.watch` is active, every change
    /// of the mailbox is posted there as Pub/Sub does: `{"message": {"data": base64 of
    /// {"emailAddress", "historyId"}, "messageId", "publishTime"}, "subscription"}`.
    pub fn set_push_endpoint(&self, url: url::Url) {
        self.lock().push_endpoint = Some(url);
    }

    /// The topic of the active `users.watch`, if any.
    pub fn watched_topic(&self) -> Option<String> {
        let s = self.lock();
        s.watch
            .as_ref()
            .filter(|(_, until)| *until > mailbox::now_ms())
            .map(|(t, _)| t.clone())
    }

    /// Push deliveries answered with a 2xx, and the others.
    pub fn pushes(&self) -> (usize, usize) {
        let s = self.lock();
        (s.pushes_ok, s.pushes_failed)
    }

    /// The mailbox's current history id.
    pub fn history_id(&self) -> u64 {
        self.lock().mailbox.history_id()
    }

    /// The drafts: (draft id, message id), in the order they were created.
    pub fn drafts(&self) -> Vec<(String, String)> {
        self.lock().drafts.clone()
    }

    /// The labels of a stored message (`None`: no such message).
    pub fn labels_of(&self, id: &str) -> Option<Vec<String>> {
        self.lock().mailbox.get(id).map(|m| m.labels.clone())
    }

    /// Answers the next `count` Gmail API requests (uploads included) with `fault`. Faults
    /// queue up in the order injected.
    /// Gives the mailbox a sending quota of `messages` per rolling `window` (Gmail's is 500 or
    /// 2,000 a day): past it `messages.send` answers as Gmail does, 429 "User-rate limit
    /// exceeded.  Retry after <time> (Mail sending)", the time being when the oldest send of the
    /// window leaves it. `None` lifts it.
    pub fn set_send_quota(&self, quota: Option<(usize, std::time::Duration)>) {
        let mut s = self.lock();
        s.send_quota = quota;
        s.send_times.clear();
    }

    pub fn inject(&self, fault: Fault, count: usize) {
        if count > 0 {
            self.lock().gmail_faults.push_back((fault, count));
        }
    }

    /// Same for the next `count` requests to `/token`.
    pub fn inject_token(&self, fault: Fault, count: usize) {
        if count > 0 {
            self.lock().token_faults.push_back((fault, count));
        }
    }

    /// How many Gmail API requests arrived (any path under `gmail/v1`, `upload/…`; each call
    /// of a batch counts).
    pub fn gmail_request_count(&self) -> usize {
        self.lock().gmail_requests
    }

    /// How many batch requests (`POST /batch/gmail/v1`) were served.
    pub fn batch_request_count(&self) -> usize {
        self.lock().batch_requests
    }
}

impl Drop for FakeGoogle {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.task.abort();
    }
}

impl std::fmt::Debug for FakeGoogle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeGoogle")
            .field("base", &self.shared.base.as_str())
            .finish_non_exhaustive()
    }
}

fn router(shared: Arc<Shared>) -> Router {
    let users = "/gmail/v1/users/{user}";
    Router::new()
        .route(
            "/o/oauth2/v2/auth",
            get(oauth::authorize).post(oauth::consent),
        )
        .route("/token", post(oauth::token))
        .route("/revoke", post(oauth::revoke))
        .route(&format!("{users}/profile"), get(api::profile))
        .route(&format!("{users}/messages"), get(api::list_messages))
        .route(&format!("{users}/messages/send"), post(api::send_json))
        .route(&format!("{users}/messages/{{id}}"), get(api::get_message))
        .route(
            &format!("{users}/messages/{{id}}/modify"),
            post(api::modify_message),
        )
        .route(
            &format!("{users}/messages/{{id}}/trash"),
            post(api::trash_message),
        )
        .route(
            &format!("{users}/messages/{{id}}/attachments/{{attachment}}"),
            get(api::get_attachment),
        )
        .route(
            &format!("{users}/drafts"),
            get(api::list_drafts).post(api::create_draft),
        )
        .route(&format!("{users}/drafts/{{id}}"), delete(api::delete_draft))
        .route(&format!("{users}/threads"), get(api::list_threads))
        .route(&format!("{users}/threads/{{id}}"), get(api::get_thread))
        .route(&format!("{users}/labels"), get(api::list_labels))
        .route(&format!("{users}/history"), get(api::list_history))
        .route(&format!("{users}/watch"), post(api::watch))
        .route(&format!("{users}/stop"), post(api::stop))
        .route(
            "/upload/gmail/v1/users/{user}/messages/send",
            post(api::upload_start).put(api::upload_put),
        )
        .route(
            "/resumable/upload/gmail/v1/users/{user}/messages/send",
            post(api::upload_start).put(api::upload_put),
        )
        .route("/batch/gmail/v1", post(batch::handle))
        .route("/", get(api::not_found_page))
        .fallback(api::not_found_page)
        .with_state(shared)
        .layer(axum::middleware::from_fn(no_store))
}

/// Google's answers are never cached.
async fn no_store(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let mut r = next.run(req).await;
    r.headers_mut()
        .entry(axum::http::header::CACHE_CONTROL)
        .or_insert(axum::http::HeaderValue::from_static(
            "no-cache, no-store, max-age=0, must-revalidate",
        ));
    r
}

/// Applies the next queued fault: `Some(response)` to answer with, after any latency.
async fn apply_fault(fault: Option<Fault>, gmail: bool) -> Option<axum::response::Response> {
    match fault? {
        Fault::Latency(d) => {
            tokio::time::sleep(d).await;
            None
        }
        Fault::Throttle { retry_after_secs } if gmail => {
            Some(errors::throttled_429(retry_after_secs))
        }
        Fault::RateLimit403 if gmail => Some(errors::rate_limit_403()),
        Fault::ServerError if gmail => Some(errors::backend_error()),
        Fault::Throttle { retry_after_secs } => {
            let mut r = errors::oauth_error(
                axum::http::StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_exceeded",
                "Rate limit exceeded.",
            );
            r.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_str(&retry_after_secs.to_string()).expect("digits"),
            );
            Some(r)
        }
        Fault::RateLimit403 => Some(errors::oauth_error(
            axum::http::StatusCode::FORBIDDEN,
            "rate_limit_exceeded",
            "Rate limit exceeded.",
        )),
        Fault::ServerError => Some(errors::oauth_error(
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            "internal_failure",
            "Backend Error",
        )),
    }
}
