//! Configuration: defaults, then `mailroom.toml` (optional), then `MAILROOM_*` variables
//! (env wins). Everything is validated here, once, before anything listens; a bad value is
//! one clear line and exit code 2.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use mailroom_engine::audit_retention::AuditRetention;
use mailroom_engine::outbox::OutboxConfig;
use mailroom_engine::sync::SyncConfig;
use mailroom_engine::webhooks::WebhookConfig;
use mailroom_store::{Backend, MasterKey};

pub const DEFAULT_DATABASE_URL: &str = "sqlite://./mailroom-data/mailroom.db";
pub const MASTER_KEY_FILE: &str = "master.key";

/// Configuration as written by the operator (all optional, defaults applied).
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawConfig {
    pub listen: String,
    pub database_url: String,
    pub public_url: Option<String>,
    pub master_key: Option<SecretString>,
    pub mail_allow_private: bool,
    pub webhook_allow_private: bool,
    pub tls_insecure_skip_verify: bool,
    pub api_rate_per_second: u32,
    pub mail_connect_timeout_secs: u64,
    pub body_limit_bytes: usize,
    pub attachment_max_bytes: usize,
    pub message_max_bytes: usize,
    pub send_timeout_secs: u64,
    pub send_max_attempts: i64,
    pub send_retry_base_secs: u64,
    pub send_retry_horizon_secs: u64,
    pub webhook_timeout_secs: u64,
    pub webhook_max_attempts: i64,
    pub webhook_retry_base_secs: u64,
    pub webhook_retry_cap_secs: u64,
    pub webhook_per_host: usize,
    pub webhook_lease_margin_secs: u64,
    pub webhook_retention_days: u32,
    pub sync: bool,
    pub sync_sweep_secs: u64,
    pub audit_retention_days: u32,
    pub log: String,
    pub log_format: String,
    // Provider apps (used by the Gmail and Outlook integrations).
    pub google_client_id: Option<String>,
    pub google_client_secret: Option<SecretString>,
    pub google_auth_url: Option<String>,
    pub google_token_url: Option<String>,
    pub gmail_api_url: Option<String>,
    /// Gmail push: the Cloud Pub/Sub topic `users.watch` publishes to, and the secret of the
    /// push endpoint's URL (both or neither).
    pub google_pubsub_topic: Option<String>,
    pub google_push_token: Option<SecretString>,
    pub microsoft_client_id: Option<String>,
    pub microsoft_client_secret: Option<SecretString>,
    pub microsoft_auth_url: Option<String>,
    pub microsoft_token_url: Option<String>,
    pub graph_api_url: Option<String>,
}

impl Default for RawConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            database_url: DEFAULT_DATABASE_URL.into(),
            public_url: None,
            master_key: None,
            mail_allow_private: false,
            webhook_allow_private: false,
            tls_insecure_skip_verify: false,
            api_rate_per_second: 1000,
            mail_connect_timeout_secs: 15,
            body_limit_bytes: 2 * 1024 * 1024,
            attachment_max_bytes: 25 * 1024 * 1024,
            message_max_bytes: 35 * 1024 * 1024,
            send_timeout_secs: 30,
            send_max_attempts: 10,
            send_retry_base_secs: 30,
            send_retry_horizon_secs: 48 * 3600,
            webhook_timeout_secs: 30,
            webhook_max_attempts: 14,
            webhook_retry_base_secs: 60,
            webhook_retry_cap_secs: 8 * 3600,
            webhook_per_host: 8,
            webhook_lease_margin_secs: 15,
            webhook_retention_days: 30,
            sync: true,
            sync_sweep_secs: 60,
            audit_retention_days: 365,
            log: "info".into(),
            log_format: "text".into(),
            google_client_id: None,
            google_client_secret: None,
            google_auth_url: None,
            google_token_url: None,
            gmail_api_url: None,
            google_pubsub_topic: None,
            google_push_token: None,
            microsoft_client_id: None,
            microsoft_client_secret: None,
            microsoft_auth_url: None,
            microsoft_token_url: None,
            graph_api_url: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Source(String),
}

fn invalid(msg: impl Into<String>) -> ConfigError {
    ConfigError::Invalid(msg.into())
}

/// A provider app (Google or Microsoft) as the operator configured it.
#[derive(Clone)]
pub struct AppConfig {
    pub client_id: String,
    pub client_secret: SecretString,
    pub auth_url: url::Url,
    pub token_url: url::Url,
    /// Gmail: the API root; Graph: the `…/v1.0` root.
    pub api_url: url::Url,
}

/// The operator's Pub/Sub set-up for Gmail push (`docs/sync.md`, "Gmail push").
#[derive(Clone)]
pub struct GooglePush {
    /// `projects/<project>/topics/<topic>`.
    pub topic: String,
    /// The secret in the push endpoint's URL: `<public url>/push/google/<token>`.
    pub token: SecretString,
}

/// Reads the Gmail push variables: both or neither, a topic of Pub/Sub's form, a token long
/// enough to be a secret, and only with a Google app.
fn google_push(
    topic: Option<String>,
    token: Option<SecretString>,
    google: bool,
) -> Result<Option<GooglePush>, ConfigError> {
    let topic = topic.filter(|t| !t.trim().is_empty());
    let token = token.filter(|t| !t.expose_secret().trim().is_empty());
    match (topic, token) {
        (None, None) => Ok(None),
        (Some(topic), Some(token)) => {
            let parts: Vec<&str> = topic.split('/').collect();
            if !(parts.len() == 4 && parts[0] == "projects" && parts[2] == "topics")
                || parts.iter().any(|p| p.is_empty())
            {
                return Err(invalid(
                    "MAILROOM_GOOGLE_PUBSUB_TOPIC must be projects/<project>/topics/<topic>",
                ));
            }
            let t = token.expose_secret();
            if t.len() < 24
                || !t
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(invalid(
                    "MAILROOM_GOOGLE_PUSH_TOKEN must be at least 24 URL-safe characters (letters, digits, - and _)",
                ));
            }
            if !google {
                return Err(invalid(
                    "MAILROOM_GOOGLE_PUBSUB_TOPIC needs the Google app (MAILROOM_GOOGLE_CLIENT_ID)",
                ));
            }
            Ok(Some(GooglePush { topic, token }))
        }
        _ => Err(invalid(
            "MAILROOM_GOOGLE_PUBSUB_TOPIC and MAILROOM_GOOGLE_PUSH_TOKEN go together",
        )),
    }
}

fn app_config(
    prefix: &str,
    id: Option<String>,
    secret: Option<SecretString>,
    urls: [(&str, Option<String>, &str); 3],
) -> Result<Option<AppConfig>, ConfigError> {
    let Some(client_id) = id.filter(|s| !s.trim().is_empty()) else {
        return Ok(None);
    };
    let client_secret = secret
        .filter(|s| !s.expose_secret().is_empty())
        .ok_or_else(|| {
            invalid(format!(
                "MAILROOM_{prefix}_CLIENT_SECRET is required with MAILROOM_{prefix}_CLIENT_ID"
            ))
        })?;
    let mut parsed = Vec::with_capacity(3);
    for (var, value, default) in urls {
        let text = value.unwrap_or_else(|| default.to_owned());
        let u = url::Url::parse(&text)
            .map_err(|e| invalid(format!("{var} must be an absolute URL: {e}")))?;
        if u.scheme() != "https" && u.scheme() != "http" {
            return Err(invalid(format!("{var} must be an http(s) URL")));
        }
        parsed.push(u);
    }
    let api_url = parsed.pop().expect("three URLs");
    let token_url = parsed.pop().expect("three URLs");
    let auth_url = parsed.pop().expect("three URLs");
    Ok(Some(AppConfig {
        client_id,
        client_secret,
        auth_url,
        token_url,
        api_url,
    }))
}

/// Where the master key comes from.
pub enum MasterKeySource {
    /// Given by the operator.
    Configured(SecretString),
    /// Kept in the embedded data directory; generated on first run.
    File(PathBuf),
}

/// Validated settings the application runs with.
pub struct Settings {
    pub listen: SocketAddr,
    pub database_url: String,
    pub public_url: Option<url::Url>,
    pub google: Option<AppConfig>,
    /// Gmail push through Cloud Pub/Sub (needs `google`); `None`: Gmail accounts are polled.
    pub google_push: Option<GooglePush>,
    pub microsoft: Option<AppConfig>,
    pub master_key: MasterKeySource,
    pub mail_allow_private: bool,
    pub webhook_allow_private: bool,
    pub tls_insecure_skip_verify: bool,
    /// Requests per second per API key on this node (keys without their own rate); 0: none.
    pub api_rate_per_second: u32,
    pub mail_connect_timeout: Duration,
    pub body_limit_bytes: usize,
    pub attachment_max_bytes: usize,
    pub message_max_bytes: usize,
    pub outbox: OutboxConfig,
    pub webhooks: WebhookConfig,
    pub sync: SyncConfig,
    /// How long audit entries are kept (`MAILROOM_AUDIT_RETENTION_DAYS`; 0: for ever).
    pub audit: AuditRetention,
    pub log: String,
    pub log_json: bool,
}

impl RawConfig {
    /// Reads `file` (if it exists) and the `MAILROOM_*` environment.
    pub fn load(file: &Path) -> Result<Self, ConfigError> {
        Self::load_from(file, Env::prefixed("MAILROOM_"))
    }

    pub fn load_from(file: &Path, env: Env) -> Result<Self, ConfigError> {
        // MAILROOM_TEST_*, MAILROOM_COMPAT_*, MAILROOM_RIG_* and MAILROOM_BROWSER_* belong to the
        // test rig, MAILROOM_CONFIG names
        // the file: none of them is configuration.
        let env = env.filter(|k| {
            let k = k.as_str().to_ascii_lowercase();
            !(k.starts_with("test_")
                || k.starts_with("compat_")
                || k.starts_with("rig_")
                || k.starts_with("browser_")
                || k == "config")
        });
        Figment::new()
            .merge(Toml::file(file))
            .merge(env)
            .extract::<RawConfig>()
            .map_err(|e| {
                let e = e
                    .into_iter()
                    .next()
                    .map(|e| e.to_string())
                    .unwrap_or_default();
                ConfigError::Source(e)
            })
    }

    /// Checks every value and resolves defaults that depend on others.
    pub fn validate(self) -> Result<Settings, ConfigError> {
        let listen: SocketAddr = self.listen.parse().map_err(|_| {
            invalid(format!(
                "MAILROOM_LISTEN must be HOST:PORT with an IP address, got `{}`",
                self.listen
            ))
        })?;
        let backend = Backend::of_url(&self.database_url)
            .map_err(|e| invalid(format!("MAILROOM_DATABASE_URL: {e}")))?;
        let public_url = match &self.public_url {
            None => None,
            Some(u) => {
                let parsed = url::Url::parse(u).map_err(|e| {
                    invalid(format!("MAILROOM_PUBLIC_URL must be an absolute URL: {e}"))
                })?;
                if parsed.scheme() != "http" && parsed.scheme() != "https" {
                    return Err(invalid("MAILROOM_PUBLIC_URL must be an http(s) URL"));
                }
                Some(parsed)
            }
        };
        let master_key = match self.master_key {
            Some(k) => {
                MasterKey::from_base64(k.expose_secret())
                    .map_err(|e| invalid(format!("MAILROOM_MASTER_KEY: {e}")))?;
                MasterKeySource::Configured(k)
            }
            None => match backend {
                Backend::Sqlite => {
                    MasterKeySource::File(sqlite_dir(&self.database_url).join(MASTER_KEY_FILE))
                }
                Backend::Postgres => {
                    return Err(invalid(
                        "MAILROOM_MASTER_KEY is required with PostgreSQL (every node must use the same key); \
                         make one with `openssl rand -base64 32`",
                    ));
                }
            },
        };
        let google = app_config(
            "GOOGLE",
            self.google_client_id,
            self.google_client_secret,
            [
                (
                    "MAILROOM_GOOGLE_AUTH_URL",
                    self.google_auth_url,
                    "https://accounts.google.com/o/oauth2/v2/auth",
                ),
                (
                    "MAILROOM_GOOGLE_TOKEN_URL",
                    self.google_token_url,
                    "https://oauth2.googleapis.com/token",
                ),
                (
                    "MAILROOM_GMAIL_API_URL",
                    self.gmail_api_url,
                    "https://gmail.googleapis.com/",
                ),
            ],
        )?;
        let google_push = google_push(
            self.google_pubsub_topic,
            self.google_push_token,
            google.is_some(),
        )?;
        let microsoft = app_config(
            "MICROSOFT",
            self.microsoft_client_id,
            self.microsoft_client_secret,
            [
                (
                    "MAILROOM_MICROSOFT_AUTH_URL",
                    self.microsoft_auth_url,
                    "https://login.microsoftonline.com/common/oauth2/v2.0/authorize",
                ),
                (
                    "MAILROOM_MICROSOFT_TOKEN_URL",
                    self.microsoft_token_url,
                    "https://login.microsoftonline.com/common/oauth2/v2.0/token",
                ),
                (
                    "MAILROOM_GRAPH_API_URL",
                    self.graph_api_url,
                    "https://graph.microsoft.com/v1.0",
                ),
            ],
        )?;
        if self.mail_connect_timeout_secs == 0 || self.mail_connect_timeout_secs > 300 {
            return Err(invalid(
                "MAILROOM_MAIL_CONNECT_TIMEOUT_SECS must be from 1 to 300",
            ));
        }
        if self.body_limit_bytes < 1024 {
            return Err(invalid("MAILROOM_BODY_LIMIT_BYTES must be at least 1024"));
        }
        if self.attachment_max_bytes == 0 || self.message_max_bytes < self.attachment_max_bytes {
            return Err(invalid(
                "MAILROOM_ATTACHMENT_MAX_BYTES must be positive and at most MAILROOM_MESSAGE_MAX_BYTES",
            ));
        }
        if !(1..=600).contains(&self.send_timeout_secs) {
            return Err(invalid("MAILROOM_SEND_TIMEOUT_SECS must be from 1 to 600"));
        }
        if !(1..=100).contains(&self.send_max_attempts) {
            return Err(invalid("MAILROOM_SEND_MAX_ATTEMPTS must be from 1 to 100"));
        }
        if self.send_retry_base_secs == 0 || self.send_retry_horizon_secs == 0 {
            return Err(invalid(
                "MAILROOM_SEND_RETRY_BASE_SECS and MAILROOM_SEND_RETRY_HORIZON_SECS must be positive",
            ));
        }
        let outbox = OutboxConfig {
            send_timeout: Duration::from_secs(self.send_timeout_secs),
            max_attempts: self.send_max_attempts,
            retry_horizon: Duration::from_secs(self.send_retry_horizon_secs),
            retry_base: Duration::from_secs(self.send_retry_base_secs),
            ..OutboxConfig::default()
        };
        if !(1..=300).contains(&self.webhook_timeout_secs) {
            return Err(invalid(
                "MAILROOM_WEBHOOK_TIMEOUT_SECS must be from 1 to 300",
            ));
        }
        if !(1..=100).contains(&self.webhook_max_attempts) {
            return Err(invalid(
                "MAILROOM_WEBHOOK_MAX_ATTEMPTS must be from 1 to 100",
            ));
        }
        if self.webhook_retry_base_secs == 0
            || self.webhook_retry_cap_secs < self.webhook_retry_base_secs
        {
            return Err(invalid(
                "MAILROOM_WEBHOOK_RETRY_BASE_SECS must be positive and at most MAILROOM_WEBHOOK_RETRY_CAP_SECS",
            ));
        }
        if !(1..=1000).contains(&self.webhook_per_host) {
            return Err(invalid("MAILROOM_WEBHOOK_PER_HOST must be from 1 to 1000"));
        }
        if self.webhook_retention_days > 36_500 {
            return Err(invalid(
                "MAILROOM_WEBHOOK_RETENTION_DAYS must be from 0 (keep for ever) to 36500",
            ));
        }
        if !(1..=600).contains(&self.webhook_lease_margin_secs) {
            return Err(invalid(
                "MAILROOM_WEBHOOK_LEASE_MARGIN_SECS must be from 1 to 600",
            ));
        }
        let webhooks = WebhookConfig {
            allow_private: self.webhook_allow_private,
            attempt_timeout: Duration::from_secs(self.webhook_timeout_secs),
            max_attempts: self.webhook_max_attempts,
            retry_base: Duration::from_secs(self.webhook_retry_base_secs),
            retry_cap: Duration::from_secs(self.webhook_retry_cap_secs),
            per_host: self.webhook_per_host,
            lease_margin: Duration::from_secs(self.webhook_lease_margin_secs),
            retention: (self.webhook_retention_days > 0)
                .then(|| Duration::from_secs(u64::from(self.webhook_retention_days) * 24 * 3600)),
            ..WebhookConfig::default()
        };
        if !(1..=3600).contains(&self.sync_sweep_secs) {
            return Err(invalid("MAILROOM_SYNC_SWEEP_SECS must be from 1 to 3600"));
        }
        let sync = SyncConfig {
            enabled: self.sync,
            sweep: Duration::from_secs(self.sync_sweep_secs),
            ..SyncConfig::default()
        };
        if self.audit_retention_days > 36_500 {
            return Err(invalid(
                "MAILROOM_AUDIT_RETENTION_DAYS must be from 0 (keep for ever) to 36500",
            ));
        }
        let audit = AuditRetention {
            keep: (self.audit_retention_days > 0)
                .then(|| Duration::from_secs(u64::from(self.audit_retention_days) * 24 * 3600)),
            ..AuditRetention::default()
        };
        let log_json = match self.log_format.as_str() {
            "text" => false,
            "json" => true,
            other => {
                return Err(invalid(format!(
                    "MAILROOM_LOG_FORMAT must be text or json, got `{other}`"
                )));
            }
        };
        tracing_subscriber::EnvFilter::try_new(&self.log)
            .map_err(|e| invalid(format!("MAILROOM_LOG is not a valid filter: {e}")))?;
        Ok(Settings {
            listen,
            database_url: self.database_url,
            public_url,
            google,
            google_push,
            microsoft,
            master_key,
            mail_allow_private: self.mail_allow_private,
            webhook_allow_private: self.webhook_allow_private,
            tls_insecure_skip_verify: self.tls_insecure_skip_verify,
            api_rate_per_second: self.api_rate_per_second,
            mail_connect_timeout: Duration::from_secs(self.mail_connect_timeout_secs),
            body_limit_bytes: self.body_limit_bytes,
            attachment_max_bytes: self.attachment_max_bytes,
            message_max_bytes: self.message_max_bytes,
            outbox,
            webhooks,
            sync,
            audit,
            log: self.log,
            log_json,
        })
    }
}

/// The folder holding a SQLite database file.
fn sqlite_dir(url: &str) -> PathBuf {
    let path = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:")
        .split('?')
        .next()
        .unwrap_or("");
    Path::new(path)
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

impl Settings {
    /// Settings for an in-process instance (tests): loopback, port 0, the given database.
    pub fn for_tests(database_url: &str, master_key_b64: &str) -> Self {
        Settings {
            listen: "127.0.0.1:0".parse().expect("valid"),
            database_url: database_url.to_owned(),
            public_url: None,
            google: None,
            google_push: None,
            microsoft: None,
            master_key: MasterKeySource::Configured(SecretString::from(master_key_b64.to_owned())),
            mail_allow_private: true,
            webhook_allow_private: true,
            tls_insecure_skip_verify: true,
            // Off: tests make bursts of requests with one key; the rate tests set it.
            api_rate_per_second: 0,
            mail_connect_timeout: Duration::from_secs(15),
            body_limit_bytes: 2 * 1024 * 1024,
            attachment_max_bytes: 25 * 1024 * 1024,
            message_max_bytes: 35 * 1024 * 1024,
            outbox: OutboxConfig {
                retry_base: Duration::from_millis(200),
                ..OutboxConfig::default()
            },
            // Quick retries and a short lease, so tests of retries and takeovers are quick.
            webhooks: WebhookConfig {
                allow_private: true,
                attempt_timeout: Duration::from_secs(2),
                retry_base: Duration::from_millis(100),
                retry_cap: Duration::from_millis(500),
                poll_interval: Duration::from_millis(200),
                lease_margin: Duration::from_millis(500),
                ..WebhookConfig::default()
            },
            // Off: most tests drive sync passes themselves; the supervisor's tests turn it on
            // (see `sync_for_tests`).
            sync: SyncConfig {
                enabled: false,
                ..Self::sync_for_tests()
            },
            audit: AuditRetention::default(),
            log: "warn".into(),
            log_json: false,
        }
    }

    /// A running sync supervisor with quick rounds and heartbeats (leases keep their real
    /// length, so takeovers behave as in production).
    pub fn sync_for_tests() -> SyncConfig {
        SyncConfig {
            enabled: true,
            sweep: Duration::from_secs(60),
            scan: Duration::from_millis(200),
            heartbeat: Duration::from_millis(500),
            stop_after: Duration::from_secs(3),
            ..SyncConfig::default()
        }
    }

    /// Opens the master key, generating the embedded key file on first run.
    pub fn master_key(&self) -> anyhow::Result<MasterKey> {
        match &self.master_key {
            MasterKeySource::Configured(k) => Ok(MasterKey::from_base64(k.expose_secret())?),
            MasterKeySource::File(path) => {
                if path.exists() {
                    let text = std::fs::read_to_string(path)?;
                    MasterKey::from_base64(&text)
                        .map_err(|e| anyhow::anyhow!("the master key in {}: {e}", path.display()))
                } else {
                    if let Some(dir) = path.parent() {
                        std::fs::create_dir_all(dir)?;
                    }
                    let (key, b64) = MasterKey::generate();
                    write_private(path, b64.as_bytes())?;
                    // Printed, not logged: the operator must see it whatever the log filter.
                    eprintln!(
                        "mailroom: warning: generated a new master key in {}; back it up with the \
                         database (without it the stored credentials cannot be opened) or set \
                         MAILROOM_MASTER_KEY",
                        path.display()
                    );
                    Ok(key)
                }
            }
        }
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    opts.mode(0o600);
    let mut f = opts.open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        let s = RawConfig::default().validate().unwrap();
        assert_eq!(s.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(s.mail_connect_timeout, Duration::from_secs(15));
        assert_eq!(s.database_url, DEFAULT_DATABASE_URL);
        assert!(!s.mail_allow_private && !s.tls_insecure_skip_verify);
        assert!(
            matches!(s.master_key, MasterKeySource::File(ref p) if p.ends_with("mailroom-data/master.key"))
        );
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail decides the closure's error type
    fn env_wins_over_file_and_typos_are_refused() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "mailroom.toml",
                "listen = \"127.0.0.1:9000\"\nlog = \"debug\"\n",
            )?;
            jail.set_env("MAILROOM_LISTEN", "127.0.0.1:9100");
            jail.set_env("MAILROOM_TEST_IMAP_PORT", "10143");
            let raw = RawConfig::load(Path::new("mailroom.toml")).unwrap();
            assert_eq!(raw.listen, "127.0.0.1:9100");
            assert_eq!(raw.log, "debug");
            jail.set_env("MAILROOM_LISTN", "x");
            let err = RawConfig::load(Path::new("mailroom.toml")).unwrap_err();
            assert!(err.to_string().contains("listn"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn bad_values_say_which_variable() {
        let bad = |f: fn(&mut RawConfig)| {
            let mut c = RawConfig::default();
            f(&mut c);
            c.validate()
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        assert!(bad(|c| c.listen = "nowhere".into()).contains("MAILROOM_LISTEN"));
        assert!(bad(|c| c.database_url = "mysql://x".into()).contains("MAILROOM_DATABASE_URL"));
        assert!(
            bad(|c| c.master_key = Some(SecretString::from("short")))
                .contains("MAILROOM_MASTER_KEY")
        );
        assert!(
            bad(|c| c.database_url = "postgres://x/y".into())
                .contains("MAILROOM_MASTER_KEY is required")
        );
        assert!(bad(|c| c.public_url = Some("ftp://x".into())).contains("MAILROOM_PUBLIC_URL"));
        assert!(
            bad(|c| c.webhook_retention_days = 36_501).contains("MAILROOM_WEBHOOK_RETENTION_DAYS")
        );
        let keep_all = RawConfig {
            webhook_retention_days: 0,
            ..RawConfig::default()
        };
        assert_eq!(keep_all.validate().unwrap().webhooks.retention, None);
        assert_eq!(
            RawConfig::default().validate().unwrap().webhooks.retention,
            Some(Duration::from_secs(30 * 24 * 3600))
        );
    }

    #[test]
    fn gmail_push_needs_both_variables_a_topic_and_a_long_token() {
        let with = |topic: Option<&str>, token: Option<&str>, google: bool| {
            let mut c = RawConfig::default();
            if google {
                c.google_client_id = Some("id".into());
                c.google_client_secret = Some(SecretString::from("secret"));
            }
            c.google_pubsub_topic = topic.map(str::to_owned);
            c.google_push_token = token.map(|t| SecretString::from(t.to_owned()));
            c.validate()
        };
        let token = "abcdefghijklmnopqrstuvwxyz";
        let ok = with(Some("projects/p/topics/gmail"), Some(token), true).unwrap();
        assert_eq!(ok.google_push.unwrap().topic, "projects/p/topics/gmail");
        assert!(with(None, None, true).unwrap().google_push.is_none());
        let err =
            |r: Result<Settings, ConfigError>| r.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err(with(Some("projects/p/topics/gmail"), None, true)).contains("go together"));
        assert!(
            err(with(Some("gmail"), Some(token), true))
                .contains("MAILROOM_GOOGLE_PUBSUB_TOPIC must be")
        );
        assert!(
            err(with(Some("projects/p/topics/g"), Some("short"), true))
                .contains("MAILROOM_GOOGLE_PUSH_TOKEN")
        );
        assert!(
            err(with(Some("projects/p/topics/g"), Some(token), false))
                .contains("MAILROOM_GOOGLE_CLIENT_ID")
        );
    }
}
