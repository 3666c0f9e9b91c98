//! mailroom's integration suite: one test binary, a module per area. Store-touching tests run
//! on SQLite and PostgreSQL (`both_backends!`); mail tests use the real Dovecot + Postfix
//! started by `scripts/test`.

mod accounts;
mod api_basics;
mod api_keys;
mod audit;
mod feed_sync;
mod gmail;
mod gmail_sync;
mod graph;
mod graph_push;
mod graph_sync;
mod hosted;
mod hosted_outlook;
mod imap_push;
mod imap_sync;
mod index_store;
mod layout;
mod mail_changes;
mod mail_providers;
mod mailbox_read;
mod mailbox_seam;
mod outbox_store;
mod read_api;
mod send_limits;
mod sending;
mod smtp_send;
mod store;
mod sync_semantics;
mod sync_supervisor;
mod tracking;
mod webhook_store;
mod webhooks;

use mailroom_testkit::Backend;
use mailroom_testkit::app::{TestApp, spawn_app};

/// The app or a skip.
async fn app(backend: Backend) -> Option<TestApp> {
    spawn_app(backend).await
}
