//! `rss`: the resident set (VmRSS) of an idle `mailroom serve` (release) with no account, on
//! each backend, 1 s and 5 s after it answered /healthz. No baseline: the figure stands against
//! the target (< 30 MB with no account). The 1,000-account case is not built yet.

use std::fmt::Write as _;
use std::time::Duration;

use anyhow::bail;

use mailroom_testkit::{TestDb, app::spawn_on};

use crate::load::Server;
use crate::{Args, BackendArg};

pub async fn run(args: &Args) -> anyhow::Result<String> {
    let backends = match args.backend {
        Some(b) => vec![b],
        None => vec![BackendArg::Sqlite, BackendArg::Postgres],
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n### rss: idle `mailroom serve` (release), no account, VmRSS after 1 s and after 5 s\n"
    );
    let _ = writeln!(out, "| backend | RSS 1 s MB | RSS 5 s MB |");
    let _ = writeln!(out, "|---|---|---|");
    for b in backends {
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
        drop(server);
        drop(db);
    }
    Ok(out)
}
