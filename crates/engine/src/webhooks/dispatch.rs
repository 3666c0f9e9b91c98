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
use mailroom_store::webhook_deliveries::{self as deliveries, Attempt, Delivery, Settle, signal};
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
    /// HTTP clients pinned to the addresses the SSRF guard checked, by destination and those
    /// addresses (see [`PinnedClients`]).
    clients: PinnedClients,
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

/// A delivery ready to send.
struct Prepared {
    /// `None`: the stored URL does not parse.
    url: Option<url::Url>,
    webhook: Option<Webhook>,
    body: payload::Body,
    secrets: Vec<SecretString>,
}

/// Clients pinned to checked addresses, kept for reuse: a client per attempt would build a TLS
/// configuration and open a new connection for every delivery; a kept one reuses its
/// keep-alive connections to the receiver. The key is the destination *and* the addresses the
/// guard checked for this attempt, so the SSRF guard keeps its meaning: every attempt still
/// resolves and checks the name, and a client only ever connects to the addresses of its key
/// (a name that now resolves elsewhere gets a new client, pinned to the new, checked ones).
#[derive(Default)]
struct PinnedClients {
    by_target: Mutex<HashMap<(String, u16, Vec<std::net::SocketAddr>), reqwest::Client>>,
}

/// Clients kept at most; past it the cache starts over (a rare many-destination burst costs
/// new connections, never unbounded memory).
const PINNED_CLIENTS_MAX: usize = 256;

impl PinnedClients {
    fn get(
        &self,
        url: &url::Url,
        mut addrs: Vec<std::net::SocketAddr>,
        timeout: Duration,
    ) -> Result<reqwest::Client, String> {
        addrs.sort_unstable();
        let key = (
            format!("{}://{}", url.scheme(), url.host_str().unwrap_or_default()),
            url.port_or_known_default().unwrap_or(0),
            addrs,
        );
        let mut by_target = self.by_target.lock().expect("not poisoned");
        if let Some(c) = by_target.get(&key) {
            return Ok(c.clone());
        }
        let client = pinned_client(url, &key.2, timeout)?;
        if by_target.len() >= PINNED_CLIENTS_MAX {
            by_target.clear();
        }
        by_target.insert(key, client.clone());
        Ok(client)
    }
}

/// How long a delivery whose destination has no free slot waits before it is claimed again.
const HOST_BUSY_RETRY_MS: i64 = 1_000;

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
                clients: PinnedClients::default(),
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

    /// What claimed delivery `d` sends: `None` when its event or webhook is gone (the
    /// deletion takes the delivery with it).
    async fn prepare(&self, d: &Delivery, now: i64) -> Result<Option<Prepared>, StoreError> {
        let store = &self.inner.store;
        let Some((kind, _account, mut event, _at)) =
            deliveries::event_of(store, &d.event_id).await?
        else {
            return Ok(None);
        };
        payload::complete_email(store, &d.workspace_id, &kind, &mut event).await?;
        let webhook = match &d.webhook_id {
            Some(wid) => match webhooks::get_any(store, wid).await? {
                Some(w) => Some(w),
                None => return Ok(None),
            },
            None => None,
        };
        let url = match (&webhook, &d.target_url) {
            (Some(w), _) => w.request_url.clone(),
            (None, Some(u)) => u.clone(),
            (None, None) => return Ok(None),
        };
        let body = payload::render(webhook.as_ref(), &kind, event);
        let secrets = match &webhook {
            Some(w) => self.secrets(w, now).await?,
            None => vec![],
        };
        Ok(Some(Prepared {
            url: url::Url::parse(&url).ok(),
            webhook,
            body,
            secrets,
        }))
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
        // A delivery that cannot be prepared (its event unreadable, its secret not opening) is
        // a failed attempt like a refused POST: retried, then given up, never left claimed
        // (it would hold its account's later events back for ever).
        let prepared = match self.prepare(&d, now).await {
            Ok(Some(p)) => Ok(p),
            Ok(None) => return Ok(()),
            Err(e) => Err(format!("cannot prepare the delivery: {e}")),
        };
        let host_key = prepared
            .as_ref()
            .ok()
            .and_then(|p| p.url.as_ref())
            .map(|u| {
                format!(
                    "{}:{}",
                    u.host_str().unwrap_or(""),
                    u.port_or_known_default().unwrap_or(0)
                )
            })
            .unwrap_or_default();
        // A busy destination is not waited for: the claim goes back (no attempt counted) and
        // this process's slot serves other hosts meanwhile.
        let Ok(_host) = self.host_slots(&host_key).try_acquire_owned() else {
            deliveries::unclaim(store, id, token, now + HOST_BUSY_RETRY_MS).await?;
            return Ok(());
        };
        // The attempt counts from here, under a lease that covers it.
        let started_at = self.inner.clock.now_ms();
        let Some(attempt_no) =
            deliveries::start_attempt(store, id, token, self.lease_until(started_at)).await?
        else {
            return Ok(());
        };
        let started = Instant::now();
        let limit = self.inner.config.attempt_timeout;
        let (answer, webhook) = match prepared {
            Err(e) => (
                Answer {
                    status: None,
                    error: Some(e),
                },
                None,
            ),
            Ok(Prepared {
                url: None, webhook, ..
            }) => (
                Answer {
                    status: None,
                    error: Some("the URL does not parse".into()),
                },
                webhook,
            ),
            Ok(Prepared {
                url: Some(u),
                webhook,
                body,
                secrets,
            }) => {
                // One deadline for the name lookup and the request together: the lease is
                // sized on it.
                let post = self.post(
                    &u,
                    &d.event_id,
                    webhook.as_ref(),
                    &secrets,
                    body,
                    started_at,
                );
                let answer = tokio::time::timeout(limit, post).await.unwrap_or(Answer {
                    status: None,
                    error: Some(format!("no answer within {limit:?}")),
                });
                (answer, webhook)
            }
        };
        let latency_ms = started.elapsed().as_millis() as i64;
        let attempt = Attempt {
            attempt: attempt_no,
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
            _ if attempt_no >= max => Settle::Failed {
                error: &error_text,
                disable_webhook: None,
            },
            _ => Settle::Retry {
                run_after: now + backoff_ms(&self.inner.config, attempt_no),
                error: &error_text,
            },
        };
        let delivered = matches!(outcome, Settle::Delivered);
        if deliveries::settle(store, id, token, &attempt, outcome, now).await? {
            metrics::counter!("mailroom_webhook_attempts_total", "outcome" => if delivered { "delivered" } else { "failed" })
                .increment(1);
            if !delivered {
                tracing::info!(delivery = %id, attempt = attempt_no, status = ?answer.status, error = %error_text, "webhook delivery attempt failed");
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
        let client = match self
            .inner
            .clients
            .get(url, addrs, self.inner.config.attempt_timeout)
        {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A keep-alive HTTP/1.1 server that answers every request 204 and counts connections.
    async fn counting_server() -> (std::net::SocketAddr, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 8192];
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0
                            || s.write_all(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
                                .await
                                .is_err()
                        {
                            break;
                        }
                    }
                });
            }
        });
        (addr, accepted)
    }

    /// Attempts to one destination at the same checked address share a client and so its
    /// keep-alive connection; another set of checked addresses gets a client of its own.
    #[tokio::test]
    async fn pinned_clients_are_kept_per_destination_and_checked_addresses() {
        let (addr, accepted) = counting_server().await;
        let url = url::Url::parse(&format!("http://receiver.invalid:{}/in", addr.port())).unwrap();
        let clients = PinnedClients::default();
        for _ in 0..3 {
            let c = clients
                .get(&url, vec![addr], Duration::from_secs(5))
                .unwrap();
            let r = c.post(url.clone()).body("x").send().await.unwrap();
            assert_eq!(r.status().as_u16(), 204);
        }
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            1,
            "one connection for three posts"
        );
        let other: std::net::SocketAddr = format!("127.0.0.2:{}", addr.port()).parse().unwrap();
        let c = clients
            .get(&url, vec![other, addr], Duration::from_secs(5))
            .unwrap();
        assert_eq!(clients.by_target.lock().unwrap().len(), 2);
        drop(c);
    }
}
