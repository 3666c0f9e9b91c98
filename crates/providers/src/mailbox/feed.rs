//! The account-wide **change feed** model of reading a mailbox, beside IMAP's per-folder UID
//! model ([`SyncModel`] says which one an account's mailbox speaks).
//!
//! A feed mailbox (Gmail; Outlook through Graph) has one cursor for the whole account:
//! the sync takes the cursor **before** an initial listing ([`Mailbox::feed_cursor`]), lists
//! the message ids within its window ([`Mailbox::feed_list`]), fetches each one
//! ([`Mailbox::feed_fetch`]), and from then on asks only what changed since the cursor
//! ([`Mailbox::feed_changes`]). A cursor the provider no longer knows (Gmail's 404 on an old
//! `startHistoryId`, Graph's 410 `syncStateNotFound` on a `deltaLink`) is
//! [`MailError::is_cursor_expired`]: list again.
//!
//! Gmail: folders are the provider's labels (one message may be in several; `UNREAD` is the
//! read flag, not a folder); the cursor is a history id. Graph: folders are mail folders (a
//! message is in one); the cursor is every synced folder's `deltaLink` (a JSON object by
//! folder id); ids are immutable, so a move read from two folders' deltas is one [`Touched`].

use mailroom_core::ErrorKind;

use super::Mailbox;
use super::reading::{ParsedMail, RemoteRole};
use crate::failure::{MailError, Protocol};

/// How a mailbox is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncModel {
    /// Per folder, by UID, UIDVALIDITY and modseq (IMAP): [`Mailbox::list_folders`],
    /// [`Mailbox::fetch_new`], [`Mailbox::changes_since`] …
    Folders,
    /// One change feed for the account (Gmail history): the `feed_*` calls.
    Feed,
}

/// A folder of a feed mailbox (a Gmail label that is one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedFolder {
    /// The provider's id (Gmail label id): what [`FeedMessage::folders`] names.
    pub id: String,
    /// What people see.
    pub name: String,
    pub role: RemoteRole,
}

/// A message of a feed mailbox, as it is now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedMessage {
    /// The provider's id, stable for the message's life.
    pub id: String,
    /// The provider's conversation id.
    pub thread_id: String,
    /// The folders it is in ([`FeedFolder::id`]s), possibly none (archived).
    pub folders: Vec<String>,
    pub read: bool,
    /// When the provider received it, unix ms.
    pub internal_date_ms: Option<i64>,
    pub size: i64,
    /// The cursor value of the message's last change (Gmail: its `historyId`, ordered like
    /// the cursor; Graph: its `changeKey` hashed, only equal or not, and a Graph cursor is
    /// no number, so no listing ever leaves a Graph message to the changes).
    pub version: u64,
    /// Only when fetched whole; `None` also when the bytes are no message at all.
    pub parsed: Option<ParsedMail>,
}

/// One page of an initial listing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FeedPage {
    /// Message ids, newest first.
    pub ids: Vec<String>,
    /// Where the next page starts; `None` on the last one.
    pub next: Option<String>,
}

/// A message the feed says changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Touched {
    pub id: String,
    /// The cursor value of the last change seen to it: what keys the events it causes, so
    /// the same change read twice is announced once (Graph: its hashed `changeKey`; 0 when
    /// it was only seen leaving a folder).
    pub at: u64,
    /// It arrived in the mailbox within the changes (Gmail `messagesAdded`; Graph: it entered
    /// a folder's delta without leaving another's).
    pub added: bool,
    /// It is gone for good (Gmail `messagesDeleted`, Graph `@removed` with reason `deleted`;
    /// a move to Trash / Deleted Items is a folder change).
    pub deleted: bool,
}

/// What changed since a cursor, every page read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FeedChanges {
    /// The cursor to store once these changes are applied.
    pub cursor: String,
    /// Each message once, in the order of its last change.
    pub touched: Vec<Touched>,
}

/// Which messages an initial listing covers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FeedWindow {
    /// Mail received at or after this time (unix ms); `None`: all of it.
    pub since_ms: Option<i64>,
}

/// A feed call on a mailbox that has no feed (IMAP).
fn not_a_feed() -> MailError {
    MailError::rejected(
        Protocol::Imap,
        ErrorKind::InvalidAccount,
        "IMAP mailboxes are read by folder, not through a change feed",
    )
}

impl Mailbox {
    /// How this mailbox is read (see the module docs).
    pub fn sync_model(&self) -> SyncModel {
        match self {
            Mailbox::Imap(_) => SyncModel::Folders,
            Mailbox::Gmail(_) | Mailbox::Graph(_) => SyncModel::Feed,
        }
    }

    /// The folders of a feed mailbox.
    pub async fn feed_folders(&self) -> Result<Vec<FeedFolder>, MailError> {
        match self {
            Mailbox::Gmail(m) => m.feed_folders().await,
            Mailbox::Graph(m) => m.feed_folders().await,
            Mailbox::Imap(_) => Err(not_a_feed()),
        }
    }

    /// The feed's cursor now: take it before an initial listing, so nothing that changes
    /// during the listing is missed by the next [`Mailbox::feed_changes`].
    pub async fn feed_cursor(&self) -> Result<String, MailError> {
        match self {
            Mailbox::Gmail(m) => m.feed_cursor().await,
            Mailbox::Graph(m) => m.feed_cursor().await,
            Mailbox::Imap(_) => Err(not_a_feed()),
        }
    }

    /// One page of at most `page_size` ids of the messages in `window` (Spam and Trash
    /// included), newest first; `page` is the previous page's `next`.
    pub async fn feed_list(
        &self,
        window: FeedWindow,
        page_size: u32,
        page: Option<&str>,
    ) -> Result<FeedPage, MailError> {
        match self {
            Mailbox::Gmail(m) => m.feed_list(window, page_size, page).await,
            Mailbox::Graph(m) => m.feed_list(window, page_size, page).await,
            Mailbox::Imap(_) => Err(not_a_feed()),
        }
    }

    /// A message as it is now: whole and parsed with `whole`, else only its folders and flags.
    /// `Ok(None)` when it is gone.
    pub async fn feed_fetch(
        &self,
        id: &str,
        whole: bool,
    ) -> Result<Option<FeedMessage>, MailError> {
        match self {
            Mailbox::Gmail(m) => m.feed_fetch(id, whole).await,
            Mailbox::Graph(m) => m.feed_fetch(id, whole).await,
            Mailbox::Imap(_) => Err(not_a_feed()),
        }
    }

    /// The decoded bytes of one attachment (`part` as the index keeps it) of message `id`.
    /// Gmail's own attachment ids are not the MIME part ids the index keeps: the message is
    /// fetched whole (`raw`) and the part cut out of it, so the stream is one piece. A missing
    /// message or part is a `ResourceNotFound` refusal.
    pub async fn feed_open_part(
        &self,
        id: &str,
        part: &str,
    ) -> Result<super::PartStream, MailError> {
        match self {
            Mailbox::Gmail(m) => m.feed_open_part(id, part).await,
            Mailbox::Graph(m) => m.feed_open_part(id, part).await,
            Mailbox::Imap(_) => Err(not_a_feed()),
        }
    }

    /// Marks message `id` read or unread (Gmail: the `UNREAD` label).
    pub async fn feed_set_read(&self, id: &str, read: bool) -> Result<(), MailError> {
        match self {
            Mailbox::Gmail(m) => m.feed_set_read(id, read).await,
            Mailbox::Graph(m) => m.feed_set_read(id, read).await,
            Mailbox::Imap(_) => Err(not_a_feed()),
        }
    }

    /// Puts message `id` in folder `add` and out of the folders `remove` (Gmail: labels);
    /// answers the folders it is in afterwards.
    pub async fn feed_move(
        &self,
        id: &str,
        add: &str,
        remove: &[&str],
    ) -> Result<Vec<String>, MailError> {
        match self {
            Mailbox::Gmail(m) => m.feed_move(id, add, remove).await,
            // One folder per message: the move takes it out of the one it was in.
            Mailbox::Graph(m) => m.feed_move(id, add).await,
            Mailbox::Imap(_) => Err(not_a_feed()),
        }
    }

    /// Moves message `id` to the Trash (Gmail `messages.trash`); answers the folders it is in
    /// afterwards.
    pub async fn feed_trash(&self, id: &str) -> Result<Vec<String>, MailError> {
        match self {
            Mailbox::Gmail(m) => m.feed_trash(id).await,
            Mailbox::Graph(m) => m.feed_trash(id).await,
            Mailbox::Imap(_) => Err(not_a_feed()),
        }
    }

    /// Several messages (whole when the flag says so), in the order given; `None` for one
    /// that is gone. Gmail: through its batch endpoint; Outlook: one request each, over the
    /// mailbox's request slots.
    pub async fn feed_fetch_many(
        &self,
        ids: Vec<(String, bool)>,
    ) -> Result<Vec<Option<FeedMessage>>, MailError> {
        use futures_util::{StreamExt as _, TryStreamExt as _};
        match self {
            Mailbox::Gmail(m) => m.feed_fetch_many(&ids).await,
            Mailbox::Graph(m) => {
                futures_util::stream::iter(ids)
                    .map(|(id, whole)| async move { m.feed_fetch(&id, whole).await })
                    .buffered(super::API_CONCURRENCY_PER_MAILBOX)
                    .try_collect()
                    .await
            }
            Mailbox::Imap(_) => Err(not_a_feed()),
        }
    }

    /// Files `raw` as a draft (Gmail `drafts.create`, Graph `POST /me/messages` with the MIME);
    /// answers the draft message's id.
    pub async fn feed_create_draft(&self, raw: &[u8]) -> Result<String, MailError> {
        match self {
            Mailbox::Gmail(m) => m.feed_create_draft(raw).await,
            Mailbox::Graph(m) => m.feed_create_draft(raw).await,
            Mailbox::Imap(_) => Err(not_a_feed()),
        }
    }

    /// The bytes of message `id` as stored; `Ok(None)` when it is gone.
    pub async fn feed_fetch_raw(&self, id: &str) -> Result<Option<Vec<u8>>, MailError> {
        match self {
            Mailbox::Gmail(m) => m.feed_fetch_raw(id).await,
            Mailbox::Graph(m) => m.feed_fetch_raw(id).await,
            Mailbox::Imap(_) => Err(not_a_feed()),
        }
    }

    /// Discards the draft whose message is `id`, for good (a sent draft); one already gone is
    /// no error.
    pub async fn feed_discard_draft(&self, id: &str) -> Result<(), MailError> {
        match self {
            Mailbox::Gmail(m) => m.feed_discard_draft(id).await,
            Mailbox::Graph(m) => m.feed_discard_draft(id).await,
            Mailbox::Imap(_) => Err(not_a_feed()),
        }
    }

    /// Everything that changed since `cursor` (every page). A cursor the provider no longer
    /// knows is [`MailError::is_cursor_expired`].
    pub async fn feed_changes(&self, cursor: &str) -> Result<FeedChanges, MailError> {
        match self {
            Mailbox::Gmail(m) => m.feed_changes(cursor).await,
            Mailbox::Graph(m) => m.feed_changes(cursor).await,
            Mailbox::Imap(_) => Err(not_a_feed()),
        }
    }
}
