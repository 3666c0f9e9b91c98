//! One pass of change-feed sync (Gmail history, Outlook's per-folder Graph delta) into the
//! index, through the mailbox seam's feed calls. Written in Gmail's words below; for Outlook a
//! folder is a mail folder (a message is in one), the cursor is the folders' delta links and a
//! change's key is the message's hashed `changeKey` (see `mailroom_providers::mailbox::feed`).
//!
//! - **Folders**: the mailbox's labels that are folders, upserted with their roles (provider
//!   id = label id). A message is linked to every folder it is in (no UID); one without any
//!   (archived) stays indexed, in no folder.
//! - **No cursor yet** (the first pass, or one interrupted before its end): an initial
//!   listing. The feed's cursor is taken *first*; then every message id within the sync
//!   window (newest first, at most `max_per_folder` of them: Gmail has one list, not one per
//!   folder), each fetched whole (`raw`) when new or by its labels when known, in chunks of
//!   [`CHUNK`] over the mailbox's request slots. A message whose last change is after the
//!   cursor is left to the history (which announces it if it arrived). Nothing found by a
//!   listing is announced: it was there before the account was linked. The cursor is stored
//!   with the last chunk's writes.
//! - **A cursor**: the changes since it (`history.list`), each touched message fetched as it
//!   is now and compared with the index: new (`messagesAdded`) → indexed and announced;
//!   deleted → out of the index, `mail_deleted`; known → its read flag and folders brought
//!   up to date (`mail_read`, `mail_moved`). The new cursor is stored with the last writes.
//! - **An expired cursor** (Gmail's 404): a resync, i.e. a listing that matches messages by
//!   provider id (Gmail ids are stable), updates what it knows without announcing it, drops
//!   what is gone, and announces only mail new to the index that arrived after the last
//!   complete pass (under the same event ids the history would have used, so a change seen
//!   both ways is announced once).
//!
//! **Events** (same kinds and payloads as the IMAP sync, deterministic ids): `mail_received`
//! for new mail in INBOX or a user label and `mail_sent` for new mail in SENT (keyed by
//! Message-ID), never for mail that arrived before the account was linked or more than 30
//! days ago; `mail_read` when `UNREAD` goes, `mail_moved` when the folders change (both keyed
//! by the history id of the change); `mail_deleted` (keyed by the message). Folders are named
//! in them as the API names them (`folders` of `GET /emails`: the label's name).

use std::collections::{HashMap, HashSet};

use futures_util::future::{BoxFuture, FutureExt as _};
use serde_json::{Value, json};

use mailroom_core::account::AccountMode;
use mailroom_core::mail::{FolderRole, FolderSyncStatus, MailOrigin};
use mailroom_core::{new_id, time_fmt};
use mailroom_providers::Mailbox;
use mailroom_providers::mailbox::{FeedMessage, FeedWindow};
use mailroom_store::accounts::Account;
use mailroom_store::events::{self, NewEvent};
use mailroom_store::feed::{self, FeedState};
use mailroom_store::index::{self, FolderRow, FolderSyncState, NewFolder, NewMessage};
use mailroom_store::outbox;
use mailroom_store::sync_window::{self, SyncWindow};
use mailroom_store::{Db, Store, WriteTx};

use super::imap::{SyncError, SyncReport};
use crate::Engine;

/// Messages fetched, then written, per round.
pub const CHUNK: usize = 100;

/// Ids per `messages.list` page (Gmail's maximum).
const PAGE: u32 = 500;

/// Mail whose arrival is older than this is never announced (as in the IMAP sync).
const ANNOUNCE_MAX_AGE_MS: i64 = 30 * 86_400_000;

/// Allowance for the provider's clock against ours when comparing arrival times.
const CLOCK_SLACK_MS: i64 = 5 * 60_000;

/// One pass over a feed mailbox (see the module docs); the sync loop runs it for accounts
/// whose mailbox is [`mailroom_providers::mailbox::SyncModel::Feed`].
pub async fn sync_feed_once(
    engine: &Engine,
    account: &Account,
    mailbox: &Mailbox,
) -> Result<SyncReport, SyncError> {
    // A send-only grant (`gmail.send`) cannot read the mailbox: nothing to sync.
    if mailbox.mode() == AccountMode::Send {
        return Ok(SyncReport::default());
    }
    let window = sync_window::get(&engine.store, account.id.as_str())
        .await?
        .unwrap_or_else(|| SyncWindow::default_at(account.created_at));
    let now_ms = engine.clock.now_ms();
    let mut pass = Pass {
        store: &engine.store,
        mailbox,
        account,
        window,
        now_ms,
        folders: HashMap::new(),
        report: SyncReport::default(),
    };
    pass.sync_folders().await?;
    match feed::cursor(&engine.store, account.id.as_str()).await? {
        None => pass.listing(None).await?,
        Some((cursor, at)) => match mailbox.feed_changes(&cursor).await {
            Ok(changes) => pass.apply_changes(changes).await?,
            Err(e) if e.is_cursor_expired() => {
                tracing::info!(account_id = %account.id, error = %e, "feed cursor expired; resyncing");
                pass.report.rebuilt.push("*".into());
                pass.listing(Some(at)).await?
            }
            Err(e) => return Err(e.into()),
        },
    }
    pass.finish_folders().await?;
    Ok(pass.report)
}

/// Indexes one message of a feed mailbox as a pass would (in all its folders, the folders
/// read first), without announcing it: a draft filed by `POST /drafts`. Its id in the index.
pub async fn index_one(
    engine: &Engine,
    account: &Account,
    mailbox: &Mailbox,
    m: FeedMessage,
) -> Result<String, SyncError> {
    let window = sync_window::get(&engine.store, account.id.as_str())
        .await?
        .unwrap_or_else(|| SyncWindow::default_at(account.created_at));
    let mut pass = Pass {
        store: &engine.store,
        mailbox,
        account,
        window,
        now_ms: engine.clock.now_ms(),
        folders: HashMap::new(),
        report: SyncReport::default(),
    };
    pass.sync_folders().await?;
    let provider_id = m.id.clone();
    pass.write(vec![Write::New { m, announce: false }], None)
        .await?;
    let row = index::get_message_by_provider_id(
        &engine.store,
        &account.workspace_id,
        account.id.as_str(),
        &provider_id,
    )
    .await?;
    row.map(|r| r.id).ok_or_else(|| {
        SyncError::Store(mailroom_store::StoreError::Corrupt(format!(
            "message {provider_id} was indexed but cannot be read back"
        )))
    })
}

struct Pass<'a> {
    store: &'a Store,
    mailbox: &'a Mailbox,
    account: &'a Account,
    window: SyncWindow,
    now_ms: i64,
    /// Folder provider id (label id) → its row.
    folders: HashMap<String, FolderRow>,
    report: SyncReport,
}

/// What one message's writes are, decided before the transaction.
enum Write {
    /// New to the index: indexed, announced when `announce`.
    New { m: FeedMessage, announce: bool },
    /// Known: read flag and folders brought up to date, announced under `at` when `announce`.
    Known {
        m: FeedMessage,
        was: FeedState,
        at: u64,
        announce: bool,
    },
    /// Gone from the mailbox.
    Gone { was: FeedState, announce: bool },
}

impl Pass<'_> {
    fn account_id(&self) -> &str {
        self.account.id.as_str()
    }

    fn workspace_id(&self) -> &str {
        &self.account.workspace_id
    }

    /// Mail that arrived before this is never announced: before the account was linked, or
    /// more than 30 days ago.
    fn announce_after(&self) -> i64 {
        self.account
            .created_at
            .max(self.now_ms - ANNOUNCE_MAX_AGE_MS)
            - CLOCK_SLACK_MS
    }

    async fn sync_folders(&mut self) -> Result<(), SyncError> {
        for f in self.mailbox.feed_folders().await? {
            let row = index::upsert_folder(
                self.store,
                NewFolder {
                    id: &new_id(),
                    workspace_id: self.workspace_id(),
                    account_id: self.account_id(),
                    name: &f.name,
                    role: f.role,
                    provider_id: &f.id,
                    now_ms: self.now_ms,
                },
            )
            .await?;
            self.folders.insert(f.id, row);
        }
        self.report.folders = self.folders.len();
        Ok(())
    }

    /// Every folder synced now, with the number of messages indexed in it.
    async fn finish_folders(&self) -> Result<(), SyncError> {
        let counts: HashMap<String, i64> = index::folder_counts(self.store, self.account_id())
            .await?
            .into_iter()
            .collect();
        for f in self.folders.values() {
            index::set_folder_sync_state(
                self.store,
                &f.id,
                &FolderSyncState {
                    uidvalidity: None,
                    uidnext: None,
                    highest_modseq: None,
                    cursor: None,
                    nb_mails: counts.get(&f.id).copied().unwrap_or(0),
                    status: FolderSyncStatus::Synced,
                    last_synced_at: Some(self.now_ms),
                },
                self.now_ms,
            )
            .await?;
        }
        Ok(())
    }

    /// The folder ids of a message's folders that the index knows (a label created since the
    /// folders were read waits for the next pass).
    fn folder_ids(&self, m: &FeedMessage) -> Vec<String> {
        let mut ids: Vec<String> = m
            .folders
            .iter()
            .filter_map(|l| self.folders.get(l).map(|f| f.id.clone()))
            .collect();
        ids.sort();
        ids
    }

    fn folder_by_id(&self, id: &str) -> Option<&FolderRow> {
        self.folders.values().find(|f| f.id == id)
    }

    /// An initial listing (`resync_of`: `None`), or a resync after an expired cursor (the time
    /// of the last complete pass). See the module docs.
    async fn listing(&mut self, resync_of: Option<i64>) -> Result<(), SyncError> {
        let baseline = self.mailbox.feed_cursor().await?;
        let base: u64 = baseline.parse().unwrap_or(u64::MAX);
        let limit = self
            .window
            .max_per_folder
            .and_then(|n| usize::try_from(n).ok());
        let window = FeedWindow {
            since_ms: self.window.since_ms,
        };
        let mut ids: Vec<String> = vec![];
        let mut page: Option<String> = None;
        loop {
            let p = self
                .mailbox
                .feed_list(window, PAGE, page.as_deref())
                .await?;
            ids.extend(p.ids);
            if limit.is_some_and(|n| ids.len() >= n) {
                ids.truncate(limit.unwrap_or(usize::MAX));
                break;
            }
            match p.next {
                Some(n) => page = Some(n),
                None => break,
            }
        }
        let known: HashSet<String> = feed::provider_ids(self.store, self.account_id())
            .await?
            .into_iter()
            .collect();
        // Mail new to the index is announced on a resync only when it arrived after the last
        // complete pass (the history would have announced it); never on a first listing.
        let announce_from = resync_of.map(|t| (t - CLOCK_SLACK_MS).max(self.announce_after()));
        let listed: HashSet<&String> = ids.iter().collect();
        // On a resync, what the index knows and the listing did not show may be gone (or only
        // outside the window): asked one by one.
        let unlisted: Vec<String> = if resync_of.is_some() {
            known
                .iter()
                .filter(|p| !listed.contains(p))
                .cloned()
                .collect()
        } else {
            vec![]
        };
        let work: Vec<(String, bool)> = ids
            .iter()
            .map(|id| (id.clone(), true))
            .chain(unlisted.into_iter().map(|id| (id, false)))
            .collect();
        let chunks: Vec<&[(String, bool)]> = work.chunks(CHUNK).collect();
        let last = chunks.len().saturating_sub(1);
        for (i, chunk) in chunks.iter().enumerate() {
            let fetched = self
                .fetch(
                    chunk
                        .iter()
                        .map(|(id, _)| (id.clone(), !known.contains(id)))
                        .collect(),
                )
                .await?;
            let mut writes = vec![];
            for ((id, listed), m) in chunk.iter().zip(fetched) {
                let was = feed::state_in(Db::Pool(self.store), self.account_id(), id).await?;
                match (m, was) {
                    (None, Some(was)) => writes.push(Write::Gone {
                        was,
                        announce: false,
                    }),
                    (None, None) => {}
                    // Changed after the cursor: the history brings it (and announces it if it
                    // arrived then).
                    (Some(m), _) if m.version > base => {}
                    (Some(m), Some(was)) => writes.push(Write::Known {
                        m,
                        was,
                        at: 0,
                        announce: false,
                    }),
                    (Some(m), None) => {
                        let arrived = m.internal_date_ms.unwrap_or(self.now_ms);
                        // The exact cut of the window (Gmail's `after:` counts whole seconds).
                        if *listed && self.window.since_ms.is_some_and(|s| arrived < s) {
                            continue;
                        }
                        let announce = announce_from.is_some_and(|t| arrived >= t);
                        writes.push(Write::New { m, announce });
                    }
                }
            }
            let cursor = (i == last).then_some(baseline.as_str());
            self.write(writes, cursor).await?;
        }
        if chunks.is_empty() {
            self.write(vec![], Some(&baseline)).await?;
        }
        Ok(())
    }

    /// Applies what changed since the cursor (see the module docs).
    async fn apply_changes(
        &mut self,
        changes: mailroom_providers::mailbox::FeedChanges,
    ) -> Result<(), SyncError> {
        let chunks: Vec<_> = changes.touched.chunks(CHUNK).collect();
        let last = chunks.len().saturating_sub(1);
        for (i, chunk) in chunks.iter().enumerate() {
            let mut states = Vec::with_capacity(chunk.len());
            for t in chunk.iter() {
                states.push(feed::state_in(Db::Pool(self.store), self.account_id(), &t.id).await?);
            }
            let wanted = chunk
                .iter()
                .zip(&states)
                .filter(|(t, _)| !t.deleted)
                .map(|(t, was)| (t.id.clone(), was.is_none()))
                .collect();
            let mut fetched = self.fetch(wanted).await?.into_iter();
            let mut writes = vec![];
            for (t, was) in chunk.iter().zip(states) {
                let m = if t.deleted {
                    None
                } else {
                    fetched.next().flatten()
                };
                match (m, was) {
                    (None, Some(was)) => writes.push(Write::Gone {
                        was,
                        announce: true,
                    }),
                    (None, None) => {}
                    (Some(m), Some(was)) => writes.push(Write::Known {
                        m,
                        was,
                        at: t.at,
                        announce: true,
                    }),
                    (Some(m), None) => {
                        let arrived = m.internal_date_ms.unwrap_or(self.now_ms);
                        // Only an arrival is news; an old message that shows up through a label
                        // change (it was outside the window) is indexed quietly.
                        let announce = t.added && arrived >= self.announce_after();
                        writes.push(Write::New { m, announce });
                    }
                }
            }
            let cursor = (i == last).then_some(changes.cursor.as_str());
            self.write(writes, cursor).await?;
        }
        if chunks.is_empty() {
            self.write(vec![], Some(&changes.cursor)).await?;
        }
        Ok(())
    }

    /// Fetches messages (whole when the flag says so), in the order given, as the seam
    /// batches them; `None` for a message that is gone. Boxed: the seam's stream would
    /// otherwise make the sync loop's future not `Send` for every lifetime.
    fn fetch(
        &self,
        ids: Vec<(String, bool)>,
    ) -> BoxFuture<'_, Result<Vec<Option<FeedMessage>>, SyncError>> {
        let mailbox = self.mailbox;
        async move { Ok(mailbox.feed_fetch_many(ids).await?) }.boxed()
    }

    /// Writes one chunk, with the cursor in the transaction of its last write: PostgreSQL, the
    /// whole chunk in one transaction; SQLite, one short transaction per message (see the IMAP
    /// sync's `Batch`: a long one there starves the other writers).
    async fn write(&mut self, writes: Vec<Write>, cursor: Option<&str>) -> Result<(), SyncError> {
        let batched = self.store.batches_writes();
        let mut shared: Option<WriteTx> = None;
        let n = writes.len();
        for (i, w) in writes.into_iter().enumerate() {
            let mut own: Option<WriteTx> = None;
            let tx = if batched {
                match &mut shared {
                    Some(tx) => tx,
                    None => shared.insert(self.store.begin_write().await?),
                }
            } else {
                own.insert(self.store.begin_write().await?)
            };
            self.write_one(tx, w).await?;
            if i + 1 == n
                && let Some(c) = cursor
            {
                feed::set_cursor_in(Db::Tx(tx), self.account_id(), c, self.now_ms).await?;
            }
            if let Some(tx) = own {
                tx.commit().await?;
            }
        }
        if let Some(tx) = shared {
            tx.commit().await?;
        } else if n == 0
            && let Some(c) = cursor
        {
            feed::set_cursor_in(Db::Pool(self.store), self.account_id(), c, self.now_ms).await?;
        }
        Ok(())
    }

    async fn write_one(&mut self, tx: &mut WriteTx, w: Write) -> Result<(), SyncError> {
        match w {
            Write::New { m, announce } => self.index_new(tx, &m, announce).await,
            Write::Known {
                m,
                was,
                at,
                announce,
            } => self.update_known(tx, &m, &was, at, announce).await,
            Write::Gone { was, announce } => {
                let row = if announce {
                    index::get_message(self.store, self.workspace_id(), &was.id).await?
                } else {
                    None
                };
                if feed::delete_message_in(tx, &was.id).await? {
                    self.report.deleted += 1;
                }
                if let Some(row) = row {
                    let from = was
                        .folders
                        .first()
                        .and_then(|f| self.folder_by_id(f))
                        .map(|f| f.name.clone());
                    let payload = json!({
                        "event": "mail_deleted",
                        "account_id": self.account_id(),
                        "email_id": row.id,
                        "provider_id": row.provider_id,
                        "message_id": row.message_id,
                        "folder": from,
                    });
                    self.event(tx, "mail_deleted", &was.id, payload).await?;
                }
                Ok(())
            }
        }
    }

    /// Indexes a message new to the index, in all its folders; announces its arrival.
    async fn index_new(
        &mut self,
        tx: &mut WriteTx,
        m: &FeedMessage,
        announce: bool,
    ) -> Result<(), SyncError> {
        let p = m.parsed.as_ref();
        let message_id = p.and_then(|p| p.message_id.as_deref());
        let date = p
            .and_then(|p| p.date_ms)
            .or(m.internal_date_ms)
            .unwrap_or(self.now_ms);
        let attachments = super::attachment_metas(p);
        let subject = p.and_then(|p| p.subject.as_deref()).unwrap_or("");
        // Mail this account sent through mailroom is `origin: unipile` with the send's
        // tracking id (as the IMAP sync marks its Sent copy).
        let sent_here = match message_id {
            Some(mid) => outbox::get_by_message_id_in(Db::Tx(tx), self.workspace_id(), mid)
                .await?
                .filter(|job| job.account_id == self.account.id),
            None => None,
        };
        let origin = if sent_here.is_some() {
            MailOrigin::Unipile
        } else {
            MailOrigin::External
        };
        let tracking_id = sent_here.as_ref().map(|job| job.id.to_string());
        let folders = self.folder_ids(m);
        let done = index::upsert_message_in(
            tx,
            NewMessage {
                id: &new_id(),
                workspace_id: self.workspace_id(),
                account_id: self.account_id(),
                provider_id: &m.id,
                message_id,
                in_reply_to: p.and_then(|p| p.in_reply_to.as_deref()),
                references: p.map(|p| p.references.as_slice()).unwrap_or(&[]),
                // Gmail's own conversation id: every message of a Gmail thread shares it.
                thread_id: &m.thread_id,
                subject,
                from: p.and_then(|p| p.from.as_ref()),
                to: p.map(|p| p.to.as_slice()).unwrap_or(&[]),
                cc: p.map(|p| p.cc.as_slice()).unwrap_or(&[]),
                bcc: p.map(|p| p.bcc.as_slice()).unwrap_or(&[]),
                reply_to: p.map(|p| p.reply_to.as_slice()).unwrap_or(&[]),
                date,
                read: m.read,
                size: m.size,
                has_attachments: !attachments.is_empty(),
                attachments: &attachments,
                body_html: p.and_then(|p| p.html.as_deref()),
                body_text: p.and_then(|p| p.text.as_deref()),
                headers: p.map(|p| p.headers.as_slice()),
                origin,
                tracking_id: tracking_id.as_deref(),
                folder: None,
                now_ms: self.now_ms,
            },
        )
        .await?;
        feed::set_folders_in(tx, &done.id, &folders).await?;
        if done.created {
            self.report.indexed += 1;
        }
        if !(done.created && announce) {
            return Ok(());
        }
        let rows: Vec<&FolderRow> = folders
            .iter()
            .filter_map(|f| self.folder_by_id(f))
            .collect();
        let mut kinds: Vec<(&str, &FolderRow)> = vec![];
        if let Some(sent) = rows.iter().find(|f| f.role == FolderRole::Sent) {
            kinds.push(("mail_sent", sent));
        }
        // INBOX first, else a user label.
        let received = rows
            .iter()
            .find(|f| f.role == FolderRole::Inbox)
            .or_else(|| rows.iter().find(|f| f.role == FolderRole::Unknown));
        if let Some(f) = received {
            kinds.push(("mail_received", f));
        }
        let folder_names: Vec<&str> = rows.iter().map(|f| f.name.as_str()).collect();
        let mut events = vec![];
        for (kind, f) in kinds {
            // The Unipile new-email webhook's fields, as the IMAP sync sends them.
            let payload = json!({
                "event": kind,
                "account_id": self.account_id(),
                "email_id": done.id,
                "date": time_fmt::format_ms(date),
                "from_attendee": super::attendees::from(p.and_then(|p| p.from.as_ref())),
                "to_attendees": super::attendees::list(p.map(|p| p.to.as_slice()).unwrap_or(&[])),
                "cc_attendees": super::attendees::list(p.map(|p| p.cc.as_slice()).unwrap_or(&[])),
                "bcc_attendees": super::attendees::list(p.map(|p| p.bcc.as_slice()).unwrap_or(&[])),
                "reply_to_attendees": super::attendees::list(p.map(|p| p.reply_to.as_slice()).unwrap_or(&[])),
                "provider_id": m.id,
                "message_id": message_id,
                "subject": subject,
                "has_attachments": !attachments.is_empty(),
                "attachments": attachments,
                "folders": folder_names,
                "role": f.role.as_str(),
                "read_date": Value::Null,
                "in_reply_to": p.and_then(|p| p.in_reply_to.as_deref()).map(|id| json!({"message_id": id})),
                "origin": origin.as_str(),
                "tracking_id": tracking_id,
            });
            events.push((kind, payload));
        }
        // Keyed by the Message-ID where there is one, as the IMAP sync does.
        let key = message_id.unwrap_or(&m.id).to_owned();
        for (kind, payload) in events {
            self.event(tx, kind, &key, payload).await?;
        }
        Ok(())
    }

    /// Brings a known message's read flag and folders up to date; announces a read and a move
    /// under the history id of the change.
    async fn update_known(
        &mut self,
        tx: &mut WriteTx,
        m: &FeedMessage,
        was: &FeedState,
        at: u64,
        announce: bool,
    ) -> Result<(), SyncError> {
        let folders = self.folder_ids(m);
        if m.read != was.read && feed::set_read_in(tx, &was.id, m.read, self.now_ms).await? {
            self.report.read_changed += 1;
            if m.read && announce {
                let folder = folders.first().and_then(|f| self.folder_by_id(f));
                let payload = json!({
                    "event": "mail_read",
                    "account_id": self.account_id(),
                    "email_id": was.id,
                    "folder": folder.map(|f| f.name.clone()),
                    "role": folder.map(|f| f.role.as_str()),
                });
                self.event(tx, "mail_read", &format!("{}:h{at}", was.id), payload)
                    .await?;
            }
        }
        if folders == was.folders {
            return Ok(());
        }
        feed::set_folders_in(tx, &was.id, &folders).await?;
        let joined: Vec<&String> = folders
            .iter()
            .filter(|f| !was.folders.contains(f))
            .collect();
        let left: Vec<&String> = was
            .folders
            .iter()
            .filter(|f| !folders.contains(f))
            .collect();
        self.report.linked += joined.len();
        self.report.removed += left.len();
        self.report.moved += 1;
        if !announce {
            return Ok(());
        }
        let name = |id: Option<&&String>| {
            id.and_then(|f| self.folder_by_id(f))
                .map(|f| (f.name.clone(), f.role))
        };
        let to = name(joined.first());
        let from = name(left.first());
        let row = index::get_message(self.store, self.workspace_id(), &was.id).await?;
        let payload = json!({
            "event": "mail_moved",
            "account_id": self.account_id(),
            "email_id": was.id,
            "provider_id": m.id,
            "message_id": row.and_then(|r| r.message_id),
            "from_folder": from.as_ref().map(|f| f.0.clone()),
            "folder": to.as_ref().map(|f| f.0.clone()),
            "role": to.as_ref().map(|f| f.1.as_str()),
            "folders": folders
                .iter()
                .filter_map(|f| self.folder_by_id(f))
                .map(|f| f.name.clone())
                .collect::<Vec<_>>(),
        });
        self.event(tx, "mail_moved", &format!("{}:h{at}", was.id), payload)
            .await
    }

    /// Records an event with the id `["<kind>", account, key]` inside the write.
    async fn event(
        &mut self,
        tx: &mut WriteTx,
        kind: &str,
        key: &str,
        payload: Value,
    ) -> Result<(), SyncError> {
        events::record_in(
            Db::Tx(tx),
            NewEvent {
                id: events::event_id(&[kind, self.account_id(), key]),
                workspace_id: self.workspace_id(),
                account_id: Some(self.account_id()),
                kind,
                payload,
                now_ms: self.now_ms,
            },
        )
        .await?;
        self.report.events += 1;
        Ok(())
    }
}
