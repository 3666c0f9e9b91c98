//! A `mailroom serve` process of the release build on a prepared database, and a small HTTP
//! load generator (neither `oha` nor `wrk` is installed here): C keep-alive connections, each
//! sending its next request when the previous answer is read, for a fixed time; every
//! request's latency kept for the percentiles.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use mailroom_testkit::app::TEST_MASTER_KEY;

/// A `mailroom serve` child process, killed (by its pid) when dropped.
pub struct Server {
    child: Child,
    pub base_url: String,
}

/// How a [`Server`] is started beyond the defaults.
#[derive(Debug, Clone, Default)]
pub struct ServerOptions {
    /// `MAILROOM_LOG` (default `warn`).
    pub log: Option<String>,
    /// Where the server's stderr (its logs) goes; inherited when `None`.
    pub log_file: Option<std::path::PathBuf>,
    /// More environment (e.g. `MAILROOM_WEBHOOK_ALLOW_PRIVATE=true` for a local receiver).
    pub env: Vec<(String, String)>,
}

impl Server {
    /// Starts `mailroom serve` on `database_url` and waits until `/healthz` answers.
    pub async fn start(database_url: &str) -> anyhow::Result<Self> {
        Self::start_with(database_url, &ServerOptions::default()).await
    }

    /// [`Server::start`] with a log filter and a log file.
    pub async fn start_with(database_url: &str, opts: &ServerOptions) -> anyhow::Result<Self> {
        let bin = std::env::var("BENCH_MAILROOM_BIN")
            .context("BENCH_MAILROOM_BIN (the release `mailroom` binary; bench/sync sets it)")?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let stderr = match &opts.log_file {
            Some(p) => {
                if let Some(dir) = p.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                Stdio::from(
                    std::fs::File::create(p)
                        .with_context(|| format!("creating {}", p.display()))?,
                )
            }
            None => Stdio::inherit(),
        };
        let child = Command::new(&bin)
            .arg("serve")
            .env("MAILROOM_LISTEN", format!("127.0.0.1:{port}"))
            .env("MAILROOM_DATABASE_URL", database_url)
            .env("MAILROOM_MASTER_KEY", TEST_MASTER_KEY)
            .env("MAILROOM_MAIL_ALLOW_PRIVATE", "true")
            // The load generator is one key driving the server flat out: no per-key limit.
            .env("MAILROOM_API_RATE_PER_SECOND", "0")
            .env("MAILROOM_TLS_INSECURE_SKIP_VERIFY", "true")
            .env("MAILROOM_LOG", opts.log.as_deref().unwrap_or("warn"))
            // Last, so what the scenario asks for wins over the defaults above.
            .envs(opts.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("starting {bin} serve"))?;
        let mut server = Server {
            child,
            base_url: format!("http://127.0.0.1:{port}"),
        };
        let client = reqwest::Client::new();
        let start = Instant::now();
        loop {
            let ok = client
                .get(format!("{}/healthz", server.base_url))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ok {
                return Ok(server);
            }
            if let Some(status) = server.child.try_wait()? {
                bail!("mailroom serve exited ({status}) before answering /healthz");
            }
            if start.elapsed() > Duration::from_secs(60) {
                bail!("mailroom serve did not answer /healthz within 60 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The process's resident set (VmRSS), in bytes.
    pub fn rss(&self) -> Option<u64> {
        rss_of(self.pid())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// VmRSS of `pid` from /proc, in bytes.
pub fn rss_of(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// What one load run came to.
pub struct Load {
    pub ok: usize,
    pub errors: usize,
    pub first_error: Option<String>,
    pub wall: Duration,
    /// Latencies of the successful requests, sorted.
    pub latencies: Vec<Duration>,
    /// Bytes of the answers' bodies (the last one), to show what a request returned.
    pub body_bytes: usize,
}

impl Load {
    pub fn rate(&self) -> f64 {
        self.ok as f64 / self.wall.as_secs_f64()
    }

    pub fn p(&self, q: f64) -> f64 {
        if self.latencies.is_empty() {
            return 0.0;
        }
        let rank =
            ((q * self.latencies.len() as f64).ceil() as usize).clamp(1, self.latencies.len());
        self.latencies[rank - 1].as_secs_f64() * 1000.0
    }
}

/// `GET url` (with the API key) from `connections` connections for `warmup` (not counted),
/// then for `time`.
pub async fn drive(
    url: &str,
    api_key: &str,
    connections: usize,
    warmup: Duration,
    time: Duration,
) -> anyhow::Result<Load> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(connections)
        .timeout(Duration::from_secs(30))
        .build()?;
    let url: Arc<str> = url.into();
    let key: Arc<str> = api_key.into();
    let start = Instant::now();
    let measure_from = start + warmup;
    let end = measure_from + time;
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (client, url, key) = (client.clone(), url.clone(), key.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let (mut errors, mut first_error, mut body_bytes) = (0usize, None, 0usize);
            loop {
                let t0 = Instant::now();
                if t0 >= end {
                    break;
                }
                let r = client.get(&*url).header("X-API-KEY", &*key).send().await;
                let outcome = match r {
                    Ok(resp) => {
                        let status = resp.status();
                        match resp.bytes().await {
                            Ok(b) if status.is_success() => Ok(b.len()),
                            Ok(b) => Err(format!("{status}: {}", String::from_utf8_lossy(&b))),
                            Err(e) => Err(e.to_string()),
                        }
                    }
                    Err(e) => Err(e.to_string()),
                };
                if t0 < measure_from {
                    continue;
                }
                match outcome {
                    Ok(n) => {
                        lat.push(t0.elapsed());
                        body_bytes = n;
                    }
                    Err(e) => {
                        errors += 1;
                        first_error.get_or_insert(e);
                    }
                }
            }
            (lat, errors, first_error, body_bytes)
        }));
    }
    let mut load = Load {
        ok: 0,
        errors: 0,
        first_error: None,
        wall: Duration::ZERO,
        latencies: Vec::new(),
        body_bytes: 0,
    };
    for t in tasks {
        let (lat, errors, first_error, body_bytes) = t.await?;
        load.latencies.extend(lat);
        load.errors += errors;
        if load.first_error.is_none() {
            load.first_error = first_error;
        }
        load.body_bytes = load.body_bytes.max(body_bytes);
    }
    // The last requests end a little after `end`; count the time they took.
    load.wall = measure_from.elapsed();
    load.ok = load.latencies.len();
    load.latencies.sort_unstable();
    Ok(load)
}
