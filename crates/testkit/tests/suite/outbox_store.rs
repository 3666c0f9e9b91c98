//! The outbox's leases and claims, on both backends: each due job is claimed once even by
//! concurrent claimers, a stale claim can record nothing, and expired leases are reclaimed.

use mailroom_store::outbox::{self, JobStatus, NewJob};
use mailroom_store::{Backend, Db, Store, workspaces};
use mailroom_testkit::{TestDb, both_backends};

async fn open(backend: Backend) -> Option<(TestDb, Store)> {
    let db = TestDb::new(backend).await?;
    let store = Store::connect(&db.url).await.expect("connect");
    store.migrate().await.expect("migrate");
    workspaces::ensure(&store, "w", 0).await.unwrap();
    Some((db, store))
}

/// A job scheduled at `at` (so it is claimable once `at` has passed).
async fn scheduled(store: &Store, at: i64) -> String {
    let id = mailroom_core::new_id();
    outbox::insert(
        store,
        NewJob {
            id: &id,
            workspace_id: "w",
            account_id: "acc",
            idempotency_key: None,
            request_hash: b"h",
            message_id: &format!("<{id}@example.test>"),
            thread_refs: &[],
            subject: "s",
            recipients: &["a@example.test".to_owned()],
            envelope_from: "me@example.test",
            raw: b"Subject: s\r\n\r\nb\r\n",
            max_attempts: 3,
            give_up_at: at + 1_000_000,
            now_ms: 0,
            send_at: Some(at),
            lease: ("unused", 0),
            send_gate: None,
        },
    )
    .await
    .unwrap();
    id
}

async fn concurrent_claimers_take_each_job_once(backend: Backend) {
    let Some((_db, store)) = open(backend).await else {
        return;
    };
    let mut ids = vec![];
    for _ in 0..30 {
        ids.push(scheduled(&store, 10).await);
    }
    let claimers = (0..4).map(|n| {
        let store = store.clone();
        tokio::spawn(async move {
            let mut got = vec![];
            loop {
                let batch = outbox::claim_due(&store, &format!("node{n}"), 100, 10_000, 3)
                    .await
                    .unwrap();
                if batch.is_empty() {
                    return got;
                }
                got.extend(batch);
            }
        })
    });
    let mut claimed: Vec<(String, String)> = vec![];
    for c in claimers {
        claimed.extend(c.await.unwrap());
    }
    let mut claimed_ids: Vec<String> = claimed.iter().map(|(id, _)| id.clone()).collect();
    claimed_ids.sort();
    ids.sort();
    assert_eq!(claimed_ids, ids, "every job claimed exactly once");
    // The token names the claim: node, job, attempt.
    for (id, token) in &claimed {
        assert!(token.ends_with(&format!(":{id}:1")), "{token}");
    }
    assert!(
        outbox::claim_due(&store, "late", 100, 10_000, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        outbox::claim_due(&store, "none", 100, 10_000, 0)
            .await
            .unwrap()
            .is_empty()
    );
}
both_backends!(concurrent_claimers_take_each_job_once);

async fn a_stale_claim_records_nothing(backend: Backend) {
    let Some((_db, store)) = open(backend).await else {
        return;
    };
    let id = scheduled(&store, 10).await;
    let first = outbox::claim_due(&store, "n1", 100, 1_000, 1)
        .await
        .unwrap();
    assert_eq!(first.len(), 1);
    let old = first[0].1.clone();
    // Not due again while the lease holds.
    assert!(
        outbox::claim_due(&store, "n1", 500, 2_000, 1)
            .await
            .unwrap()
            .is_empty()
    );
    // The lease ran out: the same node claims it again, under a new token.
    let second = outbox::claim_due(&store, "n1", 1_500, 9_000, 1)
        .await
        .unwrap();
    assert_eq!(second.len(), 1);
    let new = second[0].1.clone();
    assert_ne!(old, new);
    assert!(
        !outbox::renew_lease(&store, &id, &old, 10_000)
            .await
            .unwrap(),
        "the stale claim cannot renew"
    );
    assert!(
        !outbox::mark_sent(Db::Pool(&store), &id, &old, 2_000, "p", false, None)
            .await
            .unwrap(),
        "nor record a result"
    );
    let retry = outbox::Retry {
        run_after: 5_000,
        error_type: "errors/x",
        error: "e",
        refund: false,
    };
    assert!(
        !outbox::mark_retry(&store, &id, &old, 2_000, retry)
            .await
            .unwrap()
    );
    assert!(
        !outbox::mark_failed(Db::Pool(&store), &id, &old, 2_000, "errors/x", "e")
            .await
            .unwrap()
    );
    assert!(
        outbox::renew_lease(&store, &id, &new, 10_000)
            .await
            .unwrap()
    );
    assert!(
        outbox::mark_sent(Db::Pool(&store), &id, &new, 2_000, "p", false, None)
            .await
            .unwrap()
    );
    let job = outbox::get_any(&store, &id).await.unwrap().unwrap();
    assert_eq!(
        (job.status, job.attempts, job.locked_by),
        (JobStatus::Sent, 2, None)
    );
}
both_backends!(a_stale_claim_records_nothing);

/// The first attempt works from the job the insert answers instead of reading it back: it must
/// be exactly the stored row, for an immediate and for a scheduled job.
async fn the_inserted_job_is_the_stored_row(backend: Backend) {
    let Some((_db, store)) = open(backend).await else {
        return;
    };
    for send_at in [None, Some(5_000)] {
        let id = mailroom_core::new_id();
        let refs = vec!["<root@example.test>".to_owned()];
        let inserted = outbox::insert(
            &store,
            NewJob {
                id: &id,
                workspace_id: "w",
                account_id: "acc",
                idempotency_key: Some(&id),
                request_hash: b"hash",
                message_id: &format!("<{id}@example.test>"),
                thread_refs: &refs,
                subject: "s",
                recipients: &["a@example.test".to_owned(), "b@example.test".to_owned()],
                envelope_from: "me@example.test",
                raw: b"Subject: s\r\n\r\nb\r\n",
                max_attempts: 3,
                give_up_at: 1_000_000,
                now_ms: 1_000,
                send_at,
                lease: ("node:claim:1", 40_000),
                send_gate: None,
            },
        )
        .await
        .unwrap();
        let stored = outbox::get_any(&store, &id).await.unwrap().unwrap();
        assert_eq!(inserted, stored, "send_at {send_at:?}");
    }
}
both_backends!(the_inserted_job_is_the_stored_row);

/// A send's answer is recorded with its outcome in one statement, and never replaces an answer
/// already given (a replay gets the first answer).
async fn the_answer_is_recorded_with_the_outcome_once(backend: Backend) {
    let Some((_db, store)) = open(backend).await else {
        return;
    };
    let id = scheduled(&store, 10).await;
    let claims = outbox::claim_due(&store, "n", 100, 10_000, 10)
        .await
        .unwrap();
    let (_, token) = claims.into_iter().find(|(j, _)| *j == id).unwrap();
    let first = serde_json::json!({"status": "sent", "n": 1});
    assert!(
        outbox::mark_sent(
            Db::Pool(&store),
            &id,
            &token,
            200,
            "p",
            false,
            Some((201, &first))
        )
        .await
        .unwrap()
    );
    let job = outbox::get_any(&store, &id).await.unwrap().unwrap();
    assert_eq!(job.status, JobStatus::Sent);
    assert_eq!(job.response, Some((201, first.clone())));
    // A later answer does not replace it.
    outbox::set_response(&store, &id, 202, &serde_json::json!({"n": 2}))
        .await
        .unwrap();
    let job = outbox::get_any(&store, &id).await.unwrap().unwrap();
    assert_eq!(job.response, Some((201, first)));
}
both_backends!(the_answer_is_recorded_with_the_outcome_once);
