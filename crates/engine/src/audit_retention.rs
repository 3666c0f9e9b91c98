//! The audit log's retention: entries older than the configured age are deleted by a
//! background task, in small batches so each delete is short and the API writes on meanwhile.

use std::time::Duration;

use mailroom_store::StoreError;
use mailroom_store::audit;

use crate::Engine;

/// How long entries are kept and how the prune runs.
#[derive(Debug, Clone)]
pub struct AuditRetention {
    /// Entries older than this go; `None`: kept for ever.
    pub keep: Option<Duration>,
    /// Time between prunes.
    pub interval: Duration,
    /// Rows per delete statement.
    pub batch: u32,
}

impl Default for AuditRetention {
    fn default() -> Self {
        Self {
            keep: Some(Duration::from_secs(365 * 24 * 3600)),
            interval: Duration::from_secs(3600),
            batch: 500,
        }
    }
}

/// Deletes every entry past the retention, batch by batch; answers how many went.
pub async fn prune(engine: &Engine) -> Result<u64, StoreError> {
    let config = &engine.audit_retention;
    let Some(keep) = config.keep else {
        return Ok(0);
    };
    let before = engine.clock.now_ms() - keep.as_millis() as i64;
    let mut total = 0;
    loop {
        let n = audit::prune(&engine.store, before, config.batch).await?;
        total += n;
        if n < u64::from(config.batch) {
            return Ok(total);
        }
        // Let other writers in between batches (SQLite has one write lock).
        tokio::task::yield_now().await;
    }
}

/// Prunes now and then every `interval` until `stop` is cancelled.
pub async fn run(engine: Engine, stop: tokio_util::sync::CancellationToken) {
    if engine.audit_retention.keep.is_none() {
        return;
    }
    let interval = engine.audit_retention.interval;
    loop {
        match prune(&engine).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(deleted = n, "audit entries past retention deleted"),
            Err(e) => {
                tracing::warn!(error = %e, "the audit retention prune failed; it runs again later")
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
    }
}
