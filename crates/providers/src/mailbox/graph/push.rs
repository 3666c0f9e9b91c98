//! Outlook push: a Graph change-notification subscription on the mailbox's messages
//! (`graph::subscriptions`), made by [`GraphMailbox::watch`] when mailroom has a public URL
//! Graph can post to, renewed by the watch itself before it expires, ended by
//! [`GraphMailbox::end_push`].
//!
//! The changes themselves arrive as notifications posted to mailroom's endpoint
//! (`POST /push/microsoft`), which nudges the account's sync loop; so, as Gmail's, this watch
//! only says "look once" right after it was made (what changed between the caller's last pass
//! and the subscription was notified to nobody), then times out, renewing the subscription
//! (`PATCH`) when a third of its lifetime is left. A renewal Graph refuses because the
//! subscription is gone (404) ends the watch with a transient error: the loop makes a new one.
//! Dropping the watch does not end the subscription at Graph (a drop cannot wait for a
//! request): the caller keeps its id and ends it with [`GraphMailbox::end_push`] (the next
//! watch of the account does, and deleting the account does).

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use secrecy::SecretString;
use tokio::sync::Semaphore;

use mailroom_core::ErrorKind;
use mailroom_core::account::AccountMode;

use super::GraphMailbox;
use crate::failure::{MailError, Protocol};
use crate::graph::GraphClient;
use crate::graph::subscriptions::{MAX_LIFETIME_MINUTES, NewSubscription};
use crate::mailbox::TokenSource;
use crate::mailbox::throttled::in_slot;
use crate::mailbox::watching::{PushSubscription, WatchOptions};

/// The longest lifetime asked for: Graph's limit, less a margin for clocks that disagree.
const MAX_LIFETIME: Duration = Duration::from_secs((MAX_LIFETIME_MINUTES as u64 - 10) * 60);

/// A watch of an Outlook mailbox through its Graph subscription (see the module docs).
pub(crate) struct GraphPushWatch {
    client: GraphClient,
    tokens: Arc<dyn TokenSource>,
    slots: Arc<Semaphore>,
    subscription: PushSubscription,
    /// How long each renewal asks the subscription to live.
    lifetime: Duration,
    renew_at: Instant,
    /// Not asked yet: the first `next` says "something may have changed".
    fresh: bool,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// When to renew a subscription that expires at `expires_at_ms`: when a third of `lifetime` is
/// left, or half-way when Graph granted less than that.
fn renewal_due(expires_at_ms: i64, lifetime: Duration) -> Instant {
    let left = (expires_at_ms - now_ms()).max(0);
    let margin = (lifetime.as_millis() / 3) as i64;
    let wait = (left - margin).max(left / 2);
    Instant::now() + Duration::from_millis(wait as u64)
}

impl GraphPushWatch {
    pub(crate) fn subscription(&self) -> &PushSubscription {
        &self.subscription
    }

    /// Runs a call in one of the mailbox's request slots with a fresh token when the old one is
    /// refused, after Graph's `Retry-After` when throttled (as the mailbox's own calls).
    async fn call<T, F, Fut>(&self, f: F) -> Result<T, MailError>
    where
        F: Fn(SecretString) -> Fut,
        Fut: std::future::Future<Output = Result<T, MailError>>,
    {
        in_slot(&self.slots, self.tokens.as_ref(), f).await
    }

    /// Waits at most `max_wait`: `Ok(true)` at once the first time, else `Ok(false)`, renewing
    /// the subscription when it is due. Cancel-safe: a renewal cut short is made again.
    pub(crate) async fn next(&mut self, max_wait: Duration) -> Result<bool, MailError> {
        if std::mem::take(&mut self.fresh) {
            return Ok(true);
        }
        let deadline = Instant::now() + max_wait;
        if self.renew_at > Instant::now() {
            tokio::time::sleep_until(deadline.min(self.renew_at).into()).await;
            if Instant::now() < self.renew_at {
                return Ok(false);
            }
        }
        self.renew().await?;
        Ok(false)
    }

    /// `PATCH`es the subscription for another lifetime (also what Graph's
    /// `reauthorizationRequired` asks for). A subscription Graph no longer has is a transient
    /// error: the watch is over, a new one makes a new subscription.
    pub(crate) async fn renew(&mut self) -> Result<(), MailError> {
        let id = self.subscription.id.clone();
        let until = now_ms() + self.lifetime.as_millis() as i64;
        let this = &*self;
        let renewed = this
            .call(|t| {
                let id = id.as_str();
                async move { this.client.renew_subscription(&t, id, until).await }
            })
            .await?;
        let Some(s) = renewed else {
            return Err(MailError::transient(
                Protocol::Graph,
                "the Graph subscription is gone (expired or removed); a new one is needed",
            ));
        };
        self.subscription.expires_at_ms = s.expires_at_ms;
        self.renew_at = renewal_due(s.expires_at_ms, self.lifetime);
        tracing::debug!(subscription = %s.id, expires_at = s.expires_at_ms, "Graph subscription renewed");
        Ok(())
    }
}

impl GraphMailbox {
    /// Subscribes to the mailbox's message changes (see the module docs); refused (Rejected)
    /// when mailroom has no public URL Graph could post to, or the account cannot read
    /// (send-only): the sync loop then polls.
    pub(crate) async fn watch(&self, options: WatchOptions) -> Result<GraphPushWatch, MailError> {
        let Some(url) = self.push_url.as_ref() else {
            return Err(MailError::rejected(
                Protocol::Graph,
                ErrorKind::InvalidAccount,
                "Outlook push needs MAILROOM_PUBLIC_URL (reachable by Microsoft Graph); polling",
            ));
        };
        if self.mode == AccountMode::Send {
            return Err(MailError::rejected(
                Protocol::Graph,
                ErrorKind::InvalidAccount,
                "a send-only Outlook account is not synced",
            ));
        }
        // 256 bits, URL-safe (Graph allows 128 characters): unguessable, one per subscription.
        let secret =
            SecretString::from(URL_SAFE_NO_PAD.encode(mailroom_core::id::random_bytes::<32>()));
        let lifetime = options.subscription_lifetime.min(MAX_LIFETIME);
        let until = now_ms() + lifetime.as_millis() as i64;
        let new = NewSubscription {
            notification_url: url,
            client_state: &secret,
            expires_at_ms: until,
        };
        let s = self
            .call(|t| {
                let new = &new;
                async move { self.client.create_subscription(&t, new).await }
            })
            .await?;
        tracing::debug!(subscription = %s.id, expires_at = s.expires_at_ms, "Graph subscription made");
        Ok(GraphPushWatch {
            client: self.client.clone(),
            tokens: self.tokens.clone(),
            slots: self.slots.clone(),
            renew_at: renewal_due(s.expires_at_ms, lifetime),
            subscription: PushSubscription {
                id: s.id,
                secret,
                expires_at_ms: s.expires_at_ms,
            },
            lifetime,
            fresh: true,
        })
    }

    /// Ends subscriptions at Graph (`DELETE`; one Graph no longer has is ended too). Answers
    /// the ids that are ended; the others (Graph unreachable, the grant revoked) are left to
    /// a later try or to their expiry.
    pub(crate) async fn end_push(&self, ids: &[String]) -> Vec<String> {
        let mut ended = Vec::with_capacity(ids.len());
        for id in ids {
            let done = self
                .call(|t| {
                    let id = id.as_str();
                    async move { self.client.delete_subscription(&t, id).await }
                })
                .await;
            match done {
                Ok(()) => ended.push(id.clone()),
                Err(e) => {
                    tracing::debug!(subscription = %id, error = %e, "could not end a Graph subscription")
                }
            }
        }
        ended
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_is_due_when_a_third_of_the_lifetime_is_left() {
        let day = Duration::from_secs(86_400);
        let due = renewal_due(now_ms() + 3 * 86_400_000, 3 * day);
        let wait = due - Instant::now();
        assert!(
            wait > day * 2 - Duration::from_secs(5) && wait <= day * 2,
            "{wait:?}"
        );
        // Graph granted less than a third of the lifetime: half-way.
        let due = renewal_due(now_ms() + 60_000, 3 * day);
        let wait = due - Instant::now();
        assert!(
            wait > Duration::from_secs(25) && wait <= Duration::from_secs(30),
            "{wait:?}"
        );
        // Already expired: at once.
        assert!(renewal_due(now_ms() - 1, day) <= Instant::now());
    }
}
