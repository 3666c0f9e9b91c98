//! The engine: everything that talks to providers on the API's behalf or in the background.
//! Today it verifies accounts before they are saved; the outbox sender, the sync
//! supervisor and the webhook dispatcher join it in later issues.

pub mod apps;
pub mod compose;
pub mod connect;
pub mod link;
pub mod notify;
pub mod outbox;
pub mod replies;
pub mod tokens;

use std::sync::Arc;

use mailroom_core::Clock;
use mailroom_providers::NetPolicy;
use mailroom_store::{Store, Vault};

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
    pub outbox: outbox::Outbox,
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
        let tokens = Arc::new(tokens::Tokens::new(
            store.clone(),
            vault.clone(),
            clock.clone(),
            apps.clone(),
            http.clone(),
        ));
        let outbox = outbox::Outbox::new(
            outbox::Deps {
                store: store.clone(),
                vault: vault.clone(),
                clock: clock.clone(),
                net: net.clone(),
                tokens: tokens.clone(),
                apps: apps.clone(),
                http: http.clone(),
            },
            outbox,
        );
        Self {
            store,
            vault,
            clock,
            net,
            apps,
            tokens,
            http,
            outbox,
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
