//! SMTP submission of finished messages: a small pool of lettre connections per account, the
//! server's SIZE limit, and the classes of failure the outbox acts on (retry, reconnect, or a
//! permanent 422 with the server's own words).
//!
//! **Connections.** The pool opens its TCP streams itself ([`smtp::open_stream`], to a vetted
//! address, with TCP_NODELAY: lettre writes the DATA terminator in a write of its own, which
//! Nagle's algorithm held back until the server's delayed ACK, ~40 ms a message), does TLS
//! (implicit, or lettre's STARTTLS), and hands the stream to lettre's `AsyncSmtpConnection`.
//! At most `connections_per_key` sends run at once per account (a semaphore; servers refuse
//! more than a few connections per account, 421/4.7.0), and a connection is only ever opened
//! when no idle one is left, so an account never holds more connections than that. Idle
//! connections are kept `IDLE_TIMEOUT` and then quit.
//!
//! **Reuse.** An idle connection is used without a NOOP first: when the server closed it in
//! the meantime, AUTH or `MAIL FROM` fails without a reply (or with 421), before anything of
//! the message was sent, and the send moves to a new connection (dropping the other idle
//! ones, which are as likely to be gone). From `RCPT TO` on nothing is ever sent twice. A
//! connection that fails in any other way is discarded, never parked again.
//!
//! **SIZE (RFC 1870).** lettre does not expose it: `ServerInfo` keeps only the EHLO keywords
//! its `Extension` enum knows (8BITMIME, SMTPUTF8, STARTTLS, AUTH) and the raw EHLO reply is
//! dropped. So the first connection of an account sends our own `EHLO` (after TLS, before
//! AUTH) and reads `SIZE n` from the reply; a message longer than `n` fails as
//! [`FailureKind::TooLarge`] before any `MAIL FROM` (before even AUTH on that first
//! connection), so a 30 MB upload is never wasted on a 10 MB server. Servers that do not
//! advertise a limit (or lie) still answer `552` / `5.3.4` after DATA, which maps to
//! `TooLarge` too.
//!
//! **Cancellation.** lettre's async connections have no read timeout, and a connection whose
//! send future is dropped mid-command would read its late reply as the answer to the next
//! command. A send owns its connection until the exchange is over and only then parks it, so
//! a dropped send drops (closes) its connection.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use lettre::address::{Address, Envelope};
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::AsyncSmtpConnection;
use lettre::transport::smtp::commands::{Data, Ehlo, Mail, Rcpt};
use lettre::transport::smtp::extension::{ClientId, Extension, MailBodyParameter, MailParameter};
use lettre::transport::smtp::response::Response;
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use super::smtp::{self, SmtpLogin};
use crate::NetPolicy;
use crate::failure::{FailureKind, MailError, Protocol};
use mailroom_core::ErrorKind;
use mailroom_core::account::TlsMode;

/// How long an idle connection is kept (lettre's pool kept them as long); servers close idle
/// sessions after a few minutes (Postfix: 300 s).
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a QUIT of a connection being closed may take.
const QUIT_TIMEOUT: Duration = Duration::from_secs(5);

/// Connections kept per account. Providers cap concurrent submissions per user (Microsoft 365
/// allows 3), and one connection already carries a message after another.
pub const DEFAULT_CONNECTIONS_PER_ACCOUNT: u32 = 3;

/// What the server said when it took the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpSent {
    /// The final reply text, e.g. `2.0.0 Ok: queued as 4B3F21C0A2`.
    pub response: String,
}

const TRANSIENT: FailureKind = FailureKind::Transient { retry_after: None };

/// A failed send, with what went wrong in `detail`.
fn failure(kind: FailureKind, detail: impl Into<String>) -> MailError {
    MailError::new(Protocol::Smtp, kind, detail)
}

/// A failure to open a connection of the pool. The egress guard's refusal fails the send as
/// a refused message (`CantSendMessage`), as it always did here.
fn opening(mut e: MailError) -> MailError {
    if let FailureKind::Rejected(_) = e.kind {
        e.kind = FailureKind::Rejected(ErrorKind::CantSendMessage);
    }
    e
}

/// Classifies a lettre error: a server reply by its codes and text, anything else by what
/// failed. Unknown failures are transient: retrying a permanent one only delays the verdict,
/// while giving up on a transient one loses the mail.
pub fn classify(e: &lettre::transport::smtp::Error) -> MailError {
    let text = std::error::Error::source(e)
        .map(|s| s.to_string())
        .unwrap_or_default();
    if let Some(code) = e.status() {
        return classify_reply(u16::from(code), &text);
    }
    if e.is_client() {
        // lettre refuses before asking the server: no shared AUTH mechanism, or a message
        // that needs 8BITMIME / SMTPUTF8 from a server without them.
        let lower = text.to_ascii_lowercase();
        // No shared mechanism is the server's configuration, not a wrong password: refuse
        // the send without marking the account's credentials bad.
        if lower.contains("authentication mechanism") {
            return MailError::rejected(
                Protocol::Smtp,
                ErrorKind::CantSendMessage,
                format!("SMTP: {text}"),
            );
        }
        if lower.contains("8bitmime") || lower.contains("smtputf8") {
            return MailError::rejected(
                Protocol::Smtp,
                ErrorKind::CantSendMessage,
                format!("SMTP: {text}"),
            );
        }
    }
    failure(TRANSIENT, format!("SMTP: {e}"))
}

/// Classifies a negative reply (`code` 4xx or 5xx, `text` the reply lines joined). `code`
/// of the failure is the reply code with its enhanced status code when it gave one
/// (`550 5.1.1`, `451`); `detail` the server's reply (`550 5.1.1 <bob@example.com>: Recipient
/// address rejected: …`).
pub fn classify_reply(code: u16, text: &str) -> MailError {
    let enhanced = enhanced_code(code, text);
    let lower = text.to_ascii_lowercase();
    let mut kind = reply_kind(code, enhanced, &lower);
    // The mailbox's sending quota is used up: Gmail's `550 5.4.5 Daily user sending limit
    // exceeded`, Exchange's `SubmissionQuotaExceeded`, a 4xx or 5xx that speaks of a quota or
    // a sending limit. Its sends pause (SMTP names no time: the default pause).
    if speaks_of_send_quota(enhanced, &lower) {
        kind = FailureKind::SendQuota {
            reopens_in: crate::send_quota::DEFAULT_QUOTA_PAUSE,
        };
    } else if kind == TRANSIENT
        && matches!(code, 421 | 450 | 451 | 452)
        && speaks_of_throttling(&lower)
    {
        kind = FailureKind::Quota { retry_after: None };
    }
    let detail = if text.is_empty() {
        code.to_string()
    } else {
        format!("{code} {text}")
    };
    failure(kind, detail).with_code(match enhanced {
        Some(x) => format!("{code} {x}"),
        None => code.to_string(),
    })
}

fn reply_kind(code: u16, enhanced: Option<&str>, lower: &str) -> FailureKind {
    const AUTH: FailureKind = FailureKind::Auth;
    const RECIPIENT_REJECTED: FailureKind = FailureKind::Rejected(ErrorKind::RecipientRejected);
    const SENDER_REJECTED: FailureKind = FailureKind::Rejected(ErrorKind::SendAsDenied);
    const TOO_LARGE: FailureKind = FailureKind::TooLarge;
    const REJECTED: FailureKind = FailureKind::Rejected(ErrorKind::CantSendMessage);
    if code < 500 {
        return TRANSIENT;
    }
    // RFC 4954: 530 authentication required, 534 mechanism too weak, 535 bad credentials;
    // 5.7.8 / 5.7.9 say the same in enhanced codes, and Microsoft answers 5.7.30 / 5.7.139
    // when basic authentication is off for the tenant.
    if matches!(code, 530 | 534 | 535)
        || matches!(enhanced, Some("5.7.8" | "5.7.9" | "5.7.30" | "5.7.139"))
    {
        return AUTH;
    }
    // RFC 3463 address statuses name the side that is wrong without any doubt.
    match enhanced {
        Some("5.1.1" | "5.1.2" | "5.1.3" | "5.1.10" | "5.1.6") => return RECIPIENT_REJECTED,
        Some("5.1.7" | "5.1.8") => return SENDER_REJECTED,
        // Microsoft's "SendAsDenied".
        Some("5.7.60") => return SENDER_REJECTED,
        // 552 5.2.2 is a full mailbox: the recipient cannot take it, the message is fine.
        Some("5.2.2") => return RECIPIENT_REJECTED,
        Some("5.3.4" | "5.2.3") => return TOO_LARGE,
        _ => {}
    }
    if code == 552
        || lower.contains("size")
        || lower.contains("too large")
        || lower.contains("too big")
    {
        return TOO_LARGE;
    }
    // The text decides; whichever side it names first wins, because Postfix evaluates sender
    // restrictions at RCPT time ("<bob@x>: Sender address rejected: not owned by user …").
    const SENDER: &[&str] = &["sender", "send as", "send-as", "sendas", "not owned"];
    const RECIPIENT: &[&str] = &[
        "recipient",
        "user unknown",
        "unknown user",
        "no such user",
        "mailbox unavailable",
        "mailbox not found",
    ];
    let first = |words: &[&str]| words.iter().filter_map(|w| lower.find(w)).min();
    match (first(SENDER), first(RECIPIENT)) {
        (Some(s), Some(r)) if s < r => SENDER_REJECTED,
        (Some(_), None) => SENDER_REJECTED,
        (_, Some(_)) => RECIPIENT_REJECTED,
        (None, None) => REJECTED,
    }
}

/// The RFC 3463 code a reply starts with, when its class agrees with the reply code.
fn enhanced_code(code: u16, text: &str) -> Option<&str> {
    let word = text.split_whitespace().next()?;
    let mut parts = word.split('.');
    let (class, subject, detail) = (parts.next()?, parts.next()?, parts.next()?);
    let digits = |s: &str, max: usize| {
        !s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_digit())
    };
    (parts.next().is_none()
        && class == (code / 100).to_string()
        && digits(subject, 3)
        && digits(detail, 3))
    .then_some(word)
}

/// Gmail answers its per-user quota with 5.4.5 (RFC 3463 "mail system congestion", which as
/// a permanent 5xx is no congestion); the words cover servers that answer otherwise.
fn speaks_of_send_quota(enhanced: Option<&str>, lower: &str) -> bool {
    // A recipient's full mailbox (X.2.2, RFC 3463: Dovecot's `552 5.2.2 … Quota exceeded
    // (mailbox for user is full)`, Gmail's `452 4.2.2 … is over quota`) or a recipient's
    // address (X.1.x) is someone else's quota: that recipient's refusal, not a pause of this
    // mailbox's sends (which would come back every hour for a send that can never go).
    if let Some(e) = enhanced {
        let mut parts = e.split('.').skip(1);
        let (subject, detail) = (parts.next(), parts.next());
        if subject == Some("1") || (subject == Some("2") && detail == Some("2")) {
            return false;
        }
    }
    if lower.contains("mailbox full")
        || lower.contains("mailbox is full")
        || lower.contains("is over quota")
    {
        return false;
    }
    enhanced == Some("5.4.5")
        || lower.contains("quota")
        || lower.contains("sending limit")
        || lower.contains("daily limit")
        || lower.contains("message limit")
}

fn speaks_of_throttling(lower: &str) -> bool {
    lower.contains("too many")
        || lower.contains("throttl")
        || lower
            .split(|c: char| !c.is_ascii_alphanumeric())
            .any(|w| w == "rate" || w == "ratelimit" || w == "ratelimited")
}

/// The login an entry was built with; a different one (a reconnect) replaces the account's
/// connections.
struct LoginPrint {
    host: String,
    port: u16,
    tls: TlsMode,
    user: String,
    password: SecretString,
    mechanisms: Vec<Mechanism>,
}

impl LoginPrint {
    fn of(login: &SmtpLogin<'_>) -> Self {
        Self {
            host: login.host.to_owned(),
            port: login.port,
            tls: login.tls,
            user: login.user.to_owned(),
            password: login.password.clone(),
            mechanisms: login.mechanisms.to_vec(),
        }
    }

    fn matches(&self, login: &SmtpLogin<'_>) -> bool {
        self.host == login.host
            && self.port == login.port
            && self.tls == login.tls
            && self.user == login.user
            && self.mechanisms == login.mechanisms
            && self.password.expose_secret() == login.password.expose_secret()
    }
}

/// Locks `m`; a panic while holding a lock of this module leaves the data consistent.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// An open connection: greeted, encrypted, EHLO'd, and authenticated once `authed`.
struct Conn {
    smtp: AsyncSmtpConnection,
    authed: bool,
    /// When it was parked last.
    parked: Instant,
}

/// One account's connections.
struct Account {
    /// The server's SIZE from the first connection's EHLO; `None` inside when it advertised
    /// no positive one.
    size_limit: OnceLock<Option<u64>>,
    /// Parked connections, oldest first.
    idle: Mutex<Vec<Conn>>,
    /// At most this many sends, so connections, at once.
    in_flight: Semaphore,
}

impl Account {
    fn new(connections: u32) -> Self {
        Self {
            size_limit: OnceLock::new(),
            idle: Mutex::new(Vec::new()),
            in_flight: Semaphore::new(connections.max(1) as usize),
        }
    }

    fn too_large(&self, len: usize, host: &str) -> Option<MailError> {
        let limit = (*self.size_limit.get()?)?;
        (len as u64 > limit).then(|| {
            failure(
                FailureKind::TooLarge,
                format!("the message is {len} bytes and {host} accepts at most {limit} (SIZE)"),
            )
        })
    }

    /// The most recently parked connection, quitting those parked too long ago.
    fn take_idle(&self) -> Option<Conn> {
        let mut idle = lock(&self.idle);
        let expired = Self::expired_in(&mut idle);
        let conn = idle.pop();
        drop(idle);
        quit_all(expired);
        conn
    }

    fn park(&self, mut conn: Conn) {
        let mut idle = lock(&self.idle);
        conn.parked = Instant::now();
        idle.push(conn);
    }

    /// Takes the connections parked longer than `IDLE_TIMEOUT`.
    fn expired(&self) -> Vec<Conn> {
        Self::expired_in(&mut lock(&self.idle))
    }

    fn expired_in(idle: &mut Vec<Conn>) -> Vec<Conn> {
        let keep_from = idle
            .iter()
            .position(|c| c.parked.elapsed() < IDLE_TIMEOUT)
            .unwrap_or(idle.len());
        idle.drain(..keep_from).collect()
    }

    /// Sends over a parked connection or a new one from `open`; see the module notes.
    async fn deliver<F, Fut>(
        &self,
        login: &SmtpLogin<'_>,
        policy: &NetPolicy,
        envelope: &Envelope,
        bytes: &[u8],
        open: F,
    ) -> Result<Response, MailError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<AsyncSmtpConnection, MailError>>,
    {
        let _permit = self
            .in_flight
            .acquire()
            .await
            .expect("the semaphore is never closed");
        // lettre always ends DATA with `CRLF . CRLF`; that first CRLF is the end of the last
        // line (RFC 5321 §4.1.1.4), so a message ending in CRLF would gain a blank line and
        // differ from the Sent copy. Leave the final CRLF to the terminator.
        let payload = bytes.strip_suffix(b"\r\n").unwrap_or(bytes);
        let mut retried = false;
        loop {
            let (mut conn, reused) = match self.take_idle() {
                Some(conn) => (conn, true),
                None => (self.connect(login, policy, &open).await?, false),
            };
            // The first connection of the account has just read SIZE.
            if let Some(e) = self.too_large(bytes.len(), login.host) {
                self.park(conn);
                return Err(e);
            }
            match transact(&mut conn, login, policy, envelope, payload, reused).await {
                Ok(response) => {
                    self.park(conn);
                    return Ok(response);
                }
                Err(Failure::Stale(e)) if !retried => {
                    tracing::debug!(
                        host = login.host,
                        "parked SMTP connection is gone ({e}); sending on a new one"
                    );
                    retried = true;
                    drop(conn);
                    quit_all(std::mem::take(&mut *lock(&self.idle)));
                }
                Err(Failure::Stale(error)) => return Err(error),
                Err(Failure::Failed { error, quit }) => {
                    if quit {
                        quit_all(vec![conn]);
                    }
                    return Err(error);
                }
            }
        }
    }

    /// A new connection from `open`, within the connect timeout. While the account's SIZE is
    /// unknown, sends an EHLO of our own to read it.
    async fn connect<F, Fut>(
        &self,
        login: &SmtpLogin<'_>,
        policy: &NetPolicy,
        open: &F,
    ) -> Result<Conn, MailError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<AsyncSmtpConnection, MailError>>,
    {
        let work = async {
            let mut smtp = open().await?;
            if self.size_limit.get().is_none() {
                let ehlo = smtp
                    .command(Ehlo::new(ClientId::default()))
                    .await
                    .map_err(|e| classify(&e))?;
                let _ = self.size_limit.set(size_from_ehlo(ehlo.message()));
            }
            Ok(Conn {
                smtp,
                authed: false,
                parked: Instant::now(),
            })
        };
        match tokio::time::timeout(policy.connect_timeout, work).await {
            Ok(r) => r,
            Err(_) => Err(failure(
                TRANSIENT,
                format!(
                    "{}:{} did not complete the SMTP handshake within {}s",
                    login.host,
                    login.port,
                    policy.connect_timeout.as_secs()
                ),
            )),
        }
    }
}

impl Drop for Account {
    fn drop(&mut self) {
        quit_all(std::mem::take(&mut *lock(&self.idle)));
    }
}

/// Says QUIT on each of `conns` in the background, and drops them.
fn quit_all(conns: Vec<Conn>) {
    if conns.is_empty() {
        return;
    }
    // Without a runtime they are only closed.
    if let Ok(rt) = tokio::runtime::Handle::try_current() {
        rt.spawn(futures_util::future::join_all(conns.into_iter().map(
            |mut c| async move {
                let _ = tokio::time::timeout(QUIT_TIMEOUT, c.smtp.quit()).await;
            },
        )));
    }
}

/// Why a send's exchange failed.
enum Failure {
    /// A parked connection failed before the server could have taken anything of the message.
    Stale(MailError),
    /// The send fails; `quit` when the server answered, so the session can still be closed.
    Failed { error: MailError, quit: bool },
}

/// A connection that is gone answers without a reply, or with 421 (closing).
fn is_gone(e: &lettre::transport::smtp::Error) -> bool {
    !e.is_client() && e.status().is_none_or(|c| u16::from(c) == 421)
}

/// AUTH when needed, MAIL FROM, RCPT TO, DATA and the message.
async fn transact(
    conn: &mut Conn,
    login: &SmtpLogin<'_>,
    policy: &NetPolicy,
    envelope: &Envelope,
    payload: &[u8],
    reused: bool,
) -> Result<Response, Failure> {
    // Up to MAIL FROM's answer nothing of the message was taken: a parked connection failing
    // there is retried on a new one. Its answers are awaited only so long.
    let early = |e: lettre::transport::smtp::Error| {
        let error = classify(&e);
        if reused && is_gone(&e) {
            Failure::Stale(error)
        } else {
            Failure::Failed {
                quit: e.status().is_some(),
                error,
            }
        }
    };
    let silent = |command: &str| {
        let error = failure(
            TRANSIENT,
            format!(
                "SMTP: {} did not answer {command} within {}s",
                login.host,
                policy.connect_timeout.as_secs()
            ),
        );
        if reused {
            Failure::Stale(error)
        } else {
            Failure::Failed { error, quit: false }
        }
    };
    if !conn.authed {
        let credentials = Credentials::new(
            login.user.to_owned(),
            login.password.expose_secret().to_owned(),
        );
        let auth = conn.smtp.auth(login.mechanisms, &credentials);
        match tokio::time::timeout(policy.connect_timeout, auth).await {
            Ok(Ok(_)) => conn.authed = true,
            Ok(Err(e)) => return Err(early(e)),
            Err(_) => return Err(silent("AUTH")),
        }
    }
    let options = mail_options(&conn.smtp, envelope, payload)
        .map_err(|error| Failure::Failed { error, quit: true })?;
    let mail = conn
        .smtp
        .command(Mail::new(envelope.from().cloned(), options));
    let answer = if reused {
        tokio::time::timeout(policy.connect_timeout, mail)
            .await
            .map_err(|_| silent("MAIL FROM"))?
    } else {
        mail.await
    };
    answer.map_err(early)?;
    // From here on the message may be taken: never retried.
    let late = |e: lettre::transport::smtp::Error| Failure::Failed {
        quit: e.status().is_some(),
        error: classify(&e),
    };
    for to in envelope.to() {
        conn.smtp
            .command(Rcpt::new(to.clone(), vec![]))
            .await
            .map_err(late)?;
    }
    conn.smtp.command(Data).await.map_err(late)?;
    conn.smtp.message(payload).await.map_err(late)
}

/// The MAIL FROM parameters the message needs, as lettre's own `send` picks them, or its
/// refusal when the server lacks the extension.
fn mail_options(
    smtp: &AsyncSmtpConnection,
    envelope: &Envelope,
    payload: &[u8],
) -> Result<Vec<MailParameter>, MailError> {
    let info = smtp.server_info();
    let mut options = Vec::new();
    let non_ascii_address = envelope
        .from()
        .into_iter()
        .chain(envelope.to())
        .any(|a| !AsRef::<str>::as_ref(a).is_ascii());
    if non_ascii_address {
        if !info.supports_feature(Extension::SmtpUtfEight) {
            return Err(MailError::rejected(
                Protocol::Smtp,
                ErrorKind::CantSendMessage,
                "SMTP: Envelope contains non-ascii chars but server does not support SMTPUTF8",
            ));
        }
        options.push(MailParameter::SmtpUtfEight);
    }
    if !payload.is_ascii() {
        if !info.supports_feature(Extension::EightBitMime) {
            return Err(MailError::rejected(
                Protocol::Smtp,
                ErrorKind::CantSendMessage,
                "SMTP: Message contains non-ascii chars but server does not support 8BITMIME",
            ));
        }
        options.push(MailParameter::Body(MailBodyParameter::EightBitMime));
    }
    Ok(options)
}

struct Slot {
    key: String,
    login: LoginPrint,
    account: Arc<Account>,
}

/// SMTP connections, pooled per account. Cheap to clone; clones share the pool.
///
/// The caller names the entry with `key`, `"<account>:<version>"` (or just `"<account>"`):
/// the part before the first `:` picks the slot, and a different version, or a different
/// login for the same key, replaces the slot's connections. Account ids never contain `:`.
#[derive(Clone)]
pub struct SmtpPool {
    inner: Arc<Inner>,
}

struct Inner {
    connections_per_key: u32,
    slots: Mutex<HashMap<String, Slot>>,
    /// Quits connections idle past `IDLE_TIMEOUT`; started by a send.
    reaper: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(reaper) = lock(&self.reaper).take() {
            reaper.abort();
        }
    }
}

impl Default for SmtpPool {
    fn default() -> Self {
        Self::new(DEFAULT_CONNECTIONS_PER_ACCOUNT)
    }
}

impl fmt::Debug for SmtpPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpPool")
            .field("connections_per_key", &self.inner.connections_per_key)
            .field("slots", &lock(&self.inner.slots).len())
            .finish()
    }
}

fn slot_of(key: &str) -> &str {
    key.split_once(':').map_or(key, |(slot, _)| slot)
}

impl SmtpPool {
    pub fn new(connections_per_key: u32) -> Self {
        Self {
            inner: Arc::new(Inner {
                connections_per_key: connections_per_key.max(1),
                slots: Mutex::new(HashMap::new()),
                reaper: Mutex::new(None),
            }),
        }
    }

    /// Drops the slot of `key` (an account deleted or disconnected); its connections close
    /// once no send uses them.
    pub fn forget(&self, key: &str) {
        let gone = lock(&self.inner.slots).remove(slot_of(key));
        drop(gone);
    }

    /// The account of `key`, replacing the slot when the key or the login changed.
    fn account(&self, key: &str, login: &SmtpLogin<'_>) -> Arc<Account> {
        let mut slots = lock(&self.inner.slots);
        let slot = slot_of(key);
        if let Some(s) = slots.get(slot)
            && s.key == key
            && s.login.matches(login)
        {
            return s.account.clone();
        }
        let account = Arc::new(Account::new(self.inner.connections_per_key));
        let replaced = slots.insert(
            slot.to_owned(),
            Slot {
                key: key.to_owned(),
                login: LoginPrint::of(login),
                account: account.clone(),
            },
        );
        drop(slots);
        drop(replaced);
        account
    }

    /// Starts the task that quits idle connections, unless it runs.
    fn start_reaper(&self) {
        let mut reaper = lock(&self.inner.reaper);
        if reaper.as_ref().is_some_and(|h| !h.is_finished()) {
            return;
        }
        *reaper = Some(tokio::spawn(reap(Arc::downgrade(&self.inner))));
    }

    /// Submits `bytes` with the envelope `envelope_from` → `envelope_to` (Bcc recipients are
    /// in the envelope only). A message ending in CRLF, as RFC 5322 messages do, is stored by
    /// the server byte for byte, so the same bytes make the Sent copy.
    ///
    /// Not bounded in time (lettre has no read timeout): wrap it in `tokio::time::timeout`.
    /// Dropping the future is safe; see the module notes.
    pub async fn send(
        &self,
        key: &str,
        login: &SmtpLogin<'_>,
        policy: &NetPolicy,
        envelope_from: &str,
        envelope_to: &[String],
        bytes: &[u8],
    ) -> Result<SmtpSent, MailError> {
        let envelope = envelope(envelope_from, envelope_to)?;
        let account = self.account(key, login);
        if let Some(e) = account.too_large(bytes.len(), login.host) {
            return Err(e);
        }
        self.start_reaper();
        let response = account
            .deliver(login, policy, &envelope, bytes, || {
                open_connection(login, policy)
            })
            .await?;
        Ok(SmtpSent {
            response: response.message().collect::<Vec<_>>().join(" "),
        })
    }
}

/// Every half `IDLE_TIMEOUT`, quits the connections idle longer; ends with the pool.
async fn reap(pool: Weak<Inner>) {
    loop {
        tokio::time::sleep(IDLE_TIMEOUT / 2).await;
        let Some(inner) = pool.upgrade() else {
            return;
        };
        let accounts: Vec<Arc<Account>> = lock(&inner.slots)
            .values()
            .map(|s| s.account.clone())
            .collect();
        drop(inner);
        for account in accounts {
            quit_all(account.expired());
        }
    }
}

fn envelope(from: &str, to: &[String]) -> Result<Envelope, MailError> {
    let recipient_rejected =
        |detail: String| MailError::rejected(Protocol::Smtp, ErrorKind::RecipientRejected, detail);
    let from: Address = from.parse().map_err(|e| {
        MailError::rejected(
            Protocol::Smtp,
            ErrorKind::SendAsDenied,
            format!("invalid envelope sender {from:?}: {e}"),
        )
    })?;
    let to = to
        .iter()
        .map(|a| {
            a.parse::<Address>()
                .map_err(|e| recipient_rejected(format!("invalid recipient {a:?}: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Envelope::new(Some(from), to).map_err(|e| recipient_rejected(format!("envelope: {e}")))
}

/// Opens a connection of the pool: our own TCP stream (TCP_NODELAY), TLS, greeting and EHLO.
async fn open_connection(
    login: &SmtpLogin<'_>,
    policy: &NetPolicy,
) -> Result<AsyncSmtpConnection, MailError> {
    let tcp = smtp::open_stream(login, policy).await.map_err(opening)?;
    let hello = ClientId::default();
    match login.tls {
        TlsMode::Starttls => {
            let params = smtp::tls_parameters(login.host, policy).map_err(opening)?;
            let mut conn = AsyncSmtpConnection::connect_with_transport(Box::new(tcp), &hello)
                .await
                .map_err(|e| classify(&e))?;
            conn.starttls(params, &hello)
                .await
                .map_err(|e| classify(&e))?;
            Ok(conn)
        }
        TlsMode::Implicit => {
            let tls = smtp::implicit_tls(tcp, login.host, policy)
                .await
                .map_err(opening)?;
            AsyncSmtpConnection::connect_with_transport(Box::new(tls), &hello)
                .await
                .map_err(|e| classify(&e))
        }
    }
}

/// `SIZE n` among the EHLO lines; `SIZE`, `SIZE 0` or none mean no announced limit.
fn size_from_ehlo<'a>(lines: impl Iterator<Item = &'a str>) -> Option<u64> {
    lines
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            words
                .next()
                .filter(|w| w.eq_ignore_ascii_case("SIZE"))
                .and_then(|_| words.next()?.parse::<u64>().ok())
        })
        .find(|&n| n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const AUTH: FailureKind = FailureKind::Auth;
    const QUOTA: FailureKind = FailureKind::Quota { retry_after: None };
    const RECIPIENT_REJECTED: FailureKind = FailureKind::Rejected(ErrorKind::RecipientRejected);
    const SENDER_REJECTED: FailureKind = FailureKind::Rejected(ErrorKind::SendAsDenied);
    const TOO_LARGE: FailureKind = FailureKind::TooLarge;
    const REJECTED: FailureKind = FailureKind::Rejected(ErrorKind::CantSendMessage);

    fn kind(code: u16, text: &str) -> FailureKind {
        classify_reply(code, text).kind
    }

    #[test]
    fn quota_replies_pause_the_account() {
        let pause = FailureKind::SendQuota {
            reopens_in: crate::send_quota::DEFAULT_QUOTA_PAUSE,
        };
        assert_eq!(
            kind(
                550,
                "5.4.5 Daily user sending limit exceeded. For more information on Gmail sending limits go to https://support.google.com/a/answer/166852"
            ),
            pause
        );
        assert_eq!(kind(452, "4.5.3 Daily message limit exceeded"), pause);
        // Congestion or a full disk is no quota.
        assert_eq!(kind(452, "4.3.1 Insufficient system storage"), TRANSIENT);
        assert_eq!(
            kind(
                554,
                "5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException"
            ),
            pause
        );
        assert_eq!(kind(451, "4.7.1 Daily message limit reached"), pause);
        // A recipient's full mailbox is that recipient's refusal, not this mailbox's quota.
        for (code, text) in [
            (
                552,
                "5.2.2 <bob@example.test>: Quota exceeded (mailbox for user is full)",
            ),
            (
                452,
                "4.2.2 The email account that you tried to reach is over quota. Please direct the recipient to https://support.google.com/mail/?p=OverQuotaTemp",
            ),
            (550, "Requested action not taken: mailbox full"),
        ] {
            assert_ne!(kind(code, text), pause, "{code} {text}");
        }
    }

    #[test]
    fn replies_are_classified() {
        assert_eq!(kind(451, "4.3.0 Error: queue file write error"), TRANSIENT);
        assert_eq!(kind(421, "4.7.0 Too many connections"), QUOTA);
        assert_eq!(kind(535, "5.7.8 Error: authentication failed"), AUTH);
        assert_eq!(kind(530, "5.7.0 Authentication required"), AUTH);
        assert_eq!(
            kind(
                550,
                "5.7.139 Authentication unsuccessful, basic auth disabled"
            ),
            AUTH
        );
        assert_eq!(
            kind(
                550,
                "5.1.1 <bob@example.test>: Recipient address rejected: User unknown in virtual mailbox table"
            ),
            RECIPIENT_REJECTED
        );
        assert_eq!(kind(550, "No such user here"), RECIPIENT_REJECTED);
        assert_eq!(
            kind(550, "5.1.10 RESOLVER.ADR.RecipientNotFound"),
            RECIPIENT_REJECTED
        );
        assert_eq!(
            kind(
                553,
                "5.7.1 <eve@example.test>: Sender address rejected: not owned by user u@example.test"
            ),
            SENDER_REJECTED
        );
        assert_eq!(
            kind(
                550,
                "5.7.60 SMTP; Client does not have permissions to send as this sender"
            ),
            SENDER_REJECTED
        );
        assert_eq!(
            kind(553, "5.1.8 Domain of sender address does not exist"),
            SENDER_REJECTED
        );
        assert_eq!(
            kind(552, "5.3.4 Message size exceeds fixed maximum message size"),
            TOO_LARGE
        );
        assert_eq!(kind(552, "Too much mail data"), TOO_LARGE);
        assert_eq!(kind(552, "5.2.2 Mailbox full"), RECIPIENT_REJECTED);
        assert_eq!(kind(554, "5.7.1 Message rejected as spam"), REJECTED);
        assert_eq!(kind(550, ""), REJECTED);
    }

    #[test]
    fn codes_details_and_quota() {
        let e = classify_reply(550, "5.1.1 <bob@example.test>: User unknown");
        assert_eq!(e.code.as_deref(), Some("550 5.1.1"));
        assert_eq!(e.detail(), "550 5.1.1 <bob@example.test>: User unknown");
        assert!(!e.is_transient() && !e.is_quota());
        // An enhanced code of another class is not taken as the reply's.
        assert_eq!(
            classify_reply(550, "4.1.1 odd").code.as_deref(),
            Some("550")
        );
        let q = classify_reply(421, "4.7.0 Too many connections from your host");
        assert!(q.is_transient() && q.is_quota(), "{q}");
        let r = classify_reply(450, "4.7.1 Rate limit exceeded, try later");
        assert!(r.is_quota());
        let plain = classify_reply(451, "4.3.0 Temporary lookup failure; try again later");
        assert!(plain.is_transient() && !plain.is_quota());
        // A word that merely contains "rate" is not throttling.
        assert!(!classify_reply(451, "cannot generate a queue id").is_quota());
        let a = classify_reply(535, "5.7.8 Error: authentication failed: bad");
        assert!(a.is_auth() && !a.is_transient());
    }

    #[test]
    fn size_is_read_from_ehlo_lines() {
        let lines = ["mx.example", "PIPELINING", "SIZE 10240000", "8BITMIME"];
        assert_eq!(size_from_ehlo(lines.into_iter()), Some(10_240_000));
        assert_eq!(size_from_ehlo(["mx", "SIZE"].into_iter()), None);
        assert_eq!(size_from_ehlo(["mx", "size 0"].into_iter()), None);
        assert_eq!(size_from_ehlo(["mx", "SIZED 5"].into_iter()), None);
    }

    #[test]
    fn keys_pick_slots() {
        assert_eq!(slot_of("acc1:2026-01-01"), "acc1");
        assert_eq!(slot_of("acc1"), "acc1");
    }

    #[test]
    fn envelope_addresses_are_checked() {
        let e = envelope("not an address", &["a@example.test".into()]).unwrap_err();
        assert_eq!(e.kind, SENDER_REJECTED);
        let e = envelope("a@example.test", &["bad".into()]).unwrap_err();
        assert_eq!(e.kind, RECIPIENT_REJECTED);
        let e = envelope("a@example.test", &[]).unwrap_err();
        assert_eq!(e.kind, RECIPIENT_REJECTED);
        assert!(envelope("a@example.test", &["b@example.test".into()]).is_ok());
    }

    // The pool against a scripted plaintext SMTP server: connection reuse, SIZE, retries and
    // cancellation. TLS and real servers are the mail rig's (crates/testkit, smtp_send).

    use std::net::SocketAddr;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    use lettre::transport::smtp::client::AsyncSmtpConnection;
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    use tokio::net::{TcpListener, TcpStream};
    use tokio::sync::Notify;

    use crate::imap_smtp::smtp::PASSWORD_MECHANISMS;

    #[tokio::test]
    async fn the_pool_opens_its_streams_with_nodelay() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let password = SecretString::from("pw".to_owned());
        for tls in [TlsMode::Starttls, TlsMode::Implicit] {
            let login = login(port, &password);
            let login = SmtpLogin { tls, ..login };
            let policy = net();
            let (stream, accepted) =
                tokio::join!(smtp::open_stream(&login, &policy), listener.accept());
            let stream = stream.unwrap();
            let (server_side, _) = accepted.unwrap();
            assert_eq!(
                stream.peer_addr().unwrap(),
                server_side.local_addr().unwrap()
            );
            assert!(stream.nodelay().unwrap(), "{tls:?}: TCP_NODELAY is not set");
        }
    }

    #[derive(Default)]
    struct Script {
        accepted: AtomicUsize,
        auths: AtomicUsize,
        mails: AtomicUsize,
        /// Messages received to the final dot.
        messages: AtomicUsize,
        quits: AtomicUsize,
        /// Close the connection after answering a message (the server timed it out).
        close_after_message: AtomicBool,
        /// Close the connection at the end of DATA without answering.
        drop_at_data_end: AtomicBool,
        /// Hold the end of DATA without answering; `stalled` is notified.
        stall_at_data_end: AtomicBool,
        stalled: Notify,
    }

    /// A plaintext SMTP server with `SIZE 1000` on 127.0.0.1, following `Script`.
    async fn fake_server() -> (SocketAddr, Arc<Script>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let script = Arc::new(Script::default());
        let s = script.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                s.accepted.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(session(stream, s.clone()));
            }
        });
        (addr, script)
    }

    async fn session(stream: TcpStream, s: Arc<Script>) {
        let (read, mut write) = stream.into_split();
        let mut lines = BufReader::new(read);
        let mut line = String::new();
        let _ = write.write_all(b"220 fake ESMTP\r\n").await;
        loop {
            line.clear();
            if lines.read_line(&mut line).await.unwrap_or(0) == 0 {
                return;
            }
            let verb = line
                .split_whitespace()
                .next()
                .unwrap_or("")
                .to_ascii_uppercase();
            let reply: &[u8] = match verb.as_str() {
                "EHLO" => b"250-fake\r\n250-SIZE 1000\r\n250-8BITMIME\r\n250 AUTH PLAIN LOGIN\r\n",
                "AUTH" => {
                    s.auths.fetch_add(1, Ordering::SeqCst);
                    b"235 2.7.0 Authentication successful\r\n"
                }
                "MAIL" => {
                    s.mails.fetch_add(1, Ordering::SeqCst);
                    b"250 2.1.0 Ok\r\n"
                }
                "RCPT" | "NOOP" | "RSET" => b"250 2.1.5 Ok\r\n",
                "QUIT" => {
                    s.quits.fetch_add(1, Ordering::SeqCst);
                    let _ = write.write_all(b"221 2.0.0 Bye\r\n").await;
                    return;
                }
                "DATA" => {
                    let _ = write
                        .write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                        .await;
                    loop {
                        line.clear();
                        if lines.read_line(&mut line).await.unwrap_or(0) == 0 {
                            return;
                        }
                        if line == ".\r\n" {
                            break;
                        }
                    }
                    s.messages.fetch_add(1, Ordering::SeqCst);
                    if s.drop_at_data_end.load(Ordering::SeqCst) {
                        return;
                    }
                    if s.stall_at_data_end.load(Ordering::SeqCst) {
                        s.stalled.notify_one();
                        std::future::pending::<()>().await;
                    }
                    let _ = write.write_all(b"250 2.0.0 Ok: queued as FAKE\r\n").await;
                    if s.close_after_message.load(Ordering::SeqCst) {
                        return;
                    }
                    continue;
                }
                _ => b"502 5.5.2 Error: command not recognized\r\n",
            };
            let _ = write.write_all(reply).await;
        }
    }

    fn net() -> NetPolicy {
        NetPolicy {
            allow_private: true,
            tls_insecure_skip_verify: true,
            connect_timeout: std::time::Duration::from_secs(10),
        }
    }

    fn login(port: u16, password: &SecretString) -> SmtpLogin<'_> {
        SmtpLogin {
            host: "127.0.0.1",
            port,
            tls: TlsMode::Starttls,
            user: "u@example.test",
            password,
            mechanisms: PASSWORD_MECHANISMS,
        }
    }

    /// `Account::deliver` over plaintext connections to `addr`.
    async fn deliver(
        account: &Account,
        addr: SocketAddr,
        bytes: &[u8],
    ) -> Result<Response, MailError> {
        let password = SecretString::from("pw".to_owned());
        let env = envelope("u@example.test", &["bob@example.test".into()]).unwrap();
        let open = || async move {
            let tcp = TcpStream::connect(addr).await.unwrap();
            AsyncSmtpConnection::connect_with_transport(Box::new(tcp), &ClientId::default())
                .await
                .map_err(|e| classify(&e))
        };
        account
            .deliver(&login(addr.port(), &password), &net(), &env, bytes, open)
            .await
    }

    const SMALL: &[u8] = b"Subject: hi\r\n\r\nhello\r\n";

    #[tokio::test]
    async fn a_parked_connection_is_reused_without_a_new_login() {
        let (addr, s) = fake_server().await;
        let account = Account::new(3);
        for _ in 0..3 {
            let r = deliver(&account, addr, SMALL).await.unwrap();
            assert_eq!(u16::from(r.code()), 250);
        }
        assert_eq!(s.accepted.load(Ordering::SeqCst), 1);
        assert_eq!(s.auths.load(Ordering::SeqCst), 1);
        assert_eq!(s.messages.load(Ordering::SeqCst), 3);
        assert_eq!(account.size_limit.get(), Some(&Some(1000)));
        assert_eq!(lock(&account.idle).len(), 1);
    }

    #[tokio::test]
    async fn too_large_fails_before_auth_and_mail_from() {
        let (addr, s) = fake_server().await;
        let account = Account::new(3);
        let big = format!("Subject: big\r\n\r\n{}\r\n", "x".repeat(2_000));
        let e = deliver(&account, addr, big.as_bytes()).await.unwrap_err();
        assert_eq!(e.kind, TOO_LARGE, "{e}");
        assert!(e.detail().contains("1000"), "{e}");
        assert_eq!(s.auths.load(Ordering::SeqCst), 0);
        assert_eq!(s.mails.load(Ordering::SeqCst), 0);
        // The connection that read SIZE carries the next message, logging in first.
        deliver(&account, addr, SMALL).await.unwrap();
        assert_eq!(s.accepted.load(Ordering::SeqCst), 1);
        assert_eq!(s.auths.load(Ordering::SeqCst), 1);
        assert_eq!(s.messages.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_parked_connection_the_server_closed_does_not_fail_the_send() {
        let (addr, s) = fake_server().await;
        s.close_after_message.store(true, Ordering::SeqCst);
        let account = Account::new(3);
        deliver(&account, addr, SMALL).await.unwrap();
        // The parked connection is closed by now: MAIL FROM fails on it, the send moves on.
        deliver(&account, addr, SMALL).await.unwrap();
        assert_eq!(s.accepted.load(Ordering::SeqCst), 2);
        assert_eq!(s.auths.load(Ordering::SeqCst), 2);
        assert_eq!(s.messages.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn nothing_is_resent_once_data_went_out() {
        let (addr, s) = fake_server().await;
        let account = Account::new(3);
        deliver(&account, addr, SMALL).await.unwrap();
        s.drop_at_data_end.store(true, Ordering::SeqCst);
        let e = deliver(&account, addr, SMALL).await.unwrap_err();
        assert!(e.is_transient(), "{e}");
        assert_eq!(s.messages.load(Ordering::SeqCst), 2);
        assert_eq!(s.accepted.load(Ordering::SeqCst), 1, "no second connection");
        assert!(
            lock(&account.idle).is_empty(),
            "the broken connection is not parked"
        );
    }

    #[tokio::test]
    async fn a_refused_message_discards_its_connection() {
        let (addr, s) = fake_server().await;
        let account = Account::new(3);
        // 8BITMIME is advertised, SMTPUTF8 is not: refused before MAIL FROM.
        let password = SecretString::from("pw".to_owned());
        let env = envelope("u@example.test", &["bób@example.test".into()]).unwrap();
        let open = || async move {
            let tcp = TcpStream::connect(addr).await.unwrap();
            AsyncSmtpConnection::connect_with_transport(Box::new(tcp), &ClientId::default())
                .await
                .map_err(|e| classify(&e))
        };
        let e = account
            .deliver(&login(addr.port(), &password), &net(), &env, SMALL, open)
            .await
            .unwrap_err();
        assert_eq!(e.kind, REJECTED, "{e}");
        assert!(e.detail().contains("SMTPUTF8"), "{e}");
        assert_eq!(s.mails.load(Ordering::SeqCst), 0);
        assert!(lock(&account.idle).is_empty());
    }

    #[tokio::test]
    async fn a_dropped_send_never_parks_its_connection() {
        let (addr, s) = fake_server().await;
        s.stall_at_data_end.store(true, Ordering::SeqCst);
        let account = Account::new(3);
        {
            let send = deliver(&account, addr, SMALL);
            tokio::pin!(send);
            tokio::select! {
                r = &mut send => panic!("a stalled send cannot finish: {r:?}"),
                _ = s.stalled.notified() => {}
            }
            // The caller gives up: the future is dropped here, mid-exchange.
        }
        assert!(lock(&account.idle).is_empty());
        s.stall_at_data_end.store(false, Ordering::SeqCst);
        deliver(&account, addr, SMALL).await.unwrap();
        assert_eq!(s.accepted.load(Ordering::SeqCst), 2);
        assert_eq!(s.messages.load(Ordering::SeqCst), 2);
        // Its permit came back too: all of them are free.
        assert_eq!(account.in_flight.available_permits(), 3);
    }

    #[tokio::test]
    async fn an_account_never_opens_more_connections_than_its_cap() {
        let (addr, s) = fake_server().await;
        let account = Account::new(2);
        let sends = (0..6).map(|_| deliver(&account, addr, SMALL));
        for r in futures_util::future::join_all(sends).await {
            r.unwrap();
        }
        assert!(s.accepted.load(Ordering::SeqCst) <= 2);
        assert_eq!(s.messages.load(Ordering::SeqCst), 6);
        assert!(lock(&account.idle).len() <= 2);
    }
}
