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
        // The first copy may log in; each copy then gets a second on top.
        let deadline = self.inner.config.send_timeout + Duration::from_secs(ids.len() as u64);
        let work = async {
            for id in &ids {
                let raw = match outbox::raw(store, id).await {
                    Ok(Some(raw)) => raw,
                    _ => continue,
                };
                let appended =
                    tokio::time::timeout(self.inner.config.send_timeout, mailbox.append_sent(&raw))
                        .await;
                let now = self.inner.clock.now_ms();
                let recorded = match appended {
                    Ok(Ok(())) => {
                        outbox::mark_copy(store, id, self.node(), "done", now, None).await
                    }
                    Ok(Err(e)) => {
                        self.copies_failed(std::slice::from_ref(id), &e.to_string())
                            .await;
                        continue;
                    }
                    Err(_) => {
                        self.copies_failed(
                            std::slice::from_ref(id),
                            "the IMAP server did not take the Sent copy in time",
                        )
                        .await;
                        continue;
                    }
                };
                if let Err(e) = recorded {
                    tracing::warn!(job = %id, error = %e, "cannot record the Sent copy");
                }
            }
        };
        if tokio::time::timeout(deadline, work).await.is_err() {
            tracing::warn!(account_id = %account_id, "Sent copies timed out; the rest are retried");
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
