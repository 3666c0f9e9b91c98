//! The mail index: each account's folders with their sync state, its messages (headers,
//! flags, addresses, compressed bodies, attachment metadata) and which folders each message
//! is in (many-to-many, so a Gmail label or an IMAP copy is one more link, not one more
//! message). Lists are served from here; the sync keeps it current.
//!
//! Functions taking a workspace answer only that workspace's rows (the API's view); the
//! others take ids the engine already resolved. Full-text search: [`crate::search`]; the read API's pages: [`crate::index_query`].

use std::collections::HashMap;

use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlx::Row;

use crate::blob::{pack, pack_str, unpack_string};
use crate::error::{Result, StoreError};
use crate::search;
use crate::tx::{Db, WriteTx, with_conn};
use crate::{Backend, Store, with_pool};
use mailroom_core::AccountId;
use mailroom_core::cursor::Position;
use mailroom_core::email::Attendee;
use mailroom_core::mail::{AttachmentMeta, FolderRole, FolderSyncStatus, Header, MailOrigin};

fn json<T: Serialize + ?Sized>(v: &T) -> String {
    serde_json::to_string(v).expect("index values serialize")
}

fn from_json<T: DeserializeOwned>(s: &str, what: &str) -> Result<T> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

// ---------------------------------------------------------------------------------------
// Folders

#[derive(Debug, Clone, PartialEq)]
pub struct FolderRow {
    pub id: String,
    pub workspace_id: String,
    pub account_id: AccountId,
    pub name: String,
    pub role: FolderRole,
    /// The provider's name for it: IMAP mailbox name, Gmail label id, Graph folder id.
    pub provider_id: String,
    pub uidvalidity: Option<i64>,
    pub uidnext: Option<i64>,
    pub highest_modseq: Option<i64>,
    /// Gmail `historyId` or Graph `deltaLink`.
    pub cursor: Option<String>,
    /// The provider's count of messages in it.
    pub nb_mails: i64,
    pub sync_status: FolderSyncStatus,
    pub last_synced_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

pub struct NewFolder<'a> {
    /// Used when the folder is new; an existing folder keeps its id.
    pub id: &'a str,
    pub workspace_id: &'a str,
    pub account_id: &'a str,
    pub name: &'a str,
    pub role: FolderRole,
    pub provider_id: &'a str,
    pub now_ms: i64,
}

/// Where a folder's sync stands, written as a whole by [`set_folder_sync_state`].
#[derive(Debug, Clone, PartialEq)]
pub struct FolderSyncState<'a> {
    pub uidvalidity: Option<i64>,
    pub uidnext: Option<i64>,
    pub highest_modseq: Option<i64>,
    pub cursor: Option<&'a str>,
    pub nb_mails: i64,
    pub status: FolderSyncStatus,
    pub last_synced_at: Option<i64>,
}

pub(crate) const FOLDER_COLUMNS: &str = "id, workspace_id, account_id, name, role, provider_id, uidvalidity, uidnext, \
     highest_modseq, cursor, nb_mails, sync_status, last_synced_at, created_at, updated_at";

pub(crate) fn decode_folder<R: Row>(r: &R) -> Result<FolderRow>
where
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> Option<String>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> Option<i64>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    usize: sqlx::ColumnIndex<R>,
{
    let role: String = r.try_get(4)?;
    let status: String = r.try_get(11)?;
    Ok(FolderRow {
        id: r.try_get(0)?,
        workspace_id: r.try_get(1)?,
        account_id: AccountId::from(r.try_get::<String, _>(2)?),
        name: r.try_get(3)?,
        role: FolderRole::parse(&role)
            .ok_or_else(|| StoreError::Corrupt(format!("folder role {role}")))?,
        provider_id: r.try_get(5)?,
        uidvalidity: r.try_get(6)?,
        uidnext: r.try_get(7)?,
        highest_modseq: r.try_get(8)?,
        cursor: r.try_get(9)?,
        nb_mails: r.try_get(10)?,
        sync_status: FolderSyncStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("folder sync status {status}")))?,
        last_synced_at: r.try_get(12)?,
        created_at: r.try_get(13)?,
        updated_at: r.try_get(14)?,
    })
}

/// Inserts the folder, or updates the name and role of the account's folder with the same
/// provider id; answers the stored row (with its sync state).
pub async fn upsert_folder(store: &Store, f: NewFolder<'_>) -> Result<FolderRow> {
    let sql = sqlx::AssertSqlSafe(format!(
        "INSERT INTO folders (id, workspace_id, account_id, name, role, provider_id, nb_mails, sync_status, \
         created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, 0, 'never', $7, $7) \
         ON CONFLICT (account_id, provider_id) DO UPDATE SET name = excluded.name, role = excluded.role, \
         updated_at = excluded.updated_at \
         RETURNING {FOLDER_COLUMNS}"
    ));
    with_pool!(store, pool => {
        let row = sqlx::query(sql)
            .bind(f.id)
            .bind(f.workspace_id)
            .bind(f.account_id)
            .bind(f.name)
            .bind(f.role.as_str())
            .bind(f.provider_id)
            .bind(f.now_ms)
            .fetch_one(pool)
            .await?;
        decode_folder(&row)
    })
}

/// The workspace's folders, or one account's, by account then name.
pub async fn list_folders(
    store: &Store,
    workspace_id: &str,
    account_id: Option<&str>,
) -> Result<Vec<FolderRow>> {
    let sql = sqlx::AssertSqlSafe(format!(
        "SELECT {FOLDER_COLUMNS} FROM folders WHERE workspace_id = $1 \
         AND ($2 IS NULL OR account_id = $2) ORDER BY account_id, name, id"
    ));
    with_pool!(store, pool => {
        sqlx::query(sql).bind(workspace_id).bind(account_id)
            .fetch_all(pool).await?.iter().map(decode_folder).collect()
    })
}

pub async fn get_folder(store: &Store, workspace_id: &str, id: &str) -> Result<Option<FolderRow>> {
    let sql = sqlx::AssertSqlSafe(format!(
        "SELECT {FOLDER_COLUMNS} FROM folders WHERE workspace_id = $1 AND id = $2"
    ));
    with_pool!(store, pool => {
        sqlx::query(sql).bind(workspace_id).bind(id)
            .fetch_optional(pool).await?.as_ref().map(decode_folder).transpose()
    })
}

pub async fn get_folder_by_provider_id(
    store: &Store,
    workspace_id: &str,
    account_id: &str,
    provider_id: &str,
) -> Result<Option<FolderRow>> {
    let sql = sqlx::AssertSqlSafe(format!(
        "SELECT {FOLDER_COLUMNS} FROM folders WHERE workspace_id = $1 AND account_id = $2 AND provider_id = $3"
    ));
    with_pool!(store, pool => {
        sqlx::query(sql).bind(workspace_id).bind(account_id).bind(provider_id)
            .fetch_optional(pool).await?.as_ref().map(decode_folder).transpose()
    })
}

/// Records where the folder's sync stands; false when there is no such folder.
pub async fn set_folder_sync_state(
    store: &Store,
    folder_id: &str,
    s: &FolderSyncState<'_>,
    now_ms: i64,
) -> Result<bool> {
    let n = with_pool!(store, pool => {
        sqlx::query(
            "UPDATE folders SET uidvalidity = $1, uidnext = $2, highest_modseq = $3, cursor = $4, nb_mails = $5, \
             sync_status = $6, last_synced_at = $7, updated_at = $8 WHERE id = $9",
        )
        .bind(s.uidvalidity)
        .bind(s.uidnext)
        .bind(s.highest_modseq)
        .bind(s.cursor)
        .bind(s.nb_mails)
        .bind(s.status.as_str())
        .bind(s.last_synced_at)
        .bind(now_ms)
        .bind(folder_id)
        .execute(pool)
        .await?
        .rows_affected()
    });
    Ok(n == 1)
}

/// How many indexed messages are in the folder.
pub async fn count_in_folder(store: &Store, folder_id: &str) -> Result<i64> {
    Ok(with_pool!(store, pool => {
        sqlx::query("SELECT COUNT(*) FROM message_folders WHERE folder = $1")
            .bind(folder_id).fetch_one(pool).await?.try_get::<i64, _>(0)?
    }))
}

/// Every folder of the account with the number of indexed messages in it, by folder id.
pub async fn folder_counts(store: &Store, account_id: &str) -> Result<Vec<(String, i64)>> {
    Ok(with_pool!(store, pool => {
        sqlx::query(
            "SELECT f.id, COUNT(mf.message) FROM folders f LEFT JOIN message_folders mf ON mf.folder = f.id \
             WHERE f.account_id = $1 GROUP BY f.id ORDER BY f.id",
        )
        .bind(account_id)
        .fetch_all(pool)
        .await?
        .iter()
        .map(|r| -> Result<(String, i64)> { Ok((r.try_get(0)?, r.try_get(1)?)) })
        .collect::<Result<Vec<_>>>()?
    }))
}

// ---------------------------------------------------------------------------------------
// Messages

/// A message's place in one folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderLink {
    pub folder_id: String,
    /// Its IMAP UID in that folder (none for API providers).
    pub uid: Option<i64>,
}

/// The bodies and headers of a message, decompressed; read by [`get_message`], never by
/// [`list_messages`].
#[derive(Debug, Clone, PartialEq)]
pub struct MessageContent {
    pub body_html: Option<String>,
    pub body_text: Option<String>,
    pub headers: Option<Vec<Header>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MessageRow {
    pub id: String,
    pub workspace_id: String,
    pub account_id: AccountId,
    pub provider_id: String,
    /// The RFC 5322 Message-ID, bracketed.
    pub message_id: Option<String>,
    pub in_reply_to: Option<String>,
    pub references: Vec<String>,
    pub thread_id: String,
    pub subject: String,
    pub from: Option<Attendee>,
    pub to: Vec<Attendee>,
    pub cc: Vec<Attendee>,
    pub bcc: Vec<Attendee>,
    pub reply_to: Vec<Attendee>,
    pub date: i64,
    pub read: bool,
    pub size: i64,
    pub has_attachments: bool,
    pub attachments: Vec<AttachmentMeta>,
    pub origin: MailOrigin,
    pub tracking_id: Option<String>,
    /// The folders it is in, by folder id.
    pub folders: Vec<FolderLink>,
    /// Only on a single read.
    pub content: Option<MessageContent>,
    pub created_at: i64,
    pub updated_at: i64,
}

pub struct NewMessage<'a> {
    /// Used when the message is new; a known message keeps its id.
    pub id: &'a str,
    pub workspace_id: &'a str,
    pub account_id: &'a str,
    /// Unique within the account.
    pub provider_id: &'a str,
    pub message_id: Option<&'a str>,
    pub in_reply_to: Option<&'a str>,
    pub references: &'a [String],
    pub thread_id: &'a str,
    pub subject: &'a str,
    pub from: Option<&'a Attendee>,
    pub to: &'a [Attendee],
    pub cc: &'a [Attendee],
    pub bcc: &'a [Attendee],
    pub reply_to: &'a [Attendee],
    pub date: i64,
    pub read: bool,
    pub size: i64,
    pub has_attachments: bool,
    pub attachments: &'a [AttachmentMeta],
    pub body_html: Option<&'a str>,
    pub body_text: Option<&'a str>,
    pub headers: Option<&'a [Header]>,
    pub origin: MailOrigin,
    pub tracking_id: Option<&'a str>,
    /// The folder it was seen in (folder id, IMAP UID there), linked in the same transaction.
    pub folder: Option<(&'a str, Option<i64>)>,
    pub now_ms: i64,
}

/// What [`upsert_message`] did: the events the sync announces follow from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upserted {
    /// The message's id (the existing one when it was known).
    pub id: String,
    /// The message was new to the index.
    pub created: bool,
    /// It was not in the given folder before.
    pub linked: bool,
    /// It was known and its read flag changed.
    pub read_changed: bool,
}

pub(crate) const MESSAGE_COLUMNS: &str = "m.id, m.workspace_id, m.account_id, m.provider_id, m.message_id, m.in_reply_to, \
     m.references_, m.thread_id, m.subject, m.from_addr, m.to_addrs, m.cc_addrs, m.bcc_addrs, m.reply_to_addrs, \
     m.date, m.read, m.size, m.has_attachments, m.attachments, m.origin, m.tracking_id, m.created_at, m.updated_at";
const CONTENT_COLUMNS: &str = "m.body_html, m.body_text, m.headers";

pub(crate) fn decode_message<R: Row>(r: &R, with_content: bool) -> Result<MessageRow>
where
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> Option<String>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> bool: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> Option<Vec<u8>>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    usize: sqlx::ColumnIndex<R>,
{
    let attendees = |i: usize| -> Result<Vec<Attendee>> {
        from_json(&r.try_get::<String, _>(i)?, "message attendees")
    };
    let from: Option<String> = r.try_get(9)?;
    let origin: String = r.try_get(19)?;
    let content = if with_content {
        let text = |i: usize| -> Result<Option<String>> {
            r.try_get::<Option<Vec<u8>>, _>(i)?
                .map(|b| unpack_string(&b))
                .transpose()
        };
        let headers = match r.try_get::<Option<Vec<u8>>, _>(25)? {
            Some(b) => Some(from_json(&unpack_string(&b)?, "message headers")?),
            None => None,
        };
        Some(MessageContent {
            body_html: text(23)?,
            body_text: text(24)?,
            headers,
        })
    } else {
        None
    };
    Ok(MessageRow {
        id: r.try_get(0)?,
        workspace_id: r.try_get(1)?,
        account_id: AccountId::from(r.try_get::<String, _>(2)?),
        provider_id: r.try_get(3)?,
        message_id: r.try_get(4)?,
        in_reply_to: r.try_get(5)?,
        references: from_json(&r.try_get::<String, _>(6)?, "message references")?,
        thread_id: r.try_get(7)?,
        subject: r.try_get(8)?,
        from: from.map(|s| from_json(&s, "message sender")).transpose()?,
        to: attendees(10)?,
        cc: attendees(11)?,
        bcc: attendees(12)?,
        reply_to: attendees(13)?,
        date: r.try_get(14)?,
        read: r.try_get(15)?,
        size: r.try_get(16)?,
        has_attachments: r.try_get(17)?,
        attachments: from_json(&r.try_get::<String, _>(18)?, "message attachments")?,
        origin: MailOrigin::parse(&origin)
            .ok_or_else(|| StoreError::Corrupt(format!("message origin {origin}")))?,
        tracking_id: r.try_get(20)?,
        folders: vec![],
        content,
        created_at: r.try_get(21)?,
        updated_at: r.try_get(22)?,
    })
}

/// The addresses and display names of a message, as one text for full-text search.
fn address_text(from: Option<&Attendee>, lists: &[&[Attendee]]) -> String {
    let mut out = String::new();
    for a in from.into_iter().chain(lists.iter().flat_map(|l| l.iter())) {
        out.push_str(&a.identifier);
        out.push(' ');
        if let Some(name) = &a.display_name {
            out.push_str(name);
            out.push(' ');
        }
    }
    out
}

/// Indexes a message seen at the provider, in ONE transaction: inserts it when the account
/// has no message with its provider id; otherwise updates its flags (the rest of a message
/// does not change). Either way it is linked to `m.folder` (the UID updated if it moved).
pub async fn upsert_message(store: &Store, m: NewMessage<'_>) -> Result<Upserted> {
    let mut tx = store.begin_write().await?;
    let done = upsert_message_in(&mut tx, m).await?;
    tx.commit().await?;
    Ok(done)
}

/// [`upsert_message`] inside the caller's transaction (a sync pass writes a fetched batch in
/// one).
pub async fn upsert_message_in(tx: &mut WriteTx, m: NewMessage<'_>) -> Result<Upserted> {
    let backend = tx.backend();
    let references = json(m.references);
    let from = m.from.map(json);
    let (to, cc, bcc, reply_to) = (json(m.to), json(m.cc), json(m.bcc), json(m.reply_to));
    let attachments = json(m.attachments);
    let body_html = m.body_html.map(pack_str);
    let body_text = m.body_text.map(pack_str);
    let headers = m.headers.map(|h| pack(json(h).as_bytes()));
    // What full-text search sees of it (written only when the message is new: the rest of a
    // message never changes).
    let search_steps = search::insert_statements(backend);
    let search_subject = search::document(m.subject);
    let search_body = search::body_document(m.body_text.unwrap_or(""));
    let search_addresses =
        search::document(&address_text(m.from, &[m.to, m.cc, m.bcc, m.reply_to]));
    with_conn!(Db::Tx(tx), c => {
        // Inserted first and looked up only when it was already there: a new message (nearly
        // every one in a first sync) costs no lookup.
        let n = sqlx::query(
            "INSERT INTO messages (id, workspace_id, account_id, provider_id, message_id, in_reply_to, \
             references_, thread_id, subject, from_addr, to_addrs, cc_addrs, bcc_addrs, reply_to_addrs, date, \
             read, size, has_attachments, attachments, body_html, body_text, headers, origin, tracking_id, \
             created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, \
             $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $25) \
             ON CONFLICT (account_id, provider_id) DO NOTHING",
        )
        .bind(m.id)
        .bind(m.workspace_id)
        .bind(m.account_id)
        .bind(m.provider_id)
        .bind(m.message_id)
        .bind(m.in_reply_to)
        .bind(&references)
        .bind(m.thread_id)
        .bind(m.subject)
        .bind(from.as_deref())
        .bind(&to)
        .bind(&cc)
        .bind(&bcc)
        .bind(&reply_to)
        .bind(m.date)
        .bind(m.read)
        .bind(m.size)
        .bind(m.has_attachments)
        .bind(&attachments)
        .bind(body_html.as_deref())
        .bind(body_text.as_deref())
        .bind(headers.as_deref())
        .bind(m.origin.as_str())
        .bind(m.tracking_id)
        .bind(m.now_ms)
        .execute(&mut *c)
        .await?
        .rows_affected();
        let created = n == 1;
        if created {
            for (sql, params) in search_steps {
                let texts = [m.id, search_subject.as_str(), search_body.as_str(), search_addresses.as_str()];
                let mut q = sqlx::query(*sql);
                for t in &texts[..*params] {
                    q = q.bind(*t);
                }
                q.execute(&mut *c).await?;
            }
        }
        let known: Option<(String, bool)> = if created {
            None
        } else {
            sqlx::query("SELECT id, read FROM messages WHERE account_id = $1 AND provider_id = $2")
                .bind(m.account_id)
                .bind(m.provider_id)
                .fetch_optional(&mut *c)
                .await?
                .map(|r| Ok::<_, sqlx::Error>((r.try_get(0)?, r.try_get(1)?)))
                .transpose()?
        };
        let (id, read_changed) = match known {
            Some((id, read)) => {
                let changed = read != m.read;
                if changed {
                    sqlx::query("UPDATE messages SET read = $1, updated_at = $2 WHERE id = $3")
                        .bind(m.read)
                        .bind(m.now_ms)
                        .bind(&id)
                        .execute(&mut *c)
                        .await?;
                }
                (id, changed)
            }
            None if created => (m.id.to_owned(), false),
            None => return Err(StoreError::Corrupt(format!(
                "message {} neither inserted nor found", m.provider_id
            ))),
        };
        let mut linked = false;
        if let Some((folder, uid)) = m.folder {
            // A message inserted just now is in no folder yet.
            let before: Option<Option<i64>> = if created {
                None
            } else {
                sqlx::query("SELECT uid FROM message_folders WHERE message = $1 AND folder = $2")
                    .bind(&id)
                    .bind(folder)
                    .fetch_optional(&mut *c)
                    .await?
                    .map(|r| r.try_get(0))
                    .transpose()?
            };
            match before {
                None => {
                    sqlx::query(
                        "INSERT INTO message_folders (message, folder, uid) VALUES ($1, $2, $3) \
                         ON CONFLICT (message, folder) DO UPDATE SET uid = excluded.uid",
                    )
                    .bind(&id)
                    .bind(folder)
                    .bind(uid)
                    .execute(&mut *c)
                    .await?;
                    linked = true;
                }
                Some(old) if old != uid => {
                    sqlx::query("UPDATE message_folders SET uid = $1 WHERE message = $2 AND folder = $3")
                        .bind(uid)
                        .bind(&id)
                        .bind(folder)
                        .execute(&mut *c)
                        .await?;
                }
                Some(_) => {}
            }
        }
        Ok(Upserted { id, created, linked, read_changed })
    })
}

/// Brings the planner's statistics on the index up to date. PostgreSQL plans with none on a
/// table that was empty when last analyzed, and autovacuum may not analyze it for minutes: in
/// a first sync that made every Message-ID lookup walk the account's page index (6 ms a
/// lookup at 5,000 messages, 0.03 ms after ANALYZE). SQLite plans without statistics here.
pub async fn refresh_statistics(store: &Store) -> Result<()> {
    if let Store::Postgres(pool) = store {
        sqlx::query("ANALYZE messages, message_folders, message_search")
            .execute(pool)
            .await?;
    }
    Ok(())
}

/// The folder links of the given messages.
async fn links_of(db: Db<'_>, ids: &[&str]) -> Result<Vec<(String, FolderLink)>> {
    if ids.is_empty() {
        return Ok(vec![]);
    }
    let marks: Vec<String> = (1..=ids.len()).map(|i| format!("${i}")).collect();
    let sql = sqlx::AssertSqlSafe(format!(
        "SELECT message, folder, uid FROM message_folders WHERE message IN ({}) ORDER BY message, folder",
        marks.join(", ")
    ));
    with_conn!(db, c => {
        let mut q = sqlx::query(sql);
        for id in ids {
            q = q.bind(*id);
        }
        q.fetch_all(&mut *c)
            .await?
            .iter()
            .map(|r| -> Result<(String, FolderLink)> {
                Ok((
                    r.try_get(0)?,
                    FolderLink { folder_id: r.try_get(1)?, uid: r.try_get(2)? },
                ))
            })
            .collect()
    })
}

async fn with_links(db: Db<'_>, mut rows: Vec<MessageRow>) -> Result<Vec<MessageRow>> {
    let ids: Vec<&str> = rows.iter().map(|m| m.id.as_str()).collect();
    let links = links_of(db, &ids).await?;
    for (message, link) in links {
        if let Some(row) = rows.iter_mut().find(|m| m.id == message) {
            row.folders.push(link);
        }
    }
    Ok(rows)
}

/// The message with its bodies and headers decompressed, if it belongs to the workspace.
pub async fn get_message(
    store: &Store,
    workspace_id: &str,
    id: &str,
) -> Result<Option<MessageRow>> {
    let sql = sqlx::AssertSqlSafe(format!(
        "SELECT {MESSAGE_COLUMNS}, {CONTENT_COLUMNS} FROM messages m WHERE m.workspace_id = $1 AND m.id = $2"
    ));
    let row = with_pool!(store, pool => {
        sqlx::query(sql).bind(workspace_id).bind(id)
            .fetch_optional(pool).await?.as_ref().map(|r| decode_message(r, true)).transpose()?
    });
    Ok(with_links(Db::Pool(store), row.into_iter().collect())
        .await?
        .pop())
}

/// A message's HTML and text bodies, and the id of the message it replies to (found in the
/// index of its account by Message-ID, as the read API's `in_reply_to.id`).
#[derive(Debug, Clone, Default)]
pub struct Bodies {
    pub html: Option<String>,
    pub text: Option<String>,
    pub parent_id: Option<String>,
}

/// The bodies of the given messages of the workspace, by id, in one read (the webhook
/// dispatcher completes new-mail events with them); messages not indexed are absent.
pub async fn bodies(
    store: &Store,
    workspace_id: &str,
    ids: &[&str],
) -> Result<HashMap<String, Bodies>> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let marks = (1..=ids.len())
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ");
    // The workspace is checked here, not in SQL: with it there, SQLite walks the workspace's
    // messages by its index instead of looking the ids up.
    let sql = sqlx::AssertSqlSafe(format!(
        "SELECT m.id, m.body_html, m.body_text, m.workspace_id, \
         (SELECT p.id FROM messages p WHERE p.account_id = m.account_id AND p.message_id = m.in_reply_to \
          AND p.id <> m.id LIMIT 1) \
         FROM messages m WHERE m.id IN ({marks})"
    ));
    let rows: Vec<(String, Bodies, String)> = with_pool!(store, pool => {
        let mut q = sqlx::query(sql);
        for id in ids {
            q = q.bind(*id);
        }
        q.fetch_all(pool)
            .await?
            .iter()
            .map(|r| {
                let text = |i: usize| -> Result<Option<String>> {
                    r.try_get::<Option<Vec<u8>>, _>(i)?
                        .map(|b| unpack_string(&b))
                        .transpose()
                };
                let bodies = Bodies { html: text(1)?, text: text(2)?, parent_id: r.try_get(4)? };
                Ok((r.try_get::<String, _>(0)?, bodies, r.try_get::<String, _>(3)?))
            })
            .collect::<Result<Vec<_>>>()?
    });
    Ok(rows
        .into_iter()
        .filter(|(_, _, w)| w == workspace_id)
        .map(|(id, bodies, _)| (id, bodies))
        .collect())
}

/// The message the account's provider knows as `provider_id`, with its content.
pub async fn get_message_by_provider_id(
    store: &Store,
    workspace_id: &str,
    account_id: &str,
    provider_id: &str,
) -> Result<Option<MessageRow>> {
    let sql = sqlx::AssertSqlSafe(format!(
        "SELECT {MESSAGE_COLUMNS}, {CONTENT_COLUMNS} FROM messages m \
         WHERE m.workspace_id = $1 AND m.account_id = $2 AND m.provider_id = $3"
    ));
    let row = with_pool!(store, pool => {
        sqlx::query(sql).bind(workspace_id).bind(account_id).bind(provider_id)
            .fetch_optional(pool).await?.as_ref().map(|r| decode_message(r, true)).transpose()?
    });
    Ok(with_links(Db::Pool(store), row.into_iter().collect())
        .await?
        .pop())
}

/// The filters of `GET /emails`; each one given narrows the list.
#[derive(Debug, Clone, Default)]
pub struct MessageFilter<'a> {
    pub account_id: Option<&'a str>,
    /// Our folder id (the API resolves the provider id it is given).
    pub folder_id: Option<&'a str>,
    /// In a folder with this role.
    pub role: Option<FolderRole>,
    /// The sender's address.
    pub from: Option<&'a str>,
    /// An address among the `To` recipients.
    pub to: Option<&'a str>,
    /// Any of these addresses as sender or among To, Cc and Bcc.
    pub any_email: &'a [&'a str],
    /// Strictly before this date (Unix ms).
    pub before: Option<i64>,
    /// Strictly after this date (Unix ms).
    pub after: Option<i64>,
    pub thread_id: Option<&'a str>,
    /// The RFC Message-ID, bracketed.
    pub message_id: Option<&'a str>,
    /// In a folder with this provider id, in whichever account (the API resolves it to
    /// `folder_id` when the account is given).
    pub folder_provider_id: Option<&'a str>,
    /// In none of the folders with these provider ids.
    pub exclude_folders: &'a [&'a str],
    /// Full-text search: every one of these words (from [`crate::search::words`]) in the
    /// subject, the text body or the addresses. Empty: no search.
    pub search: &'a [String],
}

pub(crate) enum Arg<'a> {
    Text(&'a str),
    Owned(String),
    Int(i64),
}

/// Adds a bound argument; answers its placeholder.
pub(crate) fn push<'a>(args: &mut Vec<Arg<'a>>, a: Arg<'a>) -> String {
    args.push(a);
    format!("${}", args.len())
}

/// A LIKE pattern matching a stored attendee JSON (one, or a list) that holds `address` as
/// its `identifier`. Address filters match the JSON text for now (compared lowercased on
/// both sides); a normalised address table can replace this when it shows in profiles.
fn address_pattern(address: &str) -> String {
    let quoted = json(address.trim());
    let mut escaped = String::with_capacity(quoted.len() + 8);
    for c in quoted.chars() {
        if matches!(c, '\\' | '%' | '_') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    format!("%\"identifier\":{escaped}%")
}

/// The WHERE conditions of `filter` (and of the page start `after`) on `messages m`, their
/// arguments pushed to `args`.
pub(crate) fn conditions<'a>(
    backend: Backend,
    workspace_id: &'a str,
    filter: &MessageFilter<'a>,
    after: Option<&'a Position>,
    args: &mut Vec<Arg<'a>>,
) -> Vec<String> {
    let mut conds: Vec<String> = vec![format!(
        "m.workspace_id = {}",
        push(args, Arg::Text(workspace_id))
    )];
    if let Some(a) = filter.account_id {
        conds.push(format!("m.account_id = {}", push(args, Arg::Text(a))));
    }
    if let Some(f) = filter.folder_id {
        conds.push(format!(
            "EXISTS (SELECT 1 FROM message_folders mf WHERE mf.message = m.id AND mf.folder = {})",
            push(args, Arg::Text(f))
        ));
    }
    if let Some(p) = filter.folder_provider_id {
        conds.push(format!(
            "EXISTS (SELECT 1 FROM message_folders mf JOIN folders f ON f.id = mf.folder \
             WHERE mf.message = m.id AND f.provider_id = {})",
            push(args, Arg::Text(p))
        ));
    }
    if !filter.exclude_folders.is_empty() {
        let marks: Vec<String> = filter
            .exclude_folders
            .iter()
            .map(|p| push(args, Arg::Text(p)))
            .collect();
        conds.push(format!(
            "NOT EXISTS (SELECT 1 FROM message_folders mf JOIN folders f ON f.id = mf.folder \
             WHERE mf.message = m.id AND f.provider_id IN ({}))",
            marks.join(", ")
        ));
    }
    if let Some(r) = filter.role {
        conds.push(format!(
            "EXISTS (SELECT 1 FROM message_folders mf JOIN folders f ON f.id = mf.folder \
             WHERE mf.message = m.id AND f.role = {})",
            push(args, Arg::Text(r.as_str()))
        ));
    }
    let like = |col: &str, p: &str| format!("lower({col}) LIKE lower({p}) ESCAPE '\\'");
    if let Some(a) = filter.from {
        let p = push(args, Arg::Owned(address_pattern(a)));
        conds.push(like("m.from_addr", &p));
    }
    if let Some(a) = filter.to {
        let p = push(args, Arg::Owned(address_pattern(a)));
        conds.push(like("m.to_addrs", &p));
    }
    if !filter.any_email.is_empty() {
        let mut any = vec![];
        for a in filter.any_email {
            let p = push(args, Arg::Owned(address_pattern(a)));
            for col in ["m.from_addr", "m.to_addrs", "m.cc_addrs", "m.bcc_addrs"] {
                any.push(like(col, &p));
            }
        }
        conds.push(format!("({})", any.join(" OR ")));
    }
    if let Some(b) = filter.before {
        conds.push(format!("m.date < {}", push(args, Arg::Int(b))));
    }
    if let Some(a) = filter.after {
        conds.push(format!("m.date > {}", push(args, Arg::Int(a))));
    }
    if let Some(t) = filter.thread_id {
        conds.push(format!("m.thread_id = {}", push(args, Arg::Text(t))));
    }
    if let Some(mid) = filter.message_id {
        conds.push(format!("m.message_id = {}", push(args, Arg::Text(mid))));
    }
    if !filter.search.is_empty() {
        let mark = format!("${}", args.len() + 1);
        let (cond, value) = search::condition(backend, &mark, filter.search);
        push(args, Arg::Owned(value));
        conds.push(cond);
    }
    if let Some(p) = after {
        let d = push(args, Arg::Int(p.last_date));
        let i = push(args, Arg::Text(&p.last_id));
        // A row comparison, so both backends start the index range at the position instead
        // of filtering every row before it.
        conds.push(format!("(m.date, m.id) < ({d}, {i})"));
    }
    conds
}

/// Binds `args` in order.
macro_rules! bind_args {
    ($q:expr, $args:expr) => {{
        let mut q = $q;
        for a in $args {
            q = match a {
                Arg::Text(s) => q.bind(*s),
                Arg::Owned(s) => q.bind(s.as_str()),
                Arg::Int(i) => q.bind(*i),
            };
        }
        q
    }};
}
pub(crate) use bind_args;

/// One page of the workspace's messages matching `filter`, newest first (`date` then `id`,
/// both descending), starting after `after`. Bodies are not read.
pub async fn list_messages(
    store: &Store,
    workspace_id: &str,
    filter: &MessageFilter<'_>,
    after: Option<&Position>,
    limit: u32,
) -> Result<Vec<MessageRow>> {
    list_messages_in(Db::Pool(store), workspace_id, filter, after, limit).await
}

/// [`list_messages`] on the pool or inside a transaction (whose own writes it sees).
pub async fn list_messages_in(
    mut db: Db<'_>,
    workspace_id: &str,
    filter: &MessageFilter<'_>,
    after: Option<&Position>,
    limit: u32,
) -> Result<Vec<MessageRow>> {
    let mut args: Vec<Arg> = vec![];
    let conds = conditions(db.backend(), workspace_id, filter, after, &mut args);
    let lim = push(&mut args, Arg::Int(i64::from(limit)));
    // A Message-ID names a handful of rows: found by the `(account_id, message_id)` index and
    // sorted after. Ordered by the bare column, both planners walk the account's page index
    // instead and read every message of the account (the sync looks Message-IDs up for each
    // message it indexes: that made a first sync quadratic).
    let order = if filter.message_id.is_some() {
        "(m.date + 0) DESC, m.id DESC"
    } else {
        "m.date DESC, m.id DESC"
    };
    let sql = sqlx::AssertSqlSafe(format!(
        "SELECT {MESSAGE_COLUMNS} FROM messages m WHERE {} ORDER BY {order} LIMIT {lim}",
        conds.join(" AND ")
    ));
    let rows = with_conn!(db.reborrow(), c => {
        bind_args!(sqlx::query(sql), &args)
            .fetch_all(&mut *c).await?.iter().map(|r| decode_message(r, false)).collect::<Result<Vec<_>>>()?
    });
    with_links(db, rows).await
}

/// Sets the read flag; true when it changed (false also when there is no such message).
pub async fn set_read(store: &Store, message_id: &str, read: bool, now_ms: i64) -> Result<bool> {
    set_read_in(Db::Pool(store), message_id, read, now_ms).await
}

/// [`set_read`] on the pool or in a transaction: with the event announcing the change in the
/// same transaction, only the writer whose update changed the row announces it (the API and a
/// sync pass that both saw the flag change cannot both record it).
pub async fn set_read_in(db: Db<'_>, message_id: &str, read: bool, now_ms: i64) -> Result<bool> {
    let n = with_conn!(db, c => {
        sqlx::query("UPDATE messages SET read = $1, updated_at = $2 WHERE id = $3 AND read <> $1")
            .bind(read).bind(now_ms).bind(message_id)
            .execute(c).await?.rows_affected()
    });
    Ok(n == 1)
}

/// A message taken out of a folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unlinked {
    pub message_id: String,
    /// How many folders it is still in (0: gone from the mailbox, unless it reappears in
    /// another folder; the caller decides when to [`delete_message`]).
    pub remaining: i64,
}

/// Takes the message with IMAP UID `uid` out of the folder (it was expunged or moved).
pub async fn remove_message_from_folder(
    store: &Store,
    folder_id: &str,
    uid: i64,
) -> Result<Option<Unlinked>> {
    let mut tx = store.begin_write().await?;
    let out = with_conn!(Db::Tx(&mut tx), c => {
        let gone: Option<String> = sqlx::query(
            "DELETE FROM message_folders WHERE folder = $1 AND uid = $2 RETURNING message",
        )
        .bind(folder_id)
        .bind(uid)
        .fetch_optional(&mut *c)
        .await?
        .map(|r| r.try_get(0))
        .transpose()?;
        match gone {
            Some(message_id) => {
                let remaining: i64 = sqlx::query("SELECT COUNT(*) FROM message_folders WHERE message = $1")
                    .bind(&message_id)
                    .fetch_one(&mut *c)
                    .await?
                    .try_get(0)?;
                Some(Unlinked { message_id, remaining })
            }
            None => None,
        }
    });
    tx.commit().await?;
    Ok(out)
}

/// Takes the message out of the folder, whatever its UID; true when it was in it.
pub async fn unlink_message(store: &Store, message_id: &str, folder_id: &str) -> Result<bool> {
    let n = with_pool!(store, pool => {
        sqlx::query("DELETE FROM message_folders WHERE message = $1 AND folder = $2")
            .bind(message_id).bind(folder_id)
            .execute(pool).await?.rows_affected()
    });
    Ok(n == 1)
}

/// Moves the message's link from folder `from` to `to` (folder id, UID there) in one
/// transaction; with no `to`, only takes it out of `from` (the sync links it where it went).
/// True when the message was in `from` (false: someone already did it, nothing changed).
pub async fn move_link(
    store: &Store,
    message_id: &str,
    from: &str,
    to: Option<(&str, i64)>,
) -> Result<bool> {
    let mut tx = store.begin_write().await?;
    let n = with_conn!(Db::Tx(&mut tx), c => {
        let n = sqlx::query("DELETE FROM message_folders WHERE message = $1 AND folder = $2")
            .bind(message_id)
            .bind(from)
            .execute(&mut *c)
            .await?
            .rows_affected();
        if n == 1 && let Some((folder, uid)) = to {
            sqlx::query(
                "INSERT INTO message_folders (message, folder, uid) VALUES ($1, $2, $3) \
                 ON CONFLICT (message, folder) DO UPDATE SET uid = excluded.uid",
            )
            .bind(message_id)
            .bind(folder)
            .bind(uid)
            .execute(&mut *c)
            .await?;
        }
        n
    });
    tx.commit().await?;
    Ok(n == 1)
}

/// Removes a message from the index (its folder links go with it).
pub async fn delete_message(store: &Store, message_id: &str) -> Result<bool> {
    let n = with_pool!(store, pool => {
        sqlx::query("DELETE FROM messages WHERE id = $1")
            .bind(message_id).execute(pool).await?.rows_affected()
    });
    Ok(n == 1)
}

/// The UIDs known in a folder with their message ids, by UID (for a UID diff against the
/// server).
pub async fn messages_in_folder_uids(store: &Store, folder_id: &str) -> Result<Vec<(i64, String)>> {
    with_pool!(store, pool => {
        sqlx::query(
            "SELECT uid, message FROM message_folders WHERE folder = $1 AND uid IS NOT NULL ORDER BY uid",
        )
        .bind(folder_id)
        .fetch_all(pool)
        .await?
        .iter()
        .map(|r| -> Result<(i64, String)> { Ok((r.try_get(0)?, r.try_get(1)?)) })
        .collect()
    })
}

/// Empties the account's index (a full resync). Deleting the account does the same through
/// the foreign keys.
pub async fn delete_account_index(store: &Store, account_id: &str) -> Result<()> {
    let mut tx = store.begin_write().await?;
    with_conn!(Db::Tx(&mut tx), c => {
        sqlx::query("DELETE FROM messages WHERE account_id = $1")
            .bind(account_id).execute(&mut *c).await?;
        sqlx::query("DELETE FROM folders WHERE account_id = $1")
            .bind(account_id).execute(&mut *c).await?;
    });
    tx.commit().await?;
    Ok(())
}

/// The account's messages that are in no folder any more: what a sync pass leaves when mail
/// is expunged or moved away, until the pass has seen every folder (a move shows up there as
/// the same message in another folder).
pub async fn orphans(store: &Store, account_id: &str) -> Result<Vec<String>> {
    let ids: Vec<(String,)> = with_pool!(store, pool => {
        sqlx::query_as(
            "SELECT m.id FROM messages m WHERE m.account_id = $1 AND NOT EXISTS \
             (SELECT 1 FROM message_folders mf WHERE mf.message = m.id)",
        )
        .bind(account_id)
        .fetch_all(pool)
        .await?
    });
    Ok(ids.into_iter().map(|(id,)| id).collect())
}

/// The indexed messages of a folder with their UID there, read state and last change time,
/// by UID: what a sync compares the server's flags with.
pub async fn read_states_in_folder(
    store: &Store,
    folder_id: &str,
) -> Result<Vec<(i64, String, bool, i64)>> {
    with_pool!(store, pool => {
        sqlx::query_as(
            "SELECT mf.uid, m.id, m.read, m.updated_at FROM message_folders mf \
             JOIN messages m ON m.id = mf.message WHERE mf.folder = $1 AND mf.uid IS NOT NULL",
        )
        .bind(folder_id)
        .fetch_all(pool)
        .await
        .map_err(Into::into)
    })
}

/// Moves the threads of the account's messages that answer `message_id` (In-Reply-To) into
/// `thread_id`: a parent indexed after its replies gathers them. Answers the messages moved.
pub async fn adopt_replies(
    db: Db<'_>,
    account_id: &str,
    message_id: &str,
    thread_id: &str,
) -> Result<u64> {
    // Two statements, not `thread_id IN (SELECT …)`: PostgreSQL planned that as a scan of the
    // account's messages per call on a table still growing in the first sync (1.8 s a call at
    // a few thousand rows). The SELECT names only the columns of `messages_in_reply_to`
    // (`DISTINCT` or a `thread_id <> …` made SQLite walk `messages_thread`, every message of
    // the account); it nearly always finds nothing.
    let n = with_conn!(db, c => {
        let found: Vec<(String,)> = sqlx::query_as(
            "SELECT thread_id FROM messages WHERE account_id = $1 AND in_reply_to = $2",
        )
        .bind(account_id)
        .bind(message_id)
        .fetch_all(&mut *c)
        .await?;
        let mut threads: Vec<String> = found
            .into_iter()
            .map(|(t,)| t)
            .filter(|t| t != thread_id)
            .collect();
        threads.sort();
        threads.dedup();
        let mut moved = 0;
        for old in threads {
            moved += sqlx::query(
                "UPDATE messages SET thread_id = $1 WHERE account_id = $2 AND thread_id = $3",
            )
            .bind(thread_id)
            .bind(account_id)
            .bind(&old)
            .execute(&mut *c)
            .await?
            .rows_affected();
        }
        moved
    });
    Ok(n)
}

/// A message that a header-less reply may belong to (the subject fallback of threading).
#[derive(Debug, Clone)]
pub struct SubjectMatch {
    pub thread_id: String,
    pub subject: String,
    /// Lower-cased addresses of its sender and recipients.
    pub participants: Vec<String>,
}

/// The account's newest messages (at most `limit`, since `since_ms`) whose subject ends with
/// `tail`, compared case-insensitively; the caller normalises and compares exactly.
pub async fn recent_by_subject_tail(
    db: Db<'_>,
    account_id: &str,
    tail: &str,
    since_ms: i64,
    limit: i64,
) -> Result<Vec<SubjectMatch>> {
    let mut pattern = String::from("%");
    for c in tail.to_lowercase().chars() {
        if matches!(c, '\\' | '%' | '_') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    let rows: Vec<(String, String, Option<String>, String, String)> = with_conn!(db, c => {
        sqlx::query_as(
            "SELECT thread_id, subject, from_addr, to_addrs, cc_addrs FROM messages \
             WHERE account_id = $1 AND date >= $2 AND LOWER(subject) LIKE $3 ESCAPE '\\' \
             ORDER BY date DESC LIMIT $4",
        )
        .bind(account_id)
        .bind(since_ms)
        .bind(&pattern)
        .bind(limit)
        .fetch_all(&mut *c)
        .await?
    });
    Ok(rows
        .into_iter()
        .map(|(thread_id, subject, from, to, cc)| {
            let mut participants: Vec<String> = Vec::new();
            let mut add = |a: Attendee| participants.push(a.identifier.to_lowercase());
            if let Some(f) = from.and_then(|f| serde_json::from_str::<Attendee>(&f).ok()) {
                add(f);
            }
            for list in [to, cc] {
                for a in serde_json::from_str::<Vec<Attendee>>(&list).unwrap_or_default() {
                    add(a);
                }
            }
            SubjectMatch {
                thread_id,
                subject,
                participants,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_patterns_match_only_the_identifier() {
        assert_eq!(
            address_pattern(" a_b@x.test "),
            "%\"identifier\":\"a\\_b@x.test\"%"
        );
        assert_eq!(address_pattern("100%@x"), "%\"identifier\":\"100\\%@x\"%");
        // A quote is escaped by JSON, then the backslash for LIKE.
        assert_eq!(address_pattern("a\"b"), "%\"identifier\":\"a\\\\\"b\"%");
    }
}
