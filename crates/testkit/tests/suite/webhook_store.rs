//! The webhook delivery queue's claims, on both backends: only queue heads are handed out (also
//! to concurrent claimers, and after a replay puts an earlier delivery back), a settle claims
//! the next of its queue only once the previous one is settled, a retry holds its queue back,
//! an expired lease is taken over and the old claim then records nothing.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use serde_json::json;

use mailroom_store::events::{self, NewEvent};
use mailroom_store::webhook_deliveries::{self as deliveries, Attempt, Claim, Finished, Outcome};
use mailroom_store::webhooks::{self, Webhook};
use mailroom_store::{Backend, Store, workspaces};
use mailroom_testkit::{TestDb, both_backends};

const LEASE: i64 = 10_000;

async fn open(backend: Backend) -> Option<(TestDb, Store)> {
    let db = TestDb::new(backend).await?;
    let store = Store::connect(&db.url).await.expect("connect");
    store.migrate().await.expect("migrate");
    workspaces::ensure(&store, "w", 0).await.unwrap();
    webhooks::insert(
        &store,
        &Webhook {
            id: "hook".into(),
            workspace_id: "w".into(),
            name: None,
            source: "email".into(),
            request_url: "http://receiver.example.test/in".into(),
            format: "json".into(),
            events: vec!["mail_received".into()],
            account_ids: vec![],
            headers: vec![],
            data: vec![],
            enabled: true,
            secret: vec![0],
            old_secret: None,
            old_secret_until: None,
            disabled_reason: None,
            created_at: 0,
            updated_at: 0,
        },
    )
    .await
    .unwrap();
    Some((db, store))
}

/// Records event `n` about `account` (its delivery is queued with it); answers the event id.
async fn event(store: &Store, account: &str, n: usize) -> String {
    let id = events::event_id(&["mail_received", account, &n.to_string()]);
    events::record(
        store,
        NewEvent {
            id: id.clone(),
            workspace_id: "w",
            account_id: Some(account),
            kind: "mail_received",
            payload: json!({"event": "mail_received", "email_id": format!("e{n}")}),
            now_ms: 0,
        },
    )
    .await
    .unwrap();
    id
}

/// The delivery of event `event_id` (one webhook: one delivery).
async fn delivery_of(store: &Store, event_id: &str) -> deliveries::Delivery {
    deliveries::of_event(store, event_id)
        .await
        .unwrap()
        .remove(0)
}

/// Claims every head that is due at `now` for `node`.
async fn claim_heads(store: &Store, node: &str, now: i64) -> Vec<Claim> {
    let heads = deliveries::due_heads(store, now, 0, 1_000).await.unwrap();
    let seqs: Vec<i64> = heads.iter().map(|h| h.seq).collect();
    deliveries::claim(store, &seqs, node, now, now + LEASE)
        .await
        .unwrap()
}

fn finished(c: &Claim, outcome: Outcome, claim_next: bool) -> Finished {
    Finished {
        id: c.id.clone(),
        token: c.token.clone(),
        attempt: Attempt {
            attempt: c.attempt,
            started_at: 0,
            status_code: Some(200),
            latency_ms: 1,
            error: None,
        },
        outcome,
        claim_next,
    }
}

/// Heads only, oldest first; a claim of a non-head claims nothing; settling with `claim_next`
/// claims the next of the same queue (attempt counted); a retry holds the queue back until
/// it is due; a replayed earlier delivery goes before the queue's later ones.
async fn only_queue_heads_are_claimed(backend: Backend) {
    let Some((_db, store)) = open(backend).await else {
        return;
    };
    let mut a = vec![];
    let mut b = vec![];
    for n in 0..3 {
        a.push(event(&store, "acc-a", n).await);
        b.push(event(&store, "acc-b", n).await);
    }
    let a0 = delivery_of(&store, &a[0]).await;
    let b0 = delivery_of(&store, &b[0]).await;
    let a1 = delivery_of(&store, &a[1]).await;
    let heads = deliveries::due_heads(&store, 10, 0, 100).await.unwrap();
    assert_eq!(
        heads.iter().map(|h| h.seq).collect::<Vec<_>>(),
        [a0.seq, b0.seq],
        "one head per queue, oldest first"
    );
    assert_eq!(
        heads[0].url.as_deref(),
        Some("http://receiver.example.test/in")
    );
    // Read page by page: the next page starts after the last head read (a sweep reads on
    // while heads wait for a busy destination, so the heads of others are reached).
    let first = deliveries::due_heads(&store, 10, 0, 1).await.unwrap();
    let second = deliveries::due_heads(&store, 10, first[0].seq, 1)
        .await
        .unwrap();
    let third = deliveries::due_heads(&store, 10, second[0].seq, 1)
        .await
        .unwrap();
    assert_eq!(
        (first[0].seq, second[0].seq, third.len()),
        (a0.seq, b0.seq, 0)
    );

    // A later delivery of a queue is not claimed while an earlier one is unsettled.
    let none = deliveries::claim(&store, &[a1.seq], "n1", 10, 10 + LEASE)
        .await
        .unwrap();
    assert!(none.is_empty(), "{none:?}");

    let claims = claim_heads(&store, "n1", 10).await;
    assert_eq!(claims.len(), 2);
    assert!(claims.iter().all(|c| c.attempt == 1));
    assert!(
        claims.iter().all(|c| c.lease_until == 10 + LEASE),
        "a claim says when its lease ends"
    );
    assert!(
        claim_heads(&store, "n2", 20).await.is_empty(),
        "leased heads are not claimed again, and nothing behind them is"
    );
    let ca = claims.iter().find(|c| c.id == a0.id).unwrap().clone();
    let cb = claims.iter().find(|c| c.id == b0.id).unwrap().clone();

    // Delivered: the next of the queue is claimed in the same transaction.
    let settled = deliveries::settle(
        &store,
        &[
            finished(&ca, Outcome::Delivered, true),
            finished(
                &cb,
                Outcome::Retry {
                    run_after: 1_000,
                    error: "answered 500".into(),
                },
                true,
            ),
        ],
        "n1",
        30,
        30 + LEASE,
    )
    .await
    .unwrap();
    assert!(settled[0].recorded && settled[1].recorded);
    let next = settled[0].next.clone().expect("the next of queue a");
    assert_eq!(next.id, a1.id);
    assert_eq!(next.attempt, 1);
    assert_eq!(settled[1].next, None, "a retry holds its queue back");
    assert_eq!(
        delivery_of(&store, &a[1]).await.status.as_str(),
        "delivering"
    );
    // Queue b waits for its retry; queue a's head is leased.
    assert!(
        deliveries::due_heads(&store, 40, 0, 100)
            .await
            .unwrap()
            .is_empty()
    );
    let retried = claim_heads(&store, "n1", 1_000).await;
    assert_eq!(retried.len(), 1);
    assert_eq!(
        (retried[0].id.as_str(), retried[0].attempt),
        (b0.id.as_str(), 2)
    );

    // Replaying a0 (settled) puts it before a2: once a1 is settled, a0 is the head, not a2.
    deliveries::replay(&store, "hook", &a0.id, 1, 1_000)
        .await
        .unwrap()
        .unwrap();
    let settled = deliveries::settle(
        &store,
        &[finished(&next, Outcome::Delivered, true)],
        "n1",
        1_000,
        1_000 + LEASE,
    )
    .await
    .unwrap();
    assert_eq!(settled[0].next.as_ref().map(|c| &c.id), Some(&a0.id));
    let a2 = delivery_of(&store, &a[2]).await;
    let none = deliveries::claim(&store, &[a2.seq], "n2", 1_001, 1_001 + LEASE)
        .await
        .unwrap();
    assert!(none.is_empty());
}
both_backends!(only_queue_heads_are_claimed);

/// An expired lease is claimed again (another attempt counted); the old claim can then
/// record nothing, and claims nothing next.
async fn an_expired_lease_is_taken_over(backend: Backend) {
    let Some((_db, store)) = open(backend).await else {
        return;
    };
    let e0 = event(&store, "acc", 0).await;
    event(&store, "acc", 1).await;
    let old = claim_heads(&store, "dead", 10).await.remove(0);
    assert!(claim_heads(&store, "n", 10 + LEASE - 1).await.is_empty());
    let new = claim_heads(&store, "n", 10 + LEASE + 1).await.remove(0);
    assert_eq!((new.id.as_str(), new.attempt), (old.id.as_str(), 2));
    let settled = deliveries::settle(
        &store,
        &[finished(&old, Outcome::Delivered, true)],
        "dead",
        20_000,
        30_000,
    )
    .await
    .unwrap();
    assert!(!settled[0].recorded);
    assert_eq!(settled[0].next, None);
    assert_eq!(delivery_of(&store, &e0).await.status.as_str(), "delivering");
    let settled = deliveries::settle(
        &store,
        &[finished(&new, Outcome::Delivered, false)],
        "n",
        20_000,
        30_000,
    )
    .await
    .unwrap();
    assert!(settled[0].recorded);
    assert_eq!(settled[0].next, None, "not asked to claim the next");
    assert_eq!(delivery_of(&store, &e0).await.status.as_str(), "delivered");
    assert_eq!(
        deliveries::due_heads(&store, 20_000, 0, 10)
            .await
            .unwrap()
            .len(),
        1
    );
}
both_backends!(an_expired_lease_is_taken_over);

/// Four claimers at once, each settling what it holds and going on with the next of the
/// queue: every delivery is claimed exactly once, and no queue ever has two claimed at once.
async fn concurrent_claimers_hold_one_head_per_queue(backend: Backend) {
    let Some((_db, store)) = open(backend).await else {
        return;
    };
    const QUEUES: usize = 6;
    const PER_QUEUE: usize = 8;
    let mut all = HashSet::new();
    for n in 0..PER_QUEUE {
        for q in 0..QUEUES {
            all.insert(event(&store, &format!("acc{q}"), n).await);
        }
    }
    // queue → deliveries claimed and not yet settled.
    let held: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let claimers = (0..4).map(|n| {
        let store = store.clone();
        let held = held.clone();
        tokio::spawn(async move {
            let node = format!("node{n}");
            let mut got = vec![];
            let mut idle = 0;
            while idle < 3 {
                let claims = claim_heads(&store, &node, 10).await;
                if claims.is_empty() {
                    idle += 1;
                    tokio::task::yield_now().await;
                    continue;
                }
                idle = 0;
                for mut c in claims {
                    loop {
                        let d = deliveries::get_any(&store, &c.id).await.unwrap().unwrap();
                        let queue = d.account_id.clone().unwrap();
                        {
                            let mut h = held.lock().unwrap();
                            let n = h.entry(queue.clone()).or_default();
                            *n += 1;
                            assert_eq!(*n, 1, "two deliveries of {queue} claimed at once");
                        }
                        got.push(d.event_id.clone());
                        tokio::task::yield_now().await;
                        *held.lock().unwrap().get_mut(&queue).unwrap() -= 1;
                        let s = deliveries::settle(
                            &store,
                            &[finished(&c, Outcome::Delivered, true)],
                            &node,
                            10,
                            10 + LEASE,
                        )
                        .await
                        .unwrap();
                        assert!(s[0].recorded);
                        match s[0].next.clone() {
                            Some(next) => c = next,
                            None => break,
                        }
                    }
                }
            }
            got
        })
    });
    let mut seen = vec![];
    for c in claimers {
        seen.extend(c.await.unwrap());
    }
    let unique: HashSet<String> = seen.iter().cloned().collect();
    assert_eq!(seen.len(), unique.len(), "each delivery claimed once");
    assert_eq!(unique, all, "every delivery claimed");
}
both_backends!(concurrent_claimers_hold_one_head_per_queue);
