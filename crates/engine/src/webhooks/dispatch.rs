//! The delivery worker: claims due deliveries (a lease per attempt, so several processes on
//! one database share the work and a killed process's deliveries are taken over when their
//! lease expires), posts each through the SSRF guard to the address it checked, and records
//! the attempt and its outcome together.
//!
//! Throughput comes from doing little per delivery: a sweep reads only the queue heads and
//! claims those whose destination has a free slot (nothing is claimed to be given back); an
//! attempt that settles its delivery claims the next one of its queue in the same transaction
//! and goes on with it under the same slots ([`CHAIN_MAX`] at most, then the slot goes back to
//! the sweep, oldest heads first, so one busy account cannot keep a slot); and the outcomes of
//! attempts that finish together are recorded in one transaction by one settler task.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use secrecy::SecretString;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio_util::task::TaskTracker;

use mailroom_core::Clock;
use mailroom_store::webhook_deliveries::{
    self as deliveries, Attempt, Claim, Delivery, Finished, Outcome, Settled, signal,
};
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
    /// The settler's inbox (see [`settler`]); started with the first attempt.
    settler: OnceLock<mpsc::UnboundedSender<SettleJob>>,
    /// Set when the worker stops: attempts under way finish, but claim nothing more.
    stopping: AtomicBool,
}

/// One finished attempt for the settler, and where its answer goes.
struct SettleJob {
    finished: Finished,
    reply: oneshot::Sender<Result<Settled, String>>,
}

/// The slots an attempt holds: one of the process's, one of its destination's.
struct Slots {
    _process: OwnedSemaphorePermit,
    host: OwnedSemaphorePermit,
    /// The destination the host slot is for.
    host_key: String,
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
    by_target: Mutex<HashMap<PinnedTarget, reqwest::Client>>,
}

/// `scheme://host`, port, and the checked addresses (sorted).
type PinnedTarget = (String, u16, Vec<std::net::SocketAddr>);

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

/// Deliveries of one queue an attempt goes on with (claiming each as it settles the previous
/// one) before it gives its slots back to the sweep.
pub const CHAIN_MAX: usize = 32;

/// Queue heads a sweep reads at most (more than the slots: some heads wait for a busy
/// destination).
const HEADS_READ: i64 = 1_000;

/// Finished attempts the settler records in one transaction at most.
const SETTLE_BATCH: usize = 64;

/// The slot key of a destination, `host:port` (every URL that does not parse shares one).
fn host_key(url: Option<&url::Url>) -> String {
    url.map(|u| {
        format!(
            "{}:{}",
            u.host_str().unwrap_or(""),
            u.port_or_known_default().unwrap_or(0)
        )
    })
    .unwrap_or_default()
}

/// Records finished attempts: everything waiting when it turns to the inbox goes into one
/// transaction ([`deliveries::settle`]), so attempts that finish together cost one commit, and
/// on SQLite the dispatcher's writes queue here instead of polling for the write lock.
async fn settler(
    store: Store,
    node: String,
    lease_ms: i64,
    clock: Arc<dyn Clock>,
    mut inbox: mpsc::UnboundedReceiver<SettleJob>,
) {
    let mut jobs = Vec::with_capacity(SETTLE_BATCH);
    while inbox.recv_many(&mut jobs, SETTLE_BATCH).await > 0 {
        let (finished, replies): (Vec<_>, Vec<_>) =
            jobs.drain(..).map(|j| (j.finished, j.reply)).unzip();
        // A failed batch records nothing: it is tried again a few times (a busy SQLite, a
        // PostgreSQL deadlock or connection blip pass), then item by item, so one bad item
        // cannot throw the others' outcomes away (each would be sent again when its lease
        // ran out).
        let mut result = Err(String::new());
        for pause_ms in [0, 50, 250] {
            tokio::time::sleep(Duration::from_millis(pause_ms)).await;
            let now = clock.now_ms();
            result = deliveries::settle(&store, &finished, &node, now, now + lease_ms)
                .await
                .map_err(|e| e.to_string());
            if result.is_ok() {
                break;
            }
        }
        match result {
            Ok(settled) => {
                for (reply, s) in replies.into_iter().zip(settled) {
                    let _ = reply.send(Ok(s));
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, attempts = finished.len(), "a batch of webhook outcomes could not be recorded; recording them one by one");
                for (f, reply) in finished.into_iter().zip(replies) {
                    let now = clock.now_ms();
                    let one = deliveries::settle(
                        &store,
                        std::slice::from_ref(&f),
                        &node,
                        now,
                        now + lease_ms,
                    )
                    .await
                    .map_err(|e| e.to_string())
                    .and_then(|mut s| s.pop().ok_or_else(|| "nothing settled".to_owned()));
                    // Not recorded: the delivery is tried again when its lease runs out.
                    let _ = reply.send(one);
                }
            }
        }
    }
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
                clients: PinnedClients::default(),
                tasks: TaskTracker::new(),
                settler: OnceLock::new(),
                stopping: AtomicBool::new(false),
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
        self.inner.stopping.store(true, Ordering::SeqCst);
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

    /// Claims the queue heads that are due and whose destination has a free slot, and
    /// delivers them in the background.
    pub async fn sweep(&self) -> Result<usize, StoreError> {
        if self.inner.slots.available_permits() == 0 {
            return Ok(0);
        }
        let store = &self.inner.store;
        let now = self.inner.clock.now_ms();
        // Picked within the free slots, oldest first; a head whose destination is busy is not
        // claimed at all (it stays pending, at its place). Heads are read page by page while
        // slots are free, so a flood of heads for one busy destination cannot hide the heads
        // of others behind it.
        let mut picked: HashMap<i64, Slots> = HashMap::new();
        let mut after = 0;
        'pages: loop {
            let heads = deliveries::due_heads(store, now, after, HEADS_READ).await?;
            let full = heads.len() as i64 == HEADS_READ;
            for head in heads {
                after = head.seq;
                let Ok(process) = self.inner.slots.clone().try_acquire_owned() else {
                    break 'pages;
                };
                let key = host_key(
                    head.url
                        .as_deref()
                        .and_then(|u| url::Url::parse(u).ok())
                        .as_ref(),
                );
                let Ok(host) = self.host_slots(&key).try_acquire_owned() else {
                    continue;
                };
                picked.insert(
                    head.seq,
                    Slots {
                        _process: process,
                        host,
                        host_key: key,
                    },
                );
            }
            if !full {
                break;
            }
        }
        let seqs: Vec<i64> = picked.keys().copied().collect();
        let claims =
            deliveries::claim(store, &seqs, &self.inner.node, now, self.lease_until(now)).await?;
        let n = claims.len();
        for claim in claims {
            let Some(slots) = picked.remove(&claim.seq) else {
                continue;
            };
            let me = self.clone();
            self.inner
                .tasks
                .spawn(async move { me.deliver(claim, slots).await });
        }
        // Heads claimed elsewhere meanwhile: their slots go back as `picked` drops.
        Ok(n)
    }

    /// Delivers claimed delivery `claim`, then the next ones of its queue as each is settled
    /// (up to [`CHAIN_MAX`]), under the same slots.
    async fn deliver(&self, mut claim: Claim, mut slots: Slots) {
        for chained in 1.. {
            let go_on = chained < CHAIN_MAX && !self.inner.stopping.load(Ordering::SeqCst);
            let id = claim.id.clone();
            match self.attempt(claim, &mut slots, go_on).await {
                Ok(Some(next)) => claim = next,
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(delivery = %id, error = %e, "webhook attempt failed");
                    break;
                }
            }
        }
        drop(slots);
        // Slots are free, and the next delivery of the queue may be due.
        signal().notify_waiters();
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
    async fn prepare(
        &self,
        d: &Delivery,
        mut event: serde_json::Value,
        now: i64,
    ) -> Result<Option<Prepared>, StoreError> {
        let store = &self.inner.store;
        let kind = &d.event_kind;
        payload::complete_email(store, &d.workspace_id, kind, &mut event).await?;
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
        let body = payload::render(webhook.as_ref(), kind, event);
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

    /// Records a finished attempt through the settler.
    async fn settle(&self, finished: Finished) -> Result<Settled, String> {
        let inbox = self.inner.settler.get_or_init(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            let lease_ms =
                ms(self.inner.config.attempt_timeout) + ms(self.inner.config.lease_margin);
            tokio::spawn(settler(
                self.inner.store.clone(),
                self.inner.node.clone(),
                lease_ms,
                self.inner.clock.clone(),
                rx,
            ));
            tx
        });
        let (reply, answer) = oneshot::channel();
        inbox
            .send(SettleJob { finished, reply })
            .map_err(|_| "the settler stopped".to_owned())?;
        answer.await.map_err(|_| "the settler stopped".to_owned())?
    }

    /// One attempt of claimed delivery `claim` (its attempt already counted) under `slots`.
    /// Answers the next delivery of its queue when it was settled and `claim_next` (claimed
    /// in the same transaction, so it must be attempted now).
    async fn attempt(
        &self,
        claim: Claim,
        slots: &mut Slots,
        claim_next: bool,
    ) -> Result<Option<Claim>, StoreError> {
        let store = &self.inner.store;
        let Claim {
            id,
            token,
            attempt: attempt_no,
            lease_until: claim_lease_until,
            ..
        } = claim;
        let Some((d, event)) = deliveries::get_with_payload(store, &id).await? else {
            return Ok(None);
        };
        let now = self.inner.clock.now_ms();
        // A delivery that cannot be prepared (its event unreadable, its secret not opening) is
        // a failed attempt like a refused POST: retried, then given up, never left claimed
        // (it would hold its account's later events back for ever).
        let prepared = match self.prepare(&d, event, now).await {
            Ok(Some(p)) => Ok(p),
            Ok(None) => return Ok(None),
            Err(e) => Err(format!("cannot prepare the delivery: {e}")),
        };
        // The next delivery of a queue normally goes where the previous one went; if its
        // webhook's URL changed meanwhile, it needs a slot of its new destination, or it goes
        // back (uncounted) for a later sweep.
        if let Ok(Prepared { url: Some(u), .. }) = &prepared {
            let key = host_key(Some(u));
            if key != slots.host_key {
                let Ok(host) = self.host_slots(&key).try_acquire_owned() else {
                    deliveries::unclaim(store, &id, &token, now).await?;
                    return Ok(None);
                };
                slots.host = host;
                slots.host_key = key;
            }
        }
        let started_at = self.inner.clock.now_ms();
        let started = Instant::now();
        // The attempt must be over, and settled, within the claim's lease: past it another
        // process may take the delivery over. What came before the POST (the sweep, reading
        // and preparing, a busy database) ate into it; the POST gets what is left, and a
        // claim with too little left goes back (uncounted) for a later sweep.
        // Half the lease's margin is kept to record the outcome.
        let slack = ms(self.inner.config.lease_margin) / 2;
        let left = Duration::from_millis((claim_lease_until - started_at - slack).max(0) as u64);
        if left.is_zero() {
            deliveries::unclaim(store, &id, &token, started_at).await?;
            return Ok(None);
        }
        let limit = self.inner.config.attempt_timeout.min(left);
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
            Some(s) if (200..300).contains(&s) => Outcome::Delivered,
            Some(410) if webhook.is_some() => Outcome::Failed {
                error: error_text.clone(),
                disable_webhook: Some("the receiver answered 410 Gone".into()),
            },
            _ if attempt_no >= max => Outcome::Failed {
                error: error_text.clone(),
                disable_webhook: None,
            },
            _ => Outcome::Retry {
                run_after: now + backoff_ms(&self.inner.config, attempt_no),
                error: error_text.clone(),
            },
        };
        let delivered = outcome == Outcome::Delivered;
        let settled = self
            .settle(Finished {
                id: id.clone(),
                token,
                attempt,
                outcome,
                // Notify calls have a queue of their own each: nothing follows them.
                claim_next: claim_next && d.webhook_id.is_some(),
            })
            .await;
        let settled = match settled {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(delivery = %id, error = %e, "cannot record a webhook attempt; it is retried when its lease runs out");
                return Ok(None);
            }
        };
        if settled.recorded {
            metrics::counter!("mailroom_webhook_attempts_total", "outcome" => if delivered { "delivered" } else { "failed" })
                .increment(1);
            if delivered {
                tracing::debug!(delivery = %id, attempt = attempt_no, "webhook delivered");
            } else {
                tracing::info!(delivery = %id, attempt = attempt_no, status = ?answer.status, error = %error_text, "webhook delivery attempt failed");
            }
        }
        Ok(settled.next)
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
