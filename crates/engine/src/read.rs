//! Reading the mail index: the use cases behind `GET /emails`, `GET /emails/{id}`,
//! `GET /folders` and `GET /folders/{id}`. They answer typed views; the API shapes the JSON.
//!
//! Everything is served from the local index (never from the provider), so every filter
//! combines with every other one, `search` included.

use mailroom_core::account::AccountType;
use mailroom_core::cursor::Position;
use mailroom_core::email::Attendee;
use mailroom_core::id::looks_like_id;
use mailroom_core::mail::{AttachmentMeta, FolderRole, Header, MailOrigin};
use mailroom_core::{ApiError, ErrorKind};
use mailroom_store::Store;
use mailroom_store::index::{self, FolderRow, MessageFilter};
use mailroom_store::index_query::{self, FolderKey, FolderRef, MessageKey, MessageView, Wanted};
use mailroom_store::tenant::Tenant;

use crate::Engine;
use crate::link::store_error;

/// The filters of `GET /emails`, parsed and validated by the API.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EmailQuery {
    pub account_id: Option<String>,
    pub role: Option<FolderRole>,
    /// A folder's provider id (or our id).
    pub folder: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub any_email: Vec<String>,
    /// Exclusive, Unix ms.
    pub before: Option<i64>,
    /// Exclusive, Unix ms.
    pub after: Option<i64>,
    pub thread_id: Option<String>,
    /// Bracketed.
    pub message_id: Option<String>,
    /// The search words (non-empty words of `mailroom_store::search::words`); empty: none.
    pub search: Vec<String>,
    /// Folder provider ids; ignored when `folder` is given.
    pub exclude_folders: Vec<String>,
}

/// How much of each message to answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detail {
    /// Metadata only: no body is read.
    Meta,
    /// With the bodies, and the stored headers if asked.
    Full { headers: bool },
}

impl Detail {
    fn wanted(self) -> Wanted {
        match self {
            Detail::Meta => Wanted::default(),
            Detail::Full { headers } => Wanted {
                bodies: true,
                headers,
            },
        }
    }
}

/// The parent an item answers, when it is indexed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InReplyTo {
    pub message_id: String,
    pub id: String,
}

/// The bodies of a message (`Detail::Full`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bodies {
    /// The HTML body, or the text body of a message without HTML.
    pub html: String,
    pub text: String,
}

/// One message as the read API shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct EmailView {
    pub id: String,
    pub account_id: String,
    pub account_type: AccountType,
    /// Unix ms.
    pub date: i64,
    /// The role of its primary folder (see [`primary_role`]).
    pub role: FolderRole,
    pub folders: Vec<FolderRef>,
    /// When the index recorded it as read (Unix ms); `None` while unread.
    pub read_date: Option<i64>,
    /// Bracketed; empty for a message without one.
    pub message_id: String,
    pub provider_id: String,
    /// The sender (an empty identifier for a message without `From`).
    pub from: Attendee,
    pub to: Vec<Attendee>,
    pub cc: Vec<Attendee>,
    pub bcc: Vec<Attendee>,
    pub reply_to: Vec<Attendee>,
    pub subject: String,
    pub has_attachments: bool,
    pub origin: MailOrigin,
    pub in_reply_to: Option<InReplyTo>,
    pub tracking_id: Option<String>,
    pub thread_id: String,
    pub attachments: Vec<AttachmentMeta>,
    /// `None` for `Detail::Meta`.
    pub bodies: Option<Bodies>,
    /// Only with `Detail::Full { headers: true }`.
    pub headers: Option<Vec<Header>>,
}

impl EmailView {
    /// Where this item sits in the list order (for the next page's cursor).
    pub fn position(&self) -> Position {
        Position {
            last_id: self.id.clone(),
            last_date: self.date,
        }
    }
}

/// A folder with the number of indexed messages in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderView {
    pub id: String,
    pub name: String,
    pub account_id: String,
    pub role: FolderRole,
    pub provider_id: String,
    /// Messages of the index in this folder (what `GET /emails?folder=` lists).
    pub nb_mails: i64,
}

/// The order in which a message's folders give its `role`: the most specific first, so a
/// Gmail message in INBOX and All Mail is `inbox`, one in Sent and Important is `sent`.
const ROLE_PRIORITY: [FolderRole; 10] = [
    FolderRole::Inbox,
    FolderRole::Sent,
    FolderRole::Drafts,
    FolderRole::Trash,
    FolderRole::Spam,
    FolderRole::Archive,
    FolderRole::Starred,
    FolderRole::Important,
    FolderRole::Unknown,
    FolderRole::All,
];

/// The role of a message's primary folder: the first of [`ROLE_PRIORITY`] among its
/// folders' roles; `unknown` for a message in no folder.
pub fn primary_role(folders: &[FolderRef]) -> FolderRole {
    ROLE_PRIORITY
        .into_iter()
        .find(|r| folders.iter().any(|f| f.role == *r))
        .unwrap_or(FolderRole::Unknown)
}

fn view(v: MessageView) -> Result<EmailView, ApiError> {
    let MessageView {
        message: m,
        account_type,
        folders,
        parent_id,
    } = v;
    let account_type = AccountType::parse(&account_type).ok_or_else(|| {
        tracing::error!(account = %m.account_id, %account_type, "stored account type unknown");
        ApiError::unexpected("an internal error occurred; it has been logged")
    })?;
    let (bodies, headers) = match m.content {
        Some(c) => {
            let bodies = (c.body_html.is_some() || c.body_text.is_some()).then(|| Bodies {
                html: c
                    .body_html
                    .clone()
                    .or_else(|| c.body_text.clone())
                    .unwrap_or_default(),
                text: c.body_text.clone().unwrap_or_default(),
            });
            (bodies, c.headers)
        }
        None => (None, None),
    };
    let in_reply_to = match (&m.in_reply_to, parent_id) {
        (Some(message_id), Some(id)) => Some(InReplyTo {
            message_id: message_id.clone(),
            id,
        }),
        _ => None,
    };
    Ok(EmailView {
        role: primary_role(&folders),
        read_date: m.read.then_some(m.updated_at),
        from: m.from.unwrap_or(Attendee {
            identifier: String::new(),
            display_name: None,
        }),
        message_id: m.message_id.unwrap_or_default(),
        id: m.id,
        account_id: m.account_id.into(),
        account_type,
        date: m.date,
        folders,
        provider_id: m.provider_id,
        to: m.to,
        cc: m.cc,
        bcc: m.bcc,
        reply_to: m.reply_to,
        subject: m.subject,
        has_attachments: m.has_attachments,
        origin: m.origin,
        in_reply_to,
        tracking_id: m.tracking_id,
        thread_id: m.thread_id,
        attachments: m.attachments,
        bodies,
        headers,
    })
}

/// 404 unless the account is one `tenant` sees.
async fn require_account(store: &Store, tenant: &Tenant, account_id: &str) -> Result<(), ApiError> {
    let found = looks_like_id(account_id)
        && tenant
            .account(store, account_id)
            .await
            .map_err(store_error)?
            .is_some();
    if found {
        Ok(())
    } else {
        Err(ApiError::new(
            ErrorKind::ResourceNotFound,
            format!("account {account_id} not found"),
        ))
    }
}

/// The account's folder named by its provider id, or by our id.
async fn find_folder(
    store: &Store,
    workspace: &str,
    account_id: &str,
    folder: &str,
) -> Result<Option<FolderRow>, ApiError> {
    if let Some(f) = index::get_folder_by_provider_id(store, workspace, account_id, folder)
        .await
        .map_err(store_error)?
    {
        return Ok(Some(f));
    }
    if looks_like_id(folder) {
        let f = index::get_folder(store, workspace, folder)
            .await
            .map_err(store_error)?;
        return Ok(f.filter(|f| f.account_id.as_str() == account_id));
    }
    Ok(None)
}

/// A page of the workspace's messages matching `q`, newest first, after `after`; at most
/// `limit` items (the API asks one more than it shows, to know whether a next page exists).
pub async fn list_emails(
    engine: &Engine,
    tenant: &Tenant,
    q: &EmailQuery,
    detail: Detail,
    after: Option<&Position>,
    limit: u32,
) -> Result<Vec<EmailView>, ApiError> {
    let store = &engine.store;
    let mut folder_id = None;
    let mut folder_provider_id = None;
    if let Some(account) = &q.account_id {
        require_account(store, tenant, account).await?;
    }
    if let Some(folder) = &q.folder {
        match &q.account_id {
            Some(account) => {
                let f = find_folder(store, tenant.workspace_id(), account, folder).await?.ok_or_else(|| {
                    ApiError::invalid(format!(
                        "folder `{folder}` is not a folder of account {account} (GET /api/v1/folders?account_id={account} lists them)"
                    ))
                })?;
                folder_id = Some(f.id);
            }
            None => {
                // Our id, when it is one of the workspace's folders; else a provider id in
                // whichever account has it.
                let ours = if looks_like_id(folder) {
                    index::get_folder(store, tenant.workspace_id(), folder)
                        .await
                        .map_err(store_error)?
                } else {
                    None
                };
                match ours {
                    Some(f) => folder_id = Some(f.id),
                    None => folder_provider_id = Some(folder.as_str()),
                }
            }
        }
    }
    let any_email: Vec<&str> = q.any_email.iter().map(String::as_str).collect();
    // `exclude_folders` is ignored when a folder is chosen (Unipile's rule).
    let exclude: Vec<&str> = if q.folder.is_some() {
        vec![]
    } else {
        q.exclude_folders.iter().map(String::as_str).collect()
    };
    let filter = MessageFilter {
        account_id: q.account_id.as_deref(),
        folder_id: folder_id.as_deref(),
        role: q.role,
        from: q.from.as_deref(),
        to: q.to.as_deref(),
        any_email: &any_email,
        before: q.before,
        after: q.after,
        thread_id: q.thread_id.as_deref(),
        message_id: q.message_id.as_deref(),
        folder_provider_id,
        exclude_folders: &exclude,
        search: &q.search,
    };
    index_query::page(store, tenant, &filter, after, limit, detail.wanted())
        .await
        .map_err(store_error)?
        .into_iter()
        .map(view)
        .collect()
}

/// One message, by our id, or by its provider id when `account_id` is given (our id is
/// accepted there too). 404 `errors/resource_not_found` otherwise.
pub async fn get_email(
    engine: &Engine,
    tenant: &Tenant,
    id: &str,
    account_id: Option<&str>,
    detail: Detail,
) -> Result<EmailView, ApiError> {
    let store = &engine.store;
    let wanted = detail.wanted();
    let mut found = None;
    if let Some(account_id) = account_id {
        require_account(store, tenant, account_id).await?;
        found = index_query::one(
            store,
            tenant,
            MessageKey::ProviderId {
                account_id,
                provider_id: id,
            },
            wanted,
        )
        .await
        .map_err(store_error)?;
    }
    if found.is_none() && looks_like_id(id) {
        found = index_query::one(store, tenant, MessageKey::Id(id), wanted)
            .await
            .map_err(store_error)?
            .filter(|v| account_id.is_none_or(|a| v.message.account_id.as_str() == a));
    }
    match found {
        Some(v) => view(v),
        None => Err(ApiError::new(
            ErrorKind::ResourceNotFound,
            format!("email {id} not found"),
        )),
    }
}

fn folder_view((f, count): (FolderRow, i64)) -> FolderView {
    FolderView {
        id: f.id,
        name: f.name,
        account_id: f.account_id.into(),
        role: f.role,
        provider_id: f.provider_id,
        nb_mails: count,
    }
}

/// The workspace's folders, or one account's (404 for an account not in the workspace).
pub async fn list_folders(
    engine: &Engine,
    tenant: &Tenant,
    account_id: Option<&str>,
) -> Result<Vec<FolderView>, ApiError> {
    if let Some(account_id) = account_id {
        require_account(&engine.store, tenant, account_id).await?;
    }
    Ok(
        index_query::folders_with_counts(&engine.store, tenant, account_id)
            .await
            .map_err(store_error)?
            .into_iter()
            .map(folder_view)
            .collect(),
    )
}

/// One folder, by our id, or by its provider id when `account_id` is given (our id is
/// accepted there too).
pub async fn get_folder(
    engine: &Engine,
    tenant: &Tenant,
    id: &str,
    account_id: Option<&str>,
) -> Result<FolderView, ApiError> {
    let store = &engine.store;
    let mut found = None;
    if let Some(account_id) = account_id {
        require_account(store, tenant, account_id).await?;
        found = index_query::folder_with_count(
            store,
            tenant,
            FolderKey::ProviderId {
                account_id,
                provider_id: id,
            },
        )
        .await
        .map_err(store_error)?;
    }
    if found.is_none() && looks_like_id(id) {
        found = index_query::folder_with_count(store, tenant, FolderKey::Id(id))
            .await
            .map_err(store_error)?
            .filter(|(f, _)| account_id.is_none_or(|a| f.account_id.as_str() == a));
    }
    found.map(folder_view).ok_or_else(|| {
        ApiError::new(
            ErrorKind::ResourceNotFound,
            format!("folder {id} not found"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(role: FolderRole) -> FolderRef {
        FolderRef {
            id: "x".into(),
            name: "x".into(),
            role,
        }
    }

    #[test]
    fn the_most_specific_folder_gives_the_role() {
        assert_eq!(primary_role(&[]), FolderRole::Unknown);
        assert_eq!(
            primary_role(&[f(FolderRole::All), f(FolderRole::Inbox)]),
            FolderRole::Inbox
        );
        assert_eq!(
            primary_role(&[f(FolderRole::Important), f(FolderRole::Sent)]),
            FolderRole::Sent
        );
        assert_eq!(
            primary_role(&[f(FolderRole::All), f(FolderRole::Unknown)]),
            FolderRole::Unknown
        );
        assert_eq!(primary_role(&[f(FolderRole::All)]), FolderRole::All);
    }
}
