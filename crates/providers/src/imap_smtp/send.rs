//! SMTP submission of finished messages: a cache of pooled lettre transports per account, the
//! server's SIZE limit, and the classes of failure the outbox acts on (retry, reconnect, or a
//! permanent 422 with the server's own words).
//!
//! **SIZE (RFC 1870).** lettre does not expose it: `ServerInfo` keeps only the EHLO keywords
//! its `Extension` enum knows (8BITMIME, SMTPUTF8, STARTTLS, AUTH), the raw EHLO reply is
//! dropped, and the pooled transport never sends `MAIL FROM … SIZE=`. So when a transport is
//! built we open one extra, unauthenticated connection, send our own `EHLO` and read `SIZE n`
//! from the reply; a message longer than `n` fails as [`SendErrorKind::TooLarge`] before any
//! `MAIL FROM`, so a 30 MB upload is never wasted on a 10 MB server. Servers that do not
//! advertise a limit (or lie) still answer `552` / `5.3.4` after DATA, which maps to
//! `TooLarge` too.
//!
//! **Cancellation.** lettre's async connections have no read timeout, and a pooled connection
//! whose send future is dropped mid-command goes back to the pool unbroken: its late reply
//! would then be read as the answer to the next command. Callers bound `send` with a timeout
//! and may drop it, so a dropped send evicts its transport: the pool is shut down with its
//! connections and the next send builds a fresh one.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use lettre::address::{Address, Envelope};
use lettre::transport::smtp::authentication::Mechanism;
use lettre::transport::smtp::client::{AsyncSmtpConnection, TlsParameters};
use lettre::transport::smtp::commands::Ehlo;
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::OnceCell;

use super::smtp::{self, SmtpLogin};
use crate::error::{Protocol, ProviderError};
use crate::{NetPolicy, egress};
use mailroom_core::account::TlsMode;

/// Connections kept per account. Providers cap concurrent submissions per user (Microsoft 365
/// allows 3), and one connection already carries a message after another.
pub const DEFAULT_CONNECTIONS_PER_ACCOUNT: u32 = 3;

/// What the server said when it took the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpSent {
    /// The final reply text, e.g. `2.0.0 Ok: queued as 4B3F21C0A2`.
    pub response: String,
}

/// Why a send failed, as the outbox acts on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendErrorKind {
    /// 4xx, connection, TLS, timeout: try again later.
    Transient,
    /// The server refused the credentials (530 / 534 / 535): the account needs a reconnect.
    Auth,
    /// A recipient does not exist or is refused (5.1.1, 5.1.2, 5.1.3, 5.1.10, mailbox full).
    RecipientRejected,
    /// The user may not send as this address (5.1.7, 5.1.8, "not owned", "send as").
    SenderRejected,
    /// Over the server's size limit (SIZE, 552, 5.3.4).
    TooLarge,
    /// Any other permanent refusal.
    Rejected,
}

impl fmt::Display for SendErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SendErrorKind::Transient => "temporary SMTP failure",
            SendErrorKind::Auth => "SMTP authentication failed",
            SendErrorKind::RecipientRejected => "recipient rejected",
            SendErrorKind::SenderRejected => "sender rejected",
            SendErrorKind::TooLarge => "message too large",
            SendErrorKind::Rejected => "message rejected",
        })
    }
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("{kind}: {detail}")]
pub struct SendError {
    kind: SendErrorKind,
    code: Option<String>,
    detail: String,
    quota: bool,
}

impl SendError {
    fn new(kind: SendErrorKind, detail: impl Into<String>) -> Self {
        Self {
            kind,
            code: None,
            detail: detail.into(),
            quota: false,
        }
    }

    pub fn kind(&self) -> SendErrorKind {
        self.kind
    }

    /// The server's reply code with its enhanced status code when it gave one
    /// (`550 5.1.1`, `451`); `None` when the failure was not a reply.
    pub fn code(&self) -> Option<&str> {
        self.code.as_deref()
    }

    /// The server's reply (`550 5.1.1 <bob@example.com>: Recipient address rejected: …`), or
    /// what went wrong when there was no reply; fit for the API's `detail`.
    pub fn detail(&self) -> &str {
        &self.detail
    }

    pub fn is_transient(&self) -> bool {
        self.kind == SendErrorKind::Transient
    }

    pub fn is_auth(&self) -> bool {
        self.kind == SendErrorKind::Auth
    }

    /// The server throttles us (a 4xx that speaks of rates or too many of something).
    pub fn is_quota(&self) -> bool {
        self.quota
    }
}

impl From<ProviderError> for SendError {
    fn from(e: ProviderError) -> Self {
        let kind = match &e {
            ProviderError::Connect { .. } | ProviderError::Quota { .. } => SendErrorKind::Transient,
            ProviderError::Auth { .. } => SendErrorKind::Auth,
            // The egress guard's verdict does not change by retrying.
            ProviderError::Forbidden { .. } | ProviderError::Protocol { .. } => {
                SendErrorKind::Rejected
            }
        };
        SendError {
            quota: e.is_quota(),
            ..SendError::new(kind, e.to_string())
        }
    }
}

/// Classifies a lettre error: a server reply by its codes and text, anything else by what
/// failed. Unknown failures are transient: retrying a permanent one only delays the verdict,
/// while giving up on a transient one loses the mail.
pub fn classify(e: &lettre::transport::smtp::Error) -> SendError {
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
            return SendError::new(SendErrorKind::Rejected, format!("SMTP: {text}"));
        }
        if lower.contains("8bitmime") || lower.contains("smtputf8") {
            return SendError::new(SendErrorKind::Rejected, format!("SMTP: {text}"));
        }
    }
    SendError::new(SendErrorKind::Transient, format!("SMTP: {e}"))
}

/// Classifies a negative reply (`code` 4xx or 5xx, `text` the reply lines joined).
pub fn classify_reply(code: u16, text: &str) -> SendError {
    let enhanced = enhanced_code(code, text);
    let lower = text.to_ascii_lowercase();
    let kind = reply_kind(code, enhanced, &lower);
    SendError {
        kind,
        code: Some(match enhanced {
            Some(x) => format!("{code} {x}"),
            None => code.to_string(),
        }),
        detail: if text.is_empty() {
            code.to_string()
        } else {
            format!("{code} {text}")
        },
        quota: kind == SendErrorKind::Transient
            && matches!(code, 421 | 450 | 451 | 452)
            && speaks_of_throttling(&lower),
    }
}

fn reply_kind(code: u16, enhanced: Option<&str>, lower: &str) -> SendErrorKind {
    use SendErrorKind::*;
    if code < 500 {
        return Transient;
    }
    // RFC 4954: 530 authentication required, 534 mechanism too weak, 535 bad credentials;
    // 5.7.8 / 5.7.9 say the same in enhanced codes, and Microsoft answers 5.7.30 / 5.7.139
    // when basic authentication is off for the tenant.
    if matches!(code, 530 | 534 | 535)
        || matches!(enhanced, Some("5.7.8" | "5.7.9" | "5.7.30" | "5.7.139"))
    {
        return Auth;
    }
    // RFC 3463 address statuses name the side that is wrong without any doubt.
    match enhanced {
        Some("5.1.1" | "5.1.2" | "5.1.3" | "5.1.10" | "5.1.6") => return RecipientRejected,
        Some("5.1.7" | "5.1.8") => return SenderRejected,
        // Microsoft's "SendAsDenied".
        Some("5.7.60") => return SenderRejected,
        // 552 5.2.2 is a full mailbox: the recipient cannot take it, the message is fine.
        Some("5.2.2") => return RecipientRejected,
        Some("5.3.4" | "5.2.3") => return TooLarge,
        _ => {}
    }
    if code == 552
        || lower.contains("size")
        || lower.contains("too large")
        || lower.contains("too big")
    {
        return TooLarge;
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
        (Some(s), Some(r)) if s < r => SenderRejected,
        (Some(_), None) => SenderRejected,
        (_, Some(_)) => RecipientRejected,
        (None, None) => Rejected,
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

fn speaks_of_throttling(lower: &str) -> bool {
    lower.contains("too many")
        || lower.contains("throttl")
        || lower
            .split(|c: char| !c.is_ascii_alphanumeric())
            .any(|w| w == "rate" || w == "ratelimit" || w == "ratelimited")
}

/// The login an entry was built with; a different one (a reconnect) replaces the transport.
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

struct Built {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    /// The server's SIZE, when it advertised a positive one.
    size_limit: Option<u64>,
    /// At most this many sends at once per account: lettre's pool size only caps *idle*
    /// connections, and mail servers refuse more than a few per account (421/4.7.0).
    in_flight: tokio::sync::Semaphore,
}

type Cell = Arc<OnceCell<Arc<Built>>>;

struct Slot {
    key: String,
    login: LoginPrint,
    cell: Cell,
}

/// Pooled SMTP transports, one per account. Cheap to clone; clones share the cache.
///
/// The caller names the entry with `key`, `"<account>:<version>"` (or just `"<account>"`):
/// the part before the first `:` picks the slot, and a different version, or a different
/// login for the same key, replaces the slot's transport. Account ids never contain `:`.
#[derive(Clone)]
pub struct SmtpPool {
    inner: Arc<Inner>,
}

struct Inner {
    connections_per_key: u32,
    slots: Mutex<HashMap<String, Slot>>,
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
            .field("slots", &self.slots().len())
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
            }),
        }
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, HashMap<String, Slot>> {
        // A panic while holding the lock leaves a map that is still consistent.
        self.inner
            .slots
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Drops the slot of `key` (an account deleted or disconnected); its connections close
    /// once no send uses them.
    pub fn forget(&self, key: &str) {
        self.slots().remove(slot_of(key));
    }

    /// The cell for `key`, replacing the slot when the key or the login changed.
    fn cell(&self, key: &str, login: &SmtpLogin<'_>) -> Cell {
        let mut slots = self.slots();
        let slot = slot_of(key);
        if let Some(s) = slots.get(slot)
            && s.key == key
            && s.login.matches(login)
        {
            return s.cell.clone();
        }
        let cell = Cell::default();
        slots.insert(
            slot.to_owned(),
            Slot {
                key: key.to_owned(),
                login: LoginPrint::of(login),
                cell: cell.clone(),
            },
        );
        cell
    }

    fn evict(&self, key: &str, cell: &Cell) {
        let mut slots = self.slots();
        let slot = slot_of(key);
        if slots.get(slot).is_some_and(|s| Arc::ptr_eq(&s.cell, cell)) {
            slots.remove(slot);
        }
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
    ) -> Result<SmtpSent, SendError> {
        let envelope = envelope(envelope_from, envelope_to)?;
        let cell = self.cell(key, login);
        let built = cell
            .get_or_try_init(|| build(login, policy, self.inner.connections_per_key))
            .await?
            .clone();
        if let Some(limit) = built.size_limit
            && bytes.len() as u64 > limit
        {
            return Err(SendError::new(
                SendErrorKind::TooLarge,
                format!(
                    "the message is {} bytes and {} accepts at most {limit} (SIZE)",
                    bytes.len(),
                    login.host
                ),
            ));
        }
        let _permit = built
            .in_flight
            .acquire()
            .await
            .expect("the semaphore is never closed");
        let mut guard = EvictOnDrop {
            pool: self,
            key,
            cell: &cell,
            armed: true,
        };
        // lettre always ends DATA with `CRLF . CRLF`; that first CRLF is the end of the last
        // line (RFC 5321 §4.1.1.4), so a message ending in CRLF would gain a blank line and
        // differ from the Sent copy. Leave the final CRLF to the terminator.
        let payload = bytes.strip_suffix(b"\r\n").unwrap_or(bytes);
        let result = built.transport.send_raw(&envelope, payload).await;
        guard.armed = false;
        match result {
            Ok(response) => Ok(SmtpSent {
                response: response.message().collect::<Vec<_>>().join(" "),
            }),
            Err(e) => Err(classify(&e)),
        }
    }
}

/// Evicts the transport of a send whose future was dropped mid-exchange.
struct EvictOnDrop<'a> {
    pool: &'a SmtpPool,
    key: &'a str,
    cell: &'a Cell,
    armed: bool,
}

impl Drop for EvictOnDrop<'_> {
    fn drop(&mut self) {
        if self.armed {
            tracing::debug!(
                key = self.key,
                "SMTP send abandoned; dropping its transport"
            );
            self.pool.evict(self.key, self.cell);
        }
    }
}

fn envelope(from: &str, to: &[String]) -> Result<Envelope, SendError> {
    let from: Address = from.parse().map_err(|e| {
        SendError::new(
            SendErrorKind::SenderRejected,
            format!("invalid envelope sender {from:?}: {e}"),
        )
    })?;
    let to = to
        .iter()
        .map(|a| {
            a.parse::<Address>().map_err(|e| {
                SendError::new(
                    SendErrorKind::RecipientRejected,
                    format!("invalid recipient {a:?}: {e}"),
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Envelope::new(Some(from), to)
        .map_err(|e| SendError::new(SendErrorKind::RecipientRejected, format!("envelope: {e}")))
}

async fn build(
    login: &SmtpLogin<'_>,
    policy: &NetPolicy,
    pool_size: u32,
) -> Result<Arc<Built>, SendError> {
    let size_limit = probe_size(login, policy).await?;
    let transport = smtp::transport(login, policy, pool_size).await?;
    Ok(Arc::new(Built {
        transport,
        size_limit,
        in_flight: tokio::sync::Semaphore::new(pool_size.max(1) as usize),
    }))
}

/// Reads the server's SIZE from a fresh EHLO (lettre keeps no raw EHLO reply).
async fn probe_size(login: &SmtpLogin<'_>, policy: &NetPolicy) -> Result<Option<u64>, SendError> {
    let probe = async {
        let addrs = egress::resolve(
            Protocol::Smtp,
            login.host,
            login.port,
            policy.allow_private,
            policy.connect_timeout,
        )
        .await?;
        let params = TlsParameters::builder(login.host.to_owned())
            .dangerous_accept_invalid_certs(policy.tls_insecure_skip_verify)
            .build_rustls()
            .map_err(|e| SendError::new(SendErrorKind::Transient, format!("TLS setup: {e}")))?;
        let hello = ClientId::default();
        let implicit = (login.tls == TlsMode::Implicit).then(|| params.clone());
        let mut conn = AsyncSmtpConnection::connect_tokio1(
            addrs[0],
            Some(policy.connect_timeout),
            &hello,
            implicit,
            None,
        )
        .await
        .map_err(|e| classify(&e))?;
        if login.tls == TlsMode::Starttls {
            conn.starttls(params, &hello)
                .await
                .map_err(|e| classify(&e))?;
        }
        let ehlo = conn
            .command(Ehlo::new(hello))
            .await
            .map_err(|e| classify(&e))?;
        let _ = conn.quit().await;
        Ok::<_, SendError>(size_from_ehlo(ehlo.message()))
    };
    match tokio::time::timeout(policy.connect_timeout, probe).await {
        Ok(r) => r,
        Err(_) => Err(SendError::new(
            SendErrorKind::Transient,
            format!(
                "{}:{} did not answer EHLO within {}s",
                login.host,
                login.port,
                policy.connect_timeout.as_secs()
            ),
        )),
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
    use SendErrorKind::*;

    fn kind(code: u16, text: &str) -> SendErrorKind {
        classify_reply(code, text).kind()
    }

    #[test]
    fn replies_are_classified() {
        assert_eq!(kind(451, "4.3.0 Error: queue file write error"), Transient);
        assert_eq!(kind(421, "4.7.0 Too many connections"), Transient);
        assert_eq!(kind(535, "5.7.8 Error: authentication failed"), Auth);
        assert_eq!(kind(530, "5.7.0 Authentication required"), Auth);
        assert_eq!(
            kind(
                550,
                "5.7.139 Authentication unsuccessful, basic auth disabled"
            ),
            Auth
        );
        assert_eq!(
            kind(
                550,
                "5.1.1 <bob@example.test>: Recipient address rejected: User unknown in virtual mailbox table"
            ),
            RecipientRejected
        );
        assert_eq!(kind(550, "No such user here"), RecipientRejected);
        assert_eq!(
            kind(550, "5.1.10 RESOLVER.ADR.RecipientNotFound"),
            RecipientRejected
        );
        assert_eq!(
            kind(
                553,
                "5.7.1 <eve@example.test>: Sender address rejected: not owned by user u@example.test"
            ),
            SenderRejected
        );
        assert_eq!(
            kind(
                550,
                "5.7.60 SMTP; Client does not have permissions to send as this sender"
            ),
            SenderRejected
        );
        assert_eq!(
            kind(553, "5.1.8 Domain of sender address does not exist"),
            SenderRejected
        );
        assert_eq!(
            kind(552, "5.3.4 Message size exceeds fixed maximum message size"),
            TooLarge
        );
        assert_eq!(kind(552, "Too much mail data"), TooLarge);
        assert_eq!(kind(552, "5.2.2 Mailbox full"), RecipientRejected);
        assert_eq!(kind(554, "5.7.1 Message rejected as spam"), Rejected);
        assert_eq!(kind(550, ""), Rejected);
    }

    #[test]
    fn codes_details_and_quota() {
        let e = classify_reply(550, "5.1.1 <bob@example.test>: User unknown");
        assert_eq!(e.code(), Some("550 5.1.1"));
        assert_eq!(e.detail(), "550 5.1.1 <bob@example.test>: User unknown");
        assert!(!e.is_transient() && !e.is_quota());
        // An enhanced code of another class is not taken as the reply's.
        assert_eq!(classify_reply(550, "4.1.1 odd").code(), Some("550"));
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
        assert_eq!(e.kind(), SenderRejected);
        let e = envelope("a@example.test", &["bad".into()]).unwrap_err();
        assert_eq!(e.kind(), RecipientRejected);
        let e = envelope("a@example.test", &[]).unwrap_err();
        assert_eq!(e.kind(), RecipientRejected);
        assert!(envelope("a@example.test", &["b@example.test".into()]).is_ok());
    }
}
