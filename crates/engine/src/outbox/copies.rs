//! Sent copies: the exact sent bytes APPENDed to the Sent folder, flagged `\Seen`, for
//! providers that keep no copy of submitted mail. A batch is one account's due copies; they
//! go over the account's pooled IMAP session (the same budget as every other IMAP use).
//! Failures are retried later and never re-send mail.

use std::time::Duration;

use mailroom_store::accounts;
use mailroom_store::outbox;

use super::{MAX_COPY_ATTEMPTS, Outbox};

impl Outbox {
    pub(super) async fn copy_batch(&self, account_id: &str, ids: Vec<String>) {
        let store = &self.inner.store;
        let account = match accounts::get_any(store, account_id).await {
            Ok(Some(a)) => a,
            Ok(None) => return self.copies_failed(&ids, "the account was deleted").await,
            Err(e) => return self.copies_failed(&ids, &e.to_string()).await,
        };
        let mailbox = match self.inner.mailboxes.open(&account).await {
            Ok(m) => m,
            Err(e) => return self.copies_failed(&ids, &e.to_string()).await,
        };
        let timeout = self.inner.config.send_timeout;
        // One session for the batch: a server that refuses the login is asked once.
        let mut copier = match tokio::time::timeout(timeout, mailbox.sent_copier()).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                if e.is_auth()
                    && let Err(se) =
                        crate::tokens::mark_credentials(store, &account, self.inner.clock.now_ms())
                            .await
                {
                    tracing::warn!(error = %se, "cannot record the refused credentials");
                }
                return self.copies_failed(&ids, &e.to_string()).await;
            }
            Err(_) => {
                return self
                    .copies_failed(&ids, "the IMAP login for the Sent copies timed out")
                    .await;
            }
        };
        // Each copy then gets the send timeout; the batch as a whole a second per copy more.
        let deadline = timeout + Duration::from_secs(ids.len() as u64);
        let mut done = 0;
        let work = async {
            for id in &ids {
                let raw = match outbox::raw(store, id).await {
                    Ok(Some(raw)) => raw,
                    _ => {
                        done += 1;
                        continue;
                    }
                };
                let appended = tokio::time::timeout(timeout, copier.append(&raw)).await;
                done += 1;
                let now = self.inner.clock.now_ms();
                let failure = match appended {
                    Ok(Ok(())) => {
                        if let Err(e) =
                            outbox::mark_copy(store, id, self.node(), "done", now, None).await
                        {
                            tracing::warn!(job = %id, error = %e, "cannot record the Sent copy");
                        }
                        continue;
                    }
                    Ok(Err(e)) => e,
                    Err(_) => mailroom_providers::MailError::transient(
                        mailroom_providers::Protocol::Imap,
                        "the IMAP server did not take the Sent copy in time",
                    ),
                };
                self.copies_failed(std::slice::from_ref(id), &failure.to_string())
                    .await;
                // A refused message does not stop the batch; a lost server or login does
                // (the rest wait for the next sweep instead of logging in once each).
                if failure.is_transient() || failure.is_auth() {
                    return;
                }
            }
        };
        let finished = tokio::time::timeout(deadline, work).await.is_ok();
        if finished {
            copier.finish();
        }
        if done < ids.len() {
            tracing::warn!(account_id = %account_id, "Sent copies interrupted; the rest are retried");
            self.copies_failed(&ids[done..], "interrupted with the batch; retried")
                .await;
        }
    }

    /// Puts copies back for a later try, or gives them up after [`MAX_COPY_ATTEMPTS`].
    async fn copies_failed(&self, ids: &[String], detail: &str) {
        let store = &self.inner.store;
        for id in ids {
            let now = self.inner.clock.now_ms();
            let tries = outbox::copy_attempts(store, id)
                .await
                .unwrap_or(MAX_COPY_ATTEMPTS);
            let state = if tries >= MAX_COPY_ATTEMPTS {
                "failed"
            } else {
                "pending"
            };
            tracing::warn!(job = %id, error = %detail, state, "copy to the Sent folder failed");
            let note = format!("sent; copy to the Sent folder failed: {detail}");
            if let Err(e) = outbox::mark_copy(
                store,
                id,
                self.node(),
                state,
                now + self.backoff_ms(tries),
                Some(&note),
            )
            .await
            {
                tracing::warn!(job = %id, error = %e, "cannot record the Sent copy");
            }
        }
    }
}
