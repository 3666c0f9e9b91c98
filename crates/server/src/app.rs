//! Start-up wiring: store, migrations, vault, engine, router, listener.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use tokio::net::TcpListener;

use crate::config::Settings;
use mailroom_api::{ApiConfig, AppState};
use mailroom_core::{Clock, SystemClock};
use mailroom_engine::Engine;
use mailroom_engine::apps::{GmailPush, ProviderApp, ProviderApps};
use mailroom_engine::webhooks::WebhookConfig;
use mailroom_providers::NetPolicy;
use mailroom_providers::oauth::{IdP, OAuthApp};
use mailroom_store::{Store, Vault};

/// Installs aws-lc-rs as the process's rustls provider (the tree's only one); idempotent.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// A start-up failure that the operator's configuration causes (a database that cannot be
/// reached, a master key that does not fit, an address in use): exit code 2, like a bad value.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigProblem(pub String);

/// Opens the database and applies migrations.
pub async fn open_store(settings: &Settings) -> anyhow::Result<Store> {
    let store = Store::connect(&settings.database_url).await.map_err(|e| {
        ConfigProblem(format!(
            "cannot open the database {}: {e}",
            redacted(&settings.database_url)
        ))
    })?;
    store
        .migrate()
        .await
        .context("cannot migrate the database")?;
    Ok(store)
}

fn redacted(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_owned(),
    }
}

/// Opens the store and the vault.
pub async fn open_vault(
    settings: &Settings,
    store: &Store,
    clock: &dyn Clock,
) -> anyhow::Result<Vault> {
    let master = settings
        .master_key()
        .map_err(|e| ConfigProblem(format!("{e:#}")))?;
    Vault::open(store.clone(), &master, clock.now_ms())
        .await
        .map_err(|e| match e {
            mailroom_store::StoreError::Vault(v) => ConfigProblem(v.to_string()).into(),
            other => anyhow::Error::from(other),
        })
}

/// A built, bound, not yet serving mailroom.
pub struct Application {
    listener: TcpListener,
    router: axum::Router,
    engine: Engine,
}

impl Application {
    pub async fn build(settings: &Settings) -> anyhow::Result<Self> {
        Self::build_with_clock(settings, Arc::new(SystemClock)).await
    }

    pub async fn build_with_clock(
        settings: &Settings,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(settings.listen)
            .await
            .map_err(|e| ConfigProblem(format!("cannot listen on {}: {e}", settings.listen)))?;
        Self::build_on(settings, clock, listener).await
    }

    /// [`Application::build_with_clock`] on a listener already bound (`settings.listen` is not
    /// used): a caller that must know the address before the settings are final (a test whose
    /// `MAILROOM_PUBLIC_URL` is the app's own address) binds it first.
    pub async fn build_on(
        settings: &Settings,
        clock: Arc<dyn Clock>,
        listener: TcpListener,
    ) -> anyhow::Result<Self> {
        install_crypto_provider();
        if settings.tls_insecure_skip_verify {
            tracing::warn!(
                "MAILROOM_TLS_INSECURE_SKIP_VERIFY is on: server certificates are NOT verified; use only with test servers"
            );
        }
        if settings.mail_allow_private {
            tracing::warn!(
                "MAILROOM_MAIL_ALLOW_PRIVATE is on: accounts may point at loopback and private networks"
            );
        }
        let store = open_store(settings).await?;
        let vault = open_vault(settings, &store, clock.as_ref()).await?;
        let net = NetPolicy {
            allow_private: settings.mail_allow_private,
            tls_insecure_skip_verify: settings.tls_insecure_skip_verify,
            connect_timeout: settings.mail_connect_timeout,
        };
        // Hosted links and OAuth callbacks need the URL clients reach us at; without
        // MAILROOM_PUBLIC_URL it is the address we listen on.
        let public_url = match &settings.public_url {
            Some(u) => u.clone(),
            None => url::Url::parse(&format!("http://{}/", listener.local_addr()?))?,
        };
        let apps = provider_apps(settings, &public_url)?;
        let engine = Engine::new(store, vault, clock, net, settings.outbox.clone(), apps)
            .with_sync_config(settings.sync.clone())
            .with_audit_retention(settings.audit.clone())
            .with_webhook_config(WebhookConfig {
                allow_private: settings.webhook_allow_private,
                ..settings.webhooks.clone()
            });
        let state = AppState::new(
            engine.clone(),
            ApiConfig {
                body_limit: settings.body_limit_bytes,
                attachment_max_bytes: settings.attachment_max_bytes,
                message_max_bytes: settings.message_max_bytes,
                public_url,
                api_rate_per_second: settings.api_rate_per_second,
            },
        );
        let router = mailroom_api::router(state);
        Ok(Self {
            listener,
            router,
            engine,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Serves until `shutdown` resolves, then finishes in-flight requests.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        tracing::info!(addr = %self.local_addr(), "mailroom listening");
        // Every background worker starts through the engine and stops when the server does.
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let engine = self.engine.clone();
        let worker = tokio::spawn(async move {
            let mut rx = stop_rx;
            engine
                .run_workers(async move {
                    let _ = rx.wait_for(|stop| *stop).await;
                })
                .await
        });
        let served = axum::serve(
            self.listener,
            self.router
                .into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown)
        .await
        .context("the HTTP server failed");
        let _ = stop_tx.send(true);
        let _ = worker.await;
        self.engine.store.close().await;
        served
    }
}

/// The OAuth apps with their callbacks under `public_url`.
fn provider_apps(settings: &Settings, public_url: &url::Url) -> anyhow::Result<ProviderApps> {
    let app = |idp: IdP, c: &crate::config::AppConfig, path: &str| -> anyhow::Result<ProviderApp> {
        Ok(ProviderApp {
            oauth: OAuthApp {
                idp,
                client_id: c.client_id.clone(),
                client_secret: c.client_secret.clone(),
                auth_url: c.auth_url.clone(),
                token_url: c.token_url.clone(),
                redirect_uri: public_url.join(path)?,
            },
            api_base: c.api_url.clone(),
            push: match idp {
                IdP::Google => settings.google_push.as_ref().map(|p| GmailPush {
                    topic: p.topic.clone(),
                    token: p.token.clone(),
                }),
                IdP::Microsoft => None,
            },
            // Graph must reach it: only with a public URL set (the listen address is no
            // place Graph can post to).
            notification_url: match (idp, &settings.public_url) {
                (IdP::Microsoft, Some(u)) => Some(u.join("push/microsoft")?),
                _ => None,
            },
        })
    };
    Ok(ProviderApps {
        google: settings
            .google
            .as_ref()
            .map(|c| app(IdP::Google, c, "oauth/google/callback"))
            .transpose()?,
        microsoft: settings
            .microsoft
            .as_ref()
            .map(|c| app(IdP::Microsoft, c, "oauth/microsoft/callback"))
            .transpose()?,
    })
}
