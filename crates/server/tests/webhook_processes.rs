//! Webhook delivery by real `mailroom serve` processes on one PostgreSQL database: two of them
//! share the deliveries (both deliver some) and send each event once; when every process is
//! SIGKILLed while a delivery is under way, the next one sends it again, with the same
//! `webhook-id`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::json;

use mailroom_store::events::{self, NewEvent};
use mailroom_store::{Backend, Store, webhooks};
use mailroom_testkit::app::TEST_MASTER_KEY;
use mailroom_testkit::webhook_receiver::{Reply, WebhookReceiver, verify_signatures};
use mailroom_testkit::{TestDb, wait};

mod common;
use common::{Server, keys_create};

const EVENTS: usize = 40;
/// Queues (accounts) the events are spread over: more than a process's slots for one host (8),
/// so one process cannot hold them all.
const ACCOUNTS: usize = 20;

async fn record(store: &Store, workspace: &str, account: &str, n: usize) -> String {
    let id = events::event_id(&["mail_received", account, &n.to_string()]);
    events::record(
        store,
        NewEvent {
            id: id.clone(),
            workspace_id: workspace,
            account_id: Some(account),
            kind: "mail_received",
            payload: json!({"event": "mail_received", "account_id": account, "email_id": format!("e{n}")}),
            now_ms: mailroom_core::Clock::now_ms(&mailroom_core::SystemClock),
        },
    )
    .await
    .unwrap();
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_deliver_each_event_once_and_a_sigkill_loses_none() {
    let Some(db) = TestDb::new(Backend::Postgres).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let env: &[(&str, &str)] = &[
        ("MAILROOM_DATABASE_URL", &db.url),
        ("MAILROOM_MASTER_KEY", TEST_MASTER_KEY),
        ("MAILROOM_WEBHOOK_ALLOW_PRIVATE", "true"),
        ("MAILROOM_WEBHOOK_TIMEOUT_SECS", "20"),
        ("MAILROOM_WEBHOOK_LEASE_MARGIN_SECS", "1"),
        ("MAILROOM_WEBHOOK_RETRY_BASE_SECS", "1"),
        ("MAILROOM_WEBHOOK_RETRY_CAP_SECS", "2"),
        ("MAILROOM_SYNC", "false"),
        // Each delivery is logged (to tell which process made it).
        (
            "MAILROOM_LOG",
            "info,mailroom_engine::webhooks::dispatch=debug",
        ),
    ];
    let first = Server::start(cwd, env);
    let second = Server::start(cwd, env);
    let key = keys_create(cwd, env);
    let rx = WebhookReceiver::start().await;
    let client = reqwest::Client::new();
    let created: serde_json::Value = client
        .post(first.url("/api/v1/webhooks"))
        .header("X-API-KEY", &key)
        .json(&json!({"source": "email", "request_url": rx.url("/multi")}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let hook = created["webhook_id"].as_str().unwrap();
    let secret = created["secret"].as_str().unwrap().to_owned();
    let store = Store::connect(&db.url).await.unwrap();
    let workspace = webhooks::get_any(&store, hook)
        .await
        .unwrap()
        .unwrap()
        .workspace_id;

    // Recorded by another client of the database: both servers find them at their polls (1 s
    // apart at most). The receiver takes 400 ms per request, so the first to look holds its 8
    // slots for longer than the other takes to look too and find the other queues' heads.
    rx.plan([Reply::Hang(Duration::from_millis(400)); EVENTS]);
    let mut ids = vec![];
    for n in 0..EVENTS {
        ids.push(record(&store, &workspace, &format!("acc{}", n % ACCOUNTS), n).await);
    }
    let got = rx.wait_for(EVENTS, Duration::from_secs(60)).await;
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for r in &got {
        *seen.entry(r.id().to_owned()).or_default() += 1;
    }
    assert_eq!(seen.len(), EVENTS, "every event delivered");
    assert!(seen.values().all(|n| *n == 1), "each once: {seen:?}");
    assert!(ids.iter().all(|id| seen.contains_key(id)));
    verify_signatures(&secret, &got);
    // Which process delivered what: each counts its deliveries in its metrics.
    let delivered = |server: &Server| {
        let client = client.clone();
        let url = server.url("/metrics");
        async move {
            let text = client.get(url).send().await.unwrap().text().await.unwrap();
            text.lines()
                .find(|l| l.starts_with("mailroom_webhook_attempts_total{outcome=\"delivered\"}"))
                .and_then(|l| l.split_whitespace().last()?.parse::<f64>().ok())
                .unwrap_or(0.0) as usize
        }
    };
    let (by_first, by_second) =
        wait::until("every delivery counted", Duration::from_secs(30), || {
            let (a, b) = (delivered(&first), delivered(&second));
            async move {
                let n = (a.await, b.await);
                (n.0 + n.1 >= EVENTS).then_some(n)
            }
        })
        .await;
    assert!(
        by_first > 0 && by_second > 0,
        "both processes delivered: {by_first} and {by_second}"
    );

    // A delivery under way when every process dies is sent again by the next one.
    rx.plan([Reply::Hang(Duration::from_secs(120))]);
    let last = record(&store, &workspace, "acc-kill", EVENTS).await;
    rx.wait_until("the attempt under way", Duration::from_secs(30), |r| {
        r.iter().any(|r| r.id() == last)
    })
    .await;
    first.kill9();
    second.kill9();
    let third = Server::start(cwd, env);
    let got = rx
        .wait_until("the same event again", Duration::from_secs(90), |r| {
            r.iter().filter(|r| r.id() == last).count() >= 2
        })
        .await;
    let again: Vec<_> = got.into_iter().filter(|r| r.id() == last).collect();
    verify_signatures(&secret, &again);
    third.stop();
}
