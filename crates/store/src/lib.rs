//! mailroom's store: one [`Store`] over SQLite (embedded default) or PostgreSQL (several
//! nodes), its migrations, the repositories and the [`vault::Vault`] that seals secrets.
//!
//! Both backends run the same SQL text where they can (`$1` placeholders work on both);
//! [`with_pool!`] expands a body once per backend so each gets its own typed pool.

pub mod accounts;
pub mod api_keys;
pub mod audit;
mod blob;
mod db;
pub mod error;
pub mod events;
pub mod feed;
pub mod hosted_links;
pub mod index;
pub mod index_query;
pub mod outbox;
pub mod push_subscriptions;
pub mod search;
pub mod send_limits;
pub mod sync_leases;
pub mod sync_window;
pub mod tenant;
pub mod tracking;
pub mod tx;
pub mod vault;
pub mod webhook_deliveries;
pub mod webhooks;
pub mod workspaces;

pub use db::{Backend, Store};
pub use error::StoreError;
pub use tx::{Db, WriteTx};
pub use vault::{MasterKey, Vault};

/// Runs `$body` with `$pool` bound to the backend's typed pool.
#[macro_export]
#[doc(hidden)]
macro_rules! with_pool {
    ($store:expr, $pool:ident => $body:expr) => {
        match $store {
            $crate::Store::Sqlite($pool) => $body,
            $crate::Store::Postgres($pool) => $body,
        }
    };
}
