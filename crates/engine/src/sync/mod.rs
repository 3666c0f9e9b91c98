//! Keeping the mail index current from the providers.
//!
//! - [`sync_once`]: one pass of the account's sync, by its mailbox's model: per folder
//!   ([`imap::sync_account_once`], with the subject fallback of threading in [`threading`]) or
//!   through the account's change feed ([`feed::sync_feed_once`]: Gmail history, Outlook's
//!   Graph delta);
//! - [`supervisor`]: the background worker that decides which accounts this process syncs
//!   (leases shared with the other processes) and runs one loop per owned account
//!   ([`account`]: pass → wait for a change, the sweep timer or a nudge → pass …, with
//!   backoff on errors and the account's status kept current);
//! - [`control`]: what the API asks of those loops (a pass now, a restart), whichever process
//!   owns the account;
//! - [`push`]: the subscriptions a provider holds for a watch (Graph), kept so that any
//!   process can check the notifications they bring, and those notifications.
//!
//! See `docs/sync.md`.

pub mod account;
mod attendees;
mod backoff;
pub mod control;
pub mod feed;
pub mod imap;
pub mod push;
pub mod status;
pub mod supervisor;
pub mod threading;

use std::time::Duration;

pub use control::SyncControl;

use mailroom_providers::mailbox::SyncModel;
use mailroom_store::accounts::Account;

use self::imap::{SyncError, SyncReport};
use crate::Engine;

/// The index's attachment metadata of a parsed message (the part number is its id), for
/// both sync models.
pub(crate) fn attachment_metas(
    p: Option<&mailroom_mime::ParsedMail>,
) -> Vec<mailroom_core::mail::AttachmentMeta> {
    p.map(|p| {
        p.attachments
            .iter()
            .map(|a| mailroom_core::mail::AttachmentMeta {
                id: a.part_id.clone(),
                name: a.name.clone(),
                size: a.size as i64,
                mime: a.mime.clone(),
                cid: a.cid.clone(),
                part: Some(a.part_id.clone()),
            })
            .collect()
    })
    .unwrap_or_default()
}

/// One sync pass of `account`, by the model its mailbox is read with (the seam says which;
/// nothing here asks which provider it is).
pub async fn sync_once(engine: &Engine, account: &Account) -> Result<SyncReport, SyncError> {
    let mailbox = engine.mailboxes().open(account).await?;
    match mailbox.sync_model() {
        SyncModel::Folders => imap::sync_account_once(engine, account).await,
        SyncModel::Feed => feed::sync_feed_once(engine, account, &mailbox).await,
    }
}

/// How the sync supervisor runs.
#[derive(Debug, Clone)]
pub struct SyncConfig {
    /// Run the supervisor in this process (off: an API-only process, or a test that drives
    /// sync passes itself).
    pub enabled: bool,
    /// Longest wait between two passes of an account when nothing nudges it.
    pub sweep: Duration,
    /// How often the supervisor looks for accounts to take (and hands over its excess).
    pub scan: Duration,
    /// How long a lease lasts without a heartbeat: a killed process's accounts are taken
    /// over after at most this plus one `scan`.
    pub lease_ttl: Duration,
    /// How often an owned lease is renewed (and the requests made to the loop are read).
    pub heartbeat: Duration,
    /// The shortest wait before a failed pass is tried again: never more than one login per
    /// this much time per account, even against a server that drops right after login.
    pub backoff_min: Duration,
    /// The longest wait between attempts.
    pub backoff_max: Duration,
    /// How long the provider must keep refusing the sync itself (at least three passes in a
    /// row) before the account is `STOPPED`: a server that says `NO`/`BAD` for a few minutes
    /// (restarting, overloaded) is not stopped for good.
    pub stop_after: Duration,
    /// How long a push subscription at the provider (Graph) is asked to live; renewed when a
    /// third is left (`WatchOptions::subscription_lifetime`). Tests shorten it.
    pub subscription_lifetime: Duration,
}

impl Default for SyncConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            sweep: Duration::from_secs(60),
            scan: Duration::from_secs(5),
            lease_ttl: Duration::from_secs(15),
            heartbeat: Duration::from_secs(5),
            backoff_min: Duration::from_secs(2),
            backoff_max: Duration::from_secs(300),
            stop_after: Duration::from_secs(15 * 60),
            subscription_lifetime: mailroom_providers::mailbox::SUBSCRIPTION_LIFETIME,
        }
    }
}
