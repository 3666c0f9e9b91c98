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
use lettre::message::header::ContentType;
use lettre::message::{Attachment, Mailbox, MultiPart};
use lettre::transport::smtp::PoolConfig;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde_json::{Value, json};

use mailroom_core::account::TlsMode;
use mailroom_providers::NetPolicy;
use mailroom_providers::imap_smtp::imap::{self, ImapLogin};
use mailroom_testkit::{Backend, MailRig, MailUser, TestApp, TestDb, app::spawn_on};
use secrecy::SecretString;

#[derive(Parser, Debug)]
#[command(
    name = "send",
    about = "Send throughput: mailroom's POST /api/v1/emails vs. direct pooled SMTP"
)]
struct Args {
    /// Messages per measured run (each of the two runs sends this many).
    #[arg(long, default_value_t = 1000)]
    count: usize,
    /// Concurrent senders in each run (HTTP requests in flight, or SMTP sends in flight).
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// mailroom's database.
    #[arg(long, value_enum, default_value_t = BackendArg::Sqlite)]
    backend: BackendArg,
    /// Unmeasured messages sent first in each run; default max(20, concurrency), so the direct
    /// pool is full before the clock starts.
    #[arg(long)]
    warmup: Option<usize>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
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

/// Runs `f(0..n)` with `c` workers, timing each call and the whole.
async fn drive<F, Fut>(n: usize, c: usize, logs: Option<RigLogs<'_>>, f: F) -> Run
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    let f = Arc::new(f);
    let next = Arc::new(AtomicUsize::new(0));
    let logins_before = logs.and_then(count_logins);
    let cpu_before = process_cpu_secs();
    let machine_before = machine_ticks();
    let start = Instant::now();
    let workers: Vec<_> = (0..c.max(1))
        .map(|_| {
            let f = f.clone();
            let next = next.clone();
            tokio::spawn(async move {
                let mut lat = Vec::new();
                let mut errs = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    let t = Instant::now();
                    let r = f(i).await;
                    lat.push(t.elapsed());
                    if let Err(e) = r {
                        errs.push(e);
                    }
                }
                (lat, errs)
            })
        })
        .collect();
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

fn direct_transport(
    rig: &MailRig,
    user: &MailUser,
    pool: u32,
) -> anyhow::Result<AsyncSmtpTransport<Tokio1Executor>> {
    // The same settings as mailroom's own transport (crates/providers/src/imap_smtp/smtp.rs):
    // STARTTLS required, PLAIN then LOGIN, the rig's self-signed certificate accepted.
    let tls = TlsParameters::builder(rig.host.clone())
        .dangerous_accept_invalid_certs(true)
        .build_rustls()
        .context("TLS parameters")?;
    Ok(
        AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(rig.host.clone())
            .port(rig.smtp_port)
            .tls(Tls::Required(tls))
            .credentials(Credentials::new(
                user.address.clone(),
                user.password.clone(),
            ))
            .authentication(vec![Mechanism::Plain, Mechanism::Login])
            .timeout(Some(Duration::from_secs(30)))
            .pool_config(PoolConfig::new().max_size(pool))
            .build(),
    )
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

/// Sends `n` messages straight to Postfix.
async fn direct_run(
    transport: &AsyncSmtpTransport<Tokio1Executor>,
    from: &Mailbox,
    to: &Mailbox,
    label: &'static str,
    n: usize,
    c: usize,
    logs: Option<RigLogs<'_>>,
) -> Run {
    let transport = transport.clone();
    let (from, to) = (from.clone(), to.clone());
    let data: Arc<[u8]> = attachment().into();
    drive(n, c, logs, move |i| {
        let transport = transport.clone();
        let (from, to, data) = (from.clone(), to.clone(), data.clone());
        async move {
            let msg = direct_message(&from, &to, format!("bench {label} #{i}"), &data)?;
            transport
                .send(msg)
                .await
                .map(|_| ())
                .map_err(|e| format!("SMTP: {e}"))
        }
    })
    .await
}

/// Sends `n` messages through `POST /api/v1/emails`.
#[allow(clippy::too_many_arguments)]
async fn api_run(
    client: &reqwest::Client,
    url: &str,
    api_key: &str,
    account_id: &str,
    to: &str,
    label: &'static str,
    n: usize,
    c: usize,
    logs: Option<RigLogs<'_>>,
) -> Run {
    let content = base64::engine::general_purpose::STANDARD.encode(attachment());
    let template = Arc::new(json!({
        "account_id": account_id,
        "to": [{"identifier": to}],
        "subject": "",
        "body": HTML,
        "attachments": [{
            "filename": "data.bin",
            "content_type": "application/octet-stream",
            "content": content,
        }],
    }));
    let (client, url, api_key) = (client.clone(), url.to_owned(), api_key.to_owned());
    drive(n, c, logs, move |i| {
        let (client, url, api_key) = (client.clone(), url.clone(), api_key.clone());
        let mut body = (*template).clone();
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
    let policy = NetPolicy {
        allow_private: true,
        tls_insecure_skip_verify: true,
        connect_timeout: Duration::from_secs(10),
    };
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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let (n, c) = (args.count.max(1), args.concurrency.max(1));
    let warmup = args.warmup.unwrap_or(c.max(20));
    let pool = c as u32;
    let backend = match args.backend {
        BackendArg::Sqlite => Backend::Sqlite,
        BackendArg::Postgres => Backend::Postgres,
    };
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
    let direct_user = rig.create_user();
    let api_user = rig.create_user();
    let recipient = rig.create_user();

    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    // Anything else running skews every figure: say so.
    let before = machine_ticks();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let busy_before = match (before, machine_ticks()) {
        (Some((b0, t0)), Some((b1, t1))) if t1 > t0 => Some((b1 - b0) as f64 / (t1 - t0) as f64),
        _ => None,
    };
    println!(
        "send benchmark: {n} messages per run, concurrency {c}, warm-up {warmup}, backend {:?}, \
         direct pool {pool}, nproc {cpus}",
        args.backend
    );
    println!(
        "message: HTML body ({} B) + text alternative + {} B attachment, 1 recipient; \
         SMTP STARTTLS to 127.0.0.1:{}",
        HTML.len(),
        ATTACHMENT_BYTES,
        rig.smtp_port
    );
    if let Some(b) = busy_before {
        println!(
            "machine CPU busy {:.0} % in the 2 s before the benchmark{}",
            b * 100.0,
            if b > 0.2 {
                " (something else is running: the figures are not reliable)"
            } else {
                ""
            }
        );
    }
    let mut failed = 0usize;

    // (1) The baseline: straight to Postfix with a pooled lettre transport.
    let transport = direct_transport(&rig, &direct_user, pool)?;
    let from: Mailbox = direct_user.address.parse().context("sender address")?;
    let to: Mailbox = recipient.address.parse().context("recipient address")?;
    let w = direct_run(&transport, &from, &to, "direct warm-up", warmup, c, None).await;
    report_warmup("direct", &w);
    failed += w.failed();
    let direct_warmup_ok = w.ok();
    let direct = direct_run(&transport, &from, &to, "direct", n, c, logs).await;
    failed += direct.failed();
    report_progress("direct", &direct);
    transport.shutdown().await;
    drop(transport);
    // Postfix delivers into Dovecot after its 250, at its own pace; let the direct run's
    // deliveries finish so they do not load the machine during the API run.
    let delivered_total = (direct_warmup_ok + direct.ok()) as u32;
    let drain = Instant::now();
    let mut delivered = None;
    while drain.elapsed() < Duration::from_secs(300) {
        delivered = mailbox_count(&rig, &recipient, "INBOX").await.or(delivered);
        if delivered.is_some_and(|d| d >= delivered_total) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    println!(
        "direct run delivered: {}/{delivered_total} in the recipient's INBOX {:.1} s after the run \
         (waited before the API run)",
        delivered.map_or("?".to_owned(), |d| d.to_string()),
        drain.elapsed().as_secs_f64()
    );

    // (2) mailroom in this process: a fresh database, the test settings, logs at warn.
    let Some(db) = TestDb::new(backend).await else {
        bail!("{:?} is unavailable", args.backend);
    };
    let app = spawn_on(db, |s| s.log = "warn".into()).await;
    let (status, created) = app
        .post_json("/api/v1/accounts", &rig.account_body(&api_user))
        .await;
    if status != 201 {
        bail!("linking the account failed ({status}): {created}");
    }
    let account_id = created["account_id"]
        .as_str()
        .context("account_id")?
        .to_owned();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(c)
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(120))
        .build()?;
    let url = app.url("/api/v1/emails");
    let w = api_run(
        &client,
        &url,
        &app.api_key,
        &account_id,
        &recipient.address,
        "api warm-up",
        warmup,
        c,
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
        &account_id,
        &recipient.address,
        "api",
        n,
        c,
        logs,
    )
    .await;
    failed += api.failed();
    let api_done = Instant::now();
    report_progress("api", &api);

    // Not measured: mailroom APPENDs each sent message to the account's Sent folder in the
    // background, part of it during the API run. Say when that work was over.
    let expected = (api_warmup_ok + api.ok()) as u32;
    let mut copies = None;
    while api_done.elapsed() < Duration::from_secs(120) {
        copies = mailbox_count(&rig, &api_user, "Sent").await.or(copies);
        if copies.is_some_and(|c| c >= expected) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let copies_after = api_done.elapsed();
    let tally = outbox_tally(&app).await;
    app.stop().await;

    // (3) The figures.
    println!();
    print_run("direct", &direct);
    print_run("api", &api);
    println!(
        "        Sent copies (background, not measured): {}/{expected} in the Sent folder {:.1} s \
         after the last answer",
        copies.map_or("?".to_owned(), |c| c.to_string()),
        copies_after.as_secs_f64()
    );
    if !tally.is_empty() {
        let t: Vec<String> = tally.iter().map(|(k, v)| format!("{k} {v}")).collect();
        println!("        outbox at the end: {}", t.join(", "));
    }
    let ratio = api.rate() / direct.rate();
    println!(
        "machine: nproc {cpus}; client, mailroom, Postfix and Dovecot share these CPUs; \
         target ratio >= 0.80"
    );
    println!(
        "ratio {ratio:.2} (api {:.1} msg/s, direct {:.1} msg/s), api p50 {:.1} ms, p99 {:.1} ms",
        api.rate(),
        direct.rate(),
        ms(percentile(&api.latencies, 0.50)),
        ms(percentile(&api.latencies, 0.99)),
    );
    if failed > 0 {
        eprintln!("send: {failed} sends failed");
        std::process::exit(1);
    }
    Ok(())
}
