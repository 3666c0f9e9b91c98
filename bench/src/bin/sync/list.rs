//! `list`: `GET /api/v1/emails?account_id=…&limit=100` (and with `search`) on a 100,000-message
//! index, served by a `mailroom serve` process of the release build, under C concurrent
//! connections; baseline in the same run: `GET /healthz` (the server's ceiling) and
//! `GET /api/v1/accounts` (API key check + one small query) under the same load.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};

use mailroom_core::email::Attendee;
use mailroom_core::mail::{AttachmentMeta, FolderRole, Header, MailOrigin};
use mailroom_core::{Clock as _, SystemClock, new_id};
use mailroom_store::index::{self, NewFolder, NewMessage};
use mailroom_testkit::{TestApp, TestDb, app::spawn_on};

use crate::Args;
use crate::initial::{NAMES, sentence};
use mailroom_bench::load::{self, Load, Server};
use mailroom_bench::{BackendArg, Rig, machine_busy_now};

/// A word in about one message of a thousand (the rare search).
const RARE: &str = "zanzibar";
/// A word in most subjects and bodies (the common search).
const COMMON: &str = "invoice";

const FOLDERS: &[(&str, FolderRole)] = &[
    ("INBOX", FolderRole::Inbox),
    ("Archive", FolderRole::Archive),
    ("Sent", FolderRole::Sent),
    ("Projects", FolderRole::Unknown),
];

/// Fills the index of a new account with `n` messages through `index::upsert_message_in`, the
/// sync's own write, 100 to a transaction as the sync does (`tasks` writers at once).
async fn fill(app: &TestApp, account_id: &str, n: usize, tasks: usize) -> anyhow::Result<Duration> {
    let start = Instant::now();
    let now = SystemClock.now_ms();
    let mut folder_ids = Vec::new();
    for (name, role) in FOLDERS {
        let f = index::upsert_folder(
            &app.store,
            NewFolder {
                id: &new_id(),
                workspace_id: &app.workspace,
                account_id,
                name,
                role: *role,
                provider_id: name,
                now_ms: now,
            },
        )
        .await?;
        folder_ids.push(f.id);
    }
    let mut handles = Vec::new();
    for t in 0..tasks {
        let store = app.store.clone();
        let (ws, acc, folders) = (
            app.workspace.clone(),
            account_id.to_owned(),
            folder_ids.clone(),
        );
        handles.push(tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(100 + t as u64);
            let mut i = t;
            // Written as the sync writes: a transaction per batch of 100.
            let mut tx = store.begin_write().await?;
            let mut in_tx = 0;
            while i < n {
                let folder = match rng.random_range(0..100) {
                    0..70 => 0,
                    70..85 => 1,
                    85..95 => 2,
                    _ => 3,
                };
                let k = rng.random_range(3..8);
                let mut subject = sentence(&mut rng, k);
                if i % 1000 == 7 {
                    subject.push(' ');
                    subject.push_str(RARE);
                }
                let words = rng.random_range(60..600);
                let body = sentence(&mut rng, words);
                let (fname, faddr) = NAMES[rng.random_range(0..NAMES.len())];
                let (tname, taddr) = NAMES[rng.random_range(0..NAMES.len())];
                let from = Attendee {
                    identifier: faddr.into(),
                    display_name: Some(fname.into()),
                };
                let to = [Attendee {
                    identifier: taddr.into(),
                    display_name: Some(tname.into()),
                }];
                let attach = rng.random_ratio(1, 5);
                let attachments = if attach {
                    vec![AttachmentMeta {
                        id: "1".into(),
                        name: format!("report-{i}.pdf"),
                        size: rng.random_range(10_000..400_000),
                        mime: "application/pdf".into(),
                        cid: None,
                        part: Some("2".into()),
                    }]
                } else {
                    vec![]
                };
                let mid = format!("<list.{i}@bench.example>");
                let headers = [
                    Header {
                        name: "From".into(),
                        value: format!("{fname} <{faddr}>"),
                    },
                    Header {
                        name: "To".into(),
                        value: format!("{tname} <{taddr}>"),
                    },
                    Header {
                        name: "Subject".into(),
                        value: subject.clone(),
                    },
                    Header {
                        name: "Message-ID".into(),
                        value: mid.clone(),
                    },
                ];
                let provider_id = format!("1:{}@{}", i + 1, FOLDERS[folder].0);
                let id = new_id();
                let html = format!("<html><body><p>{body}</p></body></html>");
                index::upsert_message_in(
                    &mut tx,
                    NewMessage {
                        id: &id,
                        workspace_id: &ws,
                        account_id: &acc,
                        provider_id: &provider_id,
                        message_id: Some(&mid),
                        in_reply_to: None,
                        references: &[],
                        thread_id: &id,
                        subject: &subject,
                        from: Some(&from),
                        to: &to,
                        cc: &[],
                        bcc: &[],
                        reply_to: &[],
                        // One message a minute going back from now.
                        date: now - (n - i) as i64 * 60_000,
                        read: rng.random_ratio(7, 10),
                        size: (body.len() + html.len() + 800) as i64,
                        has_attachments: attach,
                        attachments: &attachments,
                        body_html: Some(&html),
                        body_text: Some(&body),
                        headers: Some(&headers),
                        origin: MailOrigin::External,
                        tracking_id: None,
                        folder: Some((&folders[folder], Some(i as i64 + 1))),
                        now_ms: now,
                    },
                )
                .await?;
                in_tx += 1;
                if in_tx == 100 {
                    tx.commit().await?;
                    tx = store.begin_write().await?;
                    in_tx = 0;
                }
                i += tasks;
            }
            tx.commit().await?;
            anyhow::Ok(())
        }));
    }
    for h in handles {
        h.await??;
    }
    Ok(start.elapsed())
}

struct Case {
    label: &'static str,
    path: String,
}

pub async fn run(rig: &Rig, args: &Args) -> anyhow::Result<String> {
    let n = args.list_messages;
    let backends = args.backends();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n### list: {n} messages in 4 folders of one account, {} connections, {} s per case \
         (after {} s unmeasured), load generator in the bench process\n",
        args.connections, args.seconds, args.warmup_seconds
    );
    let _ = writeln!(
        out,
        "| backend | route | req/s | p50 ms | p99 ms | max ms | errors | answer bytes | ratio to /healthz |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|");
    for b in backends {
        match one_backend(rig, args, b, &mut out).await {
            Ok(()) => {}
            Err(e) => {
                println!("  list ({}) did not run: {e:#}", b.label());
                let _ = writeln!(out, "| {} | did not run: {e} | | | | | | | |", b.label());
            }
        }
    }
    Ok(out)
}

async fn one_backend(
    rig: &Rig,
    args: &Args,
    b: BackendArg,
    out: &mut String,
) -> anyhow::Result<()> {
    let n = args.list_messages;
    let Some(db) = TestDb::new(b.backend()).await else {
        bail!("{} is unavailable", b.label());
    };
    let app = spawn_on(db, |s| s.log = "warn".into()).await;
    // An account of an empty rig mailbox: nothing for a sync to add to the index.
    let user = rig.rig.create_user();
    let mut body = rig.rig.account_body(&user);
    body["sync_limit"] = serde_json::json!("NO_HISTORY_SYNC");
    let (status, created) = app.post_json("/api/v1/accounts", &body).await;
    if status != 201 {
        bail!("linking the account failed ({status}): {created}");
    }
    let account_id = created["account_id"]
        .as_str()
        .context("account_id")?
        .to_owned();
    let tasks = match b {
        BackendArg::Sqlite => 1,
        BackendArg::Postgres => 4,
    };
    let took = fill(&app, &account_id, n, tasks).await?;
    // The planner's statistics as on a server that has been running (autovacuum analyzes a
    // table after enough writes, within minutes; a first sync runs ANALYZE itself): without
    // them PostgreSQL plans the list queries for an empty table.
    mailroom_store::index::refresh_statistics(&app.store).await?;
    println!(
        "  list ({}): {n} messages indexed through upsert_message_in in {:.1} s",
        b.label(),
        took.as_secs_f64()
    );
    let (key, url) = (app.api_key.clone(), app.db.url.clone());
    let db = app.stop().await;
    let server = Server::start(&url).await?;
    let base = server.base_url.clone();
    let cases = [
        Case {
            label: "GET /healthz (baseline)",
            path: "/healthz".into(),
        },
        Case {
            label: "GET /api/v1/accounts (baseline)",
            path: "/api/v1/accounts".into(),
        },
        Case {
            label: "GET /api/v1/emails limit=100",
            path: format!("/api/v1/emails?account_id={account_id}&limit=100"),
        },
        Case {
            label: "… &meta_only=true",
            path: format!("/api/v1/emails?account_id={account_id}&limit=100&meta_only=true"),
        },
        Case {
            label: "… &search= a rare word",
            path: format!("/api/v1/emails?account_id={account_id}&limit=100&search={RARE}"),
        },
        Case {
            label: "… &search= a common word",
            path: format!("/api/v1/emails?account_id={account_id}&limit=100&search={COMMON}"),
        },
    ];
    let busy = machine_busy_now().await;
    println!(
        "  list ({}): mailroom serve pid {}, RSS {:.1} MB, machine {} busy before",
        b.label(),
        server.pid(),
        server.rss().unwrap_or(0) as f64 / 1e6,
        busy.map_or("?".into(), |b| format!("{:.0} %", b * 100.0))
    );
    let mut ceiling = None;
    for c in &cases {
        let l: Load = load::drive(
            &format!("{base}{}", c.path),
            &key,
            args.connections,
            Duration::from_secs(args.warmup_seconds),
            Duration::from_secs(args.seconds),
        )
        .await?;
        let rate = l.rate();
        let ceiling_rate = *ceiling.get_or_insert(rate);
        println!(
            "  list ({}): {}: {:.0} req/s, p50 {:.1} ms, p99 {:.1} ms, {} errors{}",
            b.label(),
            c.label,
            rate,
            l.p(0.5),
            l.p(0.99),
            l.errors,
            l.first_error
                .as_deref()
                .map_or(String::new(), |e| format!(" (first: {e})"))
        );
        let _ = writeln!(
            out,
            "| {} | {} | {rate:.0} | {:.1} | {:.1} | {:.1} | {} | {} | {:.2} |",
            b.label(),
            c.label,
            l.p(0.5),
            l.p(0.99),
            l.p(1.0),
            l.errors,
            l.body_bytes,
            rate / ceiling_rate
        );
    }
    drop(server);
    drop(db);
    Ok(())
}
