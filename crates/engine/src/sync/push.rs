//! Push subscriptions at the provider (a Graph change-notification subscription behind an
//! Outlook account's watch) and the notifications they bring.
//!
//! **The loop's side.** A watch that lives at the provider says so
//! (`Watch::subscription`): when the account's loop opens one, [`adopt`] stores the
//! subscription (id → account, the secret as a hash, the expiry; `push_subscriptions`,
//! migration 0016) and ends the account's older ones at the provider (a restart, a new
//! version of the account, another process that held the account before), so subscriptions
//! never pile up at Graph. Between passes [`tend`] does what lifecycle notifications asked
//! (a renewal now, or a new subscription) and keeps the stored expiry current. Deleting an
//! account ends its subscriptions first ([`end_for_account`]).
//!
//! **The notifications** (`POST /push/microsoft`, [`microsoft_notified`]) may reach any
//! process: each is checked against the stored subscription (its secret compared in constant
//! time; an unknown subscription or a wrong secret is ignored and logged without the secret),
//! then the account gets a pass by whichever process syncs it, exactly as a Gmail push
//! (`control::gmail_pushed`). The pass reads the delta feed from the stored links: a
//! notification is a hint, so lost, repeated or reordered ones cost nothing, and a push and a
//! poll that see the same change announce it once. Lifecycle notifications are stored on the
//! subscription's row for the loop: `reauthorizationRequired` → renew, `subscriptionRemoved`
//! → a new subscription (then a pass), `missed` → a pass.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use mailroom_providers::Mailbox;
use mailroom_providers::mailbox::Watch;
use mailroom_store::StoreError;
use mailroom_store::accounts::Account;
use mailroom_store::push_subscriptions::{self, Checked, PushSubscription, Requested};

use super::control::request_pass;
use crate::Engine;

/// How long deleting an account waits for its subscriptions to be ended at the provider.
const END_ON_DELETE: Duration = Duration::from_secs(5);

/// One notification of a body Graph posts (`{"value": [...]}`): a change, or a lifecycle
/// event (`lifecycleEvent`). Other fields (`changeType`, `resource`, …) are not needed: the
/// pass reads the changes from the delta feed.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Notification {
    pub subscription_id: String,
    /// The subscription's secret, as Graph carries it back (`clientState`).
    #[serde(default)]
    pub client_state: Option<SecretString>,
    #[serde(default)]
    pub lifecycle_event: Option<String>,
}

/// A notification body.
#[derive(Deserialize)]
pub struct Notifications {
    pub value: Vec<Notification>,
}

/// What became of a body's notifications.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Notified {
    /// Accounts given a pass.
    pub nudged: usize,
    /// Notifications ignored (unknown subscription, wrong secret).
    pub ignored: usize,
}

/// A subscription id as logged: the caller chose it, so it is cut short.
fn shown(id: &str) -> &str {
    match id.char_indices().nth(64) {
        Some((i, _)) => &id[..i],
        None => id,
    }
}

/// Graph's notifications (see the module docs). A failure to read or write the store is an
/// error (the route answers 500 and Graph sends the notification again).
pub async fn microsoft_notified(
    engine: &Engine,
    notifications: Notifications,
) -> Result<Notified, StoreError> {
    let now = engine.clock.now_ms();
    let mut accounts: Vec<String> = vec![];
    let mut out = Notified::default();
    for n in notifications.value {
        let presented = n.client_state.as_ref().map(|s| s.expose_secret());
        let checked = push_subscriptions::check(&engine.store, &n.subscription_id, presented);
        let why = match checked.await? {
            Checked::Valid(s) => Ok(s),
            Checked::Unknown => Err("for a subscription mailroom does not hold"),
            Checked::WrongSecret => Err("whose clientState is not its subscription's"),
        };
        let sub = match why {
            Ok(s) => s,
            Err(why) => {
                tracing::warn!(
                    subscription = shown(&n.subscription_id),
                    "a Graph notification {why}; ignored"
                );
                out.ignored += 1;
                continue;
            }
        };
        let asked = match n.lifecycle_event.as_deref() {
            None | Some("missed") => None,
            Some("reauthorizationRequired") => Some(Requested::Renew),
            Some("subscriptionRemoved") => Some(Requested::Replace),
            Some(other) => {
                tracing::info!(
                    subscription = %sub.id,
                    event = shown(other),
                    "an unknown Graph lifecycle event; a sync pass"
                );
                None
            }
        };
        if let Some(what) = asked {
            tracing::info!(subscription = %sub.id, account_id = %sub.account_id, ?what, "Graph lifecycle event");
            push_subscriptions::request(&engine.store, &sub.id, what, now).await?;
        }
        if !accounts.contains(&sub.account_id) {
            accounts.push(sub.account_id);
        }
    }
    for a in &accounts {
        request_pass(engine, a, now).await?;
    }
    out.nudged = accounts.len();
    Ok(out)
}

/// A watch just opened for `account`: its subscription (if it has one at the provider) is
/// stored, and the account's older ones are ended at the provider and forgotten (those the
/// provider could not end now stay stored: their notifications still count, and the next
/// watch tries again). A subscription that cannot be stored is ended at once and the watch
/// refused: notifications nobody can check would be lost.
pub(crate) async fn adopt(
    engine: &Engine,
    account: &Account,
    mailbox: &Mailbox,
    watch: Watch,
) -> Result<Watch, String> {
    let store = &engine.store;
    let older = match push_subscriptions::of_account(store, &account.id).await {
        Ok(o) => o,
        Err(e) => return Err(refuse(mailbox, &watch, e).await),
    };
    let current = watch.subscription().map(|s| s.id.clone());
    if let Some(s) = watch.subscription()
        && let Err(e) = push_subscriptions::insert(
            store,
            &s.id,
            &account.id,
            &s.secret,
            s.expires_at_ms,
            engine.clock.now_ms(),
        )
        .await
    {
        return Err(refuse(mailbox, &watch, e).await);
    }
    end_older(engine, account, mailbox, older, current.as_deref()).await;
    Ok(watch)
}

/// The account's watch is refused for good (no public URL any more, a send-only account):
/// the subscriptions earlier watches left are ended at the provider.
pub(crate) async fn refused(engine: &Engine, account: &Account, mailbox: &Mailbox) {
    match push_subscriptions::of_account(&engine.store, &account.id).await {
        Ok(older) if !older.is_empty() => end_older(engine, account, mailbox, older, None).await,
        Ok(_) => {}
        Err(e) => {
            tracing::warn!(account_id = %account.id, error = %e, "cannot read the push subscriptions")
        }
    }
}

/// Ends `older` subscriptions but `keep` at the provider and forgets those ended.
async fn end_older(
    engine: &Engine,
    account: &Account,
    mailbox: &Mailbox,
    older: Vec<PushSubscription>,
    keep: Option<&str>,
) {
    let stale: Vec<String> = older
        .into_iter()
        .map(|o| o.id)
        .filter(|id| Some(id.as_str()) != keep)
        .collect();
    if stale.is_empty() {
        return;
    }
    let ended = mailbox.end_push(&stale).await;
    tracing::debug!(account_id = %account.id, ended = ended.len(), stale = stale.len(), "older push subscriptions ended");
    if let Err(e) = push_subscriptions::delete(&engine.store, &ended).await {
        tracing::warn!(account_id = %account.id, error = %e, "could not forget ended push subscriptions");
    }
}

async fn refuse(mailbox: &Mailbox, watch: &Watch, e: StoreError) -> String {
    if let Some(s) = watch.subscription() {
        mailbox.end_push(std::slice::from_ref(&s.id)).await;
    }
    format!("cannot store the push subscription: {e}")
}

/// What the loop does with its watch after [`tend`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tended {
    Keep,
    /// Open a new watch now: the subscription was removed at the provider or could not be
    /// renewed.
    Replace,
    /// Drop the watch as a lost one (a new one after the watch backoff): its subscription is no
    /// longer stored, so another process took the account over and ended it, or the account is
    /// being deleted; the heartbeat is about to stop this loop.
    Drop,
}

/// Between passes: what lifecycle notifications asked of the watch's subscription (a renewal
/// now, a new subscription), and its stored expiry kept as the provider last confirmed it.
/// Nothing for a watch without a subscription. A store that cannot be read keeps the watch.
pub(crate) async fn tend(engine: &Engine, account: &Account, watch: &mut Watch) -> Tended {
    let Some((id, expires)) = watch
        .subscription()
        .map(|s| (s.id.clone(), s.expires_at_ms))
    else {
        return Tended::Keep;
    };
    let stored = match push_subscriptions::of_account(&engine.store, &account.id).await {
        Ok(rows) => rows.into_iter().find(|r| r.id == id),
        Err(e) => {
            tracing::warn!(account_id = %account.id, error = %e, "cannot read the push subscription");
            return Tended::Keep;
        }
    };
    let Some(stored) = stored else {
        return Tended::Drop;
    };
    let confirmed = match stored.requested {
        Some(Requested::Replace) => return Tended::Replace,
        Some(Requested::Renew) => match watch.renew().await {
            Ok(()) => watch.subscription().map_or(expires, |s| s.expires_at_ms),
            Err(e) => {
                tracing::info!(account_id = %account.id, error = %e, "the push subscription could not be renewed; a new one");
                return Tended::Replace;
            }
        },
        None if stored.expires_at == expires => return Tended::Keep,
        None => expires,
    };
    if let Err(e) = push_subscriptions::confirm(&engine.store, &id, confirmed).await {
        tracing::warn!(account_id = %account.id, error = %e, "cannot store the push subscription's expiry");
    }
    Tended::Keep
}

/// Before `account` is deleted: its subscriptions are ended at the provider, within a few
/// seconds and as far as the provider lets us (the rows go with the account; a subscription
/// left behind expires by itself, and its notifications find no subscription).
pub(crate) async fn end_for_account(engine: &Engine, account: &Account) {
    let ids: Vec<String> = match push_subscriptions::of_account(&engine.store, &account.id).await {
        Ok(rows) => rows.into_iter().map(|r| r.id).collect(),
        Err(e) => {
            tracing::warn!(account_id = %account.id, error = %e, "cannot read the account's push subscriptions");
            return;
        }
    };
    if ids.is_empty() {
        return;
    }
    let ended = tokio::time::timeout(END_ON_DELETE, async {
        let mailbox = engine.mailboxes().open(account).await.ok()?;
        Some(mailbox.end_push(&ids).await)
    })
    .await;
    match ended {
        Ok(Some(ended)) if ended.len() == ids.len() => {}
        _ => {
            tracing::info!(account_id = %account.id, "some push subscriptions of the deleted account could not be ended; they expire by themselves")
        }
    }
}
