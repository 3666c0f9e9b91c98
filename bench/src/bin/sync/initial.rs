//! `initial`: the first sync of a generated mailbox into a fresh index (`sync_account_once`
//! in-process) vs. `mbsync` copying the same mailbox from the same Dovecot to a local Maildir,
//! and the database's bytes per indexed message.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use secrecy::SecretString;
use serde_json::json;

use mailroom_core::account::TlsMode;
use mailroom_engine::sync::imap::sync_account_once;
use mailroom_providers::imap_smtp::imap::{self, ImapLogin};
use mailroom_store::{Store, accounts};
use mailroom_testkit::{MailUser, TestApp, TestDb, app::spawn_on};

use crate::Args;
use mailroom_bench::{BackendArg, Rig, httpdate, machine_busy_now};

// ---------------------------------------------------------------------------------------------
// The generated mailbox
// ---------------------------------------------------------------------------------------------

pub const WORDS: &[&str] = &[
    "project",
    "meeting",
    "budget",
    "review",
    "quarter",
    "invoice",
    "design",
    "release",
    "customer",
    "contract",
    "schedule",
    "report",
    "deadline",
    "update",
    "proposal",
    "team",
    "numbers",
    "launch",
    "feedback",
    "agenda",
    "notes",
    "travel",
    "hiring",
    "roadmap",
    "draft",
    "support",
    "server",
    "migration",
    "holiday",
    "training",
    "the",
    "and",
    "for",
    "with",
    "we",
    "please",
    "thanks",
    "next",
    "week",
    "today",
    "could",
    "you",
    "have",
    "look",
    "at",
    "this",
    "before",
    "friday",
    "about",
    "our",
    "plan",
    "will",
    "send",
    "new",
    "version",
    "soon",
];

pub const NAMES: &[(&str, &str)] = &[
    ("Ann Lee", "ann.lee@example.com"),
    ("Bob Martin", "bob@partner.example.org"),
    ("Chloé Durand", "chloe.durand@example.fr"),
    ("Dev Patel", "dev@startup.example.io"),
    ("Eva Novak", "eva.novak@example.net"),
    ("Frank Miller", "frank@vendor.example.com"),
    ("Grace Hopper", "grace@navy.example.mil"),
    ("Hiro Tanaka", "hiro.tanaka@example.jp"),
];

/// Folders of the generated mailbox and the share of messages in each (Maildir++ names).
const FOLDERS: &[(&str, u32)] = &[("INBOX", 80), ("Archive", 15), ("Sent", 5)];

pub fn sentence(rng: &mut StdRng, words: usize) -> String {
    let mut s = String::new();
    for i in 0..words {
        if i > 0 {
            s.push(' ');
        }
        s.push_str(WORDS[rng.random_range(0..WORDS.len())]);
    }
    s
}

/// Text of about `bytes` bytes in lines of under 80 characters.
fn paragraphs(rng: &mut StdRng, bytes: usize) -> String {
    let mut s = String::with_capacity(bytes + 100);
    while s.len() < bytes {
        let n = rng.random_range(6..12);
        s.push_str(&sentence(rng, n));
        s.push_str(".\r\n");
        if rng.random_ratio(1, 6) {
            s.push_str("\r\n");
        }
    }
    s
}

fn base64_lines(data: &[u8]) -> String {
    use base64::Engine as _;
    let b = base64::engine::general_purpose::STANDARD.encode(data);
    let mut out = String::with_capacity(b.len() + b.len() / 76 * 2 + 2);
    for chunk in b.as_bytes().chunks(76) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push_str("\r\n");
    }
    out
}

/// One message: 2–50 KB (log-uniform), a fifth with an attachment, a third with an HTML
/// alternative, about 40 % replies to one of the 50 messages before it (a thread).
fn message(
    rng: &mut StdRng,
    run: &str,
    n: usize,
    date: SystemTime,
    subjects: &[String],
) -> Vec<u8> {
    let target = (2048.0 * 25f64.powf(rng.random::<f64>())) as usize;
    let (from_name, from) = NAMES[rng.random_range(0..NAMES.len())];
    let (to_name, to) = NAMES[rng.random_range(0..NAMES.len())];
    let reply_to =
        (n > 0 && rng.random_ratio(2, 5)).then(|| n - 1 - rng.random_range(0..n.min(50)));
    let subject = match reply_to {
        Some(p) => format!("Re: {}", subjects[p].trim_start_matches("Re: ")),
        None => {
            let k = rng.random_range(3..8);
            let mut s = sentence(rng, k);
            s[..1].make_ascii_uppercase();
            s
        }
    };
    let date = httpdate(date);
    let mut h = format!(
        "Return-Path: <{from}>\r\nFrom: {from_name} <{from}>\r\nTo: {to_name} <{to}>\r\n\
         Subject: {subject}\r\nDate: {date}\r\nMessage-ID: <{run}.{n}@bench.example>\r\n\
         MIME-Version: 1.0\r\n"
    );
    if let Some(p) = reply_to {
        let _ = write!(
            h,
            "In-Reply-To: <{run}.{p}@bench.example>\r\nReferences: <{run}.{p}@bench.example>\r\n"
        );
    }
    let attach = rng.random_ratio(1, 5);
    let html = rng.random_ratio(1, 3);
    let text_bytes = if attach {
        target / 4
    } else if html {
        target / 2
    } else {
        target
    };
    let text = paragraphs(rng, text_bytes.max(200));
    let mut body = String::new();
    let alt = if html {
        let html_body = format!(
            "<html><body><p>{}</p></body></html>\r\n",
            text.replace("\r\n\r\n", "</p>\r\n<p>")
        );
        format!(
            "Content-Type: multipart/alternative; boundary=\"alt-{n}\"\r\n\r\n--alt-{n}\r\n\
             Content-Type: text/plain; charset=utf-8\r\n\r\n{text}\r\n--alt-{n}\r\n\
             Content-Type: text/html; charset=utf-8\r\n\r\n{html_body}\r\n--alt-{n}--\r\n"
        )
    } else {
        format!("Content-Type: text/plain; charset=utf-8\r\n\r\n{text}")
    };
    if attach {
        let mut data = vec![0u8; (target * 3 / 4 / 4 * 3).max(512)];
        rng.fill(&mut data[..]);
        let _ = write!(
            h,
            "Content-Type: multipart/mixed; boundary=\"mix-{n}\"\r\n\r\n"
        );
        let _ = write!(
            body,
            "--mix-{n}\r\n{alt}\r\n--mix-{n}\r\nContent-Type: application/pdf; name=\"report-{n}.pdf\"\r\n\
             Content-Disposition: attachment; filename=\"report-{n}.pdf\"\r\n\
             Content-Transfer-Encoding: base64\r\n\r\n{}\r\n--mix-{n}--\r\n",
            base64_lines(&data)
        );
    } else {
        body = alt;
    }
    let mut out = h.into_bytes();
    out.extend_from_slice(body.as_bytes());
    out
}

/// What was generated.
struct Mailbox {
    messages: usize,
    /// Bytes of the message files.
    bytes: u64,
    /// Bytes of the whole Maildir after Dovecot indexed it (message files + Dovecot's indexes).
    on_disk: u64,
    took: Duration,
}

/// Writes `n` messages straight into `user`'s Maildir (the fastest honest way: no IMAP, no
/// LMTP, no doveadm process per message; Dovecot picks the files up as new mail), dated over
/// the last 29 days (the file's mtime is the INTERNALDATE), about 70 % of them `\Seen`, then
/// lets Dovecot index every folder so neither timed run pays for that.
fn generate_mailbox(rig: &Rig, user: &MailUser, n: usize) -> anyhow::Result<Mailbox> {
    let start = Instant::now();
    let root = rig.maildir(user);
    let mut rng = StdRng::seed_from_u64(8);
    let run = mailroom_testkit::token();
    let now = SystemTime::now();
    let span = Duration::from_secs(29 * 86_400);
    let mut subjects: Vec<String> = Vec::with_capacity(n);
    let mut bytes = 0u64;
    let dirs: Vec<PathBuf> = FOLDERS
        .iter()
        .map(|(name, _)| {
            if *name == "INBOX" {
                root.clone()
            } else {
                root.join(format!(".{name}"))
            }
        })
        .collect();
    for d in &dirs {
        for sub in ["cur", "new", "tmp"] {
            std::fs::create_dir_all(d.join(sub))?;
        }
        if *d != root {
            std::fs::write(d.join("maildirfolder"), b"")?;
        }
    }
    let total_share: u32 = FOLDERS.iter().map(|(_, s)| s).sum();
    let epoch = now.duration_since(UNIX_EPOCH)?.as_secs();
    for i in 0..n {
        let date = now - span + span.mul_f64(i as f64 / n.max(1) as f64);
        let raw = message(&mut rng, &run, i, date, &subjects);
        let subj = raw
            .split(|&b| b == b'\n')
            .find_map(|l| l.strip_prefix(b"Subject: "))
            .map(|s| String::from_utf8_lossy(s).trim().to_owned())
            .unwrap_or_default();
        subjects.push(subj);
        let mut pick = rng.random_range(0..total_share);
        let folder = FOLDERS
            .iter()
            .position(|(_, s)| {
                if pick < *s {
                    true
                } else {
                    pick -= s;
                    false
                }
            })
            .unwrap_or(0);
        let flags = if rng.random_ratio(7, 10) { "S" } else { "" };
        let name = format!("{epoch}.M{i}P1.bench,S={}:2,{flags}", raw.len());
        let path = dirs[folder].join("cur").join(name);
        std::fs::write(&path, &raw)?;
        std::fs::File::options()
            .write(true)
            .open(&path)?
            .set_modified(date)?;
        bytes += raw.len() as u64;
    }
    let home = rig.dir.join("mail").join(&user.address);
    let st = Command::new("chown")
        .args(["-R", "mail:mail"])
        .arg(&home)
        .status()?;
    if !st.success() {
        bail!("chown -R mail:mail {}", home.display());
    }
    // Dovecot builds its index of each folder on first access; do it now, unmeasured.
    let status = rig.doveadm(&[
        "mailbox",
        "status",
        "-u",
        &user.address,
        "messages vsize",
        "*",
    ])?;
    let counted: usize = status
        .lines()
        .filter_map(|l| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix("messages=")?.parse::<usize>().ok())
        })
        .sum();
    if counted != n {
        bail!("Dovecot sees {counted} messages, {n} were written:\n{status}");
    }
    Ok(Mailbox {
        messages: n,
        bytes,
        on_disk: du(&home),
        took: start.elapsed(),
    })
}

/// Bytes of the regular files under `dir`.
fn du(dir: &Path) -> u64 {
    let mut total = 0;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    for e in entries.flatten() {
        match e.file_type() {
            Ok(t) if t.is_dir() => total += du(&e.path()),
            Ok(t) if t.is_file() => total += e.metadata().map_or(0, |m| m.len()),
            _ => {}
        }
    }
    total
}

// ---------------------------------------------------------------------------------------------
// initial: the baseline (mbsync) and mailroom's first sync
// ---------------------------------------------------------------------------------------------

/// mbsync copying every folder of `user` into a fresh local Maildir (over STARTTLS, like the
/// account mailroom links). `fsync`: mbsync's default (`FSync yes`) or not.
fn mbsync(
    rig: &Rig,
    work: &Path,
    user: &MailUser,
    label: &str,
    fsync: bool,
) -> anyhow::Result<Duration> {
    let dir = work.join(format!("mbsync-{label}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("mail"))?;
    let conf = dir.join("mbsyncrc");
    std::fs::write(
        &conf,
        format!(
            "FSync {fsync}\n\n\
             IMAPAccount rig\nHost {host}\nPort {port}\nUser {user}\nPass \"{pass}\"\n\
             SSLType STARTTLS\nCertificateFile {cert}\nAuthMechs LOGIN\n\n\
             IMAPStore far\nAccount rig\n\n\
             MaildirStore near\nPath {mail}/\nInbox {mail}/INBOX\nSubFolders Verbatim\n\n\
             Channel bench\nFar :far:\nNear :near:\nPatterns *\nCreate Near\nSync Pull\n\
             SyncState *\nExpunge None\n",
            fsync = if fsync { "yes" } else { "no" },
            host = rig.rig.host,
            port = rig.rig.imap_port,
            user = user.address,
            pass = user.password,
            cert = rig.dir.join("cert.pem").display(),
            mail = dir.join("mail").display(),
        ),
    )?;
    let start = Instant::now();
    let out = Command::new("mbsync")
        .arg("-c")
        .arg(&conf)
        .args(["-q", "bench"])
        .output()
        .context("mbsync (Debian package isync)")?;
    let took = start.elapsed();
    if !out.status.success() {
        bail!(
            "mbsync failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let copied = count_files(&dir.join("mail"));
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "  mbsync ({label}, FSync {}): {copied} messages in {:.2} s",
        if fsync { "yes" } else { "no" },
        took.as_secs_f64()
    );
    Ok(took)
}

/// Message files (in `cur/` or `new/`) under a Maildir tree.
fn count_files(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let leaf = matches!(
        dir.file_name().and_then(|n| n.to_str()),
        Some("cur" | "new")
    );
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => count_files(&e.path()),
            Ok(t) if t.is_file() && leaf => 1,
            _ => 0,
        })
        .sum()
}

/// Where mailroom's time goes without the index: the same IMAP reads as a sync pass (batches
/// of 100 `UID FETCH (UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[])` through mailroom's
/// IMAP client, STARTTLS) timed apart from parsing every body with `mailroom_mime::parse_mail`.
async fn fetch_and_parse(
    rig: &Rig,
    user: &MailUser,
) -> anyhow::Result<(Duration, Duration, usize)> {
    let password = SecretString::from(user.password.clone());
    let login = ImapLogin {
        host: &rig.rig.host,
        port: rig.rig.imap_port,
        tls: TlsMode::Starttls,
        user: &user.address,
        password: &password,
    };
    let policy = mailroom_testkit::mail::test_net_policy();
    let start = Instant::now();
    let mut session = imap::login(&login, &policy).await?;
    let mut parse = Duration::ZERO;
    let mut n = 0;
    for (folder, _) in FOLDERS {
        let mb = session.examine(folder).await?;
        if mb.exists == 0 {
            continue;
        }
        let mut uids: Vec<u32> = session.uid_search("ALL").await?.into_iter().collect();
        uids.sort_unstable();
        for chunk in uids.chunks(mailroom_engine::sync::imap::BATCH) {
            let set = chunk
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(",");
            use futures_util::TryStreamExt as _;
            let fetches: Vec<_> = session
                .uid_fetch(&set, "(UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[])")
                .await?
                .try_collect()
                .await?;
            let p = Instant::now();
            for f in &fetches {
                if let Some(body) = f.body() {
                    std::hint::black_box(mailroom_mime::parse_mail(body));
                    n += 1;
                }
            }
            parse += p.elapsed();
        }
    }
    let _ = session.logout().await;
    Ok((start.elapsed() - parse, parse, n))
}

/// One backend's first sync and the database's size after it.
struct SyncRun {
    backend: BackendArg,
    took: Duration,
    indexed: usize,
    db_bytes: u64,
    index_bytes: Option<u64>,
}

async fn mailroom_initial(
    rig: &Rig,
    user: &MailUser,
    backend: BackendArg,
) -> anyhow::Result<SyncRun> {
    let Some(db) = TestDb::new(backend.backend()).await else {
        bail!("{} is unavailable", backend.label());
    };
    let app = spawn_on(db, |s| s.log = "warn".into()).await;
    let mut body = rig.rig.account_body(user);
    // Every message is inside the default 30-day window; the limit only makes that explicit.
    body["sync_limit"] = json!(1_000_000);
    let (status, created) = app.post_json("/api/v1/accounts", &body).await;
    if status != 201 {
        bail!("linking the account failed ({status}): {created}");
    }
    let id = created["account_id"]
        .as_str()
        .context("account_id")?
        .to_owned();
    let account = accounts::get_any(&app.store, &id)
        .await?
        .context("the linked account")?;
    let start = Instant::now();
    let report = sync_account_once(&app.engine, &account).await?;
    let took = start.elapsed();
    if !report.failed.is_empty() {
        bail!("folders failed: {:?}", report.failed);
    }
    let (db_bytes, index_bytes) = db_size(&app).await?;
    println!(
        "  mailroom ({}): {} messages indexed in {:.2} s ({} folders); database {:.1} MB",
        backend.label(),
        report.indexed,
        took.as_secs_f64(),
        report.folders,
        db_bytes as f64 / 1e6
    );
    let _ = app.stop().await;
    Ok(SyncRun {
        backend,
        took,
        indexed: report.indexed,
        db_bytes,
        index_bytes,
    })
}

/// (the whole database, the index tables alone when the backend can tell) in bytes.
/// SQLite: the file after a WAL checkpoint (the index is nearly all of it). PostgreSQL:
/// `pg_total_relation_size` (heap, TOAST and indexes) of the index's tables, and the database.
async fn db_size(app: &TestApp) -> anyhow::Result<(u64, Option<u64>)> {
    match &app.store {
        Store::Sqlite(pool) => {
            sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                .execute(pool)
                .await?;
            let total: u64 = app
                .db
                .sqlite_files()
                .iter()
                .map(|p| std::fs::metadata(p).map_or(0, |m| m.len()))
                .sum();
            Ok((total, None))
        }
        Store::Postgres(pool) => {
            let (index, total): (i64, i64) = sqlx::query_as(
                "SELECT COALESCE(SUM(pg_total_relation_size(c.oid)), 0)::BIGINT, \
                        pg_database_size(current_database()) \
                 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname = current_schema() AND c.relkind = 'r' \
                   AND (c.relname IN ('folders', 'messages', 'message_folders') \
                        OR c.relname LIKE '%fts%' OR c.relname LIKE '%search%')",
            )
            .fetch_one(pool)
            .await?;
            Ok((total as u64, Some(index as u64)))
        }
    }
}

pub async fn run(rig: &Rig, args: &Args, work: &Path) -> anyhow::Result<String> {
    let n = args.messages;
    println!("initial: generating a {n}-message mailbox");
    let user = rig.rig.create_user();
    let mb = generate_mailbox(rig, &user, n)?;
    println!(
        "  {} messages, {:.1} MB of message files ({:.1} KB average), {:.1} MB on disk with \
         Dovecot's indexes; written and indexed by Dovecot in {:.1} s",
        mb.messages,
        mb.bytes as f64 / 1e6,
        mb.bytes as f64 / mb.messages.max(1) as f64 / 1024.0,
        mb.on_disk as f64 / 1e6,
        mb.took.as_secs_f64()
    );
    // Unmeasured: one full read fills the page cache and Dovecot's cache file for everyone.
    mbsync(rig, work, &user, "warm-up", false)?;
    let busy = machine_busy_now().await;
    let mut base = vec![mbsync(rig, work, &user, "1", true)?];
    let mut base_nofsync = vec![mbsync(rig, work, &user, "1", false)?];
    let (fetch, parse, fetched) = fetch_and_parse(rig, &user).await?;
    println!(
        "  mailroom's IMAP client alone: {fetched} messages fetched in {:.2} s, parsed in {:.2} s",
        fetch.as_secs_f64(),
        parse.as_secs_f64()
    );
    let backends = args.backends();
    let mut runs = Vec::new();
    for b in backends {
        match mailroom_initial(rig, &user, b).await {
            Ok(r) => runs.push(r),
            Err(e) => println!("  mailroom ({}) did not run: {e:#}", b.label()),
        }
    }
    base.push(mbsync(rig, work, &user, "2", true)?);
    base_nofsync.push(mbsync(rig, work, &user, "2", false)?);
    let mean = |v: &[Duration]| v.iter().map(Duration::as_secs_f64).sum::<f64>() / v.len() as f64;
    let (mbs, mbs_nofsync) = (mean(&base), mean(&base_nofsync));

    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n### initial: {n} messages ({:.1} MB of mail, {:.1} MB Maildir with Dovecot's indexes); \
         machine {} busy before\n",
        mb.bytes as f64 / 1e6,
        mb.on_disk as f64 / 1e6,
        busy.map_or("?".into(), |b| format!("{:.0} %", b * 100.0))
    );
    let _ = writeln!(
        out,
        "mbsync: {mbs:.2} s (FSync yes), {mbs_nofsync:.2} s (FSync no), mean of a run before and \
         one after mailroom's; mailroom's IMAP client alone: fetch {:.2} s + parse {:.2} s\n",
        fetch.as_secs_f64(),
        parse.as_secs_f64()
    );
    let _ = writeln!(
        out,
        "| backend | indexed | mailroom s | msg/s | ratio vs mbsync | ratio vs mbsync FSync no | database MB | bytes / message | index tables bytes / message | mailbox bytes / message |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|");
    for r in &runs {
        let t = r.took.as_secs_f64();
        let per = |b: u64| b as f64 / r.indexed.max(1) as f64;
        let _ = writeln!(
            out,
            "| {} | {} | {t:.2} | {:.0} | **{:.2}** | {:.2} | {:.1} | {:.0} | {} | {:.0} |",
            r.backend.label(),
            r.indexed,
            r.indexed as f64 / t,
            t / mbs,
            t / mbs_nofsync,
            r.db_bytes as f64 / 1e6,
            per(r.db_bytes),
            r.index_bytes
                .map_or("–".into(), |b| format!("{:.0}", per(b))),
            mb.on_disk as f64 / mb.messages.max(1) as f64,
        );
    }
    Ok(out)
}
