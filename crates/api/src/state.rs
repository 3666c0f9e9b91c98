use std::sync::Arc;

use mailroom_core::Clock;
use mailroom_engine::Engine;
use mailroom_store::{Store, Vault};

/// Settings the HTTP layer needs.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Largest request body accepted, in bytes.
    pub body_limit: usize,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            body_limit: 2 * 1024 * 1024,
        }
    }
}

/// Everything a handler may use; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub engine: Engine,
    pub config: Arc<ApiConfig>,
}

impl AppState {
    pub fn new(engine: Engine, config: ApiConfig) -> Self {
        Self {
            engine,
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
