//! `throughput`: webhook deliveries per second to a local receiver, against a plain HTTP client
//! posting the same signed payloads to the same receiver in the same run.
//!
//! mailroom runs in-process (`testkit::app::spawn_on`, production webhook settings: 64
//! attempts at once, 8 per destination host, 30 s per attempt; sync off so nothing else
//! writes). K accounts of fresh rig users are linked and each gets its share of N indexed
//! messages (the sync's own index write); one `email` webhook (`mail_received`) points at the
//! receiver. A **round** records N `mail_received` events — payloads as the IMAP sync writes
//! them, headers only — spread over the K accounts, in **one** transaction: nothing can be
//! delivered before the commit, so the round is timed from the commit to the N-th request
//! received. Every delivery then does what it does in production: claim with a lease, read the
//! event, complete it with the bodies from the index, open the webhook's sealed secret, sign,
//! pass the SSRF guard, POST, settle and log the attempt.
//!
//! **Baseline**: a plain `reqwest` client (one pooled client, keep-alive) posting the bodies
//! mailroom delivered in the round before — the same bytes, signed again with the same
//! secret and a fresh timestamp — from as many workers as mailroom may use towards one host
//! (8). Rounds alternate mailroom, baseline, mailroom, baseline; each side's figure is the
//! mean of its two rounds. ratio = mailroom's deliveries/s ÷ the baseline's (target ≥ 0.7).

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use secrecy::SecretString;
use serde_json::{Value, json};

use mailroom_bench::receiver::{Hit, Receiver};
use mailroom_bench::{BackendArg, Rig, machine_busy_now, now_ms};
use mailroom_core::email::Attendee;
use mailroom_core::mail::{FolderRole, Header, MailOrigin};
use mailroom_core::{new_id, time_fmt};
use mailroom_engine::webhooks::WebhookConfig;
use mailroom_engine::webhooks::sign;
use mailroom_store::events::{self, NewEvent};
use mailroom_store::index::{self, NewFolder, NewMessage};
use mailroom_store::{Db, Store};
use mailroom_testkit::{TestApp, TestDb, app::spawn_on};

use crate::Args;

/// How long one round may take before it counts as failed.
const ROUND_DEADLINE: Duration = Duration::from_secs(600);

/// One indexed message an event can announce.
struct Indexed {
    account_id: String,
    email_id: String,
    message_id: String,
    subject: String,
    from: Attendee,
    to: Attendee,
    date_ms: i64,
}

/// One round's figures.
struct Round {
    /// Deliveries per second, from the commit (or the first request sent) to the last received.
    rate: f64,
    wall: Duration,
    /// What arrived, in order (the baseline's payloads).
    hits: Vec<Hit>,
}

pub async fn run(rig: &Rig, args: &Args) -> anyhow::Result<String> {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n### throughput: {} `mail_received` deliveries per round over {} accounts to a local \
         receiver; mailroom (64 attempts at once, 8 per host) vs. a plain keep-alive client with \
         8 workers posting the same signed bodies; rounds alternate, two each\n",
        args.events, args.accounts
    );
    let _ = writeln!(
        out,
        "| backend | mailroom deliveries/s (rounds) | plain client deliveries/s (rounds) | ratio | \
         mailroom s per round | machine busy before |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|");
    let mut failures = 0;
    for b in args.backends() {
        if let Err(e) = one_backend(rig, args, b, &mut out).await {
            failures += 1;
            println!("  throughput ({}) did not run: {e:#}", b.label());
            let _ = writeln!(out, "| {} | did not run: {e} | | | | |", b.label());
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
    let Some(db) = TestDb::new(b.backend()).await else {
        bail!("{} is unavailable", b.label());
    };
    let app = spawn_on(db, |s| {
        s.log = "warn".into();
        // Production delivery settings; only private targets allowed (the receiver is local).
        s.webhooks = WebhookConfig {
            allow_private: true,
            ..WebhookConfig::default()
        };
    })
    .await;
    let per_host = WebhookConfig::default().per_host;

    let mut accounts = Vec::new();
    for _ in 0..args.accounts {
        let user = rig.rig.create_user();
        let (status, created) = app
            .post_json("/api/v1/accounts", &rig.rig.account_body(&user))
            .await;
        if status != 201 {
            bail!("linking an account failed ({status}): {created}");
        }
        accounts.push(
            created["account_id"]
                .as_str()
                .context("account_id")?
                .to_owned(),
        );
    }
    let messages = fill(&app, &accounts, args.events).await?;
    println!(
        "  throughput ({}): {} accounts linked, {} messages indexed",
        b.label(),
        accounts.len(),
        messages.len()
    );

    let receiver = Receiver::start().await?;
    let (status, created) = app
        .post_json(
            "/api/v1/webhooks",
            &json!({
                "source": "email",
                "request_url": receiver.url("/hook"),
                "events": ["mail_received"],
                "name": "bench",
            }),
        )
        .await;
    if status != 201 {
        bail!("creating the webhook failed ({status}): {created}");
    }
    let secret = SecretString::from(
        created["secret"]
            .as_str()
            .context("the webhook's secret")?
            .to_owned(),
    );

    // One unmeasured round of each first (connections, caches, the receiver's allocations).
    let warm = mailroom_round(&app, &receiver, &messages, "warm", 200).await?;
    plain_round(&receiver, &warm.hits, &secret, per_host).await?;

    let busy = machine_busy_now().await;
    let mut ours = Vec::new();
    let mut plain = Vec::new();
    for r in 0..2 {
        let m =
            mailroom_round(&app, &receiver, &messages, &format!("r{r}"), messages.len()).await?;
        println!(
            "  throughput ({}): mailroom round {r}: {} deliveries in {:.2} s, {:.0}/s",
            b.label(),
            m.hits.len(),
            m.wall.as_secs_f64(),
            m.rate
        );
        let p = plain_round(&receiver, &m.hits, &secret, per_host).await?;
        println!(
            "  throughput ({}): plain client round {r}: {} posts in {:.2} s, {:.0}/s",
            b.label(),
            p.hits.len(),
            p.wall.as_secs_f64(),
            p.rate
        );
        ours.push(m);
        plain.push(p);
    }
    let mean = |v: &[Round]| v.iter().map(|r| r.rate).sum::<f64>() / v.len() as f64;
    let list = |v: &[Round]| {
        v.iter()
            .map(|r| format!("{:.0}", r.rate))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (m, p) = (mean(&ours), mean(&plain));
    println!(
        "  throughput ({}): mailroom {m:.0}/s, plain client {p:.0}/s, ratio {:.2}",
        b.label(),
        m / p
    );
    let _ = writeln!(
        out,
        "| {} | {m:.0} ({}) | {p:.0} ({}) | {:.2} | {} | {} |",
        b.label(),
        list(&ours),
        list(&plain),
        m / p,
        ours.iter()
            .map(|r| format!("{:.2}", r.wall.as_secs_f64()))
            .collect::<Vec<_>>()
            .join(", "),
        busy.map_or("?".into(), |b| format!("{:.0} %", b * 100.0))
    );
    app.stop().await;
    Ok(())
}

/// Indexes `n` messages spread over `accounts` (one INBOX each), 100 to a transaction as the
/// sync writes them.
async fn fill(app: &TestApp, accounts: &[String], n: usize) -> anyhow::Result<Vec<Indexed>> {
    let now = now_ms();
    let mut folders = Vec::new();
    for account_id in accounts {
        let f = index::upsert_folder(
            &app.store,
            NewFolder {
                id: &new_id(),
                workspace_id: &app.workspace,
                account_id,
                name: "INBOX",
                role: FolderRole::Inbox,
                provider_id: "INBOX",
                now_ms: now,
            },
        )
        .await?;
        folders.push(f.id);
    }
    let mut out = Vec::with_capacity(n);
    let mut tx = app.store.begin_write().await?;
    for i in 0..n {
        let a = i % accounts.len();
        let from = Attendee {
            identifier: format!("sender{}@bench.example", i % 97),
            display_name: Some(format!("Sender {}", i % 97)),
        };
        let to = Attendee {
            identifier: format!("user{a}@bench.example"),
            display_name: None,
        };
        let subject = format!("Invoice {i} for the quarter, as discussed");
        let message_id = format!("<wh.{i}@bench.example>");
        // A mail of about 3 KB: what a CRM's notification or a short reply weighs.
        let text = "Hello, please find the figures for this quarter below. ".repeat(25);
        let html = format!("<html><body><p>{text}</p><p>Regards,<br>Sender</p></body></html>");
        let headers = [
            Header {
                name: "Subject".into(),
                value: subject.clone(),
            },
            Header {
                name: "Message-ID".into(),
                value: message_id.clone(),
            },
        ];
        let id = new_id();
        let date_ms = now - (n - i) as i64 * 1000;
        index::upsert_message_in(
            &mut tx,
            NewMessage {
                id: &id,
                workspace_id: &app.workspace,
                account_id: &accounts[a],
                provider_id: &format!("1:{}@INBOX", i + 1),
                message_id: Some(&message_id),
                in_reply_to: None,
                references: &[],
                thread_id: &id,
                subject: &subject,
                from: Some(&from),
                to: std::slice::from_ref(&to),
                cc: &[],
                bcc: &[],
                reply_to: &[],
                date: date_ms,
                read: false,
                size: (text.len() + html.len() + 600) as i64,
                has_attachments: false,
                attachments: &[],
                body_html: Some(&html),
                body_text: Some(&text),
                headers: Some(&headers),
                origin: MailOrigin::External,
                tracking_id: None,
                folder: Some((&folders[a], Some(i as i64 + 1))),
                now_ms: now,
            },
        )
        .await?;
        out.push(Indexed {
            account_id: accounts[a].clone(),
            email_id: id,
            message_id,
            subject,
            from,
            to,
            date_ms,
        });
        if i % 100 == 99 {
            tx.commit().await?;
            tx = app.store.begin_write().await?;
        }
    }
    tx.commit().await?;
    Ok(out)
}

/// The `mail_received` payload the IMAP sync stores for `m` (headers only).
fn payload(m: &Indexed, uid: usize) -> Value {
    json!({
        "event": "mail_received",
        "account_id": m.account_id,
        "email_id": m.email_id,
        "date": time_fmt::format_ms(m.date_ms),
        "from_attendee": m.from,
        "to_attendees": [m.to],
        "cc_attendees": [],
        "bcc_attendees": [],
        "reply_to_attendees": [],
        "provider_id": format!("1:{uid}@INBOX"),
        "message_id": m.message_id,
        "subject": m.subject,
        "has_attachments": false,
        "attachments": [],
        "folders": ["INBOX"],
        "role": "inbox",
        "read_date": Value::Null,
        "in_reply_to": Value::Null,
        "origin": "external",
        "tracking_id": Value::Null,
    })
}

/// Records the first `n` messages' events in one transaction, then waits for their deliveries.
async fn mailroom_round(
    app: &TestApp,
    receiver: &Receiver,
    messages: &[Indexed],
    round: &str,
    n: usize,
) -> anyhow::Result<Round> {
    receiver.take();
    let store: &Store = &app.store;
    let mut tx = store.begin_write().await?;
    let now = now_ms();
    for (i, m) in messages.iter().take(n).enumerate() {
        events::record_in(
            Db::Tx(&mut tx),
            NewEvent {
                id: events::event_id(&["mail_received", &m.account_id, round, &m.message_id]),
                workspace_id: &app.workspace,
                account_id: Some(&m.account_id),
                kind: "mail_received",
                payload: payload(m, i + 1),
                now_ms: now,
            },
        )
        .await?;
    }
    tx.commit().await?;
    let start = Instant::now();
    wait_for(receiver, n, start).await?;
    let hits = receiver.take();
    let wall = hits.iter().map(|h| h.at).max().context("no hit")? - start;
    Ok(Round {
        rate: hits.len() as f64 / wall.as_secs_f64(),
        wall,
        hits,
    })
}

/// Posts the bodies of `delivered` again, signed afresh, from `workers` workers.
async fn plain_round(
    receiver: &Receiver,
    delivered: &[Hit],
    secret: &SecretString,
    workers: usize,
) -> anyhow::Result<Round> {
    receiver.take();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(workers)
        .timeout(Duration::from_secs(30))
        .build()?;
    let url: Arc<str> = receiver.url("/hook").into();
    let work: Arc<Vec<Hit>> = Arc::new(delivered.to_vec());
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let (client, url, work, next, secret) = (
            client.clone(),
            url.clone(),
            work.clone(),
            next.clone(),
            secret.clone(),
        );
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(h) = work.get(i) else {
                    return anyhow::Ok(());
                };
                let ts = now_ms() / 1000;
                let signature =
                    sign::signature_header(std::slice::from_ref(&secret), &h.id, ts, &h.body);
                let r = client
                    .post(&*url)
                    .header("content-type", "application/json")
                    .header("webhook-id", &h.id)
                    .header("webhook-timestamp", ts.to_string())
                    .header("webhook-signature", signature)
                    .body(h.body.clone())
                    .send()
                    .await?;
                if !r.status().is_success() {
                    bail!("the receiver answered {}", r.status());
                }
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    let hits = receiver.take();
    let wall = hits.iter().map(|h| h.at).max().context("no hit")? - start;
    Ok(Round {
        rate: hits.len() as f64 / wall.as_secs_f64(),
        wall,
        hits,
    })
}

/// Waits (polling every 2 ms) until `n` requests arrived.
async fn wait_for(receiver: &Receiver, n: usize, start: Instant) -> anyhow::Result<()> {
    loop {
        let got = receiver.count();
        if got >= n {
            return Ok(());
        }
        if start.elapsed() > ROUND_DEADLINE {
            bail!("{got} of {n} deliveries within {ROUND_DEADLINE:?}");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}
