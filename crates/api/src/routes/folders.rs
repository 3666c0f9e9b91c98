//! `GET /api/v1/folders` and `GET /api/v1/folders/{id}`: the folders (labels) the sync
//! found, with the number of indexed emails in each.

use axum::Json;
use axum::extract::{Path, State};
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::error::{ErrorBody, Result, err};
use crate::extract::QueryPairs;
use crate::state::AppState;
use mailroom_core::ErrorKind;
use mailroom_core::mail::FolderRole;
use mailroom_engine::read::{self, FolderView};

/// A folder (IMAP mailbox, Gmail label, Outlook folder).
#[derive(Debug, Serialize, ToSchema)]
pub struct FolderItem {
    #[schema(example = "Folder")]
    pub object: &'static str,
    pub id: String,
    pub name: String,
    pub account_id: String,
    pub role: FolderRole,
    /// Emails of the index in this folder: what `GET /emails?folder=` lists.
    pub nb_mails: i64,
    /// The provider's name for it (IMAP: the mailbox name); `GET /emails?folder=` takes it.
    pub provider_id: String,
}

/// `{object: "FolderList", items}` (no cursor: an account's folders come in one answer).
#[derive(Debug, Serialize, ToSchema)]
pub struct FolderList {
    #[schema(example = "FolderList")]
    pub object: &'static str,
    pub items: Vec<FolderItem>,
}

fn item(f: FolderView) -> FolderItem {
    FolderItem {
        object: "Folder",
        id: f.id,
        name: f.name,
        account_id: f.account_id,
        role: f.role,
        nb_mails: f.nb_mails,
        provider_id: f.provider_id,
    }
}

/// `account_id`, when given, must not be empty.
fn account_id(q: &QueryPairs) -> Result<Option<String>> {
    match q.get("account_id") {
        None => Ok(None),
        Some(v) if v.trim().is_empty() => Err(err(
            ErrorKind::InvalidParameters,
            "account_id must not be empty",
        )),
        Some(v) => Ok(Some(v.trim().to_owned())),
    }
}

/// The workspace's folders, or one account's, by account then name.
#[utoipa::path(
    get, path = "/api/v1/folders", tag = "Emails",
    params(("account_id" = Option<String>, Query, description = "Only this account's folders (404 if it is not one of yours)")),
    responses(
        (status = 200, body = FolderList),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn list_folders(
    State(state): State<AppState>,
    caller: Caller,
    query: QueryPairs,
) -> Result<Json<FolderList>> {
    let account_id = account_id(&query)?;
    let folders = read::list_folders(&state.engine, caller.tenant(), account_id.as_deref()).await?;
    Ok(Json(FolderList {
        object: "FolderList",
        items: folders.into_iter().map(item).collect(),
    }))
}

/// One folder, by its id, or by its provider_id with `account_id`.
#[utoipa::path(
    get, path = "/api/v1/folders/{folder_id}", tag = "Emails",
    params(
        ("folder_id" = String, Path, description = "Our id, or the provider_id (e.g. `INBOX`; then `account_id` is required). A `/` in it must be sent as `%2F`."),
        ("account_id" = Option<String>, Query),
    ),
    responses(
        (status = 200, body = FolderItem),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, description = "`errors/resource_not_found`", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn get_folder(
    State(state): State<AppState>,
    caller: Caller,
    Path(folder_id): Path<String>,
    query: QueryPairs,
) -> Result<Json<FolderItem>> {
    let account_id = account_id(&query)?;
    let f = read::get_folder(
        &state.engine,
        caller.tenant(),
        &folder_id,
        account_id.as_deref(),
    )
    .await?;
    Ok(Json(item(f)))
}
