//! The outbox sender: attempts stored jobs, retries transient failures with exponential
//! backoff and jitter, fails permanent ones with the closest error slug, copies sent mail to
//! the Sent folder, and (in the background) picks up every job that is due, including jobs
//! whose node died mid-attempt.

use std::sync::Arc;
use std::time::Duration;

use rand::Rng as _;
use secrecy::SecretString;
use serde_json::json;
use tokio::sync::{Notify, Semaphore};
use tokio_util::task::TaskTracker;

use mailroom_core::account::{MailSettings, SourceStatus};
use mailroom_core::time_fmt::format_ms;
use mailroom_core::{Clock, ErrorKind};
use mailroom_providers::NetPolicy;
use mailroom_providers::imap_smtp::send::{SendError, SendErrorKind, SmtpPool};
use mailroom_providers::imap_smtp::{imap, mailbox, smtp};
use mailroom_store::accounts::{self, Account, Credentials};
use mailroom_store::events::{self, NewEvent, event_id};
use mailroom_store::outbox::{self, Job};
use mailroom_store::{Store, StoreError, Vault};

use crate::apps::ProviderApps;
use crate::tokens::{TokenError, Tokens, idp_of};
use mailroom_providers::gmail::GmailClient;
use mailroom_providers::graph::GraphClient;
use mailroom_providers::http_api::{HttpApiError, HttpErrorKind};
use mailroom_providers::oauth::IdP;

/// Retry policy and timing of the outbox.
#[derive(Debug, Clone)]
pub struct OutboxConfig {
    /// Deadline of one attempt (connect, authenticate, transmit).
    pub send_timeout: Duration,
    /// Attempts before a transiently failing job is given up.
    pub max_attempts: i64,
    /// How long after acceptance a job may still be retried.
    pub retry_horizon: Duration,
    /// First retry delay; doubles per attempt (with ±25 % jitter) up to `retry_cap`.
    pub retry_base: Duration,
    pub retry_cap: Duration,
    /// How often the worker looks for due jobs when nothing woke it.
    pub poll_interval: Duration,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        Self {
            send_timeout: Duration::from_secs(30),
            max_attempts: 10,
            retry_horizon: Duration::from_secs(48 * 3600),
            retry_base: Duration::from_secs(30),
            retry_cap: Duration::from_secs(3600),
            poll_interval: Duration::from_secs(1),
        }
    }
}

/// What an attempt came to.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Sent {
        provider_id: String,
    },
    /// Will be retried at `run_after`.
    Retrying {
        kind: ErrorKind,
        detail: String,
        run_after: i64,
    },
    /// Failed for good.
    Failed {
        kind: ErrorKind,
        detail: String,
    },
    /// Another node holds the job now (our lease expired); it reports the outcome.
    NotOurs,
}

#[derive(Clone)]
pub struct Outbox {
    inner: Arc<Inner>,
}

/// What the outbox works with.
pub struct Deps {
    pub store: Store,
    pub vault: Vault,
    pub clock: Arc<dyn Clock>,
    pub net: NetPolicy,
    pub tokens: Arc<Tokens>,
    pub apps: Arc<ProviderApps>,
    pub http: reqwest::Client,
}

struct Inner {
    store: Store,
    vault: Vault,
    clock: Arc<dyn Clock>,
    net: NetPolicy,
    tokens: Arc<Tokens>,
    apps: Arc<ProviderApps>,
    http: reqwest::Client,
    smtp: SmtpPool,
    node: String,
    config: OutboxConfig,
    wake: Notify,
    slots: Semaphore,
    tasks: TaskTracker,
    /// Requests in flight per mailbox for the HTTP providers (Outlook allows 4 per app and
    /// mailbox before answering 429 ApplicationThrottled).
    mailbox_slots: std::sync::Mutex<std::collections::HashMap<String, Arc<Semaphore>>>,
}

/// How many jobs one node works on at once.
const CONCURRENCY: usize = 32;
/// Slack added to an attempt's deadline for its lease.
const LEASE_MARGIN_MS: i64 = 5_000;
/// Concurrent sends per Gmail or Outlook mailbox (Graph's MailboxConcurrency limit is 4).
const MAILBOX_CONCURRENCY: usize = 4;
/// Attempts at the Sent copy before it is given up.
const MAX_COPY_ATTEMPTS: i64 = 6;

fn ms(d: Duration) -> i64 {
    d.as_millis() as i64
}

impl Outbox {
    pub fn new(deps: Deps, config: OutboxConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                store: deps.store,
                vault: deps.vault,
                clock: deps.clock,
                net: deps.net,
                tokens: deps.tokens,
                apps: deps.apps,
                http: deps.http,
                smtp: SmtpPool::default(),
                node: mailroom_core::new_id(),
                config,
                wake: Notify::new(),
                slots: Semaphore::new(CONCURRENCY),
                tasks: TaskTracker::new(),
                mailbox_slots: std::sync::Mutex::new(std::collections::HashMap::new()),
            }),
        }
    }

    pub fn config(&self) -> &OutboxConfig {
        &self.inner.config
    }

    /// This process's id in leases.
    pub fn node(&self) -> &str {
        &self.inner.node
    }

    /// When a lease taken now must end: after the attempt's own deadline.
    pub fn lease_until(&self, now_ms: i64) -> i64 {
        now_ms + ms(self.inner.config.send_timeout) + LEASE_MARGIN_MS
    }

    /// Asks the worker to look for due jobs now.
    pub fn wake(&self) {
        self.inner.wake.notify_one();
    }

    /// The retry delay after `attempts` attempts: exponential, capped, ±25 % jitter.
    pub fn backoff_ms(&self, attempts: i64) -> i64 {
        backoff(&self.inner.config, attempts)
    }

    /// How long an attempt of a message of `bytes` may take: the send timeout, plus a second per
    /// 256 KiB (uploads at the floor rate the provider clients assume).
    pub fn deadline_for(&self, bytes: i64) -> std::time::Duration {
        self.inner.config.send_timeout
            + std::time::Duration::from_secs((bytes.max(0) as u64) / (256 * 1024))
    }

    /// The token of a claim this node makes (see [`outbox::claim_token`]).
    pub fn claim_token(&self, id: &str, attempt: i64) -> String {
        outbox::claim_token(self.node(), id, attempt)
    }

    /// Runs an attempt as a tracked task: shutdown waits for it (so an SMTP transaction that
    /// completes is always recorded), and a client that hangs up does not cancel it.
    pub fn spawn_attempt(
        &self,
        id: String,
        token: String,
    ) -> tokio::task::JoinHandle<Result<Outcome, StoreError>> {
        let me = self.clone();
        self.inner
            .tasks
            .spawn(async move { me.attempt(&id, &token).await })
    }

    /// Attempts job `id` under claim `token`; bounded by `send_timeout`. The lease is renewed
    /// once a slot is free, so time spent waiting for a slot never eats into the attempt, and a
    /// claim that went stale meanwhile (the job was claimed again) does nothing.
    pub async fn attempt(&self, id: &str, token: &str) -> Result<Outcome, StoreError> {
        let _slot = self
            .inner
            .slots
            .acquire()
            .await
            .expect("the semaphore is never closed");
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
                )
                .await;
        }
        // Large messages get longer: uploads to Gmail or Graph run at the network's pace.
        let size = outbox::raw_len(&self.inner.store, &job.id).await?;
        let deadline = self.deadline_for(size);
        if deadline > self.inner.config.send_timeout {
            let until = self.inner.clock.now_ms() + ms(deadline) + LEASE_MARGIN_MS;
            if !outbox::renew_lease(&self.inner.store, &job.id, claim(&job), until).await? {
                return Ok(Outcome::NotOurs);
            }
        }
        let sending = tokio::time::timeout(deadline, self.transmit(&job, &account)).await;
        match sending {
            Ok(Ok(Delivered { provider_id, copy })) => {
                if !outbox::mark_sent(
                    &self.inner.store,
                    &job.id,
                    claim(&job),
                    self.inner.clock.now_ms(),
                    &provider_id,
                    copy,
                )
                .await?
                {
                    return Ok(Outcome::NotOurs);
                }
                metrics::counter!("mailroom_emails_sent_total").increment(1);
                // The worker copies to Sent in batches on its next sweep (within the poll
                // interval): one IMAP login per account for every copy due. Waking it per
                // message would make a login per message under load.
                Ok(Outcome::Sent { provider_id })
            }
            Ok(Err(Failure::Store(e))) => Err(e),
            Ok(Err(Failure::Send(e))) => self.on_send_error(&job, &account, e).await,
            Ok(Err(Failure::Http(e))) => self.on_http_error(&job, &account, e).await,
            Ok(Err(Failure::Revoked(detail))) => {
                self.retry(
                    &job,
                    ErrorKind::DisconnectedAccount,
                    format!(
                        "the provider refused the account's grant; reconnect it to send: {detail}"
                    ),
                    true,
                )
                .await
            }
            Ok(Err(Failure::Other(kind, detail))) => self.fail(&job, kind, detail).await,
            Err(_) => {
                let detail = format!("the attempt did not finish within {}s", deadline.as_secs());
                self.retry(&job, ErrorKind::RequestTimeout, detail, false)
                    .await
            }
        }
    }

    async fn transmit(&self, job: &Job, account: &Account) -> Result<Delivered, Failure> {
        let raw = outbox::raw(&self.inner.store, &job.id)
            .await
            .map_err(Failure::Store)?
            .ok_or_else(|| {
                Failure::Other(
                    ErrorKind::UnexpectedError,
                    "the job lost its message".into(),
                )
            })?;
        if let Some(idp) = idp_of(account.account_type) {
            return self.transmit_http(job, account, idp, &raw).await;
        }
        let settings: MailSettings =
            serde_json::from_value(account.settings.clone()).map_err(|e| {
                Failure::Other(ErrorKind::UnexpectedError, format!("account settings: {e}"))
            })?;
        let Some(Credentials::Mail { smtp_password, .. }) =
            accounts::credentials(&self.inner.store, &self.inner.vault, &account.id)
                .await
                .map_err(Failure::Store)?
        else {
            return Err(Failure::Other(
                ErrorKind::InvalidAccount,
                "the account has no credentials".into(),
            ));
        };
        let login = smtp_login(&settings, &smtp_password);
        // A reconnect changes `updated_at`, so it also replaces the pooled connections.
        let key = format!("{}:{}", account.id, account.updated_at);
        self.inner
            .smtp
            .send(
                &key,
                &login,
                &self.inner.net,
                &job.envelope_from,
                &job.recipients,
                &raw,
            )
            .await
            .map_err(Failure::Send)?;
        // IMAP servers keep no copy of submitted mail: we APPEND it to Sent.
        Ok(Delivered {
            provider_id: job.message_id.clone(),
            copy: true,
        })
    }

    /// Gmail API or Microsoft Graph. Bcc recipients are not in the MIME headers (SMTP carries
    /// them in the envelope), so they are handed over separately. A refused access token is
    /// refreshed once and the send tried again.
    async fn transmit_http(
        &self,
        job: &Job,
        account: &Account,
        idp: IdP,
        raw: &[u8],
    ) -> Result<Delivered, Failure> {
        let app = self.inner.apps.get(idp).ok_or_else(|| {
            Failure::Other(
                ErrorKind::InvalidAccount,
                format!("the {idp:?} app is not configured on this server"),
            )
        })?;
        let visible = mailroom_mime::recipients::visible_recipients(raw);
        let bcc: Vec<String> = job
            .recipients
            .iter()
            .filter(|r| !visible.contains(&r.to_ascii_lowercase()))
            .cloned()
            .collect();
        let parent = job.thread_refs.last().map(String::as_str);
        let mailbox = self
            .inner
            .mailbox_slots
            .lock()
            .expect("mailbox slots poisoned")
            .entry(account.id.clone())
            .or_insert_with(|| Arc::new(Semaphore::new(MAILBOX_CONCURRENCY)))
            .clone();
        let _in_flight = mailbox
            .acquire()
            .await
            .expect("the semaphore is never closed");
        let mut stale: Option<SecretString> = None;
        loop {
            let token = self
                .inner
                .tokens
                .access_token(account, stale.as_ref())
                .await
                .map_err(|e| match e {
                    TokenError::Revoked(d) => Failure::Revoked(d),
                    TokenError::Transient(d) => Failure::Http(HttpApiError::transient(d)),
                    TokenError::NotConfigured(d) => Failure::Other(ErrorKind::InvalidAccount, d),
                    TokenError::Store(e) => Failure::Store(e),
                })?;
            let result = match idp {
                IdP::Google => {
                    let gmail = GmailClient::new(self.inner.http.clone(), app.api_base.clone());
                    // A reply stays in its Gmail thread only with the thread's id.
                    // A send-only account cannot search its mailbox: the reply carries its threading
                    // headers, Gmail threads it for the recipients, not in the sender's mailbox.
                    let can_read = send_mode(account) != mailroom_core::account::AccountMode::Send;
                    let thread = match parent.filter(|_| can_read) {
                        Some(p) => gmail
                            .find_by_message_id(&token, p)
                            .await
                            .map(|r| r.map(|r| r.thread_id)),
                        None => Ok(None),
                    };
                    match thread {
                        Ok(thread) => {
                            gmail
                                .send(&token, raw, &bcc, thread.as_deref())
                                .await
                                .map(|sent| Delivered {
                                    provider_id: sent.id,
                                    copy: false,
                                })
                        }
                        Err(e) => Err(e),
                    }
                }
                IdP::Microsoft => GraphClient::new(self.inner.http.clone(), app.api_base.clone())
                    .send_mime(&token, raw, &bcc, parent)
                    .await
                    // Graph's sendMail answers no id; the Message-ID names the message.
                    .map(|_| Delivered {
                        provider_id: job.message_id.clone(),
                        copy: false,
                    }),
            };
            match result {
                Ok(d) => return Ok(d),
                Err(e) if e.is_auth() && stale.is_none() => stale = Some(token),
                Err(e) => return Err(Failure::Http(e)),
            }
        }
    }

    async fn on_http_error(
        &self,
        job: &Job,
        account: &Account,
        e: HttpApiError,
    ) -> Result<Outcome, StoreError> {
        let detail = e.detail.clone();
        match e.kind {
            HttpErrorKind::Transient | HttpErrorKind::Throttled => {
                self.retry_after(
                    job,
                    ErrorKind::ProviderUnreachable,
                    detail,
                    false,
                    e.retry_after,
                )
                .await
            }
            HttpErrorKind::Auth => {
                crate::tokens::mark_credentials(
                    &self.inner.store,
                    account,
                    self.inner.clock.now_ms(),
                )
                .await?;
                self.retry(
                    job,
                    ErrorKind::DisconnectedAccount,
                    format!("the provider refused the account's token: {detail}"),
                    true,
                )
                .await
            }
            HttpErrorKind::RecipientRejected => {
                self.fail(job, ErrorKind::RecipientRejected, detail).await
            }
            HttpErrorKind::TooLarge => {
                self.fail(job, ErrorKind::ProviderContentTooLarge, detail)
                    .await
            }
            HttpErrorKind::Rejected => self.fail(job, ErrorKind::CantSendMessage, detail).await,
        }
    }

    async fn on_send_error(
        &self,
        job: &Job,
        account: &Account,
        e: SendError,
    ) -> Result<Outcome, StoreError> {
        let detail = e.detail().to_owned();
        match e.kind() {
            SendErrorKind::Transient => {
                self.retry(job, ErrorKind::ProviderUnreachable, detail, false)
                    .await
            }
            SendErrorKind::Auth => {
                crate::tokens::mark_credentials(
                    &self.inner.store,
                    account,
                    self.inner.clock.now_ms(),
                )
                .await?;
                self.retry(
                    job,
                    ErrorKind::DisconnectedAccount,
                    format!("the SMTP server refused the credentials: {detail}"),
                    true,
                )
                .await
            }
            SendErrorKind::RecipientRejected => {
                self.fail(job, ErrorKind::RecipientRejected, detail).await
            }
            SendErrorKind::SenderRejected => self.fail(job, ErrorKind::SendAsDenied, detail).await,
            SendErrorKind::TooLarge => {
                self.fail(job, ErrorKind::ProviderContentTooLarge, detail)
                    .await
            }
            SendErrorKind::Rejected => self.fail(job, ErrorKind::CantSendMessage, detail).await,
        }
    }

    async fn retry(
        &self,
        job: &Job,
        kind: ErrorKind,
        detail: String,
        refund: bool,
    ) -> Result<Outcome, StoreError> {
        self.retry_after(job, kind, detail, refund, None).await
    }

    async fn retry_after(
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
            return self.fail(job, kind, why).await;
        }
        // A provider's Retry-After wins over our schedule when it asks for longer.
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

    async fn fail(
        &self,
        job: &Job,
        kind: ErrorKind,
        detail: String,
    ) -> Result<Outcome, StoreError> {
        let now = self.inner.clock.now_ms();
        if !outbox::mark_failed(
            &self.inner.store,
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
        metrics::counter!("mailroom_emails_failed_total").increment(1);
        events::record(
            &self.inner.store,
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
        tracing::warn!(job = %job.id, error = %detail, "send failed");
        Ok(Outcome::Failed { kind, detail })
    }

    /// APPENDs the exact sent bytes of `ids` (all of one account) to its Sent folder, flagged
    /// `\Seen`, over one IMAP session. Failures are retried later; they never re-send mail.
    async fn copy_batch(&self, account_id: &str, ids: Vec<String>) {
        let deadline =
            self.inner.config.send_timeout + std::time::Duration::from_secs(ids.len() as u64);
        let session = tokio::time::timeout(
            self.inner.config.send_timeout,
            self.copy_session(account_id),
        )
        .await;
        let mut session = match session {
            Ok(Ok(s)) => Some(s),
            Ok(Err(e)) => {
                self.copies_failed(&ids, &e).await;
                None
            }
            Err(_) => {
                self.copies_failed(&ids, "the IMAP login for the Sent copy timed out")
                    .await;
                None
            }
        };
        let Some(session) = session.as_mut() else {
            return;
        };
        let store = &self.inner.store;
        let work = async {
            for id in &ids {
                let raw = match outbox::raw(store, id).await {
                    Ok(Some(raw)) => raw,
                    _ => continue,
                };
                let now = self.inner.clock.now_ms();
                let outcome = match mailbox::append_sent(session, &raw).await {
                    Ok(()) => outbox::mark_copy(store, id, self.node(), "done", now, None).await,
                    Err(e) => {
                        self.copies_failed(std::slice::from_ref(id), &e.to_string())
                            .await;
                        continue;
                    }
                };
                if let Err(e) = outcome {
                    tracing::warn!(job = %id, error = %e, "cannot record the Sent copy");
                }
            }
        };
        if tokio::time::timeout(deadline, work).await.is_err() {
            tracing::warn!(account_id = %account_id, "Sent copies timed out; the rest are retried");
        }
        let _ = session.logout().await;
    }

    async fn copy_session(&self, account_id: &str) -> Result<imap::ImapSession, String> {
        let store = &self.inner.store;
        let account = accounts::get_any(store, account_id)
            .await
            .map_err(|e| e.to_string())?
            .ok_or("account deleted")?;
        let settings: MailSettings =
            serde_json::from_value(account.settings).map_err(|e| e.to_string())?;
        let Some(Credentials::Mail { imap_password, .. }) =
            accounts::credentials(store, &self.inner.vault, &account.id)
                .await
                .map_err(|e| e.to_string())?
        else {
            return Err("no credentials".into());
        };
        let login = imap::ImapLogin {
            host: &settings.imap_host,
            port: settings.imap_port,
            tls: settings.imap_tls(),
            user: &settings.imap_user,
            password: &imap_password,
        };
        imap::login(&login, &self.inner.net)
            .await
            .map_err(|e| e.to_string())
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
        let grace = self.inner.config.send_timeout
            + std::time::Duration::from_millis(LEASE_MARGIN_MS as u64);
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
        let mut by_account: std::collections::HashMap<String, Vec<String>> =
            std::collections::HashMap::new();
        for id in copies {
            if let Some(job) = outbox::get_any(&self.inner.store, &id).await? {
                by_account.entry(job.account_id).or_default().push(id);
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

/// A message the provider took.
struct Delivered {
    provider_id: String,
    /// Whether we must copy it to the Sent folder ourselves (IMAP); Gmail and Graph keep one.
    copy: bool,
}

enum Failure {
    Store(StoreError),
    Send(SendError),
    Http(HttpApiError),
    /// The OAuth grant is gone (the account was marked `CREDENTIALS`).
    Revoked(String),
    Other(ErrorKind, String),
}

fn smtp_login<'a>(settings: &'a MailSettings, password: &'a SecretString) -> smtp::SmtpLogin<'a> {
    smtp::SmtpLogin {
        host: &settings.smtp_host,
        port: settings.smtp_port,
        tls: settings.smtp_tls(),
        user: &settings.smtp_user,
        password,
        mechanisms: smtp::PASSWORD_MECHANISMS,
    }
}

/// Exponential backoff from `retry_base`, doubling per attempt, capped at `retry_cap`, with
/// ±25 % jitter so retries of many jobs do not arrive together.
fn backoff(c: &OutboxConfig, attempts: i64) -> i64 {
    let exp = attempts.clamp(1, 30) - 1;
    let base = ms(c.retry_base)
        .saturating_mul(1i64 << exp)
        .min(ms(c.retry_cap))
        .max(1);
    let jitter = rand::rng().random_range(-(base / 4)..=(base / 4));
    (base + jitter).max(1)
}

/// The claim a job is held under (set by the claim that started this attempt).
fn claim(job: &Job) -> &str {
    job.locked_by.as_deref().unwrap_or("")
}

fn send_mode(account: &Account) -> mailroom_core::account::AccountMode {
    serde_json::from_value::<mailroom_core::account::OAuthSettings>(account.settings.clone())
        .map(|s| s.mode)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_bounded_jitter_and_a_cap() {
        let c = OutboxConfig {
            retry_base: std::time::Duration::from_secs(10),
            retry_cap: std::time::Duration::from_secs(60),
            ..OutboxConfig::default()
        };
        let base = ms(c.retry_base);
        let cap = ms(c.retry_cap);
        let want = |attempts: i64| (base << (attempts - 1)).min(cap);
        for attempts in 1..=8 {
            for _ in 0..200 {
                let got = backoff(&c, attempts);
                let w = want(attempts);
                assert!(
                    got >= w - w / 4 && got <= w + w / 4,
                    "attempt {attempts}: {got} not within 25% of {w}"
                );
            }
        }
    }
}
