//! The mailbox seam: one [`Mailbox`] per linked account, opened from its typed settings and
//! its secrets, whatever the provider. The engine verifies, sends, finds reply parents, files
//! Sent copies and reads folders and messages through it and never asks which provider an
//! account is.
//!
//! **An enum, not a trait object.** The providers are a closed set that this crate owns
//! (IMAP/SMTP, Gmail, Graph); an enum gives static dispatch of `async fn`s without boxing
//! every future, an exhaustive `match` in one file per operation (adding list/fetch/changes/
//! watch for sync is one method here and one per provider module, the engine's loops do not
//! change), and variants that can hold what each provider needs (pools, clients, token
//! sources) without a lowest-common-denominator interface.
//!
//! Everything an account's calls share lives in [`Providers`]: the SMTP connection pool, the
//! IMAP session pool (one connection budget per account for every IMAP use), the HTTP client
//! of the provider APIs and the per-mailbox request slots of Gmail and Graph.

mod changing;
pub mod feed;
mod gmail;
mod grants;
mod graph;
mod imap;
mod pacing;
mod part_stream;
pub mod reading;
pub mod session_pool;
mod throttled;
mod verify;
mod watching;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures_util::future::BoxFuture;
use secrecy::SecretString;
use tokio::sync::Semaphore;

use mailroom_core::ErrorKind;
use mailroom_core::MessageId;
use mailroom_core::account::{AccountMode, AccountSettings, AccountType};
use mailroom_core::email::ReplyParent;

use crate::NetPolicy;
use crate::apps::{IdP, ProviderApps};
use crate::failure::{MailError, Protocol};
use crate::imap_smtp::send::SmtpPool;
use crate::provider::Provider;

pub use self::changing::{Appended, Trashed};
pub use self::feed::{
    FeedChanges, FeedFolder, FeedMessage, FeedPage, FeedWindow, SyncModel, Touched,
};
pub use self::part_stream::PartStream;
pub use self::reading::{
    FetchedMessage, FlagChange, FolderChanges, FolderState, MessageFlags, RemoteFolder, RemoteRole,
};
pub use self::session_pool::{ImapLimits, ImapPool};
pub use self::verify::{Prospect, Verified};
pub use self::watching::{Changes, PushSubscription, SUBSCRIPTION_LIFETIME, Watch, WatchOptions};

/// Requests in flight per Gmail or Outlook mailbox (Graph answers 429 `ApplicationThrottled`
/// past 4 concurrent requests per app and mailbox; Gmail is held to the same).
pub const API_CONCURRENCY_PER_MAILBOX: usize = 4;

/// Gmail's per-user quota (`reference/providers.md`: 250 units per user per second as a moving
/// average; 15,000 per minute in the newer table): what one mailbox's sync reads are paced to.
pub const GMAIL_UNITS_PER_SEC: u32 = 250;

/// Where an OAuth mailbox gets its access tokens (the engine's token manager: refreshed ahead
/// of expiry, one refresh per account across processes, a revoked grant recorded).
pub trait TokenSource: Send + Sync {
    /// A usable access token. With `stale` (the provider just refused it), a different one,
    /// refreshing if nobody else already did. A revoked grant is [`MailError::is_auth`].
    fn access_token<'a>(
        &'a self,
        stale: Option<&'a SecretString>,
    ) -> BoxFuture<'a, Result<SecretString, MailError>>;
}

/// An account's secrets, opened by the engine from the vault for this mailbox only.
pub enum Secrets {
    Passwords {
        imap: SecretString,
        smtp: SecretString,
    },
    Tokens(Arc<dyn TokenSource>),
}

/// What [`Providers::open`] needs to know of an account.
pub struct Opening<'a> {
    pub account_id: &'a str,
    /// Changes when the account is reconnected (its `updated_at`): pooled connections made
    /// with older settings or credentials are replaced.
    pub version: i64,
    pub account_type: AccountType,
    pub settings: &'a AccountSettings,
    pub secrets: Secrets,
}

/// A finished message to send.
pub struct Outgoing<'a> {
    /// RFC 5322 bytes, without a Bcc header.
    pub raw: &'a [u8],
    pub envelope_from: &'a str,
    /// Every recipient, Bcc included.
    pub recipients: &'a [String],
    /// The message's Message-ID.
    pub message_id: &'a MessageId,
    /// The mail answered, when this is a reply.
    pub parent: Option<&'a MessageId>,
}

/// A message the provider took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    /// The provider's id of the sent message (the Message-ID where the provider has none).
    pub provider_id: String,
    /// Whether the sender must file a copy in the Sent folder ([`Mailbox::append_sent`]):
    /// SMTP servers keep none; Gmail and Graph file their own.
    pub needs_sent_copy: bool,
}

/// Shared state of every mailbox of this process.
#[derive(Clone)]
pub struct Providers {
    inner: Arc<Shared>,
}

struct Shared {
    net: NetPolicy,
    http: reqwest::Client,
    apps: Arc<ProviderApps>,
    smtp: SmtpPool,
    imap: ImapPool,
    api_slots: Mutex<HashMap<String, Arc<Semaphore>>>,
    /// Per-mailbox quota budgets of the Gmail reads (see [`pacing`]).
    gmail_pacers: Mutex<HashMap<String, Arc<pacing::Pacer>>>,
    /// Per-account well-known Outlook folder ids (looked up once).
    graph_folders: Mutex<HashMap<String, Arc<Mutex<Option<graph::WellKnown>>>>>,
}

impl Providers {
    /// `http` is for provider APIs and token endpoints only (never for user-given URLs).
    pub fn new(net: NetPolicy, http: reqwest::Client, apps: Arc<ProviderApps>) -> Self {
        Self::with_limits(net, http, apps, ImapLimits::default())
    }

    /// As [`Providers::new`], with other IMAP limits (connections per account, logins in
    /// progress per server host; see [`session_pool`]).
    pub fn with_limits(
        net: NetPolicy,
        http: reqwest::Client,
        apps: Arc<ProviderApps>,
        imap: ImapLimits,
    ) -> Self {
        Self {
            inner: Arc::new(Shared {
                imap: ImapPool::new(net.clone(), imap),
                net,
                http,
                apps,
                smtp: SmtpPool::default(),
                api_slots: Mutex::new(HashMap::new()),
                gmail_pacers: Mutex::new(HashMap::new()),
                graph_folders: Mutex::new(HashMap::new()),
            }),
        }
    }

    pub fn net(&self) -> &NetPolicy {
        &self.inner.net
    }

    pub fn apps(&self) -> &Arc<ProviderApps> {
        &self.inner.apps
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.inner.http
    }

    /// The IMAP session pool (its login count is what tests and benchmarks watch).
    pub fn imap_pool(&self) -> &ImapPool {
        &self.inner.imap
    }

    fn api_slots(&self, account_id: &str) -> Arc<Semaphore> {
        self.inner
            .api_slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(account_id.to_owned())
            .or_insert_with(|| Arc::new(Semaphore::new(API_CONCURRENCY_PER_MAILBOX)))
            .clone()
    }

    fn gmail_pacer(&self, account_id: &str) -> Arc<pacing::Pacer> {
        self.inner
            .gmail_pacers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(account_id.to_owned())
            .or_insert_with(|| {
                Arc::new(pacing::Pacer::new(GMAIL_UNITS_PER_SEC, GMAIL_UNITS_PER_SEC))
            })
            .clone()
    }

    fn graph_folders(&self, account_id: &str) -> Arc<Mutex<Option<graph::WellKnown>>> {
        self.inner
            .graph_folders
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(account_id.to_owned())
            .or_default()
            .clone()
    }

    /// Whether accounts of type `t` can be synced (their mailboxes read): the sync supervisor
    /// asks this instead of knowing the providers.
    pub fn syncs(&self, t: AccountType) -> bool {
        Provider::of(t).reads()
    }

    /// Forgets what is pooled for an account (deleted or reconnected).
    pub fn forget(&self, account_id: &str) {
        self.inner.smtp.forget(account_id);
        self.inner.imap.forget(account_id);
        self.inner
            .api_slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(account_id);
        self.inner
            .gmail_pacers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(account_id);
        self.inner
            .graph_folders
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(account_id);
    }

    /// The account's mailbox. Cheap: connections are made (or reused) by the calls.
    pub fn open(&self, o: Opening<'_>) -> Result<Mailbox, MailError> {
        let provider = Provider::of(o.account_type);
        let protocol = match provider {
            Provider::Imap => Protocol::Imap,
            Provider::Gmail => Protocol::Gmail,
            Provider::Graph => Protocol::Graph,
        };
        let mismatch = || {
            MailError::rejected(
                protocol,
                ErrorKind::InvalidAccount,
                format!(
                    "account {} has settings or credentials of another kind of account",
                    o.account_id
                ),
            )
        };
        match (provider, o.settings, o.secrets) {
            (Provider::Imap, AccountSettings::Mail(s), Secrets::Passwords { imap, smtp }) => {
                Ok(Mailbox::Imap(imap::ImapMailbox::new(
                    self.clone(),
                    o.account_id,
                    o.version,
                    s.clone(),
                    imap,
                    smtp,
                )))
            }
            (Provider::Gmail, AccountSettings::OAuth(s), Secrets::Tokens(tokens)) => {
                let app = self.configured(IdP::Google)?;
                Ok(Mailbox::Gmail(gmail::GmailMailbox::new(
                    crate::gmail::GmailClient::new(self.inner.http.clone(), app.api_base.clone()),
                    tokens,
                    s.mode,
                    self.api_slots(o.account_id),
                    self.gmail_pacer(o.account_id),
                    app.push.as_ref().map(|p| p.topic.clone()),
                )))
            }
            (Provider::Graph, AccountSettings::OAuth(s), Secrets::Tokens(tokens)) => {
                let app = self.configured(IdP::Microsoft)?;
                Ok(Mailbox::Graph(graph::GraphMailbox::new(
                    crate::graph::GraphClient::new(self.inner.http.clone(), app.api_base.clone()),
                    tokens,
                    s.mode,
                    self.api_slots(o.account_id),
                    self.graph_folders(o.account_id),
                    app.notification_url.clone(),
                )))
            }
            _ => Err(mismatch()),
        }
    }
}

/// One account's mailbox.
pub enum Mailbox {
    Imap(imap::ImapMailbox),
    Gmail(gmail::GmailMailbox),
    Graph(graph::GraphMailbox),
}

impl Mailbox {
    /// Sends a finished message. Not bounded in time: callers wrap it in a timeout, and
    /// dropping the future never leaves a half-used connection in a pool.
    pub async fn send(&self, msg: &Outgoing<'_>) -> Result<Delivered, MailError> {
        match self {
            Mailbox::Imap(m) => m.send(msg).await,
            Mailbox::Gmail(m) => m.send(msg).await,
            Mailbox::Graph(m) => m.send(msg).await,
        }
    }

    /// The mail a reply answers, found in the mailbox by its Message-ID. A send-only account
    /// cannot search its mailbox: it answers with what the id itself says (the reply still
    /// threads for its recipients by In-Reply-To / References).
    pub async fn find_parent(&self, id: &MessageId) -> Result<Option<ReplyParent>, MailError> {
        match self {
            Mailbox::Imap(m) => m.find_parent(id).await,
            Mailbox::Gmail(m) => m.find_parent(id).await,
            Mailbox::Graph(m) => m.find_parent(id).await,
        }
    }

    /// Files the exact bytes of a sent message in the Sent folder, flagged seen, when
    /// [`Delivered::needs_sent_copy`] asked for it, over one pooled session of the account.
    pub async fn append_sent(&self, raw: &[u8]) -> Result<(), MailError> {
        let mut copier = self.sent_copier().await?;
        let done = copier.append(raw).await;
        copier.finish();
        done
    }

    /// A batch of Sent copies over one session: the login (or the pooled session) is taken
    /// once, so a server that refuses it is asked once for the whole batch, not per copy.
    pub async fn sent_copier(&self) -> Result<SentCopier<'_>, MailError> {
        Ok(SentCopier {
            inner: match self {
                Mailbox::Imap(m) => Some(m.sent_copier().await?),
                // Gmail and Graph file their own copy of what they send.
                Mailbox::Gmail(_) | Mailbox::Graph(_) => None,
            },
        })
    }

    /// Every folder of the mailbox, with its role and whether it can be opened.
    pub async fn list_folders(&self) -> Result<Vec<RemoteFolder>, MailError> {
        match self {
            Mailbox::Imap(m) => m.list_folders().await,
            Mailbox::Gmail(_) => Err(reading_not_built(Protocol::Gmail)),
            Mailbox::Graph(_) => Err(reading_not_built(Protocol::Graph)),
        }
    }

    /// Where `folder` stands (UIDVALIDITY, UIDNEXT, message count, highest modseq), read
    /// without changing anything in it (IMAP EXAMINE).
    pub async fn folder_state(&self, folder: &str) -> Result<FolderState, MailError> {
        match self {
            Mailbox::Imap(m) => m.folder_state(folder).await,
            Mailbox::Gmail(_) => Err(reading_not_built(Protocol::Gmail)),
            Mailbox::Graph(_) => Err(reading_not_built(Protocol::Graph)),
        }
    }

    /// The messages of `folder` with a UID above `after_uid`, oldest first, at most `limit`,
    /// whole and parsed, without marking them seen. A folder whose UIDVALIDITY is no longer
    /// `uid_validity` answers [`MailError::is_cursor_expired`].
    pub async fn fetch_new(
        &self,
        folder: &str,
        uid_validity: u32,
        after_uid: u32,
        limit: usize,
    ) -> Result<Vec<FetchedMessage>, MailError> {
        match self {
            Mailbox::Imap(m) => m.fetch_new(folder, uid_validity, after_uid, limit).await,
            Mailbox::Gmail(_) => Err(reading_not_built(Protocol::Gmail)),
            Mailbox::Graph(_) => Err(reading_not_built(Protocol::Graph)),
        }
    }

    /// The messages of `folder` whose flags changed after `since_modseq` (CONDSTORE), with
    /// their flags now; `None` when the server (or this folder) keeps no modseqs: compare
    /// flags and [`Mailbox::uids`] instead. A changed UIDVALIDITY is
    /// [`MailError::is_cursor_expired`].
    pub async fn fetch_flags_changed(
        &self,
        folder: &str,
        uid_validity: u32,
        since_modseq: u64,
    ) -> Result<Option<Vec<FlagChange>>, MailError> {
        match self {
            Mailbox::Imap(m) => {
                m.fetch_flags_changed(folder, uid_validity, since_modseq)
                    .await
            }
            Mailbox::Gmail(_) => Err(reading_not_built(Protocol::Gmail)),
            Mailbox::Graph(_) => Err(reading_not_built(Protocol::Graph)),
        }
    }

    /// What changed in `folder` since `since_modseq` in one round trip (IMAP QRESYNC): flag
    /// changes, the UIDs expunged (`VANISHED`), the highest modseq now. `None` when the server
    /// has no QRESYNC or the folder keeps no modseqs: use [`Mailbox::fetch_flags_changed`]
    /// and the [`Mailbox::uids`] diff instead. A changed UIDVALIDITY is
    /// [`MailError::is_cursor_expired`].
    pub async fn changes_since(
        &self,
        folder: &str,
        uid_validity: u32,
        since_modseq: u64,
    ) -> Result<Option<FolderChanges>, MailError> {
        match self {
            Mailbox::Imap(m) => m.changes_since(folder, uid_validity, since_modseq).await,
            Mailbox::Gmail(_) => Err(reading_not_built(Protocol::Gmail)),
            Mailbox::Graph(_) => Err(reading_not_built(Protocol::Graph)),
        }
    }

    /// Every UID of `folder`, ascending: what is missing from it was expunged. A changed
    /// UIDVALIDITY is [`MailError::is_cursor_expired`].
    pub async fn uids(&self, folder: &str, uid_validity: u32) -> Result<Vec<u32>, MailError> {
        match self {
            Mailbox::Imap(m) => m.uids(folder, uid_validity).await,
            Mailbox::Gmail(_) => Err(reading_not_built(Protocol::Gmail)),
            Mailbox::Graph(_) => Err(reading_not_built(Protocol::Graph)),
        }
    }

    /// The UIDs of `folder` that arrived on or after the day of `since_ms` (UTC), ascending:
    /// where a sync window starts. Whole days, as IMAP searches; the caller compares the exact
    /// arrival time ([`FetchedMessage::internal_date_ms`]).
    pub async fn uids_since(
        &self,
        folder: &str,
        uid_validity: u32,
        since_ms: i64,
    ) -> Result<Vec<u32>, MailError> {
        match self {
            Mailbox::Imap(m) => m.uids_since(folder, uid_validity, since_ms).await,
            Mailbox::Gmail(_) => Err(reading_not_built(Protocol::Gmail)),
            Mailbox::Graph(_) => Err(reading_not_built(Protocol::Graph)),
        }
    }

    /// The flags of every message of `folder`: how a sync learns what changed on a server that
    /// keeps no modseqs (no CONDSTORE), by comparing them with what it stored.
    pub async fn all_flags(
        &self,
        folder: &str,
        uid_validity: u32,
    ) -> Result<Vec<FlagChange>, MailError> {
        match self {
            Mailbox::Imap(m) => m.all_flags(folder, uid_validity).await,
            Mailbox::Gmail(_) => Err(reading_not_built(Protocol::Gmail)),
            Mailbox::Graph(_) => Err(reading_not_built(Protocol::Graph)),
        }
    }

    /// What the account may do.
    pub fn mode(&self) -> AccountMode {
        match self {
            Mailbox::Imap(_) => AccountMode::Full,
            Mailbox::Gmail(m) => m.mode(),
            Mailbox::Graph(m) => m.mode(),
        }
    }
}

/// The per-folder (IMAP) reads on a mailbox that is read through a change feed instead
/// ([`feed`]: Gmail history, Graph delta): said plainly rather than answered with an empty
/// mailbox.
fn reading_not_built(protocol: Protocol) -> MailError {
    let what = if protocol == Protocol::Gmail {
        "Gmail mailboxes are read through their change feed (history), not by folder and UID"
    } else {
        "Outlook mailboxes are read through their change feed (delta), not by folder and UID"
    };
    MailError::rejected(protocol, ErrorKind::InvalidAccount, what)
}

/// Sent copies of one batch (see [`Mailbox::sent_copier`]).
pub struct SentCopier<'a> {
    inner: Option<imap::ImapSentCopier<'a>>,
}

impl SentCopier<'_> {
    /// APPENDs `raw` to the Sent folder. After a failed APPEND the session is not reused; the
    /// next copy takes another (a failure to get one ends the batch for the caller).
    pub async fn append(&mut self, raw: &[u8]) -> Result<(), MailError> {
        match &mut self.inner {
            Some(c) => c.append(raw).await,
            None => Ok(()),
        }
    }

    /// Gives the session back to the account's pool.
    pub fn finish(self) {
        if let Some(c) = self.inner {
            c.finish();
        }
    }
}

/// The Bcc recipients of a message: those in the envelope but not in its To or Cc headers
/// (the MIME builder writes no Bcc header; the HTTP APIs read recipients from headers).
pub(crate) fn bcc_of(raw: &[u8], recipients: &[String]) -> Vec<String> {
    let visible = mailroom_mime::recipients::visible_recipients(raw);
    recipients
        .iter()
        .filter(|r| !visible.contains(&r.to_ascii_lowercase()))
        .cloned()
        .collect()
}

/// Runs `call` with an access token from `tokens`; a token the provider refuses (401) is
/// replaced once (refreshed if nobody else did) and the call tried again.
pub(crate) async fn with_token<T, F, Fut>(
    tokens: &dyn TokenSource,
    mut call: F,
) -> Result<T, MailError>
where
    F: FnMut(SecretString) -> Fut,
    Fut: std::future::Future<Output = Result<T, MailError>>,
{
    let mut stale: Option<SecretString> = None;
    loop {
        let token = tokens.access_token(stale.as_ref()).await?;
        match call(token.clone()).await {
            Err(e) if e.is_auth() && stale.is_none() => stale = Some(token),
            other => return other,
        }
    }
}
