//! `bench/sync`: the mail index's benchmarks (issue 8), each against a baseline measured in the
//! same run (DESIGN §5). Nothing is asserted; the exit code is non-zero only when a case could
//! not run. Run it through `bench/sync` (the script starts the mail rig and installs `mbsync`);
//! `bench/README.md` explains the figures.
//!
//! - `initial`: the first sync of a generated mailbox (10,000 messages by default) into a fresh
//!   index, through `sync_account_once` in-process, vs. `mbsync` copying the same mailbox from
//!   the same Dovecot into a local Maildir; plus the database's bytes per indexed message.
//! - `list`: `GET /api/v1/emails` (limit=100, and with search) on a large index served by a
//!   `mailroom serve` process, under load, against `/healthz` and `/api/v1/accounts`.
//! - `latency`: delivery (`doveadm save`) → stored `mail_received` event on a `mailroom serve`
//!   process, p50/p99 over N deliveries (default 200) into INBOX and into a folder created
//!   after the first pass; doveadm's own time as the baseline.
//! - `rss`: VmRSS of `mailroom serve` with no account, then with N linked IMAP accounts of
//!   rig users (default 1,000, measured at N/10, N/2 and N), each holding its push watch.

mod initial;
mod latency;
mod list;
mod rss;

use std::path::PathBuf;

use clap::{Parser, ValueEnum};

use mailroom_bench::{BackendArg, Rig, load};

#[derive(Parser, Debug)]
#[command(
    name = "sync",
    about = "The mail index's benchmarks: initial sync vs. mbsync, GET /emails under load, \
             delivery-to-event latency, RSS with and without accounts"
)]
pub struct Args {
    /// What to run.
    #[arg(long, value_enum, default_value_t = Scenario::Initial)]
    pub scenario: Scenario,
    /// Messages in the generated mailbox (`initial`).
    #[arg(long, default_value_t = 10_000)]
    pub messages: usize,
    /// Messages in the index (`list`).
    #[arg(long, default_value_t = 100_000)]
    pub list_messages: usize,
    /// Concurrent connections of the load generator (`list`).
    #[arg(long, default_value_t = 32)]
    pub connections: usize,
    /// Seconds measured per route (`list`).
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Seconds of unmeasured load before each route (`list`).
    #[arg(long, default_value_t = 2)]
    pub warmup_seconds: u64,
    /// Deliveries per folder (`latency`).
    #[arg(long, default_value_t = 200)]
    pub deliveries: usize,
    /// Linked IMAP accounts (`rss`; measured at a tenth, half and all of them).
    #[arg(long, default_value_t = 1000)]
    pub accounts: usize,
    /// Accounts linked at once (`rss`).
    #[arg(long, default_value_t = 8)]
    pub link_parallel: usize,
    /// `MAILROOM_LOG` of the `mailroom serve` processes of `latency` and `rss` (default warn),
    /// e.g. `warn,mailroom_engine=debug,mailroom_providers=debug`.
    #[arg(long)]
    pub server_log: Option<String>,
    /// Write those processes' logs to files in this directory (else to the bench's stderr).
    #[arg(long)]
    pub server_log_dir: Option<PathBuf>,
    /// Only this backend (default: SQLite, then PostgreSQL).
    #[arg(long, value_enum)]
    pub backend: Option<BackendArg>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    Initial,
    List,
    Latency,
    Rss,
    All,
}

impl Args {
    /// The backends to run: the one asked for, else SQLite then PostgreSQL.
    pub fn backends(&self) -> Vec<BackendArg> {
        BackendArg::chosen(self.backend)
    }

    /// How `mailroom serve` is started for `scenario` on backend `b`: the log filter asked for,
    /// its log kept in `--server-log-dir` as `<scenario>-<backend>.log`.
    pub fn server_options(&self, scenario: &str, b: BackendArg) -> load::ServerOptions {
        load::ServerOptions {
            log: self.server_log.clone(),
            log_file: self
                .server_log_dir
                .as_ref()
                .map(|d| d.join(format!("{scenario}-{}.log", b.label()))),
            env: vec![],
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    mailroom_server::telemetry::init("warn", false);
    mailroom_server::app::install_crypto_provider();
    let rig = Rig::from_env("bench/sync")?;
    let work = tempfile::tempdir()?;
    let mut summary = String::new();
    let mut failed = 0;
    let scenarios = match args.scenario {
        Scenario::All => vec![
            Scenario::Initial,
            Scenario::List,
            Scenario::Latency,
            Scenario::Rss,
        ],
        s => vec![s],
    };
    for s in scenarios {
        let r = match s {
            Scenario::Initial | Scenario::All => initial::run(&rig, &args, work.path()).await,
            Scenario::List => list::run(&rig, &args).await,
            Scenario::Latency => latency::run(&rig, &args).await,
            Scenario::Rss => rss::run(&rig, &args).await,
        };
        match r {
            Ok(table) => summary.push_str(&table),
            Err(e) => {
                failed += 1;
                println!("{s:?} did not run: {e:#}");
            }
        }
    }
    println!("{summary}");
    if failed > 0 {
        std::process::exit(1);
    }
    Ok(())
}
