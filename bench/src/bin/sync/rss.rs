//! `rss`: the resident set (VmRSS) of `mailroom serve` (release, default settings, sync on).
//!
//! - **No account**: a fresh, migrated database, 1 s and 5 s after the process answered
//!   /healthz (target < 30 MB).
//! - **N idle IMAP accounts** (`--accounts`, default 1,000; target < 100 KB per account): on
//!   another fresh database and process, N rig users (empty mailboxes) linked through
//!   `POST /api/v1/accounts` (`--link-parallel` at once, default 8; each link verifies the
//!   IMAP and SMTP logins), in three steps (N/10, N/2, N). After each step: wait until every
//!   account's source is `OK` and the process holds at least one established connection to
//!   the rig's IMAP port per account (its push watch: NOTIFY inside IDLE), then 35 s more so
//!   the pooled command sessions of the first passes are logged out (`IDLE_TTL`, 30 s), then
//!   read VmRSS. Reported: total RSS, RSS minus the no-account figure of the same backend, that
//!   per account, and the process's IMAP connections per account.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::bail;
use futures_util::StreamExt as _;

use mailroom_testkit::{TestDb, app::spawn_on};

use crate::Args;
use mailroom_bench::api::{self, Api};
use mailroom_bench::load::{Server, rss_of};
use mailroom_bench::{BackendArg, Rig, machine_busy_now};

/// How long the pooled sessions of a pass stay logged in (`session_pool::IDLE_TTL`), plus room.
const SETTLE: Duration = Duration::from_secs(35);
/// How long a step may take to have every account OK and watching.
const STEP_DEADLINE: Duration = Duration::from_secs(600);

pub async fn run(rig: &Rig, args: &Args) -> anyhow::Result<String> {
    let backends = args.backends();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n### rss: idle `mailroom serve` (release), no account, VmRSS after 1 s and after 5 s\n"
    );
    let _ = writeln!(out, "| backend | RSS 1 s MB | RSS 5 s MB |");
    let _ = writeln!(out, "|---|---|---|");
    let mut idle = Vec::new();
    for &b in &backends {
        let Some(db) = TestDb::new(b.backend()).await else {
            bail!("{} is unavailable", b.label());
        };
        // Migrated by an in-process app first, so the process measured starts on a ready database.
        let app = spawn_on(db, |s| s.log = "warn".into()).await;
        let url = app.db.url.clone();
        let db = app.stop().await;
        let server = Server::start(&url).await?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let early = server.rss().unwrap_or(0);
        tokio::time::sleep(Duration::from_secs(4)).await;
        let late = server.rss().unwrap_or(0);
        println!(
            "  rss ({}): {:.1} MB after 1 s, {:.1} MB after 5 s",
            b.label(),
            early as f64 / 1e6,
            late as f64 / 1e6
        );
        let _ = writeln!(
            out,
            "| {} | {:.1} | {:.1} |",
            b.label(),
            early as f64 / 1e6,
            late as f64 / 1e6
        );
        idle.push((b, late));
        drop(server);
        drop(db);
    }
    if args.accounts == 0 {
        return Ok(out);
    }
    let _ = writeln!(
        out,
        "\n### rss: `mailroom serve` with N idle IMAP accounts (rig users, push watch open), \
         VmRSS {} s after every account was OK and watching\n",
        SETTLE.as_secs()
    );
    let _ = writeln!(
        out,
        "| backend | accounts | RSS MB | RSS − no-account MB | KB per account | IMAP connections \
         | per account | threads | link + OK s |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|");
    let mut failures = 0;
    for (b, base) in idle {
        if let Err(e) = with_accounts(rig, args, b, base, &mut out).await {
            failures += 1;
            println!("  rss ({}) with accounts did not run: {e:#}", b.label());
            let _ = writeln!(out, "| {} | did not run: {e} | | | | | | | |", b.label());
        }
    }
    if failures > 0 {
        println!("{out}");
        bail!("the accounts case did not run on {failures} backend(s)");
    }
    Ok(out)
}

/// The steps at which RSS is read: a tenth, half and all of `n`.
fn steps(n: usize) -> Vec<usize> {
    let mut s: Vec<usize> = [n / 10, n / 2, n].into_iter().filter(|&k| k > 0).collect();
    s.dedup();
    s
}

async fn with_accounts(
    rig: &Rig,
    args: &Args,
    b: BackendArg,
    base_rss: u64,
    out: &mut String,
) -> anyhow::Result<()> {
    let opts = args.server_options("rss", b);
    let s = api::serve(b, &opts).await?;
    let pid = s.server.pid();
    println!(
        "  rss ({}): mailroom serve pid {pid}, fd limit {}",
        b.label(),
        fd_limit(pid).unwrap_or_else(|| "?".into())
    );
    let mut accounts: Vec<String> = Vec::new();
    let mut ok: HashSet<String> = HashSet::new();
    for target in steps(args.accounts) {
        let started = Instant::now();
        let users: Vec<_> = (accounts.len()..target)
            .map(|_| rig.rig.create_user())
            .collect();
        let linked: Vec<anyhow::Result<String>> = futures_util::stream::iter(users)
            .map(|u| {
                let api = s.api.clone();
                let body = rig.rig.account_body(&u);
                async move { api.link(&body).await }
            })
            .buffer_unordered(args.link_parallel.max(1))
            .collect()
            .await;
        let mut link_failures = 0;
        for r in linked {
            match r {
                Ok(id) => accounts.push(id),
                Err(e) => {
                    if link_failures == 0 {
                        println!("  rss ({}): a link failed: {e:#}", b.label());
                    }
                    link_failures += 1;
                }
            }
        }
        if link_failures > 0 {
            bail!("{link_failures} of {target} links failed");
        }
        let link_s = started.elapsed().as_secs_f64();
        wait_all_ok(&s.api, &accounts, &mut ok, args.link_parallel.max(1)).await?;
        let ok_s = started.elapsed().as_secs_f64();
        let imap_port = rig.rig.imap_port;
        let t = Instant::now();
        loop {
            let c = imap_connections(pid, imap_port);
            if c >= accounts.len() {
                break;
            }
            if t.elapsed() > STEP_DEADLINE {
                bail!(
                    "{} accounts but only {c} IMAP connections after {:?}",
                    accounts.len(),
                    STEP_DEADLINE
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let watching_s = started.elapsed().as_secs_f64();
        println!(
            "  rss ({}): {} accounts: linked after {link_s:.1} s, all OK after {ok_s:.1} s, \
             one IMAP connection each after {watching_s:.1} s; RSS {:.1} MB; settling {} s",
            b.label(),
            accounts.len(),
            rss_of(pid).unwrap_or(0) as f64 / 1e6,
            SETTLE.as_secs()
        );
        tokio::time::sleep(SETTLE).await;
        let busy = machine_busy_now().await;
        let rss = rss_of(pid).unwrap_or(0);
        let conns = imap_connections(pid, imap_port);
        let threads = threads_of(pid).unwrap_or(0);
        let n = accounts.len();
        let extra = rss.saturating_sub(base_rss);
        let per_kb = extra as f64 / 1024.0 / n as f64;
        println!(
            "  rss ({}): {n} accounts: RSS {:.1} MB ({:.1} MB over no account, {per_kb:.1} KB per \
             account), {conns} IMAP connections ({:.2} per account), {threads} threads, \
             Dovecot imap-login/imap processes {:?}, machine {} busy",
            b.label(),
            rss as f64 / 1e6,
            extra as f64 / 1e6,
            conns as f64 / n as f64,
            dovecot_processes(),
            busy.map_or("?".into(), |b| format!("{:.0} %", b * 100.0))
        );
        let _ = writeln!(
            out,
            "| {} | {n} | {:.1} | {:.1} | {per_kb:.1} | {conns} | {:.2} | {threads} | {ok_s:.0} |",
            b.label(),
            rss as f64 / 1e6,
            extra as f64 / 1e6,
            conns as f64 / n as f64,
        );
    }
    let api::Served { server, db, .. } = s;
    drop(server);
    drop(db);
    Ok(())
}

/// Waits until every account in `accounts` is `OK` (those in `ok` already were).
async fn wait_all_ok(
    api: &Api,
    accounts: &[String],
    ok: &mut HashSet<String>,
    parallel: usize,
) -> anyhow::Result<()> {
    let start = Instant::now();
    loop {
        let pending: Vec<String> = accounts
            .iter()
            .filter(|a| !ok.contains(*a))
            .cloned()
            .collect();
        if pending.is_empty() {
            return Ok(());
        }
        let statuses: Vec<(String, Option<String>)> = futures_util::stream::iter(pending)
            .map(|a| {
                let api = api.clone();
                async move {
                    let s = api.source_status(&a).await;
                    (a, s)
                }
            })
            .buffer_unordered(parallel)
            .collect()
            .await;
        let mut other = std::collections::BTreeMap::<String, usize>::new();
        for (a, s) in statuses {
            if s.as_deref() == Some("OK") {
                ok.insert(a);
            } else {
                *other.entry(s.unwrap_or_else(|| "?".into())).or_default() += 1;
            }
        }
        if other.is_empty() {
            return Ok(());
        }
        if start.elapsed() > STEP_DEADLINE {
            bail!("accounts not OK after {STEP_DEADLINE:?}: {other:?}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Established TCP connections of `pid` to `port` (the socket inodes among its file
/// descriptors, looked up in its network namespace's /proc/PID/net/tcp).
pub fn imap_connections(pid: u32, port: u16) -> usize {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return 0;
    };
    let inodes: HashSet<String> = fds
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|l| {
            let l = l.to_string_lossy().into_owned();
            Some(l.strip_prefix("socket:[")?.strip_suffix(']')?.to_owned())
        })
        .collect();
    let mut n = 0;
    for table in ["tcp", "tcp6"] {
        let Ok(t) = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")) else {
            continue;
        };
        for line in t.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 10 || f[3] != "01" {
                continue;
            }
            let remote_port = f[2]
                .rsplit(':')
                .next()
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            if remote_port == Some(port) && inodes.contains(f[9]) {
                n += 1;
            }
        }
    }
    n
}

fn threads_of(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))?
        .trim()
        .parse()
        .ok()
}

/// The soft limit on open files of `pid`.
fn fd_limit(pid: u32) -> Option<String> {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3).map(str::to_owned)
}

/// (imap-login, imap) processes on the machine.
fn dovecot_processes() -> (usize, usize) {
    let (mut login, mut imap) = (0, 0);
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            if let Ok(comm) = std::fs::read_to_string(e.path().join("comm")) {
                match comm.trim() {
                    "imap-login" => login += 1,
                    "imap" => imap += 1,
                    _ => {}
                }
            }
        }
    }
    (login, imap)
}
