//! What the feed-sync suites (`gmail_sync`, `graph_sync`) look at through the API and the
//! event store: the mail listed, the events recorded, the account's status.

use std::time::Duration;

use serde_json::Value;

use mailroom_store::events;
use mailroom_testkit::app::TestApp;
use mailroom_testkit::wait;

/// The payloads of the events of one kind, oldest first.
pub async fn events_of(app: &TestApp, kind: &str) -> Vec<Value> {
    events::of_type(&app.store, &app.workspace, kind)
        .await
        .unwrap()
        .into_iter()
        .map(|(_, p)| p)
        .collect()
}

/// Every announcement about mail, by kind.
pub async fn mail_events(app: &TestApp) -> Vec<(String, Value)> {
    let mut out = vec![];
    for kind in [
        "mail_received",
        "mail_sent",
        "mail_read",
        "mail_moved",
        "mail_deleted",
    ] {
        for p in events_of(app, kind).await {
            out.push((kind.to_owned(), p));
        }
    }
    out
}

/// `GET /emails` of the account, with more query (`&role=inbox`).
pub async fn emails(app: &TestApp, acc: &str, extra: &str) -> Vec<Value> {
    let (s, body) = app
        .get(&format!("/api/v1/emails?account_id={acc}{extra}"))
        .await;
    assert_eq!(s, 200, "{body}");
    body["items"].as_array().unwrap().clone()
}

pub fn by_subject<'a>(items: &'a [Value], subject: &str) -> Option<&'a Value> {
    items.iter().find(|i| i["subject"] == subject)
}

/// The status of the account's mail source (`OK`, `CREDENTIALS`, …).
pub async fn status(app: &TestApp, acc: &str) -> String {
    let (_, a) = app.get(&format!("/api/v1/accounts/{acc}")).await;
    a["sources"][0]["status"].as_str().unwrap_or("").to_owned()
}

/// Waits for the account's status to be `CREDENTIALS` and for its `account_status` event
/// (written one after the other).
pub async fn until_credentials(app: &TestApp, acc: &str) {
    wait::until("CREDENTIALS", Duration::from_secs(20), || async {
        (status(app, acc).await == "CREDENTIALS").then_some(())
    })
    .await;
    wait::until(
        "the account_status event",
        Duration::from_secs(10),
        || async {
            let statuses: Vec<String> = events_of(app, "account_status")
                .await
                .iter()
                .map(|e| e["AccountStatus"]["message"].as_str().unwrap().to_owned())
                .collect();
            (statuses.last().map(String::as_str) == Some("CREDENTIALS")).then_some(())
        },
    )
    .await;
}
