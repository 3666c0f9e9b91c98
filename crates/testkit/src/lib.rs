//! Dev-only helpers: fresh databases on SQLite and PostgreSQL, the local Dovecot/Postfix
//! rig started by `scripts/test` (and an IMAP proxy in front of it that hides capabilities,
//! counts commands and injects failures), an in-process mailroom on port 0, and waiting on
//! conditions with deadlines.
//!
//! Services are found through the `MAILROOM_TEST_*` variables of `docs/testing.md`. When
//! one is missing, a test that needs it prints `skipped: …` and returns, unless
//! `MAILROOM_TEST_REQUIRE_SERVICES=1` (set by `scripts/test` under `CI=true`), where it fails.

pub mod app;
pub mod db;
pub mod fakes;
pub mod imap_proxy;
pub mod integrator;
pub mod mail;
pub mod openapi_check;
pub mod smtp_fault;
pub mod wait;
pub mod webhook_receiver;

pub use app::{TestApp, spawn_app};
pub use db::TestDb;
pub use imap_proxy::{ImapProxy, ProxyCounts};
pub use mail::{MailRig, MailUser};
pub use mailroom_store::Backend;

/// Whether a missing service must fail the test instead of skipping it.
pub fn services_required() -> bool {
    std::env::var("MAILROOM_TEST_REQUIRE_SERVICES").is_ok_and(|v| v == "1" || v == "true")
        || std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Skips (returns `None`) or fails, per [`services_required`], when a service is missing.
pub fn missing_service<T>(what: &str) -> Option<T> {
    if services_required() {
        panic!("required test service unavailable: {what}");
    }
    eprintln!("skipped: {what} unavailable");
    None
}

/// Runs an async test body once per backend: `both_backends!(body)` next to
/// `async fn body(backend: Backend)` makes the tests `body::sqlite` and `body::postgres`.
#[macro_export]
macro_rules! both_backends {
    ($body:ident) => {
        mod $body {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$body($crate::Backend::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$body($crate::Backend::Postgres).await
            }
        }
    };
}

/// A random lowercase token for unique names.
pub fn token() -> String {
    use base64::Engine as _;
    let mut b = [0u8; 9];
    getrandom::fill(&mut b).expect("random");
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(b)
        .to_ascii_lowercase()
        .replace(['-', '_'], "x")
}
