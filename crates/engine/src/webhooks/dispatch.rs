//! The delivery worker: claims due deliveries (a lease per attempt, so several processes on
//! one database share the work and a killed process's deliveries are taken over when their
//! lease expires), posts each through the SSRF guard to the address it checked, and records
//! the attempt and its outcome together.
//!
//! Throughput comes from doing little per delivery. A sweep reads only the queue heads and,
//! for each whose destination has a free slot, claims a **run**: the head and the deliveries
//! after it in its queue (up to [`RUN_MAX`]), in one statement. The run is read and prepared
//! in a few statements (deliveries and events, the message bodies, the webhook and its
//! secrets once), then posted in order, one after the other, under the same slots; a
//! delivery is posted only once the one before it was answered 2xx (a failure ends the run,
//! and gives the rest back uncounted, so the queue waits for the retry). Outcomes go to one
//! settler task that records everything that finished meanwhile in one transaction, a few
//! hundred rows per statement; a run does not wait for its records between two posts.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use secrecy::SecretString;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio_util::task::TaskTracker;

use mailroom_core::Clock;
use mailroom_store::webhook_deliveries::{
    self as deliveries, Attempt, Claim, Delivery, Finished, Outcome, signal,
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
    /// Runs claimed and attempts under way per destination (`host:port`).
    hosts: Mutex<HashMap<String, HostSlots>>,
    /// HTTP clients pinned to the addresses the SSRF guard checked, by destination and those
    /// addresses (see [`PinnedClients`]).
    clients: PinnedClients,
    tasks: TaskTracker,
    /// The settler's inbox (see [`settler`]); started with the first run.
    settler: OnceLock<mpsc::Sender<SettleJob>>,
    /// Set when the worker stops: runs under way end after the attempt they are in, and
    /// nothing more is claimed.
    stopping: AtomicBool,
}

/// What the settler is sent: an outcome to record, or a marker answered once everything sent
/// before it has been recorded (or found not current).
enum SettleJob {
    Record(Finished),
    Flush(oneshot::Sender<()>),
}

/// The slots a run holds from its claim on: one of the process's, one of its destination's
/// run slots (it takes a posting slot only once it is prepared).
struct Slots {
    _process: OwnedSemaphorePermit,
    host: OwnedSemaphorePermit,
    /// The destination the host slot is for.
    host_key: String,
}

/// A destination's limits: `posts` bounds the attempts under way to it (`per_host`); `runs`
/// the runs claimed for it (twice that), so while some runs post, as many are read and
/// prepared, and a run's database work does not keep a posting slot idle.
#[derive(Clone)]
struct HostSlots {
    runs: Arc<Semaphore>,
    posts: Arc<Semaphore>,
}

impl HostSlots {
    fn new(per_host: usize) -> Self {
        Self {
            runs: Arc::new(Semaphore::new(2 * per_host)),
            posts: Arc::new(Semaphore::new(per_host)),
        }
    }

    /// Nothing claimed for the destination, nothing posting to it.
    fn idle(&self, per_host: usize) -> bool {
        self.runs.available_permits() == 2 * per_host && self.posts.available_permits() == per_host
    }
}

/// Forgets the destinations with nothing claimed (a fresh entry is the same), so the map
/// holds the busy ones, not every host ever posted to.
fn forget_idle(hosts: &mut HashMap<String, HostSlots>, per_host: usize) {
    hosts.retain(|_, h| !h.idle(per_host));
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

/// Where a run's deliveries go and how they are signed (one webhook, or one `notify_url`).
struct Target {
    /// `None`: the stored URL does not parse.
    url: Option<url::Url>,
    webhook: Option<Webhook>,
    secrets: Vec<SecretString>,
}

/// A run read and prepared: its target, and each delivery still there with its body.
struct PreparedRun {
    target: Target,
    bodies: HashMap<String, (Delivery, payload::Body)>,
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

/// Deliveries of one queue a run claims at most: enough that the database work of a run (a
/// claim, three reads, its share of the settles) is small beside its posts, few enough that
/// the queues waiting for a destination's slots take turns often.
pub const RUN_MAX: usize = 32;

/// How often settled deliveries past the retention are deleted, and how many per statement.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);
const PRUNE_BATCH: u32 = 500;

/// Destinations whose slots are kept before idle ones are forgotten.
const HOSTS_KEPT: usize = 1_024;

/// Queue heads a sweep reads at most (more than the slots: some heads wait for a busy
/// destination).
const HEADS_READ: i64 = 1_000;

/// Outcomes the settler records in one transaction at most.
const SETTLE_BATCH: usize = 1_024;

/// Outcomes waiting for the settler at most; past it, runs wait before their next post (so a
/// slow database slows delivery instead of piling up unrecorded outcomes).
const SETTLE_INBOX: usize = 4_096;

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

/// Records outcomes: everything waiting when it turns to the inbox goes into one transaction
/// ([`deliveries::settle`]), so outcomes that arrive together cost one commit, and on SQLite
/// the dispatcher's writes queue here instead of polling for the write lock. After each
/// transaction the sweep is woken if a slot is free: the queues whose runs were settled have
/// due heads again (with every slot taken, the next run to end wakes it instead).
async fn settler(
    store: Store,
    clock: Arc<dyn Clock>,
    dispatcher: std::sync::Weak<Inner>,
    mut inbox: mpsc::Receiver<SettleJob>,
) {
    let mut jobs = Vec::with_capacity(SETTLE_BATCH);
    while inbox.recv_many(&mut jobs, SETTLE_BATCH).await > 0 {
        let mut finished = Vec::with_capacity(jobs.len());
        let mut flushes = Vec::new();
        for job in jobs.drain(..) {
            match job {
                SettleJob::Record(f) => finished.push(f),
                SettleJob::Flush(done) => flushes.push(done),
            }
        }
        record(&store, clock.as_ref(), &finished).await;
        if dispatcher.upgrade().is_none_or(|d| d.has_free_slot()) {
            signal().notify_waiters();
        }
        for done in flushes {
            let _ = done.send(());
        }
    }
}

/// Records `finished` in one transaction. A failed batch records nothing: it is tried again a
/// few times (a busy SQLite, a PostgreSQL deadlock or connection blip pass), then item by
/// item, so one bad item cannot throw the others' outcomes away (each would be sent again
/// when its lease ran out).
async fn record(store: &Store, clock: &dyn Clock, finished: &[Finished]) {
    if finished.is_empty() {
        return;
    }
    let mut result = Err(String::new());
    for pause_ms in [0, 50, 250] {
        tokio::time::sleep(Duration::from_millis(pause_ms)).await;
        result = deliveries::settle(store, finished, clock.now_ms())
            .await
            .map_err(|e| e.to_string());
        if result.is_ok() {
            break;
        }
    }
    let recorded = match result {
        Ok(recorded) => recorded,
        Err(e) => {
            tracing::warn!(error = %e, outcomes = finished.len(), "a batch of webhook outcomes could not be recorded; recording them one by one");
            let mut recorded = Vec::with_capacity(finished.len());
            for f in finished {
                let one = deliveries::settle(store, std::slice::from_ref(f), clock.now_ms()).await;
                if let Err(e) = &one {
                    // Not recorded: the delivery is tried again when its lease runs out.
                    tracing::warn!(delivery = %f.id, error = %e, "cannot record a webhook attempt; it is retried when its lease runs out");
                }
                recorded.push(one.map(|r| r[0]).unwrap_or(false));
            }
            recorded
        }
    };
    for (f, recorded) in finished.iter().zip(recorded) {
        let outcome = match f.outcome {
            Outcome::Unclaimed => continue,
            Outcome::Delivered => "delivered",
            _ => "failed",
        };
        if recorded {
            metrics::counter!("mailroom_webhook_attempts_total", "outcome" => outcome).increment(1);
        }
    }
}

impl Inner {
    /// Whether a sweep could claim anything now: a process slot is free, and a slot of a
    /// destination that has runs (or of one that has none yet).
    fn has_free_slot(&self) -> bool {
        if self.slots.available_permits() == 0 {
            return false;
        }
        let hosts = self.hosts.lock().expect("not poisoned");
        hosts.is_empty() || hosts.values().any(|h| h.runs.available_permits() > 0)
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

    /// Runs the worker until `shutdown` resolves, then lets runs under way finish the attempt
    /// they are in and record what they did (an attempt is bounded by its timeout; one cut
    /// short is retried once its lease expires).
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut next_prune = Instant::now();
        loop {
            if Instant::now() >= next_prune {
                next_prune = Instant::now() + PRUNE_EVERY;
                // Not tracked: a shutdown does not wait for it (a cut-off batch rolls back).
                let me = self.clone();
                tokio::spawn(async move { me.prune().await });
            }
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
        let grace = self.inner.config.attempt_timeout + Duration::from_secs(2);
        if tokio::time::timeout(grace, self.inner.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                "webhook deliveries still running at shutdown; they will be retried when their lease expires"
            );
        }
    }

    /// Deletes the settled deliveries past the retention, batch by batch; answers how many
    /// went.
    pub async fn prune(&self) -> u64 {
        let Some(keep) = self.inner.config.retention else {
            return 0;
        };
        let before = self.inner.clock.now_ms() - ms(keep);
        let mut total = 0;
        loop {
            match deliveries::prune_settled(&self.inner.store, before, PRUNE_BATCH).await {
                Ok(n) => {
                    total += n;
                    if n < u64::from(PRUNE_BATCH) {
                        break;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "pruning settled webhook deliveries failed; it runs again later");
                    break;
                }
            }
            // Let other writers in between batches (SQLite has one write lock).
            tokio::task::yield_now().await;
        }
        if total > 0 {
            tracing::info!(
                deleted = total,
                "settled webhook deliveries past retention deleted"
            );
        }
        total
    }

    /// Claims a run for each queue head that is due and whose destination has a free slot,
    /// and delivers the runs in the background.
    pub async fn sweep(&self) -> Result<usize, StoreError> {
        if self.inner.slots.available_permits() == 0 || self.inner.stopping.load(Ordering::SeqCst) {
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
                let Some(host) = self.try_run_slot(&key) else {
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
        let mut seqs: Vec<i64> = picked.keys().copied().collect();
        seqs.sort_unstable();
        let runs = deliveries::claim_runs(
            store,
            &seqs,
            RUN_MAX as i64,
            &self.inner.node,
            now,
            self.lease_until(now),
        )
        .await?;
        let mut n = 0;
        for run in runs {
            let Some(slots) = run.first().and_then(|c| picked.remove(&c.seq)) else {
                continue;
            };
            n += run.len();
            let me = self.clone();
            self.inner
                .tasks
                .spawn(async move { me.deliver(run, slots).await });
        }
        // Heads claimed elsewhere meanwhile: their slots go back as `picked` drops.
        Ok(n)
    }

    /// Delivers run `run` under `slots`, then waits until what it did is recorded (so a
    /// shutdown waits for it too).
    async fn deliver(&self, run: Vec<Claim>, mut slots: Slots) {
        let inbox = self.settler_inbox();
        self.attempt_run(run, &mut slots, &inbox).await;
        drop(slots);
        // Slots are free: the sweep may give them to another queue.
        signal().notify_waiters();
        let (done, recorded) = oneshot::channel();
        if inbox.send(SettleJob::Flush(done)).await.is_ok() {
            let _ = recorded.await;
        }
    }

    fn settler_inbox(&self) -> mpsc::Sender<SettleJob> {
        self.inner
            .settler
            .get_or_init(|| {
                let (tx, rx) = mpsc::channel(SETTLE_INBOX);
                tokio::spawn(settler(
                    self.inner.store.clone(),
                    self.inner.clock.clone(),
                    Arc::downgrade(&self.inner),
                    rx,
                ));
                tx
            })
            .clone()
    }

    /// The limits of destination `key`. A run holds a run slot while it uses them, so its
    /// entry is not idle and is not forgotten meanwhile.
    fn host_slots(&self, key: &str) -> HostSlots {
        let mut hosts = self.inner.hosts.lock().expect("not poisoned");
        self.host_entry(&mut hosts, key).clone()
    }

    /// A run slot of destination `key`, if one is free: taken under the map's lock, so an idle
    /// entry cannot be forgotten between its lookup and the taking.
    fn try_run_slot(&self, key: &str) -> Option<OwnedSemaphorePermit> {
        let mut hosts = self.inner.hosts.lock().expect("not poisoned");
        self.host_entry(&mut hosts, key)
            .runs
            .clone()
            .try_acquire_owned()
            .ok()
    }

    fn host_entry<'m>(
        &self,
        hosts: &'m mut HashMap<String, HostSlots>,
        key: &str,
    ) -> &'m HostSlots {
        let per_host = self.inner.config.per_host.max(1);
        if hosts.len() >= HOSTS_KEPT && !hosts.contains_key(key) {
            forget_idle(hosts, per_host);
        }
        hosts
            .entry(key.to_owned())
            .or_insert_with(|| HostSlots::new(per_host))
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

    /// Reads and prepares claimed run `run` in a few statements: the deliveries with their
    /// events, the bodies of the messages they announce, the webhook and its secrets (a run is
    /// one queue: one webhook, or one `notify_url` call). `None` when nothing of it is left to
    /// send (its webhook was deleted, which takes the deliveries with it).
    async fn prepare_run(
        &self,
        run: &[Claim],
        now: i64,
    ) -> Result<Option<PreparedRun>, StoreError> {
        let store = &self.inner.store;
        let seqs: Vec<i64> = run.iter().map(|c| c.seq).collect();
        let mut rows = deliveries::get_with_payloads(store, &seqs).await?;
        let Some((first, _)) = rows.first() else {
            return Ok(None);
        };
        let (webhook_id, workspace_id, target_url) = (
            first.webhook_id.clone(),
            first.workspace_id.clone(),
            first.target_url.clone(),
        );
        // Only rows of the first one's queue (all of them: a run is one queue).
        rows.retain(|(d, _)| d.webhook_id == webhook_id && d.workspace_id == workspace_id);
        let webhook = match &webhook_id {
            Some(wid) => match webhooks::get_any(store, wid).await? {
                Some(w) => Some(w),
                None => return Ok(None),
            },
            None => None,
        };
        let url = match (&webhook, &target_url) {
            (Some(w), _) => w.request_url.clone(),
            (None, Some(u)) => u.clone(),
            (None, None) => return Ok(None),
        };
        let secrets = match &webhook {
            Some(w) => self.secrets(w, now).await?,
            None => vec![],
        };
        {
            let mut events: Vec<(&str, &mut serde_json::Value)> = rows
                .iter_mut()
                .map(|(d, e)| (d.event_kind.as_str(), e))
                .collect();
            payload::complete_emails(store, &workspace_id, &mut events).await?;
        }
        let bodies = rows
            .into_iter()
            .map(|(d, event)| {
                let body = payload::render(webhook.as_ref(), &d.event_kind, event);
                (d.id.clone(), (d, body))
            })
            .collect();
        Ok(Some(PreparedRun {
            target: Target {
                url: url::Url::parse(&url).ok(),
                webhook,
                secrets,
            },
            bodies,
        }))
    }

    /// Posts the deliveries of claimed run `run` in order under `slots`, sending each outcome
    /// to the settler. A delivery is posted only after the one before it was answered 2xx; a
    /// failure (retried later, or given up) ends the run, and the deliveries after it are given
    /// back uncounted, so the queue waits for the retry. The run also ends, giving the rest
    /// back, when the worker stops or when what is left of the lease would not cover a whole
    /// attempt (a slow receiver): the sweep claims them again, with a fresh lease.
    async fn attempt_run(
        &self,
        run: Vec<Claim>,
        slots: &mut Slots,
        inbox: &mpsc::Sender<SettleJob>,
    ) {
        let config = &self.inner.config;
        let now = self.inner.clock.now_ms();
        let give_back = |rest: &[Claim]| {
            rest.iter()
                .map(|c| Finished {
                    seq: c.seq,
                    id: c.id.clone(),
                    token: c.token.clone(),
                    attempt: None,
                    outcome: Outcome::Unclaimed,
                })
                .collect::<Vec<_>>()
        };
        let send_all = |items: Vec<Finished>| async move {
            for f in items {
                if inbox.send(SettleJob::Record(f)).await.is_err() {
                    break;
                }
            }
        };
        // A run that cannot be prepared (an event unreadable, a secret not opening) is a
        // failed attempt of its head like a refused POST: retried, then given up, never left
        // claimed (it would hold its account's later events back for ever).
        let prepared = match self.prepare_run(&run, now).await {
            Ok(Some(p)) => Ok(p),
            Ok(None) => return,
            Err(e) => Err(format!("cannot prepare the delivery: {e}")),
        };
        let mut prepared = match prepared {
            Ok(p) => p,
            Err(error) => {
                let head = &run[0];
                let outcome = self.outcome(head.attempt, 0, None, &error, false);
                tracing::info!(delivery = %head.id, attempt = head.attempt, error = %error, "webhook delivery attempt failed");
                let attempt = Attempt {
                    attempt: head.attempt,
                    started_at: now,
                    status_code: None,
                    latency_ms: 0,
                    error: Some(error),
                };
                let mut items = vec![Finished {
                    seq: head.seq,
                    id: head.id.clone(),
                    token: head.token.clone(),
                    attempt: Some(attempt),
                    outcome,
                }];
                items.extend(give_back(&run[1..]));
                send_all(items).await;
                return;
            }
        };
        // The run goes where its webhook points now; if that changed since the sweep picked
        // it, it needs a slot of the new destination, or it goes back (uncounted).
        let key = host_key(prepared.target.url.as_ref());
        if key != slots.host_key {
            match self.try_run_slot(&key) {
                Some(host) => {
                    slots.host = host;
                    slots.host_key = key;
                }
                None => {
                    send_all(give_back(&run)).await;
                    return;
                }
            }
        }
        // Prepared: now it waits for a posting slot of its destination (held to the run's end).
        let Ok(_posting) = self.host_slots(&slots.host_key).posts.acquire_owned().await else {
            send_all(give_back(&run)).await;
            return;
        };
        if self.inner.stopping.load(Ordering::SeqCst) {
            send_all(give_back(&run)).await;
            return;
        }
        // The wait must not eat the attempts' time: if what is left of the lease would not
        // cover a whole attempt, the claims are renewed first (those no longer current are
        // another process's now: the run ends before the first of them).
        let mut run = run;
        let now = self.inner.clock.now_ms();
        let slack = ms(config.lease_margin) / 2;
        if run[0].lease_until - now - slack < ms(config.attempt_timeout) {
            let lease_until = self.lease_until(now);
            match deliveries::renew(&self.inner.store, &run, now, lease_until).await {
                Ok(renewed) => {
                    let kept = run
                        .iter()
                        .take_while(|c| renewed.binary_search(&c.seq).is_ok())
                        .count();
                    if kept < run.len() {
                        // Renewed but cut off behind one that is not ours any more.
                        send_all(give_back(&run[kept..])).await;
                    }
                    run.truncate(kept);
                    for c in &mut run {
                        c.lease_until = lease_until;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot renew a webhook run's leases; it is claimed again when they run out");
                    return;
                }
            }
        }
        // The client pinned to the checked addresses: resolved and checked once per run, within
        // the first attempt's deadline.
        let mut client: Option<Result<reqwest::Client, String>> = None;
        for (i, claim) in run.iter().enumerate() {
            let Some((d, body)) = prepared.bodies.remove(&claim.id) else {
                continue; // gone meanwhile (its webhook deleted)
            };
            let started_at = self.inner.clock.now_ms();
            let started = Instant::now();
            // The attempt must be over, and settled, within the claim's lease: past it another
            // process may take the delivery over. The head's POST gets what is left of it (a
            // claim with nothing left goes back); a later one goes only if a whole attempt
            // still fits, else the run ends and the rest is claimed again with a fresh lease.
            let left = claim.lease_until - started_at - slack;
            let stop = self.inner.stopping.load(Ordering::SeqCst) && i > 0;
            if stop || left <= 0 || (i > 0 && left < ms(config.attempt_timeout)) {
                send_all(give_back(&run[i..])).await;
                return;
            }
            let limit = config
                .attempt_timeout
                .min(Duration::from_millis(left as u64));
            let answer = match &prepared.target.url {
                None => Answer {
                    status: None,
                    error: Some("the URL does not parse".into()),
                },
                Some(url) => {
                    let post = async {
                        let c = match &client {
                            Some(c) => c.clone(),
                            None => {
                                let c = self.client_for(url).await;
                                client = Some(c.clone());
                                c
                            }
                        };
                        match c {
                            Ok(c) => {
                                self.post(&c, url, &d.event_id, &prepared.target, body, started_at)
                                    .await
                            }
                            Err(e) => Answer {
                                status: None,
                                error: Some(e),
                            },
                        }
                    };
                    tokio::time::timeout(limit, post).await.unwrap_or(Answer {
                        status: None,
                        error: Some(format!("no answer within {limit:?}")),
                    })
                }
            };
            let latency_ms = started.elapsed().as_millis() as i64;
            let error_text = answer.error.clone().unwrap_or_default();
            let outcome = self.outcome(
                claim.attempt,
                d.max_attempts,
                answer.status,
                &error_text,
                prepared.target.webhook.is_some(),
            );
            let delivered = outcome == Outcome::Delivered;
            if delivered {
                tracing::debug!(delivery = %claim.id, attempt = claim.attempt, "webhook delivered");
            } else {
                tracing::info!(delivery = %claim.id, attempt = claim.attempt, status = ?answer.status, error = %error_text, "webhook delivery attempt failed");
            }
            let mut items = vec![Finished {
                seq: claim.seq,
                id: claim.id.clone(),
                token: claim.token.clone(),
                attempt: Some(Attempt {
                    attempt: claim.attempt,
                    started_at,
                    status_code: answer.status.map(i64::from),
                    latency_ms,
                    error: answer.error,
                }),
                outcome,
            }];
            if !delivered {
                items.extend(give_back(&run[i + 1..]));
            }
            send_all(items).await;
            if !delivered {
                return;
            }
        }
    }

    /// What an attempt numbered `attempt` (of `max`; 0: the configured number) came to.
    fn outcome(
        &self,
        attempt: i64,
        max: i64,
        status: Option<u16>,
        error: &str,
        is_webhook: bool,
    ) -> Outcome {
        let config = &self.inner.config;
        let max = if max > 0 { max } else { config.max_attempts };
        match status {
            Some(s) if (200..300).contains(&s) => Outcome::Delivered,
            Some(410) if is_webhook => Outcome::Failed {
                error: error.to_owned(),
                disable_webhook: Some("the receiver answered 410 Gone".into()),
            },
            _ if attempt >= max => Outcome::Failed {
                error: error.to_owned(),
                disable_webhook: None,
            },
            _ => Outcome::Retry {
                run_after: self.inner.clock.now_ms() + backoff_ms(config, attempt),
                error: error.to_owned(),
            },
        }
    }

    /// The client for `url`, pinned to the addresses the SSRF guard resolved and checked.
    async fn client_for(&self, url: &url::Url) -> Result<reqwest::Client, String> {
        let addrs = check_target(url, self.inner.config.allow_private)
            .await
            .map_err(|e| format!("refused by the SSRF guard: {e}"))?;
        self.inner
            .clients
            .get(url, addrs, self.inner.config.attempt_timeout)
            .map_err(|e| format!("cannot build the HTTP client: {e}"))
    }

    /// POSTs `body` to `url` with `client`, signed.
    async fn post(
        &self,
        client: &reqwest::Client,
        url: &url::Url,
        msg_id: &str,
        target: &Target,
        body: payload::Body,
        now_ms: i64,
    ) -> Answer {
        let failed = |e: String| Answer {
            status: None,
            error: Some(e),
        };
        let webhook = target.webhook.as_ref();
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
        if !target.secrets.is_empty() {
            req = req.header(
                "webhook-signature",
                sign::signature_header(&target.secrets, msg_id, timestamp, &body.bytes),
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

    /// Idle destinations are forgotten, busy ones (a run claimed, or posting) kept.
    #[test]
    fn idle_destinations_are_forgotten() {
        let mut hosts = HashMap::new();
        for k in ["a:80", "b:80", "c:80"] {
            hosts.insert(k.to_owned(), HostSlots::new(2));
        }
        let _run = hosts["a:80"].runs.clone().try_acquire_owned().unwrap();
        let _post = hosts["b:80"].posts.clone().try_acquire_owned().unwrap();
        forget_idle(&mut hosts, 2);
        let mut kept: Vec<_> = hosts.keys().cloned().collect();
        kept.sort();
        assert_eq!(kept, ["a:80", "b:80"]);
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
