//! The engine: everything that talks to providers on the API's behalf or in the background.
//! Today it verifies accounts before they are saved; the outbox sender, the sync
//! supervisor and the webhook dispatcher join it in later issues.

pub mod compose;
pub mod connect;
pub mod outbox;
pub mod replies;

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
    pub outbox: outbox::Outbox,
}

impl Engine {
    pub fn new(
        store: Store,
        vault: Vault,
        clock: Arc<dyn Clock>,
        net: NetPolicy,
        outbox: outbox::OutboxConfig,
    ) -> Self {
        let outbox = outbox::Outbox::new(
            store.clone(),
            vault.clone(),
            clock.clone(),
            net.clone(),
            outbox,
        );
        Self {
            store,
            vault,
            clock,
            net,
            outbox,
        }
    }
}
