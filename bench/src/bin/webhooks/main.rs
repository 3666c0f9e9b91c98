//! `bench/webhooks`: the webhook stream's benchmarks (issue 10), each against a baseline
//! measured in the same run (DESIGN §5). Nothing is asserted; the exit code is non-zero only
//! when a case could not run. Run it through `bench/webhooks` (the script starts the mail rig);
//! `bench/README.md` explains the figures.
//!
//! - `throughput`: webhook deliveries per second to a local receiver vs. a plain HTTP client
//!   posting the same signed payloads to it (target ratio ≥ 0.7).
//! - `latency`: delivery into Dovecot → `mail_received` webhook received, p50/p99 over N
//!   deliveries (default 200; target p99 < 1 s), doveadm's own time as the baseline.

mod latency;
mod throughput;

use std::path::PathBuf;

use clap::{Parser, ValueEnum};

use mailroom_bench::{BackendArg, Rig, load};

#[derive(Parser, Debug)]
#[command(
    name = "webhooks",
    about = "The webhook stream's benchmarks: deliveries per second vs. a plain client, \
             delivery-to-webhook latency"
)]
pub struct Args {
    /// What to run.
    #[arg(long, value_enum, default_value_t = Scenario::All)]
    pub scenario: Scenario,
    /// Deliveries per round (`throughput`).
    #[arg(long, default_value_t = 5_000)]
    pub events: usize,
    /// Accounts the events are spread over (`throughput`): one delivery queue each.
    #[arg(long, default_value_t = 50)]
    pub accounts: usize,
    /// Deliveries into Dovecot (`latency`).
    #[arg(long, default_value_t = 200)]
    pub deliveries: usize,
    /// `MAILROOM_LOG` of the `mailroom serve` process of `latency` (default warn).
    #[arg(long)]
    pub server_log: Option<String>,
    /// Write that process's log to a file in this directory (else to the bench's stderr).
    #[arg(long)]
    pub server_log_dir: Option<PathBuf>,
    /// Only this backend (default: SQLite, then PostgreSQL).
    #[arg(long, value_enum)]
    pub backend: Option<BackendArg>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    Throughput,
    Latency,
    All,
}

impl Args {
    /// The backends to run: the one asked for, else SQLite then PostgreSQL.
    pub fn backends(&self) -> Vec<BackendArg> {
        BackendArg::chosen(self.backend)
    }

    /// How `mailroom serve` is started for `scenario` on backend `b`.
    pub fn server_options(&self, scenario: &str, b: BackendArg) -> load::ServerOptions {
        load::ServerOptions {
            log: self.server_log.clone(),
            log_file: self
                .server_log_dir
                .as_ref()
                .map(|d| d.join(format!("webhooks-{scenario}-{}.log", b.label()))),
            env: vec![],
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    mailroom_server::telemetry::init(
        &std::env::var("BENCH_LOG").unwrap_or_else(|_| "warn".into()),
        false,
    );
    mailroom_server::app::install_crypto_provider();
    let rig = Rig::from_env("bench/webhooks")?;
    let mut summary = String::new();
    let mut failed = 0;
    let scenarios = match args.scenario {
        Scenario::All => vec![Scenario::Throughput, Scenario::Latency],
        s => vec![s],
    };
    for s in scenarios {
        let r = match s {
            Scenario::Throughput | Scenario::All => throughput::run(&rig, &args).await,
            Scenario::Latency => latency::run(&rig, &args).await,
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
