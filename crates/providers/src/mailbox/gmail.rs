//! Gmail accounts through the Gmail API: sending, finding a reply's parent, and the change
//! feed a sync reads (labels as folders, `messages.list`/`get`, `history.list`).
//!
//! Every read is paced to the per-user quota ([`super::pacing`], with its cost in units from
//! `reference/providers.md`), holds one of the mailbox's request slots (shared with sending),
//! and a throttled
//! read (429, or 403 `rateLimitExceeded`) is tried again after the wait Gmail names
//! (`Retry-After`), else after an exponential backoff, a few times: a short throttle costs a
//! pass some seconds, not a failure; a long one fails it (transient) and the sync loop backs
//! off.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;
use tokio::sync::Semaphore;

use mailroom_core::MessageId;
use mailroom_core::account::AccountMode;
use mailroom_core::email::ReplyParent;

use super::feed::{FeedChanges, FeedFolder, FeedMessage, FeedPage, FeedWindow, Touched};
use super::pacing::Pacer;
use super::reading::RemoteRole;
use super::throttled::retrying_throttled;
use super::{Delivered, Outgoing, TokenSource, bcc_of, with_token};
use crate::failure::{FailureKind, MailError, Protocol};
use crate::gmail::{GmailClient, GmailMessage, MAX_BATCH, Relabel};

/// System labels that are folders, with their roles. Every other system label (`UNREAD`,
/// `STARRED`, `IMPORTANT`, `CHAT`, `CATEGORY_*`) is a flag or a view, not a folder; user
/// labels are folders without a role.
const FOLDER_LABELS: [(&str, RemoteRole); 5] = [
    ("INBOX", RemoteRole::Inbox),
    ("SENT", RemoteRole::Sent),
    ("DRAFT", RemoteRole::Drafts),
    ("TRASH", RemoteRole::Trash),
    ("SPAM", RemoteRole::Spam),
];

/// System labels that are not folders.
const NOT_FOLDERS: [&str; 5] = ["UNREAD", "STARRED", "IMPORTANT", "CHAT", "OPENED"];

/// Whether a label id names a folder (see [`FOLDER_LABELS`]).
fn is_folder(label: &str) -> bool {
    FOLDER_LABELS.iter().any(|(id, _)| *id == label)
        || !(NOT_FOLDERS.contains(&label) || label.starts_with("CATEGORY_"))
}

fn feed_message(m: GmailMessage, whole: bool) -> FeedMessage {
    FeedMessage {
        read: !m.label_ids.iter().any(|l| l == "UNREAD"),
        folders: m.label_ids.into_iter().filter(|l| is_folder(l)).collect(),
        id: m.id,
        thread_id: m.thread_id,
        internal_date_ms: m.internal_date_ms,
        size: m.size_estimate,
        version: m.history_id,
        parsed: if whole {
            m.raw.as_deref().and_then(mailroom_mime::parse_mail)
        } else {
            None
        },
    }
}

pub struct GmailMailbox {
    client: GmailClient,
    tokens: Arc<dyn TokenSource>,
    mode: AccountMode,
    slots: Arc<Semaphore>,
    /// The mailbox's quota budget, shared by every read of the account.
    pacer: Arc<Pacer>,
    /// The Pub/Sub topic Gmail publishes changes to, when push is set up.
    push_topic: Option<String>,
}

impl GmailMailbox {
    pub(super) fn new(
        client: GmailClient,
        tokens: Arc<dyn TokenSource>,
        mode: AccountMode,
        slots: Arc<Semaphore>,
        pacer: Arc<Pacer>,
        push_topic: Option<String>,
    ) -> Self {
        Self {
            client,
            tokens,
            mode,
            slots,
            pacer,
            push_topic,
        }
    }

    pub(super) fn mode(&self) -> AccountMode {
        self.mode
    }

    /// `messages.send`. A reply stays in its Gmail thread only with the thread's id, which a
    /// send-only account cannot look up: its reply threads for the recipients by headers.
    pub(super) async fn send(&self, msg: &Outgoing<'_>) -> Result<Delivered, MailError> {
        let _slot = self.slots.acquire().await.expect("never closed");
        let bcc = bcc_of(msg.raw, msg.recipients);
        let parent = msg.parent.filter(|_| self.mode == AccountMode::Full);
        let sent = with_token(self.tokens.as_ref(), |token| {
            let bcc = &bcc;
            async move {
                let thread = match parent {
                    Some(p) => self
                        .client
                        .find_by_message_id(&token, p)
                        .await?
                        .map(|r| r.thread_id),
                    None => None,
                };
                self.client
                    .send(&token, msg.raw, bcc, thread.as_deref())
                    .await
            }
        })
        .await?;
        Ok(Delivered {
            provider_id: sent.id,
            needs_sent_copy: false,
        })
    }

    pub(super) async fn find_parent(
        &self,
        id: &MessageId,
    ) -> Result<Option<ReplyParent>, MailError> {
        if self.mode == AccountMode::Send {
            return Ok(Some(ReplyParent {
                message_id: id.bracketed(),
                references: vec![],
                subject: None,
            }));
        }
        let _slot = self.slots.acquire().await.expect("never closed");
        let found = with_token(self.tokens.as_ref(), |token| async move {
            self.client.find_by_message_id(&token, id).await
        })
        .await?;
        Ok(found.and_then(|r| r.reply_parent()))
    }
}

impl GmailMailbox {
    /// Runs a read call in one of the mailbox's request slots, with a fresh token when the old
    /// one is refused, and again after Gmail's throttling wait (see the module docs). The slot
    /// is given back while waiting.
    async fn call<T, F, Fut>(&self, units: u32, f: F) -> Result<T, MailError>
    where
        F: Fn(SecretString) -> Fut,
        Fut: std::future::Future<Output = Result<T, MailError>>,
    {
        retrying_throttled(|| async {
            self.pacer.take(units).await;
            let _slot = self.slots.acquire().await.expect("never closed");
            with_token(self.tokens.as_ref(), &f).await
        })
        .await
    }

    pub(super) async fn feed_folders(&self) -> Result<Vec<FeedFolder>, MailError> {
        let labels = self
            .call(1, |t| async move { self.client.labels(&t).await })
            .await?;
        Ok(labels
            .into_iter()
            .filter(|l| {
                is_folder(&l.id)
                    && (l.kind == "user" || FOLDER_LABELS.iter().any(|(id, _)| *id == l.id))
            })
            .map(|l| FeedFolder {
                role: FOLDER_LABELS
                    .iter()
                    .find(|(id, _)| *id == l.id)
                    .map_or(RemoteRole::Unknown, |(_, r)| *r),
                name: if l.name.is_empty() {
                    l.id.clone()
                } else {
                    l.name
                },
                id: l.id,
            })
            .collect())
    }

    /// The history id now (`users.getProfile`: 1 quota unit, the cheapest baseline).
    pub(super) async fn feed_cursor(&self) -> Result<String, MailError> {
        let p = self
            .call(1, |t| async move { self.client.profile(&t).await })
            .await?;
        Ok(p.history_id.to_string())
    }

    /// `messages.list` with `q=after:<unix seconds>`: Gmail compares whole seconds, so the
    /// window starts at the second before (the caller drops what is older by the exact time).
    pub(super) async fn feed_list(
        &self,
        window: FeedWindow,
        page_size: u32,
        page: Option<&str>,
    ) -> Result<FeedPage, MailError> {
        let q = window
            .since_ms
            .map(|ms| format!("after:{}", ms.div_euclid(1000) - 1));
        let p = self
            .call(5, |t| {
                let q = q.as_deref();
                async move { self.client.list_ids(&t, q, page_size, page).await }
            })
            .await?;
        Ok(FeedPage {
            ids: p.ids,
            next: p.next,
        })
    }

    pub(super) async fn feed_fetch(
        &self,
        id: &str,
        whole: bool,
    ) -> Result<Option<FeedMessage>, MailError> {
        let m = self
            .call(
                5,
                |t| async move { self.client.message(&t, id, whole).await },
            )
            .await?;
        Ok(m.map(|m| feed_message(m, whole)))
    }

    /// Several messages, [`MAX_BATCH`] `messages.get` calls per request through Gmail's batch
    /// endpoint (5 units each, paced as if sent one by one), in the order given. A call
    /// throttled or failed in a batch fails that batch, which is retried whole as a single
    /// call would be (`Retry-After`, backoff); a message gone is `None`.
    pub(super) async fn feed_fetch_many(
        &self,
        ids: &[(String, bool)],
    ) -> Result<Vec<Option<FeedMessage>>, MailError> {
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(MAX_BATCH) {
            let got = self
                .call(5 * chunk.len() as u32, |t| async move {
                    self.client
                        .messages_batch(&t, chunk)
                        .await?
                        .into_iter()
                        .collect::<Result<Vec<_>, _>>()
                })
                .await?;
            out.extend(
                got.into_iter()
                    .zip(chunk)
                    .map(|(m, (_, whole))| m.map(|m| feed_message(m, *whole))),
            );
        }
        Ok(out)
    }

    pub(super) async fn feed_open_part(
        &self,
        id: &str,
        part: &str,
    ) -> Result<super::PartStream, MailError> {
        use futures_util::StreamExt as _;
        let gone = |what: String| {
            MailError::rejected(
                Protocol::Gmail,
                mailroom_core::ErrorKind::ResourceNotFound,
                what,
            )
        };
        let m = self
            .call(
                5,
                |t| async move { self.client.message(&t, id, true).await },
            )
            .await?
            .ok_or_else(|| gone(format!("Gmail has no message {id} any more")))?;
        let raw = m.raw.unwrap_or_default();
        let (_, _, bytes) = mailroom_mime::attachment_bytes(&raw, part)
            .ok_or_else(|| gone(format!("Gmail message {id} has no part {part}")))?;
        Ok(futures_util::stream::once(async move { Ok(bytes) }).boxed())
    }

    /// A label change; a message that is gone is `ResourceNotFound`.
    async fn relabel(&self, id: &str, change: Relabel<'_>) -> Result<Vec<String>, MailError> {
        let labels = self
            .call(
                5,
                |t| async move { self.client.relabel(&t, id, change).await },
            )
            .await?
            .ok_or_else(|| {
                MailError::rejected(
                    Protocol::Gmail,
                    mailroom_core::ErrorKind::ResourceNotFound,
                    format!("Gmail has no message {id} any more"),
                )
            })?;
        Ok(labels.into_iter().filter(|l| is_folder(l)).collect())
    }

    pub(super) async fn feed_set_read(&self, id: &str, read: bool) -> Result<(), MailError> {
        let (add, remove): (&[&str], &[&str]) = if read {
            (&[], &["UNREAD"])
        } else {
            (&["UNREAD"], &[])
        };
        self.relabel(id, Relabel::Modify { add, remove }).await?;
        Ok(())
    }

    pub(super) async fn feed_move(
        &self,
        id: &str,
        add: &str,
        remove: &[&str],
    ) -> Result<Vec<String>, MailError> {
        self.relabel(
            id,
            Relabel::Modify {
                add: &[add],
                remove,
            },
        )
        .await
    }

    pub(super) async fn feed_trash(&self, id: &str) -> Result<Vec<String>, MailError> {
        self.relabel(id, Relabel::Trash).await
    }

    /// `drafts.create` (10 units): the draft message's id.
    pub(super) async fn feed_create_draft(&self, raw: &[u8]) -> Result<String, MailError> {
        self.call(
            10,
            |t| async move { self.client.create_draft(&t, raw).await },
        )
        .await
    }

    /// `messages.get` with `format=raw` (5 units); `None` when the message is gone.
    pub(super) async fn feed_fetch_raw(&self, id: &str) -> Result<Option<Vec<u8>>, MailError> {
        let m = self
            .call(
                5,
                |t| async move { self.client.message(&t, id, true).await },
            )
            .await?;
        Ok(m.map(|m| m.raw.unwrap_or_default()))
    }

    /// `drafts.list` (5 units a page) to find the draft of message `id`, then `drafts.delete`
    /// (10 units). A draft already gone is no error.
    pub(super) async fn feed_discard_draft(&self, id: &str) -> Result<(), MailError> {
        let draft = self
            .call(5, |t| async move { self.client.draft_of(&t, id).await })
            .await?;
        if let Some(d) = draft {
            let d = d.as_str();
            self.call(10, |t| async move { self.client.delete_draft(&t, d).await })
                .await?;
        }
        Ok(())
    }

    /// `history.list` from `cursor`, every page; each message once, with the id of the last
    /// record that touched it.
    pub(super) async fn feed_changes(&self, cursor: &str) -> Result<FeedChanges, MailError> {
        let start: u64 = cursor.parse().map_err(|_| {
            MailError::new(
                Protocol::Gmail,
                FailureKind::CursorExpired,
                format!("stored Gmail history id {cursor:?} is not a number"),
            )
        })?;
        let mut touched: Vec<Touched> = vec![];
        let mut at: HashMap<String, usize> = HashMap::new();
        let mut page: Option<String> = None;
        let mut latest = start;
        loop {
            let p = self
                .call(2, |t| {
                    let page = page.as_deref();
                    async move { self.client.history(&t, start, page).await }
                })
                .await?;
            latest = latest.max(p.history_id);
            for r in p.records {
                let mut note = |id: String, added: bool, deleted: bool| {
                    let i = *at.entry(id.clone()).or_insert_with(|| {
                        touched.push(Touched {
                            id,
                            at: r.id,
                            added: false,
                            deleted: false,
                        });
                        touched.len() - 1
                    });
                    let t = &mut touched[i];
                    t.at = t.at.max(r.id);
                    t.added |= added;
                    t.deleted |= deleted;
                };
                for id in r.added {
                    note(id, true, false);
                }
                for id in r.deleted {
                    note(id, false, true);
                }
                for id in r.relabelled {
                    note(id, false, false);
                }
            }
            match p.next {
                Some(n) => page = Some(n),
                None => break,
            }
        }
        touched.sort_by_key(|t| t.at);
        Ok(FeedChanges {
            cursor: latest.to_string(),
            touched,
        })
    }
}

/// Gmail's push, once `users.watch` accepted the topic: the changes themselves arrive as
/// Pub/Sub push requests to mailroom's endpoint (which nudges the account's sync loop), so
/// this watch only says when it must be renewed.
pub(crate) struct GmailPushWatch {
    /// When to call `users.watch` again: a day before Gmail's expiration (Google recommends
    /// renewing daily; the expiration is about 7 days out).
    renew_at: std::time::Instant,
    /// Not asked yet: a change between the caller's last pass and the watch was pushed to
    /// nobody, so the first `next` says "something may have changed" (one more history read).
    fresh: bool,
}

/// Renew this long before Gmail's expiration.
const RENEW_BEFORE_MS: i64 = 86_400_000;

impl GmailPushWatch {
    /// Waits at most `max_wait`: `Ok(false)` when it elapsed (`Ok(true)` at once the first
    /// time), an error (transient) once the watch must be renewed (the sync loop opens it again
    /// after its next pass).
    pub(crate) async fn next(&mut self, max_wait: Duration) -> Result<bool, MailError> {
        if std::mem::take(&mut self.fresh) {
            return Ok(true);
        }
        let now = std::time::Instant::now();
        if self.renew_at <= now {
            return Err(MailError::transient(
                Protocol::Gmail,
                "the Gmail watch is due for renewal",
            ));
        }
        tokio::time::sleep(max_wait.min(self.renew_at - now)).await;
        if std::time::Instant::now() >= self.renew_at {
            return Err(MailError::transient(
                Protocol::Gmail,
                "the Gmail watch is due for renewal",
            ));
        }
        Ok(false)
    }
}

impl GmailMailbox {
    /// `users.watch` on the operator's topic; refused (Rejected) when push is not set up or the
    /// account cannot read (send-only): the sync loop then polls.
    pub(crate) async fn watch(&self) -> Result<GmailPushWatch, MailError> {
        let Some(topic) = self.push_topic.as_deref() else {
            return Err(MailError::rejected(
                Protocol::Gmail,
                mailroom_core::ErrorKind::InvalidAccount,
                "Gmail push is not set up (MAILROOM_GOOGLE_PUBSUB_TOPIC); polling",
            ));
        };
        if self.mode == AccountMode::Send {
            return Err(MailError::rejected(
                Protocol::Gmail,
                mailroom_core::ErrorKind::InvalidAccount,
                "a send-only Gmail account is not synced",
            ));
        }
        let w = self
            .call(100, |t| async move { self.client.watch(&t, topic).await })
            .await?;
        let left_ms = (w.expiration_ms - now_ms() - RENEW_BEFORE_MS).max(60_000);
        Ok(GmailPushWatch {
            renew_at: std::time::Instant::now() + Duration::from_millis(left_ms as u64),
            fresh: true,
        })
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folder_labels_and_flags() {
        for folder in ["INBOX", "SENT", "DRAFT", "TRASH", "SPAM", "Label_7"] {
            assert!(is_folder(folder), "{folder}");
        }
        for flag in ["UNREAD", "STARRED", "IMPORTANT", "CHAT", "CATEGORY_SOCIAL"] {
            assert!(!is_folder(flag), "{flag}");
        }
    }

    #[tokio::test]
    async fn a_push_watch_says_look_once_then_times_out_then_asks_for_renewal() {
        let mut w = GmailPushWatch {
            renew_at: std::time::Instant::now() + Duration::from_secs(3600),
            fresh: true,
        };
        assert!(w.next(Duration::from_millis(1)).await.unwrap());
        assert!(!w.next(Duration::from_millis(1)).await.unwrap());
        w.renew_at = std::time::Instant::now();
        let e = w.next(Duration::from_secs(3600)).await.unwrap_err();
        assert!(e.is_transient(), "{e}");
    }
}
