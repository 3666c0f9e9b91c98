//! The sync supervisor: every `scan` it lists the accounts the mailbox seam can sync, takes the
//! leases of those nobody holds (up to this process's fair share: the accounts divided by the
//! live processes, rounded up), hands its excess back when more processes are live, and runs
//! one [`account::run`] loop per lease it holds. On SQLite there is one process, which owns
//! every account. At shutdown every loop stops and releases its lease.

use std::collections::HashMap;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use mailroom_store::{StoreError, accounts, sync_leases};

use super::account;
use crate::Engine;

struct Running {
    stop: CancellationToken,
    task: JoinHandle<account::Ended>,
}

/// Runs until `stop` is cancelled, then stops every loop (each releases its lease).
pub async fn run(engine: Engine, stop: CancellationToken) {
    let config = engine.sync.config().clone();
    tracing::info!(owner = engine.sync.owner(), "sync supervisor started");
    let mut running: HashMap<String, Running> = HashMap::new();
    loop {
        if let Err(e) = round(&engine, &stop, &mut running).await {
            tracing::warn!(error = %e, "sync supervisor round failed");
        }
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(config.scan) => {}
        }
    }
    for r in running.values() {
        r.stop.cancel();
    }
    for (_, r) in running {
        let _ = r.task.await;
    }
    if let Err(e) = sync_leases::node_gone(&engine.store, engine.sync.owner()).await {
        tracing::warn!(error = %e, "could not sign this process off the sync nodes");
    }
    tracing::info!(owner = engine.sync.owner(), "sync supervisor stopped");
}

/// This process's fair share of `accounts` among `nodes` live processes.
fn fair_share(accounts: usize, nodes: i64) -> usize {
    let nodes = usize::try_from(nodes.max(1)).unwrap_or(1);
    accounts.div_ceil(nodes)
}

async fn round(
    engine: &Engine,
    stop: &CancellationToken,
    running: &mut HashMap<String, Running>,
) -> Result<(), StoreError> {
    let config = engine.sync.config();
    let ttl = config.lease_ttl.as_millis() as i64;
    running.retain(|_, r| !r.task.is_finished());
    let now = engine.clock.now_ms();
    sync_leases::node_seen(&engine.store, engine.sync.owner(), now, now - 20 * ttl).await?;
    let nodes = sync_leases::live_nodes(&engine.store, now - ttl).await?;
    let candidates: Vec<_> = accounts::sync_candidates(&engine.store)
        .await?
        .into_iter()
        .filter(|c| engine.providers.syncs(c.account_type))
        .collect();
    let share = fair_share(candidates.len(), nodes);
    if running.len() > share {
        // More processes are live than when these were taken: hand the excess back (the
        // last ones by id) for the others to take.
        let mut mine: Vec<&String> = running.keys().collect();
        mine.sort();
        for id in mine.into_iter().skip(share) {
            tracing::info!(account_id = %id, "handing an account over to another process");
            running[id].stop.cancel();
        }
        return Ok(());
    }
    for c in candidates {
        if running.len() >= share || stop.is_cancelled() {
            break;
        }
        if running.contains_key(&c.id) {
            continue;
        }
        let now = engine.clock.now_ms();
        if !sync_leases::acquire(&engine.store, &c.id, engine.sync.owner(), now, now + ttl).await? {
            continue;
        }
        tracing::info!(account_id = %c.id, "sync lease taken");
        let stop = stop.child_token();
        let task = tokio::spawn(account::run(engine.clone(), c.id.clone(), stop.clone()));
        running.insert(c.id, Running { stop, task });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::fair_share;

    #[test]
    fn shares_cover_every_account() {
        assert_eq!(fair_share(6, 2), 3);
        assert_eq!(fair_share(7, 2), 4);
        assert_eq!(fair_share(1, 3), 1);
        assert_eq!(fair_share(5, 0), 5);
        assert_eq!(fair_share(0, 2), 0);
    }
}
