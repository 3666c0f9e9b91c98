//! `latency`: delivery → stored `mail_received` event, on a `mailroom serve` process (release,
//! default settings, sync on) with one IMAP account of a fresh rig user, for new mail in INBOX
//! and in a folder created after the account's first pass (`Projects`).
//!
//! Each delivery is one `doveadm save -u USER -m FOLDER` of a distinct small message (unique
//! Message-ID), one at a time: t0 just before doveadm is spawned; then the `events` table is
//! read directly (a pool of the bench's own on the same database) every 2 ms until the
//! `mail_received` event carrying that Message-ID is there (t1), at most 30 s (a missing event
//! is a failure). doveadm's own time (spawn to exit) is the baseline: what delivery costs
//! without anyone watching. A random pause of 0–50 ms separates deliveries so they do not
//! align with anything periodic. The 2 ms poll and doveadm's start-up are inside t1 − t0.
//!
//! Two more baselines, plain IMAP clients (raw protocol, LOGIN, same Dovecot, same user) that
//! record when each delivery's notification reaches them: what the server's own push costs
//! before mailroom does anything. One does what mailroom's watch does (INBOX selected,
//! mailroom's `NOTIFY SET`, IDLE: `EXISTS` for INBOX, `STATUS Projects (…)` for the other
//! folder); the others IDLE with the folder selected (`EXISTS`).

use std::fmt::Write as _;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::Args;
use mailroom_bench::api::{self, Served};
use mailroom_bench::{BackendArg, Rig, httpdate, machine_busy_now, now_ms, pct};

/// The folder created after the account's first pass.
const OTHER: &str = "Projects";
/// How long one delivery's event may take before it counts as missing.
const EVENT_DEADLINE: Duration = Duration::from_secs(30);
/// How often the events table is read.
const POLL: Duration = Duration::from_millis(2);

/// The bench's own reader of the `events` table.
enum Events {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

impl Events {
    async fn connect(url: &str) -> anyhow::Result<Self> {
        Ok(if url.starts_with("sqlite:") {
            Events::Sqlite(
                sqlx::pool::PoolOptions::new()
                    .max_connections(1)
                    .connect(url)
                    .await?,
            )
        } else {
            Events::Postgres(
                sqlx::pool::PoolOptions::new()
                    .max_connections(1)
                    .connect(url)
                    .await?,
            )
        })
    }

    /// Whether the `mail_received` event of `message_id` is stored (`since_ms`: a watermark
    /// on `created_at`, well before the delivery, so the workspace index finds the few rows).
    async fn has(&self, workspace: &str, since_ms: i64, message_id: &str) -> anyhow::Result<bool> {
        let like = format!("%{message_id}%");
        let found: Option<i64> =
            match self {
                Events::Sqlite(p) => {
                    sqlx::query_scalar(
                        "SELECT created_at FROM events WHERE workspace_id = ? AND created_at >= ? \
                     AND type = 'mail_received' AND payload LIKE ? LIMIT 1",
                    )
                    .bind(workspace)
                    .bind(since_ms)
                    .bind(&like)
                    .fetch_optional(p)
                    .await?
                }
                Events::Postgres(p) => sqlx::query_scalar(
                    "SELECT created_at FROM events WHERE workspace_id = $1 AND created_at >= $2 \
                     AND type = 'mail_received' AND payload LIKE $3 LIMIT 1",
                )
                .bind(workspace)
                .bind(since_ms)
                .bind(&like)
                .fetch_optional(p)
                .await?,
            };
        Ok(found.is_some())
    }
}

fn message(to: &str, message_id: &str, subject: &str) -> Vec<u8> {
    format!(
        "From: Bench Sender <sender@bench.example>\r\nTo: <{to}>\r\nSubject: {subject}\r\n\
         Message-ID: {message_id}\r\nDate: {}\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\nA small message for the latency \
         benchmark: {subject}.\r\n",
        httpdate(SystemTime::now())
    )
    .into_bytes()
}

/// `NOTIFY SET` as mailroom's watch sends it (`crates/providers/src/imap_smtp/watch.rs`).
const NOTIFY_SET: &str = "NOTIFY SET (selected (MessageNew MessageExpunge FlagChange)) \
                          (personal (MessageNew MessageExpunge FlagChange MailboxName))";

/// A plain IMAP client (raw protocol, LOGIN without TLS) that selects `select`, optionally
/// sends mailroom's `NOTIFY SET`, then IDLEs and reports the instant of every `EXISTS` (as a
/// change of `select`) and every `STATUS folder` (as a change of that folder) to the route of
/// that folder.
async fn push_client(
    rig: &Rig,
    user: &mailroom_testkit::MailUser,
    select: &str,
    notify: bool,
    routes: Vec<(String, mpsc::UnboundedSender<Instant>)>,
) -> anyhow::Result<()> {
    let stream = TcpStream::connect((rig.rig.host.as_str(), rig.rig.imap_port)).await?;
    stream.set_nodelay(true)?;
    let (r, mut w) = stream.into_split();
    let mut lines = BufReader::new(r).lines();
    async fn until(
        lines: &mut tokio::io::Lines<BufReader<tokio::net::tcp::OwnedReadHalf>>,
        prefix: &str,
    ) -> anyhow::Result<String> {
        loop {
            let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
                .await
                .context("IMAP answer timed out")??
                .context("IMAP connection closed")?;
            if line.starts_with(prefix) {
                return Ok(line);
            }
        }
    }
    async fn command(
        w: &mut tokio::net::tcp::OwnedWriteHalf,
        lines: &mut tokio::io::Lines<BufReader<tokio::net::tcp::OwnedReadHalf>>,
        tag: &str,
        cmd: &str,
    ) -> anyhow::Result<()> {
        w.write_all(format!("{tag} {cmd}\r\n").as_bytes()).await?;
        let l = until(lines, &format!("{tag} ")).await?;
        if !l.starts_with(&format!("{tag} OK")) {
            bail!("{cmd}: {l}");
        }
        Ok(())
    }
    until(&mut lines, "* OK").await?;
    let login = format!("LOGIN \"{}\" \"{}\"", user.address, user.password);
    command(&mut w, &mut lines, "a", &login).await?;
    command(&mut w, &mut lines, "b", &format!("SELECT \"{select}\"")).await?;
    if notify {
        command(&mut w, &mut lines, "n", NOTIFY_SET).await?;
    }
    w.write_all(b"c IDLE\r\n").await?;
    until(&mut lines, "+").await?;
    let select = select.to_owned();
    tokio::spawn(async move {
        let _w = w; // the session lasts as long as the reader
        while let Ok(Some(line)) = lines.next_line().await {
            let at = Instant::now();
            let folder = if line.starts_with("* ") && line.ends_with(" EXISTS") {
                select.clone()
            } else if let Some(rest) = line.strip_prefix("* STATUS ") {
                let name = rest.split(" (").next().unwrap_or("");
                name.trim_matches('"').to_owned()
            } else {
                continue;
            };
            for (f, tx) in &routes {
                if *f == folder {
                    let _ = tx.send(at);
                }
            }
        }
    });
    Ok(())
}

/// One delivery's figures.
struct Delivery {
    /// t1 − t0; `None` when no event came within [`EVENT_DEADLINE`].
    event: Option<Duration>,
    /// When the plain IDLE client saw the `EXISTS`, from t0.
    idle: Option<Duration>,
    /// When the plain NOTIFY client saw the `EXISTS` (INBOX) or the `STATUS`, from t0.
    notify: Option<Duration>,
    doveadm: Duration,
    /// Wall clock at t0 (ms), to find the delivery in the server's logs.
    at_ms: i64,
    message_id: String,
}

/// Delivers one message and waits for its event.
async fn deliver(
    rig: &Rig,
    s: &Served,
    events: &Events,
    user: &str,
    folder: &str,
    message_id: String,
    (idle, notify): (
        &mut mpsc::UnboundedReceiver<Instant>,
        &mut mpsc::UnboundedReceiver<Instant>,
    ),
) -> anyhow::Result<Delivery> {
    // Anything the plain clients saw before this delivery is not this delivery's.
    while idle.try_recv().is_ok() {}
    while notify.try_recv().is_ok() {}
    let msg = message(user, &message_id, &format!("latency {folder} {message_id}"));
    let at_ms = now_ms();
    let since = at_ms - 60_000;
    let t0 = Instant::now();
    rig.save(user, folder, &msg).await?;
    let doveadm = t0.elapsed();
    let event = loop {
        if events.has(&s.workspace, since, &message_id).await? {
            break Some(t0.elapsed());
        }
        if t0.elapsed() > EVENT_DEADLINE {
            break None;
        }
        tokio::time::sleep(POLL).await;
    };
    let seen = async |rx: &mut mpsc::UnboundedReceiver<Instant>| {
        let left = EVENT_DEADLINE.saturating_sub(t0.elapsed());
        match tokio::time::timeout(left, rx.recv()).await {
            Ok(Some(at)) => Some(at.saturating_duration_since(t0)),
            _ => None,
        }
    };
    let idle = seen(idle).await;
    let notify = seen(notify).await;
    Ok(Delivery {
        event,
        idle,
        notify,
        doveadm,
        at_ms,
        message_id,
    })
}

pub async fn run(rig: &Rig, args: &Args) -> anyhow::Result<String> {
    let backends = args.backends();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n### latency: `doveadm save` → stored `mail_received` event, {} deliveries per folder, \
         one at a time (poll every 2 ms; doveadm's start-up and the poll are inside the figure)\n",
        args.deliveries
    );
    let _ = writeln!(
        out,
        "| backend | folder | deliveries | missing | event p50 ms | event p99 ms | event max ms \
         | plain NOTIFY client p50 / p99 / max ms | event − NOTIFY client (paired) p50 / p99 ms \
         | plain IDLE client p50 / p99 / max ms | doveadm p50 / p99 / max ms |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|---|");
    let mut failures = 0;
    for b in backends {
        if let Err(e) = one_backend(rig, args, b, &mut out).await {
            failures += 1;
            println!("  latency ({}) did not run: {e:#}", b.label());
            let _ = writeln!(
                out,
                "| {} | did not run: {e} | | | | | | | | | |",
                b.label()
            );
        }
    }
    if failures > 0 {
        println!("{out}");
        bail!("{failures} backend(s) did not run");
    }
    Ok(out)
}

async fn one_backend(
    rig: &Rig,
    args: &Args,
    b: BackendArg,
    out: &mut String,
) -> anyhow::Result<()> {
    let opts = args.server_options("latency", b);
    let s = api::serve(b, &opts).await?;
    let user = rig.rig.create_user();
    let linked = Instant::now();
    let account = s.api.link(&rig.rig.account_body(&user)).await?;
    let ok_after = s.api.wait_ok(&account, Duration::from_secs(60)).await?;
    println!(
        "  latency ({}): account {account} ({}) linked in {:.2} s, OK {:.2} s later; mailroom serve pid {}",
        b.label(),
        user.address,
        linked.elapsed().as_secs_f64() - ok_after.as_secs_f64(),
        ok_after.as_secs_f64(),
        s.server.pid()
    );

    // A folder that appears after the first pass, once the server has seen it.
    rig.doveadm(&["mailbox", "create", "-u", &user.address, OTHER])?;
    let start = Instant::now();
    loop {
        let (status, list) = s
            .api
            .get(&format!("/api/v1/folders?account_id={account}"))
            .await?;
        let seen = status == 200
            && list["items"]
                .as_array()
                .is_some_and(|items| items.iter().any(|f| f["provider_id"] == OTHER));
        if seen {
            break;
        }
        if start.elapsed() > Duration::from_secs(60) {
            bail!("the server did not list {OTHER} within 60 s (last answer {status}: {list})");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "  latency ({}): {OTHER} created and listed by the server after {:.2} s",
        b.label(),
        start.elapsed().as_secs_f64()
    );

    let events = Events::connect(&s.database_url).await?;
    let run = mailroom_testkit::token();
    // The baselines: a plain IDLE client per folder (that folder selected), and one plain
    // client doing what mailroom's watch does (INBOX selected, NOTIFY SET, IDLE).
    let mut idles = Vec::new();
    let mut notifies = Vec::new();
    let mut notify_routes = Vec::new();
    for folder in ["INBOX", OTHER] {
        let (tx, rx) = mpsc::unbounded_channel();
        push_client(rig, &user, folder, false, vec![(folder.to_owned(), tx)])
            .await
            .with_context(|| format!("the plain IDLE client on {folder}"))?;
        idles.push(rx);
        let (tx, rx) = mpsc::unbounded_channel();
        notify_routes.push((folder.to_owned(), tx));
        notifies.push(rx);
    }
    push_client(rig, &user, "INBOX", true, notify_routes)
        .await
        .context("the plain NOTIFY client")?;
    // One unmeasured delivery per folder first (the folder's first fetch, warm caches).
    for ((folder, idle), notify) in ["INBOX", OTHER]
        .into_iter()
        .zip(idles.iter_mut())
        .zip(notifies.iter_mut())
    {
        let d = deliver(
            rig,
            &s,
            &events,
            &user.address,
            folder,
            format!("<lat.{run}.warm.{folder}@bench.example>"),
            (idle, notify),
        )
        .await?;
        if d.event.is_none() {
            bail!("the warm-up delivery into {folder} brought no event within 30 s");
        }
    }
    let busy = machine_busy_now().await;
    println!(
        "  latency ({}): machine {} busy before the measured deliveries",
        b.label(),
        busy.map_or("?".into(), |b| format!("{:.0} %", b * 100.0))
    );
    let mut rng = StdRng::seed_from_u64(now_ms() as u64);
    for ((folder, idle), notify) in ["INBOX", OTHER]
        .into_iter()
        .zip(idles.iter_mut())
        .zip(notifies.iter_mut())
    {
        let mut done = Vec::with_capacity(args.deliveries);
        let started = Instant::now();
        for i in 0..args.deliveries {
            let d = deliver(
                rig,
                &s,
                &events,
                &user.address,
                folder,
                format!("<lat.{run}.{folder}.{i}@bench.example>"),
                (&mut *idle, &mut *notify),
            )
            .await?;
            if d.event.is_none() {
                println!(
                    "  latency ({}): no mail_received for {} ({folder}, delivered at {} ms) within 30 s",
                    b.label(),
                    d.message_id,
                    d.at_ms
                );
            }
            done.push(d);
            tokio::time::sleep(Duration::from_millis(rng.random_range(0..=50))).await;
        }
        let mut ev: Vec<Duration> = done.iter().filter_map(|d| d.event).collect();
        let missing = done.len() - ev.len();
        ev.sort_unstable();
        let mut dv: Vec<Duration> = done.iter().map(|d| d.doveadm).collect();
        dv.sort_unstable();
        let mut iv: Vec<Duration> = done.iter().filter_map(|d| d.idle).collect();
        let idle_missing = done.len() - iv.len();
        iv.sort_unstable();
        let mut nv: Vec<Duration> = done.iter().filter_map(|d| d.notify).collect();
        let notify_missing = done.len() - nv.len();
        nv.sort_unstable();
        // mailroom's own share, paired per delivery: its event after the plain NOTIFY client's
        // notification (negative when mailroom's session was told first).
        let mut share: Vec<f64> = done
            .iter()
            .filter_map(|d| Some((d.event?.as_secs_f64() - d.notify?.as_secs_f64()) * 1e3))
            .collect();
        share.sort_by(f64::total_cmp);
        let share_p = |q: f64| {
            if share.is_empty() {
                return f64::NAN;
            }
            let rank = ((q * share.len() as f64).ceil() as usize).clamp(1, share.len());
            share[rank - 1]
        };
        println!(
            "  latency ({}, {folder}): event − plain NOTIFY client, paired: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            b.label(),
            share_p(0.5),
            share_p(0.99),
            share_p(1.0)
        );
        println!(
            "  latency ({}, {folder}): {} deliveries in {:.1} s, {missing} missing; event p50 {:.1} ms, \
             p99 {:.1} ms, max {:.1} ms; doveadm p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; \
             plain IDLE client's EXISTS p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({idle_missing} not seen); \
             plain NOTIFY client p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({notify_missing} not seen)",
            b.label(),
            done.len(),
            started.elapsed().as_secs_f64(),
            pct(&ev, 0.5),
            pct(&ev, 0.99),
            pct(&ev, 1.0),
            pct(&dv, 0.5),
            pct(&dv, 0.99),
            pct(&dv, 1.0),
            pct(&iv, 0.5),
            pct(&iv, 0.99),
            pct(&iv, 1.0),
            pct(&nv, 0.5),
            pct(&nv, 0.99),
            pct(&nv, 1.0),
        );
        // The slowest few, with their wall-clock time, to find them in the server's logs.
        let mut slow: Vec<&Delivery> = done.iter().collect();
        slow.sort_by_key(|d| std::cmp::Reverse(d.event.unwrap_or(Duration::MAX)));
        for d in slow.iter().take(3) {
            println!(
                "    slowest: {} at {} ms: event {}, doveadm {:.1} ms, plain IDLE {}, plain NOTIFY {}",
                d.message_id,
                d.at_ms,
                d.event.map_or("missing".into(), |e| format!(
                    "{:.1} ms",
                    e.as_secs_f64() * 1e3
                )),
                d.doveadm.as_secs_f64() * 1e3,
                d.idle.map_or("not seen".into(), |e| format!(
                    "{:.1} ms",
                    e.as_secs_f64() * 1e3
                )),
                d.notify.map_or("not seen".into(), |e| format!(
                    "{:.1} ms",
                    e.as_secs_f64() * 1e3
                )),
            );
        }
        let _ = writeln!(
            out,
            "| {} | {folder} | {} | {missing} | {:.1} | {:.1} | {:.1} | {:.1} / {:.1} / {:.1} \
             ({notify_missing} not seen) | {:.1} / {:.1} | {:.1} / {:.1} / {:.1} ({idle_missing} not seen) \
             | {:.1} / {:.1} / {:.1} |",
            b.label(),
            done.len(),
            pct(&ev, 0.5),
            pct(&ev, 0.99),
            pct(&ev, 1.0),
            pct(&nv, 0.5),
            pct(&nv, 0.99),
            pct(&nv, 1.0),
            share_p(0.5),
            share_p(0.99),
            pct(&iv, 0.5),
            pct(&iv, 0.99),
            pct(&iv, 1.0),
            pct(&dv, 0.5),
            pct(&dv, 0.99),
            pct(&dv, 1.0),
        );
    }
    println!(
        "  latency ({}): mailroom serve RSS {:.1} MB at the end",
        b.label(),
        s.server.rss().unwrap_or(0) as f64 / 1e6
    );
    drop(events);
    let Served { server, db, .. } = s;
    drop(server);
    drop(db);
    Ok(())
}
