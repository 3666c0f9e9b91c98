//! Graph change-notification subscriptions on messages, per the "subscription resource type",
//! "Create subscription", "Update subscription", "Receive change notifications" and
//! "Lifecycle notifications" docs:
//!
//! - `POST /subscriptions` checks `changeType` (`created`, `updated`, `deleted`), a message
//!   `resource` (`me/messages`, `users/{id}/messages`, `me/mailFolders('…')/messages`), the
//!   expiration (in the future, at most 10,080 minutes out for messages), `clientState` (at most
//!   128 characters), then **validates** the `notificationUrl` (and the
//!   `lifecycleNotificationUrl`): a `POST {url}?validationToken=…` that must answer 200 with the
//!   token as `text/plain` within 10 s, else 400 `ValidationError` and no subscription.
//!   Graph wants HTTPS URLs; the fake also takes `http://` on loopback (the tests have no
//!   certificate), nothing else.
//! - `PATCH /subscriptions/{id}` renews (`expirationDateTime`, same limits); `DELETE` ends it;
//!   `GET` reads it; an unknown id is 404 `ResourceNotFound`.
//! - A change to a message posts `{"value": [{subscriptionId, subscriptionExpirationDateTime,
//!   changeType, resource, resourceData: {@odata.type, @odata.id, @odata.etag, id}, clientState,
//!   tenantId}]}` to every live subscription that asked for that change type, in the background
//!   (ids immutable when the subscription was created with `Prefer: IdType="ImmutableId"`).
//! - [`super::FakeMicrosoft::lifecycle`] posts a lifecycle event (`reauthorizationRequired`,
//!   `subscriptionRemoved`, `missed`) to the lifecycle URL; `subscriptionRemoved` also ends the
//!   subscription.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Map, Value, json};
use time::OffsetDateTime;

use super::mailbox::{GraphError, Msg, gerr};
use super::{iso7, now, uuid};

/// Messages' subscriptions live at most this long (minutes).
pub const MAX_MESSAGE_SUBSCRIPTION_MINUTES: i64 = 10_080;
/// How long Graph waits for the validation answer.
const VALIDATION_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub(super) struct Subscription {
    pub id: String,
    pub resource: String,
    pub change_types: Vec<String>,
    pub notification_url: url::Url,
    pub lifecycle_url: Option<url::Url>,
    pub client_state: Option<String>,
    pub expires: OffsetDateTime,
    /// Created with `Prefer: IdType="ImmutableId"`.
    pub immutable: bool,
}

/// The subscriptions and what became of the notifications sent.
#[derive(Debug, Default)]
pub(super) struct Subscriptions {
    pub live: HashMap<String, Subscription>,
    /// Notifications answered 2xx / not.
    pub delivered: Arc<(AtomicUsize, AtomicUsize)>,
}

fn bad(message: impl Into<String>) -> GraphError {
    gerr(400, "InvalidRequest", message)
}

/// An unknown subscription id.
pub(super) fn not_found(id: &str) -> GraphError {
    gerr(
        404,
        "ResourceNotFound",
        format!("The object '{id}' doesn't exist."),
    )
}

/// A notification URL Graph would call: HTTPS (or `http://` on loopback, see the module docs).
fn endpoint(v: Option<&Value>, what: &str) -> Result<Option<url::Url>, GraphError> {
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let u = v
        .as_str()
        .and_then(|s| url::Url::parse(s).ok())
        .ok_or_else(|| bad(format!("Invalid {what}.")))?;
    let loopback = matches!(u.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"));
    if u.scheme() != "https" && !(u.scheme() == "http" && loopback) {
        return Err(bad(format!(
            "The {what} must be an HTTPS URL ('{u}' is not)."
        )));
    }
    Ok(Some(u))
}

fn expiration(v: Option<&Value>) -> Result<OffsetDateTime, GraphError> {
    let at = v
        .and_then(Value::as_str)
        .and_then(|s| OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok())
        .ok_or_else(|| bad("expirationDateTime is required and must be a DateTimeOffset."))?;
    let t = now();
    if at <= t {
        return Err(bad("Subscription expiration must be in the future."));
    }
    if at > t + time::Duration::minutes(MAX_MESSAGE_SUBSCRIPTION_MINUTES) {
        return Err(bad(format!(
            "Subscription expiration can only be {MAX_MESSAGE_SUBSCRIPTION_MINUTES} minutes in the future."
        )));
    }
    Ok(at)
}

/// Whether `r` names messages Graph notifies about.
fn message_resource(r: &str) -> bool {
    let r = r.trim_start_matches('/').to_ascii_lowercase();
    r == "me/messages"
        || (r.starts_with("users/") && r.ends_with("/messages") && r.matches('/').count() == 2)
        || (r.starts_with("me/mailfolders('") && r.ends_with("')/messages"))
}

/// Graph's validation request: the token back as `text/plain`, 200, within 10 s.
async fn validate(url: &url::Url) -> bool {
    let token = format!(
        "Validation: Testing client application reachability for subscription Request-Id: {}",
        uuid()
    );
    let mut u = url.clone();
    u.query_pairs_mut().append_pair("validationToken", &token);
    let answer = reqwest::Client::new()
        .post(u)
        .header("content-type", "text/plain; charset=utf-8")
        .header("content-length", "0")
        .timeout(VALIDATION_TIMEOUT)
        .send()
        .await;
    let Ok(r) = answer else { return false };
    let plain = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().starts_with("text/plain"));
    r.status() == 200 && plain && r.text().await.is_ok_and(|b| b == token)
}

/// `POST /subscriptions` (see the module docs): the subscription to keep once validated.
pub(super) async fn create(
    body: &Map<String, Value>,
    immutable: bool,
) -> Result<Subscription, GraphError> {
    let change_types: Vec<String> = body
        .get("changeType")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("changeType is required."))?
        .split(',')
        .map(|c| c.trim().to_owned())
        .collect();
    if change_types.is_empty()
        || change_types
            .iter()
            .any(|c| !matches!(c.as_str(), "created" | "updated" | "deleted"))
    {
        return Err(bad("changeType must be created, updated and/or deleted."));
    }
    let resource = body
        .get("resource")
        .and_then(Value::as_str)
        .filter(|r| message_resource(r))
        .ok_or_else(|| bad("resource must name messages (me/messages)."))?
        .to_owned();
    let notification_url = endpoint(body.get("notificationUrl"), "notificationUrl")?
        .ok_or_else(|| bad("notificationUrl is required."))?;
    let lifecycle_url = endpoint(
        body.get("lifecycleNotificationUrl"),
        "lifecycleNotificationUrl",
    )?;
    let client_state = match body.get("clientState") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.len() <= 128 => Some(s.clone()),
        Some(_) => {
            return Err(bad(
                "clientState must be a string of at most 128 characters.",
            ));
        }
    };
    let expires = expiration(body.get("expirationDateTime"))?;
    for u in std::iter::once(&notification_url).chain(lifecycle_url.as_ref()) {
        if !validate(u).await {
            return Err(gerr(
                400,
                "ValidationError",
                "Subscription validation request failed. Notification endpoint must respond with 200 OK to validation request.",
            ));
        }
    }
    Ok(Subscription {
        id: uuid(),
        resource,
        change_types,
        notification_url,
        lifecycle_url,
        client_state,
        expires,
        immutable,
    })
}

/// `PATCH /subscriptions/{id}`: a new expiration.
pub(super) fn renew(
    subs: &mut Subscriptions,
    id: &str,
    body: &Map<String, Value>,
) -> Result<Value, GraphError> {
    let expires = expiration(body.get("expirationDateTime"))?;
    let s = subs.live.get_mut(id).ok_or_else(|| not_found(id))?;
    s.expires = expires;
    Ok(json(s))
}

pub(super) fn json(s: &Subscription) -> Value {
    json!({
        "id": s.id,
        "resource": s.resource,
        "applicationId": "24d3b144-21ae-4080-943f-7067b395b913",
        "changeType": s.change_types.join(","),
        "clientState": s.client_state,
        "notificationUrl": s.notification_url.as_str(),
        "lifecycleNotificationUrl": s.lifecycle_url.as_ref().map(url::Url::as_str),
        "expirationDateTime": iso7(s.expires),
        "creatorId": "8ee44408-0679-472c-bc2a-692812af3437",
        "includeResourceData": false,
        "latestSupportedTlsVersion": "v1_2",
        "encryptionCertificate": null,
        "encryptionCertificateId": null,
        "notificationUrlAppId": null,
    })
}

/// Posts `body` to `url` in the background, counting the answer.
fn post(delivered: &Arc<(AtomicUsize, AtomicUsize)>, url: url::Url, body: Value) {
    let delivered = delivered.clone();
    tokio::spawn(async move {
        let ok = reqwest::Client::new()
            .post(url)
            .json(&body)
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if ok {
            delivered.0.fetch_add(1, Ordering::SeqCst);
        } else {
            delivered.1.fetch_add(1, Ordering::SeqCst);
        }
    });
}

/// Notifies every live subscription that asked for `change` about message `m`.
pub(super) fn notify(subs: &Subscriptions, user_id: &str, tenant_id: &str, change: &str, m: &Msg) {
    let t = now();
    for s in subs.live.values() {
        if s.expires <= t || !s.change_types.iter().any(|c| c == change) {
            continue;
        }
        let id = if s.immutable { &m.immutable_id } else { &m.id };
        let resource = format!("Users/{user_id}/Messages/{id}");
        let body = json!({"value": [{
            "subscriptionId": s.id,
            "subscriptionExpirationDateTime": iso7(s.expires),
            "changeType": change,
            "resource": resource,
            "resourceData": {
                "@odata.type": "#Microsoft.Graph.Message",
                "@odata.id": resource,
                "@odata.etag": format!("W/\"{}\"", m.change_key),
                "id": id,
            },
            "clientState": s.client_state,
            "tenantId": tenant_id,
        }]});
        post(&subs.delivered, s.notification_url.clone(), body);
    }
}

/// Posts lifecycle event `event` for every subscription (see the module docs); answers how
/// many were told.
pub(super) fn lifecycle(subs: &mut Subscriptions, tenant_id: &str, event: &str) -> usize {
    let mut told = 0;
    for s in subs.live.values() {
        let Some(url) = s.lifecycle_url.clone() else {
            continue;
        };
        let body = json!({"value": [{
            "subscriptionId": s.id,
            "subscriptionExpirationDateTime": iso7(s.expires),
            "tenantId": tenant_id,
            "clientState": s.client_state,
            "lifecycleEvent": event,
        }]});
        post(&subs.delivered, url, body);
        told += 1;
    }
    if event == "subscriptionRemoved" {
        subs.live.clear();
    }
    told
}
