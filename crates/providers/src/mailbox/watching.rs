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
//! is refused and the loop polls. Outlook push (Graph subscriptions) is not built yet: Outlook
//! accounts are polled every sweep.
//!
//! A watch reports changes from the moment [`Mailbox::watch`] returns: sync once after it to
//! catch what happened before. [`Watch::next`] is cancel-safe (it can sit in a `select!` with
//! a shutdown signal). A lost connection ends the watch with a transient [`MailError`]: open
//! another. Dropping a watch ends it.

use std::time::Duration;

use mailroom_core::ErrorKind;

use super::Mailbox;
use crate::failure::{MailError, Protocol};
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
}

impl Default for WatchOptions {
    fn default() -> Self {
        Self {
            reissue_every: IDLE_REISSUE,
        }
    }
}

/// A running watch of one mailbox (see the module docs).
pub struct Watch {
    inner: Inner,
}

enum Inner {
    Imap(ImapWatch),
    Gmail(super::gmail::GmailPushWatch),
}

impl Watch {
    /// Whether every folder is watched (IMAP NOTIFY), not only INBOX (IMAP IDLE).
    pub fn covers_all_folders(&self) -> bool {
        match &self.inner {
            Inner::Imap(w) => w.covers_all_folders(),
            // Gmail publishes every change of the mailbox.
            Inner::Gmail(_) => true,
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
        }
    }
}

impl Mailbox {
    /// Starts watching the mailbox for changes (see the module docs). Fails as a connection
    /// does (transient, auth), or Rejected where push is not possible (Gmail and Outlook for
    /// now, an IMAP server without IDLE): poll instead.
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
            Mailbox::Graph(_) => Err(push_not_built(Protocol::Graph)),
        }
    }
}

/// Gmail Pub/Sub and Graph subscriptions come with their sync (issue 9).
fn push_not_built(protocol: Protocol) -> MailError {
    MailError::rejected(
        protocol,
        ErrorKind::InvalidAccount,
        "push not supported for this provider yet",
    )
}
