//! `latency`: delivery into Dovecot → the `mail_received` webhook received, on a `mailroom
//! serve` process (release, default settings: sync on, production webhook settings) with one
//! IMAP account of a fresh rig user and one `email` webhook pointing at a receiver in the bench
//! process.
//!
//! Each delivery is one `doveadm save -u USER -m INBOX` of a distinct small message (unique
//! Message-ID), one at a time: t0 just before doveadm is spawned, t1 when the receiver has the
//! request whose body carries that Message-ID (at most 30 s; a missing one is a failure). A
//! random pause of 0–50 ms separates deliveries. doveadm's own time is the baseline (what the
//! delivery costs without anyone watching). After the run, each event's `created_at` in the
//! database (the time of the sync pass that stored it: a pass stamps its writes with its start)
//! splits the figure in two: delivery → the pass that found it (IMAP push, then the pass
//! starting) and that pass → webhook received (the pass's fetch and index write, the
//! dispatcher's claim, signature and POST).

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use serde_json::json;
use tokio::sync::mpsc;

use mailroom_bench::api::{self, Served};
use mailroom_bench::receiver::{Hit, Receiver};
use mailroom_bench::{BackendArg, Rig, httpdate, machine_busy_now, now_ms, pct};

use crate::Args;

/// How long one delivery's webhook may take before it counts as missing.
const DEADLINE: Duration = Duration::from_secs(30);

/// One measured delivery.
struct Delivery {
    message_id: String,
    /// Wall clock just before doveadm started (unix ms), to pair with the event's time.
    at_ms: i64,
    doveadm: Duration,
    webhook: Option<Duration>,
}

pub async fn run(rig: &Rig, args: &Args) -> anyhow::Result<String> {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n### latency: `doveadm save` into INBOX → `mail_received` webhook received, {} \
         deliveries one at a time (`mailroom serve`, release, defaults)\n",
        args.deliveries
    );
    let _ = writeln!(
        out,
        "| backend | deliveries | missing | webhook p50 ms | webhook p99 ms | webhook max ms \
         | delivery → sync pass p50 / p99 ms | sync pass → webhook p50 / p99 ms | doveadm p50 / p99 ms |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|");
    let mut failures = 0;
    for b in args.backends() {
        if let Err(e) = one_backend(rig, args, b, &mut out).await {
            failures += 1;
            println!("  latency ({}) did not run: {e:#}", b.label());
            let _ = writeln!(out, "| {} | did not run: {e} | | | | | | | |", b.label());
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
    let mut opts = args.server_options("latency", b);
    opts.env
        .push(("MAILROOM_WEBHOOK_ALLOW_PRIVATE".into(), "true".into()));
    let s = api::serve(b, &opts).await?;
    let user = rig.rig.create_user();
    let account = s.api.link(&rig.rig.account_body(&user)).await?;
    s.api.wait_ok(&account, Duration::from_secs(60)).await?;
    let receiver = Receiver::start().await?;
    let mut tap = receiver.tap();
    let (status, created) = s
        .api
        .post_json(
            "/api/v1/webhooks",
            &json!({
                "source": "email",
                "request_url": receiver.url("/hook"),
                "events": ["mail_received"],
                "name": "bench",
            }),
        )
        .await?;
    if status != 201 {
        bail!("creating the webhook failed ({status}): {created}");
    }
    println!(
        "  latency ({}): account {account} ({}) OK, webhook {}; mailroom serve pid {}",
        b.label(),
        user.address,
        created["webhook_id"],
        s.server.pid()
    );

    let run = mailroom_testkit::token();
    let warm = deliver(
        rig,
        &user.address,
        format!("<whl.{run}.warm@bench.example>"),
        &mut tap,
    )
    .await?;
    if warm.webhook.is_none() {
        bail!("the warm-up delivery brought no webhook within {DEADLINE:?}");
    }
    let busy = machine_busy_now().await;
    let mut rng = StdRng::seed_from_u64(now_ms() as u64);
    let mut done = Vec::with_capacity(args.deliveries);
    for i in 0..args.deliveries {
        let d = deliver(
            rig,
            &user.address,
            format!("<whl.{run}.{i}@bench.example>"),
            &mut tap,
        )
        .await?;
        if d.webhook.is_none() {
            println!(
                "  latency ({}): no webhook for {} (delivered at {} ms) within {DEADLINE:?}",
                b.label(),
                d.message_id,
                d.at_ms
            );
        }
        done.push(d);
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..=50))).await;
    }

    // Split each figure at the event's commit time.
    let stored = event_times(&s).await?;
    let (mut to_event, mut to_hook) = (Vec::new(), Vec::new());
    for d in &done {
        if let (Some(hook), Some(at)) = (d.webhook, stored.get(&d.message_id)) {
            let ev = Duration::from_millis((at - d.at_ms).max(0) as u64);
            to_event.push(ev);
            to_hook.push(hook.saturating_sub(ev));
        }
    }
    to_event.sort_unstable();
    to_hook.sort_unstable();
    let mut hooks: Vec<Duration> = done.iter().filter_map(|d| d.webhook).collect();
    let missing = done.len() - hooks.len();
    hooks.sort_unstable();
    let mut dv: Vec<Duration> = done.iter().map(|d| d.doveadm).collect();
    dv.sort_unstable();
    println!(
        "  latency ({}): {} deliveries, {missing} missing; webhook p50 {:.1} ms, p99 {:.1} ms, \
         max {:.1} ms; delivery → sync pass p50 {:.1} / p99 {:.1} ms; sync pass → webhook p50 {:.1} / \
         p99 {:.1} ms; doveadm p50 {:.1} / p99 {:.1} ms; machine {} busy before",
        b.label(),
        done.len(),
        pct(&hooks, 0.5),
        pct(&hooks, 0.99),
        pct(&hooks, 1.0),
        pct(&to_event, 0.5),
        pct(&to_event, 0.99),
        pct(&to_hook, 0.5),
        pct(&to_hook, 0.99),
        pct(&dv, 0.5),
        pct(&dv, 0.99),
        busy.map_or("?".into(), |b| format!("{:.0} %", b * 100.0))
    );
    let _ = writeln!(
        out,
        "| {} | {} | {missing} | {:.1} | {:.1} | {:.1} | {:.1} / {:.1} | {:.1} / {:.1} | {:.1} / {:.1} |",
        b.label(),
        done.len(),
        pct(&hooks, 0.5),
        pct(&hooks, 0.99),
        pct(&hooks, 1.0),
        pct(&to_event, 0.5),
        pct(&to_event, 0.99),
        pct(&to_hook, 0.5),
        pct(&to_hook, 0.99),
        pct(&dv, 0.5),
        pct(&dv, 0.99),
    );
    let Served { server, db, .. } = s;
    drop(server);
    drop(db);
    Ok(())
}

/// Saves one message into INBOX and waits for its webhook.
async fn deliver(
    rig: &Rig,
    user: &str,
    message_id: String,
    tap: &mut mpsc::UnboundedReceiver<Hit>,
) -> anyhow::Result<Delivery> {
    // Requests of earlier deliveries that came late are not this one's.
    while tap.try_recv().is_ok() {}
    let msg = format!(
        "From: Bench Sender <sender@bench.example>\r\nTo: <{user}>\r\nSubject: webhook latency\r\n\
         Message-ID: {message_id}\r\nDate: {}\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\nA small message for the webhook latency \
         benchmark.\r\n",
        httpdate(std::time::SystemTime::now())
    );
    let at_ms = now_ms();
    let t0 = Instant::now();
    rig.save(user, "INBOX", msg.as_bytes()).await?;
    let doveadm = t0.elapsed();
    let needle = message_id.as_bytes();
    let webhook = tokio::time::timeout(DEADLINE.saturating_sub(t0.elapsed()), async {
        while let Some(hit) = tap.recv().await {
            if hit.body.windows(needle.len()).any(|w| w == needle) {
                return Some(hit.at - t0);
            }
        }
        None
    })
    .await
    .ok()
    .flatten();
    Ok(Delivery {
        message_id,
        at_ms,
        doveadm,
        webhook,
    })
}

/// Message-ID → `created_at` (unix ms) of the stored `mail_received` events.
async fn event_times(s: &Served) -> anyhow::Result<std::collections::HashMap<String, i64>> {
    let q =
        "SELECT payload, created_at FROM events WHERE workspace_id = $1 AND type = 'mail_received'";
    let rows: Vec<(String, i64)> = if s.database_url.starts_with("sqlite:") {
        let pool = sqlx::SqlitePool::connect(&s.database_url).await?;
        let r = sqlx::query_as(q)
            .bind(&s.workspace)
            .fetch_all(&pool)
            .await?;
        pool.close().await;
        r
    } else {
        let pool = sqlx::PgPool::connect(&s.database_url).await?;
        let r = sqlx::query_as(q)
            .bind(&s.workspace)
            .fetch_all(&pool)
            .await?;
        pool.close().await;
        r
    };
    let mut out = std::collections::HashMap::new();
    for (payload, at) in rows {
        let v: serde_json::Value = serde_json::from_str(&payload).context("an event's payload")?;
        if let Some(mid) = v["message_id"].as_str() {
            out.insert(mid.to_owned(), at);
        }
    }
    Ok(out)
}
