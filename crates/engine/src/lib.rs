//! The engine: the use cases the API calls (accept a send, link or reconnect an account, the
//! hosted OAuth round trip) and the background workers (the outbox sender and the sync
//! supervisor, webhook delivery and the audit log's retention, all started by [`Engine::run_workers`]). It talks to mail
//! providers only through the mailbox seam (`mailroom_providers::Mailbox`), never by asking
//! which provider an account is.

pub mod apps;
pub mod audit_retention;
pub mod compose;
pub mod connect;
pub mod hosted;
pub mod link;
pub mod mailboxes;
pub mod mutate;
pub mod notify;
pub mod outbox;
pub mod read;
pub mod replies;
pub mod send;
pub mod send_limits;
pub mod sync;
pub mod tokens;
pub mod tracking;
pub mod webhooks;

use std::sync::Arc;

use mailroom_core::Clock;
use mailroom_providers::{NetPolicy, Providers};
use mailroom_store::{Store, Vault};

use crate::mailboxes::Mailboxes;

/// Shared handles the engine's parts need.
#[derive(Clone)]
pub struct Engine {
    pub store: Store,
    pub vault: Vault,
    pub clock: Arc<dyn Clock>,
    pub net: NetPolicy,
    pub apps: Arc<apps::ProviderApps>,
    pub tokens: Arc<tokens::Tokens>,
    /// For the providers' HTTP APIs and token endpoints (never for user-given URLs).
    pub http: reqwest::Client,
    /// The mailbox seam's shared state (connection pools, clients).
    pub providers: Providers,
    mailboxes: Mailboxes,
    pub outbox: outbox::Outbox,
    /// This process's sync ownership: its lease owner id, the supervisor's configuration,
    /// the signals of the account loops it runs.
    pub sync: sync::SyncControl,
    /// Webhook delivery (its policy, and the worker [`Engine::run_workers`] starts).
    pub webhooks: webhooks::Webhooks,
    /// How long audit entries are kept (the prune [`Engine::run_workers`] starts).
    pub audit_retention: audit_retention::AuditRetention,
}

impl Engine {
    pub fn new(
        store: Store,
        vault: Vault,
        clock: Arc<dyn Clock>,
        net: NetPolicy,
        outbox: outbox::OutboxConfig,
        apps: apps::ProviderApps,
    ) -> Self {
        let apps = Arc::new(apps);
        let http = provider_http_client();
        let providers = Providers::new(net.clone(), http.clone(), apps.clone());
        let tokens = Arc::new(tokens::Tokens::new(
            store.clone(),
            vault.clone(),
            clock.clone(),
            providers.clone(),
        ));
        let mailboxes = Mailboxes::new(
            store.clone(),
            vault.clone(),
            tokens.clone(),
            providers.clone(),
        );
        let outbox = outbox::Outbox::new(store.clone(), clock.clone(), mailboxes.clone(), outbox);
        let webhooks = webhooks::Webhooks::new(
            store.clone(),
            vault.clone(),
            clock.clone(),
            webhooks::WebhookConfig::default(),
        );
        Self {
            store,
            vault,
            clock,
            net,
            apps,
            tokens,
            http,
            providers,
            mailboxes,
            outbox,
            sync: sync::SyncControl::new(sync::SyncConfig::default()),
            webhooks,
            audit_retention: audit_retention::AuditRetention::default(),
        }
    }

    /// The same engine with another audit retention (set before the workers start).
    pub fn with_audit_retention(mut self, retention: audit_retention::AuditRetention) -> Self {
        self.audit_retention = retention;
        self
    }

    /// The same engine with another webhook delivery policy (set before the workers start).
    pub fn with_webhook_config(mut self, config: webhooks::WebhookConfig) -> Self {
        self.webhooks = webhooks::Webhooks::new(
            self.store.clone(),
            self.vault.clone(),
            self.clock.clone(),
            config,
        );
        self
    }

    /// The same engine with another sync configuration (set before the workers start).
    pub fn with_sync_config(mut self, config: sync::SyncConfig) -> Self {
        self.sync = sync::SyncControl::new(config);
        self
    }

    /// Opens accounts' mailboxes (and keeps them open).
    pub fn mailboxes(&self) -> &Mailboxes {
        &self.mailboxes
    }

    /// Runs every background worker of this process until `shutdown` resolves, then waits for
    /// each to finish what it started (bounded by its own grace period).
    pub async fn run_workers(&self, shutdown: impl std::future::Future<Output = ()> + Send) {
        let stop = tokio_util::sync::CancellationToken::new();
        let outbox = {
            let stop = stop.clone();
            let outbox = self.outbox.clone();
            tokio::spawn(async move { outbox.run(stop.cancelled_owned()).await })
        };
        let webhooks = {
            let stop = stop.clone();
            let webhooks = self.webhooks.clone();
            tokio::spawn(async move { webhooks.run(stop.cancelled_owned()).await })
        };
        let audit = tokio::spawn(audit_retention::run(self.clone(), stop.clone()));
        let sync = self
            .sync
            .config()
            .enabled
            .then(|| tokio::spawn(sync::supervisor::run(self.clone(), stop.clone())));
        shutdown.await;
        stop.cancel();
        if let Err(e) = outbox.await {
            tracing::error!(error = %e, "the outbox worker panicked");
        }
        if let Err(e) = webhooks.await {
            tracing::error!(error = %e, "the webhook worker panicked");
        }
        if let Err(e) = audit.await {
            tracing::error!(error = %e, "the audit retention task panicked");
        }
        if let Some(sync) = sync
            && let Err(e) = sync.await
        {
            tracing::error!(error = %e, "the sync supervisor panicked");
        }
    }
}

/// The HTTP client for provider APIs: rustls (aws-lc-rs), no redirects (token endpoints must
/// not be redirected elsewhere), bounded connect time.
pub fn provider_http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(std::time::Duration::from_secs(10))
        .timeout(std::time::Duration::from_secs(120))
        .user_agent(concat!("mailroom/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("the HTTP client builds")
}
