//! The read API's view of the mail index: pages of messages with what each item shows (its
//! folders' names and roles, its account's type, the indexed message it answers) in two
//! queries per page, whatever the page size: the messages (with the account type and the
//! parent's id as correlated lookups on primary keys and `messages_message_id`), then the
//! folder links of the whole page. Bodies are read (and decompressed) only when asked for.

use sqlx::Row;

use crate::error::{Result, StoreError};
use crate::index::{
    Arg, FOLDER_COLUMNS, FolderRow, MESSAGE_COLUMNS, MessageFilter, MessageRow, bind_args,
    conditions, decode_folder, decode_message, push,
};
use crate::tenant::Tenant;
use crate::{Store, with_pool};
use mailroom_core::cursor::Position;
use mailroom_core::mail::FolderRole;

/// What to read besides the metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Wanted {
    /// The HTML and text bodies.
    pub bodies: bool,
    /// The stored header lines.
    pub headers: bool,
}

/// A folder a message is in, as an item shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderRef {
    pub id: String,
    pub name: String,
    pub role: FolderRole,
}

/// A message as the read API shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct MessageView {
    /// `content` holds what [`Wanted`] asked for (the rest `None`); `folders` is empty, see
    /// [`MessageView::folders`].
    pub message: MessageRow,
    /// The account's type as stored (`MAIL`, `GOOGLE_OAUTH`, `OUTLOOK`).
    pub account_type: String,
    /// The folders it is in, by name.
    pub folders: Vec<FolderRef>,
    /// Our id of the indexed message its `In-Reply-To` names, in the same account.
    pub parent_id: Option<String>,
}

/// How the caller names one message.
#[derive(Debug, Clone, Copy)]
pub enum MessageKey<'a> {
    Id(&'a str),
    ProviderId {
        account_id: &'a str,
        provider_id: &'a str,
    },
}

/// The SELECT list: the message columns, the content columns asked for (NULL otherwise),
/// the account's type and the parent's id.
fn select_list(store: &Store, wanted: Wanted) -> String {
    let null = match store {
        Store::Sqlite(_) => "NULL",
        Store::Postgres(_) => "CAST(NULL AS BYTEA)",
    };
    let (html, text) = if wanted.bodies {
        ("m.body_html", "m.body_text")
    } else {
        (null, null)
    };
    let headers = if wanted.headers { "m.headers" } else { null };
    format!(
        "{MESSAGE_COLUMNS}, {html}, {text}, {headers}, \
         (SELECT a.type FROM accounts a WHERE a.id = m.account_id), \
         (SELECT p.id FROM messages p WHERE p.account_id = m.account_id AND p.message_id = m.in_reply_to \
          AND p.id <> m.id LIMIT 1)"
    )
}

fn decode_view<R: Row>(r: &R) -> Result<MessageView>
where
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> Option<String>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> bool: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> Option<Vec<u8>>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    usize: sqlx::ColumnIndex<R>,
{
    Ok(MessageView {
        message: decode_message(r, true)?,
        account_type: r.try_get::<Option<String>, _>(26)?.unwrap_or_default(),
        folders: vec![],
        parent_id: r.try_get(27)?,
    })
}

/// The folders of the given messages (one query), by message id.
async fn folders_of(store: &Store, views: &mut [MessageView]) -> Result<()> {
    if views.is_empty() {
        return Ok(());
    }
    let marks: Vec<String> = (1..=views.len()).map(|i| format!("${i}")).collect();
    let sql = sqlx::AssertSqlSafe(format!(
        "SELECT mf.message, f.id, f.name, f.role FROM message_folders mf JOIN folders f ON f.id = mf.folder \
         WHERE mf.message IN ({}) ORDER BY f.name, f.id",
        marks.join(", ")
    ));
    let links: Vec<(String, FolderRef)> = with_pool!(store, pool => {
        let mut q = sqlx::query(sql);
        for v in views.iter() {
            q = q.bind(v.message.id.as_str());
        }
        q.fetch_all(pool)
            .await?
            .iter()
            .map(|r| -> Result<(String, FolderRef)> {
                let role: String = r.try_get(3)?;
                Ok((
                    r.try_get(0)?,
                    FolderRef {
                        id: r.try_get(1)?,
                        name: r.try_get(2)?,
                        role: FolderRole::parse(&role)
                            .ok_or_else(|| StoreError::Corrupt(format!("folder role {role}")))?,
                    },
                ))
            })
            .collect::<Result<Vec<_>>>()?
    });
    for (message, folder) in links {
        if let Some(v) = views.iter_mut().find(|v| v.message.id == message) {
            v.folders.push(folder);
        }
    }
    Ok(())
}

/// One page of the workspace's messages matching `filter`, newest first (`date`, then `id`,
/// both descending), starting after `after`.
pub async fn page(
    store: &Store,
    tenant: &Tenant,
    filter: &MessageFilter<'_>,
    after: Option<&Position>,
    limit: u32,
    wanted: Wanted,
) -> Result<Vec<MessageView>> {
    let mut args: Vec<Arg> = vec![];
    let mut conds = conditions(
        store.backend(),
        tenant.workspace_id(),
        filter,
        after,
        &mut args,
    );
    let (bound, ids) = tenant.sql_filter("m.account_id", args.len() + 1);
    if !bound.is_empty() {
        conds.push(format!("1 = 1{bound}"));
        args.extend(ids.into_iter().map(Arg::Owned));
    }
    let lim = push(&mut args, Arg::Int(i64::from(limit)));
    let sql = sqlx::AssertSqlSafe(format!(
        "SELECT {} FROM messages m WHERE {} ORDER BY m.date DESC, m.id DESC LIMIT {lim}",
        select_list(store, wanted),
        conds.join(" AND ")
    ));
    let mut views = with_pool!(store, pool => {
        bind_args!(sqlx::query(sql), &args)
            .fetch_all(pool).await?.iter().map(decode_view).collect::<Result<Vec<_>>>()?
    });
    folders_of(store, &mut views).await?;
    Ok(views)
}

/// One message of the workspace, by our id or by its account and provider id.
pub async fn one(
    store: &Store,
    tenant: &Tenant,
    key: MessageKey<'_>,
    wanted: Wanted,
) -> Result<Option<MessageView>> {
    let (cond, a, b) = match key {
        MessageKey::Id(id) => ("m.id = $2 AND $3 = $3", id, ""),
        MessageKey::ProviderId {
            account_id,
            provider_id,
        } => (
            "m.account_id = $2 AND m.provider_id = $3",
            account_id,
            provider_id,
        ),
    };
    let (bound, ids) = tenant.sql_filter("m.account_id", 4);
    let sql = sqlx::AssertSqlSafe(format!(
        "SELECT {} FROM messages m WHERE m.workspace_id = $1 AND {cond}{bound}",
        select_list(store, wanted)
    ));
    let view = with_pool!(store, pool => {
        let mut q = sqlx::query(sql).bind(tenant.workspace_id()).bind(a).bind(b);
        for id in &ids {
            q = q.bind(id.as_str());
        }
        q.fetch_optional(pool).await?.as_ref().map(decode_view).transpose()?
    });
    let mut views: Vec<MessageView> = view.into_iter().collect();
    folders_of(store, &mut views).await?;
    Ok(views.pop())
}

/// The workspace's folders (or one account's), each with the number of indexed messages in
/// it, by account then name.
pub async fn folders_with_counts(
    store: &Store,
    tenant: &Tenant,
    account_id: Option<&str>,
) -> Result<Vec<(FolderRow, i64)>> {
    let (bound, ids) = tenant.sql_filter("account_id", 3);
    let sql = sqlx::AssertSqlSafe(format!(
        "SELECT {FOLDER_COLUMNS}, (SELECT COUNT(*) FROM message_folders mf WHERE mf.folder = folders.id) \
         FROM folders WHERE workspace_id = $1 AND ($2 IS NULL OR account_id = $2){bound} ORDER BY account_id, name, id"
    ));
    with_pool!(store, pool => {
        let mut q = sqlx::query(sql).bind(tenant.workspace_id()).bind(account_id);
        for id in &ids {
            q = q.bind(id.as_str());
        }
        q.fetch_all(pool).await?.iter()
            .map(|r| Ok((decode_folder(r)?, r.try_get::<i64, _>(15)?)))
            .collect()
    })
}

/// How one folder is named by the caller.
#[derive(Debug, Clone, Copy)]
pub enum FolderKey<'a> {
    Id(&'a str),
    ProviderId {
        account_id: &'a str,
        provider_id: &'a str,
    },
}

/// One folder of the workspace with the number of indexed messages in it.
pub async fn folder_with_count(
    store: &Store,
    tenant: &Tenant,
    key: FolderKey<'_>,
) -> Result<Option<(FolderRow, i64)>> {
    let (cond, a, b) = match key {
        FolderKey::Id(id) => ("id = $2 AND $3 = $3", id, ""),
        FolderKey::ProviderId {
            account_id,
            provider_id,
        } => (
            "account_id = $2 AND provider_id = $3",
            account_id,
            provider_id,
        ),
    };
    let (bound, ids) = tenant.sql_filter("account_id", 4);
    let sql = sqlx::AssertSqlSafe(format!(
        "SELECT {FOLDER_COLUMNS}, (SELECT COUNT(*) FROM message_folders mf WHERE mf.folder = folders.id) \
         FROM folders WHERE workspace_id = $1 AND {cond}{bound}"
    ));
    with_pool!(store, pool => {
        let mut q = sqlx::query(sql).bind(tenant.workspace_id()).bind(a).bind(b);
        for id in &ids {
            q = q.bind(id.as_str());
        }
        q.fetch_optional(pool).await?.as_ref()
            .map(|r| Ok((decode_folder(r)?, r.try_get::<i64, _>(15)?)))
            .transpose()
    })
}
