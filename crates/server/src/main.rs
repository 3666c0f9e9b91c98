//! `mailroom`: serve the API, migrate the database, create API keys, rotate the vault.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use secrecy::ExposeSecret;

use mailroom_core::time_fmt::format_ms;
use mailroom_core::{Clock, SystemClock};
use mailroom_server::app::{ConfigProblem, install_crypto_provider, open_store, open_vault};
use mailroom_server::{Application, RawConfig, Settings, telemetry};
use mailroom_store::{api_keys, workspaces};

#[derive(Parser)]
#[command(name = "mailroom", version, about = "Self-hosted unified email API")]
struct Cli {
    /// Configuration file (optional; MAILROOM_* variables override it).
    #[arg(
        long,
        global = true,
        env = "MAILROOM_CONFIG",
        default_value = "mailroom.toml"
    )]
    config: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the API and the background workers.
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Manage API keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Manage the vault that seals credentials.
    Vault {
        #[command(subcommand)]
        command: VaultCommand,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Create an API key; the key is printed once, as the last line of stdout.
    Create {
        /// A label for the key.
        #[arg(long, default_value = "default")]
        name: String,
        /// The workspace the key belongs to (created if missing).
        #[arg(long, default_value = workspaces::DEFAULT_WORKSPACE)]
        workspace: String,
        /// What the key may do, comma-separated: `read` (GET routes but webhooks), `send`
        /// (sending and changing mail), `manage` (accounts, hosted links, webhooks).
        #[arg(long, default_value = "read,send,manage")]
        scopes: String,
        /// When the key stops working: an RFC 3339 date, or a number of days from now (`90d`).
        #[arg(long)]
        expires: Option<String>,
        /// Requests per second this key may make on each node (default: the server's
        /// `MAILROOM_API_RATE_PER_SECOND`).
        #[arg(long)]
        rate: Option<u32>,
        /// Bind the key to these accounts of its workspace, comma-separated ids: it sees
        /// nothing else (404) and cannot link new accounts. Default: every account.
        #[arg(long)]
        accounts: Option<String>,
    },
    /// List the keys (never their secrets): id, workspace, name, scopes, created, expires, last
    /// used, state, rate, accounts (`all`, or the ids the key is bound to).
    List {
        /// Only this workspace's keys.
        #[arg(long)]
        workspace: Option<String>,
    },
    /// Revoke a key: refused at once by every process serving this database.
    Revoke {
        /// The key's id (the part of the key before the dot).
        id: String,
    },
}

#[derive(Subcommand)]
enum VaultCommand {
    /// Make a new data key and re-seal every stored secret under it (safe while serving).
    Rotate,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match RawConfig::load(&cli.config).and_then(RawConfig::validate) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("mailroom: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    telemetry::init(&settings.log, settings.log_json);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mailroom: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command, settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.downcast_ref::<ConfigProblem>().is_some() => {
            eprintln!("mailroom: configuration error: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("mailroom: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, settings: Settings) -> anyhow::Result<()> {
    install_crypto_provider();
    let clock = SystemClock;
    // The first run of any command makes the embedded data directory whole: database and
    // master key together.
    settings
        .master_key()
        .map_err(|e| ConfigProblem(format!("{e:#}")))?;
    match command {
        Command::Serve => {
            let app = Application::build(&settings).await?;
            app.run_until(shutdown_signal()).await
        }
        Command::Migrate => {
            open_store(&settings).await?;
            println!("migrations applied");
            Ok(())
        }
        Command::Keys {
            command:
                KeysCommand::Create {
                    name,
                    workspace,
                    scopes,
                    expires,
                    rate,
                    accounts,
                },
        } => {
            let accounts = accounts.as_deref().map(account_list).transpose()?;
            let now = clock.now_ms();
            let scopes = api_keys::Scopes::parse(&scopes).map_err(ConfigProblem)?;
            let expires_at = expires
                .as_deref()
                .map(|e| expiry(e, now))
                .transpose()
                .map_err(ConfigProblem)?;
            let store = open_store(&settings).await?;
            workspaces::ensure(&store, &workspace, now).await?;
            let key = api_keys::create_with(
                &store,
                api_keys::NewKey {
                    workspace_id: &workspace,
                    name: &name,
                    scopes,
                    expires_at,
                    rate_per_second: rate,
                    accounts: accounts.as_deref(),
                },
                now,
            )
            .await?;
            eprintln!(
                "created API key {} in workspace {}; it is shown once:",
                key.key_id, key.workspace_id
            );
            println!("{}", key.token.expose_secret());
            Ok(())
        }
        Command::Keys {
            command: KeysCommand::List { workspace },
        } => {
            let store = open_store(&settings).await?;
            let now = clock.now_ms();
            let when = |t: Option<i64>| t.map_or("-".to_owned(), format_ms);
            println!(
                "id\tworkspace\tname\tscopes\tcreated\texpires\tlast_used\tstate\trate\taccounts"
            );
            for k in api_keys::list(&store, workspace.as_deref()).await? {
                let state = if k.revoked_at.is_some() {
                    "revoked"
                } else if k.expires_at.is_some_and(|at| at <= now) {
                    "expired"
                } else {
                    "active"
                };
                let rate = k
                    .rate_per_second
                    .map_or("default".to_owned(), |r| r.to_string());
                let accounts = k.accounts.map_or("all".to_owned(), |ids| ids.join(","));
                println!(
                    "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{state}\t{rate}\t{accounts}",
                    k.key_id,
                    k.workspace_id,
                    k.name,
                    k.scopes.as_stored(),
                    format_ms(k.created_at),
                    when(k.expires_at),
                    when(k.last_used_at),
                );
            }
            Ok(())
        }
        Command::Keys {
            command: KeysCommand::Revoke { id },
        } => {
            let store = open_store(&settings).await?;
            if !api_keys::revoke(&store, &id, clock.now_ms()).await? {
                anyhow::bail!("no API key with id {id}");
            }
            println!("revoked API key {id}");
            Ok(())
        }
        Command::Vault {
            command: VaultCommand::Rotate,
        } => {
            let store = open_store(&settings).await?;
            let vault = open_vault(&settings, &store, &clock).await?;
            let rotation = vault.rotate(clock.now_ms()).await?;
            println!(
                "new data key {}; re-sealed {} secrets",
                rotation.new_key_id, rotation.resealed
            );
            Ok(())
        }
    }
}

/// `--accounts ID,ID`: the ids, at least one (an empty binding would be a key that sees
/// nothing, surely not what was meant).
fn account_list(s: &str) -> anyhow::Result<Vec<String>> {
    let ids: Vec<String> = s
        .split(',')
        .map(str::trim)
        .filter(|id| !id.is_empty())
        .map(str::to_owned)
        .collect();
    if ids.is_empty() {
        anyhow::bail!("--accounts needs at least one account id");
    }
    if let Some(bad) = ids.iter().find(|id| !mailroom_core::id::looks_like_id(id)) {
        anyhow::bail!("--accounts: `{bad}` is not an account id");
    }
    Ok(ids)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down");
}

/// `--expires`: an RFC 3339 date (in the future) or `<N>d`, N days from `now_ms`.
fn expiry(s: &str, now_ms: i64) -> Result<i64, String> {
    let at = match s.trim().strip_suffix('d') {
        Some(days) => days
            .parse::<u32>()
            .ok()
            .filter(|d| *d > 0)
            .map(|d| now_ms + i64::from(d) * 86_400_000),
        None => mailroom_core::time_fmt::parse_ms(s.trim()),
    };
    match at {
        Some(at) if at > now_ms => Ok(at),
        Some(_) => Err(format!("--expires {s} is not in the future")),
        None => Err(format!(
            "--expires must be an RFC 3339 date or a number of days like 90d, got `{s}`"
        )),
    }
}
