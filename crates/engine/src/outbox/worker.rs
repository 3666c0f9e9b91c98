//! The background loop: claims what is due (jobs and Sent copies) and works on it; at
//! shutdown, waits for attempts under way so every completed transaction is recorded.

use std::collections::HashMap;
use std::time::Duration;

use mailroom_store::StoreError;
use mailroom_store::outbox;

use super::{LEASE_MARGIN_MS, Outbox};

impl Outbox {
    /// Runs the background worker until `shutdown` resolves.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            if let Err(e) = self.sweep().await {
                tracing::warn!(error = %e, "outbox sweep failed");
            }
            tokio::select! {
                _ = &mut shutdown => break,
                _ = self.inner.wake.notified() => {}
                _ = tokio::time::sleep(self.inner.config.poll_interval) => {}
            }
        }
        // Let attempts under way finish and record their outcome before the store closes; an
        // attempt is bounded by the send timeout.
        self.inner.tasks.close();
        let grace = self.inner.config.send_timeout + Duration::from_millis(LEASE_MARGIN_MS as u64);
        if tokio::time::timeout(grace, self.inner.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                "send attempts still running at shutdown; their leases will expire and they will be retried"
            );
        }
    }

    /// Claims what is due and works on it in the background; returns how many it took.
    pub async fn sweep(&self) -> Result<usize, StoreError> {
        let now = self.inner.clock.now_ms();
        // Claim only what can start now: a claimed job waiting for a slot would let its lease run
        // out (attempts renew it, but there is no reason to hold jobs another node could send).
        let free = self.inner.slots.available_permits() as i64;
        let jobs = outbox::claim_due(
            &self.inner.store,
            self.node(),
            now,
            self.lease_until(now),
            free,
        )
        .await?;
        let copies = outbox::claim_copies(
            &self.inner.store,
            self.node(),
            now,
            // A batch may take a second per copy on top of the login: the lease covers it.
            self.lease_until(now) + 256_000,
            256,
        )
        .await?;
        let taken = jobs.len() + copies.len();
        for (id, token) in jobs {
            let me = self.clone();
            self.inner.tasks.spawn(async move {
                if let Err(e) = me.attempt(&id, &token).await {
                    tracing::warn!(job = %id, error = %e, "outbox attempt failed");
                }
            });
        }
        let mut by_account: HashMap<String, Vec<String>> = HashMap::new();
        for id in copies {
            if let Some(job) = outbox::get_any(&self.inner.store, &id).await? {
                by_account
                    .entry(job.account_id.into())
                    .or_default()
                    .push(id);
            }
        }
        for (account_id, ids) in by_account {
            let me = self.clone();
            self.inner
                .tasks
                .spawn(async move { me.copy_batch(&account_id, ids).await });
        }
        Ok(taken)
    }
}
