//! Push on the seam: [`Mailbox::watch`] opens a [`Watch`] that says which folders changed, so
//! the sync loop runs a pass when the server has news instead of on a timer.
//!
//! IMAP accounts watch over one dedicated session of the account's connection budget (held as
//! long as the watch lives; the commands keep the other one; see `session_pool`): NOTIFY for
//! every folder where the server offers it, else IDLE on INBOX only
//! ([`Watch::covers_all_folders`] tells which, so the caller sweeps the other folders itself);
//! see `imap_smtp::watch`. Gmail accounts watch through Cloud Pub/Sub when the operator set
//! it up: `users.watch` on the topic, the changes pushed to mailroom's endpoint (which nudges
//! the sync loop), the watch renewed a day before it expires; without a topic their `watch`
//! is refused and the loop polls. Outlook accounts watch through a Graph change-notification
//! subscription on their messages when mailroom has a public URL (`MAILROOM_PUBLIC_URL`):
//! Graph posts the changes to mailroom's endpoint (`POST /push/microsoft`, which nudges the
//! sync loop), the watch renews the subscription when a third of its lifetime
//! ([`WatchOptions::subscription_lifetime`]) is left; without a public URL their `watch` is
//! refused and the loop polls (see `graph::push`).
//!
//! A watch that lives at the provider (a Graph subscription) says so with
//! [`Watch::subscription`]: its id and the secret its notifications carry, which the caller
//! keeps so that any process can check a notification, and with which it ends the
//! subscription later ([`Mailbox::end_push`]): dropping such a watch does not end it at the
//! provider.
//!
//! A watch reports changes from the moment [`Mailbox::watch`] returns: sync once after it to
//! catch what happened before. [`Watch::next`] is cancel-safe (it can sit in a `select!` with
//! a shutdown signal). A lost connection ends the watch with a transient [`MailError`]: open
//! another. Dropping a watch ends it (but see above for subscriptions).

use std::time::Duration;

use secrecy::SecretString;

use super::Mailbox;
use crate::failure::MailError;
use crate::imap_smtp::watch::{IDLE_REISSUE, ImapWatch};

/// What [`Watch::next`] saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Changes {
    /// Folders (IMAP names, as [`Mailbox::list_folders`] spells them) where something changed
    /// (new, expunged or re-flagged mail, or the folder was created or deleted). Empty when the
    /// server said something changed without saying where: look at every folder.
    Folders(Vec<String>),
    /// Nothing within the wait.
    Timeout,
}

/// How a watch runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatchOptions {
    /// How often IMAP IDLE is ended and issued again ([`IDLE_REISSUE`], 25 minutes: RFC 2177
    /// servers may log off a client idle for 30; held between 10 ms and 29 minutes). Tests
    /// shorten it.
    pub reissue_every: Duration,
    /// How long a subscription at the provider (Graph) is asked to live; it is renewed when a
    /// third of that is left. 3 days by default (renewed every 2), held to Graph's limit for
    /// messages (7 days). Tests shorten it to see renewals.
    pub subscription_lifetime: Duration,
}

/// [`WatchOptions::subscription_lifetime`] by default.
pub const SUBSCRIPTION_LIFETIME: Duration = Duration::from_secs(3 * 86_400);

impl Default for WatchOptions {
    fn default() -> Self {
        Self {
            reissue_every: IDLE_REISSUE,
            subscription_lifetime: SUBSCRIPTION_LIFETIME,
        }
    }
}

/// A watch's subscription at the provider (see the module docs).
pub struct PushSubscription {
    /// The provider's id of the subscription (what its notifications name).
    pub id: String,
    /// What every notification of the subscription carries back (Graph's `clientState`).
    pub secret: SecretString,
    /// Unix ms, as the provider last confirmed it.
    pub expires_at_ms: i64,
}

/// A running watch of one mailbox (see the module docs).
pub struct Watch {
    inner: Inner,
}

enum Inner {
    Imap(ImapWatch),
    Gmail(super::gmail::GmailPushWatch),
    // Boxed: it carries a client and the subscription, far larger than the others.
    Graph(Box<super::graph::GraphPushWatch>),
}

impl Watch {
    /// Whether every folder is watched (IMAP NOTIFY), not only INBOX (IMAP IDLE).
    pub fn covers_all_folders(&self) -> bool {
        match &self.inner {
            Inner::Imap(w) => w.covers_all_folders(),
            // Gmail publishes every change of the mailbox; the Graph subscription is on
            // `me/messages`, every folder's.
            Inner::Gmail(_) | Inner::Graph(_) => true,
        }
    }

    /// The watch's subscription at the provider, if it has one (Graph); its expiry changes
    /// when the watch renews it.
    pub fn subscription(&self) -> Option<&PushSubscription> {
        match &self.inner {
            Inner::Graph(w) => Some(w.subscription()),
            Inner::Imap(_) | Inner::Gmail(_) => None,
        }
    }

    /// Renews the watch's subscription at the provider now (Graph: `PATCH`, what its
    /// `reauthorizationRequired` asks for); nothing to do for the others. A subscription the
    /// provider no longer has is a transient error: open a new watch.
    pub async fn renew(&mut self) -> Result<(), MailError> {
        match &mut self.inner {
            Inner::Graph(w) => w.renew().await,
            Inner::Imap(_) | Inner::Gmail(_) => Ok(()),
        }
    }

    /// The folders that changed since the last call (merged: a burst is one answer), waiting
    /// at most `max_wait`; [`Changes::Timeout`] when nothing did. Once the connection is lost,
    /// every call answers the same transient error. Cancel-safe.
    pub async fn next(&mut self, max_wait: Duration) -> Result<Changes, MailError> {
        match &mut self.inner {
            Inner::Imap(w) => w.next(max_wait).await,
            // Gmail's changes arrive as Pub/Sub pushes, which nudge the sync loop directly;
            // this only times out (after one "look everywhere" right after the watch began),
            // or ends when the watch is due for renewal.
            Inner::Gmail(w) => Ok(if w.next(max_wait).await? {
                Changes::Folders(vec![])
            } else {
                Changes::Timeout
            }),
            // The same for Graph's notifications; the subscription is renewed meanwhile.
            Inner::Graph(w) => Ok(if w.next(max_wait).await? {
                Changes::Folders(vec![])
            } else {
                Changes::Timeout
            }),
        }
    }
}

impl Mailbox {
    /// Starts watching the mailbox for changes (see the module docs). Fails as a connection
    /// does (transient, auth), or Rejected where push is not possible (Gmail without a Pub/Sub
    /// topic, Outlook without a public URL, send-only accounts, an IMAP server without IDLE):
    /// poll instead.
    pub async fn watch(&self) -> Result<Watch, MailError> {
        self.watch_with(WatchOptions::default()).await
    }

    /// [`Mailbox::watch`] with other options.
    pub async fn watch_with(&self, options: WatchOptions) -> Result<Watch, MailError> {
        match self {
            Mailbox::Imap(m) => Ok(Watch {
                inner: Inner::Imap(m.watch(options).await?),
            }),
            Mailbox::Gmail(m) => Ok(Watch {
                inner: Inner::Gmail(m.watch().await?),
            }),
            Mailbox::Graph(m) => Ok(Watch {
                inner: Inner::Graph(Box::new(m.watch(options).await?)),
            }),
        }
    }

    /// Ends subscriptions that earlier watches made at the provider ([`Watch::subscription`]
    /// ids). Answers the ids that are ended (also those the provider no longer had); the
    /// others could not be ended now (provider unreachable, grant revoked): try again later or
    /// let them expire. Mailboxes without such subscriptions have nothing to end: every id is
    /// answered.
    pub async fn end_push(&self, ids: &[String]) -> Vec<String> {
        match self {
            Mailbox::Graph(m) => m.end_push(ids).await,
            Mailbox::Imap(_) | Mailbox::Gmail(_) => ids.to_vec(),
        }
    }
}
