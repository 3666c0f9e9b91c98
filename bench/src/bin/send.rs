//! `bench/send`: `POST /api/v1/emails` through an in-process mailroom vs. the same messages
//! sent straight to the same Postfix with a pooled lettre transport, in one process and one
//! run. Prints both throughputs, their ratio and the API's latency percentiles. Nothing is
//! asserted; the exit code is non-zero only when sends failed. Run it through `bench/send`
//! (the script starts the mail rig); `bench/README.md` explains how to read the figures.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use base64::Engine as _;
use clap::{Parser, ValueEnum};
use lettre::Message;
use lettre::message::header::ContentType;
use lettre::message::{Attachment, Mailbox, MultiPart};
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use serde_json::{Value, json};

use mailroom_core::account::TlsMode;
use mailroom_providers::imap_smtp::imap::{self, ImapLogin};
use mailroom_providers::imap_smtp::send::DEFAULT_CONNECTIONS_PER_ACCOUNT;
use mailroom_testkit::{Backend, MailRig, MailUser, TestApp, TestDb, app::spawn_on};
use secrecy::SecretString;

#[derive(Parser, Debug)]
#[command(
    name = "send",
    about = "Send throughput: mailroom's POST /api/v1/emails vs. direct pooled SMTP"
)]
struct Args {
    /// What to run. `custom`: the flags below as given. `single`: one account, 3 requests in
    /// flight vs. a direct baseline of 3 connections (mailroom's per-account cap). `accounts`:
    /// 32 accounts with one sender each vs. 32 direct users with one connection each. `all`:
    /// single and accounts, on SQLite and on PostgreSQL, then a summary table.
    #[arg(long, value_enum, default_value_t = Scenario::Custom)]
    scenario: Scenario,
    /// Messages per measured run, split evenly over the accounts (each of the two runs sends
    /// this many).
    #[arg(long, default_value_t = 1000)]
    count: usize,
    /// Accounts linked in mailroom, and mail users sending in the direct run (one each).
    /// Default: 1 (`accounts` scenario: 32).
    #[arg(long)]
    accounts: Option<usize>,
    /// Concurrent senders per account (HTTP requests in flight, or SMTP sends in flight per
    /// direct user). Default: 32 with one account, 1 with several (`single` scenario: 3).
    #[arg(long)]
    concurrency: Option<usize>,
    /// SMTP connections per direct user (lettre pool size). Default: the concurrency
    /// (`single` scenario: 3, mailroom's per-account cap).
    #[arg(long)]
    direct_connections: Option<u32>,
    /// mailroom's database (not with `--scenario all`, which runs both).
    #[arg(long, value_enum)]
    backend: Option<BackendArg>,
    /// Unmeasured messages sent first in each run, split over the accounts (at least one per
    /// account); default max(20, senders in all), so every pool is full before the clock starts.
    #[arg(long)]
    warmup: Option<usize>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Scenario {
    Custom,
    Single,
    Accounts,
    All,
}

/// Accounts in the `accounts` scenario.
const MANY_ACCOUNTS: usize = 32;

/// One benchmark case: a direct run and an API run with the same shape.
#[derive(Clone, Debug)]
struct Case {
    name: &'static str,
    backend: BackendArg,
    /// Messages per measured run, over all accounts.
    count: usize,
    accounts: usize,
    /// Senders per account (both runs).
    concurrency: usize,
    /// Connections per direct user.
    direct_connections: u32,
    /// Warm-up messages per account (both runs).
    warmup_per_account: usize,
}

impl Case {
    fn senders(&self) -> usize {
        self.accounts * self.concurrency
    }

    fn lanes(&self, total: usize) -> Vec<Lane> {
        split(total, self.accounts)
            .into_iter()
            .map(|count| Lane {
                count,
                workers: self.concurrency,
            })
            .collect()
    }
}

/// `n` split over `k` parts as evenly as possible (the first `n % k` get one more).
fn split(n: usize, k: usize) -> Vec<usize> {
    (0..k).map(|i| n / k + usize::from(i < n % k)).collect()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum BackendArg {
    Sqlite,
    Postgres,
}

/// The HTML body both runs send (a plain-text alternative goes with it).
const HTML: &str = "<html><body><h1>Quarterly numbers</h1>\
<p>Hi Ann,</p><p>here are the figures we talked about on <b>Thursday</b>. \
The attached file has the raw data; the summary is below.</p>\
<ul><li>Revenue: up 4 %</li><li>Costs: flat</li><li>Head count: 12</li></ul>\
<p>Talk soon,<br>Bob</p><p style=\"color:#888\">Sent by the mailroom send benchmark.</p>\
</body></html>";

const TEXT: &str = "QUARTERLY NUMBERS\n\nHi Ann,\n\nhere are the figures we talked about on \
Thursday. The attached file has the raw data; the summary is below.\n\n* Revenue: up 4 %\n\
* Costs: flat\n* Head count: 12\n\nTalk soon,\nBob\n\nSent by the mailroom send benchmark.\n";

const ATTACHMENT_BYTES: usize = 1024;

/// What one run came to.
struct Run {
    wall: Duration,
    latencies: Vec<Duration>,
    /// Error description → how many times.
    errors: BTreeMap<String, usize>,
    /// Process CPU time used during the run (client + server when in-process).
    cpu_secs: Option<f64>,
    /// Share of the machine's CPU time that was busy during the run.
    machine_busy: Option<f64>,
    /// New connections Postfix's submission service accepted, and IMAP logins Dovecot
    /// accepted, during the run.
    logins: Option<(usize, usize)>,
}

impl Run {
    fn ok(&self) -> usize {
        self.latencies.len() - self.failed()
    }

    fn failed(&self) -> usize {
        self.errors.values().sum()
    }

    fn rate(&self) -> f64 {
        self.ok() as f64 / self.wall.as_secs_f64()
    }
}

/// One account's (or one direct user's) share of a run: `count` messages from `workers` tasks.
#[derive(Clone, Copy, Debug)]
struct Lane {
    count: usize,
    workers: usize,
}

/// Runs `f(lane, i)` for every lane's messages, each lane with its own workers, timing each
/// call and the whole. `i` numbers the messages across all lanes.
async fn drive<F, Fut>(lanes: &[Lane], logs: Option<RigLogs<'_>>, f: F) -> Run
where
    F: Fn(usize, usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    let n: usize = lanes.iter().map(|l| l.count).sum();
    let f = Arc::new(f);
    let logins_before = logs.and_then(count_logins);
    let cpu_before = process_cpu_secs();
    let machine_before = machine_ticks();
    let start = Instant::now();
    let mut workers = Vec::new();
    let mut offset = 0;
    for (lane, l) in lanes.iter().enumerate() {
        let next = Arc::new(AtomicUsize::new(0));
        for _ in 0..l.workers.max(1) {
            let f = f.clone();
            let next = next.clone();
            let (count, offset) = (l.count, offset);
            workers.push(tokio::spawn(async move {
                let mut lat = Vec::new();
                let mut errs = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= count {
                        break;
                    }
                    let t = Instant::now();
                    let r = f(lane, offset + i).await;
                    lat.push(t.elapsed());
                    if let Err(e) = r {
                        errs.push(e);
                    }
                }
                (lat, errs)
            }));
        }
        offset += l.count;
    }
    let mut latencies = Vec::with_capacity(n);
    let mut errors = BTreeMap::new();
    for w in workers {
        let (lat, errs) = w.await.expect("a bench worker panicked");
        latencies.extend(lat);
        for e in errs {
            *errors.entry(e).or_insert(0) += 1;
        }
    }
    let wall = start.elapsed();
    let cpu_secs = match (cpu_before, process_cpu_secs()) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    let machine_busy = match (machine_before, machine_ticks()) {
        (Some((busy0, all0)), Some((busy1, all1))) if all1 > all0 => {
            Some((busy1 - busy0) as f64 / (all1 - all0) as f64)
        }
        _ => None,
    };
    let logins = match (logins_before, logs.and_then(count_logins)) {
        (Some(a), Some(b)) => Some((b.0.saturating_sub(a.0), b.1.saturating_sub(a.1))),
        _ => None,
    };
    latencies.sort();
    Run {
        wall,
        latencies,
        errors,
        cpu_secs,
        machine_busy,
        logins,
    }
}

/// This process's user + system CPU seconds (Linux; assumes the usual 100 ticks per second).
fn process_cpu_secs() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name may hold spaces; the fields after its closing parenthesis do not.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of stat(5) are utime and stime; `rest` starts at field 3.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / 100.0)
}

/// (busy, total) CPU ticks of the whole machine, from /proc/stat.
fn machine_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let v: Vec<u64> = line
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is already in user).
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3)? + v.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

/// The rig's logs, to count logins while a run is under way.
#[derive(Clone, Copy)]
struct RigLogs<'a> {
    postfix: &'a Path,
    dovecot: &'a Path,
}

/// (connections Postfix's submission smtpd accepted, IMAP logins Dovecot accepted) so far.
fn count_logins(logs: RigLogs<'_>) -> Option<(usize, usize)> {
    let count = |path: &Path, hit: &dyn Fn(&str) -> bool| -> Option<usize> {
        let text = std::fs::read_to_string(path).ok()?;
        Some(text.lines().filter(|l| hit(l)).count())
    };
    Some((
        count(logs.postfix, &|l| {
            l.contains("/smtpd[") && l.contains(": connect from ")
        })?,
        count(logs.dovecot, &|l| {
            l.contains("imap-login: ") && l.contains(" Login: ")
        })?,
    ))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn attachment() -> Vec<u8> {
    // Deterministic, incompressible-looking bytes.
    let mut x: u32 = 0x9E37_79B9;
    (0..ATTACHMENT_BYTES)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}

/// One direct sender: a mail user holding at most `max` SMTP connections to the rig.
///
/// Not lettre's pooled `AsyncSmtpTransport`: its `max_size` caps the *idle* connections only,
/// and a connection goes back to its pool from a spawned task, so a sender that goes again at
/// once finds the pool empty and opens one more connection (TLS + AUTH each time). Here a
/// semaphore caps the open connections and a finished one is back before the permit is, so
/// the baseline holds exactly the connections it claims. The SMTP conversation is the
/// transport's own, on lettre's `AsyncSmtpConnection`: STARTTLS required, AUTH PLAIN (then
/// LOGIN), the rig's self-signed certificate accepted (as in mailroom's transport,
/// crates/providers/src/imap_smtp/smtp.rs), over TCP streams with TCP_NODELAY and without a
/// NOOP before reuse: the fastest direct client, as mailroom's own pool is built.
struct DirectSender {
    host: String,
    port: u16,
    tls: TlsParameters,
    credentials: Credentials,
    from: Mailbox,
    slots: tokio::sync::Semaphore,
    idle: std::sync::Mutex<Vec<AsyncSmtpConnection>>,
}

impl DirectSender {
    fn new(rig: &MailRig, user: &MailUser, max: u32) -> anyhow::Result<DirectSender> {
        Ok(DirectSender {
            host: rig.host.clone(),
            port: rig.smtp_port,
            tls: TlsParameters::builder(rig.host.clone())
                .dangerous_accept_invalid_certs(true)
                .build_rustls()
                .context("TLS parameters")?,
            credentials: Credentials::new(user.address.clone(), user.password.clone()),
            from: user.address.parse().context("sender address")?,
            slots: tokio::sync::Semaphore::new(max.max(1) as usize),
            idle: std::sync::Mutex::new(Vec::new()),
        })
    }

    async fn connect(&self) -> Result<AsyncSmtpConnection, String> {
        let hello = ClientId::default();
        // The best a direct client can do: TCP_NODELAY, as mailroom's own pool sets it (else
        // lettre's separate write of the DATA terminator waits ~40 ms for a delayed ACK).
        let tcp = tokio::net::TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| format!("connect: {e}"))?;
        tcp.set_nodelay(true).map_err(|e| format!("nodelay: {e}"))?;
        let mut conn = AsyncSmtpConnection::connect_with_transport(Box::new(tcp), &hello)
            .await
            .map_err(|e| format!("SMTP: {e}"))?;
        conn.starttls(self.tls.clone(), &hello)
            .await
            .map_err(|e| format!("STARTTLS: {e}"))?;
        conn.auth(&[Mechanism::Plain, Mechanism::Login], &self.credentials)
            .await
            .map_err(|e| format!("AUTH: {e}"))?;
        Ok(conn)
    }

    /// One SMTP transaction on an idle connection (or a new one while fewer than `max` are
    /// open), waiting for a free connection first when all are busy.
    async fn send(&self, msg: Message) -> Result<(), String> {
        let _slot = self.slots.acquire().await.map_err(|e| e.to_string())?;
        let envelope = msg.envelope().clone();
        let bytes = msg.formatted();
        // No NOOP before reuse (mailroom's pool sends none either): the rig keeps idle
        // connections open for the whole run.
        let pooled = self.idle.lock().expect("idle connections").pop();
        let mut conn = match pooled {
            Some(c) => c,
            None => self.connect().await?,
        };
        let sent = conn.send(&envelope, &bytes).await;
        if sent.is_ok() && !conn.has_broken() {
            self.idle.lock().expect("idle connections").push(conn);
        } else {
            conn.abort().await;
        }
        sent.map(|_| ()).map_err(|e| format!("SMTP: {e}"))
    }

    async fn shutdown(&self) {
        let conns = std::mem::take(&mut *self.idle.lock().expect("idle connections"));
        for mut c in conns {
            let _ = c.quit().await;
        }
    }
}

fn direct_message(
    from: &Mailbox,
    to: &Mailbox,
    subject: String,
    data: &[u8],
) -> Result<Message, String> {
    Message::builder()
        .from(from.clone())
        .to(to.clone())
        .subject(subject)
        .multipart(
            MultiPart::mixed()
                .multipart(MultiPart::alternative_plain_html(
                    TEXT.to_owned(),
                    HTML.to_owned(),
                ))
                .singlepart(Attachment::new("data.bin".to_owned()).body(
                    data.to_vec(),
                    ContentType::parse("application/octet-stream").expect("valid content type"),
                )),
        )
        .map_err(|e| format!("build: {e}"))
}

/// Sends each lane's messages straight to Postfix, lane `k` through `senders[k]`.
async fn direct_run(
    senders: &Arc<Vec<DirectSender>>,
    to: &Mailbox,
    label: &'static str,
    lanes: &[Lane],
    logs: Option<RigLogs<'_>>,
) -> Run {
    let senders = senders.clone();
    let to = to.clone();
    let data: Arc<[u8]> = attachment().into();
    drive(lanes, logs, move |lane, i| {
        let (senders, to, data) = (senders.clone(), to.clone(), data.clone());
        async move {
            let s = &senders[lane];
            let msg = direct_message(&s.from, &to, format!("bench {label} #{i}"), &data)?;
            s.send(msg).await
        }
    })
    .await
}

/// Sends each lane's messages through `POST /api/v1/emails`, lane `k` from `account_ids[k]`.
#[allow(clippy::too_many_arguments)]
async fn api_run(
    client: &reqwest::Client,
    url: &str,
    api_key: &str,
    account_ids: &[String],
    to: &str,
    label: &'static str,
    lanes: &[Lane],
    logs: Option<RigLogs<'_>>,
) -> Run {
    let content = base64::engine::general_purpose::STANDARD.encode(attachment());
    let template = Arc::new(json!({
        "account_id": "",
        "to": [{"identifier": to}],
        "subject": "",
        "body": HTML,
        "attachments": [{
            "filename": "data.bin",
            "content_type": "application/octet-stream",
            "content": content,
        }],
    }));
    let account_ids: Arc<[String]> = account_ids.into();
    let (client, url, api_key) = (client.clone(), url.to_owned(), api_key.to_owned());
    drive(lanes, logs, move |lane, i| {
        let (client, url, api_key) = (client.clone(), url.clone(), api_key.clone());
        let mut body = (*template).clone();
        body["account_id"] = json!(account_ids[lane]);
        body["subject"] = json!(format!("bench {label} #{i}"));
        async move {
            let resp = client
                .post(&url)
                .header("X-API-KEY", &api_key)
                .json(&body)
                .send()
                .await
                .map_err(|e| format!("HTTP: {e}"))?;
            let status = resp.status().as_u16();
            let text = resp.text().await.map_err(|e| format!("HTTP body: {e}"))?;
            if status == 201 {
                return Ok(());
            }
            let detail = serde_json::from_str::<Value>(&text)
                .ok()
                .map(|v| {
                    let t = v["type"].as_str().or(v["status"].as_str()).unwrap_or("");
                    let d = v["detail"]
                        .as_str()
                        .or(v["last_error"]["detail"].as_str())
                        .unwrap_or("");
                    format!("{t} {d}")
                })
                .unwrap_or_else(|| text.chars().take(200).collect());
            Err(format!("HTTP {status}: {detail}"))
        }
    })
    .await
}

/// How many messages `user`'s `mailbox` holds; `None` when the IMAP login fails (Dovecot may
/// be too busy with mailroom's own Sent-copy logins to answer in time).
async fn mailbox_count(rig: &MailRig, user: &MailUser, mailbox: &str) -> Option<u32> {
    let password = SecretString::from(user.password.clone());
    let login = ImapLogin {
        host: &rig.host,
        port: rig.imaps_port,
        tls: TlsMode::Implicit,
        user: &user.address,
        password: &password,
    };
    let policy = mailroom_testkit::mail::test_net_policy();
    let mut s = imap::login(&login, &policy).await.ok()?;
    let n = s.select(mailbox).await.map(|m| m.exists).unwrap_or(0);
    let _ = s.logout().await;
    Some(n)
}

/// `status/sent_copy` → how many, over the whole outbox (`GET /api/v1/outbox`).
async fn outbox_tally(app: &TestApp) -> BTreeMap<String, usize> {
    let mut tally = BTreeMap::new();
    let mut path = "/api/v1/outbox?limit=250".to_owned();
    loop {
        let (status, page) = app.get(&path).await;
        if status != 200 {
            break;
        }
        for item in page["items"].as_array().into_iter().flatten() {
            let key = format!(
                "{}/copy {}",
                item["status"].as_str().unwrap_or("?"),
                item["sent_copy"].as_str().unwrap_or("?")
            );
            *tally.entry(key).or_insert(0) += 1;
        }
        match page["cursor"].as_str() {
            Some(c) if !c.is_empty() => path = format!("/api/v1/outbox?cursor={c}"),
            _ => break,
        }
    }
    tally
}

fn print_run(name: &str, run: &Run) {
    println!(
        "{name:<7} {ok:>5} ok, {failed} failed in {wall:.2} s  -> {rate:.1} msg/s",
        ok = run.ok(),
        failed = run.failed(),
        wall = run.wall.as_secs_f64(),
        rate = run.rate(),
    );
    let l = &run.latencies;
    println!(
        "        latency p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        ms(percentile(l, 0.50)),
        ms(percentile(l, 0.90)),
        ms(percentile(l, 0.99)),
        ms(l.last().copied().unwrap_or_default()),
    );
    let mut facts = Vec::new();
    if let Some(c) = run.cpu_secs {
        facts.push(format!(
            "bench process CPU {c:.1} s ({:.2} ms/msg)",
            c * 1000.0 / run.latencies.len().max(1) as f64
        ));
    }
    if let Some(b) = run.machine_busy {
        facts.push(format!("machine CPU busy {:.0} %", b * 100.0));
    }
    if let Some((smtp, imap)) = run.logins {
        facts.push(format!("{smtp} new SMTP connections, {imap} IMAP logins"));
    }
    if !facts.is_empty() {
        println!("        {}", facts.join(", "));
    }
    for (e, n) in &run.errors {
        println!("        error x{n}: {e}");
    }
}

fn report_progress(name: &str, run: &Run) {
    println!(
        "measured {name}: {} ok, {} failed in {:.2} s",
        run.ok(),
        run.failed(),
        run.wall.as_secs_f64()
    );
}

fn report_warmup(name: &str, run: &Run) {
    println!(
        "warm-up {name}: {} messages in {:.2} s, {} failed",
        run.latencies.len(),
        run.wall.as_secs_f64(),
        run.failed()
    );
    for (e, n) in &run.errors {
        println!("        error x{n}: {e}");
    }
}

/// The share of the machine's CPU that was busy over the next 2 s.
async fn machine_busy_now() -> Option<f64> {
    let before = machine_ticks();
    tokio::time::sleep(Duration::from_secs(2)).await;
    match (before, machine_ticks()) {
        (Some((b0, t0)), Some((b1, t1))) if t1 > t0 => Some((b1 - b0) as f64 / (t1 - t0) as f64),
        _ => None,
    }
}

/// Polls until `count()` reaches `expected` or `limit` passes; the last count seen.
async fn wait_for_count<F, Fut>(
    expected: u32,
    limit: Duration,
    every: Duration,
    count: F,
) -> (Option<u32>, Duration)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Option<u32>>,
{
    let start = Instant::now();
    let mut seen = None;
    while start.elapsed() < limit {
        seen = count().await.or(seen);
        if seen.is_some_and(|d| d >= expected) {
            break;
        }
        tokio::time::sleep(every).await;
    }
    (seen, start.elapsed())
}

/// The sum of `mailbox` counts over `users`; `None` when any login failed.
async fn mailbox_total(rig: &MailRig, users: &[MailUser], mailbox: &str) -> Option<u32> {
    let mut total = 0;
    for u in users {
        total += mailbox_count(rig, u, mailbox).await?;
    }
    Some(total)
}

/// What one case came to.
struct CaseResult {
    case: Case,
    direct: Run,
    api: Run,
    /// Failed sends in the case, warm-ups included.
    failed: usize,
}

/// One case: the direct run, then the API run on a fresh mailroom, then the figures.
async fn run_case(
    rig: &MailRig,
    logs: Option<RigLogs<'_>>,
    case: &Case,
    cpus: usize,
) -> anyhow::Result<CaseResult> {
    let a = case.accounts;
    let direct_users: Vec<MailUser> = (0..a).map(|_| rig.create_user()).collect();
    let api_users: Vec<MailUser> = (0..a).map(|_| rig.create_user()).collect();
    let recipient = rig.create_user();
    let lanes = case.lanes(case.count);
    let warm_lanes = case.lanes(case.warmup_per_account * a);

    println!();
    println!(
        "== {} / {:?}: {} messages per run over {a} account{} ({}), {} sender{} per account \
         ({} in flight in all), direct {} SMTP connection{} per user ({} in all), mailroom cap \
         {DEFAULT_CONNECTIONS_PER_ACCOUNT} per account, warm-up {} per account, nproc {cpus}",
        case.name,
        case.backend,
        case.count,
        if a == 1 { "" } else { "s" },
        if a == 1 {
            "all on it".to_owned()
        } else {
            let per = split(case.count, a);
            let (lo, hi) = (
                per.iter().min().unwrap_or(&0),
                per.iter().max().unwrap_or(&0),
            );
            if lo == hi {
                format!("{lo} each")
            } else {
                format!("{lo}-{hi} each")
            }
        },
        case.concurrency,
        if case.concurrency == 1 { "" } else { "s" },
        case.senders(),
        case.direct_connections,
        if case.direct_connections == 1 {
            ""
        } else {
            "s"
        },
        case.direct_connections as usize * a,
        case.warmup_per_account,
    );
    println!(
        "message: HTML body ({} B) + text alternative + {} B attachment, 1 recipient; \
         SMTP STARTTLS to 127.0.0.1:{}",
        HTML.len(),
        ATTACHMENT_BYTES,
        rig.smtp_port
    );
    // Anything else running (or the previous case's tail) skews every figure: say so.
    if let Some(b) = machine_busy_now().await {
        println!(
            "machine CPU busy {:.0} % in the 2 s before the case{}",
            b * 100.0,
            if b > 0.2 {
                " (something else is running: the figures are not reliable)"
            } else {
                ""
            }
        );
    }
    let mut failed = 0usize;

    // (1) The baseline: straight to Postfix, at most D connections per user.
    let senders = Arc::new(
        direct_users
            .iter()
            .map(|u| DirectSender::new(rig, u, case.direct_connections))
            .collect::<anyhow::Result<Vec<_>>>()?,
    );
    let to: Mailbox = recipient.address.parse().context("recipient address")?;
    let w = direct_run(&senders, &to, "direct warm-up", &warm_lanes, None).await;
    report_warmup("direct", &w);
    failed += w.failed();
    let direct_warmup_ok = w.ok();
    let direct = direct_run(&senders, &to, "direct", &lanes, logs).await;
    failed += direct.failed();
    report_progress("direct", &direct);
    for s in senders.iter() {
        s.shutdown().await;
    }
    drop(senders);
    // Postfix delivers into Dovecot after its 250, at its own pace; let the direct run's
    // deliveries finish so they do not load the machine during the API run.
    let direct_total = (direct_warmup_ok + direct.ok()) as u32;
    let (delivered, took) = wait_for_count(
        direct_total,
        Duration::from_secs(300),
        Duration::from_millis(250),
        || mailbox_count(rig, &recipient, "INBOX"),
    )
    .await;
    println!(
        "direct run delivered: {}/{direct_total} in the recipient's INBOX {:.1} s after the run \
         (waited before the API run)",
        delivered.map_or("?".to_owned(), |d| d.to_string()),
        took.as_secs_f64()
    );

    // (2) mailroom in this process: a fresh database, the test settings, logs at warn.
    let Some(db) = TestDb::new(match case.backend {
        BackendArg::Sqlite => Backend::Sqlite,
        BackendArg::Postgres => Backend::Postgres,
    })
    .await
    else {
        bail!("{:?} is unavailable", case.backend);
    };
    let app = spawn_on(db, |s| s.log = "warn".into()).await;
    let mut account_ids = Vec::with_capacity(a);
    for u in &api_users {
        let (status, created) = app
            .post_json("/api/v1/accounts", &rig.account_body(u))
            .await;
        if status != 201 {
            bail!("linking an account failed ({status}): {created}");
        }
        account_ids.push(
            created["account_id"]
                .as_str()
                .context("account_id")?
                .to_owned(),
        );
    }
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(case.senders())
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(120))
        .build()?;
    let url = app.url("/api/v1/emails");
    let w = api_run(
        &client,
        &url,
        &app.api_key,
        &account_ids,
        &recipient.address,
        "api warm-up",
        &warm_lanes,
        None,
    )
    .await;
    report_warmup("api", &w);
    failed += w.failed();
    let api_warmup_ok = w.ok();
    let api = api_run(
        &client,
        &url,
        &app.api_key,
        &account_ids,
        &recipient.address,
        "api",
        &lanes,
        logs,
    )
    .await;
    failed += api.failed();
    report_progress("api", &api);

    // Not measured: mailroom APPENDs each sent message to the account's Sent folder in the
    // background, part of it during the API run. Say when that work was over.
    let expected = (api_warmup_ok + api.ok()) as u32;
    let (copies, copies_after) = wait_for_count(
        expected,
        Duration::from_secs(120),
        Duration::from_millis(if a == 1 { 500 } else { 2000 }),
        || mailbox_total(rig, &api_users, "Sent"),
    )
    .await;
    let tally = outbox_tally(&app).await;
    drop(app.stop().await);
    // Let Postfix finish delivering the API run too, so a following case starts quiet.
    let all_total = direct_total + expected;
    let (inbox, inbox_after) = wait_for_count(
        all_total,
        Duration::from_secs(300),
        Duration::from_millis(500),
        || mailbox_count(rig, &recipient, "INBOX"),
    )
    .await;

    // (3) The figures.
    println!();
    print_run("direct", &direct);
    print_run("api", &api);
    println!(
        "        Sent copies (background, not measured): {}/{expected} in the Sent folder{} \
         {:.1} s after the last answer",
        copies.map_or("?".to_owned(), |c| c.to_string()),
        if a == 1 { "" } else { "s" },
        copies_after.as_secs_f64()
    );
    if !tally.is_empty() {
        let t: Vec<String> = tally.iter().map(|(k, v)| format!("{k} {v}")).collect();
        println!("        outbox at the end: {}", t.join(", "));
    }
    println!(
        "        recipient's INBOX: {}/{all_total} (both runs) {:.1} s after the Sent copies",
        inbox.map_or("?".to_owned(), |c| c.to_string()),
        inbox_after.as_secs_f64()
    );
    println!(
        "machine: nproc {cpus}; client, mailroom, Postfix and Dovecot share these CPUs; \
         target ratio >= 0.80"
    );
    println!(
        "ratio {:.2} (api {:.1} msg/s, direct {:.1} msg/s); p50 / p99: api POST /emails \
         {:.1} / {:.1} ms, direct SMTP transaction {:.1} / {:.1} ms",
        api.rate() / direct.rate(),
        api.rate(),
        direct.rate(),
        ms(percentile(&api.latencies, 0.50)),
        ms(percentile(&api.latencies, 0.99)),
        ms(percentile(&direct.latencies, 0.50)),
        ms(percentile(&direct.latencies, 0.99)),
    );
    Ok(CaseResult {
        case: case.clone(),
        direct,
        api,
        failed,
    })
}

/// The compact table printed at the end (Markdown, to paste into bench/README.md).
fn print_summary(results: &[Result<CaseResult, (Case, String)>]) {
    println!();
    println!(
        "summary (latency p50 / p99 in ms: api = one POST /emails, direct = one SMTP transaction)"
    );
    println!(
        "| scenario | backend | accounts | api in flight | direct connections | direct msg/s | \
         api msg/s | ratio | direct p50 / p99 | api p50 / p99 | failed |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for r in results {
        match r {
            Ok(r) => {
                let (d, a, c) = (&r.direct, &r.api, &r.case);
                println!(
                    "| {} | {:?} | {} | {} | {} | {:.1} | {:.1} | **{:.2}** | {:.0} / {:.0} | \
                     {:.0} / {:.0} | {} |",
                    c.name,
                    c.backend,
                    c.accounts,
                    c.senders(),
                    c.direct_connections as usize * c.accounts,
                    d.rate(),
                    a.rate(),
                    a.rate() / d.rate(),
                    ms(percentile(&d.latencies, 0.50)),
                    ms(percentile(&d.latencies, 0.99)),
                    ms(percentile(&a.latencies, 0.50)),
                    ms(percentile(&a.latencies, 0.99)),
                    r.failed,
                );
            }
            Err((c, e)) => println!(
                "| {} | {:?} | {} | {} | {} | - | - | - | - | - | error: {e} |",
                c.name,
                c.backend,
                c.accounts,
                c.senders(),
                c.direct_connections as usize * c.accounts,
            ),
        }
    }
}

/// The cases the arguments ask for.
fn cases(args: &Args) -> anyhow::Result<Vec<Case>> {
    let cap = DEFAULT_CONNECTIONS_PER_ACCOUNT;
    // (name, accounts, concurrency, direct connections) before the explicit flags apply.
    let presets: Vec<(&'static str, usize, usize, Option<u32>)> = match args.scenario {
        Scenario::Custom => {
            let a = args.accounts.unwrap_or(1);
            vec![("custom", a, if a == 1 { 32 } else { 1 }, None)]
        }
        Scenario::Single => vec![("single", 1, cap as usize, Some(cap))],
        Scenario::Accounts => vec![("accounts", MANY_ACCOUNTS, 1, Some(1))],
        Scenario::All => {
            if args.accounts.is_some()
                || args.concurrency.is_some()
                || args.direct_connections.is_some()
                || args.backend.is_some()
            {
                bail!(
                    "--scenario all runs fixed cases on both backends: only --count and \
                     --warmup apply"
                );
            }
            vec![
                ("single", 1, cap as usize, Some(cap)),
                ("accounts", MANY_ACCOUNTS, 1, Some(1)),
            ]
        }
    };
    let backends = match (args.scenario, args.backend) {
        (Scenario::All, _) => vec![BackendArg::Sqlite, BackendArg::Postgres],
        (_, b) => vec![b.unwrap_or(BackendArg::Sqlite)],
    };
    let mut out = Vec::new();
    for backend in backends {
        for &(name, accounts, concurrency, direct) in &presets {
            let accounts = args.accounts.unwrap_or(accounts).max(1);
            let concurrency = args.concurrency.unwrap_or(concurrency).max(1);
            let direct_connections = args
                .direct_connections
                .or(direct)
                .unwrap_or(concurrency as u32)
                .max(1);
            let count = args.count.max(accounts);
            let warmup = args.warmup.unwrap_or((accounts * concurrency).max(20));
            out.push(Case {
                name,
                backend,
                count,
                accounts,
                concurrency,
                direct_connections,
                warmup_per_account: warmup.div_ceil(accounts).max(1),
            });
        }
    }
    Ok(out)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let cases = cases(&args)?;
    mailroom_server::telemetry::init("warn", false);
    mailroom_server::app::install_crypto_provider();

    let Some(rig) = MailRig::from_env() else {
        bail!("the mail rig is not running: start this benchmark through bench/send");
    };
    let rig_dir: PathBuf = rig.users_file.parent().unwrap_or(Path::new(".")).into();
    let (postfix_log, dovecot_log) = (rig_dir.join("postfix.log"), rig_dir.join("dovecot.log"));
    let logs = (postfix_log.exists() && dovecot_log.exists()).then_some(RigLogs {
        postfix: &postfix_log,
        dovecot: &dovecot_log,
    });
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "send benchmark: scenario {:?}, {} case{}",
        args.scenario,
        cases.len(),
        if cases.len() == 1 { "" } else { "s" }
    );

    let mut results = Vec::new();
    let mut failed = 0usize;
    for case in &cases {
        match run_case(&rig, logs, case, cpus).await {
            Ok(r) => {
                failed += r.failed;
                results.push(Ok(r));
            }
            Err(e) => {
                println!("case {} / {:?} did not run: {e:#}", case.name, case.backend);
                failed += 1;
                results.push(Err((case.clone(), format!("{e:#}"))));
            }
        }
    }
    print_summary(&results);
    if failed > 0 {
        eprintln!("send: {failed} sends failed (or cases did not run)");
        std::process::exit(1);
    }
    Ok(())
}
