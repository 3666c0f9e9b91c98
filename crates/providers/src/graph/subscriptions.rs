//! Graph change-notification subscriptions on a mailbox's messages (Graph's "subscription
//! resource type", "Create", "Update" and "Delete subscription"): plain calls; the mailbox
//! seam adds the request slots, the token retry and the wait on throttling
//! (`mailbox::graph_push`).
//!
//! - `POST /subscriptions` with `changeType: created,updated,deleted`, `resource: me/messages`
//!   (every folder), the notification and lifecycle URLs, a `clientState` and an expiration
//!   (at most [`MAX_LIFETIME_MINUTES`] out for messages). Graph **validates** the URLs before it
//!   answers: it posts `?validationToken=…` to each and wants the token back within 10 s, so the
//!   endpoint must answer before the subscription exists anywhere but at Graph.
//! - `PATCH /subscriptions/{id}` with a new `expirationDateTime`: a renewal, also what
//!   `reauthorizationRequired` asks for.
//! - `DELETE /subscriptions/{id}`: ended; 404 means it already was.
//!
//! Every request carries `Prefer: IdType="ImmutableId"` ([`GraphClient`] sets it), so the
//! notifications name messages by the ids the sync stores.

use reqwest::Method;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::json;

use super::{GraphClient, drain, execute, read_json, unexpected};
use crate::failure::MailError;

/// Graph's longest lifetime of a subscription on messages (10,080 minutes, 7 days).
pub const MAX_LIFETIME_MINUTES: i64 = 10_080;

/// A subscription as Graph answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphSubscription {
    pub id: String,
    /// Unix ms.
    pub expires_at_ms: i64,
}

/// What a new subscription is made with.
pub struct NewSubscription<'a> {
    /// Where Graph posts change notifications (and, here, lifecycle notifications too).
    pub notification_url: &'a url::Url,
    /// The secret every notification of this subscription carries back.
    pub client_state: &'a SecretString,
    /// Unix ms.
    pub expires_at_ms: i64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Answer {
    id: String,
    expiration_date_time: String,
}

fn read(a: Answer) -> Result<GraphSubscription, MailError> {
    let expires_at_ms =
        mailroom_core::time_fmt::parse_ms(&a.expiration_date_time).ok_or_else(|| {
            unexpected(format!(
                "unreadable subscription expiration {:?}",
                a.expiration_date_time
            ))
        })?;
    Ok(GraphSubscription {
        id: a.id,
        expires_at_ms,
    })
}

impl GraphClient {
    /// `POST /subscriptions` on `me/messages` (see the module docs). A notification URL Graph
    /// cannot validate is Graph's 400 `ValidationError` (Rejected).
    pub async fn create_subscription(
        &self,
        token: &SecretString,
        new: &NewSubscription<'_>,
    ) -> Result<GraphSubscription, MailError> {
        let body = json!({
            "changeType": "created,updated,deleted",
            "resource": "me/messages",
            "notificationUrl": new.notification_url.as_str(),
            "lifecycleNotificationUrl": new.notification_url.as_str(),
            "clientState": new.client_state.expose_secret(),
            "expirationDateTime": mailroom_core::time_fmt::format_ms(new.expires_at_ms),
        });
        let resp = execute(
            self.request(Method::POST, self.url(&["subscriptions"]), token)
                .json(&body),
        )
        .await?;
        read(read_json(resp).await?)
    }

    /// `PATCH /subscriptions/{id}` with a new expiration; `None` when Graph no longer has it
    /// (404: expired or removed).
    pub async fn renew_subscription(
        &self,
        token: &SecretString,
        id: &str,
        expires_at_ms: i64,
    ) -> Result<Option<GraphSubscription>, MailError> {
        let body = json!({
            "expirationDateTime": mailroom_core::time_fmt::format_ms(expires_at_ms),
        });
        match execute(
            self.request(Method::PATCH, self.url(&["subscriptions", id]), token)
                .json(&body),
        )
        .await
        {
            Ok(resp) => read(read_json(resp).await?).map(Some),
            Err(e) if e.status == Some(404) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `DELETE /subscriptions/{id}`; a subscription Graph no longer has (404) is ended too.
    pub async fn delete_subscription(
        &self,
        token: &SecretString,
        id: &str,
    ) -> Result<(), MailError> {
        match execute(self.request(Method::DELETE, self.url(&["subscriptions", id]), token)).await {
            Ok(resp) => {
                drain(resp).await;
                Ok(())
            }
            Err(e) if e.status == Some(404) => Ok(()),
            Err(e) => Err(e),
        }
    }
}
