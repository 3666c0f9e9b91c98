//! `/api/v1/webhooks`: subscribe to events, manage the subscriptions, read the delivery log,
//! replay a delivery, rotate the signing secret.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use secrecy::ExposeSecret;
use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::fields::Fields;
use crate::auth::Caller;
use crate::error::{ErrorBody, Result, err};
use crate::extract::{JsonObject, QueryPairs};
use crate::pagination::{ListEnvelope, Page};
use crate::state::AppState;
use mailroom_core::ErrorKind;
use mailroom_core::account::AccountType;
use mailroom_core::cursor::Position;
use mailroom_core::time_fmt::format_ms;
use mailroom_engine::webhooks::manage::{self, NewWebhook, WebhookChange};
use mailroom_store::webhook_deliveries::{Attempt, Delivery};
use mailroom_store::webhooks::{Header, Rename, Webhook};

/// The events the Unipile SDK's webhook schema knows; mailroom's others are listed apart (in
/// `mailroom_events`) so `webhook.getAll()` validates.
const SDK_EVENTS: &[&str] = &[
    "message_received",
    "message_read",
    "message_reaction",
    "mail_sent",
    "mail_received",
    "mail_opened",
    "mail_link_clicked",
];

// ---- response shapes -------------------------------------------------------------------

/// A webhook subscription.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookView {
    #[schema(example = "Webhook")]
    pub object: &'static str,
    pub id: String,
    /// Always `AUTO`.
    #[serde(rename = "type")]
    #[schema(example = "AUTO")]
    pub type_: &'static str,
    /// `email`, `email_tracking` or `account_status`.
    pub source: String,
    /// Absent when it has none (the SDK's schema refuses `null`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub request_url: String,
    /// `json` or `form`.
    pub format: String,
    pub enabled: bool,
    /// Why mailroom disabled it (the receiver answered 410 Gone); absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disabled_reason: Option<String>,
    /// The accounts it is limited to (empty: all). `type` as the SDK names it (`GOOGLE`).
    pub account_ids: Vec<AccountRefView>,
    pub headers: Vec<HeaderView>,
    pub data: Vec<RenameView>,
    /// Its Unipile events (absent for `account_status`, which has none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub events: Option<Vec<String>>,
    /// mailroom's own events it receives (`mail_moved`, `mail_read`, `mail_deleted`,
    /// `send_failed`, `send_paused`), kept out of `events`, whose values the Unipile SDK checks.
    pub mailroom_events: Vec<String>,
    pub created_at: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AccountRefView {
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(rename = "type")]
    pub type_: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct HeaderView {
    pub key: String,
    pub value: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RenameView {
    pub name: String,
    pub key: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookCreated {
    #[schema(example = "WebhookCreated")]
    pub object: &'static str,
    pub webhook_id: String,
    /// The Standard Webhooks signing secret (`whsec_…`), shown this once.
    pub secret: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookDeleted {
    #[schema(example = "WebhookDeleted")]
    pub object: &'static str,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookSecretRotated {
    #[schema(example = "WebhookSecretRotated")]
    pub object: &'static str,
    pub webhook_id: String,
    /// The new secret, shown this once; it signs from now on.
    pub secret: String,
    /// Until then the previous secret signs too (two signatures in `webhook-signature`).
    pub previous_secret_expires_at: String,
}

/// One delivery of an event to a webhook, with every attempt.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryView {
    #[schema(example = "WebhookDelivery")]
    pub object: &'static str,
    pub id: String,
    pub webhook_id: String,
    /// The event's id: the `webhook-id` header of every attempt.
    pub event_id: String,
    pub event: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
    /// `pending`, `delivering`, `delivered` or `failed` (out of attempts, or 410 Gone).
    pub status: String,
    pub attempts: Vec<AttemptView>,
    /// When the next attempt is due (pending deliveries).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    pub created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivered_at: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AttemptView {
    pub attempt: i64,
    pub at: String,
    /// The receiver's HTTP status; absent when it did not answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<i64>,
    pub latency_ms: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Body of `POST /webhooks`.
#[allow(dead_code)] // documents the body; requests are read field by field for precise errors
#[derive(Debug, ToSchema)]
pub struct CreateWebhook {
    /// `email`, `email_tracking` or `account_status`.
    #[schema(example = "email")]
    source: String,
    request_url: String,
    /// Sent as `webhook_name` in email events.
    name: Option<String>,
    /// `json` (default) or `form` (urlencoded).
    format: Option<String>,
    /// `email`: `mail_received` (default), `mail_sent`, and mailroom's `mail_moved`,
    /// `mail_read`, `mail_deleted`, `send_failed`, `send_paused`; `email_tracking`: `mail_opened` (default),
    /// `mail_link_clicked`; `account_status`: none.
    events: Option<Vec<String>>,
    /// Limit to these accounts (default: all, present and future).
    account_ids: Option<Vec<String>>,
    /// Sent with every delivery.
    #[schema(value_type = Option<Vec<Object>>)]
    headers: Option<Vec<HeaderView>>,
    /// Rename map: payload field `key` is sent as `name`.
    #[schema(value_type = Option<Vec<Object>>)]
    data: Option<Vec<RenameView>>,
    /// Default true.
    enabled: Option<bool>,
}

/// Body of `PATCH /webhooks/{id}`: what is given changes.
#[allow(dead_code)]
#[derive(Debug, ToSchema)]
pub struct UpdateWebhook {
    enabled: Option<bool>,
    request_url: Option<String>,
    events: Option<Vec<String>>,
    #[schema(value_type = Option<Vec<Object>>)]
    headers: Option<Vec<HeaderView>>,
}

/// Body of `POST /webhooks/{id}/rotate-secret` (optional).
#[allow(dead_code)]
#[derive(Debug, ToSchema)]
pub struct RotateSecret {
    /// How long the previous secret keeps signing, in seconds (default 86400).
    overlap_seconds: Option<u64>,
}

fn sdk_type(t: &str) -> String {
    AccountType::parse(t)
        .map(|t| t.source_name().to_owned())
        .unwrap_or_else(|| t.to_owned())
}

fn view(w: &Webhook) -> WebhookView {
    let (sdk, ours): (Vec<String>, Vec<String>) = w
        .events
        .iter()
        .cloned()
        .partition(|e| SDK_EVENTS.contains(&e.as_str()));
    WebhookView {
        object: "Webhook",
        id: w.id.clone(),
        type_: "AUTO",
        source: w.source.clone(),
        name: w.name.clone(),
        request_url: w.request_url.clone(),
        format: w.format.clone(),
        enabled: w.enabled,
        disabled_reason: w.disabled_reason.clone(),
        account_ids: w
            .account_ids
            .iter()
            .map(|a| AccountRefView {
                id: a.id.clone(),
                name: a.name.clone(),
                type_: sdk_type(&a.account_type),
            })
            .collect(),
        headers: w
            .headers
            .iter()
            .map(|h| HeaderView {
                key: h.key.clone(),
                value: h.value.clone(),
            })
            .collect(),
        data: w
            .data
            .iter()
            .map(|r| RenameView {
                name: r.name.clone(),
                key: r.key.clone(),
            })
            .collect(),
        events: (w.source != "account_status").then_some(sdk),
        mailroom_events: ours,
        created_at: format_ms(w.created_at),
    }
}

fn delivery_view(d: Delivery, attempts: Vec<Attempt>) -> DeliveryView {
    use mailroom_store::webhook_deliveries::DeliveryStatus;
    DeliveryView {
        object: "WebhookDelivery",
        next_attempt_at: (d.status == DeliveryStatus::Pending).then(|| format_ms(d.run_after)),
        id: d.id,
        webhook_id: d.webhook_id.unwrap_or_default(),
        event_id: d.event_id,
        event: d.event_kind,
        account_id: d.account_id,
        status: d.status.as_str().to_owned(),
        attempts: attempts
            .into_iter()
            .map(|a| AttemptView {
                attempt: a.attempt,
                at: format_ms(a.started_at),
                status: a.status_code,
                latency_ms: a.latency_ms,
                error: a.error,
            })
            .collect(),
        last_error: d.last_error,
        created_at: format_ms(d.created_at),
        delivered_at: d.delivered_at.map(format_ms),
    }
}

// ---- body parsing ----------------------------------------------------------------------

fn invalid(detail: impl Into<String>) -> crate::error::Error {
    err(ErrorKind::InvalidParameters, detail)
}

fn strings(body: &Map<String, Value>, name: &str) -> Result<Option<Vec<String>>> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| match v {
                Value::String(s) if !s.is_empty() => Ok(s.clone()),
                _ => Err(invalid(format!(
                    "{name} must be an array of non-empty strings"
                ))),
            })
            .collect::<Result<Vec<_>>>()
            .map(Some),
        Some(_) => Err(invalid(format!("{name} must be an array of strings"))),
    }
}

/// `[{a, b}]` arrays of string pairs (`headers`: key/value; `data`: name/key).
fn pairs(
    body: &Map<String, Value>,
    name: &str,
    first: &str,
    second: &str,
) -> Result<Option<Vec<(String, String)>>> {
    let bad = || {
        invalid(format!(
            "{name} must be an array of {{\"{first}\": string, \"{second}\": string}}"
        ))
    };
    match body.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                let a = v.get(first).and_then(Value::as_str).ok_or_else(bad)?;
                let b = v.get(second).and_then(Value::as_str).ok_or_else(bad)?;
                if a.is_empty() {
                    return Err(bad());
                }
                Ok((a.to_owned(), b.to_owned()))
            })
            .collect::<Result<Vec<_>>>()
            .map(Some),
        Some(_) => Err(bad()),
    }
}

fn headers(body: &Map<String, Value>) -> Result<Option<Vec<Header>>> {
    Ok(pairs(body, "headers", "key", "value")?.map(|v| {
        v.into_iter()
            .map(|(key, value)| Header { key, value })
            .collect()
    }))
}

fn bool_opt(body: &Map<String, Value>, name: &str) -> Result<Option<bool>> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(invalid(format!("{name} must be true or false"))),
    }
}

// ---- handlers --------------------------------------------------------------------------

/// List the workspace's webhooks, oldest first.
#[utoipa::path(
    get, path = "/api/v1/webhooks", tag = "Webhooks",
    params(("limit" = Option<u32>, Query, description = "1–250, default 100"), ("cursor" = Option<String>, Query)),
    responses((status = 200, body = ListEnvelope<WebhookView>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("api_key" = []))
)]
pub async fn list_webhooks(
    State(state): State<AppState>,
    caller: Caller,
    query: QueryPairs,
) -> Result<Json<ListEnvelope<WebhookView>>> {
    let page = Page::from_query(&query)?;
    let rows = manage::list(
        &state.engine,
        caller.tenant(),
        page.after.as_ref(),
        page.fetch_limit(),
    )
    .await?;
    let (rows, cursor) = page.finish(rows, |w| Position {
        last_id: w.id.clone(),
        last_date: w.created_at,
    });
    Ok(Json(ListEnvelope {
        object: "WebhookList",
        items: rows.iter().map(view).collect(),
        cursor,
    }))
}

/// Subscribe a URL to events. Every delivery is signed (Standard Webhooks: `webhook-id`,
/// `webhook-timestamp`, `webhook-signature`) with the secret answered here, once.
#[utoipa::path(
    post, path = "/api/v1/webhooks", tag = "Webhooks",
    request_body = CreateWebhook,
    responses(
        (status = 201, body = WebhookCreated),
        (status = 400, description = "Missing or invalid field", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 422, description = "`errors/invalid_headers`", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn create_webhook(
    State(state): State<AppState>,
    caller: Caller,
    JsonObject(body): JsonObject,
) -> Result<(StatusCode, Json<WebhookCreated>)> {
    let f = Fields(&body);
    let req = NewWebhook {
        source: f.str_req("source")?,
        request_url: f.str_req("request_url")?,
        name: f.str_opt("name")?,
        format: f.str_opt("format")?,
        events: strings(&body, "events")?,
        account_ids: strings(&body, "account_ids")?.unwrap_or_default(),
        headers: headers(&body)?.unwrap_or_default(),
        data: pairs(&body, "data", "name", "key")?
            .unwrap_or_default()
            .into_iter()
            .map(|(name, key)| Rename { name, key })
            .collect(),
        enabled: bool_opt(&body, "enabled")?.unwrap_or(true),
    };
    let (w, secret) = manage::create(&state.engine, caller.tenant(), caller.origin(), req).await?;
    Ok((
        StatusCode::CREATED,
        Json(WebhookCreated {
            object: "WebhookCreated",
            webhook_id: w.id,
            secret: secret.expose_secret().to_owned(),
        }),
    ))
}

/// One webhook.
#[utoipa::path(
    get, path = "/api/v1/webhooks/{webhook_id}", tag = "Webhooks",
    params(("webhook_id" = String, Path)),
    responses((status = 200, body = WebhookView), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("api_key" = []))
)]
pub async fn get_webhook(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<WebhookView>> {
    let w = manage::get(&state.engine, caller.tenant(), &id).await?;
    Ok(Json(view(&w)))
}

/// Change a webhook: `enabled` (re-enabling one disabled by a 410 Gone), `request_url`,
/// `events`, `headers`.
#[utoipa::path(
    patch, path = "/api/v1/webhooks/{webhook_id}", tag = "Webhooks",
    params(("webhook_id" = String, Path)),
    request_body = UpdateWebhook,
    responses((status = 200, body = WebhookView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("api_key" = []))
)]
pub async fn update_webhook(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    JsonObject(body): JsonObject,
) -> Result<Json<WebhookView>> {
    let f = Fields(&body);
    let change = WebhookChange {
        enabled: bool_opt(&body, "enabled")?,
        request_url: f.str_opt("request_url")?,
        events: strings(&body, "events")?,
        headers: headers(&body)?,
    };
    if change.enabled.is_none()
        && change.request_url.is_none()
        && change.events.is_none()
        && change.headers.is_none()
    {
        return Err(err(
            ErrorKind::MissingParameters,
            "give at least one of enabled, request_url, events, headers",
        ));
    }
    let w = manage::update(&state.engine, caller.tenant(), caller.origin(), &id, change).await?;
    Ok(Json(view(&w)))
}

/// Delete a webhook; its pending deliveries are dropped.
#[utoipa::path(
    delete, path = "/api/v1/webhooks/{webhook_id}", tag = "Webhooks",
    params(("webhook_id" = String, Path)),
    responses((status = 200, body = WebhookDeleted), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("api_key" = []))
)]
pub async fn delete_webhook(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<WebhookDeleted>> {
    manage::delete(&state.engine, caller.tenant(), caller.origin(), &id).await?;
    Ok(Json(WebhookDeleted {
        object: "WebhookDeleted",
    }))
}

/// A new signing secret; the previous one keeps signing during the overlap (default 24 h),
/// so both signatures are sent meanwhile.
#[utoipa::path(
    post, path = "/api/v1/webhooks/{webhook_id}/rotate-secret", tag = "Webhooks",
    params(("webhook_id" = String, Path)),
    request_body(content = Option<RotateSecret>),
    responses((status = 200, body = WebhookSecretRotated), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("api_key" = []))
)]
pub async fn rotate_secret(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<WebhookSecretRotated>> {
    // The body is optional, so it is read whatever its Content-Type says.
    let body: Map<String, Value> = if body.iter().all(u8::is_ascii_whitespace) {
        Map::new()
    } else {
        match serde_json::from_slice(&body) {
            Ok(Value::Object(m)) => m,
            _ => {
                return Err(err(
                    ErrorKind::MalformedRequest,
                    "the body must be a JSON object (or empty)",
                ));
            }
        }
    };
    let overlap = match body.get("overlap_seconds") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_u64() {
            Some(s) if s <= 30 * 24 * 3600 => Some(std::time::Duration::from_secs(s)),
            _ => {
                return Err(invalid(
                    "overlap_seconds must be a whole number of seconds, at most 30 days",
                ));
            }
        },
    };
    let (secret, until) = manage::rotate_secret(
        &state.engine,
        caller.tenant(),
        caller.origin(),
        &id,
        overlap,
    )
    .await?;
    Ok(Json(WebhookSecretRotated {
        object: "WebhookSecretRotated",
        webhook_id: id,
        secret: secret.expose_secret().to_owned(),
        previous_secret_expires_at: format_ms(until),
    }))
}

/// The delivery log of a webhook, newest first: each delivery with every attempt (time, HTTP
/// status, latency, error).
#[utoipa::path(
    get, path = "/api/v1/webhooks/{webhook_id}/deliveries", tag = "Webhooks",
    params(("webhook_id" = String, Path), ("limit" = Option<u32>, Query, description = "1–250, default 100"), ("cursor" = Option<String>, Query)),
    responses((status = 200, body = ListEnvelope<DeliveryView>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("api_key" = []))
)]
pub async fn list_deliveries(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    query: QueryPairs,
) -> Result<Json<ListEnvelope<DeliveryView>>> {
    let page = Page::from_query(&query)?;
    let rows = manage::deliveries(
        &state.engine,
        caller.tenant(),
        &id,
        page.after.as_ref().map(|p| p.last_date),
        page.fetch_limit(),
    )
    .await?;
    let (rows, cursor) = page.finish(rows, |(d, _)| Position {
        last_id: d.id.clone(),
        last_date: d.seq,
    });
    Ok(Json(ListEnvelope {
        object: "WebhookDeliveryList",
        items: rows.into_iter().map(|(d, a)| delivery_view(d, a)).collect(),
        cursor,
    }))
}

/// Send a delivery again, now, with the same `webhook-id` and a fresh budget of attempts
/// (a delivery still pending is left as it is).
#[utoipa::path(
    post, path = "/api/v1/webhooks/{webhook_id}/deliveries/{delivery_id}/replay", tag = "Webhooks",
    params(("webhook_id" = String, Path), ("delivery_id" = String, Path)),
    responses((status = 200, body = DeliveryView), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("api_key" = []))
)]
pub async fn replay_delivery(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, delivery_id)): Path<(String, String)>,
) -> Result<Json<DeliveryView>> {
    let d = manage::replay(&state.engine, caller.tenant(), &id, &delivery_id).await?;
    Ok(Json(delivery_view(d, vec![])))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The SDK's account types: a Gmail account is `GOOGLE` there, not `GOOGLE_OAUTH`.
    #[test]
    fn account_types_are_the_sdks() {
        assert_eq!(sdk_type("GOOGLE_OAUTH"), "GOOGLE");
        assert_eq!(sdk_type("OUTLOOK"), "OUTLOOK");
        assert_eq!(sdk_type("MAIL"), "MAIL");
    }

    #[test]
    fn mailroom_events_are_kept_out_of_the_sdk_enum() {
        let w = Webhook {
            id: "w".into(),
            workspace_id: "ws".into(),
            name: None,
            source: "email".into(),
            request_url: "https://example.com/".into(),
            format: "json".into(),
            events: vec!["mail_deleted".into(), "mail_received".into()],
            account_ids: vec![mailroom_store::webhooks::AccountRef {
                id: "a".into(),
                account_type: "GOOGLE_OAUTH".into(),
                name: None,
            }],
            headers: vec![],
            data: vec![],
            enabled: true,
            secret: vec![],
            old_secret: None,
            old_secret_until: None,
            disabled_reason: None,
            created_at: 0,
            updated_at: 0,
        };
        let v = serde_json::to_value(view(&w)).unwrap();
        assert_eq!(v["events"], serde_json::json!(["mail_received"]));
        assert_eq!(v["mailroom_events"], serde_json::json!(["mail_deleted"]));
        assert_eq!(
            v["account_ids"],
            serde_json::json!([{"id": "a", "type": "GOOGLE"}])
        );
        assert!(v.get("name").is_none());
    }
}
