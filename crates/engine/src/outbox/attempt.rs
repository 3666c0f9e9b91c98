//! One attempt of a job under its claim, and the record of what came of it.

use serde_json::json;

use mailroom_core::ErrorKind;
use mailroom_core::account::SourceStatus;
use mailroom_core::time_fmt::format_ms;
use mailroom_providers::{Delivered, FailureKind, MailError};
use mailroom_store::StoreError;
use mailroom_store::accounts::{self, Account};
use mailroom_store::audit::{self, Action, NewEntry, Origin};
use mailroom_store::events::{self, NewEvent, event_id};
use mailroom_store::outbox::{self, Job};
use mailroom_store::tx::Db;

use super::limits::{Candidate, Verdict};
use super::{LEASE_MARGIN_MS, Outbox, Outcome, claim, ms};
use crate::mailboxes::OpenError;

impl Outbox {
    /// Attempts job `id` under claim `token`; bounded by `send_timeout`. The lease is renewed
    /// once a slot is free, so time spent waiting for a slot never eats into the attempt, and a
    /// claim that went stale meanwhile (the job was claimed again) does nothing.
    pub async fn attempt(&self, id: &str, token: &str) -> Result<Outcome, StoreError> {
        let _slot = self.slot().await;
        let now = self.inner.clock.now_ms();
        if !outbox::renew_lease(&self.inner.store, id, token, self.lease_until(now)).await? {
            return Ok(Outcome::NotOurs);
        }
        let Some(job) = outbox::get_any(&self.inner.store, id).await? else {
            return Ok(Outcome::NotOurs);
        };
        // A job reclaimed after a crash is still bound by its attempts and horizon.
        if job.attempts > job.max_attempts || now > job.give_up_at + LEASE_MARGIN_MS {
            let last = job
                .last_error
                .clone()
                .unwrap_or_else(|| "no attempt completed".into());
            let kind = job
                .last_error_type
                .as_deref()
                .and_then(|t| ErrorKind::ALL.iter().copied().find(|k| k.type_slug() == t))
                .unwrap_or(ErrorKind::CantSendMessage);
            return self
                .fail(
                    &job,
                    kind,
                    format!("gave up after {} attempts: {last}", job.attempts - 1),
                    Action::SendGivenUp,
                )
                .await;
        }
        let account = accounts::get(&self.inner.store, &job.workspace_id, &job.account_id).await?;
        let Some(account) = account else {
            return self
                .fail(
                    &job,
                    ErrorKind::InvalidAccount,
                    "the account was deleted before the email could be sent".into(),
                    Action::SendRefused,
                )
                .await;
        };
        if account.status == SourceStatus::Credentials {
            // Not the message's fault: wait for a reconnect without spending attempts.
            return self
                .retry(
                    &job,
                    ErrorKind::DisconnectedAccount,
                    "the account's credentials were refused; reconnect it to send".into(),
                    true,
                    None,
                )
                .await;
        }
        // The account's send limits: the job goes now, or waits (held) for the window.
        if let Some(waiting) = self.gate(&job, &account, now).await? {
            return Ok(waiting);
        }
        // Large messages get longer: uploads to Gmail or Graph run at the network's pace.
        let Some(raw) = outbox::raw(&self.inner.store, &job.id).await? else {
            return self
                .fail(
                    &job,
                    ErrorKind::UnexpectedError,
                    "the job lost its message".into(),
                    Action::SendRefused,
                )
                .await;
        };
        self.attempt_loaded(&job, &account, &raw).await
    }

    /// The first attempt of a job just stored, with its claim taken by the insert: what the
    /// worker's path reads back (the job, the account, the bytes) is already in hand. Only a
    /// wait for a free slot longer than a second renews the lease first.
    pub(super) async fn first_attempt(
        &self,
        job: &Job,
        account: &Account,
        raw: &[u8],
    ) -> Result<Outcome, StoreError> {
        let waiting = std::time::Instant::now();
        let _slot = self.slot().await;
        if waiting.elapsed() > std::time::Duration::from_secs(1) {
            let now = self.inner.clock.now_ms();
            if !outbox::renew_lease(
                &self.inner.store,
                &job.id,
                claim(job),
                self.lease_until(now),
            )
            .await?
            {
                return Ok(Outcome::NotOurs);
            }
        }
        self.attempt_loaded(job, account, raw).await
    }

    /// Transmits under the claim held, bounded by the message's deadline, and records the outcome.
    async fn attempt_loaded(
        &self,
        job: &Job,
        account: &Account,
        raw: &[u8],
    ) -> Result<Outcome, StoreError> {
        let (job, account, raw) = (job, account, raw);
        let deadline = self.deadline_for(raw.len() as i64);
        if deadline > self.inner.config.send_timeout {
            let until = self.inner.clock.now_ms() + ms(deadline) + LEASE_MARGIN_MS;
            if !outbox::renew_lease(&self.inner.store, &job.id, claim(job), until).await? {
                return Ok(Outcome::NotOurs);
            }
        }
        match tokio::time::timeout(deadline, self.transmit(job, account, raw)).await {
            Ok(Ok(delivered)) => self.sent(job, delivered).await,
            Ok(Err(OpenError::Store(e))) => Err(e),
            Ok(Err(OpenError::Mail(e))) => self.on_failure(job, account, e).await,
            Err(_) => {
                let detail = format!("the attempt did not finish within {}s", deadline.as_secs());
                self.retry(job, ErrorKind::RequestTimeout, detail, false, None)
                    .await
            }
        }
    }

    /// Decides under the account's limits whether the claimed `job` goes now (admitted: counted
    /// in flight) or waits (held until its time, its attempt given back); `None` to go.
    async fn gate(
        &self,
        job: &Job,
        account: &Account,
        now: i64,
    ) -> Result<Option<Outcome>, StoreError> {
        let store = &self.inner.store;
        // A first look without the lock: an account without limits or pause goes at once.
        if !self.limits_of(Db::Pool(store), account).await?.gated(now) {
            return Ok(None);
        }
        let mut tx = store.begin_write().await?;
        let (limits, usage) = self.locked_limits(&mut tx, account, now).await?;
        let me = Candidate {
            id: Some(&job.id),
            created_at: job.created_at,
            recipients: job.recipients.len() as i64,
            held: job.is_held(),
        };
        let outcome = match super::limits::decide(&limits, &usage, &me, now) {
            Verdict::Go => {
                if !outbox::admit_in(Db::Tx(&mut tx), &job.id, claim(job)).await? {
                    return Ok(Some(Outcome::NotOurs));
                }
                None
            }
            Verdict::WaitUntil(until) => {
                if !self.hold(&mut tx, job, until, now).await? {
                    return Ok(Some(Outcome::NotOurs));
                }
                tracing::info!(job = %job.id, account_id = %account.id, until = %format_ms(until), "send held for the account's send limits");
                Some(Outcome::Waiting { until })
            }
        };
        tx.commit().await?;
        Ok(outcome)
    }

    /// Puts the claimed job back, held until `until`, in `tx` (false: the claim went stale).
    async fn hold(
        &self,
        tx: &mut mailroom_store::WriteTx,
        job: &Job,
        until: i64,
        now: i64,
    ) -> Result<bool, StoreError> {
        let horizon = ms(self.inner.config.retry_horizon);
        outbox::hold_in(Db::Tx(tx), &job.id, claim(job), until, horizon, now).await
    }

    /// The provider refused the mailbox's sending quota: the account's sends pause until it
    /// reopens (`send_paused` event), and the job waits for then, its attempt given back.
    async fn pause(
        &self,
        job: &Job,
        account: &Account,
        reopens_in: std::time::Duration,
        detail: String,
    ) -> Result<Outcome, StoreError> {
        let now = self.inner.clock.now_ms();
        // The refused send's own horizon does not move with the pauses it causes: a message the
        // provider keeps refusing "for its quota" past it is given up (`send_failed`), so it
        // cannot hold the account's other sends back for ever. (Sends merely waiting behind
        // a pause keep their horizon from when they go.)
        if now >= job.give_up_at {
            let why = format!(
                "gave up: the provider kept refusing the mailbox's sending quota past the retry horizon: {detail}"
            );
            return self
                .fail(job, ErrorKind::CantSendMessage, why, Action::SendGivenUp)
                .await;
        }
        let until = now + reopens_in.as_millis() as i64;
        let mut tx = self.inner.store.begin_write().await?;
        mailroom_store::send_limits::lock_in(&mut tx, &account.id).await?;
        if !outbox::hold_in(Db::Tx(&mut tx), &job.id, claim(job), until, 0, now).await? {
            return Ok(Outcome::NotOurs);
        }
        mailroom_store::send_limits::pause_in(Db::Tx(&mut tx), &account.id, until, &detail, now)
            .await?;
        events::record_in(
            Db::Tx(&mut tx),
            NewEvent {
                id: event_id(&["send_paused", &account.id, &until.to_string()]),
                workspace_id: &job.workspace_id,
                account_id: Some(&account.id),
                kind: "send_paused",
                payload: json!({
                    "event": "send_paused", "account_id": account.id, "tracking_id": job.id,
                    "paused_until": format_ms(until), "detail": detail, "date": format_ms(now),
                }),
                now_ms: now,
            },
        )
        .await?;
        tx.commit().await?;
        metrics::counter!("mailroom_send_pauses_total").increment(1);
        tracing::warn!(account_id = %account.id, until = %format_ms(until), error = %detail, "the provider's sending quota is used up: the account's sends pause");
        Ok(Outcome::Waiting { until })
    }

    /// One of this node's sending slots ([`super::CONCURRENCY`]).
    async fn slot(&self) -> tokio::sync::SemaphorePermit<'_> {
        self.inner
            .slots
            .acquire()
            .await
            .expect("the semaphore is never closed")
    }

    async fn sent(&self, job: &Job, delivered: Delivered) -> Result<Outcome, StoreError> {
        let Delivered {
            provider_id,
            needs_sent_copy,
        } = delivered;
        // The answer a replay gets, recorded with the outcome (unless the first request's
        // answer is already stored).
        let answer = crate::send::answer_of(
            &job.id,
            &job.message_id,
            &Outcome::Sent {
                provider_id: provider_id.clone(),
            },
        );
        // The outcome and its audit entry commit together: a crash cannot keep one without
        // the other.
        let origin = self.accepted_by(job).await;
        let now = self.inner.clock.now_ms();
        let mut tx = self.inner.store.begin_write().await?;
        if !outbox::mark_sent(
            Db::Tx(&mut tx),
            &job.id,
            claim(job),
            now,
            &provider_id,
            needs_sent_copy,
            job.response
                .is_none()
                .then_some((answer.status, &answer.body)),
        )
        .await?
        {
            return Ok(Outcome::NotOurs);
        }
        audit::record_in(
            Db::Tx(&mut tx),
            outcome_entry(
                job,
                Action::SendSent,
                &origin,
                json!({ "recipients": job.recipients.len() }),
                now,
            ),
        )
        .await?;
        tx.commit().await?;
        metrics::counter!("mailroom_emails_sent_total").increment(1);
        // A send under the account's limits ended: the next held one may go now.
        if job.send_gate.is_some() {
            self.wake();
        }
        // The worker files Sent copies in batches on its next sweep (within the poll interval):
        // one pooled IMAP session per account for every copy due, not a login per message.
        Ok(Outcome::Sent { provider_id })
    }

    /// The one place a provider failure becomes an outcome, whatever the provider.
    async fn on_failure(
        &self,
        job: &Job,
        account: &Account,
        e: MailError,
    ) -> Result<Outcome, StoreError> {
        let detail = e.detail().to_owned();
        match e.kind {
            FailureKind::SendQuota { reopens_in } => {
                self.pause(job, account, reopens_in, detail).await
            }
            FailureKind::Transient { retry_after } | FailureKind::Quota { retry_after } => {
                self.retry(
                    job,
                    ErrorKind::ProviderUnreachable,
                    detail,
                    false,
                    retry_after,
                )
                .await
            }
            FailureKind::Auth => {
                crate::tokens::mark_credentials(
                    &self.inner.store,
                    account,
                    self.inner.clock.now_ms(),
                )
                .await?;
                self.retry(
                    job,
                    ErrorKind::DisconnectedAccount,
                    format!("{}: reconnect the account to send: {detail}", e.protocol),
                    true,
                    None,
                )
                .await
            }
            FailureKind::Rejected(kind) => self.fail(job, kind, detail, Action::SendRefused).await,
            FailureKind::TooLarge => {
                self.fail(
                    job,
                    ErrorKind::ProviderContentTooLarge,
                    detail,
                    Action::SendRefused,
                )
                .await
            }
            // Not a send failure; should a provider answer it, the next attempt starts afresh.
            FailureKind::CursorExpired => {
                self.retry(job, ErrorKind::ProviderUnreachable, detail, false, None)
                    .await
            }
        }
    }

    /// Puts the job back for `run_after`; `refund` gives the attempt back (the account's
    /// fault, not the message's). A provider's Retry-After wins over our schedule when longer.
    async fn retry(
        &self,
        job: &Job,
        kind: ErrorKind,
        detail: String,
        refund: bool,
        at_least: Option<std::time::Duration>,
    ) -> Result<Outcome, StoreError> {
        let now = self.inner.clock.now_ms();
        let attempts = if refund {
            job.attempts - 1
        } else {
            job.attempts
        };
        if (!refund && attempts >= job.max_attempts) || now >= job.give_up_at {
            let why = format!("gave up after {attempts} attempts: {detail}");
            return self.fail(job, kind, why, Action::SendGivenUp).await;
        }
        let wait = self
            .backoff_ms(attempts.max(1))
            .max(at_least.map(|d| d.as_millis() as i64).unwrap_or(0));
        // Never past the horizon: the last try happens just before it.
        let run_after = (now + wait).min(job.give_up_at.max(now + 1));
        if !outbox::mark_retry(
            &self.inner.store,
            &job.id,
            claim(job),
            now,
            outbox::Retry {
                run_after,
                error_type: kind.type_slug(),
                error: &detail,
                refund,
            },
        )
        .await?
        {
            return Ok(Outcome::NotOurs);
        }
        tracing::info!(job = %job.id, error = %detail, retry_at = %format_ms(run_after), "send will be retried");
        Ok(Outcome::Retrying {
            kind,
            detail,
            run_after,
        })
    }

    /// The job failed for good: `send.refused` (the provider said no) or `send.given_up`
    /// (out of attempts or time).
    async fn fail(
        &self,
        job: &Job,
        kind: ErrorKind,
        detail: String,
        action: Action,
    ) -> Result<Outcome, StoreError> {
        // The job's end, its `send_failed` event and its audit entry commit together.
        let origin = self.accepted_by(job).await;
        let now = self.inner.clock.now_ms();
        let mut tx = self.inner.store.begin_write().await?;
        if !outbox::mark_failed(
            Db::Tx(&mut tx),
            &job.id,
            claim(job),
            now,
            kind.type_slug(),
            &detail,
        )
        .await?
        {
            return Ok(Outcome::NotOurs);
        }
        events::record_in(
            Db::Tx(&mut tx),
            NewEvent {
                id: event_id(&["send_failed", &job.id]),
                workspace_id: &job.workspace_id,
                account_id: Some(&job.account_id),
                kind: "send_failed",
                payload: json!({
                    "event": "send_failed", "account_id": job.account_id, "tracking_id": job.id,
                    "message_id": job.message_id, "type": kind.type_slug(), "detail": detail, "date": format_ms(now),
                }),
                now_ms: now,
            },
        )
        .await?;
        // The error type and the attempts, not the provider's text (it can quote an address).
        audit::record_in(
            Db::Tx(&mut tx),
            outcome_entry(
                job,
                action,
                &origin,
                json!({ "recipients": job.recipients.len(), "type": kind.type_slug(), "attempts": job.attempts }),
                now,
            ),
        )
        .await?;
        tx.commit().await?;
        metrics::counter!("mailroom_emails_failed_total").increment(1);
        tracing::warn!(job = %job.id, error = %detail, "send failed");
        Ok(Outcome::Failed { kind, detail })
    }
}

impl Outbox {
    /// Who accepted the send (its `send.accepted` entry): what becomes of it is credited to
    /// that request's key, request id and address (`system` once the entry is past retention).
    /// Read before the outcome's write transaction (SQLite's writer is not held for it).
    async fn accepted_by(&self, job: &Job) -> Origin {
        match audit::origin_of(&self.inner.store, Action::SendAccepted, &job.id).await {
            Ok(Some(o)) => o,
            Ok(None) => Origin::system(),
            Err(e) => {
                tracing::warn!(job = %job.id, error = %e, "cannot read who accepted the send");
                Origin::system()
            }
        }
    }
}

/// The audit entry of a send's outcome.
fn outcome_entry<'a>(
    job: &'a Job,
    action: Action,
    origin: &'a Origin,
    details: serde_json::Value,
    now_ms: i64,
) -> NewEntry<'a> {
    NewEntry {
        workspace_id: &job.workspace_id,
        action,
        origin,
        account_id: Some(&job.account_id),
        target: Some(&job.id),
        details,
        now_ms,
    }
}
