//! `GET /api/v1/audit`: the workspace's audit log, newest first (a key bound to accounts sees
//! the entries about its accounts only).

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::error::{ErrorBody, Result, err};
use crate::extract::QueryPairs;
use crate::pagination::{ListEnvelope, Page};
use crate::routes::emails::read::{date, text};
use crate::state::AppState;
use mailroom_core::ErrorKind;
use mailroom_core::time_fmt::format_ms;
use mailroom_store::audit::{self, Action, Entry, Filter};

/// The filters a cursor carries from page to page.
const FILTERS: &[&str] = &["action", "account_id", "actor", "after", "before"];

/// One audit entry.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEvent {
    /// Always `AuditEvent`.
    #[schema(example = "AuditEvent")]
    pub object: &'static str,
    pub id: String,
    /// When it happened.
    pub date: String,
    /// `account.linked`, `account.reconnected`, `account.updated`, `account.deleted`,
    /// `account.credentials_refused`, `key.created`, `key.revoked`, `webhook.created`,
    /// `webhook.updated`, `webhook.deleted`, `send.accepted`, `send.sent`, `send.refused` or
    /// `send.given_up`.
    pub action: String,
    /// `key:<key id>`, `hosted-link`, `cli` or `system`.
    pub actor: String,
    /// The `x-request-id` of the request that made the change (for sends: the request that
    /// accepted it).
    pub request_id: Option<String>,
    /// The client's address.
    pub source_ip: Option<String>,
    pub account_id: Option<String>,
    /// The id of what changed: an account, a key, a webhook, or a send's tracking id.
    pub target: Option<String>,
    /// Counts, provider kinds, error types. Never a secret, token, body or address.
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
}

fn view(e: Entry) -> AuditEvent {
    AuditEvent {
        object: "AuditEvent",
        id: e.id,
        date: format_ms(e.at),
        action: e.action,
        actor: e.actor,
        request_id: e.request_id,
        source_ip: e.source_ip,
        account_id: e.account_id,
        target: e.target,
        details: e.details,
    }
}

fn filter(q: &QueryPairs) -> Result<Filter> {
    let action = text(q, "action")?;
    if let Some(a) = &action
        && Action::parse(a).is_none()
    {
        let names: Vec<&str> = Action::ALL.iter().map(|a| a.as_str()).collect();
        return Err(err(
            ErrorKind::InvalidParameters,
            format!("action must be one of {}, got `{a}`", names.join(", ")),
        ));
    }
    Ok(Filter {
        action,
        account_id: text(q, "account_id")?,
        actor: text(q, "actor")?,
        after: date(q, "after")?,
        before: date(q, "before")?,
    })
}

/// The audit log, newest first: account, key, webhook and send changes with who made them
/// (`actor`), the request id and the client's address. Needs the `manage` scope.
#[utoipa::path(
    get, path = "/api/v1/audit", tag = "Audit",
    params(
        ("action" = Option<String>, Query, description = "Only this action, e.g. `account.deleted`"),
        ("account_id" = Option<String>, Query, description = "Only entries about this account (deleted ones included; 404 for an account a bound key does not see)"),
        ("actor" = Option<String>, Query, description = "Only this actor: `key:<key id>`, `hosted-link`, `cli` or `system`"),
        ("after" = Option<String>, Query, description = "Strictly after this date-time (`2024-05-01T10:00:00.000Z`, any RFC 3339, or a date)"),
        ("before" = Option<String>, Query, description = "Strictly before this date-time"),
        ("limit" = Option<u32>, Query, description = "Page size, 1–250 (default 100)"),
        ("cursor" = Option<String>, Query, description = "Cursor of the next page; it carries the filters, so the other parameters are ignored"),
    ),
    responses(
        (status = 200, description = "A page of audit entries", body = inline(ListEnvelope<AuditEvent>)),
        (status = 400, description = "`errors/invalid_parameters`: a filter, `limit` or `cursor` is wrong", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, description = "The key lacks the `manage` scope", body = ErrorBody),
        (status = 404, description = "`account_id` is not an account this key sees", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn list_audit(
    State(state): State<AppState>,
    caller: Caller,
    query: QueryPairs,
) -> Result<Json<ListEnvelope<AuditEvent>>> {
    let (page, filters) = Page::with_filters(&query, FILTERS)?;
    // An audit position is numeric; a cursor of another list (or an edited one) is the
    // client's mistake, not the store's.
    if page
        .after
        .as_ref()
        .is_some_and(|p| p.last_id.parse::<i64>().is_err())
    {
        return Err(err(
            ErrorKind::InvalidParameters,
            "cursor is not a cursor of GET /audit",
        ));
    }
    let f = filter(&filters)?;
    if let Some(a) = &f.account_id
        && !caller.tenant().sees(a)
    {
        return Err(err(
            ErrorKind::ResourceNotFound,
            format!("account {a} not found"),
        ));
    }
    let rows = audit::list(
        state.store(),
        caller.tenant(),
        &f,
        page.after.as_ref(),
        page.fetch_limit(),
    )
    .await?;
    let (rows, cursor) = page.finish(rows, Entry::position);
    Ok(Json(ListEnvelope {
        object: "AuditEventList",
        items: rows.into_iter().map(view).collect(),
        cursor,
    }))
}
