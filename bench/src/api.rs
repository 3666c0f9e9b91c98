//! What `latency` and `rss` share: a fresh database migrated by an in-process app (which also
//! makes the workspace and its API key) and handed to a `mailroom serve` process, and that
//! process's API as a client sees it (linking an account, waiting for its status).

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::Value;

use mailroom_testkit::{TestDb, app::spawn_on};

use crate::BackendArg;
use crate::load::{Server, ServerOptions};

/// A `mailroom serve` process on a fresh database, and its API key.
pub struct Served {
    pub server: Server,
    pub api: Api,
    pub workspace: String,
    pub database_url: String,
    /// Keeps the database (dropped after the server).
    pub db: TestDb,
}

/// Migrates a fresh database of `b` in-process (no account), then serves it from a
/// `mailroom serve` process (default settings: sync on).
pub async fn serve(b: BackendArg, opts: &ServerOptions) -> anyhow::Result<Served> {
    let Some(db) = TestDb::new(b.backend()).await else {
        bail!("{} is unavailable", b.label());
    };
    let app = spawn_on(db, |s| s.log = "warn".into()).await;
    let (key, workspace, url) = (
        app.api_key.clone(),
        app.workspace.clone(),
        app.db.url.clone(),
    );
    let db = app.stop().await;
    let server = Server::start_with(&url, opts).await?;
    let api = Api::new(&server.base_url, &key)?;
    Ok(Served {
        server,
        api,
        workspace,
        database_url: url,
        db,
    })
}

/// The API of a server process, with its key.
#[derive(Clone)]
pub struct Api {
    client: reqwest::Client,
    base: String,
    key: String,
}

impl Api {
    pub fn new(base: &str, key: &str) -> anyhow::Result<Self> {
        Ok(Self {
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(120))
                .build()?,
            base: base.to_owned(),
            key: key.to_owned(),
        })
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<(u16, Value)> {
        let r = self
            .client
            .get(format!("{}{path}", self.base))
            .header("X-API-KEY", &self.key)
            .send()
            .await?;
        let status = r.status().as_u16();
        Ok((status, r.json().await.unwrap_or(Value::Null)))
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> anyhow::Result<(u16, Value)> {
        let r = self
            .client
            .post(format!("{}{path}", self.base))
            .header("X-API-KEY", &self.key)
            .json(body)
            .send()
            .await?;
        let status = r.status().as_u16();
        Ok((status, r.json().await.unwrap_or(Value::Null)))
    }

    /// `POST /api/v1/accounts` (the server verifies the IMAP and SMTP logins); the account id.
    pub async fn link(&self, body: &Value) -> anyhow::Result<String> {
        let (status, created) = self.post_json("/api/v1/accounts", body).await?;
        if status != 201 {
            bail!("linking an account failed ({status}): {created}");
        }
        Ok(created["account_id"]
            .as_str()
            .context("account_id in the answer")?
            .to_owned())
    }

    /// The account's `sources[0].status` (`None` when it could not be read).
    pub async fn source_status(&self, account_id: &str) -> Option<String> {
        let (status, acc) = self
            .get(&format!("/api/v1/accounts/{account_id}"))
            .await
            .ok()?;
        if status != 200 {
            return None;
        }
        acc["sources"][0]["status"].as_str().map(str::to_owned)
    }

    /// Waits (polling every 50 ms, at most `deadline`) until the account's source is `OK`.
    pub async fn wait_ok(&self, account_id: &str, deadline: Duration) -> anyhow::Result<Duration> {
        let start = Instant::now();
        let mut last = None;
        loop {
            let s = self.source_status(account_id).await;
            if s.as_deref() == Some("OK") {
                return Ok(start.elapsed());
            }
            last = s.or(last);
            if start.elapsed() > deadline {
                bail!("account {account_id} not OK within {deadline:?} (last status {last:?})");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
