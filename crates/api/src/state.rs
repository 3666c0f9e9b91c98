use std::sync::Arc;

use mailroom_core::Clock;
use mailroom_engine::Engine;
use mailroom_store::{Store, Vault};

/// Settings the HTTP layer needs.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Largest request body accepted, in bytes (routes other than sending).
    pub body_limit: usize,
    /// Largest single attachment of a send.
    pub attachment_max_bytes: usize,
    /// Largest total of a send's attachments and body.
    pub message_max_bytes: usize,
    /// The URL clients reach mailroom at (hosted links, OAuth callbacks).
    pub public_url: url::Url,
    /// Requests per second per API key (on this node) for keys without their own rate; 0: no
    /// limit.
    pub api_rate_per_second: u32,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            body_limit: 2 * 1024 * 1024,
            attachment_max_bytes: 25 * 1024 * 1024,
            message_max_bytes: 35 * 1024 * 1024,
            public_url: url::Url::parse("http://127.0.0.1:8080/").expect("valid"),
            api_rate_per_second: 0,
        }
    }
}

impl ApiConfig {
    /// The body limit of `POST /emails`: the message maximum, base64 overhead, and the form.
    pub fn send_body_limit(&self) -> usize {
        self.message_max_bytes / 3 * 4 + 4 * 1024 * 1024
    }
}

/// Everything a handler may use; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub engine: Engine,
    pub config: Arc<ApiConfig>,
    pub key_limits: Arc<crate::rate_limit::KeyLimits>,
}

impl AppState {
    pub fn new(engine: Engine, config: ApiConfig) -> Self {
        Self {
            engine,
            key_limits: Arc::new(crate::rate_limit::KeyLimits::new(
                config.api_rate_per_second,
            )),
            config: Arc::new(config),
        }
    }

    pub fn store(&self) -> &Store {
        &self.engine.store
    }

    pub fn vault(&self) -> &Vault {
        &self.engine.vault
    }

    pub fn clock(&self) -> &dyn Clock {
        self.engine.clock.as_ref()
    }
}
