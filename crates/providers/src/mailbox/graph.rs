//! Outlook and Microsoft 365 accounts through Microsoft Graph: sending, finding a reply's
//! parent, and the change feed a sync reads (see `mailbox::feed`): the mail folders (the
//! well-known ones with their roles), one `messages/delta` per folder whose `deltaLink`s
//! together are the account's cursor, the messages by immutable id, and the changes (read
//! flag, move, to Deleted Items).
//!
//! Every call holds one of the mailbox's request slots (shared with sending; Graph allows 4
//! concurrent requests per app and mailbox) and a throttled one (429 `ApplicationThrottled`)
//! is tried again after Graph's `Retry-After` (see `throttled`).

mod push;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use secrecy::SecretString;
use sha2::{Digest as _, Sha256};
use tokio::sync::Semaphore;

use mailroom_core::account::AccountMode;
use mailroom_core::email::ReplyParent;
use mailroom_core::{ErrorKind, MessageId};

use super::feed::{FeedChanges, FeedFolder, FeedMessage, FeedPage, FeedWindow, Touched};
use super::reading::RemoteRole;
use super::throttled::in_slot;
use super::{Delivered, Outgoing, TokenSource, bcc_of, with_token};
use crate::failure::{FailureKind, MailError, Protocol};
use crate::graph::{DeltaEntry, GraphClient};

pub(crate) use self::push::GraphPushWatch;

pub struct GraphMailbox {
    client: GraphClient,
    tokens: Arc<dyn TokenSource>,
    mode: AccountMode,
    slots: Arc<Semaphore>,
    /// The account's well-known folder ids, once looked up (shared by its mailboxes).
    well_known: Arc<Mutex<Option<WellKnown>>>,
    /// Where Graph posts change notifications (`push`); `None`: no push, the mailbox is polled.
    push_url: Option<url::Url>,
}

impl GraphMailbox {
    pub(super) fn new(
        client: GraphClient,
        tokens: Arc<dyn TokenSource>,
        mode: AccountMode,
        slots: Arc<Semaphore>,
        well_known: Arc<Mutex<Option<WellKnown>>>,
        push_url: Option<url::Url>,
    ) -> Self {
        Self {
            client,
            tokens,
            mode,
            slots,
            well_known,
            push_url,
        }
    }

    pub(super) fn mode(&self) -> AccountMode {
        self.mode
    }

    /// `sendMail` with the MIME, or a draft (`createReply` for replies) for large messages.
    pub(super) async fn send(&self, msg: &Outgoing<'_>) -> Result<Delivered, MailError> {
        let _slot = self.slots.acquire().await.expect("never closed");
        let bcc = bcc_of(msg.raw, msg.recipients);
        let parent = msg.parent;
        with_token(self.tokens.as_ref(), |token| {
            let bcc = &bcc;
            async move { self.client.send_mime(&token, msg.raw, bcc, parent).await }
        })
        .await
        .map_err(crate::graph::as_send_failure)?;
        // Graph's sendMail answers no id; the Message-ID names the message.
        Ok(Delivered {
            provider_id: msg.message_id.bracketed(),
            needs_sent_copy: false,
        })
    }

    /// Graph's search answers the message's id; a reply goes through `createReply`, which
    /// keeps it in the conversation, so only the Message-ID is needed here.
    pub(super) async fn find_parent(
        &self,
        id: &MessageId,
    ) -> Result<Option<ReplyParent>, MailError> {
        let bare = ReplyParent {
            message_id: id.bracketed(),
            references: vec![],
            subject: None,
        };
        if self.mode == AccountMode::Send {
            return Ok(Some(bare));
        }
        let _slot = self.slots.acquire().await.expect("never closed");
        let found = with_token(self.tokens.as_ref(), |token| async move {
            self.client.find_by_internet_message_id(&token, id).await
        })
        .await?;
        Ok(found.map(|_| bare))
    }
}

/// Well-known folders that are folders of mail, with their roles (Graph's `wellKnownName`s).
const ROLES: [(&str, RemoteRole); 6] = [
    ("inbox", RemoteRole::Inbox),
    ("sentitems", RemoteRole::Sent),
    ("drafts", RemoteRole::Drafts),
    ("deleteditems", RemoteRole::Trash),
    ("junkemail", RemoteRole::Spam),
    ("archive", RemoteRole::Archive),
];

/// Well-known folders that hold no mail a person reads (mail waiting to go out, Teams/Skype
/// logs, sync conflicts): not synced, so nothing in them is indexed or announced.
const SKIPPED: [&str; 3] = ["outbox", "conversationhistory", "syncissues"];

/// The ids of an account's well-known folders (they never change for a mailbox: looked up once
/// per process and account, see [`super::Providers`]).
#[derive(Debug, Clone, Default)]
pub(crate) struct WellKnown {
    roles: Vec<(String, RemoteRole)>,
    skipped: Vec<String>,
}

/// The feed cursor of a Graph mailbox: each synced folder's `deltaLink`, by folder id,
/// stored as a JSON object.
type DeltaLinks = BTreeMap<String, String>;

/// The cursor value of a message's state: its `changeKey` (which changes with every change),
/// hashed. Not ordered like Gmail's history ids, only equal for the same state: it keys the
/// events of a change, so the same change read twice (a push and a poll, a pass read again
/// after a restart) is announced once.
fn version_of(change_key: Option<&str>) -> u64 {
    let Some(k) = change_key else { return 0 };
    let d = Sha256::digest(k.as_bytes());
    // 63 bits: stored and compared as signed integers in places.
    u64::from_be_bytes(d[..8].try_into().expect("8 bytes")) >> 1
}

fn gone(what: String) -> MailError {
    MailError::rejected(Protocol::Graph, ErrorKind::ResourceNotFound, what)
}

fn expired(detail: impl Into<String>) -> MailError {
    MailError::new(Protocol::Graph, FailureKind::CursorExpired, detail)
}

impl GraphMailbox {
    /// Runs a read or change in one of the mailbox's request slots (Graph: 4 concurrent
    /// requests per app and mailbox), with a fresh token when the old one is refused, and
    /// again after Graph's `Retry-After` when throttled (the slot is given back meanwhile).
    async fn call<T, F, Fut>(&self, f: F) -> Result<T, MailError>
    where
        F: Fn(SecretString) -> Fut,
        Fut: std::future::Future<Output = Result<T, MailError>>,
    {
        in_slot(&self.slots, self.tokens.as_ref(), f).await
    }

    async fn well_known(&self) -> Result<WellKnown, MailError> {
        if let Some(w) = self
            .well_known
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
        {
            return Ok(w);
        }
        let mut w = WellKnown::default();
        for (name, role) in ROLES {
            if let Some(id) = self
                .call(|t| async move { self.client.well_known_folder(&t, name).await })
                .await?
            {
                w.roles.push((id, role));
            }
        }
        for name in SKIPPED {
            if let Some(id) = self
                .call(|t| async move { self.client.well_known_folder(&t, name).await })
                .await?
            {
                w.skipped.push(id);
            }
        }
        *self.well_known.lock().unwrap_or_else(|p| p.into_inner()) = Some(w.clone());
        Ok(w)
    }

    /// The synced folders: every mail folder but the [`SKIPPED`] ones, child folders named by
    /// their path (`Projects/2026`), the well-known ones with their roles.
    pub(super) async fn feed_folders(&self) -> Result<Vec<FeedFolder>, MailError> {
        let known = self.well_known().await?;
        let all = self
            .call(|t| async move { self.client.folders(&t).await })
            .await?;
        let by_id: HashMap<&str, &crate::graph::GraphFolder> =
            all.iter().map(|f| (f.id.as_str(), f)).collect();
        let path = |f: &crate::graph::GraphFolder| {
            let mut parts = vec![f.display_name.clone()];
            let mut at = f.parent_id.as_deref();
            // Bounded against a cycle in a confused answer.
            for _ in 0..32 {
                match at.and_then(|p| by_id.get(p)) {
                    Some(p) => {
                        parts.push(p.display_name.clone());
                        at = p.parent_id.as_deref();
                    }
                    None => break,
                }
            }
            parts.reverse();
            parts.join("/")
        };
        Ok(all
            .iter()
            .filter(|f| !known.skipped.contains(&f.id))
            .map(|f| FeedFolder {
                id: f.id.clone(),
                name: path(f),
                role: known
                    .roles
                    .iter()
                    .find(|(id, _)| *id == f.id)
                    .map_or(RemoteRole::Unknown, |(_, r)| *r),
            })
            .collect())
    }

    /// Reads folder `folder`'s delta to its end, from `link` (a stored `deltaLink`) or from the
    /// start; calls `each` with every entry; answers the new `deltaLink`.
    async fn read_delta(
        &self,
        folder: &str,
        link: Option<&str>,
        mut each: impl FnMut(DeltaEntry),
    ) -> Result<String, MailError> {
        let mut link: Option<String> = link.map(str::to_owned);
        // Bounded: a delta that never ends is a confused server, not a big mailbox.
        for _ in 0..100_000 {
            let page = self
                .call(|t| {
                    let link = link.as_deref();
                    async move { self.client.delta_page(&t, folder, link).await }
                })
                .await?;
            for e in page.entries {
                each(e);
            }
            match (page.next, page.delta) {
                (Some(next), _) => link = Some(next),
                (None, Some(delta)) => return Ok(delta),
                (None, None) => unreachable!("delta_page refuses such a page"),
            }
        }
        Err(MailError::transient(
            Protocol::Graph,
            format!("the delta of folder {folder} never ended"),
        ))
    }

    /// A `deltaLink` for every synced folder, each delta read to its end (the messages already
    /// there are not kept: the listing reads them).
    pub(super) async fn feed_cursor(&self) -> Result<String, MailError> {
        let mut links = DeltaLinks::new();
        for f in self.feed_folders().await? {
            let link = self.read_delta(&f.id, None, |_| {}).await?;
            links.insert(f.id, link);
        }
        Ok(serde_json::to_string(&links).expect("a map of strings serializes"))
    }

    /// `/me/messages` received since the window's start (whole seconds: Graph compares
    /// seconds; the caller drops what is older by the exact time), newest first.
    pub(super) async fn feed_list(
        &self,
        window: FeedWindow,
        page_size: u32,
        page: Option<&str>,
    ) -> Result<FeedPage, MailError> {
        let since = window
            .since_ms
            .map(|ms| mailroom_core::time_fmt::format_ms(ms - ms.rem_euclid(1000)));
        let p = self
            .call(|t| {
                let since = since.as_deref();
                async move { self.client.message_ids(&t, since, page_size, page).await }
            })
            .await?;
        Ok(FeedPage {
            ids: p.ids,
            next: p.next,
        })
    }

    pub(super) async fn feed_fetch(
        &self,
        id: &str,
        whole: bool,
    ) -> Result<Option<FeedMessage>, MailError> {
        let Some(s) = self
            .call(|t| async move { self.client.message_state(&t, id).await })
            .await?
        else {
            return Ok(None);
        };
        // `/me/messages` lists every folder's mail: what sits in a folder that is not synced
        // (the Outbox) is not part of the synced mailbox.
        let skipped = self.well_known().await?.skipped;
        if s.parent_folder_id
            .as_ref()
            .is_some_and(|f| skipped.contains(f))
        {
            return Ok(None);
        }
        let raw = if whole {
            match self
                .call(|t| async move { self.client.message_mime(&t, id).await })
                .await?
            {
                Some(raw) => Some(raw),
                None => return Ok(None),
            }
        } else {
            None
        };
        Ok(Some(FeedMessage {
            thread_id: s.conversation_id.clone().unwrap_or_else(|| s.id.clone()),
            folders: s.parent_folder_id.into_iter().collect(),
            read: s.is_read,
            internal_date_ms: s
                .received_date_time
                .as_deref()
                .and_then(mailroom_core::time_fmt::parse_ms),
            size: raw.as_ref().map_or(0, |r| r.len() as i64),
            version: version_of(s.change_key.as_deref()),
            parsed: raw.as_deref().and_then(mailroom_mime::parse_mail),
            id: s.id,
        }))
    }

    /// The part is cut out of the message's MIME (`$value`), as the index numbers parts.
    pub(super) async fn feed_open_part(
        &self,
        id: &str,
        part: &str,
    ) -> Result<super::PartStream, MailError> {
        use futures_util::StreamExt as _;
        let raw = self
            .call(|t| async move { self.client.message_mime(&t, id).await })
            .await?
            .ok_or_else(|| gone(format!("Outlook has no message {id} any more")))?;
        let (_, _, bytes) = mailroom_mime::attachment_bytes(&raw, part)
            .ok_or_else(|| gone(format!("Outlook message {id} has no part {part}")))?;
        Ok(futures_util::stream::once(async move { Ok(bytes) }).boxed())
    }

    pub(super) async fn feed_set_read(&self, id: &str, read: bool) -> Result<(), MailError> {
        self.call(|t| async move { self.client.set_read(&t, id, read).await })
            .await?
            .ok_or_else(|| gone(format!("Outlook has no message {id} any more")))?;
        Ok(())
    }

    /// A message is in one folder: a move to `to` takes it out of the one it was in.
    pub(super) async fn feed_move(&self, id: &str, to: &str) -> Result<Vec<String>, MailError> {
        let s = self
            .call(|t| async move { self.client.move_message(&t, id, to).await })
            .await?
            .ok_or_else(|| gone(format!("Outlook has no message {id} any more")))?;
        Ok(s.parent_folder_id.into_iter().collect())
    }

    /// A draft in Drafts, from its MIME: its message id.
    pub(super) async fn feed_create_draft(&self, raw: &[u8]) -> Result<String, MailError> {
        self.call(|t| async move { self.client.create_mime_draft(&t, raw).await })
            .await
    }

    /// The message's MIME (`$value`); `None` when it is gone.
    pub(super) async fn feed_fetch_raw(&self, id: &str) -> Result<Option<Vec<u8>>, MailError> {
        self.call(|t| async move { self.client.message_mime(&t, id).await })
            .await
    }

    /// A sent draft goes for good (`permanentDelete`), as Gmail's `drafts.delete` does.
    pub(super) async fn feed_discard_draft(&self, id: &str) -> Result<(), MailError> {
        self.call(|t| async move { self.client.delete_for_good(&t, id).await })
            .await
    }

    /// To Deleted Items (what Outlook's Delete does; `DELETE` would be for good in some
    /// clients' eyes and is not what the API's `DELETE /emails/{id}` promises).
    pub(super) async fn feed_trash(&self, id: &str) -> Result<Vec<String>, MailError> {
        self.feed_move(id, "deleteditems").await
    }

    /// Every synced folder's delta from its stored link (a folder new since then: from the
    /// start, so what is in it counts as arrived or moved there). A message seen leaving one
    /// folder and entering another (immutable ids) is one touched message, a move; one only
    /// leaving is gone when Graph says so (`reason: "deleted"`), else fetched to see where it
    /// went. A link Graph no longer knows is [`MailError::is_cursor_expired`].
    pub(super) async fn feed_changes(&self, cursor: &str) -> Result<FeedChanges, MailError> {
        let stored: DeltaLinks = serde_json::from_str(cursor)
            .map_err(|_| expired("the stored Outlook delta cursor is unreadable"))?;
        #[derive(Default)]
        struct Seen {
            present: bool,
            left: bool,
            for_good: bool,
            at: u64,
        }
        let mut order: Vec<String> = vec![];
        let mut seen: HashMap<String, Seen> = HashMap::new();
        let mut links = DeltaLinks::new();
        for f in self.feed_folders().await? {
            let link = self
                .read_delta(&f.id, stored.get(&f.id).map(String::as_str), |e| {
                    let id = match &e {
                        DeltaEntry::Present { id, .. } | DeltaEntry::Removed { id, .. } => id,
                    };
                    let s = seen.entry(id.clone()).or_insert_with(|| {
                        order.push(id.clone());
                        Seen::default()
                    });
                    match e {
                        DeltaEntry::Present { change_key, .. } => {
                            s.present = true;
                            s.at = version_of(change_key.as_deref());
                        }
                        DeltaEntry::Removed { for_good, .. } => {
                            s.left = true;
                            s.for_good |= for_good;
                        }
                    }
                })
                .await?;
            links.insert(f.id, link);
        }
        let touched = order
            .into_iter()
            .map(|id| {
                let s = seen.remove(&id).unwrap_or_default();
                Touched {
                    at: s.at,
                    // Entering a folder without leaving another: new to the mailbox.
                    added: s.present && !s.left,
                    deleted: s.left && !s.present && s.for_good,
                    id,
                }
            })
            .collect();
        Ok(FeedChanges {
            cursor: serde_json::to_string(&links).expect("a map of strings serializes"),
            touched,
        })
    }
}
