//! The delivery worker: claims due deliveries (a lease per attempt, so several processes on
//! one database share the work and a killed process's deliveries are taken over when their
//! lease expires), posts each through the SSRF guard to the address it checked, and records
//! the attempt and its outcome together.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use secrecy::SecretString;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::task::TaskTracker;

use mailroom_core::Clock;
use mailroom_store::webhook_deliveries::{self as deliveries, Attempt, Settle, signal};
use mailroom_store::webhooks::{self, Webhook};
use mailroom_store::{Store, StoreError, Vault};

use super::{WebhookConfig, backoff_ms, ms, payload, sign};
use crate::notify::{check_target, pinned_client};

#[derive(Clone)]
pub struct Webhooks {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    vault: Vault,
    clock: Arc<dyn Clock>,
    config: WebhookConfig,
    node: String,
    slots: Arc<Semaphore>,
    /// Attempts under way per destination (`host:port`), bounded by `per_host`.
    hosts: Mutex<HashMap<String, Arc<Semaphore>>>,
    tasks: TaskTracker,
}

/// The vault's associated data for a webhook's secret: a sealed secret cannot be moved to
/// another webhook.
pub(crate) fn secret_aad(webhook_id: &str) -> String {
    format!("webhook-secret:{webhook_id}")
}

/// What came back from the receiver.
struct Answer {
    status: Option<u16>,
    error: Option<String>,
}

impl Webhooks {
    pub fn new(store: Store, vault: Vault, clock: Arc<dyn Clock>, config: WebhookConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                vault,
                clock,
                slots: Arc::new(Semaphore::new(config.concurrency.max(1))),
                config,
                node: mailroom_core::new_id(),
                hosts: Mutex::new(HashMap::new()),
                tasks: TaskTracker::new(),
            }),
        }
    }

    pub fn config(&self) -> &WebhookConfig {
        &self.inner.config
    }

    fn lease_until(&self, now_ms: i64) -> i64 {
        now_ms + ms(self.inner.config.attempt_timeout) + ms(self.inner.config.lease_margin)
    }

    /// Runs the worker until `shutdown` resolves, then lets attempts under way finish (an
    /// attempt is bounded by its timeout; one cut short is retried once its lease expires).
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            // Registered before the sweep, so a delivery queued while it runs still wakes us.
            let woken = signal().notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            if let Err(e) = self.sweep().await {
                tracing::warn!(error = %e, "webhook sweep failed");
            }
            tokio::select! {
                _ = &mut shutdown => break,
                _ = &mut woken => {}
                _ = tokio::time::sleep(self.inner.config.poll_interval) => {}
            }
        }
        self.inner.tasks.close();
        let grace = self.inner.config.attempt_timeout + Duration::from_secs(1);
        if tokio::time::timeout(grace, self.inner.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                "webhook deliveries still running at shutdown; they will be retried when their lease expires"
            );
        }
    }

    /// Claims what is due and can start now, and delivers it in the background.
    pub async fn sweep(&self) -> Result<usize, StoreError> {
        let now = self.inner.clock.now_ms();
        let free = self.inner.slots.available_permits() as i64;
        let claimed = deliveries::claim_due(
            &self.inner.store,
            &self.inner.node,
            now,
            self.lease_until(now),
            free,
        )
        .await?;
        let n = claimed.len();
        for (id, token) in claimed {
            let Ok(slot) = self.inner.slots.clone().try_acquire_owned() else {
                break; // only this loop takes slots, so there is one per claim
            };
            let me = self.clone();
            self.inner.tasks.spawn(async move {
                if let Err(e) = me.attempt(&id, &token, slot).await {
                    tracing::warn!(delivery = %id, error = %e, "webhook attempt failed");
                }
                // The next delivery of its queue may be due now.
                signal().notify_waiters();
            });
        }
        Ok(n)
    }

    fn host_slots(&self, key: &str) -> Arc<Semaphore> {
        let mut hosts = self.inner.hosts.lock().expect("not poisoned");
        hosts
            .entry(key.to_owned())
            .or_insert_with(|| Arc::new(Semaphore::new(self.inner.config.per_host.max(1))))
            .clone()
    }

    /// The secrets that sign now: the current one, and the previous one during its overlap.
    async fn secrets(&self, w: &Webhook, now_ms: i64) -> Result<Vec<SecretString>, StoreError> {
        let aad = secret_aad(&w.id);
        let open = |b: Vec<u8>| {
            let aad = aad.clone();
            async move {
                let plain = self.inner.vault.open_blob(&aad, &b).await?;
                Ok::<_, StoreError>(SecretString::from(
                    String::from_utf8_lossy(&plain).into_owned(),
                ))
            }
        };
        let mut out = vec![open(w.secret.clone()).await?];
        if let (Some(old), Some(until)) = (&w.old_secret, w.old_secret_until)
            && until > now_ms
        {
            out.push(open(old.clone()).await?);
        }
        Ok(out)
    }

    /// One attempt of claimed delivery `id` under claim `token`.
    async fn attempt(
        &self,
        id: &str,
        token: &str,
        _slot: OwnedSemaphorePermit,
    ) -> Result<(), StoreError> {
        let store = &self.inner.store;
        let Some(d) = deliveries::get_any(store, id).await? else {
            return Ok(());
        };
        let now = self.inner.clock.now_ms();
        let Some((kind, _account, mut event, _at)) =
            deliveries::event_of(store, &d.event_id).await?
        else {
            return Ok(()); // the event's deletion takes its deliveries with it
        };
        payload::complete_email(store, &d.workspace_id, &kind, &mut event).await?;
        let webhook = match &d.webhook_id {
            Some(wid) => match webhooks::get_any(store, wid).await? {
                Some(w) => Some(w),
                None => return Ok(()),
            },
            None => None,
        };
        let url = match (&webhook, &d.target_url) {
            (Some(w), _) => w.request_url.clone(),
            (None, Some(u)) => u.clone(),
            (None, None) => return Ok(()),
        };
        let body = payload::render(webhook.as_ref(), &kind, event);
        let secrets = match &webhook {
            Some(w) => self.secrets(w, now).await?,
            None => vec![],
        };
        let parsed = url::Url::parse(&url).ok();
        let host_key = parsed
            .as_ref()
            .map(|u| {
                format!(
                    "{}:{}",
                    u.host_str().unwrap_or(""),
                    u.port_or_known_default().unwrap_or(0)
                )
            })
            .unwrap_or_default();
        let _host = self
            .host_slots(&host_key)
            .acquire_owned()
            .await
            .expect("never closed");
        // Waiting for the host may have taken a while: the lease must cover the attempt.
        let started_at = self.inner.clock.now_ms();
        if !deliveries::renew(store, id, token, self.lease_until(started_at)).await? {
            return Ok(());
        }
        let started = Instant::now();
        let answer = match parsed {
            None => Answer {
                status: None,
                error: Some("the URL does not parse".into()),
            },
            Some(u) => {
                self.post(
                    &u,
                    &d.event_id,
                    webhook.as_ref(),
                    &secrets,
                    body,
                    started_at,
                )
                .await
            }
        };
        let latency_ms = started.elapsed().as_millis() as i64;
        let attempt = Attempt {
            attempt: d.attempts,
            started_at,
            status_code: answer.status.map(i64::from),
            latency_ms,
            error: answer.error.clone(),
        };
        let max = if d.max_attempts > 0 {
            d.max_attempts
        } else {
            self.inner.config.max_attempts
        };
        let error_text = answer.error.clone().unwrap_or_default();
        let now = self.inner.clock.now_ms();
        let outcome = match answer.status {
            Some(s) if (200..300).contains(&s) => Settle::Delivered,
            Some(410) if webhook.is_some() => Settle::Failed {
                error: &error_text,
                disable_webhook: Some("the receiver answered 410 Gone"),
            },
            _ if d.attempts >= max => Settle::Failed {
                error: &error_text,
                disable_webhook: None,
            },
            _ => Settle::Retry {
                run_after: now + backoff_ms(&self.inner.config, d.attempts),
                error: &error_text,
            },
        };
        let delivered = matches!(outcome, Settle::Delivered);
        if deliveries::settle(store, id, token, &attempt, outcome, now).await? {
            metrics::counter!("mailroom_webhook_attempts_total", "outcome" => if delivered { "delivered" } else { "failed" })
                .increment(1);
            if !delivered {
                tracing::info!(delivery = %id, attempt = d.attempts, status = ?answer.status, error = %error_text, "webhook delivery attempt failed");
            }
        }
        Ok(())
    }

    /// POSTs `body` to `url`, signed, through the SSRF guard.
    async fn post(
        &self,
        url: &url::Url,
        msg_id: &str,
        webhook: Option<&Webhook>,
        secrets: &[SecretString],
        body: payload::Body,
        now_ms: i64,
    ) -> Answer {
        let failed = |e: String| Answer {
            status: None,
            error: Some(e),
        };
        let addrs = match check_target(url, self.inner.config.allow_private).await {
            Ok(a) => a,
            Err(e) => return failed(format!("refused by the SSRF guard: {e}")),
        };
        let client = match pinned_client(url, &addrs, self.inner.config.attempt_timeout) {
            Ok(c) => c,
            Err(e) => return failed(format!("cannot build the HTTP client: {e}")),
        };
        let timestamp = now_ms / 1000;
        let mut req = client
            .post(url.clone())
            .header("content-type", body.content_type)
            .header(
                "user-agent",
                concat!("mailroom/", env!("CARGO_PKG_VERSION")),
            )
            .header("webhook-id", msg_id)
            .header("webhook-timestamp", timestamp.to_string());
        if !secrets.is_empty() {
            req = req.header(
                "webhook-signature",
                sign::signature_header(secrets, msg_id, timestamp, &body.bytes),
            );
        }
        for h in webhook.map(|w| w.headers.as_slice()).unwrap_or(&[]) {
            // Custom headers win over the defaults above (e.g. their own Content-Type); the
            // signature headers are refused when the webhook is created.
            req = req.header(h.key.as_str(), h.value.as_str());
        }
        let req = match req.body(body.bytes).build() {
            Ok(mut r) => {
                dedupe_custom(&mut r, webhook);
                r
            }
            Err(e) => return failed(format!("cannot build the request: {}", e.without_url())),
        };
        match client.execute(req).await {
            Ok(r) => {
                let status = r.status().as_u16();
                let error = if r.status().is_success() {
                    None
                } else if r.status().is_redirection() {
                    Some(format!("answered {status}; redirects are not followed"))
                } else {
                    Some(format!("answered {status}"))
                };
                Answer {
                    status: Some(status),
                    error,
                }
            }
            Err(e) if e.is_timeout() => failed(format!(
                "no answer within {:?}",
                self.inner.config.attempt_timeout
            )),
            Err(e) if e.is_connect() => failed(format!(
                "cannot connect: {}",
                std::error::Error::source(&e)
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| e.without_url().to_string())
            )),
            Err(e) => failed(e.without_url().to_string()),
        }
    }
}

/// A custom header the integrator set replaces the default of the same name (reqwest's
/// `header` appends).
fn dedupe_custom(req: &mut reqwest::Request, webhook: Option<&Webhook>) {
    for h in webhook.map(|w| w.headers.as_slice()).unwrap_or(&[]) {
        let Ok(name) = reqwest::header::HeaderName::from_bytes(h.key.as_bytes()) else {
            continue;
        };
        let headers = req.headers_mut();
        let values: Vec<_> = headers.get_all(&name).iter().cloned().collect();
        if values.len() > 1
            && let Some(last) = values.last().cloned()
        {
            headers.insert(name, last);
        }
    }
}
