//! Changing mail through the API: read state, moves, deletion, an attachment's bytes, drafts.
//!
//! **Provider first, then the index.** A change is made in the mailbox through the seam; only
//! when the provider took it is the index changed, so the index never shows what the mailbox
//! does not have. The index is changed the way the next sync pass would change it, so that
//! pass finds nothing new and announces nothing a second time: the read flag is set, a moved
//! message's folder link carries its UID in the new folder (from the server's COPYUID; a
//! server that gives none leaves the link for the sync to rebuild by Message-ID).
//!
//! **Events**: `mail_read` (only when the index went from unread to read), `mail_moved` and
//! `mail_deleted`, recorded only when the index really changed, with ids derived from the
//! message and the state it changed from: a retried request records nothing twice.

use std::time::Duration;

use futures_util::StreamExt as _;
use futures_util::stream::BoxStream;
use serde_json::{Value, json};

use mailroom_core::email::OutgoingAttachment;
use mailroom_core::id::looks_like_id;
use mailroom_core::mail::FolderRole;
use mailroom_core::{ApiError, ErrorKind, new_id};
use mailroom_providers::mailbox::{FetchedMessage, MessageFlags, PartStream, SyncModel};
use mailroom_providers::{FailureKind, MailError, Mailbox, Trashed};
use mailroom_store::accounts::{self, Account};
use mailroom_store::events::{self, NewEvent};
use mailroom_store::index::{self, FolderRow, MessageRow, NewFolder};
use mailroom_store::tx::Db;

use crate::Engine;
use crate::mailboxes::OpenError;
use crate::send::SendInput;

/// An email as the API names it: our id, or the provider's id with the account.
#[derive(Debug, Clone, Copy)]
pub struct EmailRef<'a> {
    pub id: &'a str,
    pub account_id: Option<&'a str>,
}

/// What `PUT /emails/{id}` asks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Update {
    /// When given, the only thing done (Unipile: "if unread is supplied, all other parameters
    /// are ignored").
    pub unread: Option<bool>,
    /// Folder names; exactly one (the folder to move the email to).
    pub folders: Option<Vec<String>>,
}

/// An attachment's bytes as they are fetched, with what the index knows of it.
pub struct AttachmentStream {
    pub name: String,
    pub mime: String,
    /// The decoded bytes, piece by piece. An error (the mailbox failed or went silent for
    /// the send timeout half-way through) ends it; it is logged here, and the client sees the
    /// download cut short.
    pub body: BoxStream<'static, Result<Vec<u8>, std::io::Error>>,
}

/// Where a draft is, to remove it once it was sent.
#[derive(Debug, Clone)]
pub enum DraftPlace {
    /// At a UID of the Drafts folder (IMAP).
    Folder {
        message_id: String,
        folder: FolderRow,
        uid: u32,
    },
    /// A draft of a feed mailbox (Gmail), named by its provider id.
    Feed {
        message_id: String,
        provider_id: String,
    },
}

/// A message located in the mailbox: its account, its row, its folders (with UIDs).
struct Located {
    account: Account,
    message: MessageRow,
    places: Vec<(FolderRow, u32)>,
}

impl Located {
    fn first_place(&self) -> Result<&(FolderRow, u32), ApiError> {
        self.places.first().ok_or_else(|| {
            ApiError::new(
                ErrorKind::ResourceNotFound,
                format!(
                    "email {} is in no folder the index knows right now (moved or removed elsewhere; \
                     the next sync pass finds where it is)",
                    self.message.id
                ),
            )
        })
    }
}

fn store_error(e: mailroom_store::StoreError) -> ApiError {
    tracing::error!(error = %e, "store error while changing mail");
    ApiError::unexpected("an internal error occurred; it has been logged")
}

/// A provider failure as the API answers it: an outage is temporary (503: try again), refused
/// credentials mean the account needs a reconnect, a refusal keeps its slug.
fn provider_error(e: MailError) -> ApiError {
    let kind = match e.kind {
        FailureKind::Auth => ErrorKind::DisconnectedAccount,
        FailureKind::Rejected(kind) => kind,
        FailureKind::TooLarge => ErrorKind::ProviderContentTooLarge,
        _ => ErrorKind::ServiceUnavailable,
    };
    ApiError::new(kind, format!("{} server: {e}", e.protocol))
}

/// Runs a mailbox call while the client waits: bounded like a send attempt.
async fn bounded<T>(
    engine: &Engine,
    call: impl Future<Output = Result<T, MailError>>,
) -> Result<T, ApiError> {
    let deadline: Duration = engine.outbox.config().send_timeout;
    tokio::time::timeout(deadline, call)
        .await
        .map_err(|_| {
            ApiError::new(
                ErrorKind::RequestTimeout,
                format!(
                    "the mailbox did not answer within {}s; try again",
                    deadline.as_secs()
                ),
            )
        })?
        .map_err(provider_error)
}

async fn open(engine: &Engine, account: &Account) -> Result<std::sync::Arc<Mailbox>, ApiError> {
    engine.mailboxes().open(account).await.map_err(|e| match e {
        OpenError::Store(e) => store_error(e),
        OpenError::Mail(e) => provider_error(e),
    })
}

/// The indexed message `r` names in `workspace`, with its account and folders.
async fn locate(engine: &Engine, workspace: &str, r: EmailRef<'_>) -> Result<Located, ApiError> {
    let store = &engine.store;
    let not_found = || {
        ApiError::new(
            ErrorKind::ResourceNotFound,
            format!("email {} not found", r.id),
        )
    };
    let mut message = None;
    if looks_like_id(r.id) {
        message = index::get_message(store, workspace, r.id)
            .await
            .map_err(store_error)?
            .filter(|m| r.account_id.is_none_or(|a| m.account_id.as_str() == a));
    }
    if message.is_none()
        && let Some(account_id) = r.account_id
    {
        message = index::get_message_by_provider_id(store, workspace, account_id, r.id)
            .await
            .map_err(store_error)?;
    }
    let message = message.ok_or_else(not_found)?;
    let account = accounts::get(store, workspace, &message.account_id)
        .await
        .map_err(store_error)?
        .ok_or_else(not_found)?;
    let mut places = Vec::new();
    for link in &message.folders {
        let Some(uid) = link.uid.and_then(|u| u32::try_from(u).ok()) else {
            continue;
        };
        if let Some(f) = index::get_folder(store, workspace, &link.folder_id)
            .await
            .map_err(store_error)?
        {
            places.push((f, uid));
        }
    }
    Ok(Located {
        account,
        message,
        places,
    })
}

async fn record(
    engine: &Engine,
    l: &Located,
    kind: &str,
    stamp: &str,
    payload: Value,
) -> Result<(), ApiError> {
    record_in(Db::Pool(&engine.store), engine, l, kind, stamp, payload).await
}

/// [`record`] on the pool or in a transaction.
async fn record_in(
    db: Db<'_>,
    engine: &Engine,
    l: &Located,
    kind: &str,
    stamp: &str,
    payload: Value,
) -> Result<(), ApiError> {
    let account_id = l.account.id.as_str();
    events::record_in(
        db,
        NewEvent {
            id: events::event_id(&[kind, account_id, &l.message.id, stamp]),
            workspace_id: &l.account.workspace_id,
            account_id: Some(account_id),
            kind,
            payload,
            now_ms: engine.clock.now_ms(),
        },
    )
    .await
    .map_err(store_error)
}

/// `PUT /emails/{id}`: `unread`, else `folders` (a move).
pub async fn update(
    engine: &Engine,
    workspace: &str,
    r: EmailRef<'_>,
    change: Update,
) -> Result<(), ApiError> {
    if change.unread.is_none() && change.folders.is_none() {
        return Err(ApiError::missing(
            "give `unread` (true or false) or `folders` (the name of the one folder to move \
             the email to)",
        ));
    }
    if change.unread.is_none()
        && let Some(folders) = &change.folders
        && folders.len() != 1
    {
        return Err(ApiError::invalid(format!(
            "folders names {} folders; give exactly one: the folder to move the email to \
             (IMAP and Outlook mail is in one folder at a time)",
            folders.len()
        )));
    }
    let l = locate(engine, workspace, r).await?;
    if open(engine, &l.account).await?.sync_model() == SyncModel::Feed {
        return match (change.unread, change.folders) {
            (Some(unread), _) => feed::set_read(engine, &l, !unread).await,
            (None, Some(folders)) => feed::move_to(engine, &l, &folders[0]).await,
            (None, None) => unreachable!("checked above"),
        };
    }
    match (change.unread, change.folders) {
        (Some(unread), _) => set_read(engine, &l, !unread).await,
        (None, Some(folders)) => move_to(engine, &l, &folders[0]).await,
        (None, None) => unreachable!("checked above"),
    }
}

/// The same changes on a feed mailbox (Gmail): a message is found by its provider id and is in
/// folders by label, without UIDs. The provider first, then the index as the feed sync would
/// leave it (so its next pass finds nothing to announce), then the event.
mod feed {
    use super::*;

    /// The index's folder rows of these provider ids (label ids), in that order.
    async fn rows(
        engine: &Engine,
        l: &Located,
        provider_ids: &[String],
    ) -> Result<Vec<FolderRow>, ApiError> {
        let all = index::list_folders(
            &engine.store,
            &l.account.workspace_id,
            Some(l.account.id.as_str()),
        )
        .await
        .map_err(store_error)?;
        Ok(provider_ids
            .iter()
            .filter_map(|p| all.iter().find(|f| &f.provider_id == p).cloned())
            .collect())
    }

    /// The message's folders as the index has them.
    async fn current(engine: &Engine, l: &Located) -> Result<Vec<FolderRow>, ApiError> {
        let mut out = vec![];
        for link in &l.message.folders {
            if let Some(f) =
                index::get_folder(&engine.store, &l.account.workspace_id, &link.folder_id)
                    .await
                    .map_err(store_error)?
            {
                out.push(f);
            }
        }
        Ok(out)
    }

    /// Links the message to exactly `folders` in the index and, if that changed the index,
    /// records the event announcing it, in one transaction: a sync pass that saw the same
    /// change first leaves nothing to change here, so one change is announced once.
    async fn relink_and_announce(
        engine: &Engine,
        l: &Located,
        folders: &[FolderRow],
        kind: &str,
        stamp: &str,
        payload: Value,
    ) -> Result<(), ApiError> {
        let mut ids: Vec<String> = folders.iter().map(|f| f.id.clone()).collect();
        ids.sort();
        let mut tx = engine.store.begin_write().await.map_err(store_error)?;
        let changed = mailroom_store::feed::set_folders_in(&mut tx, &l.message.id, &ids)
            .await
            .map_err(store_error)?;
        if changed {
            record_in(Db::Tx(&mut tx), engine, l, kind, stamp, payload).await?;
        }
        tx.commit().await.map_err(store_error)
    }

    pub(super) async fn set_read(engine: &Engine, l: &Located, read: bool) -> Result<(), ApiError> {
        let mailbox = open(engine, &l.account).await?;
        bounded(engine, mailbox.feed_set_read(&l.message.provider_id, read)).await?;
        let first = current(engine, l).await?.into_iter().next();
        // The row and its event together, the event only if this update changed the row (as
        // for IMAP: a sync pass that saw the same change announces it instead).
        let mut tx = engine.store.begin_write().await.map_err(store_error)?;
        let changed =
            index::set_read_in(Db::Tx(&mut tx), &l.message.id, read, engine.clock.now_ms())
                .await
                .map_err(store_error)?;
        if changed && read {
            let payload = json!({
                "event": "mail_read",
                "account_id": l.account.id.as_str(),
                "email_id": l.message.id,
                "folder": first.as_ref().map(|f| f.name.clone()),
                "role": first.as_ref().map(|f| f.role.as_str()),
            });
            let stamp = format!("read@{}", l.message.updated_at);
            record_in(Db::Tx(&mut tx), engine, l, "mail_read", &stamp, payload).await?;
        }
        tx.commit().await.map_err(store_error)
    }

    /// A move: into `name`, out of every other folder (Gmail: the target label added, the
    /// other folder labels removed).
    pub(super) async fn move_to(engine: &Engine, l: &Located, name: &str) -> Result<(), ApiError> {
        let to = folder_named(engine, l, name).await?;
        let from = current(engine, l).await?;
        if from.len() == 1 && from[0].id == to.id {
            return Ok(());
        }
        let remove: Vec<&str> = from
            .iter()
            .filter(|f| f.id != to.id)
            .map(|f| f.provider_id.as_str())
            .collect();
        let mailbox = open(engine, &l.account).await?;
        let now_in = bounded(
            engine,
            mailbox.feed_move(&l.message.provider_id, &to.provider_id, &remove),
        )
        .await?;
        let folders = rows(engine, l, &now_in).await?;
        let left = from.iter().find(|f| f.id != to.id);
        let payload = json!({
            "event": "mail_moved",
            "account_id": l.account.id.as_str(),
            "email_id": l.message.id,
            "provider_id": l.message.provider_id,
            "message_id": l.message.message_id,
            "from_folder": left.map(|f| f.name.clone()),
            "from_role": left.map(|f| f.role.as_str()),
            "folder": to.name,
            "role": to.role.as_str(),
            "folders": folders.iter().map(|f| f.name.clone()).collect::<Vec<_>>(),
        });
        // One event per move request that changed something (a retry finds it there).
        let stamp = format!("{}@{}", to.id, engine.clock.now_ms());
        relink_and_announce(engine, l, &folders, "mail_moved", &stamp, payload).await
    }

    /// Whether the message is in the Drafts folder.
    pub(super) async fn is_draft(engine: &Engine, l: &Located) -> Result<bool, ApiError> {
        Ok(current(engine, l)
            .await?
            .iter()
            .any(|f| f.role == FolderRole::Drafts))
    }

    /// `POST /drafts` on a feed mailbox: filed by the provider (Gmail `drafts.create`), read
    /// back whole and indexed as the sync would index it (not announced: drafts never are).
    pub(super) async fn create_draft(
        engine: &Engine,
        account: &Account,
        mailbox: &Mailbox,
        raw: &[u8],
    ) -> Result<String, ApiError> {
        let id = bounded(engine, mailbox.feed_create_draft(raw)).await?;
        let m = bounded(engine, mailbox.feed_fetch(&id, true))
            .await?
            .ok_or_else(|| {
                ApiError::new(
                    ErrorKind::ProviderError,
                    format!("the draft {id} was created but could not be read back"),
                )
            })?;
        crate::sync::feed::index_one(engine, account, mailbox, m)
            .await
            .map_err(|e| match e {
                crate::sync::imap::SyncError::Store(e) => store_error(e),
                crate::sync::imap::SyncError::Mail(e) => provider_error(e),
                other => ApiError::unexpected(other.to_string()),
            })
    }

    /// To the Trash (Gmail `messages.trash`); a message already there stays (deleting for
    /// good needs the full `mail.google.com` scope, which mailroom does not ask for).
    pub(super) async fn delete(engine: &Engine, l: &Located) -> Result<(), ApiError> {
        let from = current(engine, l).await?;
        if from.iter().any(|f| f.role == FolderRole::Trash) {
            return Ok(());
        }
        let mailbox = open(engine, &l.account).await?;
        let now_in = bounded(engine, mailbox.feed_trash(&l.message.provider_id)).await?;
        let mut folders = rows(engine, l, &now_in).await?;
        if !folders.iter().any(|f| f.role == FolderRole::Trash)
            && now_in.iter().any(|p| p == "TRASH")
        {
            folders.push(folder_row(engine, &l.account, "TRASH", FolderRole::Trash).await?);
        }
        let first = from.first();
        let payload = json!({
            "event": "mail_deleted",
            "account_id": l.account.id.as_str(),
            "email_id": l.message.id,
            "provider_id": l.message.provider_id,
            "message_id": l.message.message_id,
            "folder": first.map(|f| f.name.clone()),
            "role": first.map(|f| f.role.as_str()),
            "trashed_to": "TRASH",
        });
        relink_and_announce(engine, l, &folders, "mail_deleted", "trash", payload).await
    }
}

async fn set_read(engine: &Engine, l: &Located, read: bool) -> Result<(), ApiError> {
    let (first, _) = l.first_place()?;
    let mailbox = open(engine, &l.account).await?;
    // Every copy of the message carries its own flag.
    for (folder, uid) in &l.places {
        bounded(engine, mailbox.set_read(&folder.provider_id, *uid, read)).await?;
    }
    // The row and its event in one transaction, the event only if this update changed the row:
    // a sync pass that saw the same flag change announces it instead, never both.
    let mut tx = engine.store.begin_write().await.map_err(store_error)?;
    let changed = index::set_read_in(Db::Tx(&mut tx), &l.message.id, read, engine.clock.now_ms())
        .await
        .map_err(store_error)?;
    // The sync announces a message becoming read, never unread: the same here.
    if changed && read {
        let payload = json!({
            "event": "mail_read",
            "account_id": l.account.id.as_str(),
            "email_id": l.message.id,
            "folder": first.provider_id,
            "role": first.role.as_str(),
        });
        // Stamped with the row's last change: marking it read again after an unread is a
        // new event, a retry of the same request is not.
        let stamp = format!("read@{}", l.message.updated_at);
        record_in(Db::Tx(&mut tx), engine, l, "mail_read", &stamp, payload).await?;
    }
    tx.commit().await.map_err(store_error)
}

/// The account's folder called `name` (exactly, else ignoring case, else by provider id).
async fn folder_named(engine: &Engine, l: &Located, name: &str) -> Result<FolderRow, ApiError> {
    let all = index::list_folders(
        &engine.store,
        &l.account.workspace_id,
        Some(l.account.id.as_str()),
    )
    .await
    .map_err(store_error)?;
    let found = all
        .iter()
        .find(|f| f.name == name)
        .or_else(|| all.iter().find(|f| f.name.eq_ignore_ascii_case(name)))
        .or_else(|| all.iter().find(|f| f.provider_id == name));
    found.cloned().ok_or_else(|| {
        ApiError::invalid(format!(
            "folders: account {} has no folder named {name:?} (GET /api/v1/folders?account_id={} \
             lists them)",
            l.account.id, l.account.id
        ))
    })
}

/// The link to put in `to` for a message the server filed there under `copied`
/// (`(UIDVALIDITY, UID)`): when the index holds that folder at the same UIDVALIDITY, or has
/// not synced it yet (its first pass fetches everything and keeps the links it finds again).
fn new_link(to: &FolderRow, copied: Option<(u32, u32)>) -> Option<(&str, i64)> {
    let (validity, uid) = copied?;
    to.uidvalidity
        .is_none_or(|v| v == i64::from(validity))
        .then_some((to.id.as_str(), i64::from(uid)))
}

/// The account's folder `name` in the index, entered with `role` when no sync has seen it yet.
async fn folder_row(
    engine: &Engine,
    account: &Account,
    name: &str,
    role: FolderRole,
) -> Result<FolderRow, ApiError> {
    let store = &engine.store;
    let found =
        index::get_folder_by_provider_id(store, &account.workspace_id, account.id.as_str(), name)
            .await
            .map_err(store_error)?;
    match found {
        Some(f) => Ok(f),
        None => index::upsert_folder(
            store,
            NewFolder {
                id: &new_id(),
                workspace_id: &account.workspace_id,
                account_id: account.id.as_str(),
                name,
                role,
                provider_id: name,
                now_ms: engine.clock.now_ms(),
            },
        )
        .await
        .map_err(store_error),
    }
}

async fn move_to(engine: &Engine, l: &Located, name: &str) -> Result<(), ApiError> {
    let to = folder_named(engine, l, name).await?;
    if l.message.folders.iter().any(|f| f.folder_id == to.id) {
        // Already there: nothing to do, nothing to announce.
        return Ok(());
    }
    let (from, uid) = l.first_place()?;
    let mailbox = open(engine, &l.account).await?;
    let copied = bounded(
        engine,
        mailbox.move_message(&from.provider_id, *uid, &to.provider_id),
    )
    .await?;
    let moved = index::move_link(
        &engine.store,
        &l.message.id,
        &from.id,
        new_link(&to, copied),
    )
    .await
    .map_err(store_error)?;
    if moved {
        let payload = json!({
            "event": "mail_moved",
            "account_id": l.account.id.as_str(),
            "email_id": l.message.id,
            "provider_id": l.message.provider_id,
            "message_id": l.message.message_id,
            "from_folder": from.provider_id,
            "from_role": from.role.as_str(),
            "folder": to.provider_id,
            "role": to.role.as_str(),
        });
        // A UID is never reused in its folder: one move of this copy, one event.
        let stamp = format!("{}:{uid}", from.id);
        record(engine, l, "mail_moved", &stamp, payload).await?;
    }
    Ok(())
}

/// `DELETE /emails/{id}`: to the Trash, or expunged where there is none (or it is in the
/// Trash already).
pub async fn delete(engine: &Engine, workspace: &str, r: EmailRef<'_>) -> Result<(), ApiError> {
    let l = locate(engine, workspace, r).await?;
    if open(engine, &l.account).await?.sync_model() == SyncModel::Feed {
        return feed::delete(engine, &l).await;
    }
    // A copy outside the Trash first.
    let (from, uid) = l
        .places
        .iter()
        .find(|(f, _)| f.role != FolderRole::Trash)
        .map_or_else(|| l.first_place(), Ok)?;
    let mailbox = open(engine, &l.account).await?;
    let outcome = bounded(engine, mailbox.trash(&from.provider_id, *uid)).await?;
    let store = &engine.store;
    let (changed, to) = match &outcome {
        Trashed::Moved {
            folder,
            uid: copied,
        } => {
            let trash = folder_row(engine, &l.account, folder, FolderRole::Trash).await?;
            let link = new_link(&trash, *copied);
            let changed = index::move_link(store, &l.message.id, &from.id, link)
                .await
                .map_err(store_error)?;
            (changed, Some(folder.clone()))
        }
        Trashed::Expunged => {
            let changed = index::unlink_message(store, &l.message.id, &from.id)
                .await
                .map_err(store_error)?;
            if changed && l.message.folders.len() == 1 {
                index::delete_message(store, &l.message.id)
                    .await
                    .map_err(store_error)?;
            }
            (changed, None)
        }
    };
    if changed {
        let payload = json!({
            "event": "mail_deleted",
            "account_id": l.account.id.as_str(),
            "email_id": l.message.id,
            "provider_id": l.message.provider_id,
            "message_id": l.message.message_id,
            "folder": from.provider_id,
            "role": from.role.as_str(),
            "trashed_to": to,
        });
        let stamp = format!("{}:{uid}", from.id);
        record(engine, &l, "mail_deleted", &stamp, payload).await?;
    }
    Ok(())
}

/// `GET /emails/{id}/attachments/{attachment_id}`: the bytes, fetched live from the mailbox
/// and streamed (the first piece is fetched before this answers, so an unknown message or part
/// is a clean error).
pub async fn attachment(
    engine: &Engine,
    workspace: &str,
    r: EmailRef<'_>,
    attachment_id: &str,
) -> Result<AttachmentStream, ApiError> {
    let l = locate(engine, workspace, r).await?;
    let meta = l
        .message
        .attachments
        .iter()
        .find(|a| a.id == attachment_id)
        .ok_or_else(|| {
            ApiError::new(
                ErrorKind::ResourceNotFound,
                format!(
                    "attachment {attachment_id} not found in email {}",
                    l.message.id
                ),
            )
        })?;
    let part = meta.part.as_deref().unwrap_or(&meta.id);
    let mailbox = open(engine, &l.account).await?;
    let stream = match mailbox.sync_model() {
        SyncModel::Folders => {
            let (folder, uid) = l.first_place()?;
            bounded(engine, mailbox.open_part(&folder.provider_id, *uid, part)).await?
        }
        // A feed mailbox finds a message by its provider id, in whatever folders it is.
        SyncModel::Feed => {
            bounded(engine, mailbox.feed_open_part(&l.message.provider_id, part)).await?
        }
    };
    let deadline = engine.outbox.config().send_timeout;
    Ok(AttachmentStream {
        name: meta.name.clone(),
        mime: meta.mime.clone(),
        body: piece_deadline(stream, deadline, l.message.id.clone()),
    })
}

/// Each piece of `stream` within `deadline` (a mailbox that stops answering half-way through
/// does not hold the download open for ever); errors logged and turned into I/O errors for
/// the HTTP body, after which the stream ends.
fn piece_deadline(
    stream: PartStream,
    deadline: Duration,
    email_id: String,
) -> BoxStream<'static, Result<Vec<u8>, std::io::Error>> {
    futures_util::stream::unfold(Some(stream), move |state| {
        let email_id = email_id.clone();
        async move {
            let mut stream = state?;
            let failed = match tokio::time::timeout(deadline, stream.next()).await {
                Ok(None) => return None,
                Ok(Some(Ok(bytes))) => return Some((Ok(bytes), Some(stream))),
                Ok(Some(Err(e))) => e.to_string(),
                Err(_) => format!("the mailbox did not answer within {}s", deadline.as_secs()),
            };
            tracing::warn!(email_id, error = %failed, "attachment download cut short");
            Some((Err(std::io::Error::other(failed)), None))
        }
    })
    .boxed()
}

/// `POST /drafts`: the message built as a send would build it (Bcc kept in a header, as mail
/// clients keep it in drafts), filed in the Drafts folder and indexed; answers its id.
pub async fn create_draft(
    engine: &Engine,
    workspace: &str,
    input: SendInput,
    message_max: usize,
) -> Result<String, ApiError> {
    let bcc: Vec<String> = input.bcc.iter().map(|a| a.identifier.clone()).collect();
    let composed = crate::send::compose(engine, workspace, input, message_max).await?;
    let account = composed.account;
    let raw = mailroom_mime::insert_bcc(&composed.built.bytes, &bcc)
        .map_err(crate::send::mime_error)?
        .into_owned();
    let mailbox = open(engine, &account).await?;
    if mailbox.sync_model() == SyncModel::Feed {
        return feed::create_draft(engine, &account, &mailbox, &raw).await;
    }
    let appended = bounded(engine, mailbox.append_draft(&raw)).await?;
    let Some((validity, uid)) = appended.uid else {
        return Err(ApiError::new(
            ErrorKind::ProviderError,
            format!(
                "the draft was filed in {} but the server did not say under which UID; the \
                 next sync indexes it",
                appended.folder
            ),
        ));
    };
    let folder = folder_row(engine, &account, &appended.folder, FolderRole::Drafts).await?;
    let fetched = FetchedMessage {
        uid,
        flags: MessageFlags {
            seen: true,
            draft: true,
            ..Default::default()
        },
        internal_date_ms: None,
        size: raw.len() as u32,
        parsed: mailroom_mime::parse_mail(&raw),
    };
    crate::sync::imap::index_appended(engine, &mailbox, &account, &folder, validity, &fetched)
        .await
        .map_err(|e| match e {
            crate::sync::imap::SyncError::Store(e) => store_error(e),
            other => ApiError::unexpected(other.to_string()),
        })
}

/// Completes a send from the draft `draft_id` of `account`: every field the request left
/// empty (to, cc, bcc, subject, body, attachments, reply_to) is taken from the draft.
pub async fn complete_from_draft(
    engine: &Engine,
    account: &Account,
    draft_id: &str,
    input: &mut SendInput,
) -> Result<DraftPlace, ApiError> {
    let not_found = || {
        ApiError::new(
            ErrorKind::ResourceNotFound,
            format!("draft {draft_id} not found in account {}", account.id),
        )
    };
    let l = locate(
        engine,
        &account.workspace_id,
        EmailRef {
            id: draft_id,
            account_id: Some(account.id.as_str()),
        },
    )
    .await
    .map_err(|e| {
        if e.kind == ErrorKind::ResourceNotFound {
            not_found()
        } else {
            e
        }
    })?;
    if l.message.id != draft_id {
        return Err(not_found());
    }
    let mailbox = open(engine, account).await?;
    let (place, raw) = if mailbox.sync_model() == SyncModel::Feed {
        if !feed::is_draft(engine, &l).await? {
            return Err(not_found());
        }
        let raw = bounded(engine, mailbox.feed_fetch_raw(&l.message.provider_id))
            .await?
            .ok_or_else(not_found)?;
        let place = DraftPlace::Feed {
            message_id: l.message.id.clone(),
            provider_id: l.message.provider_id.clone(),
        };
        (place, raw)
    } else {
        let (folder, uid) = l
            .places
            .iter()
            .find(|(f, _)| f.role == FolderRole::Drafts)
            .ok_or_else(not_found)?;
        let raw = bounded(engine, mailbox.fetch_raw(&folder.provider_id, *uid)).await?;
        let place = DraftPlace::Folder {
            message_id: l.message.id.clone(),
            folder: folder.clone(),
            uid: *uid,
        };
        (place, raw)
    };
    let parsed = mailroom_mime::parse_mail(&raw).ok_or_else(|| {
        ApiError::new(
            ErrorKind::UnprocessableEntity,
            format!("draft {draft_id} is not a readable message"),
        )
    })?;
    if input.to.is_empty() {
        input.to = parsed.to.clone();
    }
    if input.cc.is_empty() {
        input.cc = parsed.cc.clone();
    }
    if input.bcc.is_empty() {
        input.bcc = parsed.bcc.clone();
    }
    if input.subject.is_empty() {
        input.subject = parsed.subject.clone().unwrap_or_default();
    }
    if input.body.is_empty() {
        input.body = parsed
            .html
            .clone()
            .or_else(|| parsed.text.clone())
            .unwrap_or_default();
    }
    if input.reply_to.is_none() {
        input.reply_to = parsed.in_reply_to.clone();
    }
    if input.attachments.is_empty() {
        for a in &parsed.attachments {
            if let Some((mime, name, content)) = mailroom_mime::attachment_bytes(&raw, &a.part_id) {
                input.attachments.push(OutgoingAttachment {
                    filename: name,
                    content_type: Some(mime),
                    content,
                    cid: a.cid.clone(),
                });
            }
        }
    }
    Ok(place)
}

/// Removes a sent draft from the Drafts folder and the index.
pub async fn remove_draft(
    engine: &Engine,
    account: &Account,
    place: &DraftPlace,
) -> Result<(), ApiError> {
    let mailbox = open(engine, account).await?;
    let store = &engine.store;
    let (message_id, folder) = match place {
        DraftPlace::Folder {
            message_id,
            folder,
            uid,
        } => {
            bounded(engine, mailbox.expunge(&folder.provider_id, *uid)).await?;
            (message_id, folder)
        }
        // A discarded Gmail draft is gone from every label at once: out of the index, so the
        // history's `messagesDeleted` finds nothing left to announce.
        DraftPlace::Feed {
            message_id,
            provider_id,
        } => {
            bounded(engine, mailbox.feed_discard_draft(provider_id)).await?;
            return index::delete_message(store, message_id)
                .await
                .map(|_| ())
                .map_err(store_error);
        }
    };
    index::unlink_message(store, message_id, &folder.id)
        .await
        .map_err(store_error)?;
    let left = index::get_message(store, &account.workspace_id, message_id)
        .await
        .map_err(store_error)?;
    if left.is_some_and(|m| m.folders.is_empty()) {
        index::delete_message(store, message_id)
            .await
            .map_err(store_error)?;
    }
    Ok(())
}
