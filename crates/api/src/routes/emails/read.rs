//! `GET /api/v1/emails` and `GET /api/v1/emails/{id}`: mail from the local index, shaped as
//! the SDK's Email object (`kind: "2_full"` with bodies, `"1_meta"` with `meta_only=true`).
//!
//! Every query parameter is checked here (a bad value is 400 `errors/invalid_parameters`
//! naming it); the engine resolves accounts and folders and reads the index.

use axum::Json;
use axum::extract::{Path, State};
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::error::{Error, ErrorBody, Result, err};
use crate::extract::QueryPairs;
use crate::pagination::{ListEnvelope, Page};
use crate::state::AppState;
use mailroom_core::account::AccountType;
use mailroom_core::email::Attendee;
use mailroom_core::mail::{AttachmentMeta, FolderRole, MailOrigin};
use mailroom_core::time_fmt::{format_ms, parse_ms};
use mailroom_core::{ErrorKind, MessageId};
use mailroom_engine::read::{self, Detail, EmailQuery, EmailView};
use mailroom_store::search;

/// The filters of `GET /emails` (carried in its cursors).
const FILTERS: &[&str] = &[
    "account_id",
    "role",
    "folder",
    "from",
    "to",
    "any_email",
    "before",
    "after",
    "thread_id",
    "message_id",
    "meta_only",
    "include_headers",
    "search",
    "exclude_folders",
];

/// At most this many addresses in `any_email`, folders in `exclude_folders`.
const MAX_LIST: usize = 50;
/// The longest `search` text accepted.
const MAX_SEARCH_CHARS: usize = 1000;

// ---- response shapes -------------------------------------------------------------------

/// A person on an email.
#[derive(Debug, Serialize, ToSchema)]
pub struct AttendeeView {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// The email address.
    pub identifier: String,
    /// Always `EMAIL_ADDRESS`.
    #[schema(example = "EMAIL_ADDRESS")]
    pub identifier_type: &'static str,
}

/// An attachment's metadata (`GET /emails/{id}/attachments/{attachment_id}` gives the bytes).
#[derive(Debug, Serialize, ToSchema)]
pub struct AttachmentView {
    pub id: String,
    /// The file name, extension included.
    pub name: String,
    /// Bytes.
    pub size: i64,
    /// The part of the name after its last dot; empty when there is none.
    pub extension: String,
    pub mime: String,
    /// Content-ID of an inline part.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cid: Option<String>,
}

/// The indexed mail an email answers.
#[derive(Debug, Serialize, ToSchema)]
pub struct InReplyToView {
    pub message_id: String,
    /// Our id of that mail.
    pub id: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct HeaderView {
    pub name: String,
    pub value: String,
}

/// An email from the index.
#[derive(Debug, Serialize, ToSchema)]
pub struct EmailItem {
    #[schema(example = "Email")]
    pub object: &'static str,
    pub id: String,
    /// The same as `id` (Unipile documents both).
    pub deprecated_id: String,
    /// `2_full` (bodies), or `1_meta` with `meta_only=true` (`body` and `body_plain` empty).
    #[schema(example = "2_full")]
    pub kind: &'static str,
    pub account_id: String,
    /// The account's type.
    #[serde(rename = "type")]
    pub type_: AccountType,
    /// When the provider received it: `YYYY-MM-DDTHH:MM:SS.sssZ`.
    pub date: String,
    /// The role of its primary folder (inbox, then sent, drafts, trash, spam, archive,
    /// starred, important, unknown, all).
    pub role: FolderRole,
    /// The names of the folders (labels) it is in.
    pub folders: Vec<String>,
    /// Our ids of those folders, in the same order.
    #[serde(rename = "folderIds")]
    pub folder_ids: Vec<String>,
    /// `null` while unread; else when mailroom recorded it as read.
    pub read_date: Option<String>,
    /// The RFC 5322 Message-ID, bracketed (empty if the mail has none).
    pub message_id: String,
    /// The provider's id (IMAP: `<uidvalidity>:<uid>@<folder>`); `GET /emails/{provider_id}?account_id=` finds it.
    pub provider_id: String,
    /// HTML (or the text of a mail without HTML); `""` with `meta_only=true`.
    pub body: String,
    /// The text body; `""` with `meta_only=true`.
    pub body_plain: String,
    pub from_attendee: AttendeeView,
    pub to_attendees: Vec<AttendeeView>,
    pub cc_attendees: Vec<AttendeeView>,
    pub bcc_attendees: Vec<AttendeeView>,
    pub reply_to_attendees: Vec<AttendeeView>,
    pub subject: String,
    pub has_attachments: bool,
    /// `unipile` when sent through this API, else `external`.
    pub origin: MailOrigin,
    /// Present when the mail it answers is indexed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub in_reply_to: Option<InReplyToView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tracking_id: Option<String>,
    pub thread_id: String,
    pub attachments: Vec<AttachmentView>,
    /// Only with `include_headers=true`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub headers: Option<Vec<HeaderView>>,
}

fn attendee(a: Attendee) -> AttendeeView {
    AttendeeView {
        display_name: a.display_name.filter(|n| !n.is_empty()),
        identifier: a.identifier,
        identifier_type: "EMAIL_ADDRESS",
    }
}

fn attendees(list: Vec<Attendee>) -> Vec<AttendeeView> {
    list.into_iter().map(attendee).collect()
}

fn attachment(a: AttachmentMeta) -> AttachmentView {
    let extension = a
        .name
        .rsplit_once('.')
        .map(|(_, ext)| ext.to_owned())
        .unwrap_or_default();
    AttachmentView {
        id: a.id,
        name: a.name,
        size: a.size,
        extension,
        mime: a.mime,
        cid: a.cid,
    }
}

pub(crate) fn item(v: EmailView, detail: Detail) -> EmailItem {
    let (kind, body, body_plain) = match (detail, v.bodies) {
        (Detail::Meta, _) => ("1_meta", String::new(), String::new()),
        (Detail::Full { .. }, Some(b)) => ("2_full", b.html, b.text),
        (Detail::Full { .. }, None) => ("2_full", String::new(), String::new()),
    };
    EmailItem {
        object: "Email",
        deprecated_id: v.id.clone(),
        id: v.id,
        kind,
        account_id: v.account_id,
        type_: v.account_type,
        date: format_ms(v.date),
        role: v.role,
        folder_ids: v.folders.iter().map(|f| f.id.clone()).collect(),
        folders: v.folders.into_iter().map(|f| f.name).collect(),
        read_date: v.read_date.map(format_ms),
        message_id: v.message_id,
        provider_id: v.provider_id,
        body,
        body_plain,
        from_attendee: attendee(v.from),
        to_attendees: attendees(v.to),
        cc_attendees: attendees(v.cc),
        bcc_attendees: attendees(v.bcc),
        reply_to_attendees: attendees(v.reply_to),
        subject: v.subject,
        has_attachments: v.has_attachments,
        origin: v.origin,
        in_reply_to: v.in_reply_to.map(|p| InReplyToView {
            message_id: p.message_id,
            id: p.id,
        }),
        tracking_id: v.tracking_id,
        thread_id: v.thread_id,
        attachments: v.attachments.into_iter().map(attachment).collect(),
        headers: v.headers.map(|hs| {
            hs.into_iter()
                .map(|h| HeaderView {
                    name: h.name,
                    value: h.value,
                })
                .collect()
        }),
    }
}

// ---- parameters ------------------------------------------------------------------------

fn invalid(detail: String) -> Error {
    err(ErrorKind::InvalidParameters, detail)
}

/// A non-empty text parameter without control characters.
pub(crate) fn text(q: &QueryPairs, name: &str) -> Result<Option<String>> {
    match q.get(name) {
        None => Ok(None),
        Some(v) if v.trim().is_empty() => Err(invalid(format!("{name} must not be empty"))),
        Some(v) if v.chars().any(char::is_control) => Err(invalid(format!(
            "{name} must be free of control characters"
        ))),
        Some(v) => Ok(Some(v.trim().to_owned())),
    }
}

/// A comma-separated list of non-empty items.
fn list(q: &QueryPairs, name: &str) -> Result<Vec<String>> {
    let Some(v) = text(q, name)? else {
        return Ok(vec![]);
    };
    let items: Vec<String> = v.split(',').map(|s| s.trim().to_owned()).collect();
    if items.iter().any(String::is_empty) {
        return Err(invalid(format!(
            "{name} must be a comma-separated list without empty items, got `{v}`"
        )));
    }
    if items.len() > MAX_LIST {
        return Err(invalid(format!("{name} takes at most {MAX_LIST} items")));
    }
    Ok(items)
}

fn boolean(q: &QueryPairs, name: &str) -> Result<bool> {
    match q.get(name).map(|v| v.trim().to_ascii_lowercase()) {
        None => Ok(false),
        Some(v) if v == "true" || v == "1" => Ok(true),
        Some(v) if v == "false" || v == "0" => Ok(false),
        Some(v) => Err(invalid(format!("{name} must be true or false, got `{v}`"))),
    }
}

/// An address filter: something that can be an address (no spaces, one `@` inside).
fn address(name: &str, value: Option<String>) -> Result<Option<String>> {
    match value {
        Some(a) if !looks_like_address(&a) => Err(invalid(format!(
            "{name} must be an email address, got `{a}`"
        ))),
        other => Ok(other),
    }
}

fn looks_like_address(a: &str) -> bool {
    match a.rsplit_once('@') {
        Some((local, domain)) => {
            !local.is_empty() && !domain.is_empty() && !a.chars().any(char::is_whitespace)
        }
        None => false,
    }
}

/// `before` / `after`: an RFC 3339 date-time (`2024-05-01T10:00:00.000Z`) or a date
/// (`2024-05-01`, midnight UTC).
pub(crate) fn date(q: &QueryPairs, name: &str) -> Result<Option<i64>> {
    let Some(v) = text(q, name)? else {
        return Ok(None);
    };
    parse_ms(&v)
        .or_else(|| parse_ms(&format!("{v}T00:00:00Z")))
        .map(Some)
        .ok_or_else(|| {
            invalid(format!(
                "{name} must be a date-time like 2024-05-01T10:00:00.000Z (or a date like 2024-05-01), got `{v}`"
            ))
        })
}

fn role(q: &QueryPairs) -> Result<Option<FolderRole>> {
    let Some(v) = text(q, "role")? else {
        return Ok(None);
    };
    FolderRole::parse(&v).map(Some).ok_or_else(|| {
        let roles: Vec<&str> = FolderRole::ALL_ROLES.iter().map(|r| r.as_str()).collect();
        invalid(format!(
            "role must be one of {}, got `{v}`",
            roles.join(", ")
        ))
    })
}

fn search_words(q: &QueryPairs) -> Result<Vec<String>> {
    let Some(v) = q.get("search") else {
        return Ok(vec![]);
    };
    if v.chars().count() > MAX_SEARCH_CHARS {
        return Err(invalid(format!(
            "search takes at most {MAX_SEARCH_CHARS} characters"
        )));
    }
    let words = search::words(v);
    if words.is_empty() {
        return Err(invalid(format!(
            "search must contain at least one word (letters or digits), got `{v}`"
        )));
    }
    if words.len() > search::MAX_WORDS {
        return Err(invalid(format!(
            "search takes at most {} words",
            search::MAX_WORDS
        )));
    }
    Ok(words)
}

/// How much of each message to answer (`meta_only`, `include_headers`).
fn detail(q: &QueryPairs) -> Result<Detail> {
    let meta_only = boolean(q, "meta_only")?;
    let headers = boolean(q, "include_headers")?;
    match (meta_only, headers) {
        (true, true) => Err(invalid(
            "include_headers needs the full email: it cannot be combined with meta_only=true"
                .into(),
        )),
        (true, false) => Ok(Detail::Meta),
        (false, headers) => Ok(Detail::Full { headers }),
    }
}

fn email_query(q: &QueryPairs) -> Result<EmailQuery> {
    let any_email = list(q, "any_email")?;
    if let Some(bad) = any_email.iter().find(|a| !looks_like_address(a)) {
        return Err(invalid(format!(
            "any_email must be a comma-separated list of email addresses; `{bad}` is not one"
        )));
    }
    let message_id = match text(q, "message_id")? {
        None => None,
        Some(v) => Some(
            MessageId::parse(&v)
                .ok_or_else(|| {
                    invalid(format!(
                        "message_id must be a Message-ID like <abc@example.com>, got `{v}`"
                    ))
                })?
                .bracketed(),
        ),
    };
    let before = date(q, "before")?;
    let after = date(q, "after")?;
    Ok(EmailQuery {
        account_id: text(q, "account_id")?,
        role: role(q)?,
        folder: text(q, "folder")?,
        from: address("from", text(q, "from")?)?,
        to: address("to", text(q, "to")?)?,
        any_email,
        before,
        after,
        thread_id: text(q, "thread_id")?,
        message_id,
        search: search_words(q)?,
        exclude_folders: list(q, "exclude_folders")?,
    })
}

// ---- handlers --------------------------------------------------------------------------

/// List emails from the index, newest first. Every filter combines with every other one
/// (`search` included). Pages are cut by keyset on (date, id), so new mail arriving between
/// two pages never makes a page repeat or skip an email.
#[utoipa::path(
    get, path = "/api/v1/emails", tag = "Emails",
    params(
        ("account_id" = Option<String>, Query, description = "Only this account's emails (404 if it is not one of yours)"),
        ("role" = Option<String>, Query, description = "In a folder with this role: inbox, sent, archive, drafts, trash, spam, all, important, starred, unknown"),
        ("folder" = Option<String>, Query, description = "In this folder: its provider_id (e.g. `INBOX`) or its id"),
        ("from" = Option<String>, Query, description = "Sent by this address"),
        ("to" = Option<String>, Query, description = "With this address among the To recipients"),
        ("any_email" = Option<String>, Query, description = "Comma-separated addresses; any of them as sender or among To, Cc, Bcc"),
        ("before" = Option<String>, Query, description = "Strictly before this date-time (`2024-05-01T10:00:00.000Z`, any RFC 3339, or a date)"),
        ("after" = Option<String>, Query, description = "Strictly after this date-time"),
        ("thread_id" = Option<String>, Query),
        ("message_id" = Option<String>, Query, description = "The RFC Message-ID, with or without angle brackets"),
        ("search" = Option<String>, Query, description = "Full text over subject, text body and addresses: every word must appear (whole words, case-insensitive; punctuation separates words and is never query syntax)"),
        ("exclude_folders" = Option<String>, Query, description = "Comma-separated folder provider_ids whose emails are left out; ignored with `folder`"),
        ("meta_only" = Option<bool>, Query, description = "`true`: `kind: 1_meta`, `body` and `body_plain` empty (faster)"),
        ("include_headers" = Option<bool>, Query, description = "`true`: the stored header lines in `headers` (not with meta_only)"),
        ("limit" = Option<u32>, Query, description = "Page size, 1–250 (default 100)"),
        ("cursor" = Option<String>, Query, description = "Cursor of the next page; it carries the filters, so the other parameters are ignored"),
    ),
    responses(
        (status = 200, description = "A page of emails", body = inline(ListEnvelope<EmailItem>)),
        (status = 400, description = "`errors/invalid_parameters`: a filter, `limit` or `cursor` is wrong", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 404, description = "`account_id` is not one of yours", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn list_emails(
    State(state): State<AppState>,
    caller: Caller,
    query: QueryPairs,
) -> Result<Json<ListEnvelope<EmailItem>>> {
    let (page, filters) = Page::with_filters(&query, FILTERS)?;
    let q = email_query(&filters)?;
    let detail = detail(&filters)?;
    let rows = read::list_emails(
        &state.engine,
        caller.tenant(),
        &q,
        detail,
        page.after.as_ref(),
        page.fetch_limit(),
    )
    .await?;
    let (rows, cursor) = page.finish(rows, EmailView::position);
    Ok(Json(ListEnvelope {
        object: "EmailList",
        items: rows.into_iter().map(|v| item(v, detail)).collect(),
        cursor,
    }))
}

/// One email, by its id, or by its provider_id with `account_id`.
#[utoipa::path(
    get, path = "/api/v1/emails/{email_id}", tag = "Emails",
    params(
        ("email_id" = String, Path, description = "Our id, or the provider_id (then `account_id` is required). A provider id holding `/` must be sent as `%2F`."),
        ("account_id" = Option<String>, Query, description = "The account, when `email_id` is a provider_id"),
        ("include_headers" = Option<bool>, Query, description = "`true`: the stored header lines in `headers`"),
    ),
    responses(
        (status = 200, description = "The email (`kind: 2_full`)", body = EmailItem),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 404, description = "`errors/resource_not_found`: no such email (or account) of yours", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn get_email(
    State(state): State<AppState>,
    caller: Caller,
    Path(email_id): Path<String>,
    query: QueryPairs,
) -> Result<Json<EmailItem>> {
    let detail = Detail::Full {
        headers: boolean(&query, "include_headers")?,
    };
    let account_id = text(&query, "account_id")?;
    let v = read::get_email(
        &state.engine,
        caller.tenant(),
        &email_id,
        account_id.as_deref(),
        detail,
    )
    .await?;
    Ok(Json(item(v, detail)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> QueryPairs {
        QueryPairs(
            pairs
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
        )
    }

    fn bad(pairs: &[(&str, &str)]) -> String {
        let e = email_query(&q(pairs))
            .and_then(|_| detail(&q(pairs)))
            .unwrap_err();
        assert_eq!(e.0.kind, ErrorKind::InvalidParameters, "{pairs:?}");
        e.0.detail
    }

    #[test]
    fn filters_parse() {
        let got = email_query(&q(&[
            ("account_id", "acc"),
            ("role", "sent"),
            ("any_email", "a@x.test, b@y.test"),
            ("before", "2024-05-02T00:00:00.000Z"),
            ("after", "2024-05-01"),
            ("message_id", "m@x.test"),
            ("search", "Invoice \"42\" -draft"),
            ("exclude_folders", "Spam,Trash"),
        ]))
        .unwrap();
        assert_eq!(got.account_id.as_deref(), Some("acc"));
        assert_eq!(got.role, Some(FolderRole::Sent));
        assert_eq!(got.any_email, ["a@x.test", "b@y.test"]);
        assert_eq!(got.before, Some(1_714_608_000_000));
        assert_eq!(got.after, Some(1_714_521_600_000));
        assert_eq!(got.message_id.as_deref(), Some("<m@x.test>"));
        assert_eq!(got.search, ["invoice", "42", "draft"]);
        assert_eq!(got.exclude_folders, ["Spam", "Trash"]);
        assert_eq!(detail(&q(&[])).unwrap(), Detail::Full { headers: false });
        assert_eq!(detail(&q(&[("meta_only", "true")])).unwrap(), Detail::Meta);
    }

    #[test]
    fn bad_values_name_the_parameter() {
        for (pairs, name) in [
            (vec![("role", "INBOX")], "role"),
            (vec![("before", "yesterday")], "before"),
            (vec![("after", "2024-13-01")], "after"),
            (vec![("from", "bob")], "from"),
            (vec![("any_email", "a@x.test,,b@x.test")], "any_email"),
            (vec![("any_email", "nobody")], "any_email"),
            (vec![("message_id", "no at sign")], "message_id"),
            (vec![("meta_only", "yes")], "meta_only"),
            (vec![("search", "*\"-")], "search"),
            (vec![("account_id", " ")], "account_id"),
            (
                vec![("meta_only", "true"), ("include_headers", "true")],
                "include_headers",
            ),
        ] {
            let detail = bad(&pairs);
            assert!(detail.contains(name), "{detail}");
        }
    }
}
