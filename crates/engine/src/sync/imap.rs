//! One pass of IMAP folder sync into the index, through the mailbox seam.
//!
//! For every folder of the mailbox: upsert it with its role; then, for a selectable one,
//! compare the server's UIDVALIDITY with the stored one.
//!
//! - **Same UIDVALIDITY**: fetch what is above the highest indexed UID (in batches of
//!   [`BATCH`]), apply the flag changes since the stored modseq (CONDSTORE), and diff the
//!   server's UID set with the indexed one: what is missing was expunged (or moved away).
//! - **No stored UIDVALIDITY, or another one**: the folder's UIDs are void. Everything is
//!   fetched again from UID 0; a fetched message that is already indexed (same Message-ID,
//!   same RFC822.SIZE and same date) is linked again under its new UID and announced again
//!   never; what was in the folder and is not found again is taken out of it.
//!
//! Then the folder's state is stored (UIDVALIDITY, UIDNEXT and highest modseq as read *before*
//! fetching, so nothing that changes during the pass is missed next time).
//!
//! **Provider ids.** A message's provider id is `"<uidvalidity>:<uid>@<folder>"` of the
//! folder it was first indexed from: stable (UIDs never change within one UIDVALIDITY), unique
//! within the account, and readable. The same message seen in another folder (an IMAP copy)
//! or again after a UIDVALIDITY change keeps the id it was indexed under and gets one more
//! folder link (with its UID there).
//!
//! **Events** (deterministic ids, so a pass run twice, a restart or a rebuild never records
//! one change twice): nothing is announced for a folder's first fetch unless the folder
//! appeared after the account's first completed sync; after that, `mail_received` for new mail
//! in any folder but Sent, Drafts, Trash and Spam, `mail_sent` for new mail in Sent,
//! `mail_read` when a known message becomes `\Seen` (CONDSTORE servers only, for now), and
//! `mail_deleted` when a message is gone from every folder (it is then removed from the index).

use std::collections::{HashMap, HashSet};

use serde_json::{Value, json};

use mailroom_core::mail::{AttachmentMeta, FolderRole, FolderSyncStatus, MailOrigin};
use mailroom_core::{new_id, time_fmt};
use mailroom_providers::mailbox::FetchedMessage;
use mailroom_providers::{MailError, Mailbox};
use mailroom_store::accounts::Account;
use mailroom_store::events::{self, NewEvent};
use mailroom_store::index::{
    self, FolderRow, FolderSyncState, MessageFilter, MessageRow, NewFolder, NewMessage,
};
use mailroom_store::{Store, StoreError};

use crate::Engine;
use crate::mailboxes::OpenError;

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
    let pass = Pass {
        store: &engine.store,
        mailbox: &mailbox,
        account,
        now_ms: engine.clock.now_ms(),
    };
    pass.run().await
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
    now_ms: i64,
}

impl Pass<'_> {
    fn account_id(&self) -> &str {
        self.account.id.as_str()
    }

    fn workspace_id(&self) -> &str {
        &self.account.workspace_id
    }

    async fn run(&self) -> Result<SyncReport, SyncError> {
        let remote = self.mailbox.list_folders().await?;
        let known =
            index::list_folders(self.store, self.workspace_id(), Some(self.account_id())).await?;
        let account_synced = known.iter().any(|f| f.last_synced_at.is_some());
        let mut report = SyncReport::default();
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
        Ok(report)
    }

    async fn sync_folder(
        &self,
        f: &FolderRow,
        announce: bool,
        report: &mut SyncReport,
    ) -> Result<(), SyncError> {
        let state = self.mailbox.folder_state(&f.provider_id).await?;
        let uv = state.uid_validity;
        let rebuild = f.uidvalidity != Some(i64::from(uv));
        // Indexed (uid, message) of the folder before this pass.
        let before = index::messages_in_folder_uids(self.store, &f.id).await?;
        if rebuild {
            report.rebuilt.push(f.provider_id.clone());
        }
        let after_uid = if rebuild {
            0
        } else {
            before
                .last()
                .and_then(|(uid, _)| u32::try_from(*uid).ok())
                .unwrap_or(0)
        };

        // New mail (everything, on a rebuild).
        let mut seen: HashSet<String> = HashSet::new();
        let mut cursor = after_uid;
        loop {
            let batch = self
                .mailbox
                .fetch_new(&f.provider_id, uv, cursor, BATCH)
                .await?;
            for m in &batch {
                cursor = cursor.max(m.uid);
                let id = self
                    .index_one(f, uv, m, rebuild, announce, &seen, report)
                    .await?;
                seen.insert(id);
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
                    self.forget_if_gone(message, f, announce, report).await?;
                }
            }
        } else {
            let by_uid: HashMap<i64, &str> = before.iter().map(|(u, m)| (*u, m.as_str())).collect();
            // Flags (read / unread) of known mail, by CONDSTORE.
            if let Some(since) = f.highest_modseq.and_then(|m| u64::try_from(m).ok())
                && let Some(changes) = self
                    .mailbox
                    .fetch_flags_changed(&f.provider_id, uv, since)
                    .await?
            {
                for c in changes {
                    let Some(message) = by_uid.get(&i64::from(c.uid)) else {
                        continue;
                    };
                    if index::set_read(self.store, message, c.flags.seen, self.now_ms).await? {
                        report.read_changed += 1;
                        if c.flags.seen && announce {
                            let payload = json!({
                                "event": "mail_read",
                                "account_id": self.account_id(),
                                "email_id": message,
                                "folder": f.provider_id,
                                "role": f.role.as_str(),
                            });
                            self.event("mail_read", message, payload, report).await?;
                        }
                    }
                }
            }
        }

        // Expunges: indexed UIDs the server no longer has.
        let server: Vec<u32> = self.mailbox.uids(&f.provider_id, uv).await?;
        if !rebuild {
            let live: HashSet<u32> = server.iter().copied().collect();
            for (uid, _) in &before {
                let gone = !u32::try_from(*uid).is_ok_and(|u| live.contains(&u));
                if gone
                    && let Some(unlinked) =
                        index::remove_message_from_folder(self.store, &f.id, *uid).await?
                {
                    report.removed += 1;
                    if unlinked.remaining == 0 {
                        self.forget_if_gone(&unlinked.message_id, f, announce, report)
                            .await?;
                    }
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
                nb_mails: server.len() as i64,
                status: FolderSyncStatus::Synced,
                last_synced_at: Some(self.now_ms),
            },
            self.now_ms,
        )
        .await?;
        Ok(())
    }

    /// Indexes one fetched message into folder `f`; answers its id in the index.
    #[allow(clippy::too_many_arguments)]
    async fn index_one(
        &self,
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
                self.same_message(f, mid, size, date, rebuild, seen, &own)
                    .await?
            }
            None => None,
        };
        let new = new_id();
        let thread = match &matched {
            Some(r) => r.thread_id.clone(),
            None => self
                .thread_of(
                    p.and_then(|p| p.in_reply_to.as_deref()),
                    p.map(|p| p.references.as_slice()).unwrap_or(&[]),
                )
                .await?
                .unwrap_or_else(|| new.clone()),
        };
        let pid = matched.as_ref().map_or(own, |r| r.provider_id.clone());
        let attachments: Vec<AttachmentMeta> = p
            .map(|p| {
                p.attachments
                    .iter()
                    .map(|a| AttachmentMeta {
                        id: a.part_id.clone(),
                        name: a.name.clone(),
                        size: a.size as i64,
                        mime: a.mime.clone(),
                        cid: a.cid.clone(),
                        part: Some(a.part_id.clone()),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let subject = p.and_then(|p| p.subject.as_deref()).unwrap_or("");
        let done = index::upsert_message(
            self.store,
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
                headers: None,
                // Matching a Sent copy with mailroom's outbox (`unipile`) comes later.
                origin: MailOrigin::External,
                tracking_id: None,
                folder: Some((&f.id, Some(i64::from(m.uid)))),
                now_ms: self.now_ms,
            },
        )
        .await?;
        if done.created {
            report.indexed += 1;
            if announce && let Some(kind) = arrival_event(f.role) {
                // The Unipile new-email webhook's fields we know without another lookup
                // (`unipile-api.md` §5.4); bodies are left out (the API serves them).
                let payload = json!({
                    "event": kind,
                    "account_id": self.account_id(),
                    "email_id": done.id,
                    "date": time_fmt::format_ms(date),
                    "from_attendee": p.and_then(|p| p.from.as_ref()),
                    "to_attendees": p.map(|p| p.to.as_slice()).unwrap_or(&[]),
                    "cc_attendees": p.map(|p| p.cc.as_slice()).unwrap_or(&[]),
                    "bcc_attendees": p.map(|p| p.bcc.as_slice()).unwrap_or(&[]),
                    "reply_to_attendees": p.map(|p| p.reply_to.as_slice()).unwrap_or(&[]),
                    "provider_id": pid,
                    "message_id": message_id,
                    "subject": subject,
                    "has_attachments": !attachments.is_empty(),
                    "attachments": attachments,
                    "folders": [f.provider_id],
                    "role": f.role.as_str(),
                    "read_date": Value::Null,
                    "in_reply_to": p.and_then(|p| p.in_reply_to.as_deref()).map(|id| json!({"message_id": id})),
                    "origin": MailOrigin::External.as_str(),
                });
                // Keyed by the Message-ID where there is one, so a message indexed again
                // under another provider id is still announced once.
                self.event(kind, message_id.unwrap_or(&pid), payload, report)
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
                self.event("mail_read", &done.id, payload, report).await?;
            }
        }
        Ok(done.id)
    }

    /// The indexed message that a message fetched into `f` is another copy of: same
    /// Message-ID, same size, same date, and not already in `f` (except on a rebuild, where
    /// the folder's old links are stale until found again).
    #[allow(clippy::too_many_arguments)]
    async fn same_message(
        &self,
        f: &FolderRow,
        message_id: &str,
        size: i64,
        date: i64,
        rebuild: bool,
        seen: &HashSet<String>,
        own: &str,
    ) -> Result<Option<MessageRow>, SyncError> {
        let rows = index::list_messages(
            self.store,
            self.workspace_id(),
            &MessageFilter {
                account_id: Some(self.account_id()),
                message_id: Some(message_id),
                ..Default::default()
            },
            None,
            20,
        )
        .await?;
        Ok(rows.into_iter().find(|r| {
            r.provider_id == own
                || (r.size == size
                    && r.date == date
                    && (!r.folders.iter().any(|l| l.folder_id == f.id)
                        || (rebuild && !seen.contains(&r.id))))
        }))
    }

    /// The thread of the nearest known ancestor (In-Reply-To, then References newest first).
    async fn thread_of(
        &self,
        in_reply_to: Option<&str>,
        references: &[String],
    ) -> Result<Option<String>, SyncError> {
        let ancestors = in_reply_to
            .into_iter()
            .chain(references.iter().rev().map(String::as_str));
        for id in ancestors {
            let found = index::list_messages(
                self.store,
                self.workspace_id(),
                &MessageFilter {
                    account_id: Some(self.account_id()),
                    message_id: Some(id),
                    ..Default::default()
                },
                None,
                1,
            )
            .await?;
            if let Some(r) = found.into_iter().next() {
                return Ok(Some(r.thread_id));
            }
        }
        Ok(None)
    }

    /// Removes `message` from the index if it is in no folder any more, announcing it.
    async fn forget_if_gone(
        &self,
        message: &str,
        f: &FolderRow,
        announce: bool,
        report: &mut SyncReport,
    ) -> Result<(), SyncError> {
        let Some(row) = index::get_message(self.store, self.workspace_id(), message).await? else {
            return Ok(());
        };
        if !row.folders.is_empty() {
            return Ok(());
        }
        index::delete_message(self.store, message).await?;
        report.deleted += 1;
        if announce {
            let payload = json!({
                "event": "mail_deleted",
                "account_id": self.account_id(),
                "email_id": row.id,
                "provider_id": row.provider_id,
                "message_id": row.message_id,
                "folder": f.provider_id,
                "role": f.role.as_str(),
            });
            self.event("mail_deleted", message, payload, report).await?;
        }
        Ok(())
    }

    /// Records an event with the id `["<kind>", account, key]`.
    async fn event(
        &self,
        kind: &str,
        key: &str,
        payload: Value,
        report: &mut SyncReport,
    ) -> Result<(), SyncError> {
        events::record(
            self.store,
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
