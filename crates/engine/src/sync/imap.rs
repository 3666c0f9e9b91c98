//! One pass of IMAP folder sync into the index, through the mailbox seam.
//!
//! For every folder of the mailbox: upsert it with its role; then, for a selectable one,
//! compare the server's state with the stored one.
//!
//! - **Unchanged** (same UIDVALIDITY, UIDNEXT, message count and, with CONDSTORE, highest
//!   modseq): nothing more is asked.
//! - **Same UIDVALIDITY**: fetch what is above what was seen (in batches of [`BATCH`]), then
//!   the flag changes and expunges since the stored modseq: in one QRESYNC round trip
//!   (`VANISHED`) where the server has it; else CONDSTORE flag changes (without CONDSTORE,
//!   every message's flags compared with the index) and a diff of the server's UID set with
//!   the indexed one (what is missing was expunged or moved away).
//! - **First fetch**: only the account's sync window ([`SyncWindow`]: by default mail that
//!   arrived in the last 30 days; `sync_limit` on linking sets another date, none, or the newest
//!   N per folder). The UIDVALIDITY and the UIDNEXT at the start are stored first, so an
//!   interrupted fetch resumes where it stopped and mail that arrived meanwhile is announced.
//! - **Another UIDVALIDITY**: the folder's UIDs are void. It is read again from UID 0; a
//!   fetched message that is already indexed (same Message-ID, same RFC822.SIZE and same date)
//!   is linked again under its new UID and announced again never; what was in the folder and
//!   is not found again is taken out of it. Interrupted, the rebuild starts over.
//!
//! Then the folder's state is stored (UIDVALIDITY, UIDNEXT and highest modseq as read *before*
//! fetching, so nothing that changes during the pass is missed next time).
//!
//! Once every folder is seen, a known message that left one folder and appeared in another
//! has **moved**; one that is in no folder any more is **deleted** from the index (unless a
//! folder failed this pass: it may be there).
//!
//! **Provider ids.** A message's provider id is `"<uidvalidity>:<uid>@<folder>"` of the
//! folder it was first indexed from: stable (UIDs never change within one UIDVALIDITY), unique
//! within the account, and readable. The same message seen in another folder (an IMAP copy or
//! move) or again after a UIDVALIDITY change keeps the id it was indexed under.
//!
//! **Events** (deterministic ids, so a pass run twice, a restart or a rebuild never records
//! one change twice): nothing is announced for mail that was there before the account's
//! first sync of a folder (unless the folder appeared after the account's first completed
//! sync), nor for mail that arrived more than 30 days ago; otherwise `mail_received` for new
//! mail in any folder but Sent, Drafts, Trash and Spam (keyed by Message-ID), `mail_sent` for
//! new mail in Sent, `mail_read` when a known message becomes `\Seen` (keyed by the change's
//! modseq), `mail_moved` (keyed by the destination folder and UID) and `mail_deleted`.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};

use serde_json::{Value, json};

use mailroom_core::mail::{FolderRole, FolderSyncStatus, MailOrigin};
use mailroom_core::{new_id, time_fmt};
use mailroom_providers::mailbox::reading::ParsedMail;
use mailroom_providers::mailbox::{FetchedMessage, FlagChange, FolderState};
use mailroom_providers::{MailError, Mailbox};
use mailroom_store::accounts::Account;
use mailroom_store::events::{self, NewEvent};
use mailroom_store::index::{
    self, FolderRow, FolderSyncState, MessageFilter, MessageRow, NewFolder, NewMessage,
};
use mailroom_store::outbox;
use mailroom_store::sync_window::{self, SyncWindow};
use mailroom_store::{Db, Store, StoreError, WriteTx};

use crate::Engine;
use crate::mailboxes::OpenError;
use crate::sync::threading;

/// Messages fetched per round trip.
pub const BATCH: usize = 100;

/// Why a pass stopped. A folder that fails on the provider's side does not stop the pass: it
/// is marked `error` and listed in [`SyncReport::failed`]; a refused login does.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Open(#[from] OpenError),
    #[error(transparent)]
    Mail(#[from] MailError),
}

/// What one pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SyncReport {
    /// Selectable folders synced.
    pub folders: usize,
    /// Folders fetched from UID 0 (new to the index, or their UIDVALIDITY changed).
    pub rebuilt: Vec<String>,
    /// Messages new to the index.
    pub indexed: usize,
    /// Known messages linked to one more folder (a copy, or found again after a rebuild).
    pub linked: usize,
    /// Known messages whose read flag changed.
    pub read_changed: usize,
    /// Messages taken out of a folder (expunged or moved away).
    pub removed: usize,
    /// Messages gone from every folder, removed from the index.
    pub deleted: usize,
    /// Known messages that moved from one folder to another.
    pub moved: usize,
    /// Events recorded (an event already recorded is not recorded again, but counts here).
    pub events: usize,
    /// Folders that failed, with the provider's error.
    pub failed: Vec<(String, String)>,
}

/// One pass over the account's mailbox (see the module docs); the sync supervisor runs it.
pub async fn sync_account_once(
    engine: &Engine,
    account: &Account,
) -> Result<SyncReport, SyncError> {
    let mailbox = engine.mailboxes().open(account).await?;
    let window = sync_window::get(&engine.store, account.id.as_str())
        .await?
        .unwrap_or_else(|| SyncWindow::default_at(account.created_at));
    let pass = Pass {
        store: &engine.store,
        mailbox: &mailbox,
        account,
        window,
        now_ms: engine.clock.now_ms(),
        moves: Mutex::default(),
    };
    pass.run().await
}

/// Indexes a message mailroom itself filed in `folder` (a draft) as the sync would have
/// found it there, announcing nothing: the next pass sees it as known. Answers its id.
pub(crate) async fn index_appended(
    engine: &Engine,
    mailbox: &Mailbox,
    account: &Account,
    folder: &FolderRow,
    uid_validity: u32,
    message: &FetchedMessage,
) -> Result<String, SyncError> {
    let now_ms = engine.clock.now_ms();
    let pass = Pass {
        store: &engine.store,
        mailbox,
        account,
        // Indexing one message consults neither.
        window: SyncWindow::default_at(now_ms),
        now_ms,
        moves: Mutex::default(),
    };
    let mut report = SyncReport::default();
    let mut batch = Batch::begin(&engine.store).await?;
    let id = pass
        .index_one(
            &mut batch,
            folder,
            uid_validity,
            message,
            false,
            false,
            &HashSet::new(),
            &mut report,
        )
        .await?;
    batch.commit().await?;
    Ok(id)
}

/// Whether a pass that went from `before` to `after` messages indexed should refresh the
/// planner's statistics: at 1,000 and then each time the count grows fourfold (a first sync
/// into an empty index; a few times per pass at most).
fn statistics_due(before: usize, after: usize) -> bool {
    let step = |n: usize| if n < 1000 { 0 } else { 1 + (n / 1000).ilog(4) };
    step(after) > step(before)
}

/// When this process last refreshed the planner's statistics (ms since the epoch).
static STATISTICS_REFRESHED_AT: AtomicI64 = AtomicI64::new(0);

/// Refreshes the planner's statistics unless this process did within the last 5 minutes: the
/// tables are every account's, and many accounts in a first sync would otherwise queue one
/// ANALYZE after another (each holding a connection). A failure is logged, not the pass's.
async fn refresh_statistics(store: &Store, now_ms: i64) {
    let last = STATISTICS_REFRESHED_AT.load(Ordering::Relaxed);
    if now_ms - last < 5 * 60_000
        || STATISTICS_REFRESHED_AT
            .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
    {
        return;
    }
    if let Err(e) = index::refresh_statistics(store).await {
        tracing::warn!(error = %e, "could not refresh the index's planner statistics");
    }
}

/// Where a fetched batch is written ([`Store::batches_writes`]): PostgreSQL, one transaction
/// for the whole batch, its reads included (so they see the batch's own writes); SQLite, a
/// short transaction per message around its writes, reads on the pool (earlier messages of the
/// batch are committed by then). Either way a message and the events announcing it are
/// stored together.
struct Batch {
    tx: Option<WriteTx>,
}

impl Batch {
    async fn begin(store: &Store) -> Result<Self, StoreError> {
        Ok(Self {
            tx: if store.batches_writes() {
                Some(store.begin_write().await?)
            } else {
                None
            },
        })
    }

    /// Where the batch's reads go.
    fn reads<'a>(&'a mut self, store: &'a Store) -> Db<'a> {
        match &mut self.tx {
            Some(tx) => Db::Tx(tx),
            None => Db::Pool(store),
        }
    }

    async fn commit(self) -> Result<(), StoreError> {
        if let Some(tx) = self.tx {
            tx.commit().await?;
        }
        Ok(())
    }
}

/// The event new mail in a folder of this role announces, if any.
fn arrival_event(role: FolderRole) -> Option<&'static str> {
    match role {
        FolderRole::Sent => Some("mail_sent"),
        FolderRole::Drafts | FolderRole::Trash | FolderRole::Spam => None,
        _ => Some("mail_received"),
    }
}

/// See the module docs.
fn provider_id(folder: &str, uid_validity: u32, uid: u32) -> String {
    format!("{uid_validity}:{uid}@{folder}")
}

struct Pass<'a> {
    store: &'a Store,
    mailbox: &'a Mailbox,
    account: &'a Account,
    window: SyncWindow,
    now_ms: i64,
    /// What moved during the pass; settled once every folder has been seen.
    moves: Mutex<Moves>,
}

/// Messages that left a folder and messages that joined one during a pass: a message that
/// did both moved; one that only left and is in no folder any more was deleted.
#[derive(Default)]
struct Moves {
    /// message → the folder it left (provider id).
    left: HashMap<String, String>,
    /// message → (folder id, folder provider id, role, UID there, announce).
    joined: HashMap<String, (String, String, FolderRole, u32, bool)>,
    /// Messages a rebuild did not find again: their removal is not announced.
    quiet: HashSet<String>,
}

/// Mail whose arrival is older than this is never announced (an old message moved into a
/// folder where it was not indexed, say), whatever the sync window.
const ANNOUNCE_MAX_AGE_MS: i64 = 30 * 86_400_000;

/// Allowance for the mail server's clock against ours when comparing arrival times.
const CLOCK_SLACK_MS: i64 = 5 * 60_000;

impl Pass<'_> {
    fn account_id(&self) -> &str {
        self.account.id.as_str()
    }

    fn workspace_id(&self) -> &str {
        &self.account.workspace_id
    }

    fn moves(&self) -> std::sync::MutexGuard<'_, Moves> {
        self.moves.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn run(&self) -> Result<SyncReport, SyncError> {
        let remote = self.mailbox.list_folders().await?;
        let known =
            index::list_folders(self.store, self.workspace_id(), Some(self.account_id())).await?;
        let account_synced = known.iter().any(|f| f.last_synced_at.is_some());
        let mut report = SyncReport::default();
        let mut announcing = HashMap::new();
        for rf in &remote {
            let is_new = !known.iter().any(|f| f.provider_id == rf.name);
            let folder = index::upsert_folder(
                self.store,
                NewFolder {
                    id: &new_id(),
                    workspace_id: self.workspace_id(),
                    account_id: self.account_id(),
                    name: &rf.name,
                    role: rf.role,
                    provider_id: &rf.name,
                    now_ms: self.now_ms,
                },
            )
            .await?;
            if !rf.selectable {
                continue;
            }
            // Mail already there when the account was linked is never announced; a folder
            // created since (or one whose first fetch was interrupted before the account's
            // first complete sync) is judged by the same rule.
            let announce = folder.last_synced_at.is_some() || (account_synced && is_new);
            announcing.insert(folder.provider_id.clone(), announce || account_synced);
            match self.sync_folder(&folder, announce, &mut report).await {
                Ok(()) => report.folders += 1,
                Err(SyncError::Mail(e)) if !e.is_auth() => {
                    tracing::warn!(account = %self.account_id(), folder = %rf.name, error = %e, "folder sync failed");
                    index::set_folder_sync_state(
                        self.store,
                        &folder.id,
                        &FolderSyncState {
                            uidvalidity: folder.uidvalidity,
                            uidnext: folder.uidnext,
                            highest_modseq: folder.highest_modseq,
                            cursor: folder.cursor.as_deref(),
                            nb_mails: folder.nb_mails,
                            status: FolderSyncStatus::Error,
                            last_synced_at: folder.last_synced_at,
                        },
                        self.now_ms,
                    )
                    .await?;
                    report.failed.push((rf.name.clone(), e.to_string()));
                }
                Err(e) => return Err(e),
            }
        }
        self.settle_moves(&announcing, &mut report).await?;
        Ok(report)
    }

    /// Once every folder has been seen: a message that left one folder and joined another
    /// moved (`mail_moved`); one in no folder at all is gone (`mail_deleted`, and out of the
    /// index). Left for the next pass when a folder failed: the message may be in that one.
    async fn settle_moves(
        &self,
        announcing: &HashMap<String, bool>,
        report: &mut SyncReport,
    ) -> Result<(), SyncError> {
        let moves = std::mem::take(&mut *self.moves());
        for (message, (folder_id, folder, role, uid, announce)) in &moves.joined {
            let Some(from) = moves.left.get(message) else {
                continue; // a copy, not a move
            };
            report.moved += 1;
            if !announce {
                continue;
            }
            let Some(row) = index::get_message(self.store, self.workspace_id(), message).await?
            else {
                continue;
            };
            let payload = json!({
                "event": "mail_moved",
                "account_id": self.account_id(),
                "email_id": message,
                "provider_id": row.provider_id,
                "message_id": row.message_id,
                "from_folder": from,
                "folder": folder,
                "role": role.as_str(),
            });
            // The destination UID is new with every move, so moving back and forth is
            // announced each time, and one move once.
            let key = format!("{message}:{folder_id}:{uid}");
            self.event("mail_moved", &key, payload, report).await?;
        }
        if !report.failed.is_empty() {
            return Ok(());
        }
        for message in index::orphans(self.store, self.account_id()).await? {
            let Some(row) = index::get_message(self.store, self.workspace_id(), &message).await?
            else {
                continue;
            };
            index::delete_message(self.store, &message).await?;
            report.deleted += 1;
            let from = moves.left.get(&message);
            let announce = !moves.quiet.contains(&message)
                && from
                    .and_then(|f| announcing.get(f))
                    .copied()
                    .unwrap_or(true);
            if announce {
                let payload = json!({
                    "event": "mail_deleted",
                    "account_id": self.account_id(),
                    "email_id": row.id,
                    "provider_id": row.provider_id,
                    "message_id": row.message_id,
                    "folder": from,
                });
                self.event("mail_deleted", &message, payload, report)
                    .await?;
            }
        }
        Ok(())
    }

    async fn sync_folder(
        &self,
        f: &FolderRow,
        announce: bool,
        report: &mut SyncReport,
    ) -> Result<(), SyncError> {
        let state = self.mailbox.folder_state(&f.provider_id).await?;
        let uv = state.uid_validity;
        let rebuild = f.uidvalidity.is_some_and(|v| v != i64::from(uv));
        let first = f.uidvalidity.is_none();
        let synced = f.sync_status == FolderSyncStatus::Synced && !rebuild;
        // Nothing arrived, left or changed flags since the last pass (CONDSTORE: any change
        // moves the modseq): nothing to ask.
        if synced
            && f.uidnext == state.uid_next.map(i64::from)
            && f.nb_mails == i64::from(state.exists)
            && state.highest_modseq.is_some()
            && f.highest_modseq == state.highest_modseq.and_then(|m| i64::try_from(m).ok())
        {
            return Ok(());
        }
        // Indexed (uid, message) of the folder before this pass.
        let before = index::messages_in_folder_uids(self.store, &f.id).await?;
        if rebuild {
            report.rebuilt.push(f.provider_id.clone());
        }
        if first {
            // The fetch may take long and be interrupted: remember the UIDVALIDITY and where
            // new mail starts (UIDNEXT now), so a resumed pass continues and still announces
            // what arrived meanwhile. (A rebuild keeps the old UIDVALIDITY until it is done:
            // interrupted, it starts over, finding known mail again.)
            index::set_folder_sync_state(
                self.store,
                &f.id,
                &FolderSyncState {
                    uidvalidity: Some(i64::from(uv)),
                    uidnext: state.uid_next.map(i64::from),
                    highest_modseq: None,
                    cursor: None,
                    nb_mails: i64::from(state.exists),
                    status: FolderSyncStatus::Fetching,
                    last_synced_at: f.last_synced_at,
                },
                self.now_ms,
            )
            .await?;
        }
        // Mail with a UID from here on arrived after this folder's first fetch began.
        let arrivals_from: u32 = if first || rebuild {
            state.uid_next.unwrap_or(u32::MAX)
        } else if !synced {
            f.uidnext
                .and_then(|u| u32::try_from(u).ok())
                .unwrap_or(u32::MAX)
        } else {
            0
        };
        let highest_indexed = before
            .last()
            .and_then(|(uid, _)| u32::try_from(*uid).ok())
            .unwrap_or(0);
        let after_uid = if rebuild {
            // Every UID is void: read the folder again to find known mail under its new UID.
            0
        } else if synced {
            let seen_to = f
                .uidnext
                .and_then(|u| u32::try_from(u).ok())
                .map_or(0, |u| u.saturating_sub(1));
            highest_indexed.max(seen_to)
        } else {
            highest_indexed.max(self.window_start(f, uv).await?)
        };
        let window_since = if synced { None } else { self.window.since_ms };
        // A rebuild reads the whole folder to find known mail again; mail it did not know is
        // held to the window as a first fetch would be (the newest N, by UID).
        let window_after = if rebuild {
            self.window_start(f, uv).await?
        } else {
            0
        };
        // Mail that arrived before this is never announced: before the account was linked,
        // more than 30 days ago, or (a rebuild, whose UIDs say nothing) before the folder's
        // last pass. A few minutes of slack for the server's and our clocks.
        let mut announce_after = self
            .account
            .created_at
            .max(self.now_ms - ANNOUNCE_MAX_AGE_MS)
            - CLOCK_SLACK_MS;
        if rebuild {
            announce_after =
                announce_after.max(f.last_synced_at.map_or(i64::MAX, |t| t - CLOCK_SLACK_MS));
        }

        // New mail (everything, on a rebuild).
        let mut seen: HashSet<String> = HashSet::new();
        let was_here: HashSet<&str> = before.iter().map(|(_, m)| m.as_str()).collect();
        let mut cursor = after_uid;
        loop {
            let batch = self
                .mailbox
                .fetch_new(&f.provider_id, uv, cursor, BATCH)
                .await?;
            // Written as one transaction where the store batches writes (see `Batch`).
            let indexed_before = report.indexed;
            let mut writes = Batch::begin(self.store).await?;
            let mut joined = Vec::new();
            for m in &batch {
                cursor = cursor.max(m.uid);
                let arrived = m.internal_date_ms.unwrap_or(self.now_ms);
                let fresh = m.uid >= arrivals_from;
                // Existing mail from before the window is not indexed (IMAP searched whole
                // days; this is the exact cut), unless a rebuild finds it already indexed.
                let outside = window_since.is_some_and(|since| arrived < since)
                    || (rebuild && m.uid <= window_after);
                if !fresh
                    && outside
                    && !(rebuild && self.is_known(writes.reads(self.store), m).await?)
                {
                    continue;
                }
                let announce_this = (announce || fresh) && arrived >= announce_after;
                let id = self
                    .index_one(&mut writes, f, uv, m, rebuild, announce_this, &seen, report)
                    .await?;
                if !was_here.contains(id.as_str()) && !rebuild {
                    joined.push((id.clone(), m.uid, announce || fresh));
                }
                seen.insert(id);
            }
            writes.commit().await?;
            if statistics_due(indexed_before, report.indexed) {
                refresh_statistics(self.store, self.now_ms).await;
            }
            for (id, uid, announce) in joined {
                self.note_joined(&id, f, uid, announce);
            }
            if batch.len() < BATCH {
                break;
            }
        }

        if rebuild {
            // What was in the folder and was not found again is gone from it.
            for (_, message) in &before {
                if !seen.contains(message) {
                    index::unlink_message(self.store, message, &f.id).await?;
                    report.removed += 1;
                    // Not found again under the new UIDs: gone, or (mail without a
                    // Message-ID) not recognisable. Either way nothing to announce.
                    self.note_left(message, f);
                    self.moves().quiet.insert(message.clone());
                }
            }
        }

        // Flag changes and expunges since the stored modseq in one round trip where the server
        // has QRESYNC; `None` falls back to CONDSTORE flags (or all flags) and the UID diff.
        let since = f.highest_modseq.and_then(|m| u64::try_from(m).ok());
        let delta = match since {
            Some(since) if !rebuild && !first => {
                self.mailbox
                    .changes_since(&f.provider_id, uv, since)
                    .await?
            }
            _ => None,
        };
        if !rebuild && !first {
            let changes = match &delta {
                Some(d) => d.flags.clone(),
                None => self.flag_changes(f, uv, &state).await?,
            };
            self.apply_flags(f, changes, announce, report).await?;
        }

        // Expunges: the UIDs QRESYNC says vanished, else indexed UIDs the server no longer has.
        let (gone, nb_mails): (HashSet<i64>, i64) = match delta {
            Some(d) => (
                d.vanished.into_iter().map(i64::from).collect(),
                i64::from(d.exists),
            ),
            None => {
                let server: Vec<u32> = self.mailbox.uids(&f.provider_id, uv).await?;
                let live: HashSet<i64> = server.iter().copied().map(i64::from).collect();
                let gone = before
                    .iter()
                    .map(|(uid, _)| *uid)
                    .filter(|uid| !live.contains(uid))
                    .collect();
                (gone, server.len() as i64)
            }
        };
        if !rebuild {
            for (uid, _) in &before {
                if gone.contains(uid)
                    && let Some(unlinked) =
                        index::remove_message_from_folder(self.store, &f.id, *uid).await?
                {
                    report.removed += 1;
                    self.note_left(&unlinked.message_id, f);
                }
            }
        }

        index::set_folder_sync_state(
            self.store,
            &f.id,
            &FolderSyncState {
                uidvalidity: Some(i64::from(uv)),
                uidnext: state.uid_next.map(i64::from),
                highest_modseq: state.highest_modseq.and_then(|m| i64::try_from(m).ok()),
                cursor: None,
                nb_mails,
                status: FolderSyncStatus::Synced,
                last_synced_at: Some(self.now_ms),
            },
            self.now_ms,
        )
        .await?;
        Ok(())
    }

    /// The UID after which a first fetch of `f` starts: the account's window (arrival date,
    /// newest N per folder), or 0 for all.
    async fn window_start(&self, f: &FolderRow, uv: u32) -> Result<u32, SyncError> {
        let mut after = 0u32;
        if let Some(since) = self.window.since_ms {
            let found = self.mailbox.uids_since(&f.provider_id, uv, since).await?;
            after = match found.first() {
                Some(first) => first.saturating_sub(1),
                // Nothing that recent: only what arrives from now on.
                None => self
                    .mailbox
                    .uids(&f.provider_id, uv)
                    .await?
                    .last()
                    .copied()
                    .unwrap_or(0),
            };
        }
        if let Some(n) = self
            .window
            .max_per_folder
            .and_then(|n| usize::try_from(n).ok())
        {
            let all = self.mailbox.uids(&f.provider_id, uv).await?;
            if all.len() > n {
                after = after.max(all[all.len() - n - 1]);
            }
        }
        Ok(after)
    }

    /// The account's indexed messages with this Message-ID (at most `limit`).
    async fn with_message_id(
        &self,
        db: Db<'_>,
        message_id: &str,
        limit: u32,
    ) -> Result<Vec<MessageRow>, SyncError> {
        Ok(index::list_messages_in(
            db,
            self.workspace_id(),
            &MessageFilter {
                account_id: Some(self.account_id()),
                message_id: Some(message_id),
                ..Default::default()
            },
            None,
            limit,
        )
        .await?)
    }

    /// Whether a message is already indexed (same Message-ID, size and date): on a rebuild,
    /// known mail is found again even when it is older than the window.
    async fn is_known(&self, db: Db<'_>, m: &FetchedMessage) -> Result<bool, SyncError> {
        let Some(mid) = m.parsed.as_ref().and_then(|p| p.message_id.as_deref()) else {
            return Ok(false);
        };
        let rows = self.with_message_id(db, mid, 20).await?;
        Ok(rows.iter().any(|r| r.size == i64::from(m.size)))
    }

    /// The folder's flag changes without QRESYNC: by CONDSTORE since the stored modseq, else
    /// (a server without modseqs) every message's flags, for [`Self::apply_flags`] to compare.
    async fn flag_changes(
        &self,
        f: &FolderRow,
        uv: u32,
        state: &FolderState,
    ) -> Result<Vec<FlagChange>, SyncError> {
        let since = f.highest_modseq.and_then(|m| u64::try_from(m).ok());
        let changes = match (since, state.highest_modseq) {
            (Some(since), Some(_)) => {
                match self
                    .mailbox
                    .fetch_flags_changed(&f.provider_id, uv, since)
                    .await?
                {
                    Some(c) => c,
                    None => self.mailbox.all_flags(&f.provider_id, uv).await?,
                }
            }
            _ => self.mailbox.all_flags(&f.provider_id, uv).await?,
        };
        Ok(changes)
    }

    /// Applies read-flag changes of known mail to the index, announcing each read once.
    async fn apply_flags(
        &self,
        f: &FolderRow,
        changes: Vec<FlagChange>,
        announce: bool,
        report: &mut SyncReport,
    ) -> Result<(), SyncError> {
        if changes.is_empty() {
            return Ok(());
        }
        let known: HashMap<i64, (String, bool, i64)> =
            index::read_states_in_folder(self.store, &f.id)
                .await?
                .into_iter()
                .map(|(uid, m, read, at)| (uid, (m, read, at)))
                .collect();
        for c in changes {
            let Some((message, read, at)) = known.get(&i64::from(c.uid)) else {
                continue;
            };
            if *read == c.flags.seen {
                continue;
            }
            // The row and the event change together, and only if the row still differs: the
            // snapshot above may be stale (`PUT /emails/{id}` changed the row and announced it
            // meanwhile). The event's id is fixed by the change (its modseq, or the row's last
            // change on servers without).
            let mut tx = self.store.begin_write().await?;
            if !index::set_read_in(Db::Tx(&mut tx), message, c.flags.seen, self.now_ms).await? {
                continue;
            }
            report.read_changed += 1;
            if c.flags.seen && announce {
                let payload = json!({
                    "event": "mail_read",
                    "account_id": self.account_id(),
                    "email_id": message,
                    "folder": f.provider_id,
                    "role": f.role.as_str(),
                });
                let key = match c.modseq {
                    Some(m) => format!("{message}:m{m}"),
                    None => format!("{message}:t{at}"),
                };
                self.event_in(Db::Tx(&mut tx), "mail_read", &key, payload, report)
                    .await?;
            }
            tx.commit().await?;
        }
        Ok(())
    }

    fn note_left(&self, message: &str, f: &FolderRow) {
        self.moves()
            .left
            .insert(message.to_owned(), f.provider_id.clone());
    }

    fn note_joined(&self, message: &str, f: &FolderRow, uid: u32, announce: bool) {
        self.moves().joined.insert(
            message.to_owned(),
            (f.id.clone(), f.provider_id.clone(), f.role, uid, announce),
        );
    }

    /// Indexes one fetched message into folder `f`; answers its id in the index.
    #[allow(clippy::too_many_arguments)]
    async fn index_one(
        &self,
        batch: &mut Batch,
        f: &FolderRow,
        uv: u32,
        m: &FetchedMessage,
        rebuild: bool,
        announce: bool,
        seen: &HashSet<String>,
        report: &mut SyncReport,
    ) -> Result<String, SyncError> {
        let p = m.parsed.as_ref();
        let message_id = p.and_then(|p| p.message_id.as_deref());
        let size = i64::from(m.size);
        let date = p
            .and_then(|p| p.date_ms)
            .or(m.internal_date_ms)
            .unwrap_or(self.now_ms);
        let own = provider_id(&f.provider_id, uv, m.uid);
        let matched = match message_id {
            Some(mid) => {
                self.same_message(
                    batch.reads(self.store),
                    f,
                    mid,
                    size,
                    date,
                    rebuild,
                    seen,
                    &own,
                )
                .await?
            }
            None => None,
        };
        let new = new_id();
        let thread = match &matched {
            Some(r) => r.thread_id.clone(),
            None => match p {
                Some(p) => self.thread_of(batch.reads(self.store), p, date).await?,
                None => None,
            }
            .unwrap_or_else(|| new.clone()),
        };
        let pid = matched.as_ref().map_or(own, |r| r.provider_id.clone());
        let attachments = super::attachment_metas(p);
        let subject = p.and_then(|p| p.subject.as_deref()).unwrap_or("");
        // Mail this account sent through mailroom (its Sent copy, or a copy to itself) is
        // `origin: unipile` with the send's tracking id, as Unipile marks it.
        let sent_here = match (matched.is_none(), message_id) {
            (true, Some(mid)) => {
                outbox::get_by_message_id_in(batch.reads(self.store), self.workspace_id(), mid)
                    .await?
                    .filter(|job| job.account_id == self.account.id)
            }
            _ => None,
        };
        let origin = if sent_here.is_some() {
            MailOrigin::Unipile
        } else {
            MailOrigin::External
        };
        let tracking_id = sent_here.as_ref().map(|job| job.id.to_string());
        // The writes: in the batch's transaction, or in one of this message's own.
        let mut own_tx: Option<WriteTx> = None;
        let tx = match batch.tx.as_mut() {
            Some(tx) => tx,
            None => own_tx.insert(self.store.begin_write().await?),
        };
        let done = index::upsert_message_in(
            tx,
            NewMessage {
                id: &new,
                workspace_id: self.workspace_id(),
                account_id: self.account_id(),
                provider_id: &pid,
                message_id,
                in_reply_to: p.and_then(|p| p.in_reply_to.as_deref()),
                references: p.map(|p| p.references.as_slice()).unwrap_or(&[]),
                thread_id: &thread,
                subject,
                from: p.and_then(|p| p.from.as_ref()),
                to: p.map(|p| p.to.as_slice()).unwrap_or(&[]),
                cc: p.map(|p| p.cc.as_slice()).unwrap_or(&[]),
                bcc: p.map(|p| p.bcc.as_slice()).unwrap_or(&[]),
                reply_to: p.map(|p| p.reply_to.as_slice()).unwrap_or(&[]),
                date,
                read: m.flags.seen,
                size,
                has_attachments: !attachments.is_empty(),
                attachments: &attachments,
                body_html: p.and_then(|p| p.html.as_deref()),
                body_text: p.and_then(|p| p.text.as_deref()),
                headers: p.map(|p| p.headers.as_slice()),
                origin,
                tracking_id: tracking_id.as_deref(),
                folder: Some((&f.id, Some(i64::from(m.uid)))),
                now_ms: self.now_ms,
            },
        )
        .await?;
        if done.created {
            report.indexed += 1;
            if let Some(mid) = message_id {
                index::adopt_replies(Db::Tx(tx), self.account_id(), mid, &thread).await?;
            }
            if announce && let Some(kind) = arrival_event(f.role) {
                // The Unipile new-email webhook's fields we know without another lookup
                // (`unipile-api.md` §5.4); bodies are left out (the API serves them).
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
                    "provider_id": pid,
                    "message_id": message_id,
                    "subject": subject,
                    "has_attachments": !attachments.is_empty(),
                    "attachments": attachments,
                    "folders": [f.provider_id],
                    "role": f.role.as_str(),
                    "read_date": Value::Null,
                    "in_reply_to": p.and_then(|p| p.in_reply_to.as_deref()).map(|id| json!({"message_id": id})),
                    "origin": origin.as_str(),
                    "tracking_id": tracking_id,
                });
                // Keyed by the Message-ID where there is one, so a message indexed again
                // under another provider id is still announced once.
                self.event_in(
                    Db::Tx(tx),
                    kind,
                    message_id.unwrap_or(&pid),
                    payload,
                    report,
                )
                .await?;
            }
        } else if done.linked {
            report.linked += 1;
        }
        if done.read_changed {
            report.read_changed += 1;
            if m.flags.seen && announce && !rebuild {
                let payload = json!({
                    "event": "mail_read",
                    "account_id": self.account_id(),
                    "email_id": done.id,
                    "folder": f.provider_id,
                    "role": f.role.as_str(),
                });
                // Keyed by the new link (folder and UID), which no later change repeats.
                let key = format!("{}:u{}:{}", done.id, f.id, m.uid);
                self.event_in(Db::Tx(tx), "mail_read", &key, payload, report)
                    .await?;
            }
        }
        if let Some(tx) = own_tx {
            tx.commit().await?;
        }
        Ok(done.id)
    }

    /// The indexed message that a message fetched into `f` is another copy of: same
    /// Message-ID, same size, same date, and not already in `f` (except on a rebuild, where
    /// the folder's old links are stale until found again).
    #[allow(clippy::too_many_arguments)]
    async fn same_message(
        &self,
        db: Db<'_>,
        f: &FolderRow,
        message_id: &str,
        size: i64,
        date: i64,
        rebuild: bool,
        seen: &HashSet<String>,
        own: &str,
    ) -> Result<Option<MessageRow>, SyncError> {
        let rows = self.with_message_id(db, message_id, 20).await?;
        Ok(rows.into_iter().find(|r| {
            r.provider_id == own
                || (r.size == size
                    && r.date == date
                    && (!r.folders.iter().any(|l| l.folder_id == f.id)
                        || (rebuild && !seen.contains(&r.id))))
        }))
    }

    /// The thread of the nearest known ancestor (In-Reply-To, then References newest first).
    /// Only for a message with neither header, and a subject that says it is a reply or a
    /// forward (`Re:`, `Fwd:`, `AW:` …): the newest thread of the last 30 days with the same
    /// subject and someone in common.
    async fn thread_of(
        &self,
        mut db: Db<'_>,
        p: &ParsedMail,
        date: i64,
    ) -> Result<Option<String>, SyncError> {
        let ancestors = p
            .in_reply_to
            .as_deref()
            .into_iter()
            .chain(p.references.iter().rev().map(String::as_str));
        for id in ancestors {
            let found = self.with_message_id(db.reborrow(), id, 1).await?;
            if let Some(r) = found.into_iter().next() {
                return Ok(Some(r.thread_id));
            }
        }
        if p.in_reply_to.is_some() || !p.references.is_empty() {
            return Ok(None);
        }
        let Some(base) = p.subject.as_deref().and_then(threading::reply_base) else {
            return Ok(None);
        };
        let people = threading::participants(p);
        let candidates = index::recent_by_subject_tail(
            db,
            self.account_id(),
            base,
            date - ANNOUNCE_MAX_AGE_MS,
            20,
        )
        .await?;
        Ok(candidates
            .into_iter()
            .find(|c| {
                threading::base_subject(&c.subject).eq_ignore_ascii_case(base)
                    && c.participants.iter().any(|a| people.contains(a))
            })
            .map(|c| c.thread_id))
    }

    /// Records an event with the id `["<kind>", account, key]`.
    async fn event(
        &self,
        kind: &str,
        key: &str,
        payload: Value,
        report: &mut SyncReport,
    ) -> Result<(), SyncError> {
        self.event_in(Db::Pool(self.store), kind, key, payload, report)
            .await
    }

    /// [`Self::event`] on the pool or inside the batch's transaction.
    async fn event_in(
        &self,
        db: Db<'_>,
        kind: &str,
        key: &str,
        payload: Value,
        report: &mut SyncReport,
    ) -> Result<(), SyncError> {
        events::record_in(
            db,
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
        report.events += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::statistics_due;

    #[test]
    fn statistics_are_refreshed_at_1000_then_each_fourfold() {
        assert!(!statistics_due(0, 999));
        assert!(statistics_due(900, 1000));
        assert!(!statistics_due(1000, 3999));
        assert!(statistics_due(3900, 4000));
        assert!(statistics_due(0, 20_000));
        assert!(!statistics_due(16_000, 63_999));
        assert!(statistics_due(63_999, 64_000));
    }
}
