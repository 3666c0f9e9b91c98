//! The webhook delivery queue's claims, on both backends: a run starts at a queue head only
//! (also with concurrent claimers, and after a replay puts an earlier delivery back), takes
//! the due deliveries after it in order and stops before the first that is not due, a retry
//! holds its queue back, a claim given back is uncounted, an expired lease is taken over and
//! the old claim then records nothing.

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

/// Claims a run (of at most `run_max`) at every head that is due at `now`, for `node`.
async fn claim_runs(store: &Store, node: &str, now: i64, run_max: i64) -> Vec<Vec<Claim>> {
    let heads = deliveries::due_heads(store, now, 0, 1_000).await.unwrap();
    let seqs: Vec<i64> = heads.iter().map(|h| h.seq).collect();
    deliveries::claim_runs(store, &seqs, run_max, node, now, now + LEASE)
        .await
        .unwrap()
}

fn finished(c: &Claim, outcome: Outcome) -> Finished {
    Finished {
        seq: c.seq,
        id: c.id.clone(),
        token: c.token.clone(),
        attempt: (outcome != Outcome::Unclaimed).then_some(Attempt {
            attempt: c.attempt,
            started_at: 0,
            status_code: Some(200),
            latency_ms: 1,
            error: None,
        }),
        outcome,
    }
}

fn ids(run: &[Claim]) -> Vec<&str> {
    run.iter().map(|c| c.id.as_str()).collect()
}

/// Runs start at heads only, oldest first, and take the queue in order up to their size; a
/// retry holds its queue back and what came after it in the run goes back uncounted; a run
/// stops before a delivery that is not due (a replayed earlier delivery runs alone while a
/// later one is leased).
async fn runs_take_a_queue_in_order_from_its_head(backend: Backend) {
    let Some((_db, store)) = open(backend).await else {
        return;
    };
    let mut a = vec![];
    let mut b = vec![];
    for n in 0..3 {
        a.push(event(&store, "acc-a", n).await);
        b.push(event(&store, "acc-b", n).await);
    }
    let mut da = vec![];
    let mut db = vec![];
    for n in 0..3 {
        da.push(delivery_of(&store, &a[n]).await);
        db.push(delivery_of(&store, &b[n]).await);
    }
    let heads = deliveries::due_heads(&store, 10, 0, 100).await.unwrap();
    assert_eq!(
        heads.iter().map(|h| h.seq).collect::<Vec<_>>(),
        [da[0].seq, db[0].seq],
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
        (da[0].seq, db[0].seq, 0)
    );

    // A run cannot start behind the head.
    let none = deliveries::claim_runs(&store, &[da[1].seq], 10, "n1", 10, 10 + LEASE)
        .await
        .unwrap();
    assert!(none.is_empty(), "{none:?}");

    let runs = claim_runs(&store, "n1", 10, 2).await;
    assert_eq!(runs.len(), 2);
    let (ra, rb) = (runs[0].clone(), runs[1].clone());
    assert_eq!(
        ids(&ra),
        [da[0].id.as_str(), da[1].id.as_str()],
        "in order, up to the run's size"
    );
    assert_eq!(ids(&rb), [db[0].id.as_str(), db[1].id.as_str()]);
    assert!(runs.iter().flatten().all(|c| c.attempt == 1));
    assert!(
        runs.iter().flatten().all(|c| c.lease_until == 10 + LEASE),
        "a claim says when its lease ends"
    );
    assert!(
        claim_runs(&store, "n2", 20, 10).await.is_empty(),
        "leased heads are not claimed again, and nothing behind them is"
    );
    let behind = deliveries::claim_runs(&store, &[da[2].seq], 10, "n2", 20, 20 + LEASE)
        .await
        .unwrap();
    assert!(behind.is_empty(), "{behind:?}");

    // Queue a delivered; queue b's head to be retried, the rest of its run given back.
    let recorded = deliveries::settle(
        &store,
        &[
            finished(&ra[0], Outcome::Delivered),
            finished(
                &rb[0],
                Outcome::Retry {
                    run_after: 1_000,
                    error: "answered 500".into(),
                },
            ),
            finished(&ra[1], Outcome::Delivered),
            finished(&rb[1], Outcome::Unclaimed),
        ],
        30,
    )
    .await
    .unwrap();
    assert_eq!(recorded, [true; 4]);
    let b1 = delivery_of(&store, &b[1]).await;
    assert_eq!(
        (b1.status.as_str(), b1.attempts),
        ("pending", 0),
        "given back uncounted"
    );
    assert_eq!(
        delivery_of(&store, &a[1]).await.status.as_str(),
        "delivered"
    );
    let log = deliveries::attempts(&store, &[da[0].id.clone(), db[1].id.clone()])
        .await
        .unwrap();
    assert_eq!(log[&da[0].id].len(), 1, "the attempt is logged");
    assert!(
        log[&db[1].id].is_empty(),
        "a claim given back is no attempt"
    );
    // Queue b waits for its retry; queue a goes on.
    let heads = deliveries::due_heads(&store, 40, 0, 100).await.unwrap();
    assert_eq!(heads.iter().map(|h| h.seq).collect::<Vec<_>>(), [da[2].seq]);
    let runs = claim_runs(&store, "n1", 1_000, 10).await;
    assert_eq!(runs.len(), 2);
    let ra2 = runs.iter().find(|r| r[0].id == da[2].id).unwrap().clone();
    let rb2 = runs.iter().find(|r| r[0].id == db[0].id).unwrap();
    assert_eq!(
        ids(rb2),
        [db[0].id.as_str(), db[1].id.as_str(), db[2].id.as_str()]
    );
    assert_eq!(
        rb2.iter().map(|c| c.attempt).collect::<Vec<_>>(),
        [2, 1, 1],
        "the retry's second attempt, the others' first"
    );

    // Replaying a0 (settled) puts it back at its place, before a2: while a2's run is out,
    // the queue is not claimed (two of one queue would be in flight); once a2 is settled, a0
    // is the head and runs.
    deliveries::replay(&store, "hook", &da[0].id, 1, 1_000)
        .await
        .unwrap()
        .unwrap();
    // (A run of one reads a0 alone: the live lease further down the queue still counts.)
    for run_max in [10, 1] {
        let none =
            deliveries::claim_runs(&store, &[da[0].seq], run_max, "n2", 1_001, 1_001 + LEASE)
                .await
                .unwrap();
        assert!(none.is_empty(), "{none:?}");
    }
    assert_eq!(ids(&ra2), [da[2].id.as_str()]);
    let recorded = deliveries::settle(&store, &[finished(&ra2[0], Outcome::Delivered)], 1_002)
        .await
        .unwrap();
    assert_eq!(recorded, [true]);
    let runs = claim_runs(&store, "n2", 1_003, 10).await;
    let a0 = runs.iter().find(|r| r[0].id == da[0].id).expect("a0 runs");
    assert_eq!(ids(a0), [da[0].id.as_str()]);

    // A run stops before a delivery that is not due: b1 waits for its retry, so a replayed
    // b0 in front of it runs alone (b2 behind b1 is not reached either).
    let rb2 = rb2.clone();
    let recorded = deliveries::settle(
        &store,
        &[
            finished(&rb2[0], Outcome::Delivered),
            finished(
                &rb2[1],
                Outcome::Retry {
                    run_after: 50_000,
                    error: "answered 503".into(),
                },
            ),
            finished(&rb2[2], Outcome::Unclaimed),
        ],
        1_004,
    )
    .await
    .unwrap();
    assert_eq!(recorded, [true; 3]);
    deliveries::replay(&store, "hook", &db[0].id, 1, 1_005)
        .await
        .unwrap()
        .unwrap();
    let runs = claim_runs(&store, "n2", 1_006, 10).await;
    let b0 = runs.iter().find(|r| r[0].id == db[0].id).expect("b0 runs");
    assert_eq!(ids(b0), [db[0].id.as_str()]);
}
both_backends!(runs_take_a_queue_in_order_from_its_head);

/// An expired lease is claimed again (another attempt counted); the old claim can then
/// record nothing.
async fn an_expired_lease_is_taken_over(backend: Backend) {
    let Some((_db, store)) = open(backend).await else {
        return;
    };
    let e0 = event(&store, "acc", 0).await;
    let e1 = event(&store, "acc", 1).await;
    let old = claim_runs(&store, "dead", 10, 10).await.remove(0);
    assert_eq!(old.len(), 2);
    assert!(claim_runs(&store, "n", 10 + LEASE - 1, 10).await.is_empty());
    let new = claim_runs(&store, "n", 10 + LEASE + 1, 10).await.remove(0);
    assert_eq!(ids(&new), ids(&old));
    assert_eq!((new[0].attempt, new[1].attempt), (2, 2));
    let recorded = deliveries::settle(
        &store,
        &[
            finished(&old[0], Outcome::Delivered),
            finished(&old[1], Outcome::Unclaimed),
        ],
        20_000,
    )
    .await
    .unwrap();
    assert_eq!(recorded, [false, false], "the old claims are not current");
    assert_eq!(delivery_of(&store, &e0).await.status.as_str(), "delivering");
    let recorded = deliveries::settle(
        &store,
        &[
            finished(&new[0], Outcome::Delivered),
            finished(&new[1], Outcome::Unclaimed),
        ],
        20_000,
    )
    .await
    .unwrap();
    assert_eq!(recorded, [true, true]);
    assert_eq!(delivery_of(&store, &e0).await.status.as_str(), "delivered");
    let d1 = delivery_of(&store, &e1).await;
    assert_eq!((d1.status.as_str(), d1.attempts), ("pending", 1));
    assert_eq!(
        deliveries::due_heads(&store, 20_000, 0, 10)
            .await
            .unwrap()
            .len(),
        1
    );
}
both_backends!(an_expired_lease_is_taken_over);

/// Four claimers at once, each delivering the runs it holds and settling them: every
/// delivery is claimed exactly once, and no queue ever has two runs claimed at once.
async fn concurrent_claimers_hold_one_run_per_queue(backend: Backend) {
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
    // queue → runs claimed and not yet settled.
    let held: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let claimers = (0..4).map(|n| {
        let store = store.clone();
        let held = held.clone();
        tokio::spawn(async move {
            let node = format!("node{n}");
            let mut got = vec![];
            let mut idle = 0;
            while idle < 5 {
                let runs = claim_runs(&store, &node, 10, 3).await;
                if runs.is_empty() {
                    idle += 1;
                    tokio::task::yield_now().await;
                    continue;
                }
                idle = 0;
                for run in runs {
                    let d = deliveries::get_any(&store, &run[0].id)
                        .await
                        .unwrap()
                        .unwrap();
                    let queue = d.account_id.clone().unwrap();
                    {
                        let mut h = held.lock().unwrap();
                        let n = h.entry(queue.clone()).or_default();
                        *n += 1;
                        assert_eq!(*n, 1, "two runs of {queue} claimed at once");
                    }
                    for c in &run {
                        let d = deliveries::get_any(&store, &c.id).await.unwrap().unwrap();
                        assert_eq!(d.account_id.as_deref(), Some(queue.as_str()));
                        got.push(d.event_id.clone());
                    }
                    tokio::task::yield_now().await;
                    *held.lock().unwrap().get_mut(&queue).unwrap() -= 1;
                    let items: Vec<Finished> = run
                        .iter()
                        .map(|c| finished(c, Outcome::Delivered))
                        .collect();
                    let recorded = deliveries::settle(&store, &items, 10).await.unwrap();
                    assert!(recorded.iter().all(|r| *r));
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
both_backends!(concurrent_claimers_hold_one_run_per_queue);

/// Two transactions queueing deliveries of one queue at once (a sync batch and an API change
/// about one account): the later one cannot take its place in the queue before the earlier one
/// commits. On PostgreSQL the second waits for the queue's advisory lock, so while the first
/// is open nothing of the queue is visible and due; then they are in commit order. (SQLite's
/// single writer makes the second wait for the first's commit anyway.)
async fn concurrent_writers_of_one_queue_take_places_in_commit_order(backend: Backend) {
    let Some((_db, store)) = open(backend).await else {
        return;
    };
    let new_event = |n: usize| NewEvent {
        id: events::event_id(&["mail_received", "acc", &n.to_string()]),
        workspace_id: "w",
        account_id: Some("acc"),
        kind: "mail_received",
        payload: json!({"event": "mail_received", "email_id": format!("e{n}")}),
        now_ms: 0,
    };
    let mut first = store.begin_write().await.unwrap();
    events::record_in((&mut first).into(), new_event(1))
        .await
        .unwrap();
    let second = {
        let store = store.clone();
        let e = new_event(2);
        tokio::spawn(async move {
            let mut tx = store.begin_write().await.unwrap();
            events::record_in((&mut tx).into(), e).await.unwrap();
            tx.commit().await.unwrap();
        })
    };
    if let Store::Postgres(pool) = &store {
        // The second transaction is waiting for the queue's lock (not merely slow).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let waiting: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted \
                 AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            )
            .fetch_one(pool)
            .await
            .unwrap();
            if waiting == 1 {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the second writer never waited for the queue's lock"
            );
            tokio::task::yield_now().await;
        }
        assert!(
            deliveries::due_heads(&store, 10, 0, 10)
                .await
                .unwrap()
                .is_empty(),
            "nothing of the queue is due while its first writer is open"
        );
    }
    first.commit().await.unwrap();
    second.await.unwrap();
    let d1 = delivery_of(&store, &new_event(1).id).await;
    let d2 = delivery_of(&store, &new_event(2).id).await;
    assert!(d1.seq < d2.seq, "{} then {}", d1.seq, d2.seq);
    let heads = deliveries::due_heads(&store, 10, 0, 10).await.unwrap();
    assert_eq!(heads.iter().map(|h| h.seq).collect::<Vec<_>>(), [d1.seq]);
}
both_backends!(concurrent_writers_of_one_queue_take_places_in_commit_order);

/// The retention prune deletes settled deliveries (delivered or given up) last changed before
/// its time, oldest first and batch by batch, with their attempt logs; unsettled and recent
/// ones stay, and so do the events.
async fn settled_deliveries_past_retention_are_pruned(backend: Backend) {
    let Some((_db, store)) = open(backend).await else {
        return;
    };
    let mut e = vec![];
    for n in 0..3 {
        e.push(event(&store, "acc", n).await);
    }
    let run = claim_runs(&store, "n", 10, 10).await.remove(0);
    let recorded = deliveries::settle(
        &store,
        &[
            finished(&run[0], Outcome::Delivered),
            finished(
                &run[1],
                Outcome::Failed {
                    error: "answered 500".into(),
                    disable_webhook: None,
                },
            ),
        ],
        10,
    )
    .await
    .unwrap();
    assert_eq!(recorded, [true, true]);
    let d0 = delivery_of(&store, &e[0]).await;
    assert_eq!(
        deliveries::prune_settled(&store, 20, 1).await.unwrap(),
        1,
        "a batch"
    );
    assert!(
        deliveries::of_event(&store, &e[0])
            .await
            .unwrap()
            .is_empty(),
        "oldest first"
    );
    assert!(
        deliveries::attempts(&store, std::slice::from_ref(&d0.id))
            .await
            .unwrap()[&d0.id]
            .is_empty(),
        "its attempt log went with it"
    );
    assert_eq!(deliveries::prune_settled(&store, 20, 1).await.unwrap(), 1);
    assert_eq!(
        deliveries::prune_settled(&store, 20, 1).await.unwrap(),
        0,
        "e2 is unsettled"
    );
    assert_eq!(
        delivery_of(&store, &e[2]).await.status.as_str(),
        "delivering"
    );
    let recorded = deliveries::settle(&store, &[finished(&run[2], Outcome::Delivered)], 100)
        .await
        .unwrap();
    assert_eq!(recorded, [true]);
    assert_eq!(
        deliveries::prune_settled(&store, 20, 10).await.unwrap(),
        0,
        "settled after the cut"
    );
    assert_eq!(deliveries::prune_settled(&store, 101, 10).await.unwrap(), 1);
    assert!(
        deliveries::event_of(&store, &e[0]).await.unwrap().is_some(),
        "events stay"
    );
}
both_backends!(settled_deliveries_past_retention_are_pruned);
