//! The use cases behind `/api/v1/webhooks`. The API parses the request into these types; the
//! rules (which events a source has, what a URL or header may be, which accounts exist) are
//! checked here, before anything is written.

use secrecy::{ExposeSecret, SecretString};

use mailroom_core::cursor::Position;
use mailroom_core::{ApiError, ErrorKind, new_id};
use mailroom_store::StoreError;
use mailroom_store::audit::{self, Action, NewEntry, Origin};
use mailroom_store::tenant::Tenant;
use mailroom_store::webhook_deliveries::{self as deliveries, Attempt, Delivery};
use mailroom_store::webhooks::{self, AccountRef, Header, Rename, Webhook};

use super::dispatch::secret_aad;
use super::sign;
use crate::Engine;

/// The events a source can deliver: the Unipile ones first (the SDK's enum), then mailroom's.
pub fn source_events(source: &str) -> Option<&'static [&'static str]> {
    match source {
        "email" => Some(&[
            "mail_received",
            "mail_sent",
            "mail_moved",
            "mail_read",
            "mail_deleted",
            "send_failed",
            "send_paused",
        ]),
        "email_tracking" => Some(&["mail_opened", "mail_link_clicked"]),
        "account_status" => Some(&[]),
        _ => None,
    }
}

/// The events a source delivers when the body names none (Unipile's defaults).
fn default_events(source: &str) -> Vec<String> {
    match source {
        "email" => vec!["mail_received".into()],
        "email_tracking" => vec!["mail_opened".into()],
        _ => vec![],
    }
}

/// The payload keys of the rename map per source (`unipile-api.md` §5.1).
fn data_keys(source: &str) -> &'static [&'static str] {
    match source {
        "email" => &[
            "email_id",
            "account_id",
            "webhook_name",
            "date",
            "from_attendee",
            "to_attendees",
            "cc_attendees",
            "bcc_attendees",
            "reply_to_attendees",
            "subject",
            "body",
            "body_plain",
            "message_id",
            "provider_id",
            "tracking_id",
            "read_date",
            "is_complete",
            "in_reply_to",
            "has_attachments",
            "attachments",
            "folders",
            "role",
            "origin",
            // mailroom's own email events' fields
            "event",
            "type",
            "detail",
        ],
        "email_tracking" => &[
            "event_id",
            "tracking_id",
            "type",
            "date",
            "email_id",
            "account_id",
            "ip",
            "user_agent",
            "url",
            "label",
            "custom_domain",
        ],
        _ => &[],
    }
}

/// Headers a webhook may not set: the signature's, and what HTTP itself decides.
const RESERVED_HEADERS: &[&str] = &[
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
];

/// `POST /webhooks` as parsed.
pub struct NewWebhook {
    pub source: String,
    pub request_url: String,
    pub name: Option<String>,
    pub format: Option<String>,
    pub events: Option<Vec<String>>,
    pub account_ids: Vec<String>,
    pub headers: Vec<Header>,
    pub data: Vec<Rename>,
    pub enabled: bool,
}

/// `PATCH /webhooks/{id}` as parsed: what is given changes.
#[derive(Default)]
pub struct WebhookChange {
    pub enabled: Option<bool>,
    pub request_url: Option<String>,
    pub events: Option<Vec<String>>,
    pub headers: Option<Vec<Header>>,
}

fn invalid(detail: impl Into<String>) -> ApiError {
    ApiError::new(ErrorKind::InvalidParameters, detail)
}

fn store_error(e: StoreError) -> ApiError {
    tracing::error!(error = %e, "store error in a webhook use case");
    ApiError::unexpected("an internal error occurred; it has been logged")
}

/// An http(s) URL with a host; an address literal outside the public ranges is refused now
/// unless private targets are allowed (names are checked at each delivery, after resolving).
fn check_url(raw: &str, allow_private: bool) -> Result<String, ApiError> {
    let url = url::Url::parse(raw)
        .map_err(|e| invalid(format!("request_url must be an absolute URL: {e}")))?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(invalid("request_url must be an http or https URL"));
    }
    let Some(host) = url.host() else {
        return Err(invalid("request_url has no host"));
    };
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid(
            "request_url must not carry credentials; use headers",
        ));
    }
    let ip = match host {
        url::Host::Ipv4(a) => Some(std::net::IpAddr::V4(a)),
        url::Host::Ipv6(a) => Some(std::net::IpAddr::V6(a)),
        url::Host::Domain(_) => None,
    };
    if let Some(ip) = ip
        && !allow_private
        && !mailroom_providers::egress::is_public(ip)
    {
        return Err(invalid(format!(
            "request_url points at the non-public address {ip}; the operator can allow it with MAILROOM_WEBHOOK_ALLOW_PRIVATE=true"
        )));
    }
    Ok(raw.to_owned())
}

fn check_events(source: &str, events: Vec<String>) -> Result<Vec<String>, ApiError> {
    let known = source_events(source).unwrap_or(&[]);
    if source == "account_status" {
        if events.is_empty() {
            return Ok(vec![]);
        }
        return Err(invalid(
            "an account_status webhook has no events: it receives every status change",
        ));
    }
    if events.is_empty() {
        return Err(invalid("events must name at least one event"));
    }
    let mut out: Vec<String> = Vec::new();
    for e in events {
        if !known.contains(&e.as_str()) {
            return Err(invalid(format!(
                "`{e}` is not an event of source {source}; its events are {}",
                known.join(", ")
            )));
        }
        if !out.contains(&e) {
            out.push(e);
        }
    }
    Ok(out)
}

fn check_headers(headers: &[Header]) -> Result<(), ApiError> {
    for h in headers {
        if reqwest::header::HeaderName::from_bytes(h.key.as_bytes()).is_err() {
            return Err(invalid(format!("`{}` is not a valid header name", h.key)));
        }
        if RESERVED_HEADERS.contains(&h.key.to_ascii_lowercase().as_str()) {
            return Err(invalid(format!(
                "header `{}` is set by mailroom and cannot be configured",
                h.key
            )));
        }
        if h.value.contains(['\r', '\n'])
            || reqwest::header::HeaderValue::from_str(&h.value).is_err()
        {
            return Err(ApiError::new(
                ErrorKind::InvalidHeaders,
                format!(
                    "the value of header `{}` is not a valid header value",
                    h.key
                ),
            ));
        }
    }
    Ok(())
}

/// Whether `tenant` sees webhook `w`: a key bound to accounts sees the webhooks limited to
/// some of its accounts (a webhook without `account_ids` hears every account: not for it).
fn visible(tenant: &Tenant, w: &Webhook) -> bool {
    tenant.bound_accounts().is_none()
        || (!w.account_ids.is_empty() && w.account_ids.iter().all(|a| tenant.sees(&a.id)))
}

/// Appends a `webhook.*` audit entry in `tx`. The details name the source and what changed,
/// never the URL (it may carry a token) nor the headers.
async fn audit_webhook(
    tx: &mut mailroom_store::WriteTx,
    action: Action,
    origin: &Origin,
    w: &Webhook,
    details: serde_json::Value,
    now_ms: i64,
) -> Result<(), StoreError> {
    audit::record_in(
        mailroom_store::Db::Tx(tx),
        NewEntry {
            workspace_id: &w.workspace_id,
            action,
            origin,
            // The entry belongs to an account only when the webhook is limited to one.
            account_id: match w.account_ids.as_slice() {
                [one] => Some(&one.id),
                _ => None,
            },
            target: Some(&w.id),
            details,
            now_ms,
        },
    )
    .await
}

/// One page of the webhooks `tenant` sees, oldest first, after `after`: at most `limit`. For
/// a bound key the others' webhooks are skipped by reading on, so a page is only short at the
/// end of the list.
pub async fn list(
    engine: &Engine,
    tenant: &Tenant,
    after: Option<&Position>,
    limit: u32,
) -> Result<Vec<Webhook>, ApiError> {
    let mut out = Vec::new();
    let mut from = after.cloned();
    loop {
        let rows = webhooks::list(&engine.store, tenant.workspace_id(), from.as_ref(), limit)
            .await
            .map_err(store_error)?;
        let read = rows.len();
        from = rows.last().map(|w| Position {
            last_id: w.id.clone(),
            last_date: w.created_at,
        });
        out.extend(rows.into_iter().filter(|w| visible(tenant, w)));
        if out.len() >= limit as usize || read < limit as usize {
            out.truncate(limit as usize);
            return Ok(out);
        }
    }
}

/// Creates a webhook; answers it and its secret (shown this once). A key bound to accounts
/// makes webhooks for its accounts: all of them when the request names none.
pub async fn create(
    engine: &Engine,
    tenant: &Tenant,
    origin: &Origin,
    mut req: NewWebhook,
) -> Result<(Webhook, SecretString), ApiError> {
    let workspace = tenant.workspace_id();
    if let Some(bound) = tenant.bound_accounts()
        && req.account_ids.is_empty()
    {
        req.account_ids = bound.to_vec();
    }
    let allow_private = engine.webhooks.config().allow_private;
    if source_events(&req.source).is_none() {
        return Err(invalid(format!(
            "source must be email, email_tracking or account_status, got `{}`",
            req.source
        )));
    }
    let request_url = check_url(&req.request_url, allow_private)?;
    let format = req.format.unwrap_or_else(|| "json".into());
    if format != "json" && format != "form" {
        return Err(invalid(format!(
            "format must be json or form, got `{format}`"
        )));
    }
    let events = check_events(
        &req.source,
        req.events.unwrap_or_else(|| default_events(&req.source)),
    )?;
    check_headers(&req.headers)?;
    let keys = data_keys(&req.source);
    for r in &req.data {
        if !keys.contains(&r.key.as_str()) {
            return Err(invalid(format!(
                "data key `{}` is not a field of source {}",
                r.key, req.source
            )));
        }
        if r.name.is_empty() {
            return Err(invalid("data names must not be empty"));
        }
    }
    let mut account_ids = Vec::new();
    for id in &req.account_ids {
        let account = tenant
            .account(&engine.store, id)
            .await
            .map_err(store_error)?
            .ok_or_else(|| invalid(format!("account_ids: no account {id}")))?;
        if !account_ids
            .iter()
            .any(|a: &AccountRef| a.id == account.id.as_str())
        {
            account_ids.push(AccountRef {
                id: account.id.to_string(),
                account_type: account.account_type.as_str().to_owned(),
                name: Some(account.name.clone()),
            });
        }
    }
    let id = new_id();
    let secret = sign::new_secret();
    let sealed = engine
        .vault
        .seal(&secret_aad(&id), secret.expose_secret().as_bytes())
        .await
        .map_err(store_error)?;
    let now = engine.clock.now_ms();
    let webhook = Webhook {
        id,
        workspace_id: workspace.to_owned(),
        name: req.name,
        source: req.source,
        request_url,
        format,
        events,
        account_ids,
        headers: req.headers,
        data: req.data,
        enabled: req.enabled,
        secret: sealed,
        old_secret: None,
        old_secret_until: None,
        disabled_reason: None,
        created_at: now,
        updated_at: now,
    };
    if webhook.account_ids.is_empty() && tenant.bound_accounts().is_some() {
        // Every account of the key is gone: a webhook for none of them would hear them all.
        return Err(invalid(
            "this key's accounts no longer exist: name account_ids",
        ));
    }
    let details = serde_json::json!({
        "source": webhook.source,
        "events": webhook.events.len(),
        "accounts": webhook.account_ids.len(),
    });
    let mut tx = engine.store.begin_write().await.map_err(store_error)?;
    webhooks::insert(&mut tx, &webhook)
        .await
        .map_err(store_error)?;
    audit_webhook(
        &mut tx,
        Action::WebhookCreated,
        origin,
        &webhook,
        details,
        now,
    )
    .await
    .map_err(store_error)?;
    tx.commit().await.map_err(store_error)?;
    tracing::info!(webhook = %webhook.id, source = %webhook.source, "webhook created");
    Ok((webhook, secret))
}

/// A webhook `tenant` sees; another workspace's (or, for a bound key, one not limited to its
/// accounts) is not found.
pub async fn get(engine: &Engine, tenant: &Tenant, id: &str) -> Result<Webhook, ApiError> {
    webhooks::get(&engine.store, tenant.workspace_id(), id)
        .await
        .map_err(store_error)?
        .filter(|w| visible(tenant, w))
        .ok_or_else(|| ApiError::not_found("webhook"))
}

pub async fn delete(
    engine: &Engine,
    tenant: &Tenant,
    origin: &Origin,
    id: &str,
) -> Result<(), ApiError> {
    let w = get(engine, tenant, id).await?;
    let mut tx = engine.store.begin_write().await.map_err(store_error)?;
    if !webhooks::delete(&mut tx, &w.workspace_id, &w.id)
        .await
        .map_err(store_error)?
    {
        return Err(ApiError::not_found("webhook"));
    }
    let now = engine.clock.now_ms();
    let details = serde_json::json!({ "source": w.source });
    audit_webhook(&mut tx, Action::WebhookDeleted, origin, &w, details, now)
        .await
        .map_err(store_error)?;
    tx.commit().await.map_err(store_error)?;
    tracing::info!(webhook = %id, "webhook deleted");
    Ok(())
}

/// Applies a `PATCH`; answers the webhook as saved.
pub async fn update(
    engine: &Engine,
    tenant: &Tenant,
    origin: &Origin,
    id: &str,
    change: WebhookChange,
) -> Result<Webhook, ApiError> {
    let w = get(engine, tenant, id).await?;
    let workspace = w.workspace_id.as_str();
    let changed: Vec<&str> = [
        ("request_url", change.request_url.is_some()),
        ("events", change.events.is_some()),
        ("headers", change.headers.is_some()),
        ("enabled", change.enabled.is_some()),
    ]
    .into_iter()
    .filter_map(|(name, given)| given.then_some(name))
    .collect();
    let url = match change.request_url {
        Some(u) => Some(check_url(&u, engine.webhooks.config().allow_private)?),
        None => None,
    };
    let events = match change.events {
        Some(events) => Some(check_events(&w.source, events)?),
        None => None,
    };
    if let Some(headers) = &change.headers {
        check_headers(headers)?;
    }
    let patch = webhooks::Patch {
        request_url: url.as_deref(),
        events: events.as_deref(),
        headers: change.headers.as_deref(),
        enabled: change.enabled,
    };
    let now = engine.clock.now_ms();
    let mut tx = engine.store.begin_write().await.map_err(store_error)?;
    if !webhooks::update(&mut tx, workspace, &w.id, patch, now)
        .await
        .map_err(store_error)?
    {
        return Err(ApiError::not_found("webhook"));
    }
    let details = serde_json::json!({ "changed": changed, "enabled": change.enabled });
    audit_webhook(&mut tx, Action::WebhookUpdated, origin, &w, details, now)
        .await
        .map_err(store_error)?;
    tx.commit().await.map_err(store_error)?;
    let w = get(engine, tenant, id).await?;
    if w.enabled {
        // Deliveries that waited while it was disabled may go now.
        deliveries::signal().notify_waiters();
    }
    Ok(w)
}

/// A new secret; the current one keeps signing for `overlap` (both signatures are sent), so
/// receivers can switch without losing a delivery. Answers the new secret and when the old
/// one stops signing.
pub async fn rotate_secret(
    engine: &Engine,
    tenant: &Tenant,
    origin: &Origin,
    id: &str,
    overlap: Option<std::time::Duration>,
) -> Result<(SecretString, i64), ApiError> {
    let w = get(engine, tenant, id).await?;
    let overlap = overlap.unwrap_or(engine.webhooks.config().rotation_overlap);
    let secret = sign::new_secret();
    let sealed = engine
        .vault
        .seal(&secret_aad(&w.id), secret.expose_secret().as_bytes())
        .await
        .map_err(store_error)?;
    let now = engine.clock.now_ms();
    let until = now + overlap.as_millis() as i64;
    let mut tx = engine.store.begin_write().await.map_err(store_error)?;
    if !webhooks::rotate_secret(&mut tx, &w.workspace_id, &w.id, &sealed, until, now)
        .await
        .map_err(store_error)?
    {
        return Err(ApiError::not_found("webhook"));
    }
    let details = serde_json::json!({ "changed": ["secret"] });
    audit_webhook(&mut tx, Action::WebhookUpdated, origin, &w, details, now)
        .await
        .map_err(store_error)?;
    tx.commit().await.map_err(store_error)?;
    tracing::info!(webhook = %w.id, "webhook secret rotated");
    Ok((secret, until))
}

/// One page of a webhook's deliveries, newest first, with their attempts.
pub async fn deliveries(
    engine: &Engine,
    tenant: &Tenant,
    id: &str,
    before_seq: Option<i64>,
    limit: u32,
) -> Result<Vec<(Delivery, Vec<Attempt>)>, ApiError> {
    let w = get(engine, tenant, id).await?;
    let rows = deliveries::list(&engine.store, &w.id, before_seq, limit)
        .await
        .map_err(store_error)?;
    let ids: Vec<String> = rows.iter().map(|d| d.id.clone()).collect();
    let mut attempts = deliveries::attempts(&engine.store, &ids)
        .await
        .map_err(store_error)?;
    Ok(rows
        .into_iter()
        .map(|d| {
            let a = attempts.remove(&d.id).unwrap_or_default();
            (d, a)
        })
        .collect())
}

/// Sends a delivery again (same `webhook-id`: receivers that deduplicate still can), with a
/// fresh budget of attempts.
pub async fn replay(
    engine: &Engine,
    tenant: &Tenant,
    id: &str,
    delivery_id: &str,
) -> Result<Delivery, ApiError> {
    let w = get(engine, tenant, id).await?;
    deliveries::replay(
        &engine.store,
        &w.id,
        delivery_id,
        engine.webhooks.config().max_attempts,
        engine.clock.now_ms(),
    )
    .await
    .map_err(store_error)?
    .ok_or_else(|| ApiError::not_found("delivery"))
}
